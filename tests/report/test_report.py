"""`clusterkit report`: run folders and bench files as the kit writes them, read, drawn and
written as one page with PNGs beside it; runs side by side; bad input refused; a run without
metrics still gets its page, saying what is missing and why. No cluster needed."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from matplotlib.patches import Rectangle

from clusterkit import cli
from clusterkit.core.errors import BadInput
from clusterkit.core.state import ClusterPaths, Contexts
from clusterkit.exec.local import LocalRunner
from clusterkit.report import (
    ENVIRONMENT_KEY,
    Bench,
    Written,
    compare_environments,
    read_bench,
    read_run,
    write_report,
)
from clusterkit.report import figures as figs
from clusterkit.runs.master import MasterRunStore
from clusterkit.runs.store import FolderRunStore
from tests.report.builders import (
    BENCH,
    ETL,
    FAILED,
    LENET,
    NO_METRICS,
    TRAIN,
    bench_file,
    bench_run,
    etl_run,
    failed_run,
    lenet_run,
    no_metrics_run,
    png_check,
    train_run,
    two_node_samples,
    write_run,
)


def _read(root: Path, run_id: str):
    store = FolderRunStore(root)
    return read_run(store.load(run_id), store.dir(run_id))


def _report(tmp_path: Path, *run_ids: str, benches: Sequence[Bench] = ()) -> tuple[Path, Written]:
    """The report of ``run_ids`` (read from ``tmp_path/runs``) and ``benches``, written to
    ``tmp_path/report.html``: the page's path and what was written."""
    out = tmp_path / "report.html"
    runs = [_read(tmp_path / "runs", i) for i in run_ids]
    return out, write_report(runs, list(benches), out, made="made now")


def _images(html: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html)


def _assert_pngs_are_figures(out: Path, names: list[str]) -> None:
    for name in names:
        width, height, ink = png_check(out.parent / name)
        assert width >= 600 and height >= 200, (name, width, height)
        assert 0.02 < ink < 0.9, f"{name}: {ink:.1%} of its pixels differ from the background"


def _assert_self_contained(html: str) -> None:
    assert not re.search(r"https?://", html, re.I)
    assert "<script" not in html.lower()
    for src in _images(html):  # beside the page, by a relative name
        assert "/" not in src and ":" not in src, src


# --- reading ---------------------------------------------------------------------------------


def test_a_run_folder_is_read_into_stages_samples_and_peaks(tmp_path):
    etl_run(tmp_path)
    data = _read(tmp_path, ETL)
    assert list(data.stages) == ["open", "transform_write", "verify"]
    assert {s.node for s in data.samples} == {"master", "worker"}
    assert len(data.samples) == 76 and data.samples[0].t == pytest.approx(0.1)
    assert data.samples == sorted(data.samples, key=lambda s: s.t)
    worker_peak = max((s for s in data.samples if s.node == "worker"),
                      key=lambda s: s.run_rss_bytes or 0)  # fmt: skip
    assert round(worker_peak.t) == 21  # the builder's peak at 20 s, sampled 0.6 s later
    assert data.missing == {} and data.environment is None and data.trials == []


def test_a_half_written_metrics_line_is_passed_over(tmp_path):
    folder = etl_run(tmp_path)
    with open(folder / "metrics.jsonl", "a") as out:
        out.write('{"t": 17000, "node": "mas')  # the supervisor mid-write
    assert len(_read(tmp_path, ETL).samples) == 76


def test_stages_of_a_run_that_stopped_early_come_from_stages_json(tmp_path):
    failed_run(tmp_path)
    data = _read(tmp_path, FAILED)
    assert data.result is None and data.stages == {"open": 2.4}
    assert data.missing == {"metrics": "the run folder has no metrics.jsonl (no sample was taken)"}


def test_the_search_and_the_epochs_are_read(tmp_path):
    train_run(tmp_path)
    lenet_run(tmp_path)
    search = _read(tmp_path, TRAIN).trials
    assert len(search) == 6 and [t.label for t in search if t.best] == [
        "hist_gradient_boosting(learning_rate=0.1, max_iter=200)"]  # fmt: skip
    assert search[0].fold_mse == pytest.approx((4.1e8 * 0.96, 4.1e8 * 1.01, 4.1e8 * 1.03))
    curves = _read(tmp_path, LENET).epochs
    assert [e.epoch for e in curves] == [1, 2, 3, 4, 5, 6]
    assert curves[-1].test_accuracy == 0.987


