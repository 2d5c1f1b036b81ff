"""In-place mixing against new-file mode on the same store: the journal's overhead.

Each round copies a fresh store, mixes it into a new file, then mixes the copy in place
(undo journal, fsyncs, per-chunk fsyncs for compressed stores); ``sync`` runs before each
timed run so that neither pays for the other's writes. The figure is the median ratio of
in-place time over new-file time, measured in the same run; the target is <= 1.3.

    .venv/bin/python bench/bench_inplace.py [--images 16384] [--rounds 5] [--memory 64MiB]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time

import h5py
import hdf5plugin
import numpy as np

import fastmix
from fastmix.store import mix_store


def make_store(path: str, count: int, compressed: bool) -> None:
    """Photo-like 64x64x3 images in chunks of 256 (3 MiB), optionally LZ4."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (256, 64, 64, 3), dtype=np.uint8)
    base[:, :, :32] //= 8
    filters = dict(hdf5plugin.LZ4()) if compressed else {}
    with h5py.File(path, "w") as file:
        images = file.create_dataset("images", (count, 64, 64, 3), np.uint8,
                                     chunks=(256, 64, 64, 3), **filters)
        for start in range(0, count, 256):
            images[start:start + 256] = np.roll(base, start // 256, axis=0)
        file.create_dataset("labels", data=rng.integers(0, 10, count))


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def measure(folder: str, count: int, compressed: bool, rounds: int, memory: str) -> dict:
    spec = fastmix.MixSpec(grid=(2, 8))
    key = fastmix.Key.generate()
    source = os.path.join(folder, "source.h5")
    make_store(source, count, compressed)
    ratios, new_times, in_place_times = [], [], []
    copy = os.path.join(folder, "copy.h5")
    output = os.path.join(folder, "output.h5")
    for _ in range(rounds):
        shutil.copyfile(source, copy)
        # Write the copy out first: otherwise the in-place run's fsync pays for the copy.
        os.sync()
        new_file = timed(lambda: mix_store(copy, output, spec=spec, key=key, memory=memory,
                                           progress=False))
        os.unlink(output)
        os.sync()
        in_place = timed(lambda: mix_store(copy, spec=spec, key=key, memory=memory,
                                           in_place=True, progress=False))
        os.unlink(copy)
        new_times.append(new_file)
        in_place_times.append(in_place)
        ratios.append(in_place / new_file)
    return {"store": "lz4" if compressed else "raw", "images": count,
            "megabytes": count * 64 * 64 * 3 / 1e6, "new_file_s": statistics.median(new_times),
            "in_place_s": statistics.median(in_place_times),
            "ratio": statistics.median(ratios)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16384)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory", default="64MiB")
    parser.add_argument("--folder", default=None, help="where the stores go (default: a "
                        "temporary folder on the default temp filesystem)")
    args = parser.parse_args()
    if args.folder is not None:
        os.makedirs(args.folder, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
        for compressed in (False, True):
            result = measure(folder, args.images, compressed, args.rounds, args.memory)
            print(f"{result['store']}: {result['images']} images ({result['megabytes']:.0f} MB), "
                  f"new file {result['new_file_s']:.2f} s, in place {result['in_place_s']:.2f} s,"
                  f" ratio in-place/new-file {result['ratio']:.2f} (median of {args.rounds}; "
                  "target <= 1.3)")


if __name__ == "__main__":
    main()
