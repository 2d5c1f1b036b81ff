"""The chunk geometry of an images dataset: images and bytes per chunk.

A sharded store (a virtual dataset over shard files, as ``fastmix mix --shards`` writes) has
no chunks of its own: its chunking is its shards' (:func:`template_dataset`), which a copy of
it takes, so that the windows and pieces of a copy fall on its chunks.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import numpy as np

from fastmix.store.hdf5.shard_binding import mapped_file


def chunk_length(dataset) -> int:
    """Images per chunk along axis 0 (1 for contiguous datasets: any window works).

    A sharded store's chunks are its shards' (which its copies take, so that the windows and
    pieces of a copy fall on its chunks).
    """
    chunks = _chunks(dataset)
    return int(chunks[0]) if chunks is not None else 1


def chunk_bytes(dataset) -> int:
    """Bytes of one chunk (0 for contiguous datasets)."""
    chunks = _chunks(dataset)
    if chunks is None:
        return 0
    return int(np.prod(chunks, dtype=np.int64)) * dataset.dtype.itemsize


def _chunks(dataset) -> tuple[int, ...] | None:
    if dataset.chunks is not None or not dataset.is_virtual:
        return dataset.chunks
    with template_dataset(dataset) as template:
        return template.chunks if template is not dataset else None


@contextlib.contextmanager
def template_dataset(dataset) -> Iterator:
    """Return the dataset whose creation properties a copy of ``dataset`` takes.

    ``dataset`` itself, except for a sharded store (a virtual dataset whose first source is a
    chunked dataset in another file, as ``fastmix mix --shards`` writes): that source, so
    that the copy is one real dataset with the shards' chunking and filters.
    """
    import h5py

    path = first_shard(dataset)
    if path is None:
        yield dataset
        return
    with h5py.File(path, "r") as shard:
        source = shard[dataset.virtual_sources()[0].dset_name]
        yield source if source.chunks is not None and not source.is_virtual else dataset


def first_shard(dataset) -> str | None:
    """Return the path of the first shard file a sharded store maps, or ``None``."""
    if not dataset.is_virtual:
        return None
    path = mapped_file(dataset.virtual_sources()[0].file_name)
    if path is None or path == ".":
        return None
    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(dataset.file.filename)), path)
    return path if os.path.isfile(path) else None