def test_a_running_lenet_run_is_read_from_epochs_json(tmp_path):
    folder = lenet_run(tmp_path)
    (folder / "result.json").unlink()
    (folder / "epochs.json").write_text(json.dumps(json.loads(
        (folder / "epochs.json").read_text())[:3]))  # fmt: skip
    assert [e.epoch for e in _read(tmp_path, LENET).epochs] == [1, 2, 3]


@pytest.mark.parametrize("wrapped", [False, True])
def test_a_bench_file_is_read_with_the_source_projects_figures(tmp_path, wrapped):
    bench = read_bench(bench_file(tmp_path / "bench.json", wrapped=wrapped))
    assert len(bench.rows) == 12
    etl_30m = [r for r in bench.rows if (r.job, r.rows) == ("etl", 30_000_000)]
    assert {r.published for r in etl_30m} == {"34.1 s median, 30.8-71.3 s (10 runs, t2.large)"}
    assert etl_30m[-1].ratio_to_fastest == 1.0  # duckdb, the fastest: the file's own ratio
    figure = etl_30m[0].published_figure
    assert figure is not None and (figure.median_s, figure.max_s) == (34.1, 71.3)
    small = [r for r in bench.rows if r.rows == 1_000_000]
    assert all(r.published_figure is None and r.published == "none published" for r in small)
    failed = [r for r in bench.rows if r.median_s is None]
    assert [(r.job, r.engine, r.error) for r in failed] == [
        ("top-earners", "ray", "RayTaskError: out of memory")]  # fmt: skip
    assert ("commit 4772dfb" in bench.measured) is not wrapped


def test_the_repositorys_own_bench_result_reads(tmp_path):
    engines = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "engines.json"
    bench = read_bench(engines)
    assert {r.engine for r in bench.rows} == {"spark", "ray", "duckdb", "seed-paper"}
    assert sum(1 for r in bench.rows if r.published_figure is not None) == 4  # etl at 30M


