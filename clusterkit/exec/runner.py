"""One interface to act on a node, whichever node it is: this machine
(:class:`clusterkit.exec.local.LocalRunner`) or another one over SSH
(:class:`clusterkit.exec.ssh.SshRunner`). Every verb that touches a node (health, metrics,
exec, copy, tunnels, starting and reaping runs) is written once over a runner.

Contract of every method: a node that cannot be reached raises
:class:`~clusterkit.core.errors.NodeUnreachable` naming it (and, on SSH, the connection is
opened again on the next call); a file that is not there raises ``FileNotFoundError``; any
other failure raises a :class:`~clusterkit.core.errors.ClusterkitError` whose message names
the node and what was being done.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from clusterkit.core.errors import ClusterkitError
from clusterkit.core.inventory import Node

#: (stream: "out" or "err", one line of output without its newline)
OnLine = Callable[[str, str], None]


class CommandFailed(ClusterkitError):
    """A command exited non-zero (``status``) or ran out of time (``status`` None)."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CommandResult:
    exit_code: int
    stdout: str  # empty when the lines went to ``on_line``
    stderr: str


@dataclass(frozen=True)
class FileInfo:
    name: str
    size: int
    mtime: float
    is_dir: bool


def command_line(argv: Sequence[str] | str, env: Mapping[str, str] | None = None) -> str:
    """A shell command line: ``argv`` quoted word by word (a str is already one), with
    ``env`` set for it."""
    text = argv if isinstance(argv, str) else shlex.join(argv)
    if env:
        assignments = " ".join(f"{key}={shlex.quote(value)}" for key, value in env.items())
        text = f"env {assignments} sh -c {shlex.quote(text)}"
    return text


def failed(node: Node, argv: Sequence[str] | str, result: CommandResult) -> CommandFailed:
    """The error of a command that exited non-zero: node, command, exit code, last words."""
    shown = argv if isinstance(argv, str) else shlex.join(argv)
    tail = (result.stderr or result.stdout).strip()[-300:]
    return CommandFailed(
        f"`{shown}` failed on {node.name} (exit {result.exit_code}){': ' + tail if tail else ''}",
        result.exit_code,
    )


class LineSplitter:
    """Hands whole lines of a stream to ``on_line`` as its text arrives in pieces."""

    def __init__(self, stream: str, on_line: OnLine, lock: threading.Lock) -> None:
        self.stream, self.on_line, self.lock = stream, on_line, lock
        self.pending = ""

    def write(self, text: str) -> None:
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        with self.lock:
            for line in lines:
                self.on_line(self.stream, line)

    def flush(self) -> None:
        if self.pending:
            with self.lock:
                self.on_line(self.stream, self.pending)
            self.pending = ""


class CommandRunner(Protocol):
    """A node's verbs. ``local`` is true when the node is this machine (its files are this
    machine's files)."""

    node: Node
    local: bool

    def run(
        self,
        argv: Sequence[str] | str,
        *,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 60,
        on_line: OnLine | None = None,
        stop: threading.Event | None = None,
        check: bool = True,
    ) -> CommandResult:
        """Run ``argv`` (words, quoted for the node's shell) or a shell command line (a str)
        to its end. Output lines go to ``on_line`` as they come (then the result holds none);
        ``stop``, once set, closes the command's stdin (the kit's samplers end on that);
        ``timeout`` None waits for ever. With ``check``, a non-zero exit raises CommandFailed."""
        ...

    def spawn(
        self, argv: Sequence[str], *, cwd: str, log: str, unset_env: Sequence[str] = ()
    ) -> None:
        """Start ``argv`` detached (a session of its own that outlives this runner and its
        connection), in ``cwd``, stdin from /dev/null, output appended to ``log``, without
        the ``unset_env`` variables; return at once."""
        ...

    def alive(self, pid: int, *, marker: str) -> bool:
        """Whether process ``pid`` runs on the node with ``marker`` in its command line."""
        ...

    def read_bytes(self, path: str, offset: int = 0) -> bytes:
        """The bytes of ``path`` from ``offset`` on."""
        ...

    def write_file(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        """Write ``path`` whole (a reader sees the old file or the new one), making its
        folders (mode 700) when missing."""
        ...

    def list_dir(self, path: str) -> list[FileInfo]:
        """The entries of a folder."""
        ...

    def put(self, source: Path, destination: str) -> list[str]:
        """Copy a file or folder of this machine to ``destination`` on the node, like
        ``scp -r`` (into it when it is a folder there), modes kept; the paths written."""
        ...

    def forward(
        self, host: str, port: int, *, prefer: int | None = None
    ) -> AbstractContextManager[str]:
        """While the block runs, ``host:port`` as the node reaches it, reachable from here at
        the ``HOST:PORT`` yielded (a tunnel listening on 127.0.0.1, on port ``prefer`` when
        that is free; on this machine, the address itself)."""
        ...

    def shell(self, argv: Sequence[str] | None = None) -> int:
        """An interactive shell on the node on this terminal (or ``argv`` run on one); its
        exit code."""
        ...

    def close(self) -> None:
        """Release the connection (a later call opens it again)."""
        ...
