"""The cost since `up`: per instance, its runs from the kit's power log and EC2's record,
billed per second with 60 s at least per start; gp3 from each volume's creation; the public
IPv4 address while the master runs. Pure functions on describe_instances-shaped dicts, and
the reader against moto's EC2."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clusterkit.cli import main
from clusterkit.core import power_log
from clusterkit.core.power_log import PowerEvent
from clusterkit.core.state import ClusterPaths, Contexts
from clusterkit.providers.aws import accrued
from clusterkit.providers.aws.pricing import TABLE_SOURCE, Prices
from clusterkit.providers.aws.provider import AwsProvider
from tests.aws.conftest import REGION, make_cluster

T0 = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
T2_LARGE = 0.0928
GP3_GB_H = 0.08 / 730
IPV4_H = 0.005


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def s(minutes: float) -> float:
    return at(minutes).timestamp()


def event(kind: str, minutes: float, by: str = "clusterkit") -> PowerEvent:
    return PowerEvent(kind, s(minutes), at(minutes).isoformat(), by)


def gmt(minutes: float) -> str:
    return f"User initiated ({at(minutes):%Y-%m-%d %H:%M:%S} GMT)"


def instance(iid: str, role: str, *, state: str = "running", launched: float = 2,
             attached: float | None = None, reason: str = "", public: bool = False,
             itype: str = "t2.large") -> dict[str, Any]:  # fmt: skip
    """What describe_instances says of one node, times in minutes after T0 (``attached``:
    its first start, default ``launched``)."""
    first = launched if attached is None else attached
    found: dict[str, Any] = {
        "InstanceId": iid,
        "InstanceType": itype,
        "State": {"Name": state},
        "LaunchTime": at(launched),
        "StateTransitionReason": reason,
        "BlockDeviceMappings": [
            {"DeviceName": "/dev/xvda", "Ebs": {"AttachTime": at(first)}},
        ],
        "Tags": [
            {"Key": "clusterkit:cluster", "Value": "alpha"},
            {"Key": "Name", "Value": f"clusterkit-alpha-{role}"},
            {"Key": "clusterkit:role", "Value": role},
        ],
    }
    if public and state == "running":
        found["PublicIpAddress"] = "54.1.2.3"
    return found


def volume(vid: str, created: float, size: int = 15) -> dict[str, Any]:
    return {"VolumeId": vid, "Size": size, "VolumeType": "gp3", "CreateTime": at(created)}


def test_two_instances_one_stopped_half_the_time_by_hand():
    """`up` logged at 10:00; EC2 made both nodes at 10:02. The worker was stopped at 11:02
    by something other than the kit (only EC2 says so); `cost` asked at 12:02.

    master: 10:02 to 12:02 = 2 h * $0.0928 = $0.1856
    worker: 10:02 to 11:02 = 1 h * $0.0928 = $0.0928
    gp3: 2 volumes * 15 GB * 2 h = 60 GB-h * $0.08/730 = $0.0065753
    public IPv4 (the master's): 2 h * $0.005 = $0.01
    total $0.2949753"""
    instances = [
        instance("i-master", "master", public=True),
        instance("i-worker", "worker", state="stopped", reason=gmt(62)),
    ]
    volumes = [volume("vol-1", 2), volume("vol-2", 2)]
    found = accrued.accrue(instances, volumes, [event("up", 0)], now=s(122),
                           prices=Prices(REGION))  # fmt: skip
    by_role = {i.role: i for i in found.instances}
    assert by_role["master"].spans == [(s(2), s(122))]
    assert by_role["worker"].spans == [(s(2), s(62))]
    assert by_role["master"].hours == pytest.approx(2.0)
    assert by_role["worker"].hours == pytest.approx(1.0)
    assert by_role["worker"].usd == pytest.approx(0.0928)
    extras = {e.what: e for e in found.extras}
    assert extras["gp3"].quantity == pytest.approx(60.0)
    assert extras["public IPv4"].quantity == pytest.approx(2.0)
    by_hand = 2 * T2_LARGE + 1 * T2_LARGE + 60 * GP3_GB_H + 2 * IPV4_H
    assert by_hand == pytest.approx(0.2949753, abs=1e-7)
    assert found.usd == pytest.approx(by_hand)
    assert found.since == s(0)
    assert found.formula() == (
        "master t2.large 2.00 h × $0.0928/h + worker t2.large 1.00 h × $0.0928/h + "
        "gp3 60.00 GB-h × $0.0001096/GB-h + public IPv4 2.00 h × $0.005/h = $0.2950"
    )
    assert found.source == TABLE_SOURCE
    assert found.notes == [] and found.skipped == []


def test_a_kit_stop_and_start_counts_both_runs_and_not_the_gap():
    """Logged: up 10:00, stop 11:00, start 12:00; EC2 first started the nodes at 10:00:30
    and last at 12:00:05 (a few seconds after the kit logged `start`); now 13:00.
    Each node: 10:00:30 to 11:00 (59.5 min) + 12:00:05 to 13:00 (59 min 55 s)."""
    events = [event("up", 0), event("stop", 60), event("start", 120)]
    instances = [instance("i-m", "master", launched=120 + 5 / 60, attached=0.5, public=True),
                 instance("i-w", "worker", launched=120 + 5 / 60, attached=0.5)]  # fmt: skip
    found = accrued.accrue(instances, [], events, now=s(180), prices=Prices(REGION))
    expected = (59.5 + 59 + 55 / 60) / 60
    for line in found.instances:
        assert line.spans == [(s(0.5), s(60)), (s(120 + 5 / 60), s(180))]
        assert line.hours == pytest.approx(expected)
    extras = {e.what: e.quantity for e in found.extras}
    assert extras == {"public IPv4": pytest.approx(expected)}  # no volumes given
    assert found.notes == []


def test_each_start_bills_a_minute_at_least():
    events = [event("up", 0), event("stop", 0.1)]
    instances = [instance("i-w", "worker", state="stopped", launched=0.05,
                          reason=gmt(0.1))]  # fmt: skip
    found = accrued.accrue(instances, [], events, now=s(30), prices=Prices(REGION))
    assert found.instances[0].spans == [(s(0.05), s(0.1))]  # 3 s
    assert found.instances[0].hours == pytest.approx(60 / 3600)


def test_a_stop_nobody_logged_before_a_kit_start_is_counted_then_recorded():
    """The idle guard stopped both nodes at 11:00 (not in the kit's log); the kit started
    them at 12:00. Without the stop in the log the gap counts (an upper bound, said); with
    the stop `start` records from EC2 (unlogged_stop), it does not."""
    up = [event("up", 0)]
    stopped = [instance("i-m", "master", state="stopped", reason=gmt(60)),
               instance("i-w", "worker", state="stopped", reason=gmt(59))]  # fmt: skip
    assert accrued.unlogged_stop(stopped, up) == s(60)
    assert accrued.unlogged_stop(stopped, [*up, event("stop", 60)]) is None  # logged already
    assert accrued.unlogged_stop([stopped[0], instance("i-w", "worker")], up) is None

    restarted = [instance("i-m", "master", launched=120.1, attached=2),
                 instance("i-w", "worker", launched=120.1, attached=2)]  # fmt: skip
    guessed = accrued.accrue(restarted, [], [*up, event("start", 120)], now=s(180),
                             prices=Prices(REGION))  # fmt: skip
    assert guessed.instances[0].spans == [(s(2), s(120.1)), (s(120.1), s(180))]
    assert any("the stop between was not logged" in note for note in guessed.notes)

    logged = [*up, event("stop", 60, by="ec2"), event("start", 120)]
    exact = accrued.accrue(restarted, [], logged, now=s(180), prices=Prices(REGION))
    assert exact.instances[0].spans == [(s(2), s(60)), (s(120.1), s(180))]
    assert exact.notes == []


def test_only_the_latest_life_of_the_state_folder_counts():
    events = [event("up", -600), event("down", -500), event("up", 0)]
    assert accrued.current_life(events) == [event("up", 0)]
    assert accrued.current_life([event("start", 0)]) == []
    found = accrued.accrue([instance("i-m", "master", launched=0)], [], events, now=s(60),
                           prices=Prices(REGION))  # fmt: skip
    assert found.since == s(0) and found.instances[0].hours == pytest.approx(1.0)


def test_a_stopped_instance_with_no_stop_time_ends_at_the_logs_stop():
    events = [event("up", 0), event("stop", 30)]
    inst = instance("i-w", "worker", state="stopped", launched=0, reason="")
    found = accrued.accrue([inst], [], events, now=s(90), prices=Prices(REGION))
    assert found.instances[0].spans == [(s(0), s(30))]
    assert "EC2 gives no stop time" in found.notes[0]


def test_no_up_in_the_log_prices_ec2s_last_run_and_says_so():
    found = accrued.accrue([instance("i-m", "master", launched=0)], [volume("v", 0)], [],
                           now=s(60), prices=Prices(REGION))  # fmt: skip
    assert found.instances[0].hours == pytest.approx(1.0)
    assert found.since == s(0)  # the volume's creation
    assert "has no `up`" in found.notes[0]


def test_stop_time_and_epoch():
    assert accrued.stop_time({"StateTransitionReason": gmt(62)}) == s(62)
    assert accrued.stop_time({"StateTransitionReason": "User initiated (2026-12-01 11:02:00 "
                                                        "UTC)"}) == s(62)  # moto's  # fmt: skip
    assert accrued.stop_time({"StateTransitionReason": ""}) is None
    assert accrued.epoch("2026-12-01T10:00:00+00:00") == s(0)
    assert accrued.epoch(datetime(2026, 12, 1, 10, 0)) == s(0)  # naive: UTC
    assert accrued.epoch("yesterday") is None


# --- the reader, against moto's EC2 -----------------------------------------------------


def test_the_reader_reads_moto_s_answers(ec2, tmp_path):
    """Two tagged nodes made now, the worker stopped; the log's `up` a minute before; priced
    an hour on."""
    made = make_cluster(ec2, "alpha")
    power_log.record(tmp_path, "up", at=time.time() - 60)
    (tmp_path / "power.jsonl").open("a").write("not json\n")
    ec2.stop_instances(InstanceIds=[made["worker"]])
    now = time.time() + 3600
    found = accrued.accrued(ec2, "alpha", tmp_path, prices=Prices(REGION),
                            cluster_id=made["cluster_id"], now=now)  # fmt: skip
    by_id = {i.instance_id: i for i in found.instances}
    assert set(by_id) == {made["master"], made["worker"]}
    master, worker = by_id[made["master"]], by_id[made["worker"]]
    assert (master.state, worker.state) == ("running", "stopped")
    assert (master.name, master.instance_type) == ("master", "t2.large")
    assert master.hours == pytest.approx(1.0, abs=0.02)  # launched now, priced in an hour
    assert worker.hours == pytest.approx(60 / 3600, abs=0.01)  # stopped at once: a minute
    extras = {e.what: e.quantity for e in found.extras}
    assert extras["gp3"] == pytest.approx(30.0, abs=0.5)  # 2 * 15 GB for an hour
    assert extras["public IPv4"] == pytest.approx(1.0, abs=0.02)  # the master's
    assert len(found.skipped) == 1 and "power.jsonl:2: skipped" in found.skipped[0]
    other = make_cluster(ec2, "alpha", key_name="k2")  # same name, another id: not ours
    again = accrued.accrued(ec2, "alpha", tmp_path, prices=Prices(REGION),
                            cluster_id=made["cluster_id"], now=now)  # fmt: skip
    assert {i.instance_id for i in again.instances} == set(by_id)
    assert other["master"] not in {i.instance_id for i in again.instances}


def test_cost_cli_shows_the_accrued_figure_and_the_source(ec2, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLUSTERKIT_HOME", str(tmp_path / "home"))
    made = make_cluster(ec2, "alpha")
    paths = ClusterPaths(tmp_path / "home" / "clusters" / "alpha")
    Contexts().add("alpha", paths.root)
    AwsProvider.terraform(paths).write_vars({"cluster_name": "alpha", "region": REGION,
                                             "cluster_id": made["cluster_id"]})  # fmt: skip
    power_log.record(paths.root, "up", at=time.time() - 1800)
    assert main(["cost", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["hourly_usd"] == pytest.approx(0.1939, abs=1e-4)  # today's keys are kept
    assert {"lines", "formula", "price_table_date", "sources"} <= set(data)
    assert data["source"] == TABLE_SOURCE  # moto has no Price List API: the table, said
    assert any("AWS Price List API could not be asked" in note for note in data["notes"])
    assert data["accrued_usd"] == pytest.approx(data["accrued"]["usd"])
    assert data["accrued_formula"].startswith("master t2.large")
    assert main(["cost"]) == 0
    out = capsys.readouterr().out
    assert "since up (" in out and f"  master t2.large {made['master']} (running): " in out
    assert f"prices: {TABLE_SOURCE} (AWS on-demand list prices, Linux)" in out
