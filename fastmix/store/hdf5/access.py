"""Opening and validating an HDF5 image store (docs/format.md section 5)."""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from fastmix.errors import BadInputError, FastmixWarning, check_regular_file, hint
from fastmix.plan.labels import validate_labels
from fastmix.store.durable.journal import journal_path, read_journal_header
from fastmix.store.hdf5.record import IN_PROGRESS, STATE_ATTRIBUTE, read_state
from fastmix.store.hdf5.shard_binding import check_shard_binding, mapped_file

if TYPE_CHECKING:
    import h5py

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Most memory the labels of one store may take when read (whole) into memory.
MAX_LABEL_BYTES = 1 << 30


@dataclass
class Store:
    """An open store: the h5py file, its images dataset and its validated labels.

    Attributes
    ----------
    path : str
        The file.
    file : h5py.File
        The open file (close with :meth:`close` or use the store as a context manager).
    images : h5py.Dataset
        The images dataset, shape (N, H, W) or (N, H, W, C).
    labels : ndarray
        One label per image (integers or ``str``), read whole.
    labels_name : str
        The labels dataset's name.
    """

    path: str
    file: h5py.File
    images: h5py.Dataset
    labels: np.ndarray
    labels_name: str

    @property
    def count(self) -> int:
        """Number of images."""
        return int(self.images.shape[0])

    @property
    def image_bytes(self) -> int:
        """Bytes of one image."""
        return int(np.prod(self.images.shape[1:], dtype=np.int64)) * self.images.dtype.itemsize

    def close(self) -> None:
        """Close the file."""
        self.file.close()

    def __enter__(self) -> Store:
        """Return the store itself; leaving the block closes it."""
        return self

    def __exit__(self, *exc_info) -> None:
        """Close the file."""
        self.close()


def open_hdf5(path: str | os.PathLike, writable: bool = False, **file_options):
    """Open an HDF5 file with a clear :class:`BadInputError` for every way it can be wrong."""
    import h5py

    try:  # registers the LZ4, Zstd, Blosc, Blosc2 and Bitshuffle filters with HDF5
        import hdf5plugin  # noqa: F401
    except ImportError:  # pragma: no cover - a dependency; h5py reports missing filters
        pass
    path = os.fspath(path)
    # A FIFO, device or socket is refused before it is opened (opening a FIFO waits).
    check_regular_file(path, "store")
    try:
        with open(path, "rb") as handle:
            head = handle.read(8)
    except PermissionError:
        raise BadInputError(f"store {path!r} cannot be read: permission denied") from None
    if head != HDF5_SIGNATURE and not h5py.is_hdf5(path):
        raise BadInputError(
            f"{path!r} is not an HDF5 file; give an HDF5 store (see 'fastmix ingest' to make one)"
        )
    try:
        return h5py.File(path, "r+" if writable else "r", **file_options)
    except Exception as error:
        if writable and "lock" in str(error).lower():
            raise BadInputError(
                f"store {path!r} is open in another process (HDF5's file lock is held: a "
                "reader or a writer); wait for it to close the store, then run again"
            ) from None
        raise BadInputError(
            f"store {path!r} cannot be opened as HDF5 ({_first_line(error)}); it may be "
            "truncated or damaged"
        ) from None


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _dataset(file, name: str, role: str, path: str):
    import h5py

    try:
        item = file[name]
    except KeyError:
        found = ", ".join(sorted(file.keys())) or "nothing"
        raise BadInputError(
            f"store {path!r} has no {role} dataset {name!r} (top level holds: {found}); "
            f"{hint(role + '_name')}"
        ) from None
    except Exception as error:  # h5py raises several types for damaged objects
        raise BadInputError(
            f"{role} dataset {name!r} in {path!r} cannot be read ({_first_line(error)})"
        ) from None
    if not isinstance(item, h5py.Dataset):
        raise BadInputError(f"{name!r} in {path!r} is a {type(item).__name__}, not a dataset")
    return item


