"""``export``: an HDF5 image store -> one PNG per image, one folder per class.

Images are read in windows aligned to the dataset's chunks and encoded by a pool of threads.
Files are named by their index in the store (``000123.png``), so an exported image can
always be traced back to its row. PNG (lossless) is the default; JPEG is offered for
pipelines that want small files and accept loss (it is about five times faster to encode).
The folder is written under a temporary name beside the destination and renamed when
complete; temporaries that a killed export left behind are removed by the next export to the
same folder.

Every export writes a marker file, ``.fastmix-export``, into its folder. ``overwrite``
replaces only such a folder, and only while it holds nothing but what export writes (the
marker, class folders and numbered image files): it never deletes other files, a store, a
key or an input. A destination that holds the store being exported is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import time
from dataclasses import dataclass

import numpy as np

from fastmix.errors import BadInputError, hint
from fastmix.images.encode import (
    PNG_COMPRESS_LEVEL,
    jpeg_options,
    png_options,
    write_images,
)
from fastmix.images.parallel import bounded_map, make_pool, worker_count
from fastmix.images.sources import is_inside
from fastmix.images.workers import WorkerProcesses, use_processes
from fastmix.store.durable.atomic import TEMPORARY_MARK

#: Windows of about this many bytes are read at once (whole chunks).
WINDOW_TARGET_BYTES = 32 * 1024**2
#: HDF5 chunk cache of the store being exported (see export_store).
READ_CACHE_BYTES = 1024**2
#: Images per encoding job handed to one thread.
JOB_IMAGES = 16
FORMATS = {"png": ".png", "jpeg": ".jpg"}
#: The file every export writes into its folder: ``overwrite`` replaces only a folder that
#: holds it (and nothing export does not write), and stale temporaries are known by it.
EXPORT_MARKER = ".fastmix-export"
#: Name of an earlier export between its replacement's arrival and its removal.
RETIRED_MARK = ".fastmix-old-"
#: The longest file name (in bytes) common file systems take.
MAX_NAME_BYTES = 255
_EXPORTED_FILE = re.compile(r"[0-9]+\.(png|jpg)")


@dataclass
class ExportReport:
    """What :func:`export_store` did.

    Attributes
    ----------
    directory : str
        The folder written.
    images : int
        PNG files written.
    folders : list of str
        The class folders, in label order.
    seconds : float
        Wall time.
    image_format : str
        ``"PNG"`` or ``"JPEG"``.
    """

    directory: str
    images: int
    folders: list[str]
    seconds: float
    image_format: str = "PNG"

    @property
    def images_per_second(self) -> float:
        """Throughput in images per second."""
        return self.images / self.seconds if self.seconds > 0 else float("inf")

    def summary(self) -> str:
        """One human line."""
        return (f"exported {self.images:,} {self.image_format} files into "
                f"{len(self.folders):,} class folders in {self.seconds:.2f} s "
                f"({self.images_per_second:,.0f} images/s) -> {self.directory}")


def _fit_name(name: str) -> str:
    """Return ``name`` if it fits a file name (255 bytes), else a shortened, unique form."""
    raw = name.encode("utf-8", "surrogatepass")
    if len(raw) <= MAX_NAME_BYTES:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:16]
    head = raw[:MAX_NAME_BYTES - len(digest) - 1].decode("utf-8", "ignore")
    return f"{head}~{digest}"


def _safe_folder_name(text: str, fallback: str) -> str:
    cleaned = "".join("_" if char in '/\\:\0' else char for char in text).strip()
    if cleaned in ("", ".", ".."):
        return fallback
    # never hidden: readers skip hidden folders, and the marker file starts with a dot
    return "_" + cleaned[1:] if cleaned.startswith(".") else cleaned


def label_folders(labels: np.ndarray, class_names: list[str] | None) -> dict[int | str, str]:
    """Folder name for each distinct label: its class name, else the label itself.

    Characters a file name cannot hold (slash, backslash, colon, NUL) become ``_``, as does
    a leading dot (a hidden folder would be skipped by readers). A name longer than 255
    bytes, which no common file system takes, is shortened deterministically: its first
    bytes, ``~`` and 16 hexadecimal digits of the SHA-256 of the whole name. Two classes
    that would share a folder get the label value appended to the second.
    """
    folders: dict[int | str, str] = {}
    for value in np.unique(labels).tolist():
        if class_names is not None and isinstance(value, int) and 0 <= value < len(class_names):
            name = class_names[value]
        else:
            name = str(value)
        name = _fit_name(_safe_folder_name(name, f"label_{value}"))
        if name in folders.values():
            name = _fit_name(f"{name}_{value}")
        folders[value] = name
    return folders


def _check_exportable(dataset, path: str, image_format: str) -> None:
    shape, dtype = dataset.shape, dataset.dtype
    channels = shape[3] if len(shape) == 4 else 1
    if image_format == "jpeg":
        if dtype == np.uint8 and channels in (1, 3):
            return
        layout = _layout_note(shape)
        raise BadInputError(
            f"images in {path!r} are {dtype} with {channels} channel(s){layout}; JPEG export "
            "supports uint8 grey or RGB. Use --format png")
    if dtype == np.uint8 and channels in (1, 3, 4):
        return
    if dtype == np.uint16 and channels == 1:
        return
    raise BadInputError(
        f"images in {path!r} are {dtype} with {channels} channel(s){_layout_note(shape)}; PNG "
        "export supports uint8 grey, RGB or RGBA and uint16 grey. Convert the store first")


def _layout_note(shape: tuple[int, ...]) -> str:
    from fastmix.store.hdf5.access import channels_first_note

    note = channels_first_note(shape)
    return f" (the store{note})" if note else ""


def _marker_text() -> str:
    return json.dumps({"written_by": "fastmix export", "pid": os.getpid()}) + "\n"


def _marker(folder: str) -> dict | None:
    """Return what ``folder``'s marker file holds, or None when it has no valid one."""
    path = os.path.join(folder, EXPORT_MARKER)
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return None
        with open(path, "rb") as handle:
            found = json.loads(handle.read(4096))
    except (OSError, ValueError):
        return None
    if not isinstance(found, dict) or found.get("written_by") != "fastmix export":
        return None
    return found


