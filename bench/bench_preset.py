"""The default preset's targets (issue 10, part 6), as ratios against baselines of the same run.

    python bench/bench_preset.py core     # balanced mix_array(out=) vs plain gather, np.copyto
    python bench/bench_preset.py core --block 16x16,24x24,grid8x8   # other geometries
    python bench/bench_preset.py store    # default-preset mix_store vs fsynced h5py copy
    python bench/bench_preset.py store --size 192 --filters none,lz4 --formats 1,2   # issue 24
    python bench/bench_preset.py store --preset fast --block grid12x12   # the plain gather
    python bench/bench_preset.py steps    # where the default preset's time goes, one thread
    python bench/bench_preset.py core --images 5000 --repeats 3   # quicker

core
    20,000 x 64x64x3 uint8 photo crops, into an existing buffer: ``mix_array`` with
    ``MixSpec.preset("balanced")`` against the plain gather (``preset("fast")``, the same
    blocks) and ``np.copyto``, for each geometry of ``--block`` (default ``16x16,grid12x12``:
    the issue's blocks, and the balanced preset's own 12x12 grid, 6x6 blocks here). The runs
    alternate, one of each case per repeat. Targets: at least 0.5x the plain gather and 0.25x
    ``np.copyto``.
store
    40,000 x 64x64x3 stores (chunks of 256) raw, LZ4 and gzip-1, or with ``--size 192``
    4,500 x 192x192x3 (chunks of 28, 3 MiB like those): ``mix_store`` with the
    default preset (``MixSpec.preset(DEFAULT_PRESET)``, what ``fastmix mix`` uses) against a
    plain h5py chunk-by-chunk copy, and against the same copy followed by ``fsync`` (the
    durability fastmix gives its own output). Target: at least 1.0x the fsynced copy. The
    last columns give mix_store's CPU time (all threads) and the ratio it could reach at
    best if that work were spread evenly over every core: the fsynced copy's time over
    (CPU time / cores).
    ``--preset fast`` runs the plain gather on the same store path, for comparison.
steps
    Where the hardened kernel's time goes, on one thread: CPU microseconds per image of the
    kernel (the window planned beforehand, as a store's reader thread does) for the plain
    gather of ``fast``, the plain
    gather at prob 1 in whole-label groups (the default preset without hardening), then
    that with each hardening step alone and with all of them (the default preset), for
    each geometry of ``--block`` (default ``grid12x12``). ``--images 400`` keeps the images
    in cache (the compute alone); the default 8,000 do not.

Medians of alternating runs; the load average at the start and end is printed, since the
machine is shared. The core table also gives the ratios in CPU time (all threads), which a
loaded machine distorts less than wall time.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
import warnings
from functools import partial

import numba
import numpy as np

import fastmix
from fastmix.benchmark.core import photographic_images
from fastmix.benchmark.store import plain_copy, write_photo_store
from fastmix.pipeline import Pipeline
from fastmix.spec import DEFAULT_PRESET


def load() -> str:
    """Return the 1-minute load average (the machine is shared)."""
    return f"{os.getloadavg()[0]:.1f}"


def geometry(text: str) -> dict:
    """``16x16`` -> ``{"block": (16, 16)}``; ``grid2x8`` -> ``{"grid": (2, 8)}``."""
    name = "grid" if text.startswith("grid") else "block"
    rows, cols = text.removeprefix("grid").split("x")
    return {name: (int(rows), int(cols))}


def core(images_count: int, repeats: int, geometries: list[str], formats: list[int],
         size: int = 64) -> None:
    """Print the core table: balanced and plain gathers into a buffer, and np.copyto."""
    key = fastmix.Key.from_hex("5a" * 32)
    images = photographic_images(images_count, (size, size, 3))
    labels = np.random.default_rng(1).integers(0, 10, images_count)
    out = np.empty_like(images)
    gigabytes = images.nbytes / 1e9
    cases = {"np.copyto": partial(np.copyto, out, images)}
    for text in geometries:
        cases[f"fast {text}"] = partial(fastmix.mix_array, images, labels,
                                        fastmix.MixSpec.preset("fast", **geometry(text)), key,
                                        out=out)
        for number in formats:
            spec = fastmix.MixSpec.preset("balanced", **geometry(text), hardening_format=number)
            cases[f"balanced {text} f{number}"] = partial(fastmix.mix_array, images, labels,
                                                          spec, key, out=out)
    seconds: dict[str, list[float]] = {name: [] for name in cases}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in cases}
    started = load()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.FastmixWarning)
        for run in cases.values():
            run()  # warm-up (JIT compile, page cache)
        for _ in range(repeats):
            for name, run in cases.items():
                cpu_started = time.process_time()
                seconds[name].append(_timed(run))
                cpu_seconds[name].append(time.process_time() - cpu_started)
    median = {name: statistics.median(values) for name, values in seconds.items()}
    cpu = {name: statistics.median(values) for name, values in cpu_seconds.items()}
    print(f"core: {images_count:,} x {size}x{size}x3 uint8, medians of {repeats} alternating "
          f"runs, {numba.get_num_threads()} threads, load {started} -> {load()}")
    print("| blocks | hardening format | balanced GB/s | plain gather GB/s | balanced vs plain "
          "(target 0.5x) | np.copyto GB/s | balanced vs np.copyto (target 0.25x) | same, in "
          "CPU time |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    copy = median["np.copyto"]
    for text in geometries:
        for number in formats:
            name = f"balanced {text} f{number}"
            balanced, plain = median[name], median[f"fast {text}"]
            print(f"| {text} | {number} | {gigabytes / balanced:.2f} | {gigabytes / plain:.2f} | "
                  f"{plain / balanced:.2f}x | {gigabytes / copy:.2f} | {copy / balanced:.2f}x | "
                  f"{cpu[f'fast {text}'] / cpu[name]:.2f}x, "
                  f"{cpu['np.copyto'] / cpu[name]:.2f}x |")
    print("CPU time: the process's, all threads; on a shared machine it counts the work, "
          "not the waiting.")


def steps(images_count: int, repeats: int, geometries: list[str], formats: list[int]) -> None:
    """Print CPU microseconds per image, one thread, for each hardening step alone."""
    key = fastmix.Key.from_hex("5a" * 32)
    images = photographic_images(images_count, (64, 64, 3))
    labels = np.random.default_rng(1).integers(0, 10, images_count)
    out = np.empty_like(images)
    hardened = fastmix.MixSpec.preset(DEFAULT_PRESET)
    alone = {"plain, prob 1, whole label": {}, "+ orientation": {"orient": hardened.orient},
             "+ jitter": {"jitter": hardened.jitter},
             "+ seam blur": {"seam_blur": hardened.seam_blur},
             f"all ({DEFAULT_PRESET})": {"orient": hardened.orient, "jitter": hardened.jitter,
                                         "seam_blur": hardened.seam_blur}}
    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    started = load()
    try:
        rows = {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fastmix.FastmixWarning)
            for text, number in ((text, number) for text in geometries for number in formats):
                cases = {"fast (plain gather)": fastmix.MixSpec.preset("fast", **geometry(text))}
                for name, options in alone.items():
                    cases[name] = fastmix.MixSpec(mode="permute", prob=1.0, group="window",
                                                  **geometry(text), **options,
                                                  hardening_format=number)
                runs = {}
                for name, spec in cases.items():
                    pipeline = Pipeline(images.shape[1:], images.dtype, spec, key)
                    runs[name] = partial(pipeline.mix_window, images, labels, 0, out,
                                         pipeline.plan(labels, 0))
                for run in runs.values():
                    run()  # warm-up (JIT compile, page cache)
                cpu_seconds: dict[str, list[float]] = {name: [] for name in runs}
                for _ in range(repeats):
                    for name, run in runs.items():
                        cpu_started = time.process_time()
                        run()
                        cpu_seconds[name].append(time.process_time() - cpu_started)
                rows[f"{text} | {number}"] = {name: statistics.median(values) / images_count * 1e6
                              for name, values in cpu_seconds.items()}
    finally:
        numba.set_num_threads(threads)
    names = list(next(iter(rows.values())))
    print(f"steps: {images_count:,} x 64x64x3 uint8, CPU us per image, one thread, medians "
          f"of {repeats} alternating runs, load {started} -> {load()}")
    print("| blocks | hardening format | " + " | ".join(names) + " |")
    print("| --- | ---: |" + " ---: |" * len(names))
    for text, figures in rows.items():
        print(f"| {text} | " + " | ".join(f"{figures[name]:.1f}" for name in names) + " |")


def fsynced_copy(source: str, target: str) -> None:
    """Return the plain copy, then fsync of its file (what fastmix does to its own output)."""
    plain_copy(source, target)
    descriptor = os.open(target, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _cpu_seconds() -> float:
    """Return the CPU time of this process so far, all threads, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def store(images_count: int, repeats: int, memory: str, filters: list[str],
          directory: str | None, overrides: dict, preset: str = DEFAULT_PRESET,
          formats: list[int] | None = None, size: int = 64) -> None:
    """Print the store table: a preset's mix_store against the plain and fsynced copies.

    ``formats`` lists the hardening formats timed in the same run (default: the spec's own);
    the CPU columns are the last one's.
    """
    key = fastmix.Key.from_hex("5a" * 32)
    spec = fastmix.MixSpec.preset(preset, **overrides)
    specs = {number: spec.with_hardening_format(number)
             for number in (formats or [spec.hardening_format])}
    shape = (size, size, 3)
    megabytes = images_count * size * size * 3 / 1e6
    blocks = "x".join(map(str, spec.block_shape(size, size)))
    print(f"store: {images_count:,} x {size}x{size}x3 uint8, 3 MiB chunks, preset {preset!r} "
          f"({blocks} blocks), --memory {memory}, medians of {repeats}, load {load()}")
    cores = os.cpu_count() or 1
    mixes = [f"mix_store, format {number}" for number in specs]
    print("| filter | plain copy | fsynced copy | " + " | ".join(
        f"{name} | vs fsynced copy | vs plain copy" for name in mixes)
        + f" | mix_store CPU s | ceiling on {cores} cores |")
    print("| --- | ---: | ---: | " + " | ".join(["---: | ---: | ---:"] * len(mixes))
          + " | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="fastmix-preset-", dir=directory) as folder, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.FastmixWarning)
        source, target = os.path.join(folder, "in.h5"), os.path.join(folder, "out.h5")
        runs = {"copy": partial(plain_copy, source, target),
                "fsync": partial(fsynced_copy, source, target)}
        for name, one in zip(mixes, specs.values()):
            runs[name] = partial(fastmix.mix_store, source, target, spec=one, key=key,
                                 memory=memory, progress=False, overwrite=True)
        for filter_name in filters:
            write_photo_store(source, images_count, filter_name, shape=shape)
            for name in mixes:
                runs[name]()  # warm-up (JIT, page cache)
            seconds: dict[str, list[float]] = {name: [] for name in runs}
            mix_cpu = []
            for _ in range(repeats):
                for name, run in runs.items():
                    cpu_started = _cpu_seconds()
                    seconds[name].append(_timed(run))
                    if name == mixes[-1]:
                        mix_cpu.append(_cpu_seconds() - cpu_started)
                    os.remove(target)
            rate = {name: megabytes / statistics.median(values)
                    for name, values in seconds.items()}
            cpu = statistics.median(mix_cpu)
            ceiling = statistics.median(seconds["fsync"]) / (cpu / cores)
            cells = " | ".join(f"{rate[name]:,.0f} MB/s | {rate[name] / rate['fsync']:.2f}x | "
                               f"{rate[name] / rate['copy']:.2f}x" for name in mixes)
            print(f"| {filter_name} | {rate['copy']:,.0f} MB/s | {rate['fsync']:,.0f} MB/s | "
                  f"{cells} | {cpu:.2f} | {ceiling:.2f}x |", flush=True)
            os.remove(source)
    print(f"load at the end {load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", choices=["core", "store", "steps"])
    parser.add_argument("--images", type=int,
                        help="images (core 20,000; store 40,000, or 4,500 at --size 192; "
                             "steps 8,000)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--memory", default="256MiB", help="store: mix_store's budget")
    parser.add_argument("--filters", default="none,lz4,gzip-1")
    parser.add_argument("--dir", default=None, help="store: where the temporary stores go")
    parser.add_argument("--block", default=None,
                        help="core, steps: geometries, comma-separated (16x16, grid8x8, ...; "
                             "default 16x16,grid12x12; steps grid12x12); store: one geometry "
                             "(default: the preset's own)")
    parser.add_argument("--preset", default=DEFAULT_PRESET,
                        help=f"store: the preset mix_store runs (default {DEFAULT_PRESET}; "
                             "fast: the plain gather, the same store path)")
    parser.add_argument("--formats", default=None,
                        help="core, steps: the hardening formats compared in the same run "
                             "(default 1,2); store: the formats timed in the same run (default: "
                             "the spec's own)")
    parser.add_argument("--size", type=int, default=64,
                        help="core, store: the images' side in pixels (64; 192 for the issue's "
                             "16x16 blocks on 192x192x3)")
    args = parser.parse_args()
    formats = [int(number) for number in args.formats.split(",")] if args.formats else None
    if args.suite == "core":
        core(args.images or 20_000, args.repeats, (args.block or "16x16,grid12x12").split(","),
             formats or [1, 2], args.size)
    elif args.suite == "steps":
        steps(args.images or 8_000, args.repeats, (args.block or "grid12x12").split(","),
              formats or [1, 2])
    else:
        store(args.images or (40_000 if args.size == 64 else 4_500), args.repeats, args.memory,
              args.filters.split(","), args.dir, geometry(args.block) if args.block else {},
              args.preset, formats, args.size)


if __name__ == "__main__":
    main()