def missing_virtual_source(dataset) -> str | None:
    """Return the first source file of a virtual dataset that does not exist, or ``None``.

    HDF5 reads the part of a missing source as fill values, silently; a sharded store with
    a shard gone would read as blank images.
    """
    if not dataset.is_virtual:
        return None
    folder = os.path.dirname(os.path.abspath(dataset.file.filename))
    for mapping in dataset.virtual_sources():
        name = mapped_file(mapping.file_name)
        if name is None or name == ".":  # a printf-style pattern, or this file
            continue
        full = name if os.path.isabs(name) else os.path.join(folder, name)
        if not os.path.isfile(full):
            return full
    return None


def check_images_dataset(images, path: str, warn_layout: bool = True) -> None:
    """Raise :class:`BadInputError` unless ``images`` is (N, H, W[, C]) of a numeric dtype."""
    missing = missing_virtual_source(images)
    if missing is not None:
        raise BadInputError(
            f"images dataset {images.name!r} in {path!r} is a virtual dataset whose source "
            f"{missing!r} is missing (it would read as blank images); restore it, for a "
            "sharded store the .shards folder beside the store"
        )
    check_shard_binding(images, path)
    if images.ndim not in (3, 4):
        raise BadInputError(
            f"images dataset {images.name!r} in {path!r} has shape {images.shape}; it must be "
            "(N, H, W) or (N, H, W, C)"
        )
    dtype = images.dtype
    if dtype.kind not in "biuf" or dtype.hasobject or dtype.fields:
        raise BadInputError(
            f"images dataset {images.name!r} in {path!r} has dtype {dtype}; it must be a "
            "fixed-size numeric type (uint8, uint16, float32, ...)"
        )
    if 0 in images.shape[1:]:
        raise BadInputError(f"images dataset {images.name!r} in {path!r} has empty images "
                            f"{images.shape}")
    if warn_layout and looks_channels_first(images.shape):
        _, channels, height, width = images.shape
        warnings.warn(
            f"images dataset {images.name!r} in {path!r} has shape {images.shape}: it is read "
            f"as images of {channels}x{height} pixels with {width} channels, but it"
            f"{channels_first_note(images.shape)}, or blocks will be cut across the channels",
            FastmixWarning, stacklevel=3)


def looks_channels_first(shape: tuple[int, ...]) -> bool:
    """Whether an (N, H, W, C) shape is likely (N, C, H, W): C > 4 while H is 1, 3 or 4."""
    return len(shape) == 4 and shape[3] > 4 and shape[1] in (1, 3, 4)


def channels_first_note(shape: tuple[int, ...]) -> str:
    """Return the words a message about ``shape`` adds when it looks channels-first, or ``""``."""
    if not looks_channels_first(shape):
        return ""
    return (" looks channels-first (N, C, H, W); if so, store it as (N, H, W, C), for example "
            "np.moveaxis(images, 1, -1)")


def decode_labels(raw: np.ndarray) -> np.ndarray:
    """Labels as read by h5py -> integers or ``str`` (bytes decoded as UTF-8).

    Raises :class:`BadInputError` for text that is not valid UTF-8.
    """
    array = np.asarray(raw)
    try:
        if array.dtype.kind == "S":
            return np.char.decode(array, "utf-8")
        if array.dtype.kind == "O":
            return np.array([item.decode("utf-8") if isinstance(item, bytes) else item
                             for item in array.tolist()], dtype=object)
    except UnicodeDecodeError as error:
        raise BadInputError(
            f"labels are text that is not valid UTF-8 (byte {error.start} of one label); "
            "store them as integers or as UTF-8 text"
        ) from None
    return array


