"""Shared helpers: run the real CLI as a subprocess, in a home of its own; the local cluster
the ``cluster`` tests share; and the suite's tiers (markers: ``cluster``, ``rehearsal``,
``tools``, ``aws_live``; see docs/development.md)."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from clusterkit.core.records import RUN_MARKER
from clusterkit.core.spec import Ports

FIXTURE_JOBS = Path(__file__).parent / "fixtures" / "jobs"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLUSTERKIT_")}
    env.update({"CLUSTERKIT_HOME": str(home), "CLUSTERKIT_JOBS_PATH": str(FIXTURE_JOBS)})
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 300, cwd: Path | None = None
) -> Result:
    """Run ``clusterkit ARGS`` for real; return its exit code and output."""
    proc = subprocess.run(
        [sys.executable, "-m", "clusterkit.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_ports(base: int) -> dict[str, int]:
    """A full set of spec ports starting at ``base`` (distinct from the defaults)."""
    return Ports.numbered_from(base).model_dump()


test_ports.__test__ = False  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _no_cluster_choice_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's $CLUSTERKIT_CLUSTER or $CLUSTERKIT_SPEC never reaches a test (a test that
    means them sets them)."""
    monkeypatch.delenv("CLUSTERKIT_CLUSTER", raising=False)
    monkeypatch.delenv("CLUSTERKIT_SPEC", raising=False)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "ckhome"
    path.mkdir()
    return path


BASE_PORT = 27000


@dataclass
class LocalCluster:
    home: Path
    spec_file: Path
    env: dict[str, str]
    up: dict[str, Any]

    def cli(self, *args: str, timeout: float = 300):
        return run_cli(*args, env=self.env, timeout=timeout)

    @property
    def storage(self) -> Path:
        """The cluster's storage root (a local folder on the local provider)."""
        return Path(self.up["state_dir"]) / "data"

    def run(self, job: str, *args: str, timeout: float = 600) -> tuple[int, dict[str, Any]]:
        """``clusterkit run JOB ARGS --json``: (exit code, the run's record)."""
        result = self.cli("run", job, *args, "--json", timeout=timeout)
        assert result.stdout, result.stderr
        record: dict[str, Any] = result.json()
        return result.code, record

    def status(self) -> dict[str, Any]:
        result = self.cli("status", "--json")
        assert result.code == 0, result.stderr
        data: dict[str, Any] = result.json()
        return data


#: The local clusters the session started (``local_cluster``): taken down before the
#: rehearsal starts (the two would share this machine's 2 cores), and at the end.
_STARTED: list[LocalCluster] = []


def stop_local_clusters() -> None:
    """Take down every local cluster this session started (the rehearsal's tests run last)."""
    while _STARTED:
        cluster = _STARTED.pop()
        down = run_cli("down", env=cluster.env, timeout=120)
        assert down.code == 0, down.stderr


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    root = tmp_path_factory.mktemp("cluster")
    home = root / "home"
    spec_file = root / "clusterkit.yaml"
    spec_file.write_text(
        yaml.safe_dump({"name": "itest", "ports": test_ports(BASE_PORT),
                        "nodes": {"worker_memory": "2g", "ray_object_store_memory": "1g"},
                        "runs": {"stall_timeout": 20}})
    )  # fmt: skip
    env = cli_env(home)
    result = run_cli("up", "--spec", str(spec_file), "--json", env=env, timeout=300)
    assert result.code == 0, result.stderr
    cluster = LocalCluster(home, spec_file, env, result.json())
    _STARTED.append(cluster)
    try:
        yield cluster
    finally:
        stop_local_clusters()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The rehearsal's tests run last (the local cluster is down by then); a test that uses
    the local cluster must say so (``cluster`` marker), so the fast tier never starts one."""
    unmarked = [i.nodeid for i in items if "local_cluster" in getattr(i, "fixturenames", ())
                and i.get_closest_marker("cluster") is None]  # fmt: skip
    if unmarked:
        raise pytest.UsageError(f"tests using local_cluster without the cluster marker: {unmarked}")
    items.sort(key=lambda item: item.get_closest_marker("rehearsal") is not None)


#: Ray's own processes a run's marker can stay on: idle workers Ray reaps itself, and Ray
#: Data's detached actors, which Ray starts again when killed (max_restarts=-1): stopping
#: them after each test would only make Ray start them again.
RAY_KEEPS = ("ray::IDLE", "ray::_")


def _ray_keeps(argv: list[str]) -> bool:
    return bool(argv) and argv[0].startswith(RAY_KEEPS)


def leftover_run_processes(*, older_than_s: float = 2.0) -> list[tuple[psutil.Process, str]]:
    """Processes that carry a run's marker while no supervisor of that run lives: what a run
    left behind (its record is final, or its supervisor died), with the run's id."""
    supervised: set[str] = set()
    marked: list[tuple[psutil.Process, str]] = []
    now = time.time()
    for proc in psutil.process_iter(["cmdline", "create_time"]):
        try:
            argv = proc.info["cmdline"] or []
            if "clusterkit.runs.supervisor" in argv and "--run-dir" in argv:
                supervised.add(Path(argv[argv.index("--run-dir") + 1]).name)
                continue
            if now - (proc.info["create_time"] or now) < older_than_s:
                continue
            run_id = proc.environ().get(RUN_MARKER)
        except (psutil.Error, IndexError):
            continue
        if run_id and run_id != "adhoc" and not _ray_keeps(argv):  # adhoc: a notebook's
            marked.append((proc, run_id))
    return [(proc, run_id) for proc, run_id in marked if run_id not in supervised]


@pytest.hookimpl(trylast=True)  # after the test's own fixtures have cleaned up
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """After a test on the local cluster, a process its runs left (the test says so when that
    is its point) is stopped and reported as a warning: one left spinning would slow every
    later test on these 2 cores (a leftover Ray worker of `busy` could slow a whole CI run)."""
    if item.get_closest_marker("cluster") is None:
        return
    for proc, run_id in leftover_run_processes():
        with contextlib.suppress(psutil.Error):
            warnings.warn(f"{item.nodeid}: run {run_id} left pid {proc.pid} "
                          f"({' '.join(proc.cmdline())[:120]}); stopped", stacklevel=1)  # fmt: skip
            proc.kill()


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A rehearsal test needs root (network namespaces): skipped without it, except under CI,
    where a skipped rehearsal would let CI go green without it."""
    if item.get_closest_marker("rehearsal") is not None and os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("the rehearsal's tests need root, and CI must run them: run CI as root")
        pytest.skip("the rehearsal needs root (network namespaces)")
