"""Handwritten digits in MNIST's layout, made from scikit-learn's 1,797 real 8x8 digits.

MNIST cannot be downloaded on the kit's machines, but ``sklearn.datasets.load_digits`` ships
1,797 real handwritten digits (8x8, 16 grey levels). They become MNIST-like images here:

1. **Split first.** The originals are split 80/20, stratified by label and seeded, *before*
   anything else: every image of ``test.csv`` descends from an original that no image of
   ``train.csv`` descends from (:func:`split_originals`; checked by :func:`image_hash`).
2. **Placed like MNIST.** Each original is cropped to its ink, scaled so its longer side is
   20 pixels (its aspect kept) and put in a 28x28 frame with its centre of mass at the
   centre (:func:`placed`), as NIST's digits were for MNIST.
3. **Augmented within its split.** Row ``i`` of a split is original ``order[i % n]``; its
   first copy is the placed original itself, every later copy a random small rotation
   (±ROTATE_DEG), scale (±SCALE), shift (±SHIFT_PX) and elastic distortion (Simard et al.,
   2003: a random displacement field smoothed by a Gaussian of ELASTIC_SIGMA, times
   ELASTIC_ALPHA), drawn from the random stream of the row's block, ``(seed, split, block)``.
   The same seed gives the same rows whatever the number of tasks or nodes.

Pixels are integers 0-255 (ink high, as in MNIST), labels 0-9.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from typing import Any

SIDE = 28
BOX = 20  # MNIST's digits fit a 20x20 box inside the 28x28 frame
BLOCK_ROWS = 5_000
SPLITS = ("train", "test")
TEST_SHARE = 0.2
ROTATE_DEG = 12.0
SCALE = 0.10
SHIFT_PX = 2.0
ELASTIC_ALPHA = 6.0
ELASTIC_SIGMA = 3.5


@cache
def originals() -> tuple[Any, Any]:
    """(images float64 (n, 8, 8) in [0, 1], labels int64 (n,)): scikit-learn's digits, an
    image repeated in the set kept once (so no copy can sit on both sides of the split)."""
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    seen: set[str] = set()
    keep = []
    for i, image in enumerate(digits.images):
        key = image_hash(image)
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return digits.images[keep] / 16.0, np.asarray(digits.target[keep], dtype=np.int64)


def image_hash(image: Any) -> str:
    """A short hash of an original 8x8 image (its 16 grey levels), before any augmentation."""
    import numpy as np

    levels = np.rint(np.asarray(image, dtype=np.float64) * (16.0 if image.max() <= 1 else 1.0))
    return hashlib.sha256(levels.astype(np.uint8).tobytes()).hexdigest()[:16]


def split_originals(seed: int) -> dict[str, Any]:
    """Split name -> indices into :func:`originals`, stratified 80/20 by label, seeded; each
    split's indices in a seeded order (the order its rows cycle through)."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    _, labels = originals()
    train, test = train_test_split(np.arange(len(labels)), test_size=TEST_SHARE,
                                   stratify=labels, random_state=seed % 2**32)  # fmt: skip
    rng = np.random.default_rng([seed, 7])
    return {"train": rng.permutation(train), "test": rng.permutation(test)}


@cache
def placed(index: int) -> tuple[Any, tuple[float, float]]:
    """Original ``index`` cropped to its ink and scaled to fit BOX (aspect kept), on a
    SIDE x SIDE canvas; (canvas, its centre of mass as (row, col))."""
    import numpy as np
    from scipy import ndimage

    image = originals()[0][index]
    rows, cols = np.nonzero(image > 0)
    crop = image[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    factor = BOX / max(crop.shape)
    big = np.clip(ndimage.zoom(crop, factor, order=1, grid_mode=True, mode="grid-constant"), 0, 1)
    canvas = np.zeros((SIDE, SIDE))
    top, left = (SIDE - big.shape[0]) // 2, (SIDE - big.shape[1]) // 2
    canvas[top : top + big.shape[0], left : left + big.shape[1]] = big
    centre = ndimage.center_of_mass(canvas)
    return canvas, (float(centre[0]), float(centre[1]))


def render(index: int, rng: Any | None) -> Any:
    """Original ``index`` as a SIDE x SIDE float image, centred by its mass; with ``rng``,
    one random augmentation of it (rotation, scale, shift and elastic distortion)."""
    import numpy as np
    from scipy import ndimage

    canvas, (cy, cx) = placed(index)
    mid = (SIDE - 1) / 2
    grid_r, grid_c = np.mgrid[0:SIDE, 0:SIDE].astype(np.float64)
    r, c = grid_r - mid, grid_c - mid  # output coordinates around the frame's centre
    if rng is not None:
        angle = np.deg2rad(rng.uniform(-ROTATE_DEG, ROTATE_DEG))
        scale = 1.0 + rng.uniform(-SCALE, SCALE)
        shift_r, shift_c = rng.uniform(-SHIFT_PX, SHIFT_PX, 2)
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        r, c = r - shift_r, c - shift_c
        r, c = cos * r - sin * c, sin * r + cos * c
        noise = [rng.uniform(-1, 1, (SIDE, SIDE)) for _ in range(2)]
        fields = [ndimage.gaussian_filter(n, ELASTIC_SIGMA, mode="constant") * ELASTIC_ALPHA
                  for n in noise]  # fmt: skip
        r, c = r + fields[0], c + fields[1]
    source = np.stack([r + cy, c + cx])  # the centre of mass lands on the frame's centre
    image = ndimage.map_coordinates(canvas, source, order=1, mode="constant", cval=0.0)
    return np.clip(image, 0.0, 1.0)


@dataclass(frozen=True)
class Block:
    """Rows ``start`` to ``start + rows`` of a split: what one task makes."""

    split: str
    number: int
    start: int
    rows: int


def blocks(split: str, rows: int) -> list[Block]:
    return [Block(split, n, start, min(BLOCK_ROWS, rows - start))
            for n, start in enumerate(range(0, rows, BLOCK_ROWS))]  # fmt: skip


def make_block(block: Block, order: Any, *, seed: int) -> tuple[Any, Any]:
    """(labels uint8 (rows,), pixels uint8 (rows, 784)) of ``block``; ``order`` is its
    split's original indices. Row ``i`` is copy ``i // len(order)`` of original
    ``order[i % len(order)]``: copy 0 unchanged, later copies augmented."""
    import numpy as np

    rng = np.random.default_rng([seed, SPLITS.index(block.split), block.number])
    labels_all = originals()[1]
    labels = np.empty(block.rows, dtype=np.uint8)
    pixels = np.empty((block.rows, SIDE * SIDE), dtype=np.uint8)
    for k in range(block.rows):
        i = block.start + k
        index = int(order[i % len(order)])
        image = render(index, rng if i >= len(order) else None)
        pixels[k] = np.rint(image * 255.0).astype(np.uint8).reshape(-1)
        labels[k] = labels_all[index]
    return labels, pixels
