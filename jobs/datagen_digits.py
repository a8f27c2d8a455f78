"""datagen-digits: handwritten digits as MNIST-format CSV files, ``train.csv`` and ``test.csv``.

Each row is ``label,pixel0,...,pixel783``: a digit 0-9, then a 28x28 image row by row, pixels
0-255 (the layout of pjreddie's "MNIST in CSV", with a header line). Two sources:

- by default, scikit-learn's 1,797 real 8x8 digits, split 80/20 by original *before* they
  are placed like MNIST and augmented up to ``--rows`` training and ``--test-rows`` test rows
  (jobs/_digits.py): no test image descends from a training original. ``originals.json``
  lists each split's originals (their index in ``load_digits`` and the hash of the 8x8 image)
  so the split can be checked. Blocks of rows are made by Ray tasks, each from its own random
  stream: the same ``--seed`` gives the same files whatever the cluster.
- ``--input DIR``: real MNIST CSVs (``mnist_train.csv`` + ``mnist_test.csv``, or ``train.csv``
  + ``test.csv``; a header line or none), checked row by row (785 columns, labels 0-9, pixels
  0-255; a bad row is named by file and line) and written in the layout above. ``--rows`` and
  ``--test-rows`` cap the rows taken from the top of each file.

Stages: ``split`` (or ``read_input``), ``generate``, ``write``. The folder
(``<storage>/datasets/NAME``, default ``digits-csv``) is written to a temporary folder and
renamed into place; an existing one is replaced only with ``--overwrite``. ``result.json``
carries the rows of each split, the label counts and ``checksum``: the SHA-256 of the two
files' bytes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from typing import Any

from clusterkit.jobkit import Job, JobContext, JobInputError, Param, check_name
from jobs import _digits
from jobs._digits_csv import find_mnist_files, read_mnist_csv, write_mnist_csv
from jobs._storage import (
    OVERWRITE_PARAM,
    ArrowStorage,
    check_output,
    input_path,
    job_output,
    writing,
)

SPLIT_FILES = {"train": "train.csv", "test": "test.csv"}


def main(ctx: JobContext) -> dict[str, Any]:
    p = ctx.params
    name = check_name(p["name"], param="name")
    rows = {"train": int(p["rows"]), "test": int(p["test_rows"])}
    if int(p["seed"]) < 0:
        raise JobInputError(f"--seed {p['seed']}: give 0 or more")
    for split, count in rows.items():
        if count < 1:
            flag = "--rows" if split == "train" else "--test-rows"
            raise JobInputError(f"{flag} {count}: give at least 1 row")
    storage = ArrowStorage()
    out = job_output(ctx, f"datasets/{name}", param="--name")
    check_output(storage, out)
    if p["input"]:
        data, meta = _read_input(ctx, storage, input_path(ctx, p["input"], storage=storage), rows)
    else:
        data, meta = _generate(ctx, rows, seed=int(p["seed"]))
    digest = hashlib.sha256()
    figures: dict[str, Any] = {}
    with writing(storage, out, meta=meta, stage=ctx.stage("commit")) as tmp:
        with ctx.stage("write"):
            for split, (labels, pixels) in data.items():
                fs, local = storage.file_system(f"{tmp}/{SPLIT_FILES[split]}")
                fs.create_dir(local.rsplit("/", 1)[0], recursive=True)
                with fs.open_output_stream(local) as sink:
                    write_mnist_csv(_Hashing(sink, digest), labels, pixels)
                figures[split] = {"rows": len(labels), "labels": _label_counts(labels)}
            if "originals" in meta:
                storage.write_text(f"{tmp}/originals.json", json.dumps(meta.pop("originals")))
        meta["checksum"] = digest.hexdigest()
        meta["train_rows"], meta["test_rows"] = figures["train"]["rows"], figures["test"]["rows"]
    print(f"datagen-digits: {figures['train']['rows']:,} training and "
          f"{figures['test']['rows']:,} test rows ({meta['source']}) -> {out.path}")  # fmt: skip
    print(f"datagen-digits: checksum {meta['checksum']}")
    return {"rows": figures["train"]["rows"] + figures["test"]["rows"],
            "train_labels": figures["train"]["labels"], "test_labels": figures["test"]["labels"],
            "path": out.path, **meta}  # fmt: skip


class _Hashing:
    """A binary sink that feeds what is written to a hash on its way."""

    def __init__(self, sink: Any, digest: Any) -> None:
        self.sink, self.digest = sink, digest

    def write(self, data: Any) -> int:
        self.digest.update(memoryview(data))
        return int(self.sink.write(data) or len(data))

    def flush(self) -> None:
        self.sink.flush()

    @property
    def closed(self) -> bool:
        return bool(self.sink.closed)


def _label_counts(labels: Any) -> list[int]:
    import numpy as np

    return [int(n) for n in np.bincount(labels, minlength=10)[:10]]


def _generate(
    ctx: JobContext, rows: dict[str, int], *, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    with ctx.stage("split"):
        order = _digits.split_originals(seed)
        hashes = {split: [_digits.image_hash(_digits.originals()[0][i]) for i in order[split]]
                  for split in _digits.SPLITS}  # fmt: skip
        leaked = set(hashes["train"]) & set(hashes["test"])
        if leaked:  # cannot happen (originals() keeps one copy of each image): say so if it does
            raise RuntimeError(f"{len(leaked)} originals are on both sides of the split")
    with ctx.stage("generate"):
        data = _make_rows(ctx, order, rows, seed=seed)
    originals = {split: [{"index": int(i), "hash": h} for i, h in zip(order[split], hashes[split],
                                                                         strict=True)]
                 for split in _digits.SPLITS}  # fmt: skip
    meta = {
        "source": "scikit-learn load_digits, augmented", "seed": seed,
        "train_originals": len(order["train"]), "test_originals": len(order["test"]),
        "augmentation": {"rotate_deg": _digits.ROTATE_DEG, "scale": _digits.SCALE,
                         "shift_px": _digits.SHIFT_PX, "elastic_alpha": _digits.ELASTIC_ALPHA,
                         "elastic_sigma": _digits.ELASTIC_SIGMA},
        "originals": originals,
    }  # fmt: skip
    return data, meta


def _make_rows(ctx: JobContext, order: dict[str, Any], rows: dict[str, int], *,
               seed: int) -> dict[str, Any]:  # fmt: skip
    """Every block of both splits as a Ray task; split -> (labels, pixels) in row order.
    On a failure the tasks still going are cancelled before it is raised."""
    import numpy as np

    ray = ctx.ray()
    task = ray.remote(num_cpus=1)(_digits.make_block)
    plan = [b for split in _digits.SPLITS for b in _digits.blocks(split, rows[split])]
    shared = {split: ray.put(order[split]) for split in _digits.SPLITS}
    pending = {task.remote(b, shared[b.split], seed=seed): b for b in plan}
    made: dict[Any, tuple[Any, Any]] = {}
    total, done = sum(rows.values()), 0
    try:
        waiting = list(pending)
        while waiting:
            ready, waiting = ray.wait(waiting, num_returns=1)
            block = pending[ready[0]]
            made[block] = ray.get(ready[0])
            done += block.rows
            ctx.progress(done, total, "images")
    except BaseException:
        with contextlib.suppress(Exception):
            for ref in waiting:
                ray.cancel(ref, force=True)
        raise
    out = {}
    for split in _digits.SPLITS:
        parts = [made[b] for b in plan if b.split == split]
        out[split] = (np.concatenate([labels for labels, _ in parts]),
                      np.concatenate([pixels for _, pixels in parts]))  # fmt: skip
    return out


def _read_input(ctx: JobContext, storage: ArrowStorage, folder: str,
                rows: dict[str, int]) -> tuple[dict[str, Any], dict[str, Any]]:  # fmt: skip
    with ctx.stage("read_input"):
        if not storage.exists(folder):
            raise JobInputError(f"--input {folder} does not exist: give the folder holding "
                                f"mnist_train.csv and mnist_test.csv")  # fmt: skip
        names = [f.rsplit("/", 1)[-1] for f in storage.files(folder, suffix=".csv")]
        train_name, test_name = find_mnist_files(names, folder=folder)
        data = {}
        for split, file in (("train", train_name), ("test", test_name)):
            fs, local = storage.file_system(f"{folder}/{file}")
            with fs.open_input_stream(local) as source:
                labels, pixels = read_mnist_csv(source, name=f"{folder}/{file}")
            data[split] = (labels[: rows[split]], pixels[: rows[split]])
    meta = {"source": f"MNIST CSV files in {folder}", "input": folder,
            "input_files": {"train": train_name, "test": test_name}}  # fmt: skip
    return data, meta


JOB = Job(
    name="datagen-digits",
    summary="Handwritten digits as MNIST-format CSV (train.csv, test.csv), or real MNIST checked",
    engine="ray",
    main=main,
    params=[
        Param("rows", "count", 60_000, "training rows (60k like MNIST); with --input, a cap"),
        Param("test_rows", "count", 10_000, "test rows (10k like MNIST); with --input, a cap"),
        Param("seed", "int", 42, "random seed of the split and the augmentation"),
        Param("input", "str", "",
              "a folder of real MNIST CSVs (mnist_train.csv, mnist_test.csv) to check and use"),
        Param("name", "str", "digits-csv", "dataset name under <storage>/datasets/ (a-z, 0-9, -)"),
        OVERWRITE_PARAM,
    ],
)  # fmt: skip