@pytest.mark.parametrize(("content", "said"), [
    (None, "cannot read the bench file"),
    ("{not json", "is not JSON"),
    (json.dumps({"rows": 3}), "holds no bench table"),
    (json.dumps({"table": []}), "holds no bench table"),
    (json.dumps({"table": [{"job": "etl", "engine": "spark"}]}), "row 1 of the bench table"),
    (json.dumps({"table": [{"job": "etl", "engine": "spark", "rows": "many"}]}), "row 1 has rows"),
])  # fmt: skip
def test_a_bad_bench_file_is_refused_naming_it(tmp_path, content, said):
    path = tmp_path / "my bench.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BadInput, match=re.escape(said)) as caught:
        read_bench(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


# --- the environment hook --------------------------------------------------------------------


def test_whether_environments_differ():
    assert "not known" in compare_environments([None, None])
    assert "run 2 (by column)" in compare_environments([{"python": "3.11"}, None])
    same = {"python": "3.11.7", "spark": "4.3.0", "nodes": {"worker": {"cpus": 2}}}
    assert compare_environments([same, dict(same)]) == "the runs' environments are the same"
    other = {**same, "nodes": {"worker": {"cpus": 4}}, "java": "17"}
    assert compare_environments([same, other]) == (
        "the runs' environments differ in: java, nodes.worker.cpus"
    )
    assert compare_environments([same]) == ""


def test_a_records_environment_block_is_read_when_there_is_one(tmp_path):
    block = {"python": "3.11.7", "spark": "4.3.0"}
    write_run(tmp_path, ETL, "etl", params={}, wall_s=1.0, extra_record={ENVIRONMENT_KEY: block})
    assert _read(tmp_path, ETL).environment == block


# --- the page --------------------------------------------------------------------------------


def test_one_runs_page_and_its_figures(tmp_path):
    etl_run(tmp_path / "runs")
    out = tmp_path / "out" / "etl report.html"
    written = write_report([_read(tmp_path / "runs", ETL)], [], out, made="made now")
    html = out.read_text()
    names = [f"etl_report-{ETL}-stages.png", f"etl_report-{ETL}-memory.png"]
    assert [p.name for p in written.pngs] == names and written.missing == []
    assert _images(html) == names
    _assert_pngs_are_figures(out, names)
    _assert_self_contained(html)
    for title in ("<title>clusterkit report</title>", "<h2>Run</h2>", "Wall time by stage",
                  "Memory over time", f"run {ETL}", "30,000,000", "35.8 s"):  # fmt: skip
        assert title in html, title
    assert "Environments:" not in html  # one run: nothing to compare


def test_the_stage_figure_shows_what_no_stage_covers():
    figure = figs.stage_times({"open": 6.5, "query": 1.0}, 9.0, "t")
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    assert labels == ["open", "query", figs.OUTSIDE_STAGES]
    bars = [p for p in figure.axes[0].patches if isinstance(p, Rectangle)]
    assert [round(p.get_width(), 2) for p in bars] == [6.5, 1.0, 1.5]


def test_the_memory_figure_marks_each_nodes_peak(tmp_path):
    etl_run(tmp_path)
    figure = figs.memory_over_time(_read(tmp_path, ETL).samples, "t")
    rss, used = figure.axes[0], figure.axes[1]
    assert rss.get_title() == "the run's processes (RSS)" and used.get_title() == "node memory used"
    notes = [t.get_text() for t in rss.texts]
    assert notes == ["peak 787.2 MiB", "peak 1.6 GiB"]  # master (0.3 GiB + 80 MiB + its shared
    # server's 400 MiB), worker
    assert rss.get_ylabel() == "GiB"


def test_train_and_lenet_get_the_search_and_the_learning_curves(tmp_path):
    train_run(tmp_path / "runs")
    lenet_run(tmp_path / "runs")
    out, written = _report(tmp_path, TRAIN, LENET)
    names = [p.name for p in written.pngs]
    assert f"report-{TRAIN}-search.png" in names and f"report-{LENET}-epochs.png" in names
    _assert_pngs_are_figures(out, names)
    html = out.read_text()
    assert "Hyperparameter search" in html and "Learning curves" in html
    assert "does not apply to a train run" in html and "does not apply to a lenet run" in html
    search = figs.search_results(_read(tmp_path / "runs", TRAIN).trials, "t", 2.21e8)
    assert search.axes[0].get_yticklabels()[0].get_text().startswith("best: hist_gradient")


def test_a_search_whose_folds_are_equal_is_drawn(tmp_path):
    """A trial whose folds are all equal has a mean an ulp above (0.1) or below (0.7) them,
    as np.mean gives it in jobs/_search.py: its whiskers are 0, not refused as negative."""
    means = [float(np.mean([v] * 3)) for v in (0.1, 0.7)]
    assert means[0] > 0.1 and means[1] < 0.7  # the case at hand
    found = [{"number": n, "search": "default", "model": "ridge", "params": {"alpha": n},
              "label": f"ridge(alpha={n})", "cv_mse": mean, "fold_mse": [v] * 3}
             for n, (v, mean) in enumerate(zip((0.1, 0.7), means, strict=True))]  # fmt: skip
    write_run(tmp_path / "runs", TRAIN, "train", params={}, wall_s=3.0,
              result={"stages": {"search": 2.0}, "mse": 0.1, "trial_results": found},
              samples=two_node_samples(3, peak_at=1))  # fmt: skip
    out, written = _report(tmp_path, TRAIN)
    assert written.missing == []
    assert f"report-{TRAIN}-search.png" in [p.name for p in written.pngs]
    _assert_pngs_are_figures(out, [f"report-{TRAIN}-search.png"])


def test_a_figure_that_raises_is_missing_and_the_page_still_written(tmp_path, monkeypatch):
    def refuses(*args, **kwargs):
        raise ValueError("'xerr' must not contain negative values")

    monkeypatch.setattr(figs, "search_results", refuses)
    monkeypatch.setattr(figs, "bench_comparison", refuses)
    train_run(tmp_path / "runs")
    bench = read_bench(bench_file(tmp_path / "bench.json"))
    out, written = _report(tmp_path, TRAIN, benches=[bench])
    why = "ValueError: 'xerr' must not contain negative values"
    assert written.missing == [f"run {TRAIN}: Hyperparameter search: {why}",
                               f"bench {bench.source}: Engines compared: {why}"]  # fmt: skip
    names = [p.name for p in written.pngs]
    assert names == [f"report-{TRAIN}-stages.png", f"report-{TRAIN}-memory.png"]
    assert sorted(p.name for p in tmp_path.glob("*.png")) == sorted(names)  # none half-written
    html = out.read_text()
    assert "Hyperparameter search not drawn: ValueError: &#x27;xerr&#x27; must not" in html
    assert "Engines compared not drawn: ValueError" in html
    assert _images(html) == names


def test_a_figure_that_cannot_be_written_stops_the_report(tmp_path, monkeypatch):
    def full(figure, path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(figs, "save_png", full)
    etl_run(tmp_path / "runs")
    with pytest.raises(OSError, match="No space left"):
        write_report([_read(tmp_path / "runs", ETL)], [], tmp_path / "r.html", made="made now")


def test_runs_side_by_side_say_whether_their_environments_differ(tmp_path):
    etl_run(tmp_path / "runs")
    etl_run(tmp_path / "runs", "20261121-100500-abcd", engine="ray")
    out, _ = _report(tmp_path, ETL, "20261121-100500-abcd")
    html = out.read_text()
    assert "<h2>2 runs side by side</h2>" in html
    header = re.search(r"<thead>(.*?)</thead>", html, re.S)
    assert header and header.group(1).count("<th>run ") == 2
    row = re.search(r"<tr><th>Memory over time</th>(.*?)</tr>", html, re.S)
    assert row and _images(row.group(1)) == [f"report-{ETL}-memory.png",
                                             "report-20261121-100500-abcd-memory.png"]  # fmt: skip
    assert "Environments: whether the runs&#x27; environments differ is not known" in html


def test_a_run_without_metrics_still_gets_a_page_saying_what_is_missing(tmp_path):
    no_metrics_run(tmp_path / "runs")
    failed_run(tmp_path / "runs")
    out, written = _report(tmp_path, NO_METRICS, FAILED)
    assert [p.name for p in written.pngs] == [f"report-{NO_METRICS}-stages.png",
                                              f"report-{FAILED}-stages.png"]  # fmt: skip
    assert written.missing == [
        f"run {NO_METRICS}: Memory over time: the run was started with --no-metrics: no memory "
        "was sampled",
        f"run {FAILED}: Memory over time: the run folder has no metrics.jsonl (no sample was "
        "taken)",
    ]
    html = out.read_text()
    assert "Figures not drawn" in html and "--no-metrics" in html
    assert "Memory over time not drawn: the run folder has no metrics.jsonl" in html
    _assert_pngs_are_figures(out, [p.name for p in written.pngs])


def test_names_and_values_are_escaped(tmp_path):
    hostile = '<img src=x onerror="alert(1)">&'
    write_run(tmp_path / "runs", ETL, "etl<b>", params={"name": hostile}, wall_s=3.0,
              result={"stages": {"<i>open</i>": 1.0}}, error=hostile)  # fmt: skip
    out = tmp_path / "report.html"
    write_report([_read(tmp_path / "runs", ETL)], [], out, made=hostile)
    html = out.read_text()
    assert all(
        re.fullmatch(r'<img src="[^"]+\.png" alt="[^"<>]*">', tag)
        for tag in re.findall(r"<img[^>]*>", html)
    )  # only the figures' own
    assert "<b>" not in html and "<i>" not in html and "<img src=x" not in html
    assert "etl&lt;b&gt;" in html and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;&amp;" in html


def test_a_bench_page_draws_the_engines_beside_the_published_figure(tmp_path):
    bench = read_bench(bench_file(tmp_path / "bench.json"))
    out = tmp_path / "docs" / "engines.html"
    written = write_report([], [bench], out, made="made now")
    assert [p.name for p in written.pngs] == ["engines-bench.png"]
    _assert_pngs_are_figures(out, ["engines-bench.png"])
    html = out.read_text()
    assert "Engines compared" in html and "34.1 s median, 30.8-71.3 s" in html
    assert "failed: RayTaskError: out of memory" in html
    _assert_self_contained(html)
    figure = figs.bench_comparison(bench.rows, "t")
    panels = {ax.get_title(): [t.get_text() for t in ax.get_xticklabels()] for ax in figure.axes}
    assert panels["etl, 30M rows (30,000,000)"] == ["spark", "ray", "duckdb", "source\npublished"]
    assert panels["etl, 1M rows (1,000,000)"] == ["spark", "ray", "duckdb"]
    top = next(ax for ax in figure.axes if ax.get_title().startswith("top-earners, 30M"))
    assert "failed" in [t.get_text() for t in top.texts]


def test_a_bench_run_gets_its_comparison_and_a_failed_one_says_why_not(tmp_path):
    bench_run(tmp_path / "runs")
    bench_run(tmp_path / "runs", "20261121-110000-0bad", succeeded=False)
    _, written = _report(tmp_path, BENCH, "20261121-110000-0bad")
    assert f"report-{BENCH}-bench.png" in [p.name for p in written.pngs]
    assert any("the bench run has no table in result.json" in m for m in written.missing)


def test_the_copies_of_a_remote_clusters_runs_are_reported(tmp_path):
    """A remote master's run folders (here a folder reached through a LocalRunner, as
    test_master_store does), copied by the store's refresh, then read from the copies."""
    master = tmp_path / "master" / "runs"
    etl_run(master)
    store = MasterRunStore(LocalRunner(), str(master), tmp_path / "laptop" / "runs")
    store.refresh()
    record = store.get("latest")
    assert store.dir(record.id).parent == tmp_path / "laptop" / "runs"
    written = write_report([read_run(record, store.dir(record.id))], [], tmp_path / "r.html",
                           made="made now")  # fmt: skip
    assert len(written.pngs) == 2 and written.missing == []


# --- the command -----------------------------------------------------------------------------


@pytest.fixture
def cluster_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A known cluster that is down (its runs kept here, as after `down` or for a remote
    cluster's copies); its run folder."""
    for name in ("CLUSTERKIT_CLUSTER", "CLUSTERKIT_SPEC", "CLUSTERKIT_JOBS_PATH"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("CLUSTERKIT_HOME", str(home))
    Contexts(home).add("rehearsal", home / "clusters" / "rehearsal")
    runs = ClusterPaths(home / "clusters" / "rehearsal").runs
    etl_run(runs)
    no_metrics_run(runs)
    return runs


def test_report_runs_side_by_side_from_the_cli(cluster_runs, tmp_path, capsys):
    out = tmp_path / "out" / "two.html"
    code = cli.main(["report", ETL[:17], "latest", ETL, "--bench",
                     str(bench_file(tmp_path / "b.json")), "-o", str(out)])  # fmt: skip
    assert code == 0
    said = capsys.readouterr().out
    assert f"report: {out} (4 figures beside it)" in said
    assert f"not drawn: run {NO_METRICS}: Memory over time: the run was started" in said
    html = out.read_text()
    assert html.count("<th>run ") == 2  # ETL asked for twice: once
    assert sorted(_images(html)) == sorted(p.name for p in out.parent.glob("*.png"))


def test_report_into_a_folder_writes_report_html(cluster_runs, tmp_path, capsys):
    assert cli.main(["report", ETL, "-o", str(tmp_path), "--cached"]) == 0
    assert (tmp_path / "report.html").exists()
    assert (tmp_path / f"report-{ETL}-memory.png").exists()


def test_report_says_a_figure_that_raised_and_exits_0(cluster_runs, tmp_path, capsys,
                                                      monkeypatch):  # fmt: skip
    def refuses(*args, **kwargs):
        raise ValueError("no room for the bars")

    monkeypatch.setattr(figs, "stage_times", refuses)
    out = tmp_path / "r.html"
    assert cli.main(["report", ETL, "-o", str(out)]) == 0
    said = capsys.readouterr().out
    assert f"report: {out} (1 figure beside it)" in said
    assert f"not drawn: run {ETL}: Wall time by stage: ValueError: no room for the bars" in said
    assert "Wall time by stage not drawn: ValueError: no room for the bars" in out.read_text()


@pytest.mark.parametrize(("args", "said"), [
    (["no-such-run"], "no run matching 'no-such-run'"),
    (["--bench", "missing.json"], "cannot read the bench file missing.json"),
    ([], "nothing to report"),
])  # fmt: skip
def test_report_refuses_bad_input_in_one_line(cluster_runs, tmp_path, capsys, monkeypatch,
                                              args, said):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert cli.main(["report", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and said in err and err.count("\n") == 1
    assert not (tmp_path / "report.html").exists()
