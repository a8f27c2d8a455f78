"""Issue 23 without a cluster: the spec's worker count and per-role types, worker names and
their alias, the drain's readers of Spark's, Ray's and HDFS's reports, and `scale`'s errors
before it reaches any cluster (a scale of real clusters: tests/rehearsal/test_scale.py)."""

from pathlib import Path

import pytest
import yaml

from clusterkit import cli
from clusterkit.core.errors import BadInput, SpecError
from clusterkit.core.inventory import Inventory, Node
from clusterkit.core.spec import MAX_WORKERS, load_spec, parse_spec
from clusterkit.scale import check_count
from clusterkit.services import drain
from clusterkit.services.health import ServiceHealth


@pytest.mark.parametrize("provider", ["netns", "aws"])
@pytest.mark.parametrize("workers", [1, 2, MAX_WORKERS])
def test_remote_clusters_take_one_to_eight_workers(provider, workers):
    assert (
        parse_spec({"provider": provider, "nodes": {"workers": workers}}).nodes.workers == workers
    )


@pytest.mark.parametrize("workers", [0, MAX_WORKERS + 1])
def test_a_count_out_of_bounds_is_named(workers):
    with pytest.raises(SpecError, match=rf"nodes.workers = {workers} is not allowed"):
        parse_spec({"provider": "netns", "nodes": {"workers": workers}})


def test_the_local_provider_says_it_runs_one_worker():
    with pytest.raises(SpecError, match=r"nodes.workers = 2: the local provider runs one worker "
                                        r"\(this machine\); use --provider netns"):  # fmt: skip
        parse_spec({"nodes": {"workers": 2}})


def test_instance_types_per_role_and_the_older_single_field(tmp_path: Path):
    spec = parse_spec({"provider": "aws", "aws": {"worker_instance_type": "m5.xlarge",
                                                  "worker_market": "spot"}})  # fmt: skip
    assert (spec.aws.master_instance_type, spec.aws.worker_instance_type,
            spec.aws.worker_market) == ("t2.large", "m5.xlarge", "spot")  # fmt: skip
    older = parse_spec({"provider": "aws", "aws": {"instance_type": "m5.large"}})
    assert (older.aws.master_instance_type, older.aws.worker_instance_type) == ("m5.large",) * 2
    with pytest.raises(SpecError, match=r"aws.worker_market = 'reserved' is not allowed"):
        parse_spec({"provider": "aws", "aws": {"worker_market": "reserved"}})
    # the command line's overrides land in the spec (and so in the saved one)
    file = tmp_path / "clusterkit.yaml"
    file.write_text(yaml.safe_dump({"provider": "aws"}))
    given = load_spec(file, **{"nodes.workers": 3, "aws.region": "eu-west-1",
                               "aws.worker_market": "spot"})  # fmt: skip
    assert (given.nodes.workers, given.aws.region, given.aws.worker_market) == (
        3, "eu-west-1", "spot")  # fmt: skip


def test_worker_is_an_alias_of_worker_1_and_the_other_way_round():
    master = Node("master", "10.0.1.10", ("master",))
    numbered = Inventory("c", "netns", (master, Node("worker-1", "10.0.2.10", ("worker",)),
                                        Node("worker-2", "10.0.2.11", ("worker",))))  # fmt: skip
    assert numbered.node("worker").name == "worker-1"
    assert [n.name for n in numbered.workers()] == ["worker-1", "worker-2"]
    older = Inventory("c", "aws", (master, Node("worker", "10.0.2.10", ("worker",))))
    assert older.node("worker-1").name == "worker"
    with pytest.raises(BadInput, match="has no node 'worker-3'; its nodes: master, worker-1"):
        numbered.node("worker-3")


@pytest.mark.parametrize("count", [0, 9, -1])
def test_scale_refuses_a_count_out_of_bounds_before_anything(count):
    with pytest.raises(BadInput, match=rf"--workers {count}: a cluster has 1 to 8 workers"):
        check_count(count)


def test_scale_of_a_cluster_that_does_not_exist_is_one_line_and_exit_1(tmp_path, monkeypatch,
                                                                        capsys):  # fmt: skip
    monkeypatch.setenv("CLUSTERKIT_HOME", str(tmp_path))
    assert cli.main(["scale", "--workers", "2", "--cluster", "nosuch"]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: no cluster named 'nosuch' (known: none); start it with `clusterkit up`"
    ]
    assert cli.main(["scale", "--workers", "9", "--cluster", "nosuch"]) == 2
    assert cli.main(["scale"]) == 2  # --workers is required


def _row(name: str, address: str, up: str = "up", **info: object) -> ServiceHealth:
    return ServiceHealth(name, up, address, None, "", dict(info))


def test_the_drains_read_spark_and_ray_as_health_reports_them():
    rows = [
        _row("spark-worker", "10.0.2.10:7078", state="ALIVE"),
        _row("spark-worker", "10.0.2.11:7078", "down", state="DECOMMISSIONED"),
        _row("ray-node", "10.0.2.10:6380", node_id="aa"),
        _row("ray-node", "10.0.2.11:6380", node_id="bb"),
        _row("ray-node", "10.0.2.12:6380", "down", node_id="cc"),  # dead: nothing to drain
    ]
    assert drain.spark_worker_states(rows) == {"10.0.2.10": "ALIVE", "10.0.2.11": "DECOMMISSIONED"}
    assert drain.ray_node_ids(rows, ["10.0.2.11", "10.0.2.12"]) == {"10.0.2.11": "bb"}


#: An abridged `hdfs dfsadmin -report` of Hadoop 3.4 during a decommission.
REPORT = """\
Configured Capacity: 31526481920 (29.36 GB)
-------------------------------------------------
Live datanodes (2):

Name: 10.0.2.10:9866 (worker-1)
Hostname: worker-1
Decommission Status : Normal
Configured Capacity: 15763240960 (14.68 GB)

Name: 10.0.2.11:9866 (worker-2)
Hostname: worker-2
Decommission Status : Decommission in progress
Configured Capacity: 15763240960 (14.68 GB)
"""


def test_the_hdfs_decommission_is_read_per_datanode():
    assert drain.decommission_states(REPORT) == {
        "10.0.2.10": "Normal", "10.0.2.11": "Decommission in progress"}  # fmt: skip
    done = REPORT.replace("Decommission in progress", "Decommissioned")
    assert drain.decommission_states(done)["10.0.2.11"] == "Decommissioned"


def test_a_host_listed_twice_by_spark_is_as_its_live_entry_says():
    """A worker removed and made again at its address: the master lists the DEAD entry for a
    while beside the live one, in any order."""
    for rows in (
        [_row("spark-worker", "10.0.2.11:7078", state="DEAD"),
         _row("spark-worker", "10.0.2.11:7078", state="ALIVE")],
        [_row("spark-worker", "10.0.2.11:7078", state="ALIVE"),
         _row("spark-worker", "10.0.2.11:7078", state="DEAD")],
    ):  # fmt: skip
        assert drain.spark_worker_states(rows) == {"10.0.2.11": "ALIVE"}
