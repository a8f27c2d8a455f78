"""A run's environment block and the cluster's lock (clusterkit/runs/environment.py): the
hashes, the lock and the block from injected readings; the node-side reading and the
supervisor's block read for real on this machine (no cluster)."""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import time
from datetime import datetime
from email.message import Message
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from clusterkit.cli import _environment_lines
from clusterkit.core.errors import NodeUnreachable
from clusterkit.core.inventory import Node
from clusterkit.core.records import INPUT_FILE
from clusterkit.exec.runner import CommandResult
from clusterkit.jobkit import JobContext
from clusterkit.runs import environment
from clusterkit.runs.launcher import SETUP_FILE, RunSetup
from clusterkit.runs.store import FolderRunStore
from clusterkit.runs.supervisor import _environment
from tests.conftest import FIXTURE_JOBS

PINS = ["pyspark[connect]==4.3.0", "ray[default,train]==2.60.0", "torch==2.13.0+cpu"]
INSTALLED = ["pyspark==4.3.0", "ray==2.60.0", "torch==2.13.0+cpu", "pip==25.0"]
#: what a node with an older pyspark than the pinned set has installed
OLDER = ["pyspark==4.2.0" if p.startswith("pyspark") else p for p in INSTALLED]


def _split_readings() -> dict[str, Any]:
    """Three nodes' readings: the master meets the pinned set, worker-1 has :data:`OLDER`,
    worker-2 did not answer."""
    return {
        "master": {"installed": INSTALLED},
        "worker-1": {"installed": OLDER},
        "worker-2": {"error": "worker-2 does not answer"},
    }


class FakeDist(metadata.Distribution):
    """A distribution of a given name and version (nothing else is read of it)."""

    def __init__(self, name: str, version: str) -> None:
        self._meta = Message()
        self._meta["Name"] = name
        self._meta["Version"] = version

    @property
    def metadata(self) -> Any:
        return self._meta

    def read_text(self, filename: str) -> str | None:
        return None

    def locate_file(self, path: Any) -> Any:
        return Path(str(path))


# --- hashes -------------------------------------------------------------------------------
def test_the_digest_is_sha256_of_the_sorted_lines_whatever_their_order():
    expected = hashlib.sha256(b"a==1\nb==2").hexdigest()
    assert environment.digest(["b==2", "a==1"]) == environment.digest(["a==1", "b==2"]) == expected
    assert environment.digest(["a==1", "b==3"]) != expected


def test_installed_packages_are_canonical_sorted_and_the_first_of_a_name_kept():
    dists = [FakeDist("Scikit_Learn", "1.9.1"), FakeDist("PyYAML", "6.0.4"),
             FakeDist("scikit-learn", "1.0"), FakeDist("aiohttp", "3.14.5")]  # fmt: skip
    assert environment.installed_packages(dists) == [
        "aiohttp==3.14.5", "pyyaml==6.0.4", "scikit-learn==1.9.1"]  # fmt: skip


def test_this_pythons_packages_include_the_kit_and_its_engines():
    found = environment.installed_packages()
    assert f"pyspark=={metadata.version('pyspark')}" in found
    assert f"ray=={metadata.version('ray')}" in found
    assert found == sorted(found, key=lambda line: line.split("==")[0])


def test_unmet_pins_say_what_is_installed_instead():
    assert environment.unmet(PINS, INSTALLED) == []
    assert environment.unmet(PINS, ["pyspark==4.2.0", "Ray==2.60.0"]) == [
        "pyspark[connect]==4.3.0 (installed 4.2.0)", "torch==2.13.0+cpu (missing)"]  # fmt: skip
    assert environment.unmet(["torch==2.13.0+cpu"], ["torch==2.13.0"]) == [
        "torch==2.13.0+cpu (installed 2.13.0)"]  # fmt: skip


# --- the lock -----------------------------------------------------------------------------
def test_a_lock_whose_nodes_agree_and_meet_the_pinned_set():
    readings = {"master": {"installed": INSTALLED},
                "worker-1": {"installed": list(reversed(INSTALLED))}}  # fmt: skip
    lock = environment.build_lock(PINS, readings)
    assert lock["hash"] == environment.digest(PINS) and lock["packages"] == sorted(PINS)
    node_hash = environment.digest(INSTALLED)
    assert lock["nodes"] == {
        "master": {"hash": node_hash, "matches": True, "unmet": []},
        "worker-1": {"hash": node_hash, "matches": True, "unmet": []},
    }
    assert lock["same"] is True


