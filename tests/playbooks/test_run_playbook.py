"""``run_playbook`` on this machine (``ansible_connection=local``): secrets reach Ansible only
through a 0600 file, never on a command line (ansible-playbook's, ansible-runner's record of
it, any process's seen by ``ps``) nor in Ansible's environment; this process's AWS_*
credentials and agent never reach the playbook; nothing of a run is left behind or reused by
the next (its folder, artifacts, extravars, ssh's control folder). And the ssh options every
node gets: no ssh config file read, no agent forwarded, on the jump's inner ssh too."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from ansible_runner.runner import Runner

from clusterkit.services.playbooks import ProvisionError, run_playbook, ssh_args

PLAY = """\
- name: Probe what a run sees
  hosts: all
  gather_facts: false
  tasks:
    - name: List the module's environment
      ansible.builtin.command: env
      register: probe_env
      changed_when: false

    - name: Hold on while the processes are read, with the secret on the module's stdin
      ansible.builtin.command:
        argv: [sleep, "2"]
        stdin: "{{ secret }}"
      changed_when: false

    - name: Record what the run saw (the secret's digest only)
      ansible.builtin.copy:
        dest: "{{ out }}/seen-{{ round }}.json"
        mode: "0600"
        content: "{{ seen | to_json }}"
      vars:
        seen:
          aws: "{{ lookup('env', 'AWS_SECRET_ACCESS_KEY') }}"
          control: "{{ lookup('env', 'ANSIBLE_SSH_CONTROL_PATH_DIR') }}"
          secret_sha1: "{{ secret | hash('sha1') }}"
          env_names: "{{ probe_env.stdout_lines | map('regex_replace', '=.*$', '') | list }}"
"""

FAILING = """\
- name: Fail
  hosts: all
  gather_facts: false
  tasks:
    - name: Refuse
      ansible.builtin.fail:
        msg: refused on purpose
"""

HOST = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
LOCAL = {"all": {"hosts": {"localhost": HOST}}}


class Watch(threading.Thread):
    """Reads every process's command line, and the environment of this process's
    descendants, while a run goes on; keeps what shows ``needles``."""

    def __init__(self, needles: list[str], extravars: Path) -> None:
        super().__init__(daemon=True)
        self.needles, self.extravars = needles, extravars
        self.exposed: set[str] = set()
        self.playbook_seen = False
        self.extravars_modes: set[str] = set()
        self.done = threading.Event()

    def _scan(self) -> None:
        for proc in psutil.process_iter(["cmdline"]):
            line = " ".join(proc.info["cmdline"] or [])
            self.exposed |= {f"cmdline: {line}" for n in self.needles if n in line}
        me = psutil.Process()
        for child in me.children(recursive=True):
            try:
                env, argv = child.environ(), child.cmdline()
            except psutil.Error:
                continue
            if argv == me.cmdline():  # forked and not yet exec'd: still this process's image
                continue
            line = " ".join(argv)
            self.playbook_seen |= "ansible-playbook" in line
            text = json.dumps(env)
            self.exposed |= {f"environ of {line}" for n in self.needles if n in text}
            self.exposed |= {f"environ of {line}: {k}" for k in env if k.startswith("AWS_")}
        if self.extravars.exists():
            self.extravars_modes.add(oct(self.extravars.stat().st_mode & 0o777))

    def run(self) -> None:
        while not self.done.is_set():
            self._scan()
            time.sleep(0.05)


def _files_holding(folder: Path, needle: str) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What ansible-runner recorded of each run (``artifacts/*/command``: the command line
    and the environment), read before the run's folder is removed."""
    runs: list[dict[str, Any]] = []
    original = Runner.run

    def spy(self: Runner) -> Any:
        result = original(self)
        runs.append(json.loads(Path(self.config.artifact_dir, "command").read_text()))
        return result

    monkeypatch.setattr(Runner, "run", spy)
    return runs


def test_two_runs_keep_secrets_and_credentials_away(tmp_path: Path, monkeypatch, recorded):
    aws_secret = "aws-" + secrets.token_hex(16)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", aws_secret)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIA" + secrets.token_hex(8).upper())
    monkeypatch.setenv("SSH_AUTH_SOCK", str(tmp_path / "agent.sock"))
    monkeypatch.setenv("ANSIBLE_CALLBACKS_ENABLED", "ansible.posix.profile_tasks")
    project, out, state = tmp_path / "project", tmp_path / "out", tmp_path / "state"
    for folder in (project, out, state):
        folder.mkdir()
    (project / "play.yml").write_text(PLAY)
    work_dir = state / "ansible"
    tokens = [secrets.token_hex(24), secrets.token_hex(24)]
    seen = []
    for round_, token in enumerate(tokens, start=1):
        watch = Watch([token, aws_secret], work_dir / "env" / "extravars")
        watch.start()
        try:
            report = run_playbook(LOCAL, work_dir=work_dir, playbook=project / "play.yml",
                                  extravars={"secret": token, "out": str(out),
                                             "round": round_})  # fmt: skip
        finally:
            watch.done.set()
            watch.join()
        assert report.tasks == 3 and report.ok == {"localhost": 3}, report
        assert watch.playbook_seen, "the watch never saw ansible-playbook running"
        assert watch.exposed == set(), sorted(watch.exposed)  # ps: no command line, no environment
        assert watch.extravars_modes == {"0o600"}, watch.extravars_modes
        assert not work_dir.exists()  # artifacts, env files, inventory: all gone
        for folder in (state, out):
            assert _files_holding(folder, token) == [] and _files_holding(folder, aws_secret) == []
        seen.append(json.loads((out / f"seen-{round_}.json").read_text()))

    for run, token in zip(recorded, tokens, strict=True):
        assert token not in json.dumps(run) and aws_secret not in json.dumps(run)
        assert "-e" in run["command"] and any(a.endswith("/env/extravars") for a in run["command"])
        assert not [k for k in run["env"] if k.startswith("AWS_") or k == "SSH_AUTH_SOCK"]
        assert "ANSIBLE_CALLBACKS_ENABLED" not in run["env"]
    for saw, token in zip(seen, tokens, strict=True):
        # the run's own extravars (the second run's too, not a file the first left behind)
        assert saw["secret_sha1"] == hashlib.sha1(token.encode()).hexdigest()
        assert saw["aws"] == ""
        names = set(saw["env_names"])
        assert not {n for n in names if n.startswith("AWS_")}, names
        assert "SSH_AUTH_SOCK" not in names and "ANSIBLE_CALLBACKS_ENABLED" not in names
        assert not Path(saw["control"]).exists()  # the run's control folder, removed
    assert seen[0]["control"] != seen[1]["control"]  # and each run has its own


