"""A map-style dataset over an HDF5 image store, ready for ``torch.utils.data.DataLoader``.

torch is not needed: the class only has ``__len__`` and ``__getitem__``. The HDF5 file is
opened lazily, once per process (the open handle is dropped when the process id changes and
when the object is pickled), so DataLoader workers, forked or spawned, each open their own.
Sequential reads go through a cache of one window of whole chunks: the window around the
requested image is read once and served from memory; a jump elsewhere reads the image's
whole chunk into a second cache (the :data:`CACHED_CHUNKS` chunks read last), keeping the
window.

Reading a compressed store in a fully random order decompresses a whole chunk for every
image; :class:`ChunkShuffleSampler` shuffles groups of :data:`CACHED_CHUNKS` chunks drawn
at random instead, so that each chunk is decompressed once per epoch (in each process that
reads it) while a batch still spans several chunks, and so several classes of a store sorted
by class (see docs/workflow.md for the figures).
"""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from fastmix._optional import require
from fastmix.errors import (
    BadInputError,
    BadInputTypeError,
    FastmixWarning,
    check_flag,
    check_integer,
    check_path,
)

#: Bytes of the sequential-read window (whole chunks; at least one chunk).
WINDOW_BYTES = 16 * 1024**2
#: Chunks whose images :class:`ChunkShuffleSampler` shuffles together, and decoded chunks
#: :class:`H5ImageDataset` keeps (the ones read last): ingest's chunks hold at most 4 MiB,
#: so at most 32 MiB per process beside the window. A batch of 64 from a store ingested from
#: 9 classes (sorted by class, chunks of 32) then holds 6.3 classes on average, against 2.6
#: for one chunk at a time; 16 chunks give 8.2 for twice the memory (docs/utility.md).
CACHED_CHUNKS = 8
#: Integer labels from 0 to below this are kept as they are, with a class name for every
#: value up to the largest; others are numbered by their position among the distinct labels.
DENSE_CLASSES = 1 << 16


