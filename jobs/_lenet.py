"""LeNet-5 for 28x28 digits, its learning-rate schedule and its saved form (PyTorch).

The network is LeCun et al.'s (1998) layout with today's usual choices: conv 6@5x5 (padded
by 2, as for MNIST's 28x28 rather than LeNet's 32x32 input) -> 2x2 max-pool -> conv 16@5x5
-> 2x2 max-pool -> 120 -> 84 -> 10, ReLU activations. Its first step normalises the [0, 1]
pixels with the training set's mean and std (recorded by ``digits-etl``), so a saved model
takes pixels as the ETL writes them.

Learning rate (:func:`learning_rate`): AdamW, a linear warm-up over the first WARMUP of the
steps, then a cosine decay to zero. The warm-up keeps Adam's first, badly estimated steps
small; the cosine decay anneals the rate to the end of the run whatever the number of
epochs, with no milestone to tune. The schedule is a function of the share of training
done, and the batch size is the global one (split across the workers), so 1 and N workers
take the same number of steps of the same size (when N divides the batch) on the same
schedule. They do not see the same rows in the same order (each worker shuffles its own
shard), so their accuracy differs a little: measured, by 0.08 points (docs/benchmarks.md).
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from typing import Any

SIDE = 28
CLASSES = 10
WARMUP = 0.05
#: rows a forward and backward pass takes at most: a worker's larger batch goes through in
#: parts of this size, the gradients added up (measured on one core, LeNet-5 trains about
#: 11,400 images/s with 128 rows a pass, 8,900 with 256 and 8,000 with 64)
MICRO_BATCH = 128
WEIGHT_DECAY = 1e-4


def build(mean: float, std: float) -> Any:
    """A fresh LeNet-5 (torch ``nn.Module``) taking [0, 1] pixels as (n, 1, 28, 28)."""
    import torch
    from torch import nn

    class Normalise(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(float(mean)))
            self.register_buffer("std", torch.tensor(float(std)))

        def forward(self, x: Any) -> Any:
            return (x - self.mean) / self.std

    return nn.Sequential(
        Normalise(),
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, CLASSES),
    )  # fmt: skip


def learning_rate(peak: float, done: float) -> float:
    """The rate after ``done`` (0-1) of the training steps: linear warm-up, cosine decay."""
    if done < WARMUP:
        return peak * (done + 1e-3) / WARMUP
    progress = min(1.0, (done - WARMUP) / (1.0 - WARMUP))
    return peak * 0.5 * (1.0 + math.cos(math.pi * progress))


def images_of(batch: Any) -> Any:
    """An Arrow table's (or record batch's) ``image`` column (lists of 784 floats) as a
    float32 numpy array (n, 1, 28, 28)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    column = batch.column("image")
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    flat = pc.list_flatten(column).to_numpy(zero_copy_only=False)
    images = np.ascontiguousarray(flat, dtype=np.float32)
    if not images.flags.writeable:  # a view of Arrow's buffer: torch wants its own
        images = images.copy()
    return images.reshape(-1, 1, SIDE, SIDE)


def shard_arrays(shard: Any, *, chunk: int) -> tuple[Any, Any]:
    """A Ray Data shard read whole: (images float32 (n, 1, 28, 28), labels int64 (n,))."""
    import numpy as np

    images, labels = [], []
    for batch in shard.iter_batches(batch_size=chunk, batch_format="pyarrow"):
        images.append(images_of(batch))
        labels.append(batch.column("label").to_numpy().astype(np.int64))
    if not labels:
        return np.empty((0, 1, SIDE, SIDE), np.float32), np.empty(0, np.int64)
    return np.concatenate(images), np.concatenate(labels)


def minibatches(images: Any, labels: Any, size: int, *, seed: int) -> Iterator[tuple[Any, Any]]:
    """``size``-row batches of the rows in a seeded random order, the last incomplete batch
    dropped: every worker of an equal split gets the same number (DDP needs it)."""
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(labels))
    for start in range(0, len(labels) // size * size, size):
        rows = np.sort(order[start : start + size])
        yield images[rows], labels[rows]


def to_bytes(model: Any) -> bytes:
    """The model's weights (its state dict, on the CPU) as bytes."""
    import torch

    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    return buffer.getvalue()


def from_bytes(blob: bytes) -> Any:
    """A LeNet-5 in evaluation mode from :func:`to_bytes`' bytes."""
    import torch

    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    model = build(float(state["0.mean"]), float(state["0.std"]))
    model.load_state_dict(state)
    return model.eval()


def predict(model: Any, images: Any, *, batch: int = 2048) -> tuple[Any, Any]:
    """(predicted class int64 (n,), its probability float32 (n,)) for images (n, 1, 28, 28)."""
    import numpy as np
    import torch

    classes, confidence = [], []
    with torch.inference_mode():
        for start in range(0, len(images), batch):
            logits = model(torch.from_numpy(images[start : start + batch]))
            probs = torch.softmax(logits, dim=1)
            best = probs.max(dim=1)
            classes.append(best.indices.numpy())
            confidence.append(best.values.numpy())
    if not classes:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    return np.concatenate(classes).astype(np.int64), np.concatenate(confidence)


def confusion(labels: Any, predicted: Any) -> list[list[int]]:
    """The 10x10 confusion matrix: row = true digit, column = predicted digit."""
    import numpy as np

    matrix = np.zeros((CLASSES, CLASSES), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels, np.int64), np.asarray(predicted, np.int64)), 1)
    return [[int(v) for v in row] for row in matrix]
