"""What a run was made with, and the cluster's lock: recorded so runs can be reproduced and
compared (``record.json``'s ``environment``, ``clusterkit env``, ``clusterkit report``).

- **Versions** as a node sees them: the kit's (and its commit when it runs from a git
  checkout), Python's, Java's (its home's ``release`` file: no JVM is started) and those of
  pyspark, Ray, pyarrow, scikit-learn and torch (when installed), read with
  ``importlib.metadata``.
- **A node's installed hash**: ``name==version`` of every distribution its Python sees
  (canonical names, the first found of each, as imports resolve them), sorted, one a line,
  SHA-256. Read on a node through its runner: ``python -m clusterkit.runs.environment``
  prints the node's versions and packages as one JSON line.
- **The lock**: the pinned set the nodes install (``node_requirements()`` of
  :mod:`clusterkit.services.playbooks`, passed in), its hash (of the pins, sorted, one a
  line), and per node its installed hash and whether it meets every pin. ``up``,
  ``provision`` and ``scale`` write it to the state folder's ``lock.json``.
- **The record's block**, built by the supervisor on the driver node on a thread of its own
  once the job has started (about 0.3 s cold, none of it the job's time nor in its samples):
  the driver's versions and installed hash (read once per process), the other nodes' hashes,
  the lock's hash and the spec's hash as the launcher passed them in ``setup.json``
  (:func:`from_state_folder`), and, once the job ended, the input dataset it named
  (``input.json``: its path and the checksum its writer recorded).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion

from clusterkit.core.errors import ClusterkitError
from clusterkit.core.files import write_json_atomic
from clusterkit.core.records import INPUT_FILE, now_iso
from clusterkit.core.versions import kit_commit, kit_version, locate_java
from clusterkit.exec.runner import CommandRunner

MODULE = "clusterkit.runs.environment"
#: The lock, in the cluster's state folder.
LOCK_FILE = "lock.json"
#: The spec the cluster was brought up with, in its state folder (whose hash runs record).
SPEC_FILE = "spec.yaml"
#: The versions recorded (key: distribution); torch's only when it is installed.
PACKAGES = {"spark": "pyspark", "ray": "ray", "pyarrow": "pyarrow",
            "scikit-learn": "scikit-learn"}  # fmt: skip
OPTIONAL = {"torch": "torch"}
READ_TIMEOUT_S = 60.0
_JAVA_VERSION = re.compile(r'version "([^"]+)"')


# -- hashes ----------------------------------------------------------------------------------
def digest(lines: Iterable[str]) -> str:
    """SHA-256 (hex) of ``lines`` sorted, joined by newlines: the same set, the same hash."""
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


def installed_packages(dists: Iterable[metadata.Distribution] | None = None) -> list[str]:
    """``name==version`` of every distribution (default: this Python's), sorted; names
    canonical (PEP 503), the first found of a name kept (the one imports resolve)."""
    seen: dict[str, str] = {}
    for dist in metadata.distributions() if dists is None else dists:
        name = dist.metadata["Name"]
        if name:
            seen.setdefault(canonicalize_name(name), dist.version)
    return [f"{name}=={version}" for name, version in sorted(seen.items())]


@cache
def installed_hash_here() -> str:
    """:func:`digest` of :func:`installed_packages` of this Python, read once per process
    (a package installed into it later in the same process is not seen)."""
    return digest(installed_packages())


def unmet(pins: Sequence[str], installed: Sequence[str]) -> list[str]:
    """The pins ``installed`` (``name==version`` lines) does not meet, each saying what is
    there instead: ``pyspark[connect]==4.3.0 (installed 4.2.0)``, ``torch==2.13.0 (missing)``."""
    have = {canonicalize_name(name): version
            for name, _, version in (line.partition("==") for line in installed)}  # fmt: skip
    out = []
    for pin in pins:
        try:
            req = Requirement(pin)
        except InvalidRequirement:
            out.append(f"{pin} (not a requirement)")
            continue
        version = have.get(canonicalize_name(req.name))
        if version is None:
            out.append(f"{pin} (missing)")
            continue
        try:
            met = req.specifier.contains(version, prereleases=True)
        except InvalidVersion:
            met = False
        if not met:
            out.append(f"{pin} (installed {version})")
    return out


# -- readings here ---------------------------------------------------------------------------
def java_version(env: Mapping[str, str] | None = None) -> str | None:
    """The version of the Java Spark would use with ``env`` (``JAVA_HOME``, else PATH's): its
    home's ``release`` file, else ``java -version``; None when there is none."""
    executable, _why = locate_java(env)
    if executable is None:
        return None
    try:
        for line in (executable.parent.parent / "release").read_text().splitlines():
            if line.startswith("JAVA_VERSION="):
                return line.partition("=")[2].strip().strip('"')
    except OSError:
        pass
    try:  # a home without a release file: java itself says (a JVM start, about 0.1 s)
        out = subprocess.run([str(executable), "-version"], capture_output=True, text=True,
                             timeout=30)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return None
    found = _JAVA_VERSION.search(out.stderr + out.stdout)
    return found.group(1) if found else None


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def versions_here(env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """This Python's versions: ``clusterkit``, ``commit`` (None outside a git checkout),
    ``python``, ``java`` (as ``env`` finds it), ``spark``, ``ray``, ``pyarrow``,
    ``scikit-learn`` (None when missing) and ``torch`` (only when installed)."""
    found: dict[str, str | None] = {
        "clusterkit": kit_version(),
        "commit": kit_commit(),
        "python": platform.python_version(),
        "java": java_version(env),
    }
    found |= {key: _version(dist) for key, dist in PACKAGES.items()}
    found |= {key: v for key, dist in OPTIONAL.items() if (v := _version(dist)) is not None}
    return found


def read_here(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """``{"versions": ..., "installed": [...]}`` of this Python (what a node prints)."""
    return {"versions": versions_here(env), "installed": installed_packages()}


# -- readings on the nodes -------------------------------------------------------------------
def read_nodes(runners: Sequence[CommandRunner], *, python: str,
               java_home: str | None = None) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Every node's reading, all at once, by node name: ``{"versions", "installed"}``, or
    ``{"error"}`` naming the node and what failed (never raised: a node may be down)."""

    def read(runner: CommandRunner) -> dict[str, Any]:
        argv = [python, "-m", MODULE, *(["--java-home", java_home] if java_home else [])]
        try:
            result = runner.run(argv, timeout=READ_TIMEOUT_S)
            data = json.loads(result.stdout.strip().splitlines()[-1])
            return {"versions": dict(data["versions"]), "installed": list(data["installed"])}
        except ClusterkitError as exc:
            return {"error": str(exc)}
        except (ValueError, IndexError, KeyError, TypeError) as exc:
            return {"error": f"{runner.node.name}: `{python} -m {MODULE}` printed no reading "
                             f"({type(exc).__name__}: {exc}); is the kit installed there? "
                             "`clusterkit provision` installs it"}  # fmt: skip

    with ThreadPoolExecutor(max_workers=max(1, len(runners))) as pool:
        readings = list(pool.map(read, runners))
    return {runner.node.name: reading for runner, reading in zip(runners, readings, strict=True)}


# -- the lock --------------------------------------------------------------------------------
def build_lock(pins: Sequence[str], readings: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The lock from the pinned set and the nodes' readings (:func:`read_nodes`):
    ``{"hash", "packages", "nodes": {name: {"hash", "matches", "unmet"} or {"hash": None,
    "matches": None, "error"}}, "same": every node read and with the same installed hash}``."""
    nodes: dict[str, dict[str, Any]] = {}
    for name, reading in readings.items():
        if "installed" not in reading:
            nodes[name] = {"hash": None, "matches": None, "error": reading.get("error")}
            continue
        missing = unmet(pins, reading["installed"])
        nodes[name] = {"hash": digest(reading["installed"]), "matches": not missing,
                       "unmet": missing}  # fmt: skip
    hashes = {node["hash"] for node in nodes.values()}
    return {
        "hash": digest(pins),
        "packages": sorted(pins),
        "nodes": nodes,
        "same": bool(nodes) and None not in hashes and len(hashes) == 1,
    }


def save_lock(state_dir: Path, lock: Mapping[str, Any]) -> Path:
    """Write ``lock`` (with the time) to ``lock.json`` in the state folder; its path."""
    path = state_dir / LOCK_FILE
    write_json_atomic(path, {**lock, "written": now_iso()})
    return path


def load_lock(state_dir: Path) -> dict[str, Any] | None:
    """The state folder's lock, or None when there is none (a cluster brought up before
    locks were written) or it cannot be read."""
    try:
        data = json.loads((state_dir / LOCK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# -- the record's block ----------------------------------------------------------------------
def cluster_part(lock: Mapping[str, Any] | None, spec: bytes | None) -> dict[str, Any]:
    """What the launcher gives every run (``setup.json``'s ``environment``): the lock's hash,
    each node's installed hash as the lock recorded it, and the spec's hash (None: unknown)."""
    nodes = (lock or {}).get("nodes") or {}
    return {
        "lock": (lock or {}).get("hash"),
        "packages": {name: (node or {}).get("hash") for name, node in nodes.items()},
        "spec": hashlib.sha256(spec).hexdigest() if spec is not None else None,
    }


def from_state_folder(state_dir: Path) -> dict[str, Any]:
    """:func:`cluster_part` of a cluster's state folder (``lock.json``, ``spec.yaml``)."""
    try:
        spec: bytes | None = (state_dir / SPEC_FILE).read_bytes()
    except OSError:
        spec = None
    return cluster_part(load_lock(state_dir), spec)


def block(given: Mapping[str, Any], *, node: str, versions: Mapping[str, Any],
          installed_hash: str) -> dict[str, Any]:  # fmt: skip
    """A run's ``environment``: ``versions`` read on the driver ``node``, ``packages`` (each
    node's installed hash: ``given``'s, the driver's own ``installed_hash``), ``lock`` and
    ``spec`` (hashes, from ``given``), and ``input`` (None until the job names one)."""
    packages = dict(given.get("packages") or {})
    packages[node] = installed_hash
    return {
        "versions": dict(versions),
        "driver": node,
        "packages": packages,
        "lock": given.get("lock"),
        "spec": given.get("spec"),
        "input": None,
    }


def run_block(given: Mapping[str, Any], *, node: str, env: Mapping[str, str]) -> dict[str, Any]:
    """:func:`block` with the readings made here, now (the supervisor, on the driver node;
    ``env`` is the job's: its ``JAVA_HOME``); the installed hash is this process's
    (:func:`installed_hash_here`)."""
    return block(given, node=node, versions=versions_here(env),
                 installed_hash=installed_hash_here())  # fmt: skip


def read_input(run_dir: Path) -> dict[str, Any] | None:
    """The input dataset the job named (``input.json``: ``{"path", "checksum"}``, the
    checksum None when its writer recorded none), or None: the job named no input."""
    try:
        data = json.loads((run_dir / INPUT_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or "path" not in data:
        return None
    return {"path": data["path"], "checksum": data.get("checksum")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}",
                                     description="this node's versions and installed packages, "
                                                 "as one JSON line")  # fmt: skip
    parser.add_argument("--java-home", help="the JAVA_HOME Spark uses here (default: this "
                                            "environment's, else the java on PATH)")  # fmt: skip
    args = parser.parse_args(argv)
    env = {**os.environ, **({"JAVA_HOME": args.java_home} if args.java_home else {})}
    print(json.dumps(read_here(env)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
