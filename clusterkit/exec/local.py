"""The runner of this machine: subprocesses, psutil and the local file system.

Used for the local provider's one node, and by a run's supervisor and jobs on the node they
run on (the master of a remote cluster is "this machine" to them).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import psutil

from clusterkit.core.files import write_bytes_atomic
from clusterkit.core.inventory import Node
from clusterkit.core.state import LOOPBACK
from clusterkit.exec import processes
from clusterkit.exec.runner import (
    CommandFailed,
    CommandResult,
    FileInfo,
    LineSplitter,
    OnLine,
    command_line,
    failed,
)


def this_machine(name: str | None = None, roles: tuple[str, ...] = ()) -> Node:
    """This machine as a node (reached without SSH)."""
    return Node(name=name or socket.gethostname(), address=LOOPBACK, roles=roles)


class LocalRunner:
    """The verbs of :class:`~clusterkit.exec.runner.CommandRunner` on this machine."""

    local = True

    def __init__(self, node: Node | None = None) -> None:
        self.node = node or this_machine()

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
        command = ["/bin/sh", "-c", argv] if isinstance(argv, str) else list(argv)
        environment = {**os.environ, **env} if env else None
        try:
            proc = subprocess.Popen(
                command,
                env=environment,
                stdin=subprocess.PIPE if stop is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
            )
        except OSError as exc:
            raise CommandFailed(
                f"`{command_line(argv)}` could not start on {self.node.name}: {exc}", None
            ) from exc
        collected: dict[str, list[str]] = {"out": [], "err": []}
        lock = threading.Lock()

        def pump(stream: str) -> None:
            pipe = proc.stdout if stream == "out" else proc.stderr
            assert pipe is not None
            splitter = LineSplitter(stream, on_line, lock) if on_line else None
            for chunk in iter(lambda: pipe.readline(), ""):
                if splitter is not None:
                    splitter.write(chunk)
                else:
                    collected[stream].append(chunk)
            if splitter is not None:
                splitter.flush()

        readers = [threading.Thread(target=pump, args=(s,), daemon=True) for s in ("out", "err")]
        for reader in readers:
            reader.start()
        if stop is not None:

            def close_stdin() -> None:
                stop.wait()
                if proc.stdin is not None:
                    proc.stdin.close()

            threading.Thread(target=close_stdin, daemon=True).start()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise CommandFailed(
                f"`{command_line(argv)}` did not end on {self.node.name} within {timeout:g} s",
                None,
            ) from None
        finally:
            for reader in readers:
                reader.join(timeout=5)
        result = CommandResult(
            proc.returncode, "".join(collected["out"]), "".join(collected["err"])
        )
        if check and result.exit_code != 0:
            raise failed(self.node, argv, result)
        return result

    def spawn(
        self, argv: Sequence[str], *, cwd: str, log: str, unset_env: Sequence[str] = ()
    ) -> None:
        env = {k: v for k, v in os.environ.items() if k not in unset_env}
        processes.spawn(Path(argv[0]).name, argv, env=env, log=Path(log), cwd=Path(cwd))

    def alive(self, pid: int, *, marker: str) -> bool:
        try:
            proc = psutil.Process(pid)
            if proc.status() == psutil.STATUS_ZOMBIE:
                return False
            return marker in " ".join(proc.cmdline())
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            return False

    def read_bytes(self, path: str, offset: int = 0) -> bytes:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read()

    def write_file(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        target = Path(path)
        if not target.parent.exists():
            target.parent.mkdir(parents=True, mode=0o700)
        write_bytes_atomic(target, data, mode=mode)

    def list_dir(self, path: str) -> list[FileInfo]:
        found = []
        with os.scandir(path) as entries:
            for entry in entries:
                try:
                    info = entry.stat()
                except FileNotFoundError:
                    continue  # removed while listed
                found.append(FileInfo(entry.name, info.st_size, info.st_mtime, entry.is_dir()))
        return found

    def put(self, source: Path, destination: str) -> list[str]:
        target = Path(destination)
        if target.is_dir():
            target = target / source.name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
            return sorted(str(p) for p in target.rglob("*") if p.is_file())
        shutil.copy2(source, target)
        return [str(target)]

    @contextmanager
    def forward(self, host: str, port: int, *, prefer: int | None = None) -> Iterator[str]:
        yield f"{host}:{port}"  # the node is this machine: what it reaches, this reaches

    def shell(self, argv: Sequence[str] | None = None) -> int:
        command = list(argv) if argv else [os.environ.get("SHELL") or "/bin/bash", "-l"]
        try:
            return subprocess.call(command)
        except OSError as exc:
            raise CommandFailed(f"`{command_line(command)}` could not start: {exc}", None) from exc

    def close(self) -> None:
        return None
