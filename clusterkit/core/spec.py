"""The cluster spec: one YAML file, validated, with defaults for everything.

``load_spec(path)`` returns a :class:`Spec` or raises :class:`SpecError` whose one-line message
names the file, the field, the bad value and what is allowed. ``default_spec_text()`` is the
commented file that ``clusterkit init`` writes; loading it gives the default spec.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from clusterkit.core import versions
from clusterkit.core.errors import SpecError

SPEC_FILENAME = "clusterkit.yaml"
#: Names the spec file `up` reads and `init` writes when given no path.
SPEC_ENV = "CLUSTERKIT_SPEC"

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}

Port = int  # validated by Field bounds below


def parse_size(text: str | int) -> int:
    """Bytes in a size such as ``4g``, ``512m``, ``1.5GiB`` or a plain byte count."""
    if isinstance(text, int):
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise ValueError(f"{text!r} is not a size; write e.g. 512m, 4g or 4GiB")
    number, unit = match.groups()
    return int(float(number) * _UNITS[unit.lower()])


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


def _port(default: int, what: str) -> Any:
    return Field(default, ge=1024, le=65535, description=what)


class Ports(_Section):
    """Every port a service listens on. All bind to loopback on the local provider."""

    spark_master: Port = _port(7077, "Spark master RPC (spark://host:PORT)")
    spark_master_ui: Port = _port(8080, "Spark master web UI and its /json/ status")
    spark_worker: Port = _port(7078, "Spark worker RPC")
    spark_worker_ui: Port = _port(8081, "Spark worker web UI")
    spark_connect: Port = _port(15002, "Spark Connect server (gRPC, loopback of the master)")
    ray_gcs: Port = _port(6379, "Ray head (GCS)")
    ray_dashboard: Port = _port(8265, "Ray dashboard and Jobs API")
    ray_client: Port = _port(10001, "Ray client server")
    ray_node_manager: Port = _port(6380, "Ray raylet")
    ray_object_manager: Port = _port(6381, "Ray object manager")
    ray_dashboard_agent: Port = _port(6382, "Ray dashboard agent (HTTP)")
    ray_dashboard_agent_grpc: Port = _port(6383, "Ray dashboard agent (gRPC)")
    ray_runtime_env_agent: Port = _port(6384, "Ray runtime-env agent")
    ray_metrics_export: Port = _port(6385, "Ray metrics export")
    ray_min_worker: Port = _port(11000, "first port of Ray's worker range")
    ray_max_worker: Port = _port(11999, "last port of Ray's worker range")

    @model_validator(mode="after")
    def _distinct(self) -> Ports:
        if self.ray_min_worker >= self.ray_max_worker:
            raise ValueError(
                f"ray_min_worker ({self.ray_min_worker}) must be below "
                f"ray_max_worker ({self.ray_max_worker})"
            )
        seen: dict[int, str] = {}
        for name, port in self.fixed().items():
            if port in seen:
                raise ValueError(f"{name} and {seen[port]} both use port {port}; give each its own")
            if self.ray_min_worker <= port <= self.ray_max_worker:
                raise ValueError(
                    f"{name} ({port}) lies inside Ray's worker range "
                    f"{self.ray_min_worker}-{self.ray_max_worker}"
                )
            seen[port] = name
        return self

    @classmethod
    def numbered_from(cls, base: int) -> Ports:
        """Every port from ``base`` on, in field order, the worker range at base+100..199:
        a full set apart from the defaults, for a second cluster on one machine (tests,
        benchmarks)."""
        singles = [n for n in cls.model_fields if n not in ("ray_min_worker", "ray_max_worker")]
        ports = {name: base + i for i, name in enumerate(singles)}
        return cls(**ports, ray_min_worker=base + 100, ray_max_worker=base + 199)

    def fixed(self) -> dict[str, int]:
        """Every single port by field name (the Ray worker range excluded)."""
        return {
            name: value
            for name, value in self.model_dump().items()
            if name not in ("ray_min_worker", "ray_max_worker")
        }


#: The most workers a cluster may have (Terraform's worker_count allows as many).
MAX_WORKERS = 8


class Nodes(_Section):
    """How big the services are. ``auto`` sizes them from this machine (psutil)."""

    workers: int = Field(
        1, ge=1, le=MAX_WORKERS,
        description=f"worker count: 1 to {MAX_WORKERS} on aws and netns (local: one)",
    )  # fmt: skip
    worker_cores: int | Literal["auto"] = "auto"
    ray_cpus: int | Literal["auto"] = "auto"
    worker_memory: str = Field("auto", description="Spark worker memory, e.g. 4g, or auto")
    driver_memory: str = Field("1g", description="Spark driver memory")
    ray_object_store_memory: str = Field("auto", description="Ray object store, e.g. 2g, or auto")

    @field_validator("worker_cores", "ray_cpus")
    @classmethod
    def _cores(cls, value: int | str) -> int | str:
        if isinstance(value, int) and not 1 <= value <= 1024:
            raise ValueError("must be auto or a whole number from 1 to 1024")
        return value

    @field_validator("worker_memory", "driver_memory", "ray_object_store_memory")
    @classmethod
    def _size(cls, value: str) -> str:
        if value == "auto":
            return value
        size = parse_size(value)
        if size < 256 * 1024**2:
            raise ValueError("must be auto or at least 256m")
        return value


class Versions(_Section):
    """Pinned by pyproject.toml; a spec may restate them but not change them."""

    spark: str = Field(default_factory=versions.spark_version)
    ray: str = Field(default_factory=versions.ray_version)
    python: str = Field(default_factory=versions.python_version)
    java_min: int = Field(versions.MIN_JAVA_MAJOR, ge=17, le=99)

    @field_validator("spark", "ray", "python")
    @classmethod
    def _same_as_control_side(cls, value: str, info: Any) -> str:
        expected = {
            "spark": versions.spark_version,
            "ray": versions.ray_version,
            "python": versions.python_version,
        }[info.field_name]()
        if str(value) != expected:
            raise ValueError(
                f"this control side has {expected}; every node must run the same "
                f"{info.field_name}, so set {expected} (versions are pinned in pyproject.toml)"
            )
        return str(value)


class Storage(_Section):
    root: str | None = Field(
        None, description="where jobs read and write; default: the cluster's state folder/data"
    )


_INSTANCE_TYPE = r"^[a-z][a-z0-9-]*\.[a-z0-9]+$"


class Aws(_Section):
    """The AWS provider's settings (Terraform variables of infra/); unused by the others."""

    region: str | None = Field(
        None, pattern=r"^[a-z]{2}(-gov)?-[a-z]+-[0-9]$",
        description="null = AWS_REGION, AWS_DEFAULT_REGION, or the profile's region",
    )  # fmt: skip
    master_instance_type: str = Field(
        "t2.large", pattern=_INSTANCE_TYPE, description="the master's EC2 type"
    )
    worker_instance_type: str = Field(
        "t2.large", pattern=_INSTANCE_TYPE, description="every worker's EC2 type"
    )
    worker_market: Literal["on-demand", "spot"] = Field(
        "on-demand",
        description="spot: the workers are spot instances (the master stays on-demand)",
    )

    @model_validator(mode="before")
    @classmethod
    def _one_type_for_both(cls, data: Any) -> Any:
        """``instance_type`` (the field of specs before per-role types) sets both roles'."""
        if isinstance(data, dict) and "instance_type" in data:
            data = dict(data)
            both = data.pop("instance_type")
            data.setdefault("master_instance_type", both)
            data.setdefault("worker_instance_type", both)
        return data

    ami_family: Literal["debian-12", "ubuntu-24.04"] = "debian-12"
    volume_gb: int = Field(15, ge=10, le=1024, description="each node's gp3 root volume, GB")
    operator_cidr: str | None = Field(
        None, description="SSH is open to this CIDR only; null = this machine's public IP/32"
    )
    max_hourly_usd: float = Field(
        0.50, ge=0,
        description="`up` refuses a cluster whose list price per hour is over this (USD) "
                    "unless given --yes",
    )  # fmt: skip


