"""Reading an LZ4 store through ``H5ImageDataset`` in order, shuffled, and chunk-shuffled.

    python bench/bench_dataset.py                     # 2048 images of 192x192x3, 3 runs
    python bench/bench_dataset.py --images 1024 --repeats 1

Workload: crops of real photographs (scikit-image samples) resized to 192x192, in an LZ4
store with ingest's chunking (whole images, at most 4 MiB per chunk). One epoch reads every
image once with ``dataset[i]``, in three orders: in order (the baseline, measured in the
same run), a uniformly shuffled order (``DataLoader(shuffle=True)``), and
:class:`fastmix.ChunkShuffleSampler`: by default the images of 8 chunks drawn at random
shuffled together, and with ``chunks=1`` one chunk at a time (images shuffled within it).
Medians of ``--repeats`` epochs; each order gets a fresh dataset, so no cache carries over.
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
from fastmix.images.ingest import chunk_length

SIZE = 192
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
          "immunohistochemistry")


def make_store(path: str, count: int, seed: int = 0) -> int:
    """Return an LZ4 store of ``count`` 192x192 photo crops; returns its chunk length."""
    from PIL import Image
    from skimage import data

    rng = np.random.default_rng(seed)
    photos = [getattr(data, name)() for name in PHOTOS]
    chunk = chunk_length(SIZE * SIZE * 3, count)
    with h5py.File(path, "w") as file:
        images = file.create_dataset("images", (count, SIZE, SIZE, 3), np.uint8,
                                     chunks=(chunk, SIZE, SIZE, 3), **hdf5plugin.LZ4())
        for number in range(count):
            photo = photos[number % len(photos)]
            side = int(rng.integers(120, min(photo.shape[:2]) + 1))
            top = int(rng.integers(0, photo.shape[0] - side + 1))
            left = int(rng.integers(0, photo.shape[1] - side + 1))
            crop = Image.fromarray(photo[top:top + side, left:left + side])
            images[number] = np.asarray(crop.resize((SIZE, SIZE), Image.Resampling.BILINEAR))
        file["labels"] = np.arange(count) % len(photos)
    return chunk


def epoch_seconds(path: str, order) -> tuple[float, float]:
    """Wall and CPU seconds to read every image of ``order`` through a fresh dataset."""
    dataset = fastmix.H5ImageDataset(path)
    started, cpu = time.perf_counter(), time.process_time()
    for index in order:
        dataset[index]
    seconds = time.perf_counter() - started, time.process_time() - cpu
    dataset.close()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="fastmix-bench-dataset-")
    load_before = os.getloadavg()[0]
    try:
        path = os.path.join(work, "store.h5")
        chunk = make_store(path, args.images)
        sampler = fastmix.ChunkShuffleSampler(args.images, chunk, seed=0)
        one_chunk = fastmix.ChunkShuffleSampler(args.images, chunk, seed=0, chunks=1)
        orders = {
            "in order": lambda epoch: range(args.images),
            "shuffled (shuffle=True)":
                lambda epoch: np.random.default_rng(epoch).permutation(args.images).tolist(),
            "ChunkShuffleSampler": lambda epoch: list(sampler),
            "ChunkShuffleSampler chunks=1": lambda epoch: list(one_chunk),
        }
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in orders}
        for epoch in range(args.repeats):
            for name, order in orders.items():
                times[name].append(epoch_seconds(path, order(epoch)))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    base = statistics.median(wall for wall, _ in times["in order"])
    print(f"{args.images} images of {SIZE}x{SIZE}x3, LZ4, chunks of {chunk} images, median of "
          f"{args.repeats} epoch(s)")
    print(f"{'order':<28} {'images/s':>9} {'CPU ms/image':>13}  time vs in order")
    for name, values in times.items():
        wall = statistics.median(w for w, _ in values)
        cpu = statistics.median(c for _, c in values)
        print(f"{name:<28} {args.images / wall:>9,.0f} {1000 * cpu / args.images:>13.2f}  "
              f"{wall / base:.1f}x")
    print(f"load average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