def test_a_lock_with_a_node_that_differs_and_one_that_did_not_answer():
    lock = environment.build_lock(PINS, _split_readings())
    nodes = lock["nodes"]
    assert nodes["master"]["matches"] and not nodes["worker-1"]["matches"]
    assert nodes["worker-1"]["unmet"] == ["pyspark[connect]==4.3.0 (installed 4.2.0)"]
    assert nodes["worker-1"]["hash"] != nodes["master"]["hash"]
    assert nodes["worker-2"] == {"hash": None, "matches": None, "error": "worker-2 does not answer"}
    assert lock["same"] is False
    one_unread = environment.build_lock(PINS, {"master": {"error": "down"}})
    assert one_unread["same"] is False


def test_the_lock_file_round_trips_and_a_missing_or_damaged_one_is_none(tmp_path):
    assert environment.load_lock(tmp_path) is None
    lock = environment.build_lock(PINS, {"local": {"installed": INSTALLED}})
    path = environment.save_lock(tmp_path, lock)
    assert path == tmp_path / "lock.json" and oct(path.stat().st_mode & 0o777) == "0o600"
    loaded = environment.load_lock(tmp_path)
    assert loaded is not None and loaded.pop("written") and loaded == lock
    path.write_text("{not json")
    assert environment.load_lock(tmp_path) is None


# --- the record's block -------------------------------------------------------------------
def test_the_launchers_part_hashes_the_spec_and_copies_the_locks_hashes(tmp_path):
    assert environment.from_state_folder(tmp_path) == {"lock": None, "packages": {}, "spec": None}
    (tmp_path / "spec.yaml").write_text("name: c\nprovider: netns\n")
    lock = environment.build_lock(PINS, {"master": {"installed": INSTALLED},
                                         "worker-1": {"error": "down"}})  # fmt: skip
    environment.save_lock(tmp_path, lock)
    part = environment.from_state_folder(tmp_path)
    assert part == {
        "lock": environment.digest(PINS),
        "packages": {"master": environment.digest(INSTALLED), "worker-1": None},
        "spec": hashlib.sha256(b"name: c\nprovider: netns\n").hexdigest(),
    }


def test_the_block_takes_the_drivers_hash_from_its_own_reading():
    given = {"lock": "L", "packages": {"master": "stale", "worker-1": "W"}, "spec": "S"}
    versions = {"clusterkit": "0.1.0", "commit": None, "python": "3.12.3", "spark": "4.3.0"}
    ours = environment.digest(INSTALLED)
    block = environment.block(given, node="master", versions=versions, installed_hash=ours)
    assert block == {
        "versions": versions,
        "driver": "master",
        "packages": {"master": ours, "worker-1": "W"},
        "lock": "L",
        "spec": "S",
        "input": None,
    }
    alone = environment.block({}, node="local", versions={}, installed_hash=ours)
    assert (alone["lock"], alone["spec"], list(alone["packages"])) == (None, None, ["local"])


def test_the_input_the_job_named(tmp_path):
    assert environment.read_input(tmp_path) is None
    (tmp_path / INPUT_FILE).write_text(json.dumps({"path": "/d/people", "checksum": "ab12"}))
    assert environment.read_input(tmp_path) == {"path": "/d/people", "checksum": "ab12"}
    (tmp_path / INPUT_FILE).write_text(json.dumps({"path": "/d/csv", "checksum": None}))
    assert environment.read_input(tmp_path) == {"path": "/d/csv", "checksum": None}
    (tmp_path / INPUT_FILE).write_text("[]")
    assert environment.read_input(tmp_path) is None


def test_input_path_names_the_input_with_its_writers_checksum(tmp_path):
    from jobs._storage import META_FILE, ArrowStorage, input_path, recorded_checksum
    from jobs.datagen import JOB

    root = tmp_path / "data"
    (root / "datasets" / "people").mkdir(parents=True)
    (root / "datasets" / "people" / META_FILE).write_text(json.dumps({"checksum": "00ff"}))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    ctx = JobContext(job=JOB, params={}, run_id="r", run_dir=run_dir, storage_root=str(root))
    storage = ArrowStorage()
    path = input_path(ctx, "", "datasets", "people", storage=storage)
    assert environment.read_input(run_dir) == {"path": path, "checksum": "00ff"}
    input_path(ctx, str(tmp_path / "elsewhere"), storage=storage)  # not there: no checksum
    assert environment.read_input(run_dir) == {"path": str(tmp_path / "elsewhere"),
                                               "checksum": None}  # fmt: skip
    (root / "bad").mkdir()
    (root / "bad" / META_FILE).write_text("{not json")
    assert recorded_checksum(storage, str(root / "bad")) is None
    (root / "bad" / META_FILE).write_text('["a list"]')
    assert recorded_checksum(storage, str(root / "bad")) is None
    assert list(storage._systems) == ["file://"]  # the job's one file system, no other