class Metrics(_Section):
    interval_s: float = Field(1.0, ge=0.1, le=60, description="sampling interval in seconds")


class Runs(_Section):
    stall_timeout: float = Field(
        120.0, ge=5, le=86400,
        description="seconds a run may go without what it needs (an ALIVE Spark worker for a "
                    "Spark run, an ALIVE Ray node for a Ray run) before it is failed",
    )  # fmt: skip


#: What the idle guard does on each provider when the spec says nothing: on AWS it stops the
#: instances (disks kept) after an hour; a network namespace cannot power off, so the
#: rehearsal's guard records what it would do; the local cluster has no guard (it would have
#: to power off this machine).
IDLE_DEFAULTS: dict[str, tuple[int, str | None]] = {
    "aws": (60, "stop"),
    "netns": (0, "record"),
    "local": (0, None),
}


class IdleGuard(_Section):
    """The idle guard on the master: after ``idle_minutes`` with nothing active (no run, Spark
    application holding cores, Ray job, outside SSH session or tunnel) it stops the cluster,
    the workers first."""

    idle_minutes: int | None = Field(
        None, ge=0, le=10080,
        description="minutes with nothing active before it acts; 0 = no guard; null = the "
                    "provider's (60 on aws, no guard on local and netns)",
    )  # fmt: skip
    action: Literal["stop", "terminate", "record"] | None = Field(
        None,
        description="stop (instances stopped, disks kept), terminate (instances and disks "
                    "gone), record (only log what it would do); null = stop on aws, record "
                    "on netns",
    )  # fmt: skip

    def minutes_for(self, provider: str) -> int:
        """The minutes in force on ``provider`` (0: no guard)."""
        default = IDLE_DEFAULTS.get(provider, (0, None))[0]
        return default if self.idle_minutes is None else self.idle_minutes

    def action_for(self, provider: str) -> str:
        """The action in force on ``provider``."""
        return self.action or IDLE_DEFAULTS.get(provider, (0, "stop"))[1] or "stop"


