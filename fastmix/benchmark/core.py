"""Core kernel benchmark: ``mix_array`` against copies of the same bytes, in the same run.

Used by ``bench/run.py`` (prints the table in docs/performance.md) and the pytest-benchmark suite.
"""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from functools import partial

import numpy as np

import fastmix
from fastmix.errors import BadInputError
from fastmix.presets import DEFAULT_PRESET
from fastmix.samples import photos as sample_photos

WORKLOADS = [
    # name, count, image shape, block, prob
    ("3,000 x 192x192x3, 96x24 blocks", 3000, (192, 192, 3), (96, 24), 0.5),
    ("30,000 x 64x64x3, 8x8 blocks", 30000, (64, 64, 3), (8, 8), 1.0),
]


def photographic_images(count: int, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """``count`` crops of real photographs (scikit-image samples), or smooth noise without it."""
    rng = np.random.default_rng(seed)
    try:
        photos = sample_photos()
    except BadInputError:  # pragma: no cover - audit extra missing
        photos = [rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)]
    height, width = shape[:2]
    out = np.empty((count, *shape), dtype=np.uint8)
    for i in range(count):
        photo = photos[i % len(photos)]
        top = rng.integers(0, photo.shape[0] - height + 1)
        left = rng.integers(0, photo.shape[1] - width + 1)
        out[i] = photo[top:top + height, left:left + width, :shape[2]]
    return out


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call (JIT compile excluded)."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def numpy_gather(images, labels, spec, key) -> np.ndarray:
    """Return a straightforward NumPy fancy-index implementation of the same mix (one window)."""
    from fastmix.kernels.steps import block_edges
    from fastmix.plan import encode_labels, plan_window

    height, width = images.shape[1:3]
    rows, cols = block_edges(height, width, spec.block_shape(height, width))
    plan = plan_window(encode_labels(labels), (rows, cols), spec, key, 0)
    out = np.empty_like(images)
    block = 0
    for top, bottom in itertools.pairwise(rows):
        for left, right in itertools.pairwise(cols):
            out[:, top:bottom, left:right] = images[plan.source[:, block], top:bottom, left:right]
            block += 1
    return out


def run_core_benchmark(scale: float = 1.0, repeats: int = 5, numpy_baseline: bool = True
                       ) -> list[dict]:
    """Throughput of ``mix_array`` and its baselines for each workload and mode.

    Returns one row per (workload, mode) with GB/s figures and ratios: permute and paper
    mode on the workload's blocks, then the default preset (what ``fastmix mix`` runs) with
    its own geometry and hardening, which the NumPy baseline does not compute (``n/a``).
    """
    key = fastmix.Key.from_hex("5a" * 32)
    rows = []
    for name, count, shape, block, prob in WORKLOADS:
        count = max(int(count * scale), 16)
        images = photographic_images(count, shape)
        labels = np.random.default_rng(1).integers(0, 10, count)
        buffer = np.empty_like(images)
        gigabytes = images.nbytes / 1e9
        copy = median_seconds(images.copy, repeats)
        copy_into = median_seconds(partial(np.copyto, buffer, images), repeats)
        default_preset = fastmix.MixSpec.preset(DEFAULT_PRESET)
        for mode in ("permute", "paper", DEFAULT_PRESET):
            if mode == DEFAULT_PRESET:
                spec = default_preset
                blocks = "x".join(map(str, spec.block_shape(*shape[:2])))
                mode = f"{DEFAULT_PRESET} (default preset, {blocks} blocks)"
            else:
                spec = fastmix.MixSpec(block=block, prob=prob, mode=mode)
            mix = partial(fastmix.mix_array, images, labels, spec, key)
            allocate = median_seconds(mix, repeats)
            into = median_seconds(partial(mix, out=buffer), repeats)
            row = {
                "workload": name if scale == 1.0 else f"{name} (x{scale:g})",
                "mode": mode,
                "mix_array GB/s": gigabytes / allocate,
                "x.copy() GB/s": gigabytes / copy,
                "vs x.copy()": copy / allocate,
                "mix_array(out=) GB/s": gigabytes / into,
                "np.copyto GB/s": gigabytes / copy_into,
                "vs np.copyto": copy_into / into,
            }
            if numpy_baseline and spec.hardened:
                row["NumPy fancy-index GB/s"] = row["vs NumPy"] = "n/a"
            elif numpy_baseline:
                fancy = median_seconds(partial(numpy_gather, images, labels, spec, key),
                                       max(1, repeats // 2))
                row["NumPy fancy-index GB/s"] = gigabytes / fancy
                row["vs NumPy"] = fancy / allocate
            rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """Return a Markdown table of benchmark rows."""
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for row in rows:
        cells = [f"{value:.2f}" if isinstance(value, float) else str(value)
                 for value in row.values()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