def read_labels(file, name: str, count: int, path: str) -> np.ndarray:
    """Read the labels dataset whole and validate it for ``count`` images."""
    labels = _dataset(file, name, "labels", path)
    if labels.ndim != 1:
        raise BadInputError(
            f"labels dataset {name!r} in {path!r} has shape {labels.shape}; it must be (N,)"
        )
    # Labels are read whole: a store that declares a billion of them (sparse datasets
    # cost nothing on disk) is refused before anything is allocated.
    needed = int(labels.shape[0]) * (64 if labels.dtype.kind == "O" else
                                     max(8, labels.dtype.itemsize))
    if needed > MAX_LABEL_BYTES:
        raise BadInputError(
            f"labels dataset {name!r} in {path!r} holds {labels.shape[0]:,} labels, which "
            f"need about {needed / 2**30:.1f} GiB in memory; fastmix reads labels whole and "
            f"takes at most {MAX_LABEL_BYTES / 2**30:.0f} GiB of them"
        )
    try:
        raw = labels[()]
    except Exception as error:
        raise BadInputError(
            f"labels dataset {name!r} in {path!r} cannot be read ({_first_line(error)})"
        ) from None
    try:
        return validate_labels(decode_labels(raw), count)
    except BadInputError as error:
        raise BadInputError(f"labels dataset {name!r} in {path!r}: {error}") from None


def refuse_interrupted(dataset, path: str) -> None:
    """Refuse a store that an interrupted in-place run left half rewritten.

    Its images dataset carries ``fastmix_state = "in-progress"``: some windows are mixed
    (or unmixed) and the others are not, so reading it as a whole would give a mixture of
    both. Every reader (:func:`open_store` without ``writable``) refuses it.

    Raises
    ------
    BadInputError
        Naming ``--in-place --resume`` (``in_place=True, resume=True``), which finishes the
        interrupted run.
    """
    if read_state(dataset) != IN_PROGRESS:
        return
    header = read_journal_header(journal_path(path))
    operation = header.operation if header else None
    if operation in ("mix", "unmix"):
        how = (f"{hint('finish_in_place')} and the key it was started with ('fastmix "
               f"{operation} {path} --in-place --resume --key-file KEY'), then read it")
    else:
        how = (f"its journal {journal_path(path)!r} is missing: put it back and "
               f"{hint('finish_in_place')} ('fastmix mix STORE --in-place --resume', or unmix "
               "as it was started, with the same key), or restore the store from a copy")
    raise BadInputError(
        f"store {path!r} is half rewritten by an interrupted in-place run ({dataset.name!r} "
        f"has {STATE_ATTRIBUTE} = {IN_PROGRESS!r}), so it holds both finished and unfinished "
        f"images; {how}"
    )


def open_store(path: str | os.PathLike, images: str = "images", labels: str | None = "labels",
               writable: bool = False, *, interrupted: bool = False, warn_layout: bool = True,
               **file_options) -> Store:
    """Open and validate a store.

    Parameters
    ----------
    path : str or PathLike
        The HDF5 file.
    images, labels : str
        Dataset names. ``labels=None`` skips the labels (they are then an empty array).
    writable : bool
        Open for writing (in-place mode) instead of read-only.
    interrupted : bool
        Also open a store an interrupted in-place run left half rewritten (a read-only
        open refuses it otherwise, see :func:`refuse_interrupted`); the in-place engine
        and ``fastmix info`` look at such a store.
    warn_layout : bool
        Warn when the images look channels-first (:func:`looks_channels_first`). A reader
        that refuses such images anyway (export, preview) passes ``False`` and says it in its
        one line (:func:`channels_first_note`).
    **file_options
        Passed to ``h5py.File`` (for example ``rdcc_nbytes``).

    Returns
    -------
    Store

    Raises
    ------
    BadInputError
        A missing, non-HDF5 or damaged file; a missing dataset; images of the wrong rank or
        dtype; labels of the wrong length, NaN or of an unusable type; a read-only open of
        a store an interrupted in-place run left half rewritten.
    """
    path = os.fspath(path)
    file = open_hdf5(path, writable=writable, **file_options)
    try:
        images_dataset = _dataset(file, images, "images", path)
        if not (writable or interrupted):
            refuse_interrupted(images_dataset, path)
        check_images_dataset(images_dataset, path, warn_layout)
        count = int(images_dataset.shape[0])
        label_array = (read_labels(file, labels, count, path) if labels is not None
                       else np.empty(0, dtype=np.int64))
    except BaseException:
        file.close()
        raise
    return Store(path=path, file=file, images=images_dataset, labels=label_array,
                 labels_name=labels or "")
