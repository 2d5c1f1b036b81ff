"""The h5py low-level calls fastmix makes, in one place.

The filter pipeline of a dataset, its chunk index, its layout (data kept in other files),
the metadata cache of a file and the ``class_names`` attribute of a labels dataset are read
here and nowhere else, so that every module that needs them (the codecs, the new-file copy,
the in-place engine, ``info``, export, preview and the PyTorch dataset) reads them the same
way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class StoredFilter:
    """One filter of a dataset's pipeline, as ``H5Pget_filter`` lists it.

    Attributes
    ----------
    code : int
        The HDF5 filter identifier (1 deflate, 2 shuffle, 32004 LZ4, ...).
    flags : int
        ``H5Z_FLAG_*`` bits (optional or mandatory).
    values : tuple of int
        The filter's client data (its options).
    name : str
        The name the filter registered, ``""`` when it gave none.
    """

    code: int
    flags: int
    values: tuple[int, ...]
    name: str


def plist_filters(plist) -> list[StoredFilter]:
    """Return the filters of a dataset creation property list, in pipeline order."""
    filters = []
    for index in range(plist.get_nfilters()):
        code, flags, values, name = plist.get_filter(index)
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        filters.append(StoredFilter(int(code), int(flags), tuple(int(v) for v in values),
                                    str(name or "")))
    return filters


def dataset_filters(dataset) -> list[StoredFilter]:
    """Return the filter pipeline of an h5py dataset, in order (empty for an unfiltered one)."""
    return plist_filters(dataset.id.get_create_plist())


def is_filtered(dataset) -> bool:
    """Whether ``dataset`` is chunked with at least one filter (its chunks move on rewrite)."""
    return dataset.chunks is not None and dataset.id.get_create_plist().get_nfilters() > 0


@dataclass(frozen=True)
class StoredChunk:
    """Where one allocated chunk lies in the file.

    Attributes
    ----------
    first : int
        Index of the chunk's first element along axis 0.
    offset : int
        Byte offset of the stored chunk in the file.
    size : int
        Stored bytes (after the filters).
    filter_mask : int
        Bit ``k`` set: filter ``k`` was skipped for this chunk.
    """

    first: int
    offset: int
    size: int
    filter_mask: int


def stored_chunks(dataset) -> list[StoredChunk]:
    """Every allocated chunk of a chunked dataset, in the order of HDF5's chunk index.

    Uses ``H5Dchunk_iter`` (HDF5 1.14 and later); an older library raises, which callers
    that have another path catch. A contiguous dataset has none.
    """
    chunks: list[StoredChunk] = []
    if dataset.chunks is None:
        return chunks

    def visit(info) -> None:
        chunks.append(StoredChunk(int(info.chunk_offset[0]), int(info.byte_offset),
                                  int(info.size), int(info.filter_mask)))

    dataset.id.chunk_iter(visit)
    return chunks


def foreign_layout(dataset) -> str | None:
    """How ``dataset`` keeps its data in other files, or ``None`` when it keeps it inside.

    A *virtual* dataset maps datasets of other files (sharded stores look like this); an
    *external* one keeps its raw bytes in files the dataset names (HDF5 resolves relative
    names from the current folder). fastmix reads through both, but never writes through
    a layout it did not create: a crafted store could aim that write at any file.
    """
    import h5py

    dcpl = dataset.id.get_create_plist()
    if dcpl.get_layout() == h5py.h5d.VIRTUAL:
        return "a virtual dataset mapping other files"
    if dcpl.get_external_count():
        names = sorted({dcpl.get_external(index)[0].decode(errors="replace")
                        for index in range(dcpl.get_external_count())})
        return f"kept in external raw files ({', '.join(names)})"
    return None


def hold_metadata(file) -> None:
    """Keep an open file's dirty HDF5 metadata in memory until it is flushed.

    Turns off metadata-cache evictions, so that HDF5 metadata reaches the file only when
    the caller flushes (see ``docs/crash-safety.md``).
    """
    config = file.id.get_mdc_config()
    config.evictions_enabled = False
    config.incr_mode = 0  # H5C_incr__off: required when evictions are disabled
    config.flash_incr_mode = 0
    config.decr_mode = 0
    file.id.set_mdc_config(config)


def class_names_of(file, labels_name: str) -> list[str] | None:
    """Return the ``class_names`` attribute of the labels dataset as a list of ``str``, if any.

    Bytes are decoded as UTF-8 (undecodable bytes replaced); a single string is a list of
    one name.
    """
    if labels_name not in file:
        return None
    names = file[labels_name].attrs.get("class_names")
    if names is None:
        return None
    return [name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
            for name in np.atleast_1d(names).tolist()]
