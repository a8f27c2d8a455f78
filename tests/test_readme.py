"""The README's top holds exactly two set-up commands, and CI runs the second."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _top_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", text, re.S)
    assert block, "README.md has no bash block"
    assert text.index(block.group(0)) < text.index("\n## "), "the commands must come first"
    return [line for line in block.group(1).splitlines() if line and not line.startswith("#")]


def test_exactly_two_commands_at_the_top():
    commands = _top_commands()
    assert len(commands) == 2, commands
    install_and_run, run_tests = commands
    assert "scripts/bootstrap.sh" in install_and_run and "clusterkit up" in install_and_run
    assert "clusterkit run" in install_and_run
    assert "pytest" in run_tests


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _top_commands()[1] in ci
