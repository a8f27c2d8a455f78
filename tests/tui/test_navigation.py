"""The console on a fixed cluster, driven with Pilot: views, keys, filter, the down cases."""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path

from textual.widgets import DataTable, Input, Static

from clusterkit.services import health as services
from clusterkit.tui.screens.compare import CompareScreen
from clusterkit.tui.screens.dialogs import JobFormScreen
from clusterkit.tui.screens.help import HelpScreen
from clusterkit.tui.screens.jobs import JobsScreen
from clusterkit.tui.screens.overview import NodeCard, OverviewScreen
from clusterkit.tui.screens.run_detail import RunDetailScreen
from clusterkit.watch import ClusterInfo
from tests.tui.conftest import FixedSource, fixed_app, ray_silent, settle


def rows(table: DataTable) -> dict[str, list[str]]:
    return {str(k.value): [str(c) for c in table.get_row(k)] for k in table.rows}


async def test_keys_switch_views_and_help_and_quit(fixed_store: Path):
    app = fixed_app(FixedSource(fixed_store))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, OverviewScreen)
        shown: dict[str, set[str]] = {}  # the keys the footer shows on each view
        for key, screen in (("j", JobsScreen), ("c", CompareScreen), ("o", OverviewScreen)):
            await pilot.press(key)
            assert isinstance(app.screen, screen), key
            shown[key] = {k for k, b in app.screen.active_bindings.items() if b.binding.show}
        assert {"slash", "x"} <= shown["j"] and "space" in shown["c"]
        assert not {"slash", "x", "space"} & shown["o"]
        assert {"o", "j", "c", "p", "question_mark", "q"} <= shown["o"]
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert isinstance(app.screen, OverviewScreen)
        await pilot.press("q")
    assert app.return_code == 0


async def test_overview_shows_nodes_and_services_and_pause_holds_them(fixed_store: Path):
    source = FixedSource(fixed_store)
    app = fixed_app(source)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot, polls=3)
        cards = {c.node: c for c in app.screen.query(NodeCard)}
        assert set(cards) == {"master", "worker"}
        assert len(cards["master"].cpu) == 4  # mount + 3 polls, one point each
        services = rows(app.screen.query_one("#services", DataTable))
        assert services["spark-master spark://10.0.0.10:7077"][1] == "up"
        assert "up 1 h 02 min" in str(app.screen.query_one("#cluster-line", Static).render())
        await pilot.press("p")
        calls = source.calls
        await settle(pilot, polls=2)
        assert source.calls == calls  # paused: nothing read
        assert "PAUSED" in str(app.screen.query_one("#cluster-line", Static).render())
        await pilot.press("p")
        await settle(pilot)
        assert source.calls == calls + 1


async def test_a_service_that_stops_answering_is_shown_down_and_its_rows_stale(fixed_store: Path):
    source = FixedSource(fixed_store)
    app = fixed_app(source)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        source.readings = ray_silent
        await settle(pilot, polls=2)  # services are read every other tick
        services = rows(app.screen.query_one("#services", DataTable))
        head = services["ray-head 10.0.0.10:6379"]
        assert head[1] == "DOWN" and "STALE" in head[2] and "not answering" in head[3]
        worker_node = services["ray-node 10.0.0.11:6380"]
        assert (
            worker_node[1] == "up" and worker_node[2] == "3.0 s STALE"
        )  # last answered at mount, 3 ticks ago
        assert "STALE" not in services["spark-master spark://10.0.0.10:7077"][2]


async def test_a_cluster_that_is_down_is_said_in_place(fixed_store: Path):
    source = FixedSource(fixed_store)
    source.info_value = ClusterInfo("demo", "down", message="cluster 'demo' is down: start it")
    source.readings = list
    app = fixed_app(source)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        assert not list(app.screen.query(NodeCard))
        assert "cluster 'demo' is down" in str(app.screen.query_one("#notice", Static).render())
        await pilot.press("j")  # the history stays readable
        assert "20261121-100000-aaaa" in rows(app.screen.query_one("#history", DataTable))


async def test_a_reading_that_raises_is_shown_not_a_crash(fixed_store: Path):
    source = FixedSource(fixed_store)

    def broken():
        raise ConnectionError("dashboard hung up")

    source.readings = broken
    app = fixed_app(source)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        notice = str(app.screen.query_one("#notice", Static).render())
        assert "reading services failed: ConnectionError: dashboard hung up" in notice


