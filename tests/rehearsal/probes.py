"""Network probes for the rehearsal tests, each outcome told apart so that every assertion
can fail: an answer, a refused connection, an unreachable address, or a timeout.

A probe runs in a rehearsal namespace (``ip netns exec``) or, with ``namespace=None``, in this
shell; from this shell the tests probe only the master's address (every other rehearsal
address is refused by this machine's route table, which ``topology.verify_routes`` checks
without sending anything).
"""

from __future__ import annotations

import subprocess
import sys

from clusterkit.providers.netns.topology import in_ns

#: Prints one line: ``answer <body>`` / ``open`` (TCP only), ``refused``,
#: ``unreachable <errno name>`` or ``timeout``; any other failure is a traceback (exit 1).
_PROBE = r"""
import errno, socket, sys
address, port, http = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "http"
UNREACHABLE = {errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EACCES, errno.EPERM}
try:
    sock = socket.create_connection((address, port), timeout=float(sys.argv[4]))
except socket.timeout:
    print("timeout"); sys.exit(0)
except ConnectionRefusedError:
    print("refused"); sys.exit(0)
except OSError as exc:
    if exc.errno in UNREACHABLE:
        print("unreachable", errno.errorcode[exc.errno]); sys.exit(0)
    raise
with sock:
    if not http:
        print("open"); sys.exit(0)
    sock.settimeout(float(sys.argv[4]))
    sock.sendall(b"GET / HTTP/1.0\r\nHost: probe\r\n\r\n")
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    print("answer", data.split(b"\r\n\r\n", 1)[1].decode())
"""


def _probe(namespace: str | None, address: str, port: int, *, http: bool, timeout: float) -> str:
    argv = [sys.executable, "-c", _PROBE, address, str(port), "http" if http else "tcp",
            str(timeout)]  # fmt: skip
    proc = subprocess.run(in_ns(namespace, *argv) if namespace else argv,
                          capture_output=True, text=True, timeout=timeout + 20)  # fmt: skip
    assert proc.returncode == 0, f"probe of {address}:{port} failed: {proc.stderr}"
    return proc.stdout.strip()


def fetch(namespace: str | None, address: str, port: int, *, timeout: float = 3) -> str:
    """GET http://address:port/ from ``namespace`` (None: this shell): ``answer BODY``,
    ``refused``, ``unreachable ERRNO`` or ``timeout``."""
    return _probe(namespace, address, port, http=True, timeout=timeout)


def connect(namespace: str | None, address: str, port: int, *, timeout: float = 2) -> str:
    """A TCP connection to address:port from ``namespace``: ``open``, ``refused``,
    ``unreachable ERRNO`` or ``timeout``."""
    return _probe(namespace, address, port, http=False, timeout=timeout)
