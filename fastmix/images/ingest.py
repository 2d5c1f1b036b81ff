"""``ingest``: a folder of labelled image files -> an HDF5 image store (docs/format.md section 5).

The store has ``images`` (N, H, W, C) uint8, chunked by whole images, and ``labels`` (N,)
int64 whose ``class_names`` attribute names the classes. Files are decoded in parallel in
small jobs and written in chunk-aligned batches, so memory stays bounded whatever the number
of files; the file is written under a temporary name and renamed when complete.
Source file names are not stored: they can name people.
"""

from __future__ import annotations

import contextlib
import errno
import os
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from fastmix.errors import (
    BadInputError,
    FastmixWarning,
    check_integer,
    check_regular_file,
    hint,
)
from fastmix.images.decode import decode_batch
from fastmix.images.parallel import bounded_map, make_pool, worker_count
from fastmix.images.sources import ImageList, csv_listing, image_folder
from fastmix.images.workers import WorkerProcesses, use_processes
from fastmix.units import parse_pair

COMPRESSIONS = ("none", "gzip", "lz4", "zstd")
#: Chunks hold a power-of-two number of whole images and at most this many bytes.
CHUNK_TARGET_BYTES = 4 * 1024**2
#: Decoded images are written in batches of about this many bytes (whole chunks).
BATCH_TARGET_BYTES = 32 * 1024**2
#: Images per decoding job handed to one worker.
JOB_IMAGES = 32
#: How many unreadable paths a summary line names.
NAMED_FAILURES = 3


@dataclass
class IngestReport:
    """What :func:`ingest_folder` did.

    Attributes
    ----------
    store : str
        The store written.
    images : int
        Images written.
    class_names : list of str
        Class names; label ``k`` is ``class_names[k]``.
    skipped : list of str
        Unreadable files, as ``"path (reason)"``.
    image_shape : tuple of int
        ``(H, W, C)`` of every image.
    seconds : float
        Wall time.
    """

    store: str
    images: int
    class_names: list[str]
    skipped: list[str] = field(default_factory=list)
    image_shape: tuple[int, int, int] = (0, 0, 0)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float:
        """Throughput in images per second."""
        return self.images / self.seconds if self.seconds > 0 else float("inf")

    def skipped_line(self) -> str:
        """One line naming the unreadable files (count plus the first few), or ``""``."""
        return describe_failures(self.skipped)

    def summary(self) -> str:
        """One human line."""
        height, width, channels = self.image_shape
        return (f"ingested {self.images:,} images of {height}x{width}x{channels} in "
                f"{len(self.class_names):,} classes in {self.seconds:.2f} s "
                f"({self.images_per_second:,.0f} images/s) -> {self.store}")


def describe_failures(failures: list[str]) -> str:
    """``"skipped 5 unreadable file(s): a (why), b (why), c (why), ..."`` or ``""``."""
    if not failures:
        return ""
    named = ", ".join(failures[:NAMED_FAILURES])
    more = ", ..." if len(failures) > NAMED_FAILURES else ""
    return f"skipped {len(failures):,} unreadable file(s): {named}{more}"


def chunk_length(image_bytes: int, count: int) -> int:
    """Images per chunk: the largest power of two within 4 MiB, at least 1, at most ``count``."""
    length = 1
    while length * 2 * image_bytes <= CHUNK_TARGET_BYTES:
        length *= 2
    return max(1, min(length, count))


def compression_options(name: str | None) -> dict:
    """``h5py.create_dataset`` keyword arguments for ``none``, ``gzip``, ``lz4`` or ``zstd``."""
    name = "none" if name is None else str(name).lower()
    if name == "none":
        return {}
    if name == "gzip":
        # level 1: photographs shrink little more at higher levels and gzip is already slow
        return {"compression": "gzip", "compression_opts": 1}
    import hdf5plugin

    if name == "lz4":
        return dict(hdf5plugin.LZ4())
    if name == "zstd":
        return dict(hdf5plugin.Zstd())
    raise BadInputError(f"compression must be one of {', '.join(COMPRESSIONS)}, got {name!r}")


