"""The hardening equals its slow, obvious NumPy reference (the oracle) bit for bit.

Written from the definitions in ``fastmix/harden/plan.py`` and ``fastmix/harden/apply.py``
with Python integers and floats and NumPy slicing, without Numba or fastmix's kernels.
"""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest

import fastmix
from fastmix import MixSpec

STREAM_ORIENT = 1000
STREAM_JITTER = 1001


def exact_exp(z: float) -> float:
    reduced = z / 16.0
    term = 1.0
    total = 1.0
    for power in range(1, 18):
        term = term * reduced / float(power)
        total = total + term
    for _ in range(4):
        total = total * total
    return total


def plan(labels, block_count, spec, key, window_index):
    """Source map of one window (naive's planner with the spec's group size)."""
    codes = naive.label_codes(np.asarray(labels))
    window_seed = key.window_seed(spec.canonical(), window_index)
    total = None
    for round_number in range(spec.rounds):
        stream = naive.ROUND_STRIDE * round_number
        if spec.mode == "permute":
            source = naive.permute_round(codes, block_count, spec.prob,
                                         spec.group_size(len(codes)), window_seed, stream)
        else:
            source = naive.paper_round(codes, block_count, spec.prob, spec.donors,
                                       window_seed, stream)
        total = source if total is None else [
            [total[source[i][b]][b] for b in range(block_count)] for i in range(len(codes))]
    return total


def orient_block(block: np.ndarray, code: int) -> np.ndarray:
    """Mirror the source rows/columns, then transpose: the code's definition."""
    if code & 2:
        block = block[::-1]
    if code & 1:
        block = block[:, ::-1]
    if code & 4:
        block = block.swapaxes(0, 1)
    return block


def codes_and_jitter(spec, key, window_index, count, regions):
    window_seed = key.window_seed(spec.canonical(), window_index)
    orient_seed = naive.derive(window_seed, STREAM_ORIENT)
    jitter_seed = naive.derive(window_seed, STREAM_JITTER)
    codes, jitter = [], []
    for i in range(count):
        image_codes, image_jitter = [], []
        for b, (rows, cols) in enumerate(regions):
            square = rows.stop - rows.start == cols.stop - cols.start
            choices = {"none": 1, "flip": 4, "d4": 8 if square else 4}[spec.orient]
            draw = naive.derive(naive.derive(naive.derive(orient_seed, i), b), 0)
            image_codes.append(naive.bounded(draw, choices) if choices > 1 else 0)
            if spec.jitter is not None:
                block_seed = naive.derive(naive.derive(jitter_seed, i), b)
                uniform = [(naive.derive(block_seed, t) >> 11) * 2.0**-52 - 1.0
                           for t in range(3)]
                image_jitter.append((uniform[0] * spec.jitter[0],
                                     exact_exp(uniform[1] * spec.jitter[1]),
                                     exact_exp(uniform[2] * spec.jitter[2])))
        codes.append(image_codes)
        jitter.append(image_jitter)
    return codes, jitter


def value_range(dtype):
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max), True
    return 0.0, 1.0, False


def jitter_block(block, brightness, contrast, tone):
    low, high, integer = value_range(block.dtype)
    values = block.astype(np.float64)
    if integer:
        level = (values - low) / (high - low)
    else:
        level = np.where(values < 0.0, 0.0, np.where(values > 1.0, 1.0, values))
    toned = level / (level + tone * (1.0 - level))
    result = (toned - 0.5) * contrast + 0.5 + brightness
    result = np.where(result < 0.0, 0.0, np.where(result > 1.0, 1.0, result))
    if integer:
        return (np.rint(result * (high - low)) + low).astype(block.dtype)
    return result.astype(block.dtype)


def band(edges, sigma):
    half = math.ceil(sigma)
    size = edges[-1]
    rows = set()
    for seam in edges[1:-1]:
        rows.update(range(max(seam - half, 0), min(seam + half, size)))
    return sorted(rows)


def blur_pass(image, lines, weights, axis):
    """Replace ``lines`` along ``axis`` by the weighted sum across that axis."""
    low, high, integer = value_range(image.dtype)
    radius = (len(weights) - 1) // 2
    size = image.shape[axis]
    values = image.astype(np.float64)
    out = image.copy()
    for line in lines:
        total = np.zeros_like(np.take(values, line, axis=axis))
        for k, weight in enumerate(weights):
            source = min(max(line + k - radius, 0), size - 1)
            total = total + weight * np.take(values, source, axis=axis)
        if integer:
            total = np.clip(np.rint(total), low, high)
        if axis == 0:
            out[line] = total.astype(image.dtype)
        else:
            out[:, line] = total.astype(image.dtype)
    return out


