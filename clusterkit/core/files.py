"""Files written whole: a reader sees the old file or the new one, never half of it, and
after a crash of this machine the file is the old one or the new one, never empty."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import stat
import tempfile
from pathlib import Path
from typing import Any

from clusterkit.core.errors import SecretMissing, StateError


def fsync_dir(folder: Path) -> None:
    """Make a rename or a creation in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems cannot sync a folder; the rename stands
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(fd)


def write_bytes_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder (``mode`` from
    its creation, its bytes fsynced) and a rename (the folder fsynced after it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: Path, text: str, *, mode: int = 0o600) -> None:
    """:func:`write_bytes_atomic` for text (UTF-8)."""
    write_bytes_atomic(path, text.encode(), mode=mode)


def json_bytes(data: Any) -> bytes:
    """The kit's JSON form of a file: indented, keys sorted, one trailing newline."""
    return (json.dumps(data, indent=2, sort_keys=True, default=str) + "\n").encode()


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as JSON so that readers see the old file or the new one, never half."""
    write_bytes_atomic(path, json_bytes(data))


def ensure_secret(path: Path) -> str:
    """A random token in ``path``: made once (written whole, mode 600, then renamed into
    place, so a crash never leaves an empty token); its text. StateError when the file is
    there but empty."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_hex(32))
                out.flush()
                os.fsync(out.fileno())
            try:
                os.link(tmp, path)  # never replaces a token another process made meanwhile
            except OSError as exc:  # a file system without hard links: rename, unless made
                if isinstance(exc, FileExistsError) or path.exists():
                    raise FileExistsError(path) from exc
                os.rename(tmp, path)
        except FileExistsError:
            pass
        finally:
            Path(tmp).unlink(missing_ok=True)
        fsync_dir(path.parent)
    text = path.read_text().strip()
    if not text:
        raise StateError(f"{path} is empty: delete it; `clusterkit up` makes a new one")
    return text


def read_secret(path: Path, what: str) -> str:
    """The token in ``path`` (``what`` names it in errors), never made here;
    :class:`SecretMissing` (a StateError) naming the file and the runbook when it is missing
    or empty (a cluster that is up needs the one it started with)."""
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        text = None
    if not text:
        state = "missing" if text is None else "empty"
        raise SecretMissing(f"{what} {path} is {state}: see docs/runbooks/lost-token-or-key.md "
                            "(`clusterkit doctor` checks it)", path)  # fmt: skip
    return text


def private_dir(path: Path, *, tighten: bool = False) -> Path:
    """``path`` as a folder only this user can enter: made 0700 when absent; StateError when
    it is a symlink, not a folder, another user's, or open to others (someone could have
    made it first to read or plant files). With ``tighten``, a folder of this user's that
    is open to others is made 0700 instead (the kit's own folders, made before it did so)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, 0o700)
    info = os.lstat(path)
    if tighten and stat.S_ISDIR(info.st_mode) and info.st_uid == os.geteuid():
        os.chmod(path, 0o700)
    info = os.lstat(path)
    problem = None
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        problem = "is not a folder (a symlink or a file)"
    elif info.st_uid != os.geteuid():
        problem = f"belongs to uid {info.st_uid}, not to you (uid {os.geteuid()})"
    elif info.st_mode & 0o077:
        problem = f"is open to other users (mode {stat.S_IMODE(info.st_mode):o})"
    if problem:
        raise StateError(f"{path} {problem}: remove it (it holds nothing of yours) and retry")
    return path
