"""Run the playbooks on a cluster's nodes with ansible-runner: the rehearsal now, AWS later.

:func:`run_playbook` runs ``playbooks/site.yml`` (or one given) against an inventory with the
nodes' SSH settings, reports every task as it finishes through ``say``, and returns per-host
counts. A failed task raises :class:`ProvisionError` naming the host, role, task and
Ansible's message. SSH checks host keys against a known_hosts file the caller writes (the
nodes' keys are known: the kit made them); its ControlPersist sockets live in a folder of the
run's own, removed afterwards, so a stale one never hijacks the next run.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from clusterkit.errors import ClusterkitError

PLAYBOOKS = Path(__file__).resolve().parent.parent / "playbooks"
SITE = PLAYBOOKS / "site.yml"
FAILED_EVENTS = ("runner_on_failed", "runner_on_unreachable")


class ProvisionError(ClusterkitError):
    """A playbook task failed, or a host could not be reached."""


@dataclass
class ProvisionReport:
    ok: dict[str, int] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)
    tasks: int = 0

    @property
    def total_changed(self) -> int:
        return sum(self.changed.values())


def ssh_args(*, key: Path, known_hosts: Path, jump: str | None) -> str:
    """The ssh options of one host: the key, strict host keys, and for a private host the
    jump through ``jump`` (root@address) with the same settings."""
    common = (f"-o IdentitiesOnly=yes -o UserKnownHostsFile={known_hosts} "
              f"-o StrictHostKeyChecking=yes -o BatchMode=yes")  # fmt: skip
    if jump is None:
        return common
    proxy = f"ssh -i {key} {common} -W %h:%p {jump}"
    return f"{common} -o ProxyCommand='{proxy}'"


def _failure(event: dict[str, Any]) -> str:
    data = event.get("event_data", {})
    result = data.get("res", {})
    message = result.get("msg") or result.get("stderr") or result.get("reason") or "failed"
    role = data.get("role") or "-"
    lines = str(message).strip().splitlines() or [str(message)]
    return f"host {data.get('host')}, role {role}, task {data.get('task')!r}: {lines[-1]}"


def _early_error(result: Any, work_dir: Path) -> str:
    """The first error line ansible-playbook printed before any task ran (a YAML or syntax
    error in the playbooks, a missing variable file, ...)."""
    text = result.stdout.read() if result.stdout else ""
    errors = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in text.splitlines()]
    errors = [line for line in errors if line.startswith("[ERROR]") or line.startswith("Origin")]
    detail = " ".join(errors[:2]) or f"see {work_dir}/artifacts"
    return f"ansible-playbook exited {result.rc}: {detail}"


def run_playbook(
    inventory: dict[str, Any],
    *,
    work_dir: Path,
    playbook: Path = SITE,
    extravars: dict[str, Any] | None = None,
    say: Callable[[str], None] = lambda _: None,
) -> ProvisionReport:
    """Run ``playbook`` on ``inventory`` (a dict in Ansible's YAML inventory shape) with
    ``extravars`` (they may hold secrets: ``work_dir`` is made readable by its owner only)."""
    import ansible_runner

    work_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(work_dir, 0o700)
    # ssh's control sockets: a short path (sockets are limited to 107 bytes), this run's own
    control = Path(tempfile.mkdtemp(prefix="ck-ssh-"))
    failures: list[str] = []
    report = ProvisionReport()

    def on_event(event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if kind == "runner_on_ok":
            report.tasks += 1
            state = "changed" if data.get("res", {}).get("changed") else "ok"
            say(f"{data.get('host')}: {data.get('task')} ({state})")
        elif kind in FAILED_EVENTS and not data.get("ignore_errors"):
            failures.append(_failure(event))
        return True

    # the ansible-playbook of this Python's environment first, whether or not it is on PATH
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    result = ansible_runner.run(
        private_data_dir=str(work_dir),
        project_dir=str(playbook.parent),
        playbook=str(playbook),
        inventory=inventory,
        extravars=extravars or {},
        event_handler=on_event,
        quiet=True,
        envvars={
            "PATH": path,
            "ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            # one SSH round trip per module instead of four (put, chmod, run, clean up)
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(control),
        },
    )
    shutil.rmtree(control, ignore_errors=True)
    stats = result.stats or {}
    report.ok = dict(stats.get("ok", {}))
    report.changed = dict(stats.get("changed", {}))
    if failures or result.rc != 0:
        raise ProvisionError("; ".join(failures) or _early_error(result, work_dir))
    return report
