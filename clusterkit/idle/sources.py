"""What the idle guard reads on the master: each reader returns one :class:`Reading` and never
raises; what kept it from reading is the reading's ``error``, which counts as active.

The sources: runs of the master's run store that are not final; Spark applications holding
executors (the Spark Connect server is one) and, when its UI is on, an application's running
jobs; Ray jobs RUNNING or PENDING; SSH sessions from outside the cluster's private network;
SSH tunnels to the dashboards and Spark Connect. The last two read this machine's TCP
connections (psutil; the guard runs as root, so that every connection's process is known).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import psutil
import requests

from clusterkit.core.records import RunRecord
from clusterkit.idle.rules import Activity, Reading

#: Seconds an HTTP source has to answer.
TIMEOUT_S = 3.0
#: A Ray job in one of these states keeps the cluster up.
RAY_ACTIVE = ("RUNNING", "PENDING")
ESTABLISHED = psutil.CONN_ESTABLISHED


class Connection(Protocol):
    """What the readers use of a ``psutil.net_connections()`` entry (tests pass their own):
    ``laddr``/``raddr`` are ``(ip, port)`` with ``.ip``/``.port``, or empty."""

    @property
    def laddr(self) -> Any: ...
    @property
    def raddr(self) -> Any: ...
    @property
    def status(self) -> str: ...
    @property
    def pid(self) -> int | None: ...


def _said(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."


def _safely(source: str, read: Callable[[], Reading]) -> Reading:
    try:
        return read()
    except Exception as exc:  # a reader never raises: what went wrong counts as active
        return Reading(source, error=_said(exc))


def _get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    response = requests.get(url, headers=headers, timeout=TIMEOUT_S)
    response.raise_for_status()
    return response.json()


def runs(runs_dir: Path) -> Reading:
    """One activity per run of the store in ``runs_dir`` that is not final (queued, running)
    and whose supervisor still runs; a record that cannot be read is an error (it could be a
    run going on). A store not made
    yet, and a run folder whose record is not written yet, hold no run."""

    def read() -> Reading:
        if not runs_dir.exists():
            return Reading("runs")
        activities, errors = [], []
        for folder in sorted(runs_dir.iterdir()):
            path = folder / "record.json"
            if folder.name.startswith(".") or not path.exists():
                continue
            try:
                data = json.loads(path.read_text())
                record = RunRecord.from_dict(data if isinstance(data, dict) else {})
            except (OSError, ValueError, TypeError) as exc:
                errors.append(f"{folder.name}/record.json: {_said(exc)}")
                continue
            if not record.final and not _supervisor_gone(record):
                what = f"run {record.id} ({record.job}) {record.status}"
                activities.append(Activity("runs", what))
        return Reading("runs", activities, "; ".join(errors) or None)

    return _safely("runs", read)


def _supervisor_gone(record: RunRecord) -> bool:
    """Whether the run's supervisor (on this node, where the guard runs) has ended: such a
    run is over (the next `clusterkit runs` records it failed) and keeps nothing up."""
    supervisor = record.supervisor or {}
    try:
        proc = psutil.Process(int(supervisor["pid"]))
        return abs(proc.create_time() - float(supervisor["create_time"])) > 0.01
    except psutil.NoSuchProcess:
        return True
    except (KeyError, TypeError, ValueError, psutil.Error):
        return False  # not started yet, or not known here: it may be going on


def spark(master_ui: str, connect_ui: str | None = None) -> Reading:
    """One activity per application the Spark master (``master_ui``, its ``/json/``) lists
    active with cores granted (executors), the Spark Connect server's included; with
    ``connect_ui`` (an application UI, e.g. http://127.0.0.1:4040; the kit's Connect server
    runs with its UI off), one more per application there with jobs running."""

    def read() -> Reading:
        activities = []
        data = _get_json(f"{master_ui}/json/")
        apps = data.get("activeapps") if isinstance(data, dict) else None
        if not isinstance(apps, list):
            raise ValueError(f"{master_ui}/json/ has no list of activeapps")
        for app in apps:
            cores = app.get("cores") if isinstance(app, dict) else None
            if isinstance(cores, int | float) and cores > 0:
                what = f"Spark application {app.get('name')} ({app.get('id')}) holds {cores} cores"
                activities.append(Activity("spark", what))
        if connect_ui is not None:
            activities += _running_jobs(connect_ui)
        return Reading("spark", activities)

    return _safely("spark", read)


def _running_jobs(ui: str) -> list[Activity]:
    apps = _get_json(f"{ui}/api/v1/applications")
    if not isinstance(apps, list):
        raise ValueError(f"{ui}/api/v1/applications is not a list of applications")
    found = []
    for app in apps:
        app_id = app.get("id") if isinstance(app, dict) else None
        jobs = _get_json(f"{ui}/api/v1/applications/{app_id}/jobs?status=running")
        if not isinstance(jobs, list):
            raise ValueError(f"{ui}'s jobs of {app_id} are not a list")
        if jobs:
            what = f"{len(jobs)} Spark job(s) running in {app.get('name')} ({app_id})"
            found.append(Activity("spark", what))
    return found


def ray_jobs(dashboard: str, token_file: Path | str | None) -> Reading:
    """One activity per job the Ray dashboard's Jobs API lists RUNNING or PENDING, asked with
    the cluster's token (``token_file``; None: no token); a token that cannot be read is an
    error."""

    def read() -> Reading:
        headers = None
        if token_file is not None:
            token = Path(token_file).read_text().strip()
            if not token:
                raise ValueError(f"the token file {token_file} is empty")
            headers = {"Authorization": f"Bearer {token}"}
        jobs = _get_json(f"{dashboard}/api/jobs/", headers)
        if not isinstance(jobs, list):
            raise ValueError(f"{dashboard}/api/jobs/ is not a list of jobs")
        activities = []
        for job in jobs:
            status = job.get("status") if isinstance(job, dict) else None
            if status in RAY_ACTIVE:
                name = job.get("submission_id") or job.get("job_id")
                activities.append(Activity("ray", f"Ray job {name} {status}"))
        return Reading("ray", activities)

    return _safely("ray", read)


def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    address = ipaddress.ip_address(ip.split("%", 1)[0])  # fe80::1%eth0: the zone dropped
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped  # ::ffff:10.0.0.5 is 10.0.0.5
    return address


def _connections(connections: Iterable[Connection] | None) -> list[Connection]:
    return list(psutil.net_connections(kind="tcp") if connections is None else connections)


def ssh_sessions(private_cidr: str, ssh_port: int = 22,
                 connections: Iterable[Connection] | None = None) -> Reading:  # fmt: skip
    """One activity per established connection to this machine's ``ssh_port`` from an
    address outside ``private_cidr`` (the cluster's network, e.g. 10.0.0.0/16) and not
    loopback: someone's SSH session. ``connections``: psutil's TCP connections by default."""

    def read() -> Reading:
        network = ipaddress.ip_network(private_cidr)
        activities = []
        for conn in _connections(connections):
            if conn.status != ESTABLISHED or not conn.laddr or not conn.raddr:
                continue
            if conn.laddr.port != ssh_port:
                continue
            peer = _address(conn.raddr.ip)
            if not peer.is_loopback and peer not in network:
                what = f"SSH session from {peer} (port {conn.raddr.port})"
                activities.append(Activity("ssh", what))
        return Reading("ssh", activities)

    return _safely("ssh", read)


def _process_name(pid: int) -> str | None:
    try:
        return psutil.Process(pid).name()
    except psutil.NoSuchProcess:
        return None


def tunnels(ports: Iterable[int], connections: Iterable[Connection] | None = None,
            name_of: Callable[[int], str | None] = _process_name) -> Reading:  # fmt: skip
    """One activity per SSH tunnel to one of ``ports`` (the Spark master UI, the Ray dashboard,
    Spark Connect): an established connection to that loopback port whose other end (the
    connection of this machine with the two addresses swapped) is held by sshd, as an
    ``ssh -L`` forward is (``sshd``, or ``sshd-session`` since OpenSSH 9.8). The cluster's
    own clients of those ports are not tunnels. An other end whose process cannot be told
    (not root) is an error. ``name_of``: a pid's process name (None: it has ended)."""

    def read() -> Reading:
        wanted = set(ports)
        conns = [c for c in _connections(connections)
                 if c.status == ESTABLISHED and c.laddr and c.raddr]  # fmt: skip
        by_ends = {(c.laddr.ip, c.laddr.port, c.raddr.ip, c.raddr.port): c for c in conns}
        activities, unknown = [], []
        for conn in conns:
            if conn.laddr.port not in wanted or not _address(conn.raddr.ip).is_loopback:
                continue
            ends = (conn.raddr.ip, conn.raddr.port, conn.laddr.ip, conn.laddr.port)
            other = by_ends.get(ends)
            if other is None:
                continue  # closed since, or not a connection of this machine's
            if other.pid is None:
                unknown.append(conn.laddr.port)
                continue
            name = name_of(other.pid)
            if name is not None and name.startswith("sshd"):
                what = f"SSH tunnel to port {conn.laddr.port} ({name}, pid {other.pid})"
                activities.append(Activity("tunnels", what))
        error = None
        if unknown:
            error = (f"the process at the other end of a connection to port "
                     f"{', '.join(map(str, sorted(set(unknown))))} is unknown: run the guard "
                     "as root")  # fmt: skip
        return Reading("tunnels", activities, error)

    return _safely("tunnels", read)
