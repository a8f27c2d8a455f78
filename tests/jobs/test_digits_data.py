"""The digits' generator and LeNet-5's pieces, without a cluster (jobs/_digits.py, _lenet.py)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from jobs import _digits, _lenet


@pytest.mark.parametrize("seed", [0, 42, 7_000_001])
def test_the_split_is_stratified_and_shares_no_original(seed: int):
    split = _digits.split_originals(seed)
    images, labels = _digits.originals()
    train, test = set(split["train"].tolist()), set(split["test"].tolist())
    assert not train & test and len(train) + len(test) == len(labels)
    hashes = {s: {_digits.image_hash(images[i]) for i in split[s]} for s in _digits.SPLITS}
    assert not hashes["train"] & hashes["test"], "an 8x8 original on both sides"
    share = np.bincount(labels[split["test"]], minlength=10) / np.bincount(labels, minlength=10)
    assert np.all(np.abs(share - _digits.TEST_SHARE) < 0.03), share  # stratified by label


def test_the_split_follows_the_seed():
    assert np.array_equal(_digits.split_originals(1)["test"], _digits.split_originals(1)["test"])
    assert not np.array_equal(_digits.split_originals(1)["test"],
                              _digits.split_originals(2)["test"])  # fmt: skip


def test_a_block_is_the_same_whatever_else_is_made():
    order = _digits.split_originals(3)["train"]
    block = _digits.blocks("train", 12_000)[1]
    labels, pixels = _digits.make_block(block, order, seed=3)
    again = _digits.make_block(block, order, seed=3)
    assert np.array_equal(labels, again[0]) and np.array_equal(pixels, again[1])
    other = _digits.make_block(block, order, seed=4)
    assert not np.array_equal(pixels, other[1])
    assert pixels.dtype == np.uint8 and pixels.shape == (block.rows, 784)
    assert labels.tolist() == [int(_digits.originals()[1][order[(block.start + k) % len(order)]])
                               for k in range(block.rows)]  # fmt: skip


def test_images_look_like_mnist():
    """Copy 0 is the placed original: ink centred in the frame, inside the 20x20 box."""
    order = _digits.split_originals(0)["train"]
    _labels, pixels = _digits.make_block(_digits.Block("train", 0, 0, 50), order, seed=0)
    for image in pixels.reshape(-1, 28, 28).astype(float):
        rows, cols = np.nonzero(image > 0)
        assert rows.max() - rows.min() <= 22 and cols.max() - cols.min() <= 22
        centre = (np.array(np.nonzero(image)) * image[np.nonzero(image)]).sum(1) / image.sum()
        assert np.all(np.abs(centre - 13.5) < 1.0), centre
    augmented = _digits.make_block(_digits.Block("train", 0, len(order), 50), order, seed=0)[1]
    assert not np.array_equal(augmented, pixels), "later copies differ from the original"


def test_the_schedule_warms_up_then_decays_to_zero():
    rates = [_lenet.learning_rate(0.01, t / 100) for t in range(101)]
    peak = int(np.argmax(rates))
    assert rates[0] < 0.001 and abs(rates[peak] - 0.01) < 1e-3
    assert peak <= _lenet.WARMUP * 100 + 1
    assert all(a >= b for a, b in zip(rates[peak:], rates[peak + 1 :], strict=False))
    assert rates[-1] == pytest.approx(0.0, abs=1e-12)


def test_lenet_shapes_and_a_round_trip_of_its_weights():
    torch = pytest.importorskip("torch")
    model = _lenet.build(0.13, 0.3)
    assert sum(p.numel() for p in model.parameters()) == 61_706  # LeNet-5 as drawn
    images = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    with torch.inference_mode():
        logits = model(torch.from_numpy(images))
    assert tuple(logits.shape) == (5, 10)
    loaded = _lenet.from_bytes(_lenet.to_bytes(model))
    assert np.array_equal(
        _lenet.predict(model.eval(), images)[0], _lenet.predict(loaded, images)[0]
    )


def test_images_of_reads_the_list_column():
    flat = np.arange(2 * 784, dtype=np.float32) / 2000
    column = pa.FixedSizeListArray.from_arrays(pa.array(flat), 784).cast(pa.list_(pa.float32()))
    table = pa.table({"image": pa.chunked_array([column.slice(0, 1), column.slice(1, 1)])})
    images = _lenet.images_of(table)
    assert images.shape == (2, 1, 28, 28) and images.flags.writeable
    assert np.array_equal(images.reshape(-1), flat)


def test_minibatches_are_equal_sized_and_cover_each_row_once():
    images = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1)
    labels = np.arange(10)
    batches = list(_lenet.minibatches(images, labels, 3, seed=1))
    assert [len(b[1]) for b in batches] == [3, 3, 3]  # the tenth row dropped this epoch
    seen = np.concatenate([b[1] for b in batches])
    assert len(set(seen.tolist())) == 9
    assert all(np.array_equal(b[0].reshape(-1), b[1]) for b in batches)


def test_confusion_counts_true_rows_against_predicted_columns():
    matrix = _lenet.confusion([0, 0, 1, 9], [0, 1, 1, 3])
    assert matrix[0][0] == 1 and matrix[0][1] == 1 and matrix[1][1] == 1 and matrix[9][3] == 1
    assert sum(map(sum, matrix)) == 4
