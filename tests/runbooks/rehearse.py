"""A runbook rehearsed on this machine, once its incident is provoked: doctor names the runbook
(``doctor --json``), the page's ``bash steps`` blocks run as an operator pastes them (``bash
-euo pipefail -c``, ``clusterkit`` on PATH from this environment's bin first), and doctor no
longer names it.

Each block runs in a shell of its own, in the environment the previous one left exported (a
step's ``export JAVA_HOME=...`` holds for the next block and for doctor after them, as in the
operator's shell); a shell variable a block sets (``eval "$(clusterkit doctor --vars ...)"``)
does not, so a block that needs one sets it itself.

Where a page leaves a choice to the operator after its steps (job-out-of-memory: how much
smaller to run the job again), the test makes it (``operator``), as the page's prose says,
before doctor looks again. Where a step asks (left-billing's ``down`` lists what it would
remove and asks), the test answers on the blocks' stdin (``answers``), as the operator types.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import run_cli
from tests.runbooks.pages import confirm, page_of, steps

#: This environment's bin: the ``clusterkit`` the steps run is this checkout's.
BIN = Path(sys.executable).parent
#: How long one block may take (a step may bring a cluster down and up).
BLOCK_TIMEOUT_S = 600.0


@dataclass
class Rehearsed:
    """What the rehearsal saw: the findings that named the runbook before the steps (the
    first is the one ``--vars`` gives the steps), doctor's exit code and report after them,
    and the environment the steps left."""

    findings: list[dict[str, Any]]
    code: int
    report: dict[str, Any]
    env: dict[str, str]
    said: str = ""  # what the steps printed (stdout and stderr, block after block)

    @property
    def finding(self) -> dict[str, Any]:
        """The first finding that named the runbook."""
        return self.findings[0]


def kit_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with this environment's bin first on PATH (where ``clusterkit`` is)."""
    assert (BIN / "clusterkit").exists(), f"no clusterkit in {BIN}"
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', os.defpath)}"}


def doctor(env: dict[str, str], cwd: Path) -> tuple[int, dict[str, Any]]:
    """``clusterkit doctor --json``: its exit code and report."""
    result = run_cli("doctor", "--json", env=env, cwd=cwd, timeout=120)
    assert result.stdout, result.stderr
    report: dict[str, Any] = result.json()
    return result.code, report


def naming(report: dict[str, Any], check: str, runbook: str | None = None) -> list[dict[str, Any]]:
    """The WARN and FAIL findings of ``check`` (naming ``runbook``, when given)."""
    return [f for f in report["checks"] if f["check"] == check and f["status"] != "ok"
            and (runbook is None or f["runbook"] == runbook)]  # fmt: skip


def run_block(block: str, env: dict[str, str], cwd: Path, *, answers: str = "",
              said: list[str] | None = None) -> dict[str, str]:  # fmt: skip
    """Run one block as ``bash -euo pipefail -c`` with ``answers`` on its stdin (what the
    operator types at its questions; none: stdin is empty); the environment it ended with
    exported. ``said``: its stdout and stderr are appended to it."""
    with tempfile.TemporaryDirectory() as folder:
        left = Path(folder) / "env"
        script = f"{block.rstrip()}\nenv -0 >{shlex.quote(str(left))}\n"
        proc = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, cwd=cwd,
                              input=answers, capture_output=True, text=True,
                              timeout=BLOCK_TIMEOUT_S)  # fmt: skip
        shown = f"{block}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        if said is not None:
            said.append(proc.stdout + proc.stderr)
        assert proc.returncode == 0, f"the block exited {proc.returncode}:\n{shown}"
        pairs = (item.partition("=") for item in left.read_text().split("\0") if item)
        return {name: value for name, _, value in pairs}


def rehearse(runbook: str, check: str, *, env: dict[str, str], cwd: Path,
             statuses: tuple[str, ...] = ("fail",), clean: bool = True,
             operator: Callable[[dict[str, str]], None] | None = None,
             answers: str = "") -> Rehearsed:  # fmt: skip
    """With the incident provoked: doctor's ``check`` names ``runbook`` with one of
    ``statuses``; the page's steps run (``answers`` on each block's stdin; then
    ``operator``, given the environment they left, does what the page leaves to the
    operator); then ``check`` has no WARN or FAIL. With ``clean``, doctor then exits 0 and
    the page's confirm blocks run and exit 0 too."""
    page = page_of(runbook)
    _, before = doctor(env, cwd)
    found = naming(before, check, runbook)
    assert found, f"doctor's {check} check does not name {runbook}: {before['checks']}"
    assert found[0]["status"] in statuses, found[0]
    blocks = steps(page)
    assert blocks, f"{page} has no steps"
    after_env = kit_env(env)
    said: list[str] = []
    for block in blocks:
        after_env = run_block(block, after_env, cwd, answers=answers, said=said)
    if operator is not None:
        operator(after_env)
    code, after = doctor(after_env, cwd)
    assert not naming(after, check), f"after the steps of {page.name}: {naming(after, check)}"
    if clean:
        assert code == 0, f"doctor exits {code} after the steps: {after['checks']}"
        for block in confirm(page):
            run_block(block, after_env, cwd)
    return Rehearsed(found, code, after, after_env, "".join(said))
