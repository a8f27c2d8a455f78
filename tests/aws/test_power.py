"""`clusterkit stop` and `start` on EC2 (clusterkit.providers.aws.power), on moto: the workers
are stopped before the master and the master started before the workers, each step waited
for; the master's new public address is read back; what a stopped cluster still bills; and
every refusal says what and how to go on."""

from __future__ import annotations

import time
from typing import Any

import pytest
from botocore.exceptions import ClientError, WaiterError
from paramiko import ECDSAKey, HostKeys

from clusterkit.core.errors import ClusterkitError
from clusterkit.exec.ssh import move_host_keys
from clusterkit.providers.aws import power, pricing
from tests.aws.conftest import REGION, cluster_tags, make_cluster


def _stop(ec2: Any, name: str = "alpha", **kwargs: Any) -> power.PowerChange:
    """power.stop, its waiters looking every 10 ms and giving up after 5 s."""
    return power.stop(ec2, name, delay_s=0.01, timeout_s=5.0, **kwargs)


def _start(ec2: Any, name: str = "alpha", **kwargs: Any) -> power.PowerChange:
    return power.start(ec2, name, delay_s=0.01, timeout_s=5.0, **kwargs)


class Recording:
    """The EC2 client, with each stop, start and wait recorded in the order they came."""

    def __init__(self, ec2: Any, *, fail: dict[str, Exception] | None = None) -> None:
        self._ec2, self._fail = ec2, fail or {}
        self.calls: list[tuple[str, ...]] = []

    def _act(self, verb: str, ids: list[str]) -> Any:
        self.calls.append((verb, *ids))
        if verb in self._fail:
            raise self._fail[verb]
        return getattr(self._ec2, f"{verb}_instances")(InstanceIds=ids)

    def stop_instances(self, *, InstanceIds: list[str]) -> Any:
        return self._act("stop", InstanceIds)

    def start_instances(self, *, InstanceIds: list[str]) -> Any:
        return self._act("start", InstanceIds)

    def get_waiter(self, name: str) -> Any:
        recording, waiter = self, self._ec2.get_waiter(name)

        class Waiter:
            def wait(self, **kwargs: Any) -> None:
                recording.calls.append((name, *kwargs["InstanceIds"]))
                if name in recording._fail:
                    raise recording._fail[name]
                waiter.wait(**kwargs)

        return Waiter()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ec2, name)


def _cluster(ec2: Any, name: str = "alpha", *, workers: int = 2, **kwargs: Any) -> dict[str, Any]:
    """What infra/ makes, the instances tagged with their role as infra/nodes.tf tags them,
    with ``workers`` workers."""
    made: dict[str, Any] = dict(make_cluster(ec2, name, **kwargs))
    ec2.create_tags(Resources=[made["master"]], Tags=[{"Key": power.ROLE_TAG_KEY,
                                                       "Value": "master"}])  # fmt: skip
    first = ec2.describe_instances(InstanceIds=[made["worker"]])["Reservations"][0]
    subnet = first["Instances"][0]["SubnetId"]
    more = ec2.run_instances(
        ImageId=first["Instances"][0]["ImageId"], InstanceType="t2.large", SubnetId=subnet,
        MinCount=workers - 1, MaxCount=workers - 1,
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": cluster_tags(name, made["cluster_id"])}],
    )["Instances"] if workers > 1 else []  # fmt: skip
    made["workers"] = sorted([made["worker"], *(i["InstanceId"] for i in more)])
    ec2.create_tags(Resources=made["workers"], Tags=[{"Key": power.ROLE_TAG_KEY,
                                                      "Value": "worker"}])  # fmt: skip
    return made


def _state(ec2: Any, instance_id: str) -> str:
    found = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return str(found["State"]["Name"])


def _public_ip(ec2: Any, instance_id: str) -> str | None:
    found = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return found.get("PublicIpAddress")


def test_stop_stops_the_workers_then_the_master_each_waited_for(ec2):
    made = _cluster(ec2)
    recording = Recording(ec2)
    said: list[str] = []
    change = _stop(recording, "alpha", cluster_id=made["cluster_id"], say=said.append)
    workers, master = made["workers"], made["master"]
    assert recording.calls == [
        ("stop", *workers), ("instance_stopped", *workers),
        ("stop", master), ("instance_stopped", master),
    ]  # fmt: skip
    assert change.acted == [*workers, master] and change.already == [] and change.changed
    assert {_state(ec2, i) for i in [*workers, master]} == {"stopped"}
    assert said == [f"stopping the workers: {', '.join(workers)}",
                    f"stopping the master: {master}"]  # fmt: skip


