"""The CLI's conventions, as users of Typer, kubectl and the Ray CLI expect them: --version,
shell completion, `run JOB --help`, $CLUSTERKIT_CLUSTER and $CLUSTERKIT_SPEC, the help's
panels, an empty `clusters`, and `jobs` in pipeline order. All through ``cli.main``."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import typer
from rich.console import Console

from clusterkit import catalog, cli
from clusterkit.core.errors import SpecError
from clusterkit.core.spec import load_spec
from clusterkit.core.state import Contexts

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_JOBS = ROOT / "tests" / "fixtures" / "jobs"


@pytest.fixture(autouse=True)
def empty_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A kit home with no cluster, and none of the variables set outside the test."""
    for name in ("CLUSTERKIT_CLUSTER", "CLUSTERKIT_SPEC", "CLUSTERKIT_JOBS_PATH"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("CLUSTERKIT_HOME", str(home))
    return home


def two_clusters(home: Path) -> None:
    """alpha (current) and beta, both known and down."""
    contexts = Contexts(home)
    contexts.add("beta", home / "clusters" / "beta")
    contexts.add("alpha", home / "clusters" / "alpha")


# --- --version -----------------------------------------------------------------------------


def test_version_names_the_release_and_the_commit(capsys):
    release = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    git = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True)  # fmt: skip
    assert cli.main(["--version"]) == 0
    expected = f"clusterkit {release}"
    if git.returncode == 0 and (ROOT / ".git").exists():
        expected += f" (commit {git.stdout.strip()})"
    assert capsys.readouterr().out == expected + "\n"


# --- shell completion ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("shell", "expected"),
    [
        ("bash", ["_CLUSTERKIT_COMPLETE=complete_bash",
                  "complete -o default -F _clusterkit_completion clusterkit"]),
        ("zsh", ["#compdef clusterkit", "_CLUSTERKIT_COMPLETE=complete_zsh"]),
    ],
)  # fmt: skip
def test_show_completion_prints_the_shell_script(shell, expected, monkeypatch, capsys):
    # the shell given, not the one Typer detects from this process's parents
    monkeypatch.setenv("_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION", "1")
    with pytest.raises(SystemExit) as exited:
        cli.main(["--show-completion", shell])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for text in expected:
        assert text in out


def complete(words: str, monkeypatch: pytest.MonkeyPatch, capsys) -> list[str]:
    """What bash is offered for the last word of ``words`` (Typer's completion protocol)."""
    monkeypatch.setenv("_CLUSTERKIT_COMPLETE", "complete_bash")
    monkeypatch.setenv("COMP_WORDS", words)
    monkeypatch.setenv("COMP_CWORD", str(len(words.split()) - 1))
    with pytest.raises(SystemExit):
        cli.main([])
    return capsys.readouterr().out.split()


def test_completion_offers_commands_jobs_and_clusters(empty_home, monkeypatch, capsys):
    two_clusters(empty_home)
    assert complete("clusterkit clu", monkeypatch, capsys) == ["clusters"]
    assert complete("clusterkit run predict", monkeypatch, capsys) == [
        "predict",
        "predict-digits",
    ]
    assert complete("clusterkit use b", monkeypatch, capsys) == ["beta"]
    assert complete("clusterkit status --cluster a", monkeypatch, capsys) == ["alpha"]


# --- run JOB --help ------------------------------------------------------------------------


