"""Image folders in and out: fastmix ``ingest`` / ``export`` against plain loops, same files.

    python bench/bench_ingest.py                 # 3000 JPEG files of 192x192, 3 runs
    python bench/bench_ingest.py --files 600 --repeats 1
    python bench/bench_ingest.py --formats jpeg  # skip the (slow, zlib-bound) PNG figures

Workload: real photographs (scikit-image samples) cut into random crops, resized to 192x192
and saved as JPEG (quality 90) in one folder per photograph, in a temporary folder.

Baselines, measured in the same run on the same files:

* ingest: a plain loop that reads each file with imageio and writes it into the HDF5 dataset
  one image at a time (same chunking, no compression);
* export: a plain loop that reads one image at a time from the store and writes it with
  imageio, with the same PNG (or JPEG) settings as fastmix;
* end to end: folder -> ``ingest`` -> ``mix_store`` (paper mode, the paper's 96x24 blocks)
  -> ``export``, decode and encode included, with the defaults (threads, uncompressed
  store), against the prototype's reference figure of 86 images/s on this machine
  (docs/format.md section 1; JPEG in and out). Each stage's share of the CPU is printed too.

fastmix's ingest and export are measured with threads and with worker processes.

Every figure is the median of ``--repeats`` runs. The machine is shared: read the ratios.
CPU ms/image (this process, its threads and its worker processes) depends less on the load
than images/s does; ``CPUs / (CPU ms/image)`` bounds what an idle machine would reach. The
kernel's share of it (page cache, file creation) is printed apart: it swings most with the
shared disk's state.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import tempfile
import time

import h5py
import imageio.v3 as iio
import numpy as np

import fastmix
from fastmix.images import jpeg
from fastmix.images.encode import jpeg_options, png_options
from fastmix.images.export import export_store
from fastmix.images.ingest import chunk_length, ingest_folder

PROTOTYPE_IMAGES_PER_SECOND = 86.0
SIZE = 192
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field",
          "immunohistochemistry")


def make_jpegs(folder: str, count: int, seed: int = 0) -> list[str]:
    """``count`` 192x192 JPEG crops of real photographs, one class folder per photograph."""
    from PIL import Image
    from skimage import data

    generator = np.random.default_rng(seed)
    photos = [getattr(data, name)() for name in PHOTOS]
    paths = []
    for number in range(count):
        label = number % len(photos)
        photo = photos[label]
        side = int(generator.integers(120, min(photo.shape[:2]) + 1))
        top = int(generator.integers(0, photo.shape[0] - side + 1))
        left = int(generator.integers(0, photo.shape[1] - side + 1))
        crop = Image.fromarray(photo[top:top + side, left:left + side])
        pixels = np.asarray(crop.resize((SIZE, SIZE), Image.Resampling.LANCZOS))
        os.makedirs(os.path.join(folder, PHOTOS[label]), exist_ok=True)
        path = os.path.join(folder, PHOTOS[label], f"{number:06d}.jpg")
        iio.imwrite(path, pixels, quality=90)
        paths.append(path)
    return sorted(paths)


def plain_ingest(paths: list[str], labels: list[int], store: str) -> None:
    """Ingest like the baseline: imageio reads each file, h5py writes it, image by image."""
    chunk = chunk_length(SIZE * SIZE * 3, len(paths))
    with h5py.File(store, "w") as file:
        images = file.create_dataset("images", (len(paths), SIZE, SIZE, 3), np.uint8,
                                     chunks=(chunk, SIZE, SIZE, 3))
        for index, path in enumerate(paths):
            images[index] = iio.imread(path)
        file.create_dataset("labels", data=np.asarray(labels, np.int64))


def plain_export(store: str, folder: str, options: dict) -> None:
    """Export like the baseline: h5py reads each image, imageio writes it, image by image."""
    with h5py.File(store, "r") as file:
        images, labels = file["images"], file["labels"][()]
        for value in np.unique(labels):
            os.makedirs(os.path.join(folder, str(value)), exist_ok=True)
        for index in range(len(images)):
            iio.imwrite(os.path.join(folder, str(labels[index]),
                                     f"{index:06d}{options['extension']}"),
                        images[index], plugin="pillow", **options)


def cpu_seconds() -> tuple[float, float]:
    """CPU time (all, kernel) of this process (all threads) and its finished workers."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    kernel = own.ru_stime + children.ru_stime
    return own.ru_utime + children.ru_utime + kernel, kernel


def timed(function, *arguments, **keywords) -> tuple[float, float, float]:
    """Wall, CPU and kernel CPU seconds of one call."""
    started, (cpu, kernel) = time.perf_counter(), cpu_seconds()
    function(*arguments, **keywords)
    cpu_after, kernel_after = cpu_seconds()
    return time.perf_counter() - started, cpu_after - cpu, kernel_after - kernel


def fresh(path: str) -> str:
    if os.path.isdir(path):
        shutil.rmtree(path)
    elif os.path.exists(path):
        os.remove(path)
    return path


