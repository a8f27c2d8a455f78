"""A training run's epochs read leniently, once for the console and the report alike."""

from __future__ import annotations

from clusterkit.runs.epochs import Epoch, epochs_of


def test_epochs_are_read_leniently():
    data = [
        {"epoch": 1, "loss": 0.5, "accuracy": 0.9, "test_accuracy": 0.91, "images_per_s": 5230.0,
         "seconds": 11.2, "lr": 0.0021},
        "not an epoch",
        {"loss": 0.3, "accuracy": 0.93, "test_accuracy": None, "images_per_s": "fast"},
        {"epoch": 3, "accuracy": True, "seconds": float("nan")},
    ]  # fmt: skip
    epochs = epochs_of(data)
    assert [e.epoch for e in epochs] == [1, 3, 3]  # the one without a number: its place
    assert epochs[0] == Epoch(1, 0.5, 0.9, 0.91, 5230.0, 11.2, 0.0021)
    assert (epochs[1].test_accuracy, epochs[1].images_per_s) == (None, None)
    assert (epochs[2].accuracy, epochs[2].seconds) == (None, None)  # a bool, a NaN: no figure
    assert epochs_of({"epochs": []}) == [] and epochs_of(None) == []


def test_the_accuracy_shown_is_the_test_sets_where_measured():
    assert Epoch(1, accuracy=0.87, test_accuracy=0.91).shown_accuracy == 0.91
    assert Epoch(2, accuracy=0.93).shown_accuracy == 0.93
    assert Epoch(3).shown_accuracy is None
