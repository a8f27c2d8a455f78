import json

import pytest

from clusterkit.core.errors import RunNotFound
from clusterkit.runs.store import FolderRunStore as RunStore


def test_store_round_trip_and_lookup(tmp_path):
    store = RunStore(tmp_path / "runs")
    a = store.create(job="datagen", params={"rows": 5}, cluster="c", provider="local")
    b = store.create(job="ray-pi", params={}, cluster="c", provider="local")
    assert [r.id for r in store.all()] == sorted([a.id, b.id])
    assert store.get(a.id).params == {"rows": 5}
    assert store.get("latest").id == max(a.id, b.id)
    common = a.id[:9]  # the date part: both runs start with it
    with pytest.raises(RunNotFound, match=f"2 runs matching '{common}'"):
        store.get(common)
    assert {r.id for r in store.active()} == {a.id, b.id}
    record = store.load(a.id)
    record.status = "succeeded"
    store.save(record)
    assert [r.id for r in store.active()] == [b.id]
    on_disk = json.loads((store.dir(a.id) / "record.json").read_text())
    assert on_disk["status"] == "succeeded" and on_disk["job"] == "datagen"


def test_unknown_run_is_named(tmp_path):
    with pytest.raises(RunNotFound, match="no run matching 'zzz'"):
        RunStore(tmp_path).get("zzz")


def test_no_temp_files_left_behind(tmp_path):
    store = RunStore(tmp_path)
    record = store.create(job="x", params={}, cluster="c", provider="local")
    for _ in range(5):
        store.save(record)
    assert sorted(p.name for p in store.dir(record.id).iterdir()) == ["record.json"]


@pytest.mark.parametrize("text", ['{"id": "r1", "job"', "[]", '{"job": "etl"}'])
def test_a_damaged_record_is_named_with_what_to_do(tmp_path, text):
    from clusterkit.core.errors import StateError

    store = RunStore(tmp_path)
    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "record.json").write_text(text)
    with pytest.raises(StateError) as caught:
        store.all()
    message = str(caught.value)
    assert f"{tmp_path / 'r1' / 'record.json'} is not a run record" in message
    assert "restore-after-crash.md" in message