def _check_destination(store: str, overwrite: bool, listing: ImageList,
                       csv: str | os.PathLike | None) -> None:
    """Refuse a store path that is not a new output (``check_output_path``) or is an input.

    The inputs are the CSV file and the images, compared by inode (links included).
    """
    from fastmix.store.durable.atomic import check_output_path

    inputs = [os.fspath(csv)] if csv is not None else []
    try:
        target = os.stat(store)
    except OSError:  # nothing there (or a dangling link): no input can be it
        pass
    else:
        for path in listing.paths:
            with contextlib.suppress(OSError):
                found = os.stat(path)
                if (found.st_dev, found.st_ino) == (target.st_dev, target.st_ino):
                    inputs.append(path)
                    break
    check_output_path(store, overwrite, protected=tuple(inputs), role="store")


@contextlib.contextmanager
def _full_disk_in_one_line(store: str):
    """Raise a full disk, from Python or from HDF5 (long text), as one short ``OSError``."""
    try:
        yield
    except (OSError, RuntimeError) as error:
        if getattr(error, "errno", None) != errno.ENOSPC and "errno = 28," not in str(error):
            raise
        raise OSError(errno.ENOSPC, f"no space left on the device of {store!r}; nothing was "
                      "written. Free some space or choose another folder") from None


def _size(size: object) -> tuple[int, int]:
    if isinstance(size, str):
        return parse_pair(size, "size")
    height: object
    width: object
    try:
        height, width = size  # type: ignore[misc]  # any pair; anything else is refused
    except (TypeError, ValueError):
        raise BadInputError(f"size must be (height, width) or 'HxW', got {size!r}") from None
    try:
        return check_integer(height, "size", minimum=1), check_integer(width, "size", minimum=1)
    except BadInputError:
        raise BadInputError(f"size must be two positive integers, got {size!r}") from None


def list_images(image_dir: str | os.PathLike, csv: str | os.PathLike | None = None,
                follow_symlinks: bool = False) -> ImageList:
    """Return the files to ingest: an ImageFolder tree, or ``csv`` rows below ``image_dir``."""
    if csv is not None:
        if not os.path.isdir(image_dir):
            raise BadInputError(f"image folder {os.fspath(image_dir)!r} does not exist")
        listing = csv_listing(csv, image_dir, follow_symlinks)
        for path in listing.paths:
            if os.path.exists(path):
                check_regular_file(path, "image")
        return listing
    return image_folder(image_dir, follow_symlinks)


def _write_batches(images, batch: np.ndarray, results, listing: ImageList, strict: bool,
                   bar, direct_chunk: int | None = None) -> tuple[list[int], list[str]]:
    """Copy decoded jobs into ``batch`` and write each full batch (whole chunks) to ``images``.

    With ``direct_chunk`` (the chunk length of an unfiltered dataset), whole chunks that
    start a batch are written straight from the decoded job with ``write_direct_chunk``,
    skipping the copy into ``batch`` and HDF5's own copy through its chunk cache.

    Returns the labels of the images written, in order, and the unreadable files.
    """
    labels: list[int] = []
    failures: list[str] = []
    written = filled = 0
    job_start = 0
    for decoded, ok, job_failures in results:
        if job_failures and strict:
            raise BadInputError(
                f"unreadable image file {job_failures[0]}; fix or remove it, or "
                f"{hint('not_strict')} to skip unreadable files")
        failures.extend(job_failures)
        labels.extend(listing.labels[job_start + position] for position in ok)
        job_start += len(ok) + len(job_failures)
        offset = 0
        while offset < len(decoded):
            if direct_chunk and filled == 0 and len(decoded) - offset >= direct_chunk:
                # ``written`` is a multiple of the chunk length whenever the batch is empty
                images.id.write_direct_chunk((written,) + (0,) * (images.ndim - 1),
                                             decoded[offset:offset + direct_chunk])
                written += direct_chunk
                offset += direct_chunk
                continue
            take = min(len(batch) - filled, len(decoded) - offset)
            batch[filled:filled + take] = decoded[offset:offset + take]
            filled += take
            offset += take
            if filled == len(batch):
                images[written:written + filled] = batch
                written += filled
                filled = 0
        bar.update(len(ok) + len(job_failures))
    if filled:
        images[written:written + filled] = batch[:filled]
    return labels, failures


