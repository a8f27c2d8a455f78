"""Versions, read back from what pyproject.toml pinned and pip installed.

pyproject.toml is the one place where versions are pinned. The spec's defaults, the node
requirements and (later) the playbook and Terraform variables all come from here, so the
control side and every node run the same Spark, Ray and Python.
"""

from __future__ import annotations

import platform
from importlib import metadata

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
