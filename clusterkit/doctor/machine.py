"""This machine's checks, whatever the cluster: Java (what Spark needs), Python (what the kit
requires and the cluster was brought up with) and free disk where the kit writes.

Each check is a reading (``read_*``: gathers facts, cheap) and a judgement (``judge_*``:
pure, the reading's dataclass in, findings out).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from clusterkit.core.fmt import human_bytes
from clusterkit.doctor.report import Finding, fail, ok, warn
from clusterkit.services import preflight

# -- java -------------------------------------------------------------------------------------

#: As ``java -version`` prints it, read as preflight reads it ("1.8.0_392" is Java 8).
_JAVA_VERSION = re.compile(r'(\S+) version "((\d+)(?:\.(\d+))?[^"]*)"')
JAVA_FIX = "install one (apt-get install -y openjdk-17-jre-headless) or point JAVA_HOME at it"
#: ``java -version`` starts a JVM (about 0.1-0.5 s); more than this is a Java that hangs.
JAVA_TIMEOUT_S = 3.0


@dataclass(frozen=True)
class JavaReading:
    """The Java ``up`` would give Spark (``$JAVA_HOME/bin/java``, else ``java`` on PATH):
    its path and what ``-version`` printed (None: none found or it did not run, ``error``
    says why), and the major version the cluster needs."""

    min_major: int
    executable: str | None
    output: str | None
    error: str | None = None


def read_java(min_major: int) -> JavaReading:
    executable, why = preflight.locate_java()
    if executable is None:
        return JavaReading(min_major, None, None, why)
    try:
        out = subprocess.run([str(executable), "-version"], capture_output=True, text=True,
                             timeout=JAVA_TIMEOUT_S)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as exc:
        return JavaReading(min_major, str(executable), None, f"`{executable} -version`: {exc}")
    return JavaReading(min_major, str(executable), out.stderr + out.stdout)


def java_version(output: str) -> tuple[str, str, int] | None:
    """(vendor word, version, major) from ``java -version``'s output, or None."""
    match = _JAVA_VERSION.search(output)
    if match is None:
        return None
    first, second = int(match.group(3)), int(match.group(4) or 0)
    return match.group(1), match.group(2), second if first == 1 else first


def judge_java(reading: JavaReading) -> list[Finding]:
    """FAIL (java-missing) when no Java is found, it prints no version, or it is older than
    the cluster needs; OK otherwise."""
    needs = f"needs {reading.min_major}+"
    if reading.output is None:
        return [fail("java", f"{reading.error}; Spark {needs}", "java-missing", JAVA_FIX)]
    found = java_version(reading.output)
    if found is None:
        return [fail("java", f"{reading.executable} -version printed no version; Spark {needs}",
                     "java-missing", JAVA_FIX)]  # fmt: skip
    vendor, version, major = found
    if major < reading.min_major:
        return [fail("java", f"Java {major} ({version}) at {reading.executable} is too old: "
                             f"Spark {needs}", "java-missing", JAVA_FIX)]  # fmt: skip
    return [ok("java", f"{vendor} {version} at {reading.executable} ({needs})")]


# -- python -----------------------------------------------------------------------------------

_CLAUSE = re.compile(r"\s*(>=|<=|==|!=|>|<)\s*(\d+)(?:\.(\d+))?(?:\.\*)?\s*")


@dataclass(frozen=True)
class PythonReading:
    """This interpreter (its version and path), what the kit requires (``requires-python``
    as installed, e.g. ``>=3.11,<3.13``; None: not found) and the major.minor the cluster
    was brought up with (its ``cluster.json``; None: no cluster)."""

    version: tuple[int, int, int]
    executable: str
    requires: str | None
    pinned: str | None


def read_python(pinned: str | None) -> PythonReading:
    try:
        requires = (metadata.metadata("clusterkit").get_all("Requires-Python") or [None])[0]
    except metadata.PackageNotFoundError:
        requires = None
    major, minor, micro = sys.version_info[:3]
    return PythonReading((major, minor, micro), sys.executable, requires, pinned)


def broken_clause(version: tuple[int, int, int], requires: str) -> str | None:
    """The clause of ``requires`` that ``version`` breaks, compared as major.minor (None:
    none). A clause of another form is not judged."""
    have = version[:2]
    for clause in requires.split(","):
        match = _CLAUSE.fullmatch(clause)
        if match is None:
            continue
        op, bound = match.group(1), (int(match.group(2)), int(match.group(3) or 0))
        holds = {">=": have >= bound, "<=": have <= bound, ">": have > bound,
                 "<": have < bound, "==": have == bound, "!=": have != bound}[op]  # fmt: skip
        if not holds:
            return clause.strip()
    return None