def blur_weights(sigma):
    radius = math.ceil(3 * sigma)
    gaussian = [exact_exp(-(k * k) / (2.0 * sigma * sigma)) for k in range(-radius, radius + 1)]
    total = 0.0
    for value in gaussian:
        total = total + value
    return [value / total for value in gaussian]


def mix(images, labels, spec, key, window=None):
    """Mix with hardening, window by window, with NumPy slicing."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    count, height, width = images.shape[:3]
    block = spec.block_shape(height, width)
    regions = naive.block_slices(height, width, block)
    row_edges = sorted({rows.start for rows, _ in regions} | {height})
    col_edges = sorted({cols.start for _, cols in regions} | {width})
    out = np.empty_like(images)
    window = window or count
    for window_index, start in enumerate(range(0, count, window)):
        stop = min(start + window, count)
        source = plan(labels[start:stop], len(regions), spec, key, window_index)
        codes, jitter = codes_and_jitter(spec, key, window_index, stop - start, regions)
        for i in range(stop - start):
            image = np.empty_like(images[0])
            for b, (rows, cols) in enumerate(regions):
                block_pixels = orient_block(images[start + source[i][b], rows, cols],
                                            codes[i][b])
                if spec.jitter is not None:
                    block_pixels = jitter_block(block_pixels, *jitter[i][b])
                image[rows, cols] = block_pixels
            if spec.seam_blur > 0:
                weights = blur_weights(spec.seam_blur)
                image = blur_pass(image, band(row_edges, spec.seam_blur), weights, axis=0)
                image = blur_pass(image, band(col_edges, spec.seam_blur), weights, axis=1)
            out[start + i] = image
    return out


# --- tests: every backend equals the oracle bit for bit --------------------------------------


SPECS = [
    pytest.param(MixSpec(block=(8, 8), prob=1.0, orient="flip"), id="flip"),
    pytest.param(MixSpec(block=(8, 8), prob=0.7, orient="d4", donors=3), id="d4"),
    pytest.param(MixSpec(block=(10, 7), prob=1.0, orient="d4", donors=2), id="d4-non-square"),
    pytest.param(MixSpec(block=(8, 8), prob=1.0, jitter=True), id="jitter"),
    pytest.param(MixSpec(block=(8, 8), prob=1.0, jitter=(1.0, 1.0, 1.0)), id="jitter-max"),
    pytest.param(MixSpec(block=(16, 12), prob=1.0, jitter=(0.3, 0.5, 0.7)),
                 id="jitter-level-table"),
    pytest.param(MixSpec(block=(8, 8), prob=1.0, seam_blur=1.0), id="seam-blur-1"),
    pytest.param(MixSpec(block=(9, 6), prob=1.0, seam_blur=2.5), id="seam-blur-2.5"),
    pytest.param(MixSpec(block=(8, 8), orient="d4", jitter=True, seam_blur=1.0, group=5,
                         prob=1.0), id="all-group-5"),
    pytest.param(MixSpec.preset("balanced", block=(11, 11)), id="balanced-ragged"),
    pytest.param(MixSpec.preset("strong", grid=(4, 4)), id="strong"),
    pytest.param(MixSpec(block=(8, 8), orient="flip", group="window", prob=1.0), id="window"),
    pytest.param(MixSpec(block=(8, 8), mode="paper", orient="d4", jitter=True, seam_blur=1.0),
                 id="paper"),
]


@pytest.mark.parametrize("spec", SPECS)
def test_rgb_tiles_equal_oracle(spec, photo_tiles, key):
    images, labels = photo_tiles
    images, labels = images[::4], labels[::4]
    mixed = fastmix.mix_array(images, labels, spec, key, window=40)
    assert np.array_equal(mixed, mix(images, labels, spec, key, window=40))
    assert not np.array_equal(mixed, images)


@pytest.mark.parametrize("dtype", ["uint16", "int8", "int32", "float32", "float64"])
def test_dtypes_equal_oracle(dtype, photo_tiles, key):
    tiles, labels = photo_tiles
    grey = tiles[:48, :, :30].mean(axis=3)
    if dtype.startswith("float"):
        images = (grey / 255.0).astype(dtype)
    else:
        info = np.iinfo(dtype)
        images = (info.min + grey / 255.0 * (float(info.max) - info.min)).astype(dtype)
    for block in ((7, 6), (32, 30)):  # the second takes the per-block level table for 8 bits
        spec = MixSpec(block=block, orient="flip", jitter=(0.3, 0.5, 0.5), seam_blur=1.5,
                       prob=1.0, donors=3)
        mixed = fastmix.mix_array(images, labels[:48], spec, key)
        assert mixed.dtype == images.dtype
        assert np.array_equal(mixed, mix(images, labels[:48], spec, key))
