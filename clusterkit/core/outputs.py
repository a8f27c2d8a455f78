"""A run's outputs on local storage: what a failed, cancelled or orphaned run left.

Every job writes an output to ``<target>.tmp-<run id>`` and renames it into place when it
is complete; an output it replaces is first set aside as ``.<name>.old-<run id>``. The
supervisor sweeps these after its run ends badly, and the reaper of a run whose supervisor
died sweeps them on every node.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path


def sweep_temp_outputs(root: str, run_id: str) -> list[str]:
    """Remove what the run left half-written under a local storage root.

    Every job writes an output to ``<target>.tmp-<run id>`` (a model to ``.tmp-<run id>``)
    and renames it into place when it is complete, so once the run's processes are all gone,
    whatever still carries that name is an unfinished output of a failed or cancelled run.
    An output it was replacing, set aside as ``.<name>.old-<run id>``, is put back when the
    new one never took its place, and removed otherwise.
    Remote storage (hdfs://) is not swept: a killed run's ``NAME.tmp-RUN`` stays there until
    removed with ``hdfs dfs -rm -r``.
    """
    if "://" in root and not root.startswith("file://"):
        return []
    base = Path(root.removeprefix("file://"))
    if not base.is_dir():
        return []
    removed = []
    for path in sorted(base.rglob(f"*tmp-{run_id}"), key=lambda p: len(p.parts)):
        with contextlib.suppress(OSError):  # one that cannot go does not stop the others
            if _remove(path):
                removed.append(str(path))
    # an output being replaced when the run stopped: the old copy set aside as .NAME.old-RUN
    # goes back when the new one never arrived, else it is what the commit had yet to remove
    for old in sorted(base.rglob(f".*.old-{run_id}"), key=lambda p: len(p.parts)):
        target = old.with_name(old.name[1:].removesuffix(f".old-{run_id}"))
        with contextlib.suppress(OSError):
            if not target.exists():
                old.rename(target)
                removed.append(f"{old} (put back as {target.name}: the new one never arrived)")
            elif _remove(old):
                removed.append(str(old))
    return removed


def _remove(path: Path) -> bool:
    """Remove a file or a folder (not a link's target); whether there was one."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()
    else:
        return False
    return True