def judge_python(reading: PythonReading) -> list[Finding]:
    """FAIL when this Python is outside ``requires-python``; WARN when its major.minor is not
    the one the cluster was brought up with (Ray needs the same on every node); else OK."""
    text = ".".join(map(str, reading.version))
    minor = ".".join(map(str, reading.version[:2]))
    broken = broken_clause(reading.version, reading.requires) if reading.requires else None
    if broken:
        return [fail("python", f"Python {text} ({reading.executable}) is outside the kit's "
                               f"requires-python {reading.requires}",
                     fix=f"run the kit with a Python that meets {reading.requires} "
                         "(`bash scripts/bootstrap.sh` makes .venv with one)")]  # fmt: skip
    if reading.pinned is not None and reading.pinned != minor:
        return [warn("python", f"Python {text} here, but the cluster was brought up with "
                               f"{reading.pinned} (Ray needs one minor version on every node)",
                     fix=f"use the kit's environment with Python {reading.pinned}, or "
                         "`clusterkit down` and `up` again with this one")]  # fmt: skip
    needs = f"requires {reading.requires}" if reading.requires else "no requirement found"
    return [ok("python", f"Python {text} at {reading.executable} ({needs})")]


# -- disk -------------------------------------------------------------------------------------

#: Free space under which a place the kit writes is FAIL: Spark's shuffle files, Ray's object
#: spilling and the jobs' outputs fail on it.
FAIL_BYTES = 500 * 1024**2
#: ... and WARN: under 2 GiB, or under 10% of its file system while under 20 GiB (a big disk
#: at 95% still has room for every job here).
WARN_BYTES = 2 * 1024**3
WARN_FRACTION = 0.10
ROOMY_BYTES = 20 * 1024**3
DISK_FIX = "free space on that file system (old runs' folders, datasets under the storage root)"


@dataclass(frozen=True)
class DiskReading:
    """One file system the kit writes to: what of the kit's is on it, the folder read (the
    nearest that exists), its free and total bytes (None: ``error`` says why)."""

    what: str
    path: str
    free: int | None
    total: int | None
    error: str | None = None


def read_disks(places: list[tuple[str, Path]]) -> list[DiskReading]:
    """Free space under each (what, folder), one reading per file system: the places on one
    are named together, read at the first one's nearest existing folder."""
    found: dict[int | str, tuple[list[str], Path]] = {}
    for what, path in places:
        existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
        try:
            device: int | str = os.stat(existing).st_dev
        except OSError:
            device = str(existing)
        found.setdefault(device, ([], existing))[0].append(what)
    readings = []
    for names, existing in found.values():
        what = ", ".join(names)
        try:
            usage = shutil.disk_usage(existing)
        except OSError as exc:
            readings.append(DiskReading(what, str(existing), None, None, str(exc)))
            continue
        readings.append(DiskReading(what, str(existing), usage.free, usage.total))
    return readings


def judge_disk(readings: list[DiskReading]) -> list[Finding]:
    """Per file system: FAIL (disk-full) under :data:`FAIL_BYTES` free, WARN (disk-full) under
    :data:`WARN_BYTES`, or under :data:`WARN_FRACTION` of it and :data:`ROOMY_BYTES` (the
    folder read is the runbook's FOLDER), WARN when it cannot be read; one OK line naming them
    all when none is short."""
    found, fine = [], []
    for r in readings:
        if r.free is None or r.total is None:
            found.append(warn("disk", f"{r.what} ({r.path}): free space cannot be read "
                                      f"({r.error})"))  # fmt: skip
            continue
        share = r.free / r.total if r.total else 0.0
        size = human_bytes(r.total)
        saw = f"{r.what} ({r.path}): {human_bytes(r.free)} free ({share:.0%} of {size})"
        if r.free < FAIL_BYTES:
            found.append(fail("disk", saw, "disk-full", DISK_FIX, {"FOLDER": r.path}))
        elif r.free < WARN_BYTES or (share < WARN_FRACTION and r.free < ROOMY_BYTES):
            found.append(warn("disk", saw, "disk-full", DISK_FIX, {"FOLDER": r.path}))
        else:
            fine.append(saw)
    return found or [ok("disk", "; ".join(fine) or "nothing to read")]
