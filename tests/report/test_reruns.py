"""A rerun and its original in a report: side by side, whether their environments differ
(records with an ``environment`` block, as run records carry it), whether their result
checksums are the same; one run's report written into its own folder (what ``bench`` and
the console's "open report" call). No cluster needed."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from clusterkit.report import ENVIRONMENT_KEY, RUN_REPORT, read_run, report_run, write_report
from clusterkit.runs.store import FolderRunStore
from tests.report.builders import BENCH, bench_run, two_node_samples, write_run

ORIGINAL = "20261121-100000-aaaa"
RERUN = "20261121-110000-bbbb"


def environment(**changes: Any) -> dict[str, Any]:
    """An environment block as a run record carries it."""
    block = {
        "kit": "0.1.0 (commit 4772dfb)", "python": "3.11.9", "java": "17.0.13",
        "spark": "4.3.0", "ray": "2.60.0", "pyarrow": "26.0.1", "sklearn": "1.9.1",
        "torch": "2.13.0+cpu", "packages": {"master": "sha256:5e1f", "worker": "sha256:5e1f"},
        "spec_hash": "sha256:90ab", "input_checksum": None,
    }  # fmt: skip
    return block | changes


def datagen_pair(root: Path, *, rerun_env: dict[str, Any], checksum: str = "7f3a09c2d41e88b0"):
    """A datagen run and its rerun (``rerun_of``), with the same parameters; the rerun's
    checksum and environment as given."""
    params = {"rows": 3000, "seed": 11, "overwrite": True}
    for run_id, env, digest, extra in (
        (ORIGINAL, environment(), "7f3a09c2d41e88b0", {}),
        (RERUN, rerun_env, checksum, {"rerun_of": ORIGINAL}),
    ):
        write_run(root, run_id, "datagen", params=params, wall_s=6.2,
                  result={"rows": 3000, "checksum": digest, "wall_s": 5.1,
                          "stages": {"commit": 0.1, "generate_and_write": 4.2}},
                  samples=two_node_samples(6, peak_at=3),
                  extra_record={ENVIRONMENT_KEY: env, **extra})  # fmt: skip


def _page(root: Path, out: Path, ids: tuple[str, ...] = (ORIGINAL, RERUN)) -> str:
    store = FolderRunStore(root)
    write_report([read_run(store.load(i), store.dir(i)) for i in ids], [], out, made="now")
    return out.read_text()


def _row(html: str, name: str) -> list[str]:
    found = re.search(rf"<tr><th>{re.escape(name)}</th>(.*?)</tr>", html, re.S)
    assert found, name
    return re.findall(r"<td>(.*?)</td>", found.group(1), re.S)


def test_a_rerun_whose_environment_differs_in_one_key(tmp_path):
    other = environment(packages={"master": "sha256:5e1f", "worker": "sha256:c0de"})
    datagen_pair(tmp_path / "runs", rerun_env=other)
    html = _page(tmp_path / "runs", tmp_path / "report.html")
    assert "Environments: the runs&#x27; environments differ in: packages.worker." in html
    assert (f"Run {RERUN} reruns run {ORIGINAL}: checksum 7f3a09c2d41e88b0: the same as run "
            f"{ORIGINAL}&#x27;s.") in html  # fmt: skip
    assert _row(html, "rerun of") == ["-", f"run {ORIGINAL}"]
    assert _row(html, "checksum") == ["7f3a09c2d41e88b0", "7f3a09c2d41e88b0"]
    assert _row(html, "params")[0] == _row(html, "params")[1]


def test_a_rerun_in_the_same_environment_with_another_checksum(tmp_path):
    datagen_pair(tmp_path / "runs", rerun_env=environment(), checksum="0000000000000001")
    html = _page(tmp_path / "runs", tmp_path / "report.html", (RERUN, ORIGINAL))  # any order
    assert "Environments: the runs&#x27; environments are the same." in html
    assert (f"Run {RERUN} reruns run {ORIGINAL}: checksum 0000000000000001: differs from run "
            f"{ORIGINAL}&#x27;s (7f3a09c2d41e88b0).") in html  # fmt: skip


def test_a_rerun_alone_names_its_original_and_compares_nothing(tmp_path):
    datagen_pair(tmp_path / "runs", rerun_env=environment())
    html = _page(tmp_path / "runs", tmp_path / "report.html", (RERUN,))
    assert _row(html, "rerun of") == [f"run {ORIGINAL}"]
    assert "reruns run" not in html and "Environments:" not in html


def test_a_runs_report_goes_into_its_folder_beside_its_original(tmp_path):
    datagen_pair(tmp_path / "runs", rerun_env=environment())
    store = FolderRunStore(tmp_path / "runs")
    written = report_run(store, store.load(RERUN), made="made now")
    assert written.html == store.dir(RERUN) / RUN_REPORT
    html = written.html.read_text()
    assert html.count("<th>run ") == 2 and f"reruns run {ORIGINAL}" in html
    assert all(p.parent == store.dir(RERUN) and p.exists() for p in written.pngs)
    alone = report_run(store, store.load(ORIGINAL), made="made now")
    assert alone.html.read_text().count("<th>run ") == 1


def test_a_rerun_whose_original_is_not_kept_is_reported_alone(tmp_path):
    datagen_pair(tmp_path / "runs", rerun_env=environment())
    store = FolderRunStore(tmp_path / "runs")
    (store.dir(ORIGINAL) / "record.json").unlink()  # another cluster's run, say
    written = report_run(store, store.load(RERUN), made="made now")
    assert written.html.read_text().count("<th>run ") == 1


def test_a_bench_runs_report_is_beside_its_table(tmp_path):
    folder = bench_run(tmp_path / "runs")
    (folder / "bench.md").write_text("| job | rows |\n")
    store = FolderRunStore(tmp_path / "runs")
    written = report_run(store, store.load(BENCH), made="made now")
    assert written.html == folder / "report.html" and (folder / "bench.md").exists()
    assert f"report-{BENCH}-bench.png" in [p.name for p in written.pngs]
    assert "Engines compared" in written.html.read_text()


def test_bench_says_where_its_report_is_and_never_fails_for_it(tmp_path):
    """What `clusterkit bench` runs once the bench is final (its cluster test:
    tests/jobs/test_bench.py): the report's path for --json and for the terminal; a report
    that cannot be written is a line saying why, not an error."""
    from clusterkit import cli

    folder = bench_run(tmp_path / "runs")
    store = FolderRunStore(tmp_path / "runs")
    extra, lines = cli._bench_report(store, store.load(BENCH))
    assert extra == {"report": str(folder / "report.html")}
    assert lines == [f"report: {folder / 'report.html'}"]
    (folder / "report.html").unlink()
    (folder / "report.html").mkdir()  # in the way
    extra, lines = cli._bench_report(store, store.load(BENCH))
    assert extra == {} and lines[0].startswith("report not written: IsADirectoryError")
