"""lenet: LeNet-5 on the digits, trained data-parallel with Ray Train's TorchTrainer.

Reads ``digits-etl``'s output (``train/`` and ``test/``: ``label`` and ``image``, 784 floats
in [0, 1], the training mean and std in its ``_clusterkit.json``). Ray Data reads the Parquet
files once (stage ``load``); Ray Train splits both datasets into equal shards, one per
worker, and each worker trains its copy of the model on its shard with PyTorch's
DistributedDataParallel (gloo on the CPU), the gradients averaged at every step
(jobs/_lenet.py has the network and the learning-rate schedule).

- ``--workers N``: Ray Train workers, one CPU each (0: one per CPU of the cluster's Ray);
  more than the cluster's CPUs is refused rather than waited for. Several workers are spread
  over the nodes.
- ``--batch-size`` is the global batch: each of N workers takes ``batch-size / N`` rows a
  step (in passes of at most 128 rows, their gradients added), so 1 and N workers take the
  same optimisation steps; ``--lr`` is the peak rate. The default, 1024, makes the workers
  synchronise once per 512 images each: on 2 cores one synchronisation (DDP's all-reduce,
  the slower worker waited for) costs about 3.5 ms, which at 64 images a worker ate all the
  gain of a second worker; 8 epochs at 1024 still reach 99% on the held-out digits.
- Ray Data reads each worker's shard once, in the first epoch; later epochs shuffle it in
  the worker's memory (the 60,000 training images are 188 MB as float32).
- Each epoch records the mean training loss and accuracy, the accuracy on the test shards
  and the training images per second (images over the slowest worker's epoch time);
  ``epochs.json`` in the run folder grows as they finish (what consoles draw).
- Stages: ``open``, ``load``, ``train``, ``evaluate`` (the final model on every test image:
  ``test_accuracy`` and ``confusion_matrix``, rows the true digit) and ``save`` (a new
  version ``NAME:vN`` in the model store: ``model.pt``, the weights, and ``model.json``).
- ``workers`` in ``result.json`` says where each worker ran (node id, address, host name).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

from clusterkit.jobkit import Job, JobContext, JobInputError, Param, check_name
from jobs import _lenet
from jobs._model import FORMAT, save_model
from jobs._storage import KINDS, ArrowStorage, input_path, inspect_parquet, output_path

#: rows asked of Ray Data at a time when a worker reads its shard
CHUNK_ROWS = 4096
POLL_S = 1.0


def main(ctx: JobContext) -> dict[str, Any]:
    p = ctx.params
    name = check_name(p["name"], param="name")
    output_path(ctx.storage_root, f"models/{name}", param="--name")
    if not 1 <= p["epochs"] <= 500:
        raise JobInputError(f"--epochs {p['epochs']} is out of range: use 1 to 500")
    if not 8 <= p["batch_size"] <= 65_536:
        raise JobInputError(f"--batch-size {p['batch_size']} is out of range: use 8 to 65536")
    if not 0 < p["lr"] <= 1:
        raise JobInputError(f"--lr {p['lr']} is out of range: use a rate in (0, 1], e.g. 0.003")
    if p["workers"] < 0:
        raise JobInputError(f"--workers {p['workers']}: give 1 or more (0: one per CPU)")
    if p["seed"] < 0:
        raise JobInputError(f"--seed {p['seed']}: give 0 or more")
    storage = ArrowStorage()
    source = input_path(ctx, p["input"], "datasets", "digits", storage=storage)
    with ctx.stage("open"):
        meta, splits = _open(storage, source)
    ray = ctx.ray()
    cpus = int(ray.cluster_resources().get("CPU", 0))
    workers = p["workers"] or max(1, cpus)
    if workers > cpus:
        raise JobInputError(f"--workers {workers}: the cluster's Ray has {cpus} CPUs and each "
                            f"worker takes one; use at most {cpus}")  # fmt: skip
    if workers > p["batch_size"]:
        raise JobInputError(f"--batch-size {p['batch_size']} is smaller than --workers "
                            f"{workers}: each worker needs at least one row a step")  # fmt: skip
    per_worker = p["batch_size"] // workers
    if splits["train"].rows // workers < per_worker:
        raise JobInputError(
            f"{source}: {splits['train'].rows:,} training images make no full batch of "
            f"{per_worker:,} for each of {workers} worker(s) (--batch-size {p['batch_size']}); "
            f"give a smaller --batch-size or more images"
        )
    from jobs._ray_data import read_parquet

    with ctx.stage("load"):
        datasets = {
            split: read_parquet(ctx, storage, splits[split].files, rows=splits[split].rows,
                                columns=["label", "image"]).materialize()
            for split in ("train", "test")
        }  # fmt: skip
    config = {
        "epochs": p["epochs"], "batch_size": p["batch_size"], "lr": p["lr"], "seed": p["seed"],
        "mean": meta["mean"], "std": meta["std"], "train_rows": splits["train"].rows,
    }  # fmt: skip
    with ctx.stage("train"):
        state, blob = _train(ctx, datasets, config, workers)
    with ctx.stage("evaluate"):
        figures = _evaluate(storage, splits["test"].files, blob)
    epochs = state["epochs"]
    card = {
        "format": FORMAT, "kind": "lenet",
        "created": datetime.now(UTC).isoformat(timespec="seconds"), "run_id": ctx.run_id,
        "network": "LeNet-5", "input": {"image": "784 float32 in [0, 1], row by row"},
        "dataset": {"path": source, "train_rows": splits["train"].rows,
                    "test_rows": splits["test"].rows, "mean": meta["mean"], "std": meta["std"]},
        "metrics": {"test_accuracy": figures["test_accuracy"]},
        "training": {**config, "workers": workers}, "versions": _versions(),
    }  # fmt: skip
    with ctx.stage("save"):
        ref = save_model(storage, ctx.storage_path("models"), name, card=card, run_id=ctx.run_id,
                         job="lenet", files={"model.pt": blob})  # fmt: skip
    speeds = [e["images_per_s"] for e in epochs]
    result = {
        **figures,
        "epochs": epochs,
        "images_per_s": round(sum(speeds) / len(speeds), 1),
        # after the first epoch, which also pays for starting the workers' data pipeline
        "steady_images_per_s": round(sum(speeds[1:]) / len(speeds[1:]), 1) if speeds[1:] else None,
        "workers": sorted(state["workers"], key=lambda w: w["rank"]),
        "num_workers": workers,
        "train_rows": splits["train"].rows,
        "test_rows": splits["test"].rows,
        "model": ref.label(),
        "model_path": ref.path,
        "input": source,
    }
    _report(result)
    return result


def _open(storage: ArrowStorage, source: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the dataset's metadata, split -> its checked Parquet files) of digits-etl's output."""
    meta = storage.metadata(source) if storage.exists(source) else {}
    if meta.get("made_by") != "digits-etl" or "mean" not in meta:
        maker = meta.get("made_by") or meta.get("job")
        found = f"made by {maker}" if meta else "no _clusterkit.json or no folder"
        raise JobInputError(
            f"{source} is not an output of digits-etl ({found}); make "
            f"it with `clusterkit run datagen-digits` then `clusterkit run digits-etl`, or pass "
            f"--input"
        )
    splits = {}
    for split in ("train", "test"):
        dataset = inspect_parquet(storage, f"{source}/{split}", made_by="digits-etl")
        if dataset.schema.get("label") not in KINDS["integer"] or "image" not in dataset.schema:
            raise JobInputError(f"{source}/{split}: needs columns label (integer) and image "
                                f"(784 floats); it has {', '.join(dataset.schema)}")  # fmt: skip
        splits[split] = dataset
    return meta, splits


