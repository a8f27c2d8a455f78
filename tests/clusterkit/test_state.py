"""A cluster's typed state (``cluster.json``) and the names clusters get: round trips, and
files an older kit wrote, or nobody could read, refused with what to do."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from clusterkit.core.errors import StateError
from clusterkit.core.inventory import Inventory, Node, SshSettings
from clusterkit.core.records import Daemon
from clusterkit.core.spec import Spec, load_spec, parse_spec
from clusterkit.core.state import (
    SCHEMA,
    ClusterPaths,
    ClusterState,
    Contexts,
    Endpoints,
    JobSizing,
    paths_for,
)
from tests.conftest import cli_env, run_cli


def _state(tmp_path: Path) -> ClusterState:
    spec = Spec(provider="netns")
    master = Node("master", "10.40.1.10", ("master",), ssh_host="10.40.1.10")
    return ClusterState(
        name=spec.name, provider="netns", spec=spec, started_at="2026-12-02T10:00:00.000+00:00",
        state_dir=str(tmp_path), storage_root=str(tmp_path / "data"),
        inventory=Inventory(spec.name, "netns", (master,)),
        endpoints=Endpoints.for_spec(spec, host=master.address), node_python=sys.executable,
        runs_dir="/var/lib/clusterkit/runs",
        ssh=SshSettings("root", tmp_path / "k", tmp_path / "known_hosts"),
        sizing=JobSizing(2, 3072, 1024), daemons=[Daemon("x", 1, 2.0, ["x"], "/log")],
    )  # fmt: skip


def test_a_clusters_name_follows_its_provider_unless_given(tmp_path):
    assert [Spec(provider=p).name for p in ("local", "netns", "aws")] == [
        "local", "rehearsal", "aws"]  # fmt: skip
    assert parse_spec({"provider": "netns", "name": "mine"}).name == "mine"
    spec_file = tmp_path / "clusterkit.yaml"
    spec_file.write_text("nodes: {driver_memory: 2g}\n")  # no name, no provider
    assert load_spec(spec_file).name == "local"
    rehearsal = load_spec(spec_file, provider="netns", name=None)
    assert (rehearsal.name, rehearsal.nodes.driver_memory) == ("rehearsal", "2g")
    assert paths_for(rehearsal) != paths_for(load_spec(spec_file))  # a second cluster
    spec_file.write_text("name: team\n")
    assert load_spec(spec_file, provider="netns").name == "team"


def test_the_state_round_trips_with_its_schema(tmp_path):
    paths = ClusterPaths(tmp_path)
    state = _state(tmp_path)
    state.save(paths)
    on_disk = json.loads(paths.state_file.read_text())
    assert on_disk["schema"] == SCHEMA and on_disk["spec"]["name"] == "rehearsal"
    assert ClusterState.load(paths) == state
    assert ClusterState.load(ClusterPaths(tmp_path / "down")) is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('{"name": "old", "provider": "local"}', r"written by an older clusterkit \(layout 1;"),
        ('{"schema": 99}', r"written by a newer clusterkit \(layout 99;"),
        ("", r"is not valid JSON .*delete it and run `clusterkit up` again"),
        ('{"schema": 3, "name": "x"}', r"is missing or has a malformed field"),
        ('{"schema": 2}', r"written by an older clusterkit \(layout 2;"),
        ('{"schema": "2"}', r"written by an older clusterkit \(layout 1;"),
        ("[1, 2]", r"written by an older clusterkit \(layout 1;"),
    ],
)
def test_a_state_file_this_kit_cannot_read_is_refused_with_the_fix(tmp_path, text, error):
    paths = ClusterPaths(tmp_path)
    paths.state_file.write_text(text)
    with pytest.raises(StateError, match=error):
        ClusterState.load(paths)


def test_the_cli_says_it_in_one_line(tmp_path):
    home = tmp_path / "home"
    env = cli_env(home)
    state_dir = home / "clusters" / "old"
    state_dir.mkdir(parents=True)
    (state_dir / "cluster.json").write_text('{"name": "old", "provider": "local"}')
    Contexts(home).add("old", state_dir)
    for command in (["status"], ["down"], ["runs"]):
        result = run_cli(*command, env=env, timeout=60)
        assert result.code == 1, (command, result.stdout, result.stderr)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "written by an older clusterkit" in lines[0], result.stderr
        assert str(state_dir / "cluster.json") in lines[0]


@pytest.mark.parametrize("content", [None, "", "  \n"])
def test_a_missing_or_empty_token_is_named_with_its_runbook(tmp_path: Path, content):
    from clusterkit.core.files import read_secret

    token = tmp_path / "ray-token"
    if content is not None:
        token.write_text(content)
    with pytest.raises(StateError) as caught:
        read_secret(token, "the Ray token")
    state = "missing" if content is None else "empty"
    assert f"the Ray token {token} is {state}" in str(caught.value)
    assert "lost-token-or-key.md" in str(caught.value)
    token.write_text("abc\n")
    assert read_secret(token, "the Ray token") == "abc"


@pytest.mark.parametrize("text", ["{}", "null", '{"clusters": [], "current": null}',
                                  '{"clusters": {}, "current": 3}'])  # fmt: skip
def test_a_contexts_file_of_the_wrong_shape_is_named(tmp_path: Path, text: str):
    from clusterkit.core.state import Contexts

    (tmp_path / "contexts.json").write_text(text)
    with pytest.raises(StateError, match="is not a list of clusters as the kit writes it"):
        Contexts(tmp_path).resolve(None)
