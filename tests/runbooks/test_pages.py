"""The runbook pages are whole and in step with the kit (no cluster): each has its sections, a
``bash steps`` and a ``bash confirm`` block, its doctor lines name it, every runbook doctor
names has a page and every page is one of them, the index links each, and every
``clusterkit`` command in their shell blocks parses against the real command line."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import typer

from clusterkit import cli
from clusterkit.doctor import RUNBOOKS
from clusterkit.doctor.report import VARIABLES
from tests.runbooks.pages import (
    RUNBOOKS_DIR,
    blocks,
    clusterkit_commands,
    confirm,
    fenced,
    page_of,
    pages,
    section,
    sections,
    steps,
)

SECTIONS = ["Symptom", "What doctor says", "Steps", "Confirm"]
PAGES = pages()


def _id(page: Path) -> str:
    return page.stem


def _shell_blocks(page: Path) -> list[str]:
    return [text for info, text in blocks(page) if info.split()[:1] == ["bash"]]


def _uses(block: str) -> list[str]:
    """The variables doctor's findings carry (``clusterkit doctor --vars``) that ``block``
    reads (``$NAME`` or ``${NAME}``): a block that uses one sets it first."""
    return [v for v in VARIABLES if re.search(rf"\$\{{?{v}\b", block)]


def _commands() -> list[tuple[str, list[str]]]:
    return [(page.stem, argv) for page in PAGES for block in _shell_blocks(page)
            for argv in clusterkit_commands(block)]  # fmt: skip


def test_every_runbook_doctor_names_has_a_page_and_every_page_is_one():
    assert sorted(p.stem for p in PAGES) == sorted(RUNBOOKS)


def test_the_index_links_every_page():
    index = (RUNBOOKS_DIR / "README.md").read_text()
    missing = [p.name for p in PAGES if f"]({p.name})" not in index]
    assert not missing, f"not linked from docs/runbooks/README.md: {missing}"


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_a_page_has_its_sections_steps_and_confirm(page: Path):
    assert sections(page)[:4] == SECTIONS
    assert steps(page), f"{page.name}: no ```bash steps block"
    assert any("clusterkit doctor" in block for block in confirm(page)), (
        f"{page.name}: no ```bash confirm block running `clusterkit doctor`"
    )
    symptom = section(page, "Symptom")
    assert "```" in symptom, f"{page.name}: the symptom quotes no line the user sees"


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_its_doctor_lines_name_it_in_doctors_format(page: Path):
    """``STATUS check  saw  -> runbook NAME: docs/runbooks/NAME.md``, as render_lines prints."""
    text = section(page, "What doctor says")
    lines = [line for _, block in fenced(text) for line in block.splitlines()
             if line.startswith(("FAIL ", "WARN "))]  # fmt: skip
    assert lines, f"{page.name}: no doctor line"
    shape = re.compile(r"^(FAIL|WARN) [a-z]+ +\S.*  -> runbook ([a-z-]+): docs/runbooks/\2\.md$")
    for line in lines:
        match = shape.match(line)
        assert match, f"{page.name}: not doctor's format: {line}"
        assert match.group(2) in RUNBOOKS
    assert any(f"-> runbook {page.stem}: docs/runbooks/{page.stem}.md" in line for line in lines)


@pytest.mark.parametrize("page", PAGES, ids=_id)
def test_a_block_sets_the_variables_it_uses_from_its_own_runbook(page: Path):
    """A ``bash steps`` block that uses a finding's variable starts by setting them; every
    ``doctor --vars`` of the page's shell asks for its own runbook; each block is valid bash."""
    own = f'eval "$(clusterkit doctor --vars {page.stem})"'
    for block in [*steps(page), *confirm(page)]:
        uses = _uses(block)
        first = next(line.strip() for line in block.splitlines() if line.strip())
        if uses:
            assert first == own, f"{page.name}: a block using {uses} must start with {own}"
    for block in _shell_blocks(page):
        asked = [argv[2] for argv in clusterkit_commands(block) if argv[:2] == ["doctor", "--vars"]]
        assert set(asked) <= {page.stem}, f"{page.name}: --vars of another runbook: {asked}"
        syntax = subprocess.run(["bash", "-n", "-c", block], capture_output=True, text=True)
        assert syntax.returncode == 0, f"{page.name}: {syntax.stderr}\n{block}"


def test_the_pages_read_doctors_variables():
    """The eval check above looks for doctor's own variables (its list, so a variable added
    there is checked too), and the pages' blocks read some of them."""
    assert "PORT" in VARIABLES and "STATE_DIR" in VARIABLES
    used = {v for page in PAGES for block in [*steps(page), *confirm(page)] for v in _uses(block)}
    assert {"RUN", "STATE_DIR", "CLUSTER"} <= used, used
    assert _uses('ss -ltnp "sport = :${PORT}"; kill "$PID"') == ["PORT", "PID"]
    assert _uses("echo $PORTS $HOME") == []


def test_the_parser_reads_blocks_by_info_string_in_order(tmp_path: Path):
    page = tmp_path / "x.md"
    page.write_text(
        "## Steps\n\n```bash steps\none\n```\n\n```bash\nnot a step\n```\n\n"
        "```bash steps\ntwo\n```\n\n## Confirm\n\n```bash confirm\nclusterkit doctor\n```\n"
    )
    assert steps(page) == ["one\n", "two\n"] and confirm(page) == ["clusterkit doctor\n"]
    assert sections(page) == ["Steps", "Confirm"]
    block = "\n".join([
        'eval "$(clusterkit doctor --vars run-stuck)"',
        'clusterkit logs "$RUN" 2>&1 | tail -20',
        "# clusterkit nothing",
        'cat clusterkit.yaml; clusterkit up --spec "$(dirname "$FILE")/spec.yaml" ;;',
    ])  # fmt: skip
    assert clusterkit_commands(block) == [
        ["doctor", "--vars", "run-stuck"],
        ["logs", "$RUN"],
        ["up", "--spec", "$(dirname $FILE)/spec.yaml"],
    ]


def test_each_page_is_found_by_its_runbooks_name():
    assert all(page_of(name).exists() for name in RUNBOOKS)


def _parse(argv: list[str]) -> None:
    """``clusterkit ARGV`` parsed by the real command line, nothing run: the subcommand's
    --help exits 0, and its options and arguments parse (a click UsageError when not)."""
    name, words = argv[0], argv[1:]
    assert cli.main([name, "--help"]) == 0, f"`clusterkit {name}` does not exist"
    group = typer.main.get_command(cli.app)
    command = group.commands[name]  # type: ignore[attr-defined]
    with command.make_context(name, list(words)):
        pass


def test_the_command_check_can_fail(capsys):
    _parse(["doctor", "--vars", "port-in-use"])
    with pytest.raises(Exception, match="--no-such"):
        _parse(["doctor", "--no-such"])
    with pytest.raises(Exception, match="run_id"):
        _parse(["logs"])
    with pytest.raises(AssertionError, match="does not exist"):
        _parse(["no-such-command"])
    capsys.readouterr()


@pytest.mark.parametrize(("page", "argv"), _commands(),
                         ids=lambda v: v if isinstance(v, str) else " ".join(v))  # fmt: skip
def test_every_clusterkit_command_parses_against_the_real_cli(page: str, argv: list[str],
                                                              capsys):  # fmt: skip
    """The subcommand exists (its --help exits 0) and the words after it parse: every option
    is one of its own, every argument it needs is given."""
    assert argv, f"{page}: a bare `clusterkit`"
    _parse(argv)
    capsys.readouterr()
