"""A map-style dataset over an HDF5 image store, ready for ``torch.utils.data.DataLoader``.

torch is not needed: the class only has ``__len__`` and ``__getitem__``. The HDF5 file is
opened lazily, once per process (the open handle is dropped when the process id changes and
when the object is pickled), so DataLoader workers, forked or spawned, each open their own.
Sequential reads go through a cache of one window of whole chunks: the window around the
requested image is read once and served from memory; a jump elsewhere reads a single image.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from fastmix.errors import BadInputError

#: Bytes of the sequential-read window (whole chunks; at least one chunk).
WINDOW_BYTES = 16 * 1024**2


class H5ImageDataset:
    """Images and labels of an HDF5 store as ``(image, label)`` pairs.

    Parameters
    ----------
    path : str or PathLike
        The store.
    transform : callable, optional
        Applied to each image (a NumPy array of shape (H, W) or (H, W, C)) before it is
        returned, for example ``torchvision.transforms.ToTensor()``.
    images, labels : str
        Dataset names.

    Attributes
    ----------
    labels : ndarray of int64
        Every label (string labels are replaced by their index in :attr:`classes`).
    classes : list of str
        Class names: the labels' ``class_names`` attribute, the sorted string labels, or the
        label values as text.

    Examples
    --------
    >>> dataset = fastmix.H5ImageDataset("mixed.h5")  # doctest: +SKIP
    >>> image, label = dataset[0]  # doctest: +SKIP
    >>> loader = torch.utils.data.DataLoader(  # doctest: +SKIP
    ...     dataset, batch_size=64, shuffle=True, num_workers=4)
    """

    def __init__(self, path: str | os.PathLike, transform: Callable | None = None,
                 images: str = "images", labels: str = "labels") -> None:
        from fastmix.store.access import open_store
        from fastmix.store.hdf5 import class_names_of

        self.path = os.fspath(path)
        self.transform = transform
        self.images_name = images
        self.labels_name = labels
        with open_store(self.path, images=images, labels=labels) as store:
            self._shape = tuple(store.images.shape)
            self._dtype = store.images.dtype
            chunk = store.images.chunks[0] if store.images.chunks else 1
            names = class_names_of(store.file, store.labels_name)
            raw_labels = store.labels
        if raw_labels.dtype.kind in "iub":
            self.labels = raw_labels.astype(np.int64)
            top = int(self.labels.max()) + 1 if len(self.labels) else 0
            self.classes = names if names is not None else [str(v) for v in range(top)]
        else:
            self.classes, codes = np.unique(raw_labels.astype(str), return_inverse=True)
            self.classes = [str(name) for name in self.classes]
            self.labels = codes.astype(np.int64)
        image_bytes = int(np.prod(self._shape[1:], dtype=np.int64)) * self._dtype.itemsize
        self.window = chunk * max(1, WINDOW_BYTES // max(1, chunk * image_bytes))
        self._reset()

    def _reset(self) -> None:
        self._file = None
        self._dataset = None
        self._pid = None
        self._cache_start = 0
        self._cache = None
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
        return self._shape[0]

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one image."""
        return self._shape[1:]

    def _read(self, index: int) -> np.ndarray:
        dataset = self._images()
        cache = self._cache
        if cache is not None and self._cache_start <= index < self._cache_start + len(cache):
            image = cache[index - self._cache_start]
        elif index == self._last + 1:
            start = index - index % self.window
            self._cache = dataset[start:min(start + self.window, len(self))]
            self._cache_start = start
            image = self._cache[index - start]
        else:
            image = dataset[index]
        self._last = index
        return np.array(image)

    def __getitem__(self, index: int) -> tuple[object, int]:
        if isinstance(index, bool) or not isinstance(index, int | np.integer):
            raise BadInputError(f"index must be an integer, got {type(index).__name__}")
        count = len(self)
        position = int(index) + count if index < 0 else int(index)
        if not 0 <= position < count:
            raise IndexError(f"index {index} is out of range for {count} images")
        image = self._read(position)
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.labels[position])

    def close(self) -> None:
        """Close the file in this process (it reopens on the next read)."""
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._reset()

    def __enter__(self) -> H5ImageDataset:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in ("_file", "_dataset", "_cache"):
            state[name] = None
        state["_pid"] = None
        state["_last"] = -2
        return state

    def __repr__(self) -> str:
        return (f"H5ImageDataset({self.path!r}, {len(self):,} images of "
                f"{'x'.join(map(str, self.image_shape))} {self._dtype}, "
                f"{len(self.classes)} classes)")
