"""The kit's files on this machine: its home and the cluster's state folder are the user's and
closed to others, its secrets (tokens, keys, the Spark defaults holding the RPC secret) are
the user's, 0600 and not empty, and its JSON state files parse.

``cluster.json`` and ``contexts.json`` are the ``cluster`` check's (they say which cluster and
in what state); this one parses the others: ``keeper.json``, ``pids/*.json``, the runs'
``record.json``, Terraform's ``outputs.json`` and the variables of its last apply
(``cluster.tfvars.json``).
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from clusterkit.core.state import ClusterPaths
from clusterkit.doctor.report import Finding, fail, ok, warn
from clusterkit.doctor.target import Target
from clusterkit.services.local import spark_defaults_file


@dataclass(frozen=True)
class FileInfo:
    """A path as ``os.lstat`` sees it (``exists`` False: absent): kind, mode bits, owner and
    size."""

    path: str
    exists: bool
    is_dir: bool = False
    is_link: bool = False
    mode: int = 0
    uid: int = -1
    size: int = 0


def file_info(path: Path, *, follow: bool = False) -> FileInfo:
    """``path`` as ``os.lstat`` sees it (with ``follow``, ``os.stat``: a symlink to a folder
    is that folder)."""
    try:
        info = os.stat(path) if follow else os.lstat(path)
    except FileNotFoundError:
        return FileInfo(str(path), False)
    return FileInfo(str(path), True, stat.S_ISDIR(info.st_mode), stat.S_ISLNK(info.st_mode),
                    stat.S_IMODE(info.st_mode), info.st_uid, info.st_size)  # fmt: skip


@dataclass(frozen=True)
class StateReading:
    """This user's uid; the kit's home and the cluster's state folder (None: no cluster);
    its secrets, those in ``needed`` required to be there (the cluster is up); the JSON state
    files that do not parse (path, why), those that cannot be opened (``denied``: path, why)
    and how many parsed."""

    uid: int
    home: FileInfo
    folder: FileInfo | None = None
    secrets: list[FileInfo] = field(default_factory=list)
    needed: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    parsed: int = 0
    denied: list[tuple[str, str]] = field(default_factory=list)


def secret_files(paths: ClusterPaths) -> tuple[list[Path], list[Path]]:
    """The cluster's secrets: (those every cluster has once up, those only some have)."""
    always = [paths.ray_token, paths.spark_connect_token, paths.spark_secret]
    return always, [spark_defaults_file(paths), paths.ssh / "id_ed25519"]


def json_files(paths: ClusterPaths) -> list[Path]:
    """The state folder's JSON files this check parses (see the module's docstring)."""
    root = paths.root
    found = [root / "keeper.json", root / "terraform" / "outputs.json",
             root / "terraform" / "cluster.tfvars.json"]  # fmt: skip
    found = [p for p in found if p.exists()]
    if paths.pids.is_dir():
        found += sorted(paths.pids.glob("*.json"))
    if paths.runs.is_dir():
        found += sorted(paths.runs.glob("*/record.json"))
    return found


def read_state(target: Target) -> StateReading:
    paths = target.paths
    if paths is None:
        return StateReading(os.geteuid(), file_info(target.home, follow=True))
    always, optional = secret_files(paths)
    secrets = [file_info(p) for p in always] + [file_info(p) for p in optional if p.exists()]
    unreadable, denied, parsed = [], [], 0
    for path in json_files(paths):
        try:
            json.loads(path.read_text())
            parsed += 1
        except PermissionError as exc:  # its owner or mode, not its content
            denied.append((str(path), exc.strerror or str(exc)))
        except (OSError, ValueError) as exc:
            unreadable.append((str(path), str(exc)))
    needed = [str(p) for p in always] if target.up else []
    return StateReading(os.geteuid(), file_info(target.home, follow=True),
                        file_info(paths.root), secrets, needed, unreadable, parsed,
                        denied)  # fmt: skip


