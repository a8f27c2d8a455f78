"""Versions, read back from what pyproject.toml pinned and pip installed.

pyproject.toml is the one place where versions are pinned. The spec's defaults, the node
requirements and (later) the playbook and Terraform variables all come from here, so the
control side and every node run the same Spark, Ray and Python.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import subprocess
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import clusterkit

#: Spark 4 needs Java 17 or newer.
MIN_JAVA_MAJOR = 17


def installed(package: str) -> str:
    """The installed version of ``package`` (raises PackageNotFoundError if absent)."""
    return metadata.version(package)


def spark_version() -> str:
    return installed("pyspark")


def ray_version() -> str:
    return installed("ray")


def python_version() -> str:
    """major.minor of this interpreter: Ray needs the same one on every node."""
    major, minor, _ = platform.python_version_tuple()
    return f"{major}.{minor}"


def kit_version() -> str:
    """The kit's own version (``clusterkit.__version__``)."""
    return clusterkit.__version__


def kit_commit() -> str | None:
    """The short commit of the git checkout the kit runs from; None when it is not a checkout
    (a wheel, as on a remote cluster's nodes) or git cannot say."""
    checkout = Path(clusterkit.__file__).resolve().parent.parent
    if not (checkout / ".git").exists():
        return None
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        commit = subprocess.run(["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=5,
                                check=True).stdout.strip()  # fmt: skip
        return commit or None
    return None


def locate_java(env: Mapping[str, str] | None = None) -> tuple[Path | None, str]:
    """The java Spark will use: ``JAVA_HOME``'s in ``env`` (default: this process's
    environment), else the one on PATH; or None and why not."""
    env = os.environ if env is None else env
    java_home = env.get("JAVA_HOME")
    if java_home:
        executable = Path(java_home) / "bin" / "java"
        if not executable.exists():
            return None, f"JAVA_HOME={java_home} has no bin/java"
        return executable, ""
    found = shutil.which("java", path=env.get("PATH"))
    if found is None:
        return None, "Java not found (JAVA_HOME unset, no java on PATH)"
    return Path(found).resolve(), ""
