"""The kit's layers and the jobs' one door, held by import-linter (pyproject.toml's
contracts): they pass on the code, and a cycle added to a copy of it makes them fail."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def _lint(cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip


def test_the_contracts_hold():
    proc = _lint(ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Contracts: 4 kept, 0 broken." in proc.stdout


def _copy(tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("clusterkit", "jobs"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


def test_a_cycle_inside_a_function_breaks_them(tmp_path):
    copy = _copy(tmp_path)
    with open(copy / "clusterkit" / "runs" / "store.py", "a") as module:
        module.write(
            "\n\ndef _sneaky() -> None:\n    from clusterkit.runs import launcher  # noqa\n"
        )
    proc = _lint(copy)
    assert proc.returncode == 1, proc.stdout
    assert "no import cycle in the kit or the jobs BROKEN" in proc.stdout
    assert "clusterkit.runs" in proc.stdout


def test_an_import_upwards_and_a_job_past_jobkit_break_them(tmp_path):
    copy = _copy(tmp_path)
    with open(copy / "clusterkit" / "core" / "errors.py", "a") as module:
        module.write("\n\nimport clusterkit.cluster  # noqa\n")
    with open(copy / "jobs" / "etl.py", "a") as module:
        module.write("\n\nimport clusterkit.cluster  # noqa\n")
    proc = _lint(copy)
    assert proc.returncode == 1, proc.stdout
    assert "the kit is layered: each layer imports only the ones below it BROKEN" in proc.stdout
    assert "jobs reach the kit through clusterkit.jobkit only BROKEN" in proc.stdout
    assert "clusterkit.core.errors -> clusterkit.cluster" in proc.stdout
