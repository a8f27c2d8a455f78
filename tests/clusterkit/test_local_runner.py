"""This machine's runner (every verb a cluster needs of a node), for real: subprocesses, files,
detached processes; the same contract the SSH runner keeps on the rehearsal."""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import pytest

from clusterkit.exec.local import LocalRunner
from clusterkit.exec.runner import CommandFailed


def test_run_collects_output_sets_env_and_names_a_failure():
    runner = LocalRunner()
    result = runner.run("echo out-$CK_X; echo err >&2", env={"CK_X": "1"})
    assert (result.exit_code, result.stdout, result.stderr) == (0, "out-1\n", "err\n")
    assert runner.run([sys.executable, "-c", "print('a b')"]).stdout == "a b\n"
    assert runner.run("exit 3", check=False).exit_code == 3
    with pytest.raises(CommandFailed, match=r"exit 4` failed on .* \(exit 4\): last words") as e:
        runner.run("echo last words >&2; exit 4")
    assert e.value.status == 4 and e.value.exit_code == 1  # the CLI's exit code stays 1


def test_run_hands_lines_as_they_come_and_times_out():
    seen: list[tuple[str, str, float]] = []
    started = time.monotonic()
    runner = LocalRunner()
    result = runner.run(
        "echo one; sleep 0.5; echo two >&2; sleep 0.3; printf three",  # pipes: no order between
        on_line=lambda stream, line: seen.append((stream, line, time.monotonic() - started)),
    )
    assert [(s, line) for s, line, _ in seen] == [("out", "one"), ("err", "two"), ("out", "three")]
    assert seen[0][2] < 0.4 < seen[1][2]  # the first line came before the command ended
    assert result.stdout == ""  # the lines went to the callback
    with pytest.raises(CommandFailed, match=r"did not end on .* within 0.5 s") as e:
        runner.run("sleep 5", timeout=0.5)
    assert e.value.status is None


def test_stop_closes_the_commands_stdin():
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    result = LocalRunner().run("cat >/dev/null; echo stdin-closed", stop=stop, timeout=10)
    assert result.stdout == "stdin-closed\n" and time.monotonic() - started < 5


def test_spawned_process_is_detached_alive_by_marker_and_without_unset_vars(tmp_path, monkeypatch):
    monkeypatch.setenv("CK_DROP_ME", "1")
    runner = LocalRunner()
    log = tmp_path / "out.log"
    marker = "ck-spawn-test-3f2a"
    script = ("import os, sys, time; print(os.environ.get('CK_DROP_ME'), os.getsid(0) == "
              "os.getpid(), flush=True); time.sleep(30)")  # fmt: skip
    runner.spawn([sys.executable, "-c", script, marker], cwd=str(tmp_path), log=str(log),
                 unset_env=["CK_DROP_ME"])  # fmt: skip
    deadline = time.monotonic() + 10
    while "None" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert log.read_text().split() == ["None", "True"]  # unset, and a session of its own
    pid = next(int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()
               and marker.encode() in (p / "cmdline").read_bytes())  # fmt: skip
    assert runner.alive(pid, marker=marker)
    assert not runner.alive(pid, marker="another-run")
    os.kill(pid, 9)
    deadline = time.monotonic() + 5
    while runner.alive(pid, marker=marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not runner.alive(pid, marker=marker)


def test_files_whole_from_an_offset_listed_and_put_like_scp(tmp_path):
    runner = LocalRunner()
    target = tmp_path / "made" / "deep" / "f.json"
    runner.write_file(str(target), b"0123456789", mode=0o640)
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    assert oct(target.parent.stat().st_mode & 0o777) == "0o700"
    assert runner.read_bytes(str(target), 6) == b"6789"
    assert [p.name for p in target.parent.iterdir()] == ["f.json"]  # no temporary left
    assert [(e.name, e.is_dir) for e in runner.list_dir(str(tmp_path / "made"))] == [
        ("deep", True)]  # fmt: skip
    assert [(e.name, e.size) for e in runner.list_dir(str(target.parent))] == [("f.json", 10)]
    with pytest.raises(FileNotFoundError):
        runner.read_bytes(str(tmp_path / "absent"))
    source = tmp_path / "conf"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "a.txt").write_text("A")
    into = tmp_path / "dest"
    into.mkdir()
    assert runner.put(source, str(into)) == [str(into / "conf" / "sub" / "a.txt")]
    assert runner.put(source / "sub" / "a.txt", str(tmp_path / "b.txt")) == [
        str(tmp_path / "b.txt")
    ]
    with runner.forward("127.0.0.1", 8080) as here:
        assert here == "127.0.0.1:8080"  # this machine: the address itself