def test_start_starts_the_master_then_the_workers_and_reads_the_new_address(ec2):
    made = _cluster(ec2)
    _stop(ec2, "alpha", cluster_id=made["cluster_id"])
    assert _public_ip(ec2, made["master"]) is None  # EC2 took the address back
    recording = Recording(ec2)
    change = _start(recording, "alpha", cluster_id=made["cluster_id"])
    workers, master = made["workers"], made["master"]
    assert recording.calls == [
        ("start", master), ("instance_running", master),
        ("start", *workers), ("instance_running", *workers),
    ]  # fmt: skip
    assert {_state(ec2, i) for i in [*workers, master]} == {"running"}
    assert change.public_ip is not None and change.public_ip == _public_ip(ec2, master)
    assert power.master_public_ip(ec2, "alpha", cluster_id=made["cluster_id"]) == change.public_ip


def test_stop_and_start_again_change_nothing(ec2):
    made = _cluster(ec2, workers=1)
    _stop(ec2, "alpha")
    recording = Recording(ec2)
    again = _stop(recording, "alpha")
    assert not again.changed and sorted(again.already) == sorted([made["master"], made["worker"]])
    assert recording.calls == []
    _start(ec2, "alpha")
    recording = Recording(ec2)
    running = _start(recording, "alpha")
    assert not running.changed and recording.calls == []
    assert running.public_ip == _public_ip(ec2, made["master"])


def test_a_half_stopped_cluster_stops_what_runs_and_starts_what_does_not(ec2):
    made = _cluster(ec2, workers=2)
    first, second = made["workers"]
    ec2.stop_instances(InstanceIds=[first])  # the idle guard got this far, say
    recording = Recording(ec2)
    change = _stop(recording, "alpha")
    assert change.already == [first] and change.acted == [second, made["master"]]
    ec2.start_instances(InstanceIds=[made["master"]])
    recording = Recording(ec2)
    started = _start(recording, "alpha")
    assert started.already == [made["master"]] and started.acted == made["workers"]
    assert recording.calls[0] == ("start", *made["workers"])


def test_nothing_to_stop_or_start_is_said_with_what_to_do(ec2):
    with pytest.raises(ClusterkitError) as stopping:
        _stop(ec2, "ghost")
    assert str(stopping.value).startswith(
        f"cluster 'ghost' has no instances tagged clusterkit:cluster=ghost in {REGION}: "
        "nothing to stop;"
    )
    assert "`clusterkit down`" in str(stopping.value)
    with pytest.raises(ClusterkitError, match=r"nothing to start"):
        _start(ec2, "ghost")


def test_a_same_name_cluster_of_another_id_is_left_running(ec2):
    ours = _cluster(ec2, workers=1)
    theirs = _cluster(ec2, workers=1, key_name="k2")
    _stop(ec2, "alpha", cluster_id=ours["cluster_id"])
    assert _state(ec2, ours["master"]) == _state(ec2, ours["worker"]) == "stopped"
    assert _state(ec2, theirs["master"]) == _state(ec2, theirs["worker"]) == "running"
    assert set(power.states(ec2, "alpha", cluster_id=ours["cluster_id"]).values()) == {"stopped"}
    with pytest.raises(ClusterkitError, match=r"has 2 master instances .* expected one"):
        _stop(ec2, "alpha")  # no id: two masters, refused, not guessed


def test_an_instance_without_its_role_tag_is_refused_naming_it(ec2):
    made = make_cluster(ec2, "alpha")  # no clusterkit:role tags
    with pytest.raises(ClusterkitError, match=r"instance (i-\w+) has no clusterkit:role tag"):
        _stop(ec2, "alpha")
    assert _state(ec2, made["master"]) == _state(ec2, made["worker"]) == "running"


def test_a_waiter_that_gives_up_names_the_instances_and_stops_nothing_more(ec2):
    made = _cluster(ec2, workers=1)
    stuck = WaiterError("InstanceStopped", "Max attempts exceeded", {})
    recording = Recording(ec2, fail={"instance_stopped": stuck})
    with pytest.raises(ClusterkitError) as raised:
        _stop(recording, "alpha")
    message = str(raised.value)
    assert message.startswith(f"cluster 'alpha': {made['worker']} not stopped after 5 s")
    assert "EC2 console" in message
    assert ("stop", made["master"]) not in recording.calls  # the master still runs


def test_a_start_ec2_refuses_is_named_with_its_reason(ec2):
    made = _cluster(ec2, workers=1)
    _stop(ec2, "alpha")
    no_room = ClientError({"Error": {"Code": "InsufficientInstanceCapacity",
                                     "Message": "no t2.large capacity in us-east-1a"}},
                          "StartInstances")  # fmt: skip
    recording = Recording(ec2, fail={"start": no_room})
    with pytest.raises(ClusterkitError) as raised:
        _start(recording, "alpha")
    assert str(raised.value).startswith(f"cluster 'alpha': EC2 refused to start {made['master']}")
    assert "InsufficientInstanceCapacity" in str(raised.value)


