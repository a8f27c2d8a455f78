"""Bad input and damaged state files: one clear line naming the file, the right exit code,
nothing lost (no cluster needed)."""

import json
import multiprocessing
import os
import stat
import time
from pathlib import Path

import pytest

from clusterkit import cli
from clusterkit.core.errors import SpecError, StateError
from clusterkit.core.files import ensure_secret, private_dir, write_json_atomic
from clusterkit.core.lock import ClusterBusy, cluster_lock
from clusterkit.core.spec import load_spec, parse_spec
from clusterkit.core.state import ClusterPaths, ClusterState


def _error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err.strip()


@pytest.mark.parametrize("kind", ["not-utf8", "folder", "missing"])
def test_a_spec_that_cannot_be_read_exits_2_with_its_path(kind, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CLUSTERKIT_HOME", str(tmp_path / "home"))
    spec = tmp_path / "spec.yaml"
    if kind == "not-utf8":
        spec.write_bytes(b"name: caf\xe9\n")
    elif kind == "folder":
        spec.mkdir()
    assert cli.main(["up", "--dry-run", "--spec", str(spec)]) == 2
    line = _error_line(capsys)
    assert str(spec) in line
    expected = {"not-utf8": "byte 9 is not UTF-8", "folder": "is a folder",
                "missing": "no such spec file"}[kind]  # fmt: skip
    assert expected in line


BAD_DIRS = ["/tmp/{{ lookup('pipe','id') }}", "/tmp/{% if 1 %}x{% endif %}", "/tmp/a b",
            "/tmp/it's", '/tmp/"q"', "/tmp/$HOME", ""]  # fmt: skip


@pytest.mark.parametrize("path", BAD_DIRS)
def test_state_dir_with_template_syntax_quotes_or_spaces_is_refused(path):
    with pytest.raises(SpecError, match="state_dir"):
        parse_spec({"state_dir": path})


def test_a_plain_state_dir_is_taken():
    assert parse_spec({"state_dir": "~/class-2026/ck_state.v1"}).state_dir == (
        "~/class-2026/ck_state.v1"
    )


@pytest.mark.parametrize("content", ["", "{", "[]", '{"schema": 3}'])
def test_an_empty_or_corrupt_cluster_json_is_a_clear_state_error(content, tmp_path):
    paths = ClusterPaths(tmp_path)
    paths.state_file.write_text(content)
    with pytest.raises(StateError, match=str(paths.state_file)):
        ClusterState.load(paths)


def test_state_files_are_written_whole_mode_600_and_fsynced(tmp_path, monkeypatch):
    synced: list[int] = []
    real_fsync = os.fsync

    def counted(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counted)
    target = tmp_path / "cluster.json"
    write_json_atomic(target, {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert len(synced) == 2  # the file's bytes, then the folder's entry
    assert [p.name for p in tmp_path.iterdir()] == ["cluster.json"]  # no temporary left


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "cluster.json"
    write_json_atomic(target, {"old": True})

    def full(*_args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        write_json_atomic(target, {"new": True})
    assert json.loads(target.read_text()) == {"old": True}
    assert [p.name for p in tmp_path.iterdir()] == ["cluster.json"]


def test_a_token_is_never_empty(tmp_path):
    token = tmp_path / "ray-token"
    first = ensure_secret(token)
    assert len(first) == 64 and ensure_secret(token) == first
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    token.write_text("")
    with pytest.raises(StateError, match="is empty"):
        ensure_secret(token)


def test_a_private_folder_refuses_a_symlink_or_an_open_folder(tmp_path):
    made = private_dir(tmp_path / "mine")
    assert stat.S_IMODE(made.stat().st_mode) == 0o700
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "planted").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StateError, match="not a folder"):
        private_dir(tmp_path / "planted")
    (tmp_path / "open").mkdir(mode=0o777)
    os.chmod(tmp_path / "open", 0o777)
    with pytest.raises(StateError, match="open to other users"):
        private_dir(tmp_path / "open")


def _hold(root: str, held) -> None:
    with cluster_lock(Path(root), "up"):
        held.set()
        time.sleep(30)


def test_a_second_locked_command_waits_then_names_the_holder(tmp_path):
    held = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(target=_hold, args=(str(tmp_path), held))
    holder.start()
    try:
        assert held.wait(10)
        t0 = time.monotonic()
        with pytest.raises(ClusterBusy) as caught, cluster_lock(tmp_path, "down", wait_s=1.0):
            pass
        assert 1.0 <= time.monotonic() - t0 < 3
        assert f"pid {holder.pid}" in str(caught.value)
        assert "clusterkit down" in str(caught.value)
    finally:
        holder.kill()
        holder.join()
    with cluster_lock(tmp_path, "down", wait_s=1.0):  # the kernel dropped the dead one's lock
        pass


def test_load_spec_reads_a_spec_given_by_path(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: class-a\n", encoding="utf-8")
    assert load_spec(spec).name == "class-a"


@pytest.mark.parametrize("argv", [["up"], ["down"], ["provision"]])
def test_up_down_and_provision_wait_for_the_lock_then_exit_1(argv, tmp_path, monkeypatch, capsys):
    """Two commands on one cluster at once: the second names the first and changes nothing."""
    home = tmp_path / "home"
    monkeypatch.setenv("CLUSTERKIT_HOME", str(home))
    root = home / "clusters" / "local"
    root.mkdir(parents=True)
    (home / "contexts.json").write_text(json.dumps(
        {"current": "local", "clusters": {"local": str(root)}}))  # fmt: skip
    monkeypatch.setattr("clusterkit.core.lock.WAIT_S", 1.0)
    held = multiprocessing.get_context("fork").Event()
    holder = multiprocessing.get_context("fork").Process(target=_hold, args=(str(root), held))
    holder.start()
    try:
        assert held.wait(10)
        assert cli.main(argv) == 1
        line = _error_line(capsys)
        assert f"is locked by pid {holder.pid}" in line and f"`clusterkit {argv[0]}`" in line
        assert sorted(p.name for p in root.iterdir()) == [".lock"]  # nothing made or removed
    finally:
        holder.kill()
        holder.join()


def test_the_kits_own_open_folder_is_tightened_not_refused(tmp_path):
    old = tmp_path / "clusters" / "local"
    old.mkdir(parents=True, mode=0o755)
    os.chmod(old, 0o755)
    private_dir(old, tighten=True)
    assert stat.S_IMODE(old.stat().st_mode) == 0o700


def test_a_run_stopped_mid_commit_gets_its_old_output_back(tmp_path):
    """Killed between the commit's two renames: the old copy goes back, the half is removed;
    killed after them: the old copy it had yet to remove goes."""
    from clusterkit.core.outputs import sweep_temp_outputs

    run = "20261202-000000-abcd"
    (tmp_path / f".people.old-{run}").mkdir()
    (tmp_path / f".people.old-{run}" / "part-0.parquet").write_text("old")
    (tmp_path / f"people.tmp-{run}").mkdir()
    (tmp_path / "sales").mkdir()
    (tmp_path / f".sales.old-{run}").mkdir()
    (tmp_path / ".keep.old-20261202-000000-ffff").mkdir()  # another run's: not touched
    removed = sweep_temp_outputs(str(tmp_path), run)
    assert len(removed) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        ".keep.old-20261202-000000-ffff", "people", "sales"]  # fmt: skip
    assert (tmp_path / "people" / "part-0.parquet").read_text() == "old"
