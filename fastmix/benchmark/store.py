"""Store benchmark: ``mix_store`` against a plain h5py chunk-by-chunk copy, in the same run.

The store holds crops of real photographs (scikit-image samples), 64x64x3 uint8, chunks of
256 images. For each filter, copy and mix runs alternate on the same warm source file and
the medians are compared (docs/format.md section 7: ratios, never absolute times alone).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
import warnings

import numpy as np

FILTERS = ("none", "lz4", "gzip-1")
IMAGE_SHAPE = (64, 64, 3)
CHUNK_IMAGES = 256


def filter_options(name: str) -> dict:
    """h5py ``create_dataset`` keyword arguments for a filter name."""
    import hdf5plugin

    options = {
        "none": {},
        "lz4": dict(hdf5plugin.LZ4()),
        "gzip-1": {"compression": "gzip", "compression_opts": 1},
        "gzip": {"compression": "gzip", "compression_opts": 4},
        "zstd": dict(hdf5plugin.Zstd()),
        "blosc2": dict(hdf5plugin.Blosc2()),
        "lzf": {"compression": "lzf"},
    }
    if name not in options:
        raise ValueError(f"unknown filter {name!r}; choose from {', '.join(options)}")
    return options[name]


def write_photo_store(path: str, images: int, filter_name: str, *, seed: int = 0,
                      chunk: int | None = None, batch: int = 16384,
                      shape: tuple[int, int, int] = IMAGE_SHAPE) -> None:
    """Write a store of ``images`` photographic crops of ``shape`` (64x64x3) with 10 labels.

    Chunks hold ``chunk`` images; by default as many as make 3 MiB, the size of 256 images of
    64x64x3 (28 of 192x192x3).
    """
    import h5py

    from fastmix.benchmark.core import photographic_images

    image_bytes = int(np.prod(shape))
    if chunk is None:
        chunk = max(1, CHUNK_IMAGES * int(np.prod(IMAGE_SHAPE)) // image_bytes)
    batch = max(1, min(batch, (256 << 20) // image_bytes))
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as file:
        dataset = file.create_dataset("images", shape=(images, *shape), dtype=np.uint8,
                                      chunks=(min(chunk, images), *shape),
                                      **filter_options(filter_name))
        for start in range(0, images, batch):
            stop = min(start + batch, images)
            dataset[start:stop] = photographic_images(stop - start, shape, seed=seed + start)
        file["labels"] = rng.integers(0, 10, images)


def plain_copy(source: str, destination: str, images: str = "images") -> None:
    """Copy like the baseline: h5py chunk by chunk, with the same creation properties."""
    import h5py
    import hdf5plugin  # noqa: F401 - registers the filters

    with h5py.File(source, "r") as reader, h5py.File(destination, "w") as writer:
        dataset = reader[images]
        created = h5py.h5d.create(writer.id, images.encode(), dataset.id.get_type(),
                                  dataset.id.get_space(), dcpl=dataset.id.get_create_plist())
        target = h5py.Dataset(created)
        step = dataset.chunks[0] if dataset.chunks else CHUNK_IMAGES
        for start in range(0, dataset.shape[0], step):
            target[start:start + step] = dataset[start:start + step]
        reader.copy(reader["labels"], writer, "labels")


def _timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def run_store_benchmark(images: int = 40_000, filters: tuple[str, ...] = FILTERS,
                        repeats: int = 3, memory: str = "1GiB",
                        directory: str | None = None) -> list[dict]:
    """Measure ``mix_store`` against the plain copy for each filter.

    Parameters
    ----------
    images : int
        Images in the generated store.
    filters : tuple of str
        Filter names (see :func:`filter_options`).
    repeats : int
        Timed runs of each (the median is reported); copy and mix alternate.
    memory : str
        ``mix_store`` memory budget.
    directory : str, optional
        Where the temporary stores go (default: the system temporary folder).

    Returns
    -------
    list of dict
        One row per filter: ``filter``, ``images``, ``megabytes``, ``copy_mb_s``,
        ``mix_mb_s``, ``ratio`` (mix throughput / copy throughput), ``io_path``, and the
        raw ``copy_seconds`` / ``mix_seconds`` lists.
    """
    import fastmix

    with warnings.catch_warnings():
        # Small windows leave an image or two without a partner; irrelevant to throughput.
        warnings.simplefilter("ignore", fastmix.FastmixWarning)
        return _run(images, filters, repeats, memory, directory)


def _run(images: int, filters: tuple[str, ...], repeats: int, memory: str,
         directory: str | None) -> list[dict]:
    import fastmix

    key = fastmix.Key.generate()
    spec = fastmix.MixSpec()  # the defaults: permute, 2x8 grid, 10 donors, prob 0.5
    rows = []
    with tempfile.TemporaryDirectory(prefix="fastmix-bench-", dir=directory) as folder:
        source = os.path.join(folder, "source.h5")
        target = os.path.join(folder, "target.h5")
        for filter_name in filters:
            write_photo_store(source, images, filter_name)
            megabytes = images * int(np.prod(IMAGE_SHAPE)) / 1e6
            report = fastmix.mix_store(source, target, spec=spec, key=key, memory=memory,
                                       progress=False, overwrite=True)  # warm-up (JIT)
            copy_seconds, mix_seconds = [], []
            for _ in range(repeats):
                copy_seconds.append(_timed(lambda: plain_copy(source, target)))
                os.remove(target)
                mix_seconds.append(_timed(lambda: fastmix.mix_store(
                    source, target, spec=spec, key=key, memory=memory, progress=False,
                    overwrite=True)))
                os.remove(target)
            copy_rate = megabytes / statistics.median(copy_seconds)
            mix_rate = megabytes / statistics.median(mix_seconds)
            rows.append({"filter": filter_name, "images": images, "megabytes": megabytes,
                         "copy_mb_s": copy_rate, "mix_mb_s": mix_rate,
                         "ratio": mix_rate / copy_rate, "io_path": report.io_path,
                         "window": report.window, "copy_seconds": copy_seconds,
                         "mix_seconds": mix_seconds})
            os.remove(source)
    return rows


def format_store_table(rows: list[dict]) -> str:
    """Return the table of docs/performance.md (markdown)."""
    lines = ["| filter | images | plain h5py copy | mix_store | ratio |",
             "| --- | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(f"| {row['filter']} | {row['images']:,} | {row['copy_mb_s']:,.0f} MB/s | "
                     f"{row['mix_mb_s']:,.0f} MB/s | {row['ratio']:.2f}x |")
    return "\n".join(lines)
