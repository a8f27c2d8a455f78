"""Usage errors exit 2 with click's message, never a traceback (typer carries its own click)."""

import pytest

from clusterkit import cli


@pytest.mark.parametrize(
    "argv",
    [["tunnel", "--bogus"], ["exec"], ["exec", "--node"], ["copy", "only-one"], ["no-such"]],
)
def test_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    assert "Traceback" not in capsys.readouterr().err


def test_an_unknown_cluster_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLUSTERKIT_HOME", str(tmp_path))
    assert cli.main(["exec", "--cluster", "nosuch", "hostname"]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    expected = "error: no cluster named 'nosuch' (known: none); start it with `clusterkit up`"
    assert lines == [expected]
