"""The runbook pages (docs/runbooks/NAME.md) as the tests read them: their sections, their
fenced blocks by info string (``bash steps``, ``bash confirm``), and the ``clusterkit``
commands in a block of shell."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS_DIR = ROOT / "docs" / "runbooks"
#: A fenced block: its info string and its text (the fences on lines of their own).
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
#: ``clusterkit`` as a command word (not ``clusterkit.yaml`` or ``clusterkit/...``).
COMMAND = re.compile(r"(?<![\w./-])clusterkit(?=[ \t])")


def pages() -> list[Path]:
    """Every runbook page: docs/runbooks/*.md but its README (the index)."""
    return sorted(p for p in RUNBOOKS_DIR.glob("*.md") if p.name != "README.md")


def page_of(runbook: str) -> Path:
    return RUNBOOKS_DIR / f"{runbook}.md"


def fenced(text: str) -> list[tuple[str, str]]:
    """The fenced blocks of a page's text in order, as (info string, text)."""
    return [(m.group(1).strip(), m.group(2)) for m in FENCE.finditer(text)]


def blocks(page: Path, info: str | None = None) -> list[tuple[str, str]]:
    """The page's fenced blocks in order, as (info string, text); with ``info``, only those
    whose info string is exactly that."""
    return [b for b in fenced(page.read_text()) if info is None or b[0] == info]


def steps(page: Path) -> list[str]:
    """The page's ``bash steps`` blocks, in order."""
    return [text for _, text in blocks(page, "bash steps")]


def confirm(page: Path) -> list[str]:
    """The page's ``bash confirm`` blocks, in order."""
    return [text for _, text in blocks(page, "bash confirm")]


def sections(page: Path) -> list[str]:
    """The page's ``## `` headings, in order (outside fenced blocks)."""
    prose = FENCE.sub("", page.read_text())
    return [line[3:].strip() for line in prose.splitlines() if line.startswith("## ")]


def section(page: Path, title: str) -> str:
    """The text of the ``## title`` section (fenced blocks included), up to the next one."""
    text = page.read_text()
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return match.group(1) if match else ""


def _command_text(text: str, start: int) -> str:
    """The words of a command from ``start`` up to what ends it: an unquoted ``|``, ``;``,
    ``&``, ``)`` closing an outer ``$(``, a redirection (a fd number before it dropped), or
    the end of the line."""
    out: list[str] = []
    quote: str | None = None
    depth = 0
    i = start
    while i < len(text):
        c = text[i]
        if quote is not None:
            if c == quote:
                quote = None
            out.append(c)
        elif c in "'\"":
            quote = c
            out.append(c)
        elif text.startswith("$(", i):
            depth += 1
            out.append("$(")
            i += 1
        elif c == ")" and depth:
            depth -= 1
            out.append(c)
        elif c in "|;&)\n" or c in "<>":
            if c in "<>":
                while out and out[-1].isdigit():
                    out.pop()
            break
        else:
            out.append(c)
        i += 1
    return "".join(out)


def clusterkit_commands(block: str) -> list[list[str]]:
    """Each ``clusterkit ...`` command in a block of shell (in a command substitution too),
    as the words after ``clusterkit`` (quotes removed, ``$VAR`` kept as written)."""
    found = []
    for line in block.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for match in COMMAND.finditer(line):
            found.append(shlex.split(_command_text(line, match.end())))
    return found