async def test_jobs_history_filter_and_running_job(fixed_store: Path):
    app = fixed_app(FixedSource(fixed_store))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("j")
        running = rows(app.screen.query_one("#running", DataTable))
        assert list(running) == ["20261121-115920-eeee"]
        _, job, elapsed, peak, progress = running["20261121-115920-eeee"]
        # it started 40 s before the clock, which one tick moved on by 1 s
        assert (job, elapsed, progress) == ("train", "41.0 s", "38% of 8 trials")
        assert peak == "1.5 GiB"  # the highest sample in its metrics.jsonl: 1.46 GiB
        history = app.screen.query_one("#history", DataTable)
        assert len(rows(history)) == 4
        await pilot.press("slash")
        await pilot.press(*"spark")
        assert list(rows(history)) == ["20261121-100200-cccc"]
        await pilot.press("escape")
        assert app.screen.query_one("#filter", Input).value == ""
        assert len(rows(history)) == 4


async def test_enter_opens_a_form_and_a_run(fixed_store: Path):
    app = fixed_app(FixedSource(fixed_store))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("j")
        catalog = app.screen.query_one("#catalog", DataTable)
        catalog.move_cursor(row=catalog.get_row_index("etl"))
        await pilot.press("enter")
        assert isinstance(app.screen, JobFormScreen) and app.screen.job.name == "etl"
        await pilot.press("escape")
        app.screen.query_one("#running", DataTable).focus()
        await pilot.press("enter")
        assert isinstance(app.screen, RunDetailScreen)
        await settle(pilot)
        assert "search" in str(app.screen.query_one("#stages", Static).render())
        await pilot.press("escape")
        assert isinstance(app.screen, JobsScreen)


async def test_compare_selects_runs_alike(fixed_store: Path):
    app = fixed_app(FixedSource(fixed_store))
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await pilot.press("c")
        table = app.screen.query_one("#runs", DataTable)
        table.move_cursor(row=table.get_row_index("20261121-100000-aaaa"))
        await pilot.press("a")
        screen = app.screen
        assert isinstance(screen, CompareScreen)
        assert screen.selected == {"20261121-100000-aaaa", "20261121-100100-bbbb",
                                       "20261121-100200-cccc"}  # fmt: skip
        bars = str(app.screen.query_one("#bars", Static).render())
        assert "etl 30M spark" in bars and "34.1 s median" in bars  # the published reference
        await pilot.press("n")
        assert not screen.selected


async def test_a_real_api_that_goes_away_is_shown_down(fixed_store: Path):
    """The Spark master's /json/ served over real HTTP, read by the real reader, then stopped."""
    worker = {"id": "w1", "host": "127.0.0.1", "port": 7078, "state": "ALIVE", "cores": 2,
              "memory": 2048, "webuiaddress": "http://127.0.0.1:8081"}  # fmt: skip
    connect = {"id": "app-1", "name": "clusterkit-spark-connect", "state": "RUNNING", "cores": 0}
    master = {"url": "spark://127.0.0.1:7077", "status": "ALIVE", "aliveworkers": 1,
              "workers": [worker], "activeapps": [connect]}  # fmt: skip

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(master).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    ui_url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    source = FixedSource(fixed_store)
    source.readings = lambda: services.spark_health(
        "spark://127.0.0.1:7077", ui_url, "sc://localhost:15002"
    )
    app = fixed_app(source)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            shown = rows(app.screen.query_one("#services", DataTable))
            assert shown["spark-master spark://127.0.0.1:7077"][1] == "up"
            assert shown["spark-worker 127.0.0.1:7078"][1] == "up"
            warm = shown["spark-connect sc://localhost:15002"]
            assert warm[1] == "up" and "RUNNING, app-1, 0 cores held now" in warm[3]
            server.shutdown()
            server.server_close()
            await settle(pilot, polls=2)
            shown = rows(app.screen.query_one("#services", DataTable))
            head = shown["spark-master spark://127.0.0.1:7077"]
            assert head[1] == "DOWN" and "not answering: ConnectionError" in head[3]
            assert "STALE" in shown["spark-worker 127.0.0.1:7078"][2]
            assert shown["spark-connect sc://localhost:15002"][1] == "DOWN"
    finally:
        server.server_close()


def test_the_command_palette_offers_the_views_and_every_job(fixed_store: Path):
    app = fixed_app(FixedSource(fixed_store))
    titles = {c.title for c in app.get_system_commands(OverviewScreen())}
    assert {"Overview", "Jobs", "Compare", "Pause or resume refresh"} <= titles
    assert {"Submit etl", "Submit top-earners", "Submit train"} <= titles


async def test_the_header_shows_the_idle_guard_and_the_cost_of_a_cloud_cluster(fixed_store):
    source = FixedSource(fixed_store)
    source.info_value = ClusterInfo(
        "demo", "up", "aws", source.info_value.started_at,
        guard="idle for 12 min, stops in 48 min",
        cost="$0.1939/h now, $1.23 since up (list prices)",
    )  # fmt: skip
    app = fixed_app(source)
    async with app.run_test(size=(160, 24)) as pilot:
        await settle(pilot)
        line = app.cluster_line()
        assert "idle for 12 min, stops in 48 min" in line and "$1.23 since up" in line
        assert app.sub_title == line