def console(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    """The CLI's stdout as a terminal ``width`` columns wide."""
    monkeypatch.setattr(cli, "out", Console(width=width, highlight=False))


def parameter_rows(out: str) -> dict[str, list[str]]:
    """The first line of each row of the parameter table: its columns split on 2+ spaces."""
    return {line.split()[0]: re.split(r"\s{2,}", line.strip())
            for line in out.splitlines() if line.startswith("--")}  # fmt: skip


def test_run_job_help_lists_the_parameters_with_their_defaults(monkeypatch, capsys):
    console(monkeypatch, 200)
    assert cli.main(["run", "datagen", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: clusterkit run datagen [--PARAMETER VALUE ...]")
    assert catalog.find_job("datagen").summary in out
    assert "engine: ray" in out
    rows = parameter_rows(out)
    assert rows["--rows"][:3] == ["--rows", "count", "1000000"]
    assert rows["--profile"][:3] == ["--profile", "realistic | seed-paper", "realistic"]
    assert rows["--overwrite/--no-overwrite"][:3] == ["--overwrite/--no-overwrite", "bool",
                                                      "false"]  # fmt: skip
    assert rows["--name"][:3] == ["--name", "str", "people"]
    assert len(rows) == len(catalog.find_job("datagen").params)
    assert "Missing argument" not in out and "╭─ Options" not in out  # not run's own help


def test_run_job_help_skips_run_options_and_their_values(monkeypatch, capsys):
    console(monkeypatch, 200)
    argv = ["run", "--cluster", "x", "--spark-session", "classic", "top-earners", "--top", "3",
            "--help"]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert out.startswith("Usage: clusterkit run top-earners ")
    assert "engines: spark|ray|duckdb (--engine)" in out
    assert parameter_rows(out)["--engine"][:3] == ["--engine", "spark | ray | duckdb", "spark"]
    assert parameter_rows(out)["--input"][:3] == ["--input", "str", "-"]  # no default


def test_run_job_help_on_a_narrow_terminal_cuts_nothing_short(monkeypatch, capsys):
    console(monkeypatch, 80)
    assert cli.main(["run", "bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 80
    bench = catalog.find_job("bench")
    assert sorted(parameter_rows(out)) == sorted(f"--{p.name}" for p in bench.params)
    words = out.split()
    for param in bench.params:
        assert all(word in words for word in param.help.split()), param.help


def test_run_help_without_a_job_is_runs_own_help(capsys):
    assert cli.main(["run", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Usage: clusterkit run [OPTIONS]" in out
    assert "--spark-session" in out and "--detach" in out
    assert "Usage: clusterkit run bench" not in out and "parameter  " not in out


def test_run_help_of_an_unknown_job_names_the_known_ones(capsys):
    assert cli.main(["run", "nosuch", "--help"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown job 'nosuch'; the jobs are: datagen, etl, ")


# --- $CLUSTERKIT_CLUSTER -------------------------------------------------------------------


def status_of(argv: list[str], capsys) -> str:
    assert cli.main(["status", "--json", *argv]) == 0
    return str(json.loads(capsys.readouterr().out)["cluster"])


def test_cluster_env_comes_between_the_flag_and_use(empty_home, monkeypatch, capsys):
    two_clusters(empty_home)
    assert status_of([], capsys) == "alpha"  # the current one
    monkeypatch.setenv("CLUSTERKIT_CLUSTER", "beta")
    assert status_of([], capsys) == "beta"  # the variable over `use`
    assert status_of(["--cluster", "alpha"], capsys) == "alpha"  # the flag over the variable
    assert Contexts().resolve(None)[0] == "beta"  # the layer the TUI reads too


def test_cluster_env_naming_no_cluster_says_which_variable(empty_home, monkeypatch, capsys):
    two_clusters(empty_home)
    monkeypatch.setenv("CLUSTERKIT_CLUSTER", "nosuch")
    assert cli.main(["status"]) == 1
    assert capsys.readouterr().err.splitlines() == [
        "error: CLUSTERKIT_CLUSTER=nosuch names no known cluster (known: alpha, beta); "
        "unset it, or start that cluster with `clusterkit up`"
    ]


def test_clusters_and_use_show_the_variable(empty_home, monkeypatch, capsys):
    two_clusters(empty_home)
    monkeypatch.setenv("CLUSTERKIT_CLUSTER", "beta")
    assert cli.main(["clusters", "--json"]) == 0
    marked = {r["name"]: r["current"] for r in json.loads(capsys.readouterr().out)}
    assert marked == {"alpha": False, "beta": True}
    assert cli.main(["use", "alpha"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "current cluster: alpha\n"
    assert "CLUSTERKIT_CLUSTER=beta still picks the cluster in this shell" in captured.err
    assert Contexts().current() == "alpha"


@pytest.mark.parametrize(
    ("chosen", "note"),
    [
        ("beta", "CLUSTERKIT_CLUSTER=beta picks the cluster in this shell, not alpha: unset it to "
                 "act on alpha"),
        ("alpha", "CLUSTERKIT_CLUSTER=alpha picks the cluster in this shell"),
        (None, None),
    ],
)  # fmt: skip
def test_up_says_when_the_variable_picks_the_cluster(tmp_path, monkeypatch, capsys, chosen,
                                                     note):  # fmt: skip
    """`up` brings up the spec's cluster, but the commands after it act on the one
    $CLUSTERKIT_CLUSTER names: it says so, as `clusters` does (the cluster itself is not
    started here: `lifecycle.up` answers as it would)."""
    from clusterkit import lifecycle

    spec = tmp_path / "clusterkit.yaml"
    spec.write_text("name: alpha\n")
    done = lifecycle.UpReport("alpha", "local", True, "cluster 'alpha' is up", 1.0, {}, {},
                              str(tmp_path))  # fmt: skip
    monkeypatch.setattr(lifecycle, "up", lambda *a, **k: done)
    if chosen is not None:
        monkeypatch.setenv("CLUSTERKIT_CLUSTER", chosen)
    for json_flag in ([], ["--json"]):
        assert cli.main(["up", "--spec", str(spec), *json_flag]) == 0
        captured = capsys.readouterr()
        said = [line for line in captured.err.splitlines() if "CLUSTERKIT_CLUSTER" in line]
        assert said == ([f"· {note}"] if note else []), captured.err
        assert "CLUSTERKIT_CLUSTER" not in captured.out  # --json's stdout stays JSON


def test_help_names_the_variables(capsys):
    assert cli.main(["status", "--help"]) == 0
    assert "$CLUSTERKIT_CLUSTER" in capsys.readouterr().out
    assert cli.main(["up", "--help"]) == 0
    assert "$CLUSTERKIT_SPEC" in capsys.readouterr().out
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "CLUSTERKIT_CLUSTER picks the cluster" in out and "CLUSTERKIT_SPEC names" in out


# --- $CLUSTERKIT_SPEC ----------------------------------------------------------------------


def test_spec_env_names_the_spec_up_reads(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "team.yaml"
    spec.write_text("name: team\n")
    monkeypatch.chdir(tmp_path)  # no ./clusterkit.yaml to fall back on
    assert load_spec(None).name == "local"
    monkeypatch.setenv("CLUSTERKIT_SPEC", str(spec))
    assert load_spec(None).name == "team"
    other = tmp_path / "other.yaml"
    other.write_text("name: other\n")
    assert load_spec(other).name == "other"  # a path given beats the variable
    spec.write_text("nodes: {workers: 0}\n")  # `up` reads it, refuses it, starts nothing
    assert cli.main(["up"]) == 2
    assert str(spec) in capsys.readouterr().err


def test_spec_env_naming_no_file_says_which_variable(tmp_path, monkeypatch, capsys):
    missing = tmp_path / "gone.yaml"
    monkeypatch.setenv("CLUSTERKIT_SPEC", str(missing))
    with pytest.raises(SpecError, match=f"CLUSTERKIT_SPEC={missing}: no such spec file"):
        load_spec(None)
    assert cli.main(["up", "--dry-run"]) == 2
    assert capsys.readouterr().err.startswith(f"error: CLUSTERKIT_SPEC={missing}: no such")


def test_init_writes_where_the_spec_env_points(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "team.yaml"
    monkeypatch.setenv("CLUSTERKIT_SPEC", str(spec))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init"]) == 0
    assert spec.exists() and not (tmp_path / "clusterkit.yaml").exists()
    assert load_spec(None).name == "local"  # the defaults, read back


# --- --help's panels -----------------------------------------------------------------------


def panels(out: str) -> dict[str, list[str]]:
    """Each panel of ``--help`` and the commands listed in it, in order."""
    found: dict[str, list[str]] = {}
    panel = None
    for line in out.splitlines():
        title = re.match(r"╭─ (.+?) ─", line)
        if title:
            panel = title.group(1)
            found[panel] = []
        elif panel and (row := re.match(r"│ (\S+)\s", line)):
            found[panel].append(row.group(1))
    return found


def test_help_groups_the_commands_into_panels(capsys):
    assert cli.main(["--help"]) == 0
    shown = panels(capsys.readouterr().out)
    expected = {
        "Cluster": ["init", "up", "down", "provision", "stop", "scale", "start", "status",
                    "tunnel", "env", "tui", "clusters", "use"],
        "Jobs and runs": ["jobs", "run", "submit", "bench", "runs", "logs", "cancel",
                          "report", "notebook"],
        "Nodes": ["ssh", "exec", "copy"],
        "AWS": ["allow-ip", "cost", "idle"],
    }  # fmt: skip
    titles = [t for t in shown if t != "Options"]
    assert titles[:4] == ["Cluster", "Jobs and runs", "Nodes", "AWS"]
    for title, commands in expected.items():
        assert [c for c in shown[title] if c in commands] == commands, title
    assert "Commands" not in shown  # every command is in a panel
    listed = {c for title in titles for c in shown[title]}
    assert listed == set(typer.main.get_group(cli.app).commands)


# --- clusters, jobs ------------------------------------------------------------------------


def test_clusters_says_when_there_are_none(capsys):
    assert cli.main(["clusters"]) == 0
    assert capsys.readouterr().out == "no clusters yet: run `clusterkit up`\n"
    assert cli.main(["clusters", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_jobs_are_listed_in_pipeline_order(monkeypatch, capsys):
    monkeypatch.setenv("CLUSTERKIT_JOBS_PATH", str(FIXTURE_JOBS))
    assert cli.main(["jobs", "--json"]) == 0
    names = [job["name"] for job in json.loads(capsys.readouterr().out)]
    suite = importlib.import_module("jobs.suite")
    steps = [job for job, _ in suite.steps(catalog.find_job("suite").defaults())]
    assert steps == ["datagen", "etl", "top-earners", "age-extremes", "train", "predict",
                     "datagen-digits", "digits-etl", "lenet", "predict-digits"]  # fmt: skip
    assert names[: len(steps)] == steps  # the order the suite runs them in
    assert names[len(steps) :] == ["suite", "bench", "seed-paper", "ray-pi", "submit",
                                   "busy", "crash", "stages"]  # fmt: skip
    assert cli.main(["jobs"]) == 0
    out = capsys.readouterr().out
    assert out.index("datagen (ray)") < out.index("etl (") < out.index("suite (python)")