def run(files: int, repeats: int, work: str, formats: tuple[str, ...]) -> list[tuple]:
    folder = os.path.join(work, "jpegs")
    paths = make_jpegs(folder, files)
    class_of = {name: label for label, name in enumerate(sorted(PHOTOS))}
    labels = [class_of[os.path.basename(os.path.dirname(path))] for path in paths]
    key = fastmix.Key.generate()
    spec = fastmix.MixSpec(block=(96, 24), donors=10, prob=0.5, mode="paper")
    options = {"png": png_options(), "jpeg": jpeg_options()}
    store = os.path.join(work, "source.h5")
    mixed = os.path.join(work, "mixed.h5")
    outputs = iter(range(1_000_000))

    def new_folder() -> str:
        # A new folder for every export, all deleted at the end: deleting thousands of files
        # just before creating as many made ext4 scan its recently deleted inodes on every
        # create (0.2-0.7 ms of kernel time per file here, in recently_deleted()).
        return os.path.join(work, f"out-{next(outputs)}")

    times: dict[str, list[tuple[float, float, float]]] = {}

    def record(name: str, seconds: tuple[float, float, float]) -> tuple[float, float, float]:
        times.setdefault(name, []).append(seconds)
        return seconds

    def end_to_end(image_format: str) -> None:
        # each stage with the defaults a user gets (threads, uncompressed store)
        name = f"end to end, {image_format} out"
        stages = [
            record(f"{name}: ingest", timed(ingest_folder, folder, fresh(store),
                                            size=(SIZE, SIZE), progress=False)),
            record(f"{name}: mix", timed(fastmix.mix_store, store, fresh(mixed), spec=spec,
                                         key=key, progress=False)),
            record(f"{name}: export", timed(export_store, mixed, new_folder(), progress=False,
                                            image_format=image_format)),
        ]
        record(name, tuple(sum(stage[field] for stage in stages) for field in range(3)))

    # load the compiled mixing kernels once (Numba's cache), as any run after the first does
    ingest_folder(folder, fresh(store), size=(SIZE, SIZE), progress=False)
    fastmix.mix_store(store, fresh(mixed), spec=spec, key=key, progress=False)
    for _ in range(repeats):
        record("plain ingest", timed(plain_ingest, paths, labels, fresh(store)))
        for mode, processes in (("threads", False), ("processes", True)):
            record(f"fastmix ingest, {mode}",
                   timed(ingest_folder, folder, fresh(store), size=(SIZE, SIZE),
                         progress=False, processes=processes))
        for image_format in formats:
            record(f"plain export {image_format}",
                   timed(plain_export, store, new_folder(), options[image_format]))
            for mode, processes in (("threads", False), ("processes", True)):
                record(f"fastmix export {image_format}, {mode}",
                       timed(export_store, store, new_folder(), progress=False,
                             image_format=image_format, processes=processes))
        for image_format in formats:
            end_to_end(image_format)
    rate = {name: files / statistics.median(wall for wall, _, _ in values)
            for name, values in times.items()}
    cpu = {name: 1000 * statistics.median(used for _, used, _ in values) / files
           for name, values in times.items()}
    kernel = {name: 1000 * statistics.median(used for _, _, used in values) / files
              for name, values in times.items()}
    cpus = len(os.sched_getaffinity(0))
    rows = []
    for name in ("ingest", *(f"export {image_format}" for image_format in formats)):
        baseline = f"plain {name}"
        rows.append((baseline, rate[baseline], cpu[baseline], kernel[baseline], "baseline"))
        for mode in ("threads", "processes"):
            measured = f"fastmix {name}, {mode}"
            rows.append((measured, rate[measured], cpu[measured], kernel[measured],
                         f"{rate[measured] / rate[baseline]:.2f}x {baseline}"))
    for image_format in formats:
        name = f"end to end, {image_format} out"
        for stage in ("ingest", "mix", "export"):
            part = f"{name}: {stage}"
            rows.append((f"  {stage} stage ({image_format})", rate[part], cpu[part],
                         kernel[part], f"{100 * cpu[part] / cpu[name]:.0f}% of the CPU"))
        rows.append((f"folder -> mixed -> folder ({image_format})", rate[name], cpu[name],
                     kernel[name], f"{rate[name] / PROTOTYPE_IMAGES_PER_SECOND:.1f}x the prototype "
                     f"({PROTOTYPE_IMAGES_PER_SECOND:.0f} images/s); CPU bound "
                     f"{cpus * 1000 / cpu[name]:,.0f} images/s = "
                     f"{cpus * 1000 / cpu[name] / PROTOTYPE_IMAGES_PER_SECOND:.1f}x"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=3000, help="JPEG files to generate")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--formats", default="jpeg,png",
                        help="export formats to measure, comma-separated (jpeg, png)")
    parser.add_argument("--folder", default=None,
                        help="where the files and stores are made (default: the system's "
                             "temporary folder); creating files costs very different kernel "
                             "time on different file systems")
    args = parser.parse_args()
    formats = tuple(name.strip() for name in args.formats.split(",") if name.strip())
    if args.folder is not None:
        os.makedirs(args.folder, exist_ok=True)
    work = tempfile.mkdtemp(prefix="fastmix-bench-ingest-", dir=args.folder)
    load_before = os.getloadavg()[0]
    try:
        rows = run(args.files, args.repeats, work, formats)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.files} JPEG files of {SIZE}x{SIZE}x3, median of {args.repeats} run(s), "
          f"{len(os.sched_getaffinity(0))} CPUs, in {os.path.dirname(work)}, JPEG codec: "
          f"{'simplejpeg (libjpeg-turbo)' if jpeg.codec() else 'imageio (Pillow)'}")
    print(f"{'what':<40} {'images/s':>9} {'CPU ms/image':>13} {'(kernel)':>9}  "
          "ratio (images/s)")
    for name, images_per_second, cpu_milliseconds, kernel_milliseconds, ratio in rows:
        print(f"{name:<40} {images_per_second:>9,.0f} {cpu_milliseconds:>13.2f} "
              f"{kernel_milliseconds:>9.2f}  {ratio}")
    print(f"load average (1 min) before {load_before:.1f}, after {os.getloadavg()[0]:.1f} "
          "(the machine is shared; 'CPU bound' = CPUs / CPU ms per image, the rate an idle "
          "machine would reach with every stage using every CPU)")


if __name__ == "__main__":
    main()