def _foreign_content(folder: str) -> str | None:
    """Return why ``folder`` is not entirely an export's own work, or None when it is.

    An export holds its marker file, class folders and, in them, only files named by an
    image index (``000123.png``, ``000123.jpg``); links and anything else are foreign.
    """
    if _marker(folder) is None:
        return f"it has no {EXPORT_MARKER} file"
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name == EXPORT_MARKER:
                continue
            if not entry.is_dir(follow_symlinks=False):
                return f"it holds {entry.name!r}, which export does not write"
            with os.scandir(entry.path) as files:
                for file in files:
                    if not (file.is_file(follow_symlinks=False)
                            and _EXPORTED_FILE.fullmatch(file.name)):
                        return (f"it holds {os.path.join(entry.name, file.name)!r}, which "
                                "export does not write")
    return None


def _check_directory(directory: str, store: str, overwrite: bool) -> str:
    """Validate the destination folder and return its real path."""
    real = os.path.realpath(directory)
    if os.path.lexists(real) and not os.path.isdir(real):
        raise BadInputError(f"destination {directory!r} is a file; give a folder path")
    if is_inside(store, real):
        raise BadInputError(
            f"destination folder {directory!r} holds the store {store!r}; export into a new "
            "folder outside it")
    if os.path.isdir(real) and os.listdir(real):
        if not overwrite:
            raise BadInputError(f"destination folder {directory!r} is not empty; choose another "
                                f"folder or {hint('overwrite')} to replace an earlier export")
        problem = _foreign_content(real)
        if problem is not None:
            raise BadInputError(
                f"destination folder {directory!r} is not an earlier fastmix export ({problem}) "
                "and is never replaced; choose a new or empty folder")
    if not os.path.isdir(os.path.dirname(real)):
        raise BadInputError(f"the parent folder of {directory!r} does not exist; create it first")
    return real