def test_a_failed_run_is_reported_and_leaves_nothing(tmp_path: Path, recorded):
    (tmp_path / "fail.yml").write_text(FAILING)
    work_dir = tmp_path / "state" / "ansible"
    (work_dir / "env").mkdir(parents=True)  # what a crashed run of an older kit left
    (work_dir / "env" / "envvars").write_text('{"ANSIBLE_SSH_CONTROL_PATH_DIR": "/stale"}')
    with pytest.raises(ProvisionError, match=r"host localhost, role -, task 'Refuse'"):
        run_playbook(LOCAL, work_dir=work_dir, playbook=tmp_path / "fail.yml",
                     extravars={"secret": "s" * 40})  # fmt: skip
    assert not work_dir.exists()
    assert recorded[0]["env"]["ANSIBLE_SSH_CONTROL_PATH_DIR"] != "/stale"


WRITE = """\
- name: Write a file
  hosts: all
  gather_facts: false
  tasks:
    - name: Write it
      ansible.builtin.copy:
        dest: "{{ out }}"
        mode: "0600"
        content: "hello"
"""


def test_check_mode_names_what_would_change_and_changes_nothing(tmp_path: Path):
    """``doctor --drift``'s run: the task that would write is named, nothing is written; once
    written for real, check mode finds nothing to change."""
    (tmp_path / "write.yml").write_text(WRITE)
    out = tmp_path / "out.txt"
    kwargs: dict[str, Any] = {"work_dir": tmp_path / "ansible", "playbook": tmp_path / "write.yml",
                              "extravars": {"out": str(out)}}  # fmt: skip
    would = run_playbook(LOCAL, check=True, **kwargs)
    assert would.changed_tasks == ["localhost: Write it"] and would.total_changed == 1
    assert not out.exists()
    done = run_playbook(LOCAL, **kwargs)
    assert done.changed_tasks == ["localhost: Write it"] and out.read_text() == "hello"
    again = run_playbook(LOCAL, check=True, **kwargs)
    assert again.changed_tasks == [] and again.total_changed == 0 and again.tasks == 1


