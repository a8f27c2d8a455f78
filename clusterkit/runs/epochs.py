"""A training run's per-epoch figures, as the console and the report read them.

A training job (lenet) writes its epochs as a list of objects: ``result.json``'s ``epochs``
once it finished, and ``epochs.json`` (:data:`EPOCHS_FILE`), rewritten whole after each
epoch, while it runs. :func:`epochs_of` reads such a list leniently into :class:`Epoch`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

EPOCHS_FILE = "epochs.json"


@dataclass(frozen=True)
class Epoch:
    """One epoch's figures as a training job reports them (accuracies are fractions 0-1;
    a figure the job did not give is None)."""

    epoch: int
    loss: float | None = None
    accuracy: float | None = None  # training accuracy over the epoch
    test_accuracy: float | None = None
    images_per_s: float | None = None
    seconds: float | None = None
    lr: float | None = None

    @property
    def shown_accuracy(self) -> float | None:
        """The accuracy to show alone: on the test set where measured, else training."""
        return self.test_accuracy if self.test_accuracy is not None else self.accuracy


def _number(value: object) -> float | None:
    """A finite number (not a bool) as float, else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def epochs_of(data: object) -> list[Epoch]:
    """The epochs in ``data`` (the list in ``epochs.json`` or in result.json's ``epochs``).

    Anything but a list gives none; an element that is not an object is skipped; a figure
    that is not a number reads as None; an element without an epoch number is numbered by
    its place (1, 2, ...)."""
    if not isinstance(data, list):
        return []
    epochs = []
    for place, item in enumerate(data, start=1):
        if not isinstance(item, dict):
            continue
        number = _number(item.get("epoch"))
        epochs.append(Epoch(
            epoch=int(number) if number is not None else place,
            loss=_number(item.get("loss")),
            accuracy=_number(item.get("accuracy")),
            test_accuracy=_number(item.get("test_accuracy")),
            images_per_s=_number(item.get("images_per_s")),
            seconds=_number(item.get("seconds")),
            lr=_number(item.get("lr")),
        ))  # fmt: skip
    return epochs
