"""A run's samples from the cluster's other nodes, read over SSH by its supervisor on the
driver node.

The supervisor runs on the master; the worker's executors and Ray workers are sampled on the
worker itself (``python -m clusterkit.metrics``) and its JSON lines come back over an SSH
channel (paramiko, the key and known_hosts the ``ssh`` role gave the master). Closing the
channel ends the sampler on the worker (it stops when its stdin closes).
"""

from __future__ import annotations

import getpass
import json
import shlex
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

CONNECT_TIMEOUT_S = 10.0


def _client(address: str) -> Any:
    """An SSH client logged in to ``address`` as this user, its host key checked."""
    import paramiko  # only a remote run's supervisor needs it

    client = paramiko.SSHClient()
    client.load_host_keys(str(Path.home() / ".ssh" / "known_hosts"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    key = Path.home() / ".ssh" / "id_ed25519"
    client.connect(address, username=getpass.getuser(), key_filename=str(key),
                   look_for_keys=False, allow_agent=False, timeout=CONNECT_TIMEOUT_S)  # fmt: skip
    return client


class PeerSampler:
    """``python -m clusterkit.metrics`` on another node, its samples handed to ``on_sample``.

    ``error`` says why there are none (the node did not answer, the sampler failed); a run is
    not failed for want of one node's metrics.
    """

    def __init__(
        self,
        name: str,
        address: str,
        *,
        python: str,
        run_id: str,
        interval_s: float,
        on_sample: Callable[[dict[str, Any]], None],
    ) -> None:
        self.name, self.address, self.python, self.run_id = name, address, python, run_id
        self.interval_s = interval_s
        self.on_sample = on_sample
        self.error: str | None = None
        self.latest: dict[str, Any] | None = None
        self._client: Any = None
        self._thread = threading.Thread(target=self._read, name=f"peer-{name}", daemon=True)

    def _command(self, *extra: str) -> str:
        return shlex.join([self.python, "-m", "clusterkit.metrics", "--run-id", self.run_id,
                           "--node", self.name, *extra])  # fmt: skip

    def start(self) -> PeerSampler:
        try:
            self._client = _client(self.address)
            stdin, stdout, _ = self._client.exec_command(
                self._command(
                    "--interval",
                    str(self.interval_s),
                    "--until-stdin-closes",
                    "--default-role",
                    "other",
                )
            )
        except Exception as exc:  # paramiko raises several kinds; the message says which
            self.error = f"node {self.name} ({self.address}) was not sampled: {exc}"
            return self
        self._stdin, self._stdout = stdin, stdout
        self._thread.start()
        return self

    def _read(self) -> None:
        for line in self._stdout:
            try:
                sample = json.loads(line)
            except ValueError:
                continue
            self.latest = sample
            self.on_sample(sample)

    def stop(self) -> None:
        """End the node's sampler (its stdin closes) and wait for its last lines."""
        if self._client is None:
            return
        if self._thread.is_alive():
            self._stdin.channel.shutdown_write()
            self._thread.join(timeout=3 * self.interval_s + 5)
        self._client.close()
        self._client = None

    def stop_run_processes(self) -> list[int]:
        """End the run's processes on that node (its executors, Ray workers); their pids."""
        try:
            client = _client(self.address)
        except Exception as exc:
            self.error = f"node {self.name} ({self.address}): could not stop the run: {exc}"
            return []
        try:
            _, stdout, _ = client.exec_command(self._command("--stop-processes"), timeout=60)
            pids: list[int] = json.loads(stdout.read() or b"[]")
            return pids
        finally:
            client.close()