class Collector:
    """What the workers tell the driver while they train (a Ray actor, no CPU): where each
    runs, where training is, each epoch's figures, and at the end the weights."""

    def __init__(self) -> None:
        self.workers: list[dict[str, Any]] = []
        self.epochs: list[dict[str, Any]] = []
        self.position = (0, 0, 1)
        self.model: bytes | None = None

    def worker(self, info: dict[str, Any]) -> None:
        self.workers.append(info)

    def progress(self, epoch: int, step: int, steps: int) -> None:
        self.position = (epoch, step, steps)

    def epoch(self, figures: dict[str, Any]) -> None:
        self.epochs.append(figures)

    def put_model(self, blob: bytes) -> None:
        self.model = blob

    def state(self) -> dict[str, Any]:
        return {"workers": self.workers, "epochs": self.epochs, "position": self.position}

    def get_model(self) -> bytes | None:
        return self.model


def train_loop(config: dict[str, Any]) -> None:
    """One Ray Train worker: its shard of each epoch, gradients averaged by DDP every step."""
    import ray
    import ray.train
    import ray.train.torch
    import torch
    import torch.distributed as dist
    import torch.nn.functional as F

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    torch.manual_seed(config["seed"])
    torch.set_num_threads(1)  # one CPU a worker (what Ray reserved)
    collector = config["collector"]
    collector.worker.remote({
        "rank": rank, "node_id": ray.get_runtime_context().get_node_id(),
        "node_ip": ray.util.get_node_ip_address(), "hostname": socket.gethostname(),
        "pid": os.getpid(),
    })  # fmt: skip
    model: Any = ray.train.torch.prepare_model(_lenet.build(config["mean"], config["std"]))
    optimiser = torch.optim.AdamW(model.parameters(), lr=config["lr"],
                                  weight_decay=_lenet.WEIGHT_DECAY)  # fmt: skip
    per_worker = max(1, config["batch_size"] // world)
    steps = max(1, config["train_rows"] // world // per_worker)  # the equal shards' batches
    total = steps * config["epochs"]
    shards = {s: ray.train.get_dataset_shard(s) for s in ("train", "test")}
    for epoch in range(1, config["epochs"] + 1):
        model.train()
        started = time.perf_counter()
        sums = torch.zeros(3, dtype=torch.float64)  # loss * rows, correct, rows
        done = 0
        rate = _lenet.learning_rate(config["lr"], (epoch - 1) / config["epochs"])
        if epoch == 1:  # Ray Data feeds each worker its shard once; later epochs reuse it
            train = _lenet.shard_arrays(shards["train"], chunk=CHUNK_ROWS)
            test = _lenet.shard_arrays(shards["test"], chunk=CHUNK_ROWS)
        for images_np, labels_np in _lenet.minibatches(
            *train, per_worker, seed=config["seed"] * 1000 + epoch
        ):
            images, labels = torch.from_numpy(images_np), torch.from_numpy(labels_np)
            rate = _lenet.learning_rate(config["lr"], ((epoch - 1) * steps + done) / total)
            for group in optimiser.param_groups:
                group["lr"] = rate
            optimiser.zero_grad()
            parts = range(0, len(labels), _lenet.MICRO_BATCH)
            for start in parts:  # the gradients of the parts add up to the batch's mean
                last = start + _lenet.MICRO_BATCH >= len(labels)
                rows = slice(start, start + _lenet.MICRO_BATCH)
                with contextlib.nullcontext() if last or world == 1 else model.no_sync():
                    logits = model(images[rows])
                    loss = F.cross_entropy(logits, labels[rows], reduction="sum")
                    (loss / len(labels)).backward()  # DDP averages over the workers (on last)
                sums += torch.tensor([float(loss), float((logits.argmax(1) == labels[rows]).sum()),
                                      len(logits)], dtype=torch.float64)  # fmt: skip
            optimiser.step()
            done += 1
            if rank == 0 and done % 20 == 0:
                collector.progress.remote(epoch, done, steps)
        seconds = torch.tensor([time.perf_counter() - started], dtype=torch.float64)
        tested = _test(model, *test)
        if world > 1:
            dist.all_reduce(sums)
            dist.all_reduce(tested)
            dist.all_reduce(seconds, op=dist.ReduceOp.MAX)
        figures = {
            "epoch": epoch, "loss": round(float(sums[0] / sums[2]), 5),
            "accuracy": round(float(sums[1] / sums[2]), 5),
            "test_accuracy": round(float(tested[0] / tested[1]), 5) if tested[1] else None,
            "images_per_s": round(float(sums[2] / seconds[0]), 1),
            "seconds": round(float(seconds[0]), 3), "lr": rate, "steps": done,
        }  # fmt: skip
        if rank == 0:
            collector.epoch.remote(figures)
    if rank == 0:
        ray.get(collector.put_model.remote(_lenet.to_bytes(getattr(model, "module", model))))


def _test(model: Any, images: Any, labels: Any) -> Any:
    """(correct, rows) of the model on this worker's test shard, as a float64 tensor."""
    import torch

    model.eval()
    predicted, _ = _lenet.predict(model, images)
    return torch.tensor([int((predicted == labels).sum()), len(labels)], dtype=torch.float64)


def _train(ctx: JobContext, datasets: dict[str, Any], config: dict[str, Any],
           workers: int) -> tuple[dict[str, Any], bytes]:  # fmt: skip
    """Run the TorchTrainer; the collector's state and the trained weights. The driver
    follows the workers meanwhile (``progress.json``, ``epochs.json``)."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    collector: Any = ray.remote(num_cpus=0)(Collector).remote()
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={**config, "collector": collector},
        scaling_config=ScalingConfig(
            num_workers=workers, resources_per_worker={"CPU": 1},
            placement_strategy="SPREAD" if workers > 1 else "PACK",
        ),
        datasets=datasets,
        run_config=RunConfig(name=f"lenet-{ctx.run_id}",
                             storage_path=str(ctx.run_dir / "ray-train")),
    )  # fmt: skip
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=fit, name="lenet-fit", daemon=True)
    thread.start()
    shown = 0
    while True:
        thread.join(POLL_S)
        state: dict[str, Any] = ray.get(collector.state.remote())
        epoch, step, steps = state["position"]
        finished = len(state["epochs"])
        ctx.progress(finished + (step / steps if epoch > finished else 0), config["epochs"],
                     "epochs")  # fmt: skip
        if finished != shown:
            ctx.write_run_file("epochs.json", state["epochs"])
            for figures in state["epochs"][shown:]:
                _print_epoch(figures, config["epochs"])
            shown = finished
        if not thread.is_alive():
            break
    if "error" in outcome:
        error = outcome["error"]
        raise RuntimeError(f"training failed: {_first_line(error)}") from error
    blob = ray.get(collector.get_model.remote())
    if blob is None or len(state["epochs"]) != config["epochs"]:
        raise RuntimeError(f"training ended after {len(state['epochs'])} of {config['epochs']} "
                           f"epochs without the model")  # fmt: skip
    return state, blob


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _evaluate(storage: ArrowStorage, files: list[str], blob: bytes) -> dict[str, Any]:
    """The trained model on every test image: accuracy and the confusion matrix."""
    import pyarrow.parquet as pq

    model = _lenet.from_bytes(blob)
    correct = rows = 0
    matrix = [[0] * _lenet.CLASSES for _ in range(_lenet.CLASSES)]
    for file in files:
        fs, local = storage.file_system(file)
        table = pq.read_table(local, filesystem=fs, columns=["label", "image"])
        labels = table.column("label").to_numpy()
        predicted, _ = _lenet.predict(model, _lenet.images_of(table))
        correct += int((predicted == labels).sum())
        rows += len(labels)
        for i, row in enumerate(_lenet.confusion(labels, predicted)):
            matrix[i] = [a + b for a, b in zip(matrix[i], row, strict=True)]
    return {"test_accuracy": round(correct / rows, 5), "test_correct": correct,
            "confusion_matrix": matrix}  # fmt: skip


def _versions() -> dict[str, str]:
    import platform

    import ray
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__,
            "ray": ray.__version__}  # fmt: skip


def _print_epoch(figures: dict[str, Any], epochs: int) -> None:
    test = figures["test_accuracy"]
    shown = f"  test {test:.2%}" if test is not None else ""
    print(f"epoch {figures['epoch']}/{epochs}: loss {figures['loss']:.4f}  accuracy "
          f"{figures['accuracy']:.2%}{shown}  {figures['images_per_s']:,.0f} images/s "
          f"({figures['seconds']:.1f} s)", flush=True)  # fmt: skip


def _report(result: dict[str, Any]) -> None:
    print(f"test accuracy {result['test_accuracy']:.2%} on {result['test_rows']:,} images; "
          f"{result['images_per_s']:,.0f} training images/s with {result['num_workers']} "
          f"worker(s)")  # fmt: skip
    print("confusion matrix (rows: true digit, columns: predicted):")
    for digit, row in enumerate(result["confusion_matrix"]):
        print(f"  {digit}: " + " ".join(f"{n:5d}" for n in row))
    nodes = ", ".join(f"rank {w['rank']} on {w['hostname']} ({w['node_ip']})"
                      for w in result["workers"])  # fmt: skip
    print(f"workers: {nodes}\nmodel {result['model']} -> {result['model_path']}")


JOB = Job(
    name="lenet",
    summary="LeNet-5 on the digits, data-parallel with Ray Train (TorchTrainer), versioned model",
    engine="ray",
    main=main,
    params=[
        Param("input", "str", "", "digits-etl's output (default: <storage>/datasets/digits)"),
        Param("workers", "int", 0, "Ray Train workers, one CPU each (0: one per cluster CPU)"),
        Param("epochs", "int", 8, "passes over the training images"),
        Param("batch_size", "int", 1024, "global batch (split across the workers)"),
        Param("lr", "float", 0.01, "peak learning rate (AdamW, warm-up then cosine decay)"),
        Param("seed", "int", 0, "seed of the weights and the shuffling"),
        Param("name", "str", "digits",
              "model name (a-z, 0-9, -): saved as <storage>/models/NAME/vN"),
    ],
)  # fmt: skip
