"""ruff and mypy are part of the suite, so CI fails on a lint or type error."""

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tools

ROOT = Path(__file__).resolve().parent.parent
CODE = ["clusterkit", "jobs", "tests", "benchmarks", "scripts"]
#: Users' examples: linted and formatted, not type-checked (they are written as users write)
EXAMPLES = ["examples"]


def _run(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_check():
    _run("ruff", "check", *CODE, *EXAMPLES)


def test_ruff_format():
    _run("ruff", "format", "--check", *CODE, *EXAMPLES)


def test_mypy():
    _run("mypy", *CODE)
