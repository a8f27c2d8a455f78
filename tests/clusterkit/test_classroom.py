"""`clusterkit init --class`: the spec and the examples/ folder an instructor hands out, valid
as written (the spec loads, the scripts compile, every command of the README parses against
the real command line, every job parameter it passes is the job's), with the versions
pinned; nothing overwritten without --force. The scripts run on the real local cluster in
tests/jobs/test_rerun.py."""

from __future__ import annotations

import py_compile
import shlex
from pathlib import Path

import pytest
import typer

from clusterkit import catalog, cli
from clusterkit.classroom import SCRIPTS, pins
from clusterkit.core.spec import Spec, load_spec
from tests.runbooks.pages import fenced


def _written(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _commands(markdown: str) -> list[list[str]]:
    """The words after ``clusterkit`` of each command in the page's ``bash`` blocks (one a
    line, comments dropped, as the shell reads them)."""
    found = []
    for info, block in fenced(markdown):
        if info != "bash":
            assert "clusterkit " not in block, f"a command outside a bash block: {block}"
            continue
        for line in block.splitlines():
            words = shlex.split(line, comments=True)
            if words:
                assert words[0] == "clusterkit", line
                found.append(words[1:])
    return found


def _parses(argv: list[str]) -> None:
    """``clusterkit ARGV`` parsed by the real command line, nothing run; a job's parameters
    checked against the catalog."""
    group = typer.main.get_command(cli.app)
    command = group.commands[argv[0]]  # type: ignore[attr-defined]
    with command.make_context(argv[0], list(argv[1:])):
        pass
    if argv[0] == "run":
        catalog.parse_job_args(catalog.find_job(argv[1]), argv[2:])


def test_init_class_writes_a_spec_and_examples_that_work(tmp_path, capsys):
    folder = tmp_path / "course"
    assert cli.main(["init", "--class", str(folder)]) == 0
    said = capsys.readouterr().out
    assert said.startswith(f"wrote {folder / 'clusterkit.yaml'} and {folder / 'examples'}/")
    assert _written(folder) == sorted(["clusterkit.yaml", "examples/README.md",
                                       *(f"examples/{name}" for name in SCRIPTS)])  # fmt: skip
    assert load_spec(folder / "clusterkit.yaml") == load_spec(None)  # the defaults
    for name in SCRIPTS:
        py_compile.compile(str(folder / "examples" / name), doraise=True,
                           cfile=str(tmp_path / f"{name}c"))  # fmt: skip
    readme = (folder / "examples" / "README.md").read_text()
    commands = _commands(readme)
    for argv in commands:
        _parses(argv)
    order = [argv[0] if argv[0] != "run" else f"run {argv[1]}" for argv in commands]
    steps = ["up", "run datagen", "run etl", "run top-earners", "run age-extremes",
             "run train", "run predict", "submit", "report", "rerun", "down"]  # fmt: skip
    assert [o for o in dict.fromkeys(order) if o in steps] == steps
    assert {argv[1] for argv in commands if argv[0] == "submit"} == {
        f"examples/{name}" for name in SCRIPTS
    }
    versions = Spec().versions
    for pin in pins():
        assert f"\n{pin}\n" in readme, pin
    assert any(p.startswith(("pyspark", "ray")) for p in pins())
    assert f"Spark {versions.spark}, Ray {versions.ray}" in readme
    assert f"Python {versions.python}" in readme


def _ups(readme: str) -> list[list[str]]:
    return [argv for argv in _commands(readme) if argv[0] == "up"]


def test_the_readme_names_the_spec_written_inside_or_outside_the_class_folder(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert cli.main(["init", "--class", "course", "--path", "course/specs/class.yaml"]) == 0
    readme = (tmp_path / "course" / "examples" / "README.md").read_text()
    assert _ups(readme) == [["up", "--spec", "specs/class.yaml"]]  # from the class's folder
    said = " ".join(readme.split())
    assert "from the folder that holds `specs/class.yaml` and this `examples/` folder." in said
    assert cli.main(["init", "--class", "other", "--path", "elsewhere/class.yaml"]) == 0
    written = tmp_path / "elsewhere" / "class.yaml"
    assert load_spec(written) == load_spec(None)
    readme = (tmp_path / "other" / "examples" / "README.md").read_text()
    assert _ups(readme) == [["up", "--spec", str(written.resolve())]]  # the path written
    said = " ".join(readme.split())
    assert "from the folder that holds this `examples/` folder; the spec is " in said
    assert f"the spec is `{written.resolve()}`, outside it" in said


def test_init_class_refuses_to_overwrite_without_force(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "mine.py").write_text("print('mine')\n")
    assert cli.main(["init", "--class"]) == 1
    err = capsys.readouterr().err
    assert err == "error: examples exists; pass --force to write the class's files into it\n"
    assert _written(tmp_path) == ["examples/mine.py"]  # nothing written, not even the spec
    assert cli.main(["init", "--class", "--force"]) == 0
    assert "examples/mine.py" in _written(tmp_path)  # the instructor's own files are kept
    assert (tmp_path / "examples" / "README.md").exists()
    (tmp_path / "examples" / "README.md").write_text("edited")
    assert cli.main(["init", "--class", "--force"]) == 0
    assert (tmp_path / "examples" / "README.md").read_text().startswith("# The class")


def test_init_class_refuses_an_existing_spec_and_a_file_named_examples(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "clusterkit.yaml").write_text("name: mine\n")
    assert cli.main(["init", "--class", str(tmp_path / "a")]) == 1
    assert "a/clusterkit.yaml exists; pass --force to replace it" in capsys.readouterr().err
    assert not (tmp_path / "a" / "examples").exists()
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "examples").write_text("a file")
    assert cli.main(["init", "--class", str(tmp_path / "b"), "--force"]) == 2
    assert "b/examples is a file" in capsys.readouterr().err


def test_a_folder_without_class_is_refused(tmp_path, capsys):
    assert cli.main(["init", str(tmp_path)]) == 2
    assert "a folder is for --class" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", SCRIPTS)
def test_a_script_says_how_to_run_it_without_the_cluster(name, tmp_path, monkeypatch):
    """Run here without `clusterkit submit`: it names what is missing, before touching
    Spark or Ray."""
    import runpy

    monkeypatch.delenv("CLUSTERKIT_STORAGE", raising=False)
    monkeypatch.setattr("sys.argv", [name])
    script = Path(__import__("clusterkit.classroom").classroom.__file__).parent / name
    with pytest.raises(SystemExit, match="CLUSTERKIT_STORAGE is not set: run this with "):
        runpy.run_path(str(script), run_name="__main__")


def test_the_ray_scripts_sums_per_file_add_up(tmp_path):
    """The Ray script's work, without Ray: each file's sums (what one task returns), the
    dataset's own ``_clusterkit.json`` left out."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from clusterkit.classroom.salary_stats_ray import file_sums, parquet_files

    dataset = tmp_path / "people"
    dataset.mkdir()
    salary, active = [30_000.0, 50_000.0, 70_000.0, 90_000.0], [True, False, True, True]
    pq.write_table(pa.table({"salary": salary[:2], "is_active": active[:2]}),
                   dataset / "part-00000.parquet")  # fmt: skip
    pq.write_table(pa.table({"salary": salary[2:], "is_active": active[2:]}),
                   dataset / "part-00001.parquet")  # fmt: skip
    (dataset / "_clusterkit.json").write_text("{}")
    assert parquet_files(str(dataset)) == ["part-00000.parquet", "part-00001.parquet"]
    parts = [file_sums(str(dataset), name) for name in parquet_files(str(dataset))]
    assert sum(p["True"][0] for p in parts) == 3 and sum(p["False"][0] for p in parts) == 1
    assert sum(p["True"][1] for p in parts) == 190_000.0
    assert sum(p["True"][2] for p in parts) == 30_000.0**2 + 70_000.0**2 + 90_000.0**2
