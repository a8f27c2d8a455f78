"""The runner of a remote node, over SSH (fabric/paramiko): the one place the kit opens SSH.

A node with a ``jump_host`` (a private worker) is reached through that host, the way
``ssh -J`` does. Host keys are checked against the cluster's known_hosts file; an unknown or
changed key is refused (paramiko's RejectPolicy), never silently accepted. Only the cluster's
own key is offered: no agent, no agent forwarding, and the operator's ``~/.ssh/config`` is not
read (a ``ForwardAgent yes`` there must not reach the nodes). One connection per runner,
opened when first needed and again after a drop; errors name the node and its address and
say what to do.
"""

from __future__ import annotations

import codecs
import contextlib
import logging
import secrets
import select
import shlex
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from clusterkit.core.errors import ClusterkitError, NodeUnreachable
from clusterkit.core.files import write_bytes_atomic
from clusterkit.core.inventory import Inventory, Node, SshSettings
from clusterkit.exec.runner import (
    CommandFailed,
    CommandResult,
    FileInfo,
    LineSplitter,
    OnLine,
    command_line,
    failed,
)

CONNECT_TIMEOUT_S = 10.0
# paramiko logs a refused channel on its own as well; the kit's error names the node instead
logging.getLogger("paramiko").addHandler(logging.NullHandler())

T = TypeVar("T")


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def local_port(preferred: int) -> int:
    """``preferred`` when it is free on 127.0.0.1 (bookmarks keep working), else any."""
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", preferred))
        except OSError:
            return free_port()
    return preferred


def _connection(host: str, ssh: SshSettings, gateway: Any = None) -> Any:
    """A fabric Connection (not yet opened): the cluster's key only, host keys checked, no
    agent, no ssh config files."""
    from fabric import Config, Connection
    from paramiko import RejectPolicy, SSHConfig

    conn = Connection(
        host,
        user=ssh.user,
        gateway=gateway,
        forward_agent=False,
        connect_timeout=CONNECT_TIMEOUT_S,
        config=Config(lazy=True, ssh_config=SSHConfig()),  # ~/.ssh/config is not read
        connect_kwargs={"key_filename": str(ssh.key), "look_for_keys": False,
                        "allow_agent": False},
    )  # fmt: skip
    conn.client.load_host_keys(str(ssh.known_hosts))
    conn.client.set_missing_host_key_policy(RejectPolicy())
    return conn


