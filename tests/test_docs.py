"""The README stays short, every docs page is linked from it, and no page cites a file,
a link or a path that is not in the repository."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

MAX_README_LINES = 210
# the folders of this repository a cited path can start with
REPO_PREFIXES = (
    "clusterkit/",
    "tests/",
    "jobs/",
    "benchmarks/",
    "infra/",
    "playbooks/",
    "inventory/",
    "scripts/",
    "docs/",
    ".ci/",
)
# [text](target): the text may span lines; the target ends at the first space or ")"
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(.+?)\1", re.S)


def _pages() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def _name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def _prose(page: Path) -> str:
    """The page without its fenced code blocks (links inside them are not links)."""
    return FENCE.sub("", page.read_text())


def _links(page: Path) -> list[str]:
    text = CODE_SPAN.sub("", _prose(page))
    return LINK.findall(text)


def _is_external(target: str) -> bool:
    return bool(re.match(r"^([a-z][a-z0-9+.-]*:|//)", target, re.I))


def _resolve(page: Path, target: str) -> Path | None:
    """The file a relative link points to, or None for a link to an anchor on the same page."""
    path = target.split("#", 1)[0]
    if not path:
        return None
    return (page.parent / path).resolve()


def test_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"


def test_there_are_docs_pages():
    assert len(list(DOCS.rglob("*.md"))) >= 2


#: Index pages linked from the README whose own pages they link count as linked from it.
INDEXES = (DOCS / "runbooks" / "README.md",)


def test_every_docs_page_is_linked_from_the_readme():
    linked = set()
    for page in (README, *INDEXES):
        for target in _links(page):
            resolved = _resolve(page, target)
            if resolved is not None and not _is_external(target):
                linked.add(resolved)
    assert all(index.resolve() in linked for index in INDEXES), "an index is not linked"
    missing = [_name(p) for p in sorted(DOCS.rglob("*.md")) if p.resolve() not in linked]
    assert not missing, f"not linked from README.md (or an index it links): {missing}"


def test_no_link_leaves_the_repository():
    found = []
    for page in _pages():
        text = page.read_text()
        for bad in ("](http", "](https", "](//", "](<http"):
            if bad in text:
                found.append(f"{_name(page)}: {bad}")
        found += [f"{_name(page)}: {t}" for t in _links(page) if _is_external(t)]
    assert not found, found


def test_every_relative_link_resolves():
    broken = []
    for page in _pages():
        for target in _links(page):
            if _is_external(target):
                continue
            resolved = _resolve(page, target)
            if resolved is None:
                continue
            if not resolved.exists() or not resolved.is_relative_to(ROOT):
                broken.append(f"{_name(page)}: {target}")
    assert not broken, f"links to nothing: {broken}"


def _cited_paths(page: Path) -> list[str]:
    """Repository paths cited in the page's code spans, also inside a command
    (`.venv/bin/python benchmarks/x.py`)."""
    cited = []
    for _, span in CODE_SPAN.findall(_prose(page)):
        for token in span.split():
            token = token.strip("\"'(),;:")
            if "<" in token or "$" in token:  # a placeholder, not a path
                continue
            if token.startswith(REPO_PREFIXES):
                cited.append(token.split("::", 1)[0])
    return cited


def _exists(path: str) -> bool:
    if any(c in path for c in "*?["):
        return any(ROOT.glob(path))
    if path.endswith("/"):
        return (ROOT / path).is_dir()
    return (ROOT / path).exists()


def test_every_cited_repository_path_exists():
    missing = []
    for page in _pages():
        missing += [f"{_name(page)}: {p}" for p in _cited_paths(page) if not _exists(p)]
    assert not missing, f"cited but not in the repository: {missing}"


def test_the_path_check_can_fail():
    """The checks above see the paths they are meant to see."""
    sample = ROOT / "docs" / "x.md"
    text = "run `.venv/bin/python benchmarks/nope.py`, see `infra/*.tf` and `jobs/`"
    spans = [t for _, s in CODE_SPAN.findall(text) for t in s.split()]
    cited = [t for t in spans if t.startswith(REPO_PREFIXES)]
    assert cited == ["benchmarks/nope.py", "infra/*.tf", "jobs/"]
    assert not _exists("benchmarks/nope.py")
    assert _exists("infra/*.tf") and _exists("jobs/")
    assert LINK.findall("[a\nb](../README.md#x) [c](https://example.org)") == [
        "../README.md#x",
        "https://example.org",
    ]
    assert _resolve(sample, "../README.md#x") == README.resolve()
    assert _is_external("https://example.org") and not _is_external("aws.md")