def ingest_folder(image_dir: str | os.PathLike, store: str | os.PathLike, *,
                  size: tuple[int, int] | str = (192, 192), channels: int = 3,
                  compression: str | None = "none", csv: str | os.PathLike | None = None,
                  strict: bool = False, progress: bool = True, overwrite: bool = False,
                  workers: int | None = None, processes: bool | None = None,
                  follow_symlinks: bool = False) -> IngestReport:
    """Decode a folder of labelled images into a new HDF5 store.

    Parameters
    ----------
    image_dir : str or PathLike
        ImageFolder layout (one sub-folder per class; class names sorted, label = index), or
        the folder that the paths in ``csv`` are relative to.
    store : str or PathLike
        The HDF5 file to write.
    size : tuple of int or str
        ``(height, width)`` or ``"HxW"``; every image is resized to it (Lanczos).
    channels : {3, 1}
        RGB or grey.
    compression : {"none", "gzip", "lz4", "zstd"}
        Filter of the images dataset.
    csv : str or PathLike, optional
        A CSV of ``path,label`` rows instead of the ImageFolder layout.
    strict : bool
        Raise :class:`~fastmix.errors.BadInputError` on the first unreadable file instead of
        skipping it. Skipped files are named in one :class:`~fastmix.errors.FastmixWarning`
        and in the report's ``skipped``.
    progress : bool
        Show a progress bar on a terminal.
    overwrite : bool
        Replace ``store`` if it exists.
    workers : int, optional
        Parallel decoders (default: the usable CPUs).
    processes : bool, optional
        Decode in worker processes (``True``) or in threads of this process (``False``).
        Default: threads (measured faster on two shared cores).
    follow_symlinks : bool
        Read symbolic links that lead out of ``image_dir`` (ignored by default).

    Returns
    -------
    IngestReport
    """
    from fastmix.progress import Progress
    from fastmix.store.durable.atomic import atomic_output
    from fastmix.store.hdf5.lowlevel import create_unbuffered_file

    started = time.perf_counter()
    height, width = _size(size)
    if channels not in (1, 3):
        raise BadInputError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")
    options = compression_options(compression)
    store = os.fspath(store)
    listing = list_images(image_dir, csv, follow_symlinks)
    _check_destination(store, overwrite, listing, csv)
    total = len(listing.paths)
    image_bytes = height * width * channels
    chunk = chunk_length(image_bytes, total)
    batch_rows = chunk * max(1, BATCH_TARGET_BYTES // (chunk * image_bytes))
    batch = np.empty((min(batch_rows, total), height, width, channels), dtype=np.uint8)
    ahead = 2 * worker_count(workers)
    # Jobs decode into reused buffers, taken in turn: bounded_map keeps at most ``ahead``
    # jobs in flight and a job's result is copied out before the next job is created, so
    # ahead + 1 buffers are never reused while still in use.
    job_buffers = [np.empty((min(JOB_IMAGES, total), height, width, channels), dtype=np.uint8)
                   for _ in range(ahead + 1)]
    jobs = ((listing.paths[start:start + JOB_IMAGES], (height, width), channels,
             job_buffers[number % len(job_buffers)])
            for number, start in enumerate(range(0, total, JOB_IMAGES)))

    with _full_disk_in_one_line(store), atomic_output(store, overwrite) as temporary, \
            contextlib.ExitStack() as stack:
        # one unreadable or odd file must not flood the terminal; restored on the way out
        stack.enter_context(warnings.catch_warnings())
        warnings.simplefilter("ignore")
        # no HDF5 caches, so that a full disk fails in a write, not at the close (segfault)
        file = stack.enter_context(create_unbuffered_file(temporary))
        images = file.create_dataset(
            "images", shape=(total, height, width, channels), dtype=np.uint8,
            maxshape=(None, height, width, channels), chunks=(chunk, height, width, channels),
            **options)
        pool = stack.enter_context(make_pool(workers))
        decode = decode_batch
        if use_processes(total, worker_count(workers), processes):
            decode = stack.enter_context(WorkerProcesses()).decode
        bar = stack.enter_context(Progress(total, image_bytes, "ingest", enabled=progress))
        results = bounded_map(pool, decode, jobs, ahead=ahead)
        labels, failures = _write_batches(images, batch, results, listing, strict, bar,
                                          direct_chunk=None if options else chunk)
        written = len(labels)
        if written == 0:
            raise BadInputError(
                f"none of the {total:,} image files could be read ("
                f"{describe_failures(failures)}); check that they are PNG, JPEG, BMP, TIFF "
                "or GIF files")
        images.resize(written, axis=0)
        label_dataset = file.create_dataset("labels", data=np.asarray(labels, np.int64))
        label_dataset.attrs["class_names"] = listing.class_names
    if failures:
        warnings.warn(describe_failures(failures), FastmixWarning, stacklevel=2)
    return IngestReport(store=store, images=written, class_names=list(listing.class_names),
                        skipped=failures, image_shape=(height, width, channels),
                        seconds=time.perf_counter() - started)