def test_a_checksum_the_storage_fails_to_read_is_said_with_its_path(tmp_path, capsys):
    from jobs._storage import META_FILE, ArrowStorage, recorded_checksum

    class Unreachable(ArrowStorage):  # the namenode refusing, as pyarrow raises it
        def read_bytes(self, path: str, *, offset: int, length: int) -> bytes:
            raise OSError("HDFS connection to master:9000 refused")

    (tmp_path / "people").mkdir()
    (tmp_path / "people" / META_FILE).write_text(json.dumps({"checksum": "00ff"}))
    assert recorded_checksum(Unreachable(), str(tmp_path / "people")) is None
    err = capsys.readouterr().err
    assert f"could not read {tmp_path / 'people'}/{META_FILE}" in err
    assert "OSError: HDFS connection to master:9000 refused" in err


# --- readings -----------------------------------------------------------------------------
def _java_home(tmp_path: Path, *, release: str | None, says: str = "") -> Path:
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{says}' >&2\n")
    java.chmod(0o755)
    if release is not None:
        (home / "release").write_text(release)
    return home


def test_java_is_read_from_its_homes_release_file(tmp_path):
    home = _java_home(tmp_path, release='IMPLEMENTOR="Debian"\nJAVA_VERSION="17.0.15"\n',
                      says="never asked")  # fmt: skip
    assert environment.java_version({"JAVA_HOME": str(home)}) == "17.0.15"


def test_java_without_a_release_file_is_asked(tmp_path):
    home = _java_home(tmp_path, release=None, says='openjdk version "21.0.2" 2024-01-16')
    assert environment.java_version({"JAVA_HOME": str(home)}) == "21.0.2"


def test_no_java_is_none(tmp_path):
    assert environment.java_version({"JAVA_HOME": str(tmp_path / "nothing")}) is None
    assert environment.java_version({"PATH": str(tmp_path)}) is None


def test_the_versions_here_are_this_pythons():
    found = environment.versions_here()
    assert found["python"] == platform.python_version()
    assert found["spark"] == metadata.version("pyspark")
    assert found["ray"] == metadata.version("ray")
    assert found["pyarrow"] == metadata.version("pyarrow")
    assert found["scikit-learn"] == metadata.version("scikit-learn")
    assert found["clusterkit"] == "0.1.0"
    assert ("torch" in found) == (environment._version("torch") is not None)


def test_the_node_side_command_prints_one_json_line(tmp_path):
    home = _java_home(tmp_path, release='JAVA_VERSION="17.0.9"\n')
    proc = subprocess.run([sys.executable, "-m", environment.MODULE, "--java-home", str(home)],
                          capture_output=True, text=True, timeout=60, check=True)  # fmt: skip
    [line] = proc.stdout.splitlines()
    reading = json.loads(line)
    assert reading["versions"]["java"] == "17.0.9"
    assert reading["installed"] == environment.installed_packages()


class FakeRunner:
    """A node's runner that answers with ``stdout`` or raises ``error``."""

    local = False

    def __init__(self, name: str, stdout: str = "", error: Exception | None = None) -> None:
        self.node = Node(name, "10.0.0.1", ("worker",))
        self.stdout, self.error = stdout, error
        self.argv: list[str] = []

    def run(self, argv: list[str], **_: Any) -> CommandResult:
        self.argv = list(argv)
        if self.error is not None:
            raise self.error
        return CommandResult(0, self.stdout, "")


def test_nodes_are_read_through_their_runners_and_a_failure_is_that_nodes_error():
    reading = {"versions": {"python": "3.12.3"}, "installed": INSTALLED}
    good = FakeRunner("master", stdout="a warning first\n" + json.dumps(reading) + "\n")
    down = FakeRunner("worker-1", error=NodeUnreachable("worker-1 (10.0.0.2) does not answer"))
    old = FakeRunner("worker-2", stdout="/venv/bin/python: No module named clusterkit.runs\n")
    found = environment.read_nodes([good, down, old], python="/venv/bin/python",  # type: ignore[list-item]
                                   java_home="/usr/lib/jvm/j17")  # fmt: skip
    assert good.argv == ["/venv/bin/python", "-m", environment.MODULE, "--java-home",
                         "/usr/lib/jvm/j17"]  # fmt: skip
    assert found["master"] == reading
    assert found["worker-1"] == {"error": "worker-1 (10.0.0.2) does not answer"}
    assert "printed no reading" in found["worker-2"]["error"]
    assert "`clusterkit provision` installs it" in found["worker-2"]["error"]