class SshRunner:
    """The verbs of :class:`~clusterkit.exec.runner.CommandRunner` on a node reached over SSH.

    Thread-safe: commands run on channels of their own; file operations share one SFTP
    session under a lock."""

    local = False

    def __init__(self, inventory: Inventory, node: Node, ssh: SshSettings) -> None:
        self.inventory, self.node, self.ssh = inventory, node, ssh
        self._lock = threading.RLock()
        self._conn: Any = None
        self._gateway: Any = None  # the jump host's connection (fabric does not close it)
        self._sftp: Any = None

    @property
    def where(self) -> str:
        """The node as messages name it: ``node worker (10.40.2.10 through master)``."""
        jump = self.inventory.jump_node(self.node)
        via = (
            f" through {jump.name if jump else self.node.jump_host}" if self.node.jump_host else ""
        )
        return f"node {self.node.name} ({self.node.ssh_host or self.node.address}{via})"

    # -- the connection -------------------------------------------------------------------
    def _open(self) -> Any:
        with self._lock:
            if self._conn is not None and self._conn.is_connected:
                return self._conn
            self.close()
            jump = self.node.jump_host
            self._gateway = _connection(jump, self.ssh) if jump else None
            conn = _connection(self.node.ssh_host or self.node.address, self.ssh, self._gateway)
            try:
                conn.open()
            except Exception as exc:
                conn.close()
                self.close()
                raise NodeUnreachable(
                    f"{self.where} of cluster {self.inventory.cluster!r} did not answer over "
                    f"SSH: {exc or type(exc).__name__}; check that it is up (`clusterkit status`)"
                ) from exc
            self._conn = conn
            return conn

    def _do(self, what: str, action: Callable[[Any], T]) -> T:
        """``action(connection)``; a dropped connection is closed and reported as
        NodeUnreachable (the next call connects again)."""
        try:
            return action(self._open())
        except (FileNotFoundError, ClusterkitError):
            raise
        except PermissionError as exc:
            raise ClusterkitError(f"{self.where}: {what}: {exc}") from exc
        except Exception as exc:  # OSError, EOFError, paramiko's SSHException and kin
            self.close()
            raise NodeUnreachable(
                f"lost the connection to {self.where} of cluster {self.inventory.cluster!r} "
                f"while {what}: {exc or type(exc).__name__}"
            ) from exc

    def _sftp_do(self, what: str, action: Callable[[Any], T]) -> T:
        """``action(sftp)``: a file the server refuses (no such file, a permission, a
        failure) is a ClusterkitError naming it, and the connection is kept; a dropped one
        is NodeUnreachable as in :meth:`_do`."""

        def with_sftp(conn: Any) -> T:
            with self._lock:
                if self._sftp is None:
                    self._sftp = conn.sftp()
                try:
                    return action(self._sftp)
                except (FileNotFoundError, ConnectionError, TimeoutError):
                    raise
                except OSError as exc:  # the SFTP server's answer about a file
                    raise ClusterkitError(f"{self.where}: {what}: {exc}") from exc

        return self._do(what, with_sftp)

    def close(self) -> None:
        with self._lock:
            for thing in (self._sftp, self._conn, self._gateway):
                if thing is not None:
                    with contextlib.suppress(Exception):  # a dead connection is gone either way
                        thing.close()
            self._sftp, self._conn, self._gateway = None, None, None

    # -- commands -------------------------------------------------------------------------
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
        command = command_line(argv, env)
        shown = argv if isinstance(argv, str) else shlex.join(argv)
        if timeout is not None:  # ended on the node itself: closing the channel would not
            command = f"timeout -k 5 {timeout:g} sh -c {shlex.quote(command)}"
        limit = None if timeout is None else timeout + 15  # the node's own first
        result = self._do(
            f"running `{shown}`", lambda conn: self._exec(conn, command, limit, on_line, stop)
        )
        if timeout is not None and result.exit_code == 124:  # timeout's own code
            raise CommandFailed(
                f"`{shown}` did not end on {self.node.name} within {timeout:g} s", None
            )
        if check and result.exit_code != 0:
            raise failed(self.node, argv, result)
        return result

    def _exec(self, conn: Any, command: str, timeout: float | None, on_line: OnLine | None,
              stop: threading.Event | None) -> CommandResult:  # fmt: skip
        channel = conn.client.get_transport().open_session(timeout=CONNECT_TIMEOUT_S)
        lock = threading.Lock()
        sinks: dict[str, Any] = {}
        texts: dict[str, list[str]] = {"out": [], "err": []}
        decoders = {s: codecs.getincrementaldecoder("utf-8")("replace") for s in texts}
        for stream in texts:
            sinks[stream] = LineSplitter(stream, on_line, lock) if on_line else None
        ended = threading.Event()

        def take(stream: str, data: bytes, final: bool = False) -> None:
            text = decoders[stream].decode(data, final=final)
            if sinks[stream] is not None:
                sinks[stream].write(text)
            else:
                texts[stream].append(text)

        try:
            channel.exec_command(command)
            if stop is None:
                channel.shutdown_write()  # no stdin: the command reads end-of-file
            else:

                def close_stdin() -> None:
                    while not stop.wait(0.5):
                        if ended.is_set():
                            return
                    with contextlib.suppress(Exception):
                        channel.shutdown_write()

                threading.Thread(target=close_stdin, daemon=True).start()
            deadline = None if timeout is None else time.monotonic() + timeout
            while True:
                select.select([channel], [], [], 0.5)
                while channel.recv_ready():
                    take("out", channel.recv(65536))
                while channel.recv_stderr_ready():
                    take("err", channel.recv_stderr(65536))
                if channel.exit_status_ready() and not (
                    channel.recv_ready() or channel.recv_stderr_ready()
                ):
                    break
                if not conn.is_connected:
                    raise EOFError("the connection closed")
                if deadline is not None and time.monotonic() > deadline:
                    raise CommandFailed(
                        f"`{command}` did not end on {self.node.name} within {timeout:g} s "
                        f"(its node's `timeout` did not end it either)",
                        None,
                    )
            code = channel.recv_exit_status()
        finally:
            ended.set()
            channel.close()
        for stream in texts:
            take(stream, b"", final=True)
            if sinks[stream] is not None:
                sinks[stream].flush()
        if code < 0:  # no exit status came back: the connection went
            raise EOFError("the command's channel closed without an exit status")
        return CommandResult(code, "".join(texts["out"]), "".join(texts["err"]))

    def spawn(
        self, argv: Sequence[str], *, cwd: str, log: str, unset_env: Sequence[str] = ()
    ) -> None:
        # setsid --fork: a session of its own, and the shell (with the channel's stdout)
        # returns at once, so the SSH session ends while the command goes on
        unset = "".join(f"-u {shlex.quote(name)} " for name in unset_env)
        self.run(f"cd {shlex.quote(cwd)} && env {unset}setsid --fork {shlex.join(argv)} "
                 f"</dev/null >>{shlex.quote(log)} 2>&1", timeout=30)  # fmt: skip

    def alive(self, pid: int, *, marker: str) -> bool:
        def read(sftp: Any) -> bool:
            try:
                with sftp.open(f"/proc/{int(pid)}/cmdline") as handle:
                    return marker.encode() in handle.read()
            except OSError:  # no such process
                return False

        return self._sftp_do(f"checking process {pid}", read)

    # -- files ----------------------------------------------------------------------------
    def read_bytes(self, path: str, offset: int = 0) -> bytes:
        def read(sftp: Any) -> bytes:
            with sftp.open(path, "rb") as handle:
                handle.seek(offset)
                data: bytes = handle.read()
                return data

        return self._sftp_do(f"reading {path}", read)

    def write_file(self, path: str, data: bytes, *, mode: int = 0o600) -> None:
        folder, name = path.rsplit("/", 1)

        def write(sftp: Any) -> None:
            try:
                sftp.stat(folder)
            except FileNotFoundError:
                self.run(["mkdir", "-p", "-m", "700", folder])
            tmp = f"{folder}/.{name}.{secrets.token_hex(4)}"
            with sftp.open(tmp, "wb") as handle:
                handle.write(data)
            sftp.chmod(tmp, mode)
            sftp.posix_rename(tmp, path)

        self._sftp_do(f"writing {path}", write)

    def list_dir(self, path: str) -> list[FileInfo]:
        def listing(sftp: Any) -> list[FileInfo]:
            return [
                FileInfo(e.filename, e.st_size or 0, float(e.st_mtime or 0),
                         stat.S_ISDIR(e.st_mode or 0))
                for e in sftp.listdir_attr(path)
            ]  # fmt: skip

        return self._sftp_do(f"listing {path}", listing)

    def put(self, source: Path, destination: str) -> list[str]:
        def is_dir(sftp: Any, path: str) -> bool:
            try:
                return stat.S_ISDIR(sftp.stat(path).st_mode)
            except FileNotFoundError:
                return False

        def copy(sftp: Any, item: Path, target: str) -> list[str]:
            if item.is_dir():
                if not is_dir(sftp, target):
                    sftp.mkdir(target, mode=item.stat().st_mode & 0o7777)
                written = []
                for child in sorted(item.iterdir()):
                    written += copy(sftp, child, f"{target.rstrip('/')}/{child.name}")
                return written
            sftp.put(str(item), target)
            sftp.chmod(target, item.stat().st_mode & 0o7777)
            return [target]

        def put(sftp: Any) -> list[str]:
            base = destination
            if is_dir(sftp, destination):
                base = f"{destination.rstrip('/')}/{source.name}"
            return copy(sftp, source, base)

        return self._sftp_do(f"copying {source} to {destination}", put)

    # -- tunnels and terminals ------------------------------------------------------------
    @contextmanager
    def forward(self, host: str, port: int, *, prefer: int | None = None) -> Iterator[str]:
        """See the protocol; ``prefer``: listen on that port here when it is free. Each
        connection gets its own channel: one refused on the far side (nothing listens there
        yet) closes only that connection, and the next one tries again."""
        self._do(f"forwarding to {host}:{port}", lambda conn: None)  # the node answers
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", local_port(prefer) if prefer else 0))
        listener.listen(16)
        listener.settimeout(0.5)
        stop = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                except OSError:  # closed: the block ended
                    return
                threading.Thread(target=self._relay, args=(client, host, port, stop),
                                 daemon=True).start()  # fmt: skip

        server = threading.Thread(target=serve, daemon=True)
        server.start()
        try:
            yield f"127.0.0.1:{listener.getsockname()[1]}"
        finally:
            stop.set()
            listener.close()
            server.join(timeout=2)

    def _relay(self, client: socket.socket, host: str, port: int, stop: threading.Event) -> None:
        """Copy bytes both ways between ``client`` and a channel to ``host:port`` until either
        end closes (or ``stop``)."""
        try:
            channel = self.channel_to(host, port)
        except Exception:  # refused there, or the node is gone: this connection only
            client.close()
            return
        try:
            while not stop.is_set():
                ready, _, _ = select.select([client, channel], [], [], 0.5)
                if client in ready:
                    data = client.recv(65536)
                    if not data:
                        break
                    channel.sendall(data)
                if channel in ready:
                    data = channel.recv(65536)
                    if not data:
                        break
                    client.sendall(data)
        except Exception:  # either end gone: the connection ends
            pass
        finally:
            channel.close()
            client.close()

    def channel_to(self, host: str, port: int) -> Any:
        """A socket-like channel from this node to ``host:port`` (``ssh -W``)."""

        def open_channel(conn: Any) -> Any:
            transport = conn.client.get_transport()
            return transport.open_channel(
                "direct-tcpip", (host, port), ("127.0.0.1", 0), timeout=CONNECT_TIMEOUT_S
            )

        return self._do(f"reaching {host}:{port}", open_channel)

    def shell(self, argv: Sequence[str] | None = None) -> int:
        def interact(conn: Any) -> int:
            if argv:
                return int(conn.run(shlex.join(argv), pty=True, warn=True).exited)
            return int(conn.shell().exited)

        return self._do("running a terminal", interact)