class H5ImageDataset:
    """Images and labels of an HDF5 store as ``(image, label)`` pairs.

    Parameters
    ----------
    path : str or PathLike
        The store.
    transform : callable, optional
        Applied to each image (a NumPy array of shape (H, W) or (H, W, C), or the tensor
        of ``to_tensor``) before it is returned.
    images, labels : str
        Dataset names.
    to_tensor : bool
        Return each image as a ``torch.Tensor`` of shape (C, H, W), as torchvision's
        ``ToTensor`` does: uint8 pixels become float32 in [0, 1], other types keep their
        values. torch is imported only then; without it this raises
        :class:`~fastmix.errors.BadInputError`.
    cached_chunks : int
        Decoded chunks kept for reads out of order (the ones read last), at least the
        ``chunks`` of the :class:`ChunkShuffleSampler` that orders the reads; default
        :data:`CACHED_CHUNKS`.

    Attributes
    ----------
    labels : ndarray of int64
        Every label. Integer labels from 0 to 65,535 are kept; string labels, and integers
        outside that range (negative ones, identifiers such as 987654321), are replaced by
        their index in :attr:`classes` (a :class:`~fastmix.errors.FastmixWarning` says so
        when that renumbers integers).
    classes : list of str
        Class names: the labels' ``class_names`` attribute, the sorted string labels, the
        values ``0 .. max`` as text, or the sorted distinct integers as text.
    class_to_idx : dict of str to int
        Each class name's label, as torchvision's ``ImageFolder`` has it.
    targets : list of int
        Every label as a list, as ``ImageFolder`` has it.
    chunk_length : int
        Images per HDF5 chunk (1 for a contiguous dataset).

    Examples
    --------
    >>> dataset = fastmix.H5ImageDataset("mixed.h5")  # doctest: +SKIP
    >>> image, label = dataset[0]  # doctest: +SKIP
    >>> loader = torch.utils.data.DataLoader(  # doctest: +SKIP
    ...     dataset, batch_size=64, sampler=fastmix.ChunkShuffleSampler(dataset),
    ...     num_workers=4)
    """

    def __init__(self, path: str | os.PathLike, transform: Callable | None = None,
                 images: str = "images", labels: str = "labels", *,
                 to_tensor: bool = False, cached_chunks: int = CACHED_CHUNKS) -> None:
        from fastmix.store.hdf5.access import open_store
        from fastmix.store.hdf5.lowlevel import class_names_of

        if transform is not None and not callable(transform):
            raise BadInputTypeError(f"transform must be a callable (a function of one image), "
                                    f"got {type(transform).__name__}")
        if check_flag(to_tensor, "to_tensor"):
            require_torch()
        self.cached_chunks = check_integer(cached_chunks, "cached_chunks", minimum=1)
        self.path = check_path(path, "path")
        self.transform = transform
        self.to_tensor = bool(to_tensor)
        self.images_name = images
        self.labels_name = labels
        with open_store(self.path, images=images, labels=labels) as store:
            self._shape = tuple(store.images.shape)
            self._dtype = store.images.dtype
            chunk = store.images.chunks[0] if store.images.chunks else 1
            names = class_names_of(store.file, store.labels_name)
            raw_labels = store.labels
        self.labels, self.classes = _classes(raw_labels, names, self.path)
        self.chunk_length = int(chunk)
        image_bytes = int(np.prod(self._shape[1:], dtype=np.int64)) * self._dtype.itemsize
        self.window = chunk * max(1, WINDOW_BYTES // max(1, chunk * image_bytes))
        self._reset()

    def _reset(self) -> None:
        self._file = None
        self._dataset = None
        self._pid = None
        self._cache_start = 0
        self._cache: np.ndarray | None = None
        self._chunks: OrderedDict[int, np.ndarray] = OrderedDict()
        self._last = -2

    def _images(self):
        if self._pid != os.getpid():
            import h5py
            import hdf5plugin  # noqa: F401 - registers the LZ4/Zstd/Blosc filters with h5py

            self._reset()
            # room for two windows so a window read never evicts itself
            self._file = h5py.File(self.path, "r", rdcc_nbytes=2 * WINDOW_BYTES + 1024**2)
            self._dataset = self._file[self.images_name]
            self._pid = os.getpid()
        return self._dataset

    def __len__(self) -> int:
        """Return the number of images."""
        return self._shape[0]

    @property
    def class_to_idx(self) -> dict[str, int]:
        """Each class name's label (torchvision's ``ImageFolder.class_to_idx``)."""
        return {name: index for index, name in enumerate(self.classes)}

    @property
    def targets(self) -> list[int]:
        """Every label, in store order (torchvision's ``ImageFolder.targets``)."""
        return self.labels.tolist()

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image."""
        return self._shape[1:]

    def _read(self, index: int) -> np.ndarray:
        dataset = self._images()
        cache = self._cache
        start = index - index % self.chunk_length
        if cache is not None and self._cache_start <= index < self._cache_start + len(cache):
            image = cache[index - self._cache_start]
        elif start in self._chunks:
            self._chunks.move_to_end(start)
            image = self._chunks[start][index - start]
        elif index == self._last + 1:
            first = index - index % self.window
            self._cache = dataset[first:min(first + self.window, len(self))]
            self._cache_start = first
            image = self._cache[index - first]
            if self.chunk_length > 1:  # kept when the window moves on
                self._keep(start, self._cache[start - first:start - first + self.chunk_length]
                           .copy())
        elif self.chunk_length > 1:
            # HDF5 decodes the whole chunk anyway; keeping the last ones read (beside the
            # window) serves their other images from memory, which ChunkShuffleSampler
            # reads next, interleaved
            chunk = dataset[start:min(start + self.chunk_length, len(self))]
            self._keep(start, chunk)
            image = chunk[index - start]
        else:
            image = dataset[index]
        self._last = index
        return np.array(image)

    def _keep(self, start: int, chunk: np.ndarray) -> None:
        """Keep the chunk at ``start``, dropping the one used least recently."""
        self._chunks[start] = chunk
        while len(self._chunks) > self.cached_chunks:
            self._chunks.popitem(last=False)

    def __getitem__(self, index: int) -> tuple[object, int]:
        """Return image ``index`` (transformed) and its label."""
        index = check_integer(index, "index", minimum=None)
        count = len(self)
        position = int(index) + count if index < 0 else int(index)
        if not 0 <= position < count:
            raise IndexError(f"index {index} is out of range for {count} images")
        pixels = self._read(position)
        image: object = pixels
        if self.to_tensor:
            import torch

            image = torch.from_numpy(channels_first(pixels))
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[position])

    def close(self) -> None:
        """Close the file in this process (it reopens on the next read)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._reset()

    def __enter__(self) -> H5ImageDataset:
        """Return the dataset itself; leaving the block closes its file."""
        return self

    def __exit__(self, *exc_info) -> None:
        """Close the file."""
        self.close()

    def __getstate__(self) -> dict:
        """Return the picklable state: everything but the open file (reopened in the worker)."""
        state = self.__dict__.copy()
        for name in ("_file", "_dataset", "_cache"):
            state[name] = None
        state["_chunks"] = OrderedDict()
        state["_pid"] = None
        state["_last"] = -2
        return state

    def __repr__(self) -> str:
        """Return the path, the image count and the classes."""
        return (f"H5ImageDataset({self.path!r}, {len(self):,} images of "
                f"{'x'.join(map(str, self.image_shape))} {self._dtype}, "
                f"{len(self.classes)} classes)")


def _classes(labels: np.ndarray, names: list[str] | None,
             path: str) -> tuple[np.ndarray, list[str]]:
    """Return the labels as int64 and the class names, in memory bounded by the labels.

    Integer labels from 0 to below :data:`DENSE_CLASSES` are kept as they are, with the
    ``class_names`` attribute or ``"0" .. "max"`` as names. Other integers (negative, or
    identifiers such as 987654321) become their positions among the distinct labels, whose
    values are the names, with a warning when that renumbers them; text labels become their
    positions among the sorted distinct texts.
    """
    if labels.dtype.kind not in "iub":
        classes, codes = np.unique(labels.astype(str), return_inverse=True)
        return codes.astype(np.int64).reshape(-1), [str(name) for name in classes]
    distinct, codes = np.unique(labels, return_inverse=True)
    if distinct.size == 0 or (distinct[0] >= 0 and distinct[-1] < DENSE_CLASSES):
        top = int(distinct[-1]) + 1 if distinct.size else 0
        return labels.astype(np.int64), names if names is not None else \
            [str(value) for value in range(top)]
    if not np.array_equal(distinct, np.arange(distinct.size)):
        warnings.warn(
            f"{path!r}: the labels are integers from {distinct[0]} to {distinct[-1]} "
            f"({distinct.size:,} distinct), not 0 to {DENSE_CLASSES - 1:,}: each image's label "
            "is its class's position in dataset.classes, which holds the stored values as text"
            + (" (the class_names attribute is not used)" if names is not None else ""),
            FastmixWarning, stacklevel=3)
    return codes.astype(np.int64).reshape(-1), [str(value) for value in distinct.tolist()]


def require_torch() -> None:
    """Import torch, or raise :class:`BadInputError` naming the extra that installs it."""
    require("torch", "torch", needed_by="to_tensor=True",
            advice="install it with {install}, or leave to_tensor off to get NumPy arrays")


def channels_first(image: np.ndarray) -> np.ndarray:
    """Return an (H, W) or (H, W, C) image as a C-contiguous (C, H, W) array, as ``ToTensor``.

    uint8 pixels become float32 in [0, 1]; other types keep their values and type.
    """
    chw = image[None] if image.ndim == 2 else np.moveaxis(image, -1, 0)
    if chw.dtype == np.uint8:
        return np.divide(chw, np.float32(255), dtype=np.float32, order="C")
    return np.ascontiguousarray(chw)


class ChunkShuffleSampler:
    """Shuffled indices that visit an HDF5 store a few chunks at a time, drawn at random.

    Each epoch shuffles the order of the chunks and cuts it into groups of ``chunks``
    chunks; the images of each group are shuffled together. A batch then holds images of
    ``chunks`` chunks from anywhere in the store, not neighbours: in a store sorted by class
    (as ``fastmix ingest`` writes one), several classes. A fully random order decompresses a
    whole chunk for almost every image read from a compressed store; this order decompresses
    each chunk once per epoch in each process that reads it, as long as the dataset keeps
    ``chunks`` decoded chunks (``H5ImageDataset(cached_chunks=)``, 8 by default). Plain
    Python with ``__iter__`` and ``__len__``, so it serves as the ``sampler`` of a
    ``torch.utils.data.DataLoader`` without depending on torch.

    Parameters
    ----------
    dataset : H5ImageDataset or int
        The dataset (its length and chunk length are used), or a number of images.
    chunk_length : int, optional
        Images per chunk; default the dataset's, required with a number of images. A
        multiple of it shuffles that many adjacent chunks as one.
    seed : int
        Seed of the shuffles. Epoch ``e`` draws from ``(seed, e)`` only, so the order is the
        same in every process and every run.
    chunks : int
        Chunks whose images are shuffled together; default :data:`CACHED_CHUNKS` (8). 1
        gives one chunk at a time, the order this sampler gave before it had ``chunks``.

    Notes
    -----
    Each iteration starts the next epoch; :meth:`set_epoch` chooses it, as with torch's
    ``DistributedSampler``. With ``num_workers`` DataLoader workers, the batches of one
    group go to different workers, each of which decodes the group's chunks it needs: a
    chunk is decoded at most ``min(num_workers, chunks * chunk_length / batch_size)`` times
    an epoch.
    """

    def __init__(self, dataset: H5ImageDataset | int, chunk_length: int | None = None, *,
                 seed: int = 0, chunks: int = CACHED_CHUNKS) -> None:
        if isinstance(dataset, int | np.integer) and not isinstance(dataset, bool):
            count = int(dataset)
            if chunk_length is None:
                raise BadInputError("give chunk_length with a number of images, or pass the "
                                    "H5ImageDataset itself")
        elif isinstance(dataset, bool) or not hasattr(dataset, "chunk_length"):
            raise BadInputTypeError(f"dataset must be an H5ImageDataset or a number of "
                                    f"images, got {type(dataset).__name__}")
        else:
            count = len(dataset)
            chunk_length = dataset.chunk_length if chunk_length is None else chunk_length
        self.count = check_integer(count, "the number of images")
        self.chunk_length = check_integer(chunk_length, "chunk_length", minimum=1)
        self.seed = check_integer(seed, "seed")
        self.chunks = check_integer(chunks, "chunks", minimum=1)
        cached = getattr(dataset, "cached_chunks", None)
        if cached is not None and isinstance(dataset, H5ImageDataset):
            stored = dataset.chunk_length
            if cached * stored < self.chunks * self.chunk_length:
                warnings.warn(
                    f"the sampler shuffles {self.chunks} chunks of {self.chunk_length} images "
                    f"together but the dataset keeps {cached} chunks of {stored}: chunks are "
                    f"decoded again and again; pass H5ImageDataset(cached_chunks="
                    f"{-(-self.chunks * self.chunk_length // stored)}) or fewer chunks to the "
                    "sampler", FastmixWarning, stacklevel=2)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use ``epoch``'s order (an integer from 0)."""
        self.epoch = check_integer(epoch, "epoch")

    def __len__(self) -> int:
        """Return the number of indices an epoch yields."""
        return self.count

    def __iter__(self):
        """Yield the indices in this epoch's order."""
        rng = np.random.default_rng((self.seed, self.epoch))
        self.epoch += 1
        starts = np.arange(0, self.count, self.chunk_length)
        rng.shuffle(starts)
        for first in range(0, starts.size, self.chunks):
            group = np.concatenate([np.arange(start, min(start + self.chunk_length, self.count))
                                    for start in starts[first:first + self.chunks].tolist()])
            yield from group[rng.permutation(group.size)].tolist()