def test_an_error_before_any_task_is_named(tmp_path: Path):
    (tmp_path / "broken.yml").write_text("- name: Broken\n  hosts: all\n  tasks: [{bogus: 1}]\n")
    with pytest.raises(ProvisionError, match=r"ansible-playbook exited \d+: .*ERROR"):
        run_playbook(LOCAL, work_dir=tmp_path / "ansible", playbook=tmp_path / "broken.yml")
    assert not (tmp_path / "ansible").exists()


def _ssh_argvs(args: str) -> list[list[str]]:
    """The outer ssh's options and, when there is one, the ProxyCommand's inner ssh argv."""
    outer = shlex.split(args)
    proxies = [a.split("=", 1)[1] for a in outer if a.startswith("ProxyCommand=")]
    return [outer, *(shlex.split(p) for p in proxies)]


def _pairs(argv: list[str]) -> list[tuple[str, str]]:
    return list(itertools.pairwise(argv))


def test_ssh_reads_no_config_and_forwards_no_agent(tmp_path: Path):
    key, known = tmp_path / "id_ed25519", tmp_path / "known_hosts"
    direct = _ssh_argvs(ssh_args(key=key, known_hosts=known, jump=None))
    jumped = _ssh_argvs(ssh_args(key=key, known_hosts=known, jump="root@198.51.100.10"))
    assert len(direct) == 1 and len(jumped) == 2 and jumped[1][0] == "ssh"
    for argv in direct + jumped:
        pairs = _pairs(argv)
        assert ("-F", "/dev/null") in pairs, argv
        assert ("-o", "ForwardAgent=no") in pairs, argv
        assert ("-o", "IdentitiesOnly=yes") in pairs and ("-o", "BatchMode=yes") in pairs, argv
        assert ("-o", f"UserKnownHostsFile={known}") in pairs, argv
    assert ("-i", str(key)) in _pairs(jumped[1]) and jumped[1][-1] == "root@198.51.100.10"


@pytest.mark.skipif(shutil.which("ssh") is None, reason="no ssh client here")
def test_ssh_resolves_those_options(tmp_path: Path):
    """ssh's own reading of the options (``ssh -G``, nothing is contacted)."""
    args = ssh_args(key=tmp_path / "k", known_hosts=tmp_path / "kh", jump="root@198.51.100.10")
    outer, inner = _ssh_argvs(args)
    inner = [a for a in inner if a not in ("-W", "%h:%p")]
    for argv in (["ssh", *outer, "root@10.0.2.10"], inner):
        proc = subprocess.run([*argv[:1], "-G", *argv[1:]], capture_output=True, text=True,
                              timeout=10, env={"PATH": os.environ["PATH"]})  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        config = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
        assert config["forwardagent"] == "no" and config["identitiesonly"] == "yes", config
        assert config["stricthostkeychecking"] == "true", config