#: A cluster's name when the spec gives none: its provider's, so that a rehearsal or a cloud
#: cluster brought up beside the local one is a second cluster, not the same one.
DEFAULT_NAMES = {"local": "local", "netns": "rehearsal", "aws": "aws"}


NAME_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"


def check_name(name: str, *, what: str = "the cluster's name") -> str:
    """``name`` when it is a cluster name the kit could have made; SpecError otherwise."""
    if not re.match(NAME_PATTERN, name):
        raise SpecError(
            f"{what} = {name!r} is not allowed: lowercase letters, digits and '-', starting "
            f"with a letter, at most 31 characters"
        )
    return name


class Spec(_Section):
    """A cluster, as the user wants it."""

    name: str = Field("local", pattern=NAME_PATTERN)
    provider: Literal["local", "netns", "aws"] = "local"

    @model_validator(mode="before")
    @classmethod
    def _name_from_provider(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("name") is None:
            provider = data.get("provider", "local")
            return {**data, "name": DEFAULT_NAMES.get(provider, provider)}
        return data

    state_dir: str | None = Field(
        None, description="where this cluster's state, logs and runs live; default ~/.clusterkit"
    )

    nodes: Nodes = Field(default_factory=Nodes)
    versions: Versions = Field(default_factory=Versions)
    ports: Ports = Field(default_factory=Ports)
    storage: Storage = Field(default_factory=Storage)
    metrics: Metrics = Field(default_factory=Metrics)
    runs: Runs = Field(default_factory=Runs)
    aws: Aws = Field(default_factory=Aws)
    idle_guard: IdleGuard = Field(default_factory=IdleGuard)

    @model_validator(mode="after")
    def _workers_fit_provider(self) -> Spec:
        if self.provider == "local" and self.nodes.workers != 1:
            raise ValueError(
                f"nodes.workers = {self.nodes.workers}: the local provider runs one worker "
                "(this machine); use --provider netns (the rehearsal) or aws for more"
            )
        return self

    @model_validator(mode="after")
    def _idle_guard_fits_provider(self) -> Spec:
        minutes = self.idle_guard.minutes_for(self.provider)
        if minutes and self.provider == "local":
            raise ValueError(
                f"idle_guard.idle_minutes = {minutes} is for remote clusters (aws, netns): on "
                "the local provider the guard would power off this machine; set it to 0 or "
                "leave it out"
            )
        action = self.idle_guard.action_for(self.provider)
        if minutes and self.provider == "netns" and action != "record":
            raise ValueError(
                f"idle_guard.action = {action} cannot run on the rehearsal (a network "
                "namespace cannot power off): use record, which logs what it would do"
            )
        return self


def _allowed_fields(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names allowed at ``loc``'s parent, for 'unknown field' errors."""
    current: type[BaseModel] = model
    for part in loc[:-1]:
        annotation = current.model_fields[str(part)].annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            current = annotation
    return sorted(current.model_fields)


def _describe(error: Any, source: str) -> str:
    loc = tuple(error["loc"])
    field = ".".join(str(p) for p in loc) or "(top level)"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        allowed = ", ".join(_allowed_fields(Spec, loc))
        return f"{source}: unknown field {field!r}; allowed here: {allowed}"
    if error["type"] == "missing":
        return f"{source}: {field} is required"
    if not loc:  # a check across fields: its message names them
        return f"{source}: {message}"
    return f"{source}: {field} = {error['input']!r} is not allowed: {message}"


def check_state_dir(value: str | None, source: str) -> None:
    """A ``state_dir`` the user gives reaches Ansible and shells as it is: no template syntax,
    quotes or whitespace (they would be rendered or split, not taken as a folder's name).
    Checked on the spec a user gives, not on saved state (a cluster made before stays usable).
    """
    if value is None:
        return
    bad = [t for t in ("{{", "{%", "{#", "'", '"', "`", "$") if t in value]
    if value == "":
        why = "an empty path; leave state_dir out (null) for the default"
    elif bad or any(c.isspace() for c in value):
        found = ", ".join(repr(t) for t in bad) or "whitespace"
        why = (f"{found} in a folder path; choose a folder whose path has none of '{{{{', "
               "'{%', quotes, '$', '`' or whitespace")  # fmt: skip
    else:
        return
    raise SpecError(f"{source}: state_dir = {value!r} is not allowed: {why}")


def parse_spec(data: dict[str, Any] | None, *, source: str = SPEC_FILENAME) -> Spec:
    """Validate ``data`` (a parsed YAML mapping) into a Spec, or raise SpecError."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SpecError(
            f"{source}: the spec must be a mapping of fields, not {type(data).__name__}"
        )
    try:
        spec = Spec.model_validate(data)
    except ValidationError as exc:
        lines = [_describe(error, source) for error in exc.errors()]
        raise SpecError("; ".join(lines)) from exc
    check_state_dir(spec.state_dir, source)
    return spec


def named_spec() -> Path | None:
    """The spec file $CLUSTERKIT_SPEC names, if it is set."""
    named = os.environ.get(SPEC_ENV)
    return Path(named).expanduser() if named else None


def load_spec_data(path: Path | None) -> tuple[dict[str, Any], str]:
    """The fields the spec file gives (not validated) and the file's name for messages;
    with no path, the file $CLUSTERKIT_SPEC names (which must exist), else ./clusterkit.yaml
    if present, else none at all (every default)."""
    if path is None and (named := named_spec()) is not None:
        if not named.exists():
            raise SpecError(f"{SPEC_ENV}={named}: no such spec file; create it with "
                            f"`clusterkit init`, or unset {SPEC_ENV}")  # fmt: skip
        path = named
    if path is None:
        candidate = Path.cwd() / SPEC_FILENAME
        if not candidate.exists():
            return {}, "the defaults"
        path = candidate
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError(f"{path}: no such spec file; create one with `clusterkit init`") from None
    except IsADirectoryError:
        raise SpecError(f"{path} is a folder, not a spec file; give the YAML file's path") from None
    except UnicodeDecodeError as exc:
        raise SpecError(
            f"{path}: byte {exc.start} is not UTF-8; save the spec as UTF-8 text"
        ) from None
    except OSError as exc:
        raise SpecError(f"{path}: cannot be read ({exc.strerror}); check its mode") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise SpecError(f"{path}:{where} is not valid YAML: {exc}") from exc
    if data is not None and not isinstance(data, dict):
        raise SpecError(f"{path}: the spec must be a mapping of fields, not {type(data).__name__}")
    return data or {}, str(path)


def load_spec(path: Path | None, **overrides: Any) -> Spec:
    """The spec in ``path`` (see :func:`load_spec_data`) with ``overrides`` (the command
    line's, None values ignored) on top; a name the file does not give follows the provider."""
    data, source = load_spec_data(path)
    given = {key: value for key, value in overrides.items() if value is not None}
    if given:
        source = f"{source} with the command line's {', '.join(sorted(given))}"
    merged = dict(data)
    for key, value in given.items():  # "section.field" sets one field of a section
        section, _, field = key.partition(".")
        if field:
            inner = merged.get(section)
            merged[section] = {**(inner if isinstance(inner, dict) else {}), field: value}
        else:
            merged[key] = value
    return parse_spec(merged, source=source)


def default_spec_text() -> str:
    """The commented default spec that ``clusterkit init`` writes."""
    spec = Spec()
    lines = [
        "# clusterkit cluster spec. Every field is optional; these are the defaults.",
        "# Docs: docs/cluster.md. Validate with `clusterkit up --dry-run`.",
        "",
        "name: null             # the cluster's name: lowercase letters, digits, '-';",
        "                       # null = the provider's: local, rehearsal (netns) or aws",
        "provider: local        # local: a real Spark + Ray cluster on this machine;",
        "                       # netns: the two-node AWS topology rehearsed in namespaces (root)",
        "                       # aws: two EC2 nodes made by Terraform (infra/), see aws: below",
        "state_dir: null        # state, logs and runs; null = ~/.clusterkit (or $CLUSTERKIT_HOME)",
        "",
        "nodes:",
        f"  workers: 1                    # 1-{MAX_WORKERS} workers on aws and netns "
        "(the local provider runs one)",
        "  worker_cores: auto            # auto = every core of this machine",
        "  ray_cpus: auto                # CPUs Ray schedules tasks on; auto = every core",
        "  worker_memory: auto           # Spark worker memory; auto = 40% of this machine's RAM",
        f"  driver_memory: {spec.nodes.driver_memory}              # Spark driver memory",
        "  ray_object_store_memory: auto # auto = 20% of this machine's RAM",
        "",
        "versions:                       # pinned by pyproject.toml; stated here for the record",
        f'  spark: "{spec.versions.spark}"',
        f'  ray: "{spec.versions.ray}"',
        f'  python: "{spec.versions.python}"',
        f"  java_min: {spec.versions.java_min}                  # Spark 4 needs Java 17 or newer",
        "",
        "ports:                          # all bound to 127.0.0.1 on the local provider",
    ]
    for name, field in Ports.model_fields.items():
        value = getattr(spec.ports, name)
        lines.append(f"  {name + ':':<28}{value:<7}# {field.description}")
    lines += [
        "",
        "storage:",
        "  root: null                    # null = <state folder>/clusters/<name>/data",
        "",
        "metrics:",
        f"  interval_s: {spec.metrics.interval_s}               # memory/CPU sampling period",
        "",
        "runs:",
        f"  stall_timeout: {spec.runs.stall_timeout:<14}# s without a Spark worker / Ray node "
        "before a run fails",
        "",
        "aws:                            # provider aws only",
        "  region: null                  # null = AWS_REGION, AWS_DEFAULT_REGION, or the "
        "profile's region",
        f"  {'master_instance_type: ' + spec.aws.master_instance_type:<34}# the source "
        "project's t2.large",
        f"  {'worker_instance_type: ' + spec.aws.worker_instance_type:<34}# every worker",
        f"  {'worker_market: ' + spec.aws.worker_market:<34}# or spot (workers only)",
        f"  {'ami_family: ' + spec.aws.ami_family:<30}# or ubuntu-24.04",
        f"  {'volume_gb: ' + str(spec.aws.volume_gb):<30}# each node's gp3 root volume (encrypted)",
        "  operator_cidr: null           # SSH open to this only; null = this machine's IP/32",
        f"  {'max_hourly_usd: ' + format(spec.aws.max_hourly_usd, 'g'):<30}# `up` and `start` "
        "refuse a higher list price unless --yes",
        "",
        "idle_guard:                     # stops a cluster nobody uses (docs/aws.md)",
        "  idle_minutes: null            # null = 60 on aws, none on local and netns; 0 = none",
        "  action: null                  # stop | terminate | record; null = stop on aws, "
        "record on netns",
        "",
    ]
    return "\n".join(lines)