# --- the supervisor and the launcher ------------------------------------------------------
def test_the_supervisors_block_is_read_here_with_the_launchers_part():
    given = {"lock": "L", "packages": {"worker-1": "W"}, "spec": "S"}
    setup = RunSetup(env={}, cluster="c", provider="netns", node="master", runs_dir="/r",
                     interval_s=1.0, storage_root="/d", python=sys.executable,
                     environment=given)  # fmt: skip
    block = _environment(setup, {"PATH": "/usr/bin:/bin"})
    assert block is not None
    here = environment.digest(environment.installed_packages())
    assert block["packages"] == {"worker-1": "W", "master": here}
    assert block["versions"]["python"] == platform.python_version()
    assert (block["lock"], block["spec"], block["input"]) == ("L", "S", None)


def test_a_block_that_cannot_be_read_is_left_out_and_said(monkeypatch, capsys):
    def broken(*_: Any, **__: Any) -> dict[str, Any]:
        raise RuntimeError("no metadata")

    monkeypatch.setattr(environment, "run_block", broken)
    setup = RunSetup(env={}, cluster="c", provider="local", node="local", runs_dir="/r",
                     interval_s=1.0, storage_root="/d", python=sys.executable)  # fmt: skip
    assert _environment(setup, {}) is None
    assert "the run's environment could not be read (RuntimeError: no metadata)" in (
        capsys.readouterr().err)  # fmt: skip


def test_a_setup_with_keys_this_kit_does_not_know_still_loads(tmp_path):
    setup = RunSetup(env={}, cluster="c", provider="local", node="local", runs_dir="/r",
                     interval_s=1.0, storage_root="/d", python=sys.executable)  # fmt: skip
    (tmp_path / SETUP_FILE).write_text(json.dumps({**setup.to_dict(), "from_the_future": 1}))
    assert RunSetup.load(tmp_path) == setup


GIVEN = {"lock": "L", "packages": {"worker-1": "W"}, "spec": "S"}


