"""The plain gather against ``np.copyto`` of the same bytes, in the same run (issue 24, part 3).

    python bench/bench_gather.py --block 8x8     # 30,000 x 64x64x3, 8x8 blocks, prob 1
    python bench/bench_gather.py --block 96x24   # 3,000 x 192x192x3, 96x24 blocks, prob 0.5
    python bench/bench_gather.py --block 8x8 --modes permute --images 5000   # quicker

The workloads are the kernel table's (``fastmix.benchmark.core.WORKLOADS``, docs/performance.md):
photo crops, labels 0-9. For each mode and thread count (one thread, then Numba's default),
the runs alternate, one of each case per repeat:

- ``np.copyto`` of the images into a buffer of the same shape (the baseline);
- ``mix_array(..., out=)`` into that buffer (planning included, as the table measures it);
- the kernel alone: the window planned beforehand, then ``Pipeline.mix_window`` (the gather
  only), and planning alone (``Pipeline.plan``);
- the same kernel with every block taken from its own image, in the plan's order: a copy
  that visits the images in the order the gather does (same-label groups, scattered over
  the array), the gather's bound without the scattered sources.

Each figure is the median; ratios divide ``np.copyto``'s median time by the case's. The load
average at the start and end is printed, since the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings
from dataclasses import replace
from functools import partial

import numba
import numpy as np

import fastmix
from fastmix.benchmark.core import WORKLOADS, photographic_images
from fastmix.pipeline import Pipeline


def load() -> str:
    """Return the 1-minute load average (the machine is shared)."""
    return f"{os.getloadavg()[0]:.1f}"


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def workload(block: str) -> tuple[str, int, tuple[int, ...], tuple[int, int], float]:
    """Return the kernel table's workload whose blocks are ``block`` (``8x8``, ``96x24``)."""
    rows, cols = (int(value) for value in block.split("x"))
    for entry in WORKLOADS:
        if entry[3] == (rows, cols):
            return entry
    known = ", ".join("x".join(map(str, entry[3])) for entry in WORKLOADS)
    raise SystemExit(f"no workload with {block} blocks; the kernel table has {known}")


def gather(block: str, modes: list[str], images_count: int | None, repeats: int) -> None:
    """Print one row per mode and thread count: mix_array(out=) and the kernel vs np.copyto."""
    _, count, shape, block_shape, prob = workload(block)
    count = images_count or count
    key = fastmix.Key.from_hex("5a" * 32)
    images = photographic_images(count, shape)
    labels = np.random.default_rng(1).integers(0, 10, count)
    out = np.empty_like(images)
    gigabytes = images.nbytes / 1e9
    threads_before = numba.get_num_threads()
    started = load()
    print(f"gather: {count:,} x {'x'.join(map(str, shape))} uint8, {block} blocks, prob {prob}, "
          f"medians of {repeats} alternating runs, load {started}")
    print("| mode | threads | np.copyto GB/s | mix_array(out=) GB/s | vs np.copyto | "
          "kernel GB/s | kernel vs np.copyto | planning, share of mix_array | "
          "own blocks in the plan's order vs np.copyto |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fastmix.FastmixWarning)
            for mode in modes:
                spec = fastmix.MixSpec(block=block_shape, mode=mode, prob=prob)
                pipeline = Pipeline(images.shape[1:], images.dtype, spec, key)
                plan = pipeline.plan(labels, 0)
                own = np.repeat(np.arange(count, dtype=plan.source.dtype)[:, None],
                                plan.source.shape[1], axis=1)
                cases = {
                    "copy": partial(np.copyto, out, images),
                    "mix_array": partial(fastmix.mix_array, images, labels, spec, key, out=out),
                    "kernel": partial(pipeline.mix_window, images, labels, 0, out, plan),
                    "plan": partial(pipeline.plan, labels, 0),
                    "order": partial(pipeline.mix_window, images, labels, 0, out,
                                     replace(plan, source=own)),
                }
                for threads in sorted({1, threads_before}):
                    numba.set_num_threads(threads)
                    for run in cases.values():
                        run()  # warm-up (JIT compile, page cache)
                    seconds: dict[str, list[float]] = {case: [] for case in cases}
                    for _ in range(repeats):
                        for case, run in cases.items():
                            seconds[case].append(_timed(run))
                    median = {case: statistics.median(values)
                              for case, values in seconds.items()}
                    copy = median["copy"]
                    print(f"| {mode} | {threads} | {gigabytes / copy:.2f} | "
                          f"{gigabytes / median['mix_array']:.2f} | "
                          f"{copy / median['mix_array']:.2f}x | "
                          f"{gigabytes / median['kernel']:.2f} | "
                          f"{copy / median['kernel']:.2f}x | "
                          f"{median['plan'] / median['mix_array']:.0%} | "
                          f"{copy / median['order']:.2f}x |", flush=True)
    finally:
        numba.set_num_threads(threads_before)
    print(f"load at the end {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--block", default="8x8", help="the workload's blocks: 8x8 or 96x24")
    parser.add_argument("--modes", default="permute,paper")
    parser.add_argument("--images", type=int, help="images (default: the workload's)")
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    gather(args.block, args.modes.split(","), args.images, args.repeats)


if __name__ == "__main__":
    main()
