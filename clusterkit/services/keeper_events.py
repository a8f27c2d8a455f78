"""What the local keeper did, in ``keeper.json``: restarts per daemon, the last events, the
daemons it gave up on. Read by ``status`` and ``up``; written by the keeper."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from clusterkit.core.files import write_json_atomic
from clusterkit.core.state import ClusterPaths


def keeper_file(paths: ClusterPaths) -> Path:
    """What the keeper did: restarts per daemon, the last events, daemons given up on."""
    return paths.root / "keeper.json"


def read_events(paths: ClusterPaths) -> dict[str, Any]:
    """``keeper.json``, or an empty record when the keeper has done nothing yet."""
    try:
        data: dict[str, Any] = json.loads(keeper_file(paths).read_text())
        return data
    except (OSError, ValueError):
        return {"restarts": {}, "events": [], "given_up": []}


def forgive_given_up(paths: ClusterPaths) -> None:
    """Let the next keeper try again the daemons this one gave up on (`up` asks for it); the
    counts and events stay."""
    events = read_events(paths)
    if events["given_up"]:
        write_json_atomic(keeper_file(paths), {**events, "given_up": []})
