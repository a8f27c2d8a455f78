import pytest

from clusterkit.catalog import describe, find_job, list_jobs, parse_job_args
from clusterkit.core.errors import UnknownJob
from clusterkit.jobkit import parse_count


def test_catalog_lists_the_builtin_jobs():
    names = {j.name for j in list_jobs()}
    assert {"datagen", "etl", "top-earners", "age-extremes", "train", "predict", "suite",
            "ray-pi", "datagen-digits", "digits-etl", "lenet",
            "predict-digits"} <= names  # fmt: skip
    assert describe(find_job("datagen"))["params"][0]["name"] == "rows"


def test_parse_params():
    job = find_job("datagen")
    assert parse_job_args(job, ["--rows", "200k", "--profile=seed-paper", "--overwrite"]) == {
        "rows": 200_000,
        "profile": "seed-paper",
        "overwrite": True,
    }
    assert parse_job_args(job, ["--no-overwrite"]) == {"overwrite": False}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--rowz", "5"], "job datagen has no parameter --rowz; it takes: --rows"),
        (["--rows"], "--rows of job datagen needs a value"),
        (["--rows", "-5"], "--rows of job datagen: '-5' is not a count"),
        (["--rows", "0"], "must be at least 1"),
        (["--profile", "weird"], "'weird' is not one of realistic, seed-paper"),
        (["stray"], "unexpected argument 'stray'"),
    ],
)
def test_bad_params_are_refused_with_the_name(args, expected):
    with pytest.raises(UnknownJob) as info:
        parse_job_args(find_job("datagen"), args)
    assert expected in str(info.value)
    assert info.value.exit_code == 2


def test_unknown_job_lists_the_known_ones():
    with pytest.raises(UnknownJob, match=r"unknown job 'etll'; the jobs are: .*datagen"):
        find_job("etll")


def test_counts():
    assert parse_count("30M") == 30_000_000
    assert parse_count("1.5k") == 1500
    assert parse_count(7) == 7


def test_jobs_command_shows_choices_and_defaults(tmp_path):
    from tests.conftest import cli_env, run_cli

    result = run_cli("jobs", env={**cli_env(tmp_path), "COLUMNS": "200"})
    assert result.code == 0, result.stderr
    assert "--model          model family; auto = every one the search lists " \
           "{auto|ridge|hist-gb|random-forest} (default auto)" in result.stdout  # fmt: skip
    assert "--profile        data profile {realistic|seed-paper} (default realistic)" in (
        result.stdout
    )
    assert "(default )" not in result.stdout


def test_listing_the_catalog_does_not_import_scikit_learn():
    import subprocess
    import sys

    code = "import sys, clusterkit.catalog as c; c.list_jobs(); print('sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_list_parameters_are_checked_item_by_item():
    bench = find_job("bench")
    assert parse_job_args(bench, ["--engines", "duckdb, spark,duckdb", "--sizes", "2k,1M"]) == {
        "engines": ["duckdb", "spark"],
        "sizes": [2000, 1_000_000],
    }
    for args, expected in (
        (["--jobs", "etl,,age-extremes"], "without empty items"),
        (["--sizes", "1M,lots"], "'lots' is not a count"),
        (["--engines", "spark,polars,pandas"], "unknown 'polars', 'pandas'; choose from spark"),
    ):
        with pytest.raises(UnknownJob, match=expected):
            parse_job_args(bench, args)


def test_multi_engine_jobs_list_their_engines():
    assert find_job("etl").engines == ("spark", "ray", "duckdb")
    assert describe(find_job("top-earners"))["engines"] == ["spark", "ray", "duckdb"]
    assert find_job("datagen").engines == ("ray",)
