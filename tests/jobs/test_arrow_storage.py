"""ArrowStorage and inspect_parquet: the storage and input checks of jobs that run without
Spark (predict), on a local folder."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from clusterkit.jobkit import JobInputError
from jobs._storage import META_FILE, ArrowStorage, inspect_parquet


def test_files_folders_and_renames(tmp_path):
    storage = ArrowStorage()
    root = str(tmp_path)
    storage.write_text(f"{root}/a/part-0.parquet", "x")  # parent folders are made
    storage.write_text(f"{root}/a/{META_FILE}", json.dumps({"rows": 3}))
    assert storage.files(f"{root}/a") == [f"{root}/a/part-0.parquet"]
    assert storage.list_dirs(root) == ["a"] and storage.list_dirs(f"{root}/none") == []
    assert storage.metadata(f"{root}/a") == {"rows": 3}
    assert storage.read_bytes(f"{root}/a/part-0.parquet", offset=0, length=10) == b"x"
    storage.write_text(f"{root}/b/keep", "kept")
    assert storage.rename(f"{root}/a", f"{root}/b") is False  # never replaces
    assert storage.read_text(f"{root}/b/keep") == "kept"
    storage.commit(f"{root}/a", f"{root}/b", run_id="r1")  # commit does replace
    assert storage.list_dirs(root) == ["b"] and storage.exists(f"{root}/b/part-0.parquet")
    assert storage.read_text(f"{root}/b/keep") is None  # the previous copy is gone
    storage.delete(f"{root}/b")
    assert not storage.exists(f"{root}/b") and storage.read_text(f"{root}/b/keep") is None


def test_inspect_parquet_reads_schema_and_rows_from_the_footers(tmp_path):
    folder = tmp_path / "ds"
    folder.mkdir()
    frame = pd.DataFrame({"id": [1, 2, 3], "name": ["a", "b", "c"], "ok": [True, False, True],
                          "when": pd.to_datetime(["2024-01-01"] * 3)})  # fmt: skip
    frame.to_parquet(folder / "part-0.parquet", index=False)
    frame.to_parquet(folder / "part-1.parquet", index=False)
    found = inspect_parquet(ArrowStorage(), str(folder))
    assert found.rows == 6 and len(found.files) == 2
    assert found.schema == {"id": "long", "name": "string", "ok": "boolean", "when": "timestamp"}


def test_inspect_parquet_refuses_bad_input(tmp_path):
    storage = ArrowStorage()
    with pytest.raises(JobInputError, match="does not exist; make it with"):
        inspect_parquet(storage, str(tmp_path / "missing"))
    empty = tmp_path / "empty"
    empty.mkdir()
    pd.DataFrame({"id": pd.Series([], dtype="int64")}).to_parquet(empty / "p.parquet")
    with pytest.raises(JobInputError, match="the dataset is empty"):
        inspect_parquet(storage, str(empty))
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    pd.DataFrame({"id": [1]}).to_parquet(mixed / "p0.parquet")
    pd.DataFrame({"other": [1]}).to_parquet(mixed / "p1.parquet")
    with pytest.raises(JobInputError, match="its columns differ from the other files"):
        inspect_parquet(storage, str(mixed))
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "p.parquet").write_bytes(b"PAR1 not really parquet at all PAR1")
    with pytest.raises(JobInputError, match=r"broken/p\.parquet: not a readable Parquet file"):
        inspect_parquet(storage, str(broken))
