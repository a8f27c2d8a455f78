"""Errors before anything starts: each one line, with the fix, and the right exit code."""

import os
import socket
import stat
from pathlib import Path

import pytest
import yaml

from tests.conftest import cli_env, run_cli, test_ports


def _fake_java(tmp_path: Path, version_line: str) -> Path:
    """A JAVA_HOME whose bin/java prints ``version_line`` as `java -version` does."""
    home = tmp_path / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n")
    java.chmod(java.stat().st_mode | stat.S_IEXEC)
    return home


def _spec(tmp_path: Path, **fields) -> Path:
    path = tmp_path / "clusterkit.yaml"
    path.write_text(yaml.safe_dump({"ports": test_ports(31000), **fields}))
    return path


def test_java_missing(home, tmp_path):
    env = cli_env(home, PATH=str(Path(os.__file__).parent))  # no java on this PATH
    env.pop("JAVA_HOME", None)
    result = run_cli("up", "--dry-run", "--spec", str(_spec(tmp_path)), env=env)
    assert result.code == 1
    assert "Java not found" in result.stderr
    assert "apt-get install -y openjdk-17-jre-headless" in result.stderr


def test_java_too_old(home, tmp_path):
    java_home = _fake_java(tmp_path, 'openjdk version "11.0.21" 2023-10-17')
    env = cli_env(home, JAVA_HOME=str(java_home))
    result = run_cli("up", "--dry-run", "--spec", str(_spec(tmp_path)), env=env)
    assert result.code == 1
    assert "Java 11 at" in result.stderr and "too old: Spark needs Java 17+" in result.stderr


def test_java_8_style_version_is_read_as_8(home, tmp_path):
    java_home = _fake_java(tmp_path, 'java version "1.8.0_392"')
    result = run_cli(
        "up", "--dry-run", "--spec", str(_spec(tmp_path)),
        env=cli_env(home, JAVA_HOME=str(java_home)),
    )  # fmt: skip
    assert result.code == 1 and "Java 8 at" in result.stderr


def test_port_in_use_names_port_field_and_holder(home, tmp_path):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        ports = test_ports(31000)
        ports["spark_master_ui"] = port
        spec = tmp_path / "clusterkit.yaml"
        spec.write_text(yaml.safe_dump({"ports": ports}))
        result = run_cli("up", "--dry-run", "--spec", str(spec), env=cli_env(home))
    assert result.code == 1
    assert f"port {port} (ports.spark_master_ui) is in use by" in result.stderr
    assert f"(pid {os.getpid()})" in result.stderr
    assert "set ports.spark_master_ui to a free port" in result.stderr


def test_dry_run_checks_without_starting(home, tmp_path):
    result = run_cli("up", "--dry-run", "--json", "--spec", str(_spec(tmp_path)), env=cli_env(home))
    assert result.code == 0, result.stderr
    plan = result.json()
    assert plan["java_major"] >= 17
    assert plan["sizing"]["worker_cores"] == os.cpu_count()
    assert plan["sizing"]["ray_cpus"] == os.cpu_count()
    assert not (home / "contexts.json").exists()


def test_spec_field_out_of_range_exits_2(home, tmp_path):
    spec = _spec(tmp_path, nodes={"worker_cores": 4096})
    result = run_cli("up", "--spec", str(spec), env=cli_env(home))
    assert result.code == 2
    assert "nodes.worker_cores = 4096 is not allowed" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("field", ["worker_cores", "ray_cpus"])
def test_more_cores_than_the_machine_exits_2(home, tmp_path, field):
    cores = (os.cpu_count() or 1) + 1
    result = run_cli(
        "up", "--dry-run", "--spec", str(_spec(tmp_path, nodes={field: cores})),
        env=cli_env(home),
    )  # fmt: skip
    assert result.code == 2
    assert f"nodes.{field} = {cores} is not allowed: this machine has" in result.stderr


def test_ray_cpus_set_in_the_spec_reach_the_plan(home, tmp_path):
    spec = _spec(tmp_path, nodes={"ray_cpus": 1})
    result = run_cli("up", "--dry-run", "--json", "--spec", str(spec), env=cli_env(home))
    assert result.code == 0, result.stderr
    assert result.json()["sizing"]["ray_cpus"] == 1


def test_run_with_no_cluster_up(home):
    result = run_cli("run", "ray-pi", env=cli_env(home))
    assert result.code == 1
    assert "no cluster is up: start one with `clusterkit up`" in result.stderr


def test_unknown_job_and_parameter_exit_2(home):
    result = run_cli("run", "no-such-job", env=cli_env(home))
    assert result.code == 2 and "unknown job 'no-such-job'" in result.stderr
    result = run_cli("run", "ray-pi", "--bogus", "1", env=cli_env(home))
    assert result.code == 2 and "job ray-pi has no parameter --bogus" in result.stderr


def test_down_with_nothing_up_says_so(home):
    result = run_cli("down", env=cli_env(home))
    assert result.code == 0
    assert "nothing is up" in result.stdout


def test_status_with_nothing_up(home):
    result = run_cli("status", env=cli_env(home))
    assert result.code == 1 and "no cluster is up" in result.stderr


def test_init_writes_a_spec_that_up_accepts(home, tmp_path):
    result = run_cli("init", env=cli_env(home), cwd=tmp_path)
    assert result.code == 0
    assert (tmp_path / "clusterkit.yaml").exists()
    again = run_cli("init", env=cli_env(home), cwd=tmp_path)
    assert again.code == 1 and "exists; pass --force" in again.stderr