def ensure_key(key: Path) -> str:
    """An ed25519 key pair at ``key`` and ``key``.pub (made when missing, mode 600); returns
    the public key line."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    pub = key.with_name(key.name + ".pub")
    if not key.exists():
        key.parent.mkdir(parents=True, exist_ok=True)
        key.parent.chmod(0o700)
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        line = private.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        # each written whole (mode 600 from its creation) and renamed into place, the public
        # half first: a crash leaves no key, or both halves, never half a key
        write_bytes_atomic(pub, line + b" clusterkit\n", mode=0o644)
        write_bytes_atomic(key, pem, mode=0o600)
    return pub.read_text().strip()


def _server_key(sock: Any, timeout: float) -> Any:
    """The host key an SSH server presents on ``sock`` (no login is tried)."""
    from paramiko import Transport

    transport = Transport(sock)
    try:
        transport.start_client(timeout=timeout)
        return transport.get_remote_server_key()
    finally:
        transport.close()


def record_host_keys(inventory: Inventory, ssh: SshSettings, *, timeout_s: float = 300.0,
                     say: Callable[[str], None] = lambda _: None) -> list[str]:  # fmt: skip
    """Wait until every node answers SSH and write their host keys to ``ssh.known_hosts``
    (trust on first use, right after the nodes were made). Nodes with a jump host are read
    through it, with the jump host's key already checked. Returns lines 'node: key type'."""
    from paramiko import HostKeys

    deadline = time.monotonic() + timeout_s
    ssh.known_hosts.parent.mkdir(parents=True, exist_ok=True)
    ssh.known_hosts.touch(mode=0o600)
    found: list[str] = []
    ordered = sorted(inventory.nodes, key=lambda n: n.jump_host is not None)  # jump hosts first
    for node in ordered:
        host = node.ssh_host or node.address
        while True:
            try:
                jump = inventory.jump_node(node)
                if jump is None:
                    with socket.create_connection((host, 22), timeout=CONNECT_TIMEOUT_S) as sock:
                        key = _server_key(sock, CONNECT_TIMEOUT_S)
                else:
                    runner = SshRunner(inventory, jump, ssh)
                    try:
                        key = _server_key(runner.channel_to(host, 22), CONNECT_TIMEOUT_S)
                    finally:
                        runner.close()
                break
            except Exception as exc:  # not up yet: refused, reset, timed out, auth
                if time.monotonic() > deadline:
                    raise NodeUnreachable(
                        f"node {node.name} ({host}) did not answer SSH within {timeout_s:.0f} s: "
                        f"{exc}; check the instance in the EC2 console"
                    ) from exc
                time.sleep(5)
        keys = HostKeys(str(ssh.known_hosts))
        keys.pop(host, None)  # a node made again at the same address has new keys
        keys.add(host, key.get_name(), key)
        draft = ssh.known_hosts.with_name(f".{ssh.known_hosts.name}.draft")
        keys.save(str(draft))  # then renamed into place whole
        write_bytes_atomic(ssh.known_hosts, draft.read_bytes())
        draft.unlink()
        found.append(f"{node.name}: {key.get_name()}")
        say(f"node {node.name} answers SSH on {host}; its {key.get_name()} host key recorded")
    return found


