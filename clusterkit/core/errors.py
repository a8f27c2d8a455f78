"""One exception hierarchy for the kit; the CLI maps each class to an exit code.

Every message is one line that names what is wrong (file, field, port, host, run) and says
how to fix it. Exit codes: 0 ok, 1 failed, 2 bad input or usage.
"""

from __future__ import annotations

from pathlib import Path


class ClusterkitError(Exception):
    """Base class: an operation failed (exit code 1)."""

    exit_code = 1


class BadInput(ClusterkitError):
    """The user's input is wrong: a spec field, a job name, a parameter (exit code 2)."""

    exit_code = 2


class SpecError(BadInput):
    """The cluster spec is invalid."""


class UnknownJob(BadInput):
    """No job of that name, or a parameter the job does not take."""


class PreflightError(ClusterkitError):
    """Something the cluster needs is missing on this machine (Java, a free port, ...)."""


class NoCluster(ClusterkitError):
    """The command needs a cluster and none is up (or the named one does not exist)."""


class ServiceError(ClusterkitError):
    """A service did not start, or did not become healthy in time."""


class RunNotFound(BadInput):
    """No run matches the given id."""


class NodeUnreachable(ClusterkitError):
    """A node did not answer over SSH, refused the kit's key, or the connection dropped."""


class StateError(ClusterkitError):
    """A state file (``cluster.json``, a run record) cannot be read as this kit writes it."""


class SecretMissing(StateError):
    """One of the cluster's secrets (a token, the Spark secret) is missing or empty where a
    reader needs the one the cluster has: ``path`` names its file."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


class StateLayoutError(StateError):
    """A state file was written by another version of the kit (a layout it does not read)."""