def _remove_stale_temporaries(parent: str, name: str) -> None:
    """Delete the folders that exports of ``name`` killed before they finished left behind.

    Only fastmix's own: a folder named as export names its temporaries, whose writer (the
    PID in the name) no longer runs, and whose content is an export's own (its marker
    first, written by that PID for a temporary).
    """
    from fastmix.store.durable.lock import pid_alive

    for mark in (TEMPORARY_MARK, RETIRED_MARK):
        prefix = f".{name}{mark}"
        with os.scandir(parent) as entries:
            stale = [entry for entry in entries if entry.name.startswith(prefix)
                     and entry.name[len(prefix):].isdigit()
                     and entry.is_dir(follow_symlinks=False)]
        for entry in stale:
            pid = int(entry.name[len(prefix):])
            if pid == os.getpid() or pid_alive(pid) or _foreign_content(entry.path) is not None:
                continue
            if mark == TEMPORARY_MARK and (_marker(entry.path) or {}).get("pid") != pid:
                continue
            _remove_export(entry.path)


def _remove_export(folder: str) -> None:
    """Delete a folder :func:`_foreign_content` accepted, its marker last.

    A removal cut short leaves the marker, so that a later export still knows the rest.
    """
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.name != EXPORT_MARKER:
                shutil.rmtree(entry.path, ignore_errors=True)
    with contextlib.suppress(OSError):
        os.remove(os.path.join(folder, EXPORT_MARKER))
        os.rmdir(folder)


@contextlib.contextmanager
def _atomic_directory(directory: str, overwrite: bool):
    """Yield a new temporary folder beside ``directory``; rename it into place on success.

    ``directory`` is a real path that :func:`_check_directory` accepted. What it holds when
    the export is done is replaced only if it is still an earlier export.
    """
    parent, name = os.path.split(directory)
    _remove_stale_temporaries(parent, name)
    temporary = os.path.join(parent, f".{name}{TEMPORARY_MARK}{os.getpid()}")
    try:
        os.mkdir(temporary)
    except FileExistsError:
        raise BadInputError(
            f"{temporary!r} is in the way: another export to {directory!r} runs in this "
            "process; wait for it, or remove that folder if none does") from None
    finished = False
    try:
        with open(os.path.join(temporary, EXPORT_MARKER), "x") as handle:
            handle.write(_marker_text())
        yield temporary
        if os.path.isdir(directory) and os.listdir(directory):
            problem = _foreign_content(directory) if overwrite else "it is not empty"
            if problem is not None:
                raise BadInputError(
                    f"destination folder {directory!r} changed while exporting ({problem}); it "
                    "was left alone. Choose a new or empty folder")
            retired = os.path.join(parent, f".{name}{RETIRED_MARK}{os.getpid()}")
            os.rename(directory, retired)
            try:
                os.rename(temporary, directory)
            except BaseException:
                os.rename(retired, directory)
                raise
            finished = True
            _remove_export(retired)
        else:
            os.rename(temporary, directory)  # fails, changing nothing, unless empty or absent
            finished = True
    finally:
        if not finished:
            _remove_export(temporary)