def move_host_keys(known_hosts: Path, old: str, new: str) -> list[str]:
    """Record under ``new`` the host keys known for ``old``, which no longer names the host
    (a cloud node given another address on start; its disk, and so its keys, kept): ``old``
    goes, and whatever ``new`` was known for is replaced. No key is learnt: the node must
    still present one of these. The key types moved (none when ``new`` alone is known
    already); ClusterkitError when neither is known (nothing is trusted, nothing changed)."""
    from paramiko import HostKeys

    if old == new:
        return []
    keys = HostKeys(str(known_hosts)) if known_hosts.exists() else HostKeys()
    found = keys.lookup(old)
    if not found and keys.lookup(new):
        return []  # moved already (by a start that ended before it recorded the address)
    if not found:
        raise ClusterkitError(
            f"{known_hosts} holds no host key for {old}, so the node now at {new} cannot be "
            f"checked: nothing was trusted; if the node was made again, take the cluster down "
            f"and up again"
        )
    moved = {key_type: found[key_type] for key_type in found}
    keys.pop(old, None)
    keys.pop(new, None)
    for key_type, key in moved.items():
        keys.add(new, key_type, key)
    draft = known_hosts.with_name(f".{known_hosts.name}.draft")
    keys.save(str(draft))  # then renamed into place whole
    write_bytes_atomic(known_hosts, draft.read_bytes())
    draft.unlink()
    return sorted(moved)