def _folder(info: FileInfo, uid: int, *, private: bool) -> Finding | None:
    """A folder not this user's, a symlink or a file, or writable by others: FAIL; with
    ``private`` (the state folder, which ``up`` makes 0700) open to others at all: WARN; else
    (the kit's home, made with the user's umask, maybe a symlink to another disk: read
    through it) writable by its group: WARN. The folder is the runbook's FILE."""
    fix, data = f"chmod 700 {info.path} (and check who changed it)", {"FILE": info.path}
    if info.is_link or not info.is_dir:
        return fail("state", f"{info.path} is not a folder (a symlink or a file)",
                    "state-permissions", "move it aside; `clusterkit up` makes it",
                    data)  # fmt: skip
    if info.uid != uid:
        return fail("state", f"{info.path} belongs to uid {info.uid}, not to you (uid {uid})",
                    "state-permissions", "the runbook says how to take it back",
                    data)  # fmt: skip
    if info.mode & (0o022 if private else 0o002):
        return fail("state", f"{info.path} is writable by others (mode {info.mode:o})",
                    "state-permissions", fix, data)  # fmt: skip
    if not private and info.mode & 0o020:  # a umask of 002 makes it so: the group may write
        return warn("state", f"{info.path} is writable by its group (mode {info.mode:o})",
                    "state-permissions", fix, data)  # fmt: skip
    if private and info.mode & 0o077:
        return warn("state", f"{info.path} is open to others (mode {info.mode:o}; `up` makes "
                             "it 0700)", "state-permissions", fix, data)  # fmt: skip
    return None


def _secret(info: FileInfo, uid: int, needed: bool, folder: str) -> Finding | None:
    """Missing while the cluster is up, or empty: FAIL (lost-token-or-key); not this user's
    or a symlink: FAIL (state-permissions); readable by others: FAIL (lost-token-or-key: it
    may be known). The secret is the runbook's FILE, the state ``folder`` its STATE_DIR."""
    data = {"FILE": info.path, "STATE_DIR": folder}
    if not info.exists:
        return fail("state", f"{info.path} is missing while the cluster is up",
                    "lost-token-or-key", "the runbook says how to make a new one and give it "
                    "to the services", data) if needed else None  # fmt: skip
    if info.is_link or info.uid != uid:
        owner = "a symlink" if info.is_link else f"owned by uid {info.uid}, not you (uid {uid})"
        return fail("state", f"{info.path} is {owner}", "state-permissions", data=data)
    if info.mode & 0o077:
        return fail("state", f"{info.path} is readable by others (mode {info.mode:o}): its "
                             "secret may be known", "lost-token-or-key",
                    f"chmod 600 {info.path}, then replace the secret", data)  # fmt: skip
    if info.size == 0:
        return fail("state", f"{info.path} is empty", "lost-token-or-key",
                    "delete it; `clusterkit up` makes a new one", data)  # fmt: skip
    return None


def judge_state(reading: StateReading) -> list[Finding]:
    """Folders (:func:`_folder`), secrets (:func:`_secret`), FAIL (state-permissions) for each
    JSON state file that cannot be opened (its owner or mode), and FAIL (restore-after-crash)
    for each that does not parse, the file the runbook's FILE; one OK line when all is
    well."""
    found = []
    if reading.home.exists:
        found.append(_folder(reading.home, reading.uid, private=False))
    if reading.folder is not None and reading.folder.exists:
        found.append(_folder(reading.folder, reading.uid, private=True))
    folder = reading.folder.path if reading.folder is not None else ""
    found += [_secret(s, reading.uid, s.path in reading.needed, folder) for s in reading.secrets]
    found += [fail("state", f"{path} cannot be read ({why}): not yours, or its mode",
                   "state-permissions", "the runbook says how to take it back",
                   {"FILE": path}) for path, why in reading.denied]  # fmt: skip
    found += [fail("state", f"{path} does not parse ({why})", "restore-after-crash",
                   data={"FILE": path}) for path, why in reading.unreadable]  # fmt: skip
    problems = [f for f in found if f is not None]
    if problems:
        return problems
    if reading.folder is None:
        where = reading.home.path if reading.home.exists else f"{reading.home.path} (not made yet)"
        return [ok("state", f"home {where}; no cluster's state folder")]
    if not reading.folder.exists:
        return [ok("state", f"state folder {reading.folder.path} not made yet")]
    present = sum(s.exists for s in reading.secrets)
    return [ok("state", f"{reading.folder.path} is yours and private, {present} secrets "
                        f"closed to others, {reading.parsed} state files parse")]  # fmt: skip
