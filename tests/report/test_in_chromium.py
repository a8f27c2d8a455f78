"""The report as a person sees it: headless Chromium (Debian's ``chromium``, which
``scripts/bootstrap.sh --dev`` installs) opens the page from disk with the network off, takes
a screenshot, and dumps the DOM after a probe script has written each image's load status into
it. The page must draw (not blank), show its titles, load every figure, and log nothing to
the console. Each check is shown able to fail: the probe adds an image that is not there and
a console message of its own, and the test finds both."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from clusterkit.report import read_bench, read_run, write_report
from clusterkit.runs.store import FolderRunStore
from tests.report.builders import (
    ETL,
    LENET,
    NO_METRICS,
    TRAIN,
    bench_file,
    etl_run,
    lenet_run,
    no_metrics_run,
    png_check,
    train_run,
)

pytestmark = pytest.mark.tools

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars", "--run-all-compositor-stages-before-draw",
         "--virtual-time-budget=5000", "--enable-logging=stderr", "--v=0"]  # fmt: skip
CONTROL_IMAGE = "not-there-on-purpose.png"
CONTROL_MESSAGE = "probe-control-message"
#: written into a copy of the page beside it: each image's [src, complete, naturalWidth]
PROBE = f"""<img src="{CONTROL_IMAGE}" alt="">
<script>
console.error("{CONTROL_MESSAGE}");
window.addEventListener("load", () => {{
  const status = [...document.images].map(i => [i.getAttribute("src"), i.complete,
                                                 i.naturalWidth]);
  const pre = document.createElement("pre");
  pre.id = "image-status";
  pre.textContent = JSON.stringify(status);
  document.body.appendChild(pre);
}});
</script>
</body>"""


@pytest.fixture(scope="module")
def chromium() -> Path:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (Debian's chromium package: "
                    "`bash scripts/bootstrap.sh --dev` as root installs it)")  # fmt: skip
    return CHROMIUM


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A page of three runs side by side (one without metrics) and a bench."""
    base = tmp_path_factory.mktemp("report")
    root = base / "runs"
    etl_run(root)
    train_run(root)
    lenet_run(root)
    no_metrics_run(root)
    store = FolderRunStore(root)
    runs = [read_run(store.load(i), store.dir(i)) for i in (ETL, TRAIN, LENET, NO_METRICS)]
    out = base / "page" / "report.html"
    write_report(runs, [read_bench(bench_file(base / "bench.json"))], out, made="made for a test")
    return out


def _chromium(binary: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip


def _console(stderr: str) -> list[str]:
    """The page's console messages in Chromium's log."""
    return re.findall(r":CONSOLE[:(]\d+\)?\] (.*)", stderr)


def test_the_page_draws_in_chromium(chromium, report, tmp_path):
    shot = tmp_path / "shot.png"
    proc = _chromium(chromium, tmp_path / "profile", f"--screenshot={shot}",
                     "--window-size=1200,2000", report.as_uri())  # fmt: skip
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    width, height, ink = png_check(shot)
    assert (width, height) == (1200, 2000)
    assert ink > 0.05, f"the screenshot is nearly blank: {ink:.1%} of it is drawn"
    assert _console(proc.stderr) == []


def test_every_figure_loads_and_the_console_stays_quiet(chromium, report, tmp_path):
    probe = report.with_name("probe.html")  # beside the page: the same relative names
    probe.write_text(report.read_text().replace("</body>", PROBE))
    proc = _chromium(chromium, tmp_path / "profile", "--dump-dom", probe.as_uri())
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    for title in ("clusterkit report", "4 runs side by side", "Wall time by stage",
                  "Memory over time", "Hyperparameter search", "Learning curves",
                  "Engines compared", "Figures not drawn", f"run {NO_METRICS}"):  # fmt: skip
        assert title in dom, title
    found = re.search(r'<pre id="image-status">(.*?)</pre>', dom, re.S)
    assert found, "the probe did not run: " + proc.stderr[-2000:]
    status = {src: (complete, width) for src, complete, width in json.loads(found.group(1))}
    assert status.pop(CONTROL_IMAGE) == (True, 0)  # a missing image is seen as one
    figures = sorted(p.name for p in report.parent.glob("*.png"))
    assert sorted(status) == figures and len(figures) == 10  # 2 + 3 + 3 + 1 (no metrics) + 1
    assert all(complete and width >= 600 for complete, width in status.values()), status
    messages = _console(proc.stderr)
    assert any(CONTROL_MESSAGE in m for m in messages), proc.stderr[-2000:]
    assert [m for m in messages if CONTROL_MESSAGE not in m] == []