def test_a_stopped_cluster_bills_only_its_volumes(ec2):
    made = _cluster(ec2, workers=1)
    _stop(ec2, "alpha", cluster_id=made["cluster_id"])
    held = pricing.running(ec2, "alpha", REGION, cluster_id=made["cluster_id"])
    assert {line.what: line.count for line in held.lines} == {"GB of gp3": 30}
    assert held.hourly == pytest.approx(30 * 0.08 / 730)


def test_the_master_host_key_follows_its_new_address(tmp_path):
    known_hosts = tmp_path / "known_hosts"
    master, worker = ECDSAKey.generate(), ECDSAKey.generate()
    keys = HostKeys()
    keys.add("54.1.2.3", master.get_name(), master)
    keys.add("10.0.2.10", worker.get_name(), worker)
    keys.save(str(known_hosts))
    assert move_host_keys(known_hosts, "54.1.2.3", "3.9.8.7") == [master.get_name()]
    after = HostKeys(str(known_hosts))
    assert after.lookup("54.1.2.3") is None
    assert after.lookup("3.9.8.7")[master.get_name()] == master  # the same key: no new trust
    assert after.lookup("10.0.2.10")[worker.get_name()] == worker
    assert move_host_keys(known_hosts, "54.1.2.3", "3.9.8.7") == []  # moved already
    with pytest.raises(ClusterkitError, match=r"holds no host key for 54\.9\.9\.9.*nothing was"):
        move_host_keys(known_hosts, "54.9.9.9", "3.1.1.1")


def test_status_of_a_cluster_the_idle_guard_powered_off_says_so_and_marks_it(
    ec2, tmp_path, monkeypatch
):
    """The guard stops the instances from inside, with no word to the kit: `status` asks EC2,
    says the cluster is stopped and by whom, and the state and the power log follow, so that
    `start` starts it (and `cost` stops counting) from EC2's stop time."""
    import sys

    from clusterkit import lifecycle
    from clusterkit.core import power_log
    from clusterkit.core.inventory import Inventory, Node, SshSettings
    from clusterkit.core.spec import parse_spec
    from clusterkit.core.state import ClusterState, Contexts, Endpoints, paths_for
    from clusterkit.providers.aws.provider import AwsProvider

    monkeypatch.setenv("CLUSTERKIT_HOME", str(tmp_path / "home"))
    made = _cluster(ec2, "alpha", workers=1)
    spec = parse_spec({"provider": "aws", "name": "alpha", "idle_guard": {"idle_minutes": 30}})
    paths = paths_for(spec)
    tf = AwsProvider.terraform(paths)
    tf.write_vars({"region": "us-east-1", "cluster_id": made["cluster_id"]})
    (paths.root / "terraform" / "cluster-id").write_text(made["cluster_id"] + "\n")
    nodes = (Node("master", "10.0.1.10", ("master",), ssh_host="198.51.100.10"),
             Node("worker", "10.0.2.10", ("worker",), jump_host="198.51.100.10"))  # fmt: skip
    ClusterState(
        name="alpha", provider="aws", spec=spec, started_at="2026-12-03T08:00:00.000+00:00",
        state_dir=str(paths.root), storage_root="hdfs://10.0.1.10:9000/clusterkit",
        inventory=Inventory("alpha", "aws", nodes), endpoints=Endpoints.for_spec(spec),
        node_python=sys.executable, runs_dir="/var/lib/clusterkit/runs",
        ssh=SshSettings("root", paths.root / "ssh" / "id_ed25519", paths.root / "known_hosts"),
    ).save(paths)  # fmt: skip
    Contexts().add("alpha", paths.root)
    power_log.record(paths.root, "up", at=time.time() - 3600)
    from clusterkit import power as kit_power
    from clusterkit.cluster import Cluster

    loaded = Cluster.load(paths)
    assert loaded is not None
    spend = kit_power.cost_summary(loaded)  # what status and the console show while it runs
    assert spend is not None and spend["hourly_usd"] == pytest.approx(0.1939)  # 2 t2.large
    assert 0 < spend["accrued_usd"] < 0.1  # just launched (moto): the accrual is tested apart
    assert spend["line"].startswith(f"${spend['hourly_usd']:.4f}/h now, $")
    ec2.stop_instances(InstanceIds=[made["master"], *made["workers"]])  # as the guard does

    status = lifecycle.status("alpha")
    assert status["state"] == "stopped", status
    assert status["stopped_by"].startswith("not the kit: every node was powered off")
    assert "its idle guard stops it after 30 idle minutes" in status["stopped_by"]
    assert status["still_billed"]["hourly_usd"] > 0  # the volumes
    state = ClusterState.load(paths)
    assert state is not None and state.power == "stopped" and state.stopped_at
    events = power_log.read(paths.root)[0]
    assert [(e.event, e.by) for e in events] == [("up", "clusterkit"), ("stop", "outside-the-kit")]
    again = lifecycle.status("alpha")  # known stopped now: EC2 is not asked to decide again
    assert again["state"] == "stopped" and "stopped_by" not in again
    assert len(power_log.read(paths.root)[0]) == 2
