"""A user's own script as a recorded run (``clusterkit submit``), checked and staged here.

:func:`plan_script` checks what the user named (the script, its working folder, a
requirements file) before anything runs; :func:`submit_script` starts the ``submit`` job on
the cluster's driver node: in place when the driver is this machine, else with the working
folder copied into the run's folder on the master (without ``.git``, virtual environments and
caches, and up to :data:`WORKDIR_LIMIT_BYTES`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clusterkit.cluster import Cluster
from clusterkit.core.errors import BadInput
from clusterkit.core.fmt import human_bytes
from clusterkit.core.records import RunRecord

#: Folders never copied with a working folder.
EXCLUDED = (".git", ".venv", "venv", "__pycache__", ".ipynb_checkpoints", ".mypy_cache")
#: The largest working folder copied to a remote master.
WORKDIR_LIMIT_BYTES = 64 * 1024**2
#: Where a remote run's working folder and requirements go, in its run folder.
STAGED_WORKDIR = "workdir"
STAGED_REQUIREMENTS = "requirements.txt"


@dataclass(frozen=True)
class ScriptPlan:
    script: Path  # absolute
    workdir: Path  # absolute; holds the script
    requirements: Path | None  # absolute
    size_bytes: int  # of the working folder, without EXCLUDED

    @property
    def relative_script(self) -> str:
        return str(self.script.relative_to(self.workdir))

    @property
    def requirements_inside(self) -> bool:
        """The requirements file is in the working folder (so it goes with it)."""
        return self.requirements is not None and self.requirements.resolve().is_relative_to(
            self.workdir.resolve())  # fmt: skip

    @property
    def staged_requirements(self) -> str | None:
        """The requirements file relative to the working folder once copied (its place in
        the folder, so that its relative entries still resolve; else copied beside it)."""
        if self.requirements is None:
            return None
        if self.requirements_inside:
            return str(self.requirements.resolve().relative_to(self.workdir.resolve()))
        return f"../{STAGED_REQUIREMENTS}"


def _files(folder: Path, limit_bytes: int) -> tuple[list[Path], int]:
    """The files of ``folder`` that go with it (EXCLUDED folders left out) and their size,
    links counted as what they point to (the copy follows them); the walk stops once the
    size passes ``limit_bytes``."""
    found, size, seen = [], 0, {os.path.realpath(folder)}
    for top, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in EXCLUDED)
        if len(seen) > 100_000 or any(os.path.realpath(Path(top) / d) in seen for d in dirs):
            raise BadInput(f"--workdir {folder}: a link under {top} leads to a folder already "
                           "copied (a loop?); remove it or point --workdir elsewhere")  # fmt: skip
        seen.update(os.path.realpath(Path(top) / d) for d in dirs)
        for name in sorted(files):
            found.append(Path(top) / name)
            size += _size(found[-1])
            if size > limit_bytes:
                return found, size
    return found, size


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def plan_script(
    script: Path,
    *,
    workdir: Path | None = None,
    requirements: Path | None = None,
    limit_bytes: int = WORKDIR_LIMIT_BYTES,
    copied: bool = True,
) -> ScriptPlan:
    """Check a script, its working folder (default: the script's) and a requirements file;
    BadInput naming the file and the fix otherwise (the CLI exits 2 on it). ``copied``: the
    folder goes to another node, so its size is checked against ``limit_bytes``."""
    script = script.expanduser().absolute()
    if not script.exists():
        raise BadInput(f"{script}: no such file")
    if not script.is_file() or script.suffix != ".py":
        raise BadInput(f"{script}: not a Python script (.py); submit runs `python FILE.py`")
    folder = workdir.expanduser().absolute() if workdir else script.parent
    if not folder.is_dir():
        raise BadInput(f"--workdir {folder}: no such folder")
    if not script.resolve().is_relative_to(folder.resolve()):
        raise BadInput(
            f"{script} is not inside --workdir {folder}: the script runs from its working "
            "folder; put it there or point --workdir at its folder"
        )
    if requirements is not None:
        requirements = requirements.expanduser().absolute()
        if not requirements.is_file():
            raise BadInput(f"--requirements {requirements}: no such file")
    if not copied:  # the script runs where it is
        script = folder / script.resolve().relative_to(folder.resolve())
        return ScriptPlan(script, folder, requirements, 0)
    files, size = _files(folder, limit_bytes)
    if size > limit_bytes:
        largest = sorted(files, key=_size, reverse=True)[:3]
        named = ", ".join(f"{f.relative_to(folder)} ({human_bytes(_size(f))})" for f in largest)
        raise BadInput(
            f"--workdir {folder}: {human_bytes(size)} to copy, over the limit of "
            f"{human_bytes(limit_bytes)} (largest: {named}). Point --workdir at a folder with "
            "only the code, and put data on the cluster's storage with `clusterkit copy`"
        )
    script = folder / script.resolve().relative_to(folder.resolve())
    return ScriptPlan(script, folder, requirements, size)


def _stage_remote(cluster: Cluster, plan: ScriptPlan, folder: str) -> None:
    """Copy the working folder (EXCLUDED left out) and the requirements file into the run's
    folder on the driver node."""
    driver = cluster.driver()
    with tempfile.TemporaryDirectory(prefix="clusterkit-submit-") as tmp:
        staged = Path(tmp) / STAGED_WORKDIR
        try:
            shutil.copytree(plan.workdir, staged, symlinks=False,  # links: what they point to
                            ignore=shutil.ignore_patterns(*EXCLUDED))  # fmt: skip
        except (OSError, shutil.Error) as exc:
            raise BadInput(f"--workdir {plan.workdir}: could not be read: {exc}") from exc
        driver.put(staged, f"{folder}/{STAGED_WORKDIR}")
    if plan.requirements is not None and not plan.requirements_inside:
        driver.put(plan.requirements, f"{folder}/{STAGED_REQUIREMENTS}")


def submit_script(cluster: Cluster, plan: ScriptPlan, args: Sequence[str], *,
                  spark_session: str = "warm", metrics: bool = True) -> RunRecord:  # fmt: skip
    """Start ``plan``'s script as a run of the ``submit`` job; the record once it started (or
    failed to: a working folder that could not be copied is recorded so)."""
    params: dict[str, object] = {"script": plan.relative_script, "args": list(args)}
    runs = cluster.runs()
    if runs.driver.local:  # the driver node is this machine: the script runs where it is
        params |= {"workdir": str(plan.workdir),
                   "requirements": plan.requirements and str(plan.requirements)}  # fmt: skip
        return runs.submit("submit", params, metrics=metrics, spark_session=spark_session)
    params |= {"workdir": STAGED_WORKDIR,  # relative: in the run's folder
               "requirements": plan.staged_requirements}  # fmt: skip
    return runs.submit("submit", params, metrics=metrics, spark_session=spark_session,
                       stage=lambda folder: _stage_remote(cluster, plan, folder))  # fmt: skip
