from pathlib import Path

import pytest
import yaml

from clusterkit.core import versions
from clusterkit.core.errors import SpecError
from clusterkit.core.spec import Ports, Spec, default_spec_text, load_spec, parse_size, parse_spec


def test_defaults_follow_the_installed_pins():
    spec = Spec()
    assert spec.provider == "local"
    assert spec.versions.spark == versions.installed("pyspark")
    assert spec.versions.ray == versions.installed("ray")
    assert spec.ports.spark_master == 7077


def test_init_text_loads_back_to_the_defaults(tmp_path: Path):
    path = tmp_path / "clusterkit.yaml"
    path.write_text(default_spec_text())
    text = path.read_text()
    assert "# " in text  # commented
    assert load_spec(path) == Spec()
    # every port field is written out, so the file documents them all
    assert set(yaml.safe_load(text)["ports"]) == set(Spec().ports.model_dump())


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"ports": {"spark_master": 70000}}, "ports.spark_master = 70000 is not allowed"),
        ({"ports": {"spark_master": 80}}, "greater than or equal to 1024"),
        ({"ports": {"spark_master_ui": 8265}}, "both use port 8265"),
        ({"nodes": {"worker_memory": "lots"}}, "nodes.worker_memory = 'lots'"),
        ({"nodes": {"worker_memory": "100m"}}, "at least 256m"),
        ({"nodes": {"worker_cores": 0}}, "from 1 to 1024"),
        (
            {"provider": "gcp"},
            "provider = 'gcp' is not allowed: Input should be 'local', 'netns' or 'aws'",
        ),
        ({"name": "My Cluster"}, "name = 'My Cluster'"),
        ({"versions": {"spark": "3.5.1"}}, "versions.spark = '3.5.1'"),
        ({"metrics": {"interval_s": 0}}, "metrics.interval_s = 0"),
    ],
)
def test_a_wrong_field_names_field_value_and_what_is_allowed(data, expected):
    with pytest.raises(SpecError) as info:
        parse_spec(data, source="my.yaml")
    message = str(info.value)
    assert message.startswith("my.yaml: ")
    assert expected in message
    assert "\n" not in message


def test_unknown_field_lists_the_allowed_ones():
    with pytest.raises(
        SpecError, match=r"unknown field 'ports.spark_mastr'; allowed here: .*spark_master"
    ):
        parse_spec({"ports": {"spark_mastr": 7000}})


def test_bad_yaml_and_missing_file_name_the_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("ports: [unclosed\n")
    with pytest.raises(SpecError, match=r"bad\.yaml: line \d+ is not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match=r"nope\.yaml: no such spec file"):
        load_spec(tmp_path / "nope.yaml")


def test_sizes():
    assert parse_size("4g") == 4 * 1024**3
    assert parse_size("512m") == 512 * 1024**2
    assert parse_size("1.5GiB") == int(1.5 * 1024**3)
    with pytest.raises(ValueError):
        parse_size("four gigs")


def test_numbered_ports_are_a_valid_set_apart_from_the_defaults():
    ports = Ports.numbered_from(27000)
    assert ports.spark_master == 27000 and ports.spark_master_ui == 27001
    assert set(ports.fixed().values()) == set(range(27000, 27000 + len(ports.fixed())))
    assert (ports.ray_min_worker, ports.ray_max_worker) == (27100, 27199)
    assert not set(ports.fixed().values()) & set(Ports().fixed().values())


def test_the_idle_guard_follows_the_provider_unless_set():
    cases = {"aws": (60, "stop"), "netns": (0, "record"), "local": (0, "stop")}
    for provider, expected in cases.items():
        guard = parse_spec({"provider": provider}).idle_guard
        assert (guard.minutes_for(provider), guard.action_for(provider)) == expected
    set_ = parse_spec({"provider": "aws", "idle_guard": {"idle_minutes": 15,
                                                         "action": "terminate"}})  # fmt: skip
    assert (set_.idle_guard.minutes_for("aws"), set_.idle_guard.action_for("aws")) == (
        15, "terminate")  # fmt: skip
    # the command line's --idle-minutes / --no-idle-guard set one field of the section
    spec = load_spec(None, provider="aws", **{"idle_guard.idle_minutes": 0})
    assert spec.idle_guard.minutes_for("aws") == 0


def test_an_idle_guard_that_cannot_act_is_refused_naming_the_field():
    with pytest.raises(SpecError, match=r"idle_guard.idle_minutes = 5 is for remote clusters"):
        parse_spec({"idle_guard": {"idle_minutes": 5}})
    with pytest.raises(SpecError, match=r"idle_guard.action = stop cannot run on the rehearsal"):
        parse_spec({"provider": "netns", "idle_guard": {"idle_minutes": 1, "action": "stop"}})
    with pytest.raises(SpecError, match=r"idle_guard.idle_minutes = -1 is not allowed"):
        parse_spec({"provider": "aws", "idle_guard": {"idle_minutes": -1}})
    assert parse_spec({"provider": "netns", "idle_guard": {"idle_minutes": 1}})
