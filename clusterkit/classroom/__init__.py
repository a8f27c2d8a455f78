"""``clusterkit init --class``: what an instructor hands out so that every team runs the same
cluster: the spec and an ``examples/`` folder (a README with the steps in order, a PySpark
and a Ray script for ``clusterkit submit``, the exact versions pinned).

The scripts are this package's ``salary_by_age.py`` and ``salary_stats_ray.py``, copied as
they are (linted and type-checked with the kit; they import nothing of it: they run as a
user's own code). Nothing is overwritten without ``force``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from clusterkit import __version__
from clusterkit.core.errors import BadInput, ClusterkitError
from clusterkit.core.files import write_text_atomic
from clusterkit.core.spec import SPEC_FILENAME, Spec, default_spec_text
from clusterkit.services.playbooks import node_requirements

EXAMPLES = "examples"
#: the scripts handed out, in the order the README runs them
SCRIPTS = ("salary_by_age.py", "salary_stats_ray.py")
#: what the README's steps run: a small, fixed dataset, so every team's is the same
ROWS, SEED = "1M", 42


@dataclass(frozen=True)
class Written:
    """The spec and the files of ``examples/`` written."""

    spec: Path
    examples: Path
    files: list[Path]


def write_class(folder: Path, *, spec: Path | None = None, force: bool = False) -> Written:
    """Write the spec (``spec``, default ``folder/clusterkit.yaml``) and ``folder/examples/``.
    ClusterkitError naming the spec or the folder when it exists and ``force`` is not given
    (checked before anything is written); with ``force`` the spec and the class's files are
    replaced, other files in ``examples/`` kept. BadInput when ``examples`` is a file."""
    spec = spec or folder / SPEC_FILENAME
    examples = folder / EXAMPLES
    if examples.exists() and not examples.is_dir():
        raise BadInput(f"{examples} is a file; the class's examples go in a folder of that name")
    if not force:
        for path, what in ((spec, "replace it"), (examples, "write the class's files into it")):
            if path.exists():
                raise ClusterkitError(f"{path} exists; pass --force to {what}")
    examples.mkdir(parents=True, exist_ok=True)
    spec.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(spec, class_spec_text(), mode=0o644)
    files = [examples / "README.md"]
    inside = _inside(spec, folder)
    readme = readme_text(spec_name=inside or str(spec.resolve()), outside=inside is None)
    write_text_atomic(files[0], readme, mode=0o644)
    here = Path(__file__).parent
    for name in SCRIPTS:
        files.append(examples / name)
        write_text_atomic(files[-1], (here / name).read_text(), mode=0o644)
    return Written(spec, examples, files)


def class_spec_text() -> str:
    """The default spec, headed as a class's."""
    return ("# The class's cluster spec: every team starts its cluster from this file, so all\n"
            "# run the same versions and sizes. See examples/README.md for the steps.\n"
            + default_spec_text())  # fmt: skip


def pins() -> list[str]:
    """The exact versions every node runs (the kit's runtime requirements as installed)."""
    return node_requirements()


def readme_text(*, spec_name: str = SPEC_FILENAME, outside: bool = False) -> str:
    """The handout's README: the steps in order, the scripts, and the versions pinned.
    ``spec_name``: the spec's path from the class's folder (the one holding ``examples/``),
    or with ``outside`` (a spec written elsewhere) the path it was written to."""
    versions = Spec().versions
    pinned = "\n".join(pins())
    where = (
        f"the folder that holds this `examples/` folder;\nthe spec is `{spec_name}`, outside "
        "it (if your copy is elsewhere, give `up --spec` its path)"
        if outside
        else f"the folder that holds `{spec_name}` and this `examples/` folder"
    )
    return f"""# The class's cluster: the steps

Every team starts the same cluster from `{spec_name}` and runs the same steps, so the results
compare across teams. Run the commands from {where}. `clusterkit COMMAND --help` says more
about each.

## 1. Start the cluster

```bash
clusterkit up --spec {spec_name}
clusterkit status                 # every service up
```

## 2. The jobs, in order

Each is a recorded run: its output, its time per stage and its memory per node.

```bash
clusterkit run datagen --rows {ROWS} --seed {SEED} --overwrite   # the people: same seed, same rows
clusterkit run etl --checksum --overwrite                  # cleaned, with a checksum of the rows
clusterkit run top-earners --overwrite
clusterkit run age-extremes --overwrite
clusterkit run train                                       # the salary model
clusterkit run predict --overwrite
clusterkit runs                                            # every run so far
```

`--overwrite` replaces what an earlier run wrote, so a step (or its rerun) can be run again.

## 3. Your own code

Scripts run on the cluster as recorded runs too; each reads the kit's storage
(`$CLUSTERKIT_STORAGE`, set by `clusterkit submit`):

```bash
clusterkit submit examples/salary_by_age.py                # PySpark: the etl output by age band
clusterkit submit examples/salary_stats_ray.py             # Ray: a task per file of datagen
clusterkit submit examples/salary_by_age.py -- --band 5    # the script takes arguments after --
```

## 4. The report

```bash
clusterkit report latest -o reports/latest.html           # the PNG figures go beside it
```

It opens from disk in a browser, with no network: wall time by stage, each node's memory
over time, and for `train` the search.

## 5. Rerun and compare

```bash
clusterkit rerun RUN                  # RUN from `clusterkit runs`, e.g. the datagen run
clusterkit report RUN NEW -o reports/rerun.html
```

`rerun` runs the same job with the same parameters and engine, and says whether its result
checksum equals the first run's (datagen and `etl --checksum` record one: the same inputs
give the same checksum). The report puts both runs side by side and says whether their
environments differ.

## 6. Take the cluster down

```bash
clusterkit down
```

## The versions pinned

clusterkit {__version__}, Python {versions.python}, Spark {versions.spark}, Ray {versions.ray},
Java {versions.java_min} or newer. Every node runs exactly these packages:

```
{pinned}
```
"""


def _inside(path: Path, folder: Path) -> str | None:
    """``path`` relative to ``folder`` when it is inside it, else None."""
    try:
        return str(path.resolve().relative_to(folder.resolve()))
    except ValueError:
        return None