def export_store(store: str | os.PathLike, directory: str | os.PathLike, *,
                 images: str = "images", labels: str = "labels", overwrite: bool = False,
                 progress: bool = True, workers: int | None = None,
                 image_format: str = "png", compress_level: int = PNG_COMPRESS_LEVEL,
                 quality: int = 95, processes: bool | None = None) -> ExportReport:
    """Write every image of a store as a PNG (or JPEG) file in a folder per class.

    Parameters
    ----------
    store : str or PathLike
        The HDF5 store.
    directory : str or PathLike
        The folder to create; it receives ``CLASS/000123.png`` files, where ``CLASS`` is the
        class name from the labels' ``class_names`` attribute (else the label value; see
        :func:`label_folders`) and the number is the image's index in the store, and the
        marker file ``.fastmix-export``. A store of no images gives a folder with only the
        marker.
    images, labels : str
        Dataset names.
    overwrite : bool
        Replace ``directory`` if it holds an earlier export (see the module notes). A folder
        that is not empty is otherwise refused, with or without ``overwrite``.
    progress : bool
        Show a progress bar on a terminal.
    workers : int, optional
        Parallel encoders (default: the usable CPUs).
    image_format : {"png", "jpeg"}
        PNG (lossless, the default) or JPEG (lossy, ``.jpg``).
    compress_level : int
        zlib level of the PNG files, 0-9.
    quality : int
        JPEG quality, 1-95.
    processes : bool, optional
        Encode in worker processes (``True``) or in threads of this process (``False``).
        Default: threads (measured faster on two shared cores).

    Returns
    -------
    ExportReport
    """
    import hdf5plugin  # noqa: F401 - registers the LZ4/Zstd/Blosc filters with h5py

    from fastmix.progress import Progress
    from fastmix.store.hdf5.access import open_store
    from fastmix.store.hdf5.lowlevel import class_names_of

    started = time.perf_counter()
    directory = os.fspath(directory)
    if image_format not in FORMATS:
        raise BadInputError(f"format must be png or jpeg, got {image_format!r}")
    extension = FORMATS[image_format]
    options = png_options(compress_level) if image_format == "png" else \
        jpeg_options(quality)
    real = _check_directory(directory, os.fspath(store), overwrite)
    # Whole chunks are read, each once: with a chunk cache smaller than a chunk, HDF5 reads
    # them straight into the window instead of through its cache (half the CPU, measured).
    with open_store(store, images=images, labels=labels, rdcc_nbytes=READ_CACHE_BYTES,
                    warn_layout=False) as opened:
        dataset = opened.images
        _check_exportable(dataset, opened.path, image_format)
        count = opened.count
        folders = label_folders(opened.labels, class_names_of(opened.file, opened.labels_name))
        digits = max(6, len(str(max(count - 1, 0))))
        chunk = dataset.chunks[0] if dataset.chunks else 1
        window = chunk * max(1, WINDOW_TARGET_BYTES // max(1, chunk * opened.image_bytes))
        label_list = opened.labels.tolist()

        ahead = 2 * worker_count(workers)
        # Windows are read into reused buffers, taken in turn (fresh memory costs page faults
        # worth a third of the copy): at most ``ahead`` jobs are in flight (bounded_map), so
        # a buffer is free again once ceil(ahead / jobs per window) later windows were read.
        window = max(1, min(window, count))
        jobs_per_window = max(1, -(-window // JOB_IMAGES))
        buffers = [np.empty((window, *dataset.shape[1:]), dtype=dataset.dtype)
                   for _ in range(1 + -(-ahead // jobs_per_window))] if count else []

        def jobs(root: str):
            for number, start in enumerate(range(0, count, window)):
                stop = min(start + window, count)
                pixels = buffers[number % len(buffers)][:stop - start]
                dataset.read_direct(pixels, np.s_[start:stop], np.s_[0:stop - start])
                for first in range(start, stop, JOB_IMAGES):
                    last = min(first + JOB_IMAGES, stop)
                    paths = [os.path.join(root, folders[label_list[index]],
                                          f"{index:0{digits}d}{extension}")
                             for index in range(first, last)]
                    yield pixels[first - start:last - start], paths, options

        with _atomic_directory(real, overwrite) as temporary:
            for folder in folders.values():
                os.makedirs(os.path.join(temporary, folder), exist_ok=True)
            with make_pool(workers) as pool, WorkerProcesses() as worker_processes, \
                    Progress(count, opened.image_bytes, "export", enabled=progress) as bar:
                write = (worker_processes.write
                         if use_processes(count, worker_count(workers), processes)
                         else write_images)
                for written in bounded_map(pool, write, jobs(temporary), ahead=ahead):
                    bar.update(written)
    return ExportReport(directory=directory, images=count,
                        folders=[folders[value] for value in sorted(folders)],
                        seconds=time.perf_counter() - started,
                        image_format=image_format.upper())
