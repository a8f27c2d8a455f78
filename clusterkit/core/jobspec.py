"""What a job declares: its name, summary, engine, parameters and entry point.

A job module defines ``JOB = Job(name=..., summary=..., engine=..., params=[...], main=fn)``;
the catalog (:mod:`clusterkit.catalog`) finds it and checks arguments against its
parameters, and ``main(ctx)`` (ctx: :class:`clusterkit.jobkit.JobContext`) runs it.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

_COUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMbB]?)\s*$")
_COUNT_UNITS = {"": 1, "k": 1_000, "m": 1_000_000, "b": 1_000_000_000}


class JobInputError(Exception):
    """Bad input to a job (a parameter, a path, a column): the message says which and why."""


def parse_count(text: str | int) -> int:
    """A count such as ``200k``, ``30M``, ``1.5m`` or ``1000`` (or an int: one already
    parsed); must be positive."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = text
    else:
        match = _COUNT.match(str(text))
        if not match:
            raise ValueError(f"{text!r} is not a count; write e.g. 1000, 200k or 30M")
        number, unit = match.groups()
        value = int(float(number) * _COUNT_UNITS[unit.lower()])
    if value <= 0:
        raise ValueError(f"{text!r} must be at least 1")
    return value


@dataclass(frozen=True)
class Param:
    """One declared job parameter: ``--name VALUE`` (``--name``/``--no-name`` for flags)."""

    name: str
    kind: str  # int | float | str | count | bool | choice | choices | counts | words
    default: Any
    help: str
    choices: tuple[str, ...] = ()

    def parse(self, raw: Any) -> Any:
        """Convert ``raw`` (a string from the command line, or a JSON value such as a run
        record keeps: what ``parse`` returned, which parses to itself) or raise ValueError."""
        if self.kind == "count":
            return parse_count(raw)
        if self.kind == "int":
            return int(raw)
        if self.kind == "float":
            return float(raw)
        if self.kind == "bool":
            if isinstance(raw, bool):
                return raw
            if str(raw).lower() in ("1", "true", "yes", "on"):
                return True
            if str(raw).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"{raw!r} is not true or false")
        if self.kind == "choice":
            if raw not in self.choices:
                raise ValueError(f"{raw!r} is not one of {', '.join(self.choices)}")
            return raw
        if self.kind == "words":  # a command line's words: a list, or a string split as sh does
            return [str(w) for w in raw] if isinstance(raw, list) else shlex.split(str(raw))
        if self.kind in ("choices", "counts"):  # a comma-separated list, e.g. spark,duckdb
            if not isinstance(raw, (str, list, tuple)):
                raise ValueError(f"{raw!r}: give a comma-separated list")
            items = [i.strip() if isinstance(i, str) else i
                     for i in (raw.split(",") if isinstance(raw, str) else raw)]  # fmt: skip
            if not items or "" in items:
                raise ValueError(f"{raw!r}: give a comma-separated list without empty items")
            if self.kind == "counts":
                return [parse_count(i) for i in items]
            unknown = [i for i in items if i not in self.choices]
            if unknown:
                raise ValueError(f"unknown {', '.join(map(repr, unknown))}; "
                                 f"choose from {', '.join(self.choices)}")  # fmt: skip
            return list(dict.fromkeys(items))
        return str(raw)


@dataclass(frozen=True)
class Job:
    name: str
    summary: str
    engine: str  # spark | ray | python: the default engine
    main: Callable[[Any], dict[str, Any] | None]  # main(ctx: JobContext)
    params: Sequence[Param] = ()

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def engines(self) -> tuple[str, ...]:
        """The engines the job runs on: its ``engine`` parameter's choices, or its one engine."""
        choice = self.param("engine")
        return choice.choices if choice is not None and choice.choices else (self.engine,)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}