def _supervise(tmp_path: Path, *, seconds: float, prelude: str = "") -> tuple[
        FolderRunStore, str, subprocess.Popen[str]]:  # fmt: skip
    """A real supervisor of the fixture job ``stages`` on this machine, started (not waited
    for) with the launcher's part of the block given; ``prelude`` runs in its process first
    (the injections of the tests below: no production hook)."""
    store = FolderRunStore(tmp_path / "runs")
    setup = RunSetup(env={"CLUSTERKIT_JOBS_PATH": str(FIXTURE_JOBS)}, cluster="c",
                     provider="local", node="here", runs_dir=str(store.root), interval_s=0.2,
                     storage_root=str(tmp_path), python=sys.executable,
                     environment=GIVEN)  # fmt: skip
    record = store.create(job="stages", params={"seconds": seconds}, cluster="c",
                          provider="local")  # fmt: skip
    store.write_json(record.id, SETUP_FILE, setup.for_run(record.id).to_dict())
    code = (
        f"{prelude}\nfrom clusterkit.runs.supervisor import main\n"
        f"raise SystemExit(main(['--run-dir', {str(store.dir(record.id))!r}]))"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    return store, record.id, proc


def _assert_the_block(block: dict[str, Any] | None) -> None:
    assert block is not None
    assert block["versions"]["spark"] == metadata.version("pyspark")
    assert block["driver"] == "here" and block["packages"]["worker-1"] == "W"
    assert block["packages"]["here"] == environment.digest(environment.installed_packages())
    assert (block["lock"], block["spec"]) == ("L", "S")


def test_a_run_records_its_environment(tmp_path):
    """The supervisor, for real on this machine: the block is in the record while the run is
    still running (written once read, not only at the end), with the launcher's part, and
    final with no input (the job named none)."""
    store, run_id, proc = _supervise(tmp_path, seconds=4.0)
    seen_running = None
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        on_disk = store.read_json(run_id, "record.json") or {}
        if on_disk.get("status") == "running" and on_disk.get("environment"):
            seen_running = on_disk["environment"]
            break
        time.sleep(0.05)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    _assert_the_block(seen_running)
    final = store.load(run_id)
    assert final.status == "succeeded", final.error
    _assert_the_block(final.environment)
    assert final.environment is not None and final.environment["input"] is None
    on_disk = json.loads((store.dir(run_id) / "record.json").read_text())
    assert on_disk["environment"] == final.environment


SLOW_BLOCK = """
import json, time
from clusterkit.runs import environment
_read = environment.run_block
def slow(*args, **kwargs):
    time.sleep({delay})
    block = _read(*args, **kwargs)
    with open({done!r}, "w") as f:
        json.dump({{"t": time.time()}}, f)
    return block
environment.run_block = slow
"""


def test_the_job_starts_before_the_block_is_read_and_a_quick_run_still_gets_it(tmp_path):
    """The block's reading slowed by 3 s in the supervisor: the job has started (its record
    says when) and even ended (its last line in stdout.log) before the block is read, its
    ``wall_s`` is its own time, and the final record, written once the block is read,
    carries it."""
    done = tmp_path / "block-done.json"
    prelude = SLOW_BLOCK.format(delay=3.0, done=str(done))
    store, run_id, proc = _supervise(tmp_path, seconds=0.1, prelude=prelude)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    block_read = json.loads(done.read_text())["t"]
    final = store.load(run_id)
    assert final.status == "succeeded", final.error
    assert final.started is not None and final.wall_s is not None
    started = datetime.fromisoformat(final.started).timestamp()
    assert started < block_read - 2.0
    stdout = store.dir(run_id) / "stdout.log"  # written by the job alone, to its end
    assert "stages: done" in stdout.read_text() and stdout.stat().st_mtime < block_read
    assert final.wall_s < block_read - started  # the job's time: not the wait for the block
    _assert_the_block(final.environment)


def test_a_block_that_fails_leaves_it_null_and_the_run_untouched(tmp_path):
    prelude = ("from clusterkit.runs import environment\n"
               "def broken(*_, **__):\n    raise RuntimeError('no metadata here')\n"
               "environment.run_block = broken")  # fmt: skip
    store, run_id, proc = _supervise(tmp_path, seconds=0.1, prelude=prelude)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    final = store.load(run_id)
    assert (final.status, final.exit_code, final.environment) == ("succeeded", 0, None)
    assert "the run's environment could not be read (RuntimeError: no metadata here)" in err


def test_the_drivers_installed_hash_is_read_once_per_process(monkeypatch):
    environment.installed_hash_here.cache_clear()
    calls = []

    def counted(*_: Any) -> list[str]:
        calls.append(1)
        return INSTALLED

    monkeypatch.setattr(environment, "installed_packages", counted)
    try:
        first = environment.run_block(GIVEN, node="m", env={})
        second = environment.run_block(GIVEN, node="m", env={})
    finally:
        environment.installed_hash_here.cache_clear()
    assert first["packages"]["m"] == second["packages"]["m"] == environment.digest(INSTALLED)
    assert len(calls) == 1


# --- clusterkit env's lines ---------------------------------------------------------------
def test_env_says_the_versions_and_the_lock_node_by_node():
    versions = {"clusterkit": "0.1.0", "commit": "c39af49", "python": "3.12.3",
                "java": None, "spark": "4.3.0"}  # fmt: skip
    lock = environment.build_lock(PINS, _split_readings())
    lines = _environment_lines("master", versions, lock)
    ours, theirs = environment.digest(INSTALLED)[:12], environment.digest(OLDER)[:12]
    assert lines == [
        "",
        "versions on master: clusterkit 0.1.0 (commit c39af49), python 3.12.3, spark 4.3.0",
        f"lock: 3 pinned packages, hash {environment.digest(PINS)[:12]}",
        f"  master    installed {ours}  meets the pinned set",
        f"  worker-1  installed {theirs}  does not meet the pinned set: "
        "pyspark[connect]==4.3.0 (installed 4.2.0)",
        "  worker-2  not read: worker-2 does not answer",
        "the nodes' installed packages differ: `clusterkit provision` installs the pinned set "
        "again",
    ]
    same = environment.build_lock(PINS, {"m": {"installed": INSTALLED},
                                         "w": {"installed": INSTALLED}})  # fmt: skip
    assert _environment_lines("m", {}, same)[1] == "versions on m: not read"
    assert _environment_lines("m", {}, same)[-1] == "every node has the same installed packages"


@pytest.mark.parametrize("key", ["versions", "driver", "packages", "lock", "spec", "input"])
def test_the_block_compares_key_by_key_in_the_report(key):
    from clusterkit.report import compare_environments

    base = environment.block({"lock": "L", "packages": {"w": "W"}, "spec": "S"}, node="m",
                             versions={"python": "3.12.3"},
                             installed_hash=environment.digest(INSTALLED))  # fmt: skip
    other = json.loads(json.dumps(base))
    other[key] = {"python": "3.11.9"} if key == "versions" else "changed"
    verdict = compare_environments([base, other])
    assert verdict.startswith("the runs' environments differ in: ") and key in verdict
