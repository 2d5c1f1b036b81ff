"""Read every chunk of an images dataset before an in-place run writes the first byte.

An in-place run that met a damaged chunk part-way used to leave the windows before it mixed
and the store pending. :func:`first_unreadable` reads and decodes the images of the windows
a run is about to rewrite, a few chunks at a time (bounded memory: one piece of
``threads`` chunks, decoded in the run's codec pool), so a damaged store is refused before
anything changes. Unfiltered chunks and contiguous data hold the pixels as they are, so no
read of them can fail to decode; for them it checks that every stored extent lies inside the
file, without reading the pixels (a read error of the machine stays an ``OSError``, exit 1,
and an in-place run survives it like a crash).
"""

from __future__ import annotations

import os
from concurrent.futures import Executor

import numpy as np

from fastmix.errors import BadInputError
from fastmix.store.hdf5.chunkio import WindowReader
from fastmix.store.hdf5.chunks import chunk_length
from fastmix.store.hdf5.lowlevel import stored_chunks


def first_unreadable(dataset, windows: list[tuple[int, tuple[int, int]]], pool: Executor,
                     threads: int) -> tuple[int, str] | None:
    """Return ``(window index, reason)`` of the first window that cannot be read, or ``None``.

    Parameters
    ----------
    dataset : h5py.Dataset
        The images dataset (its file open read-only or read-write).
    windows : list of (int, (int, int))
        The windows to check: ``(index, (start, stop))``, in order.
    pool : Executor
        The codec threads.
    threads : int
        How many chunks are decoded at a time.
    """
    reader = WindowReader(dataset, pool, raw=True)
    try:
        if reader.path in ("chunks", "contiguous"):
            return _outside_the_file(dataset, windows)
        piece = chunk_length(dataset) * max(1, threads)
        buffer = np.empty((min(piece, max(dataset.shape[0], 1)), *dataset.shape[1:]),
                          dtype=dataset.dtype)
        for index, (start, stop) in windows:
            for first in range(start, stop, piece):
                try:
                    reader.read(first, min(first + piece, stop), buffer)
                except BadInputError as error:
                    return index, str(error)
    finally:
        reader.close()
    return None


def _outside_the_file(dataset, windows) -> tuple[int, str] | None:
    size = os.path.getsize(dataset.file.filename)
    step = chunk_length(dataset)
    if dataset.chunks is None:
        offset = dataset.id.get_offset()
        end = None if offset is None else int(offset) + int(dataset.id.get_storage_size())
        if end is not None and end > size and windows:
            return windows[0][0], (f"its pixels end at byte {end:,}, past the end of the file "
                                   f"({size:,} bytes): the file is truncated")
        return None
    extents = {chunk.first: (chunk.offset, chunk.size) for chunk in stored_chunks(dataset)}
    for index, (start, stop) in windows:
        for first in range(start - start % step, stop, step):
            offset, length = extents.get(first, (0, 0))
            if offset + length > size:
                return index, (f"the chunk of images {first}-{first + step - 1} ends at byte "
                               f"{offset + length:,}, past the end of the file ({size:,} "
                               "bytes): the file is truncated")
    return None

