"""The h5py low-level calls fastmix makes, in one place.

The filter pipeline of a dataset, its chunk index, its layout (data kept in other files),
the metadata cache of a file and the ``class_names`` attribute of a labels dataset are read
here and nowhere else, so that every module that needs them (the codecs, the new-file copy,
the in-place engine, ``info``, export, preview and the PyTorch dataset) reads them the same
way. So are the identity of an object (its header address, one for all its names), the one
rule for which filters are lossy (:func:`lossy_filter`), and the checks both store modes
make on them before writing (:func:`require_stored_here`, :func:`require_in_place_safe`).
"""

from __future__ import annotations

import os
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


def copy_stored_chunks(source, target, shift: int, buffer: bytearray | None = None, *,
                       length: int) -> int:
    """Copy every stored chunk of ``source`` into ``target``, ``shift`` elements further on axis 0.

    The chunks are copied as stored (``read_direct_chunk`` then ``write_direct_chunk`` with
    the chunk's filter mask): no filter runs, nothing is decoded, so ``target`` holds the
    very bytes ``source`` does. Both datasets must have the same dtype, element shape
    (``shape[1:]``), chunk shape and filter pipeline, ``source`` must hold ``length``
    elements that fit in ``target`` from ``shift`` on, and ``shift`` must be a multiple of
    the chunk length; ``buffer`` (grown as needed) is reused across chunks. Returns the number
    of stored bytes copied.

    Raises
    ------
    ValueError
        The dtypes, element shapes, chunk shapes or filter pipelines differ, ``source`` does
        not hold ``length`` elements or they do not fit, or ``shift`` is not chunk-aligned.
    """
    if source.dtype != target.dtype or tuple(source.shape[1:]) != tuple(target.shape[1:]) \
            or source.shape[0] != length or not 0 <= shift <= target.shape[0] - length:
        raise ValueError(f"cannot copy the stored chunks of {source.name!r} into "
                         f"{target.name!r}: {source.dtype} {source.shape} into "
                         f"{target.dtype} {target.shape} at {shift}, {length} expected")
    if source.chunks is None or tuple(source.chunks) != tuple(target.chunks or ()) or \
            dataset_filters(source) != dataset_filters(target) or shift % source.chunks[0]:
        raise ValueError(f"cannot copy the stored chunks of {source.name!r} into "
                         f"{target.name!r}: chunks {source.chunks} and {target.chunks}, "
                         f"shift {shift}, filters differ or are not aligned")
    chunks: list[tuple[tuple[int, ...], int]] = []
    source.id.chunk_iter(lambda info: chunks.append((tuple(int(o) for o in info.chunk_offset),
                                                     int(info.size))))
    copied = 0
    buffer = bytearray() if buffer is None else buffer
    for offset, size in chunks:
        if len(buffer) < size:
            buffer.extend(bytes(size - len(buffer)))
        mask, stored = source.id.read_direct_chunk(offset, out=buffer)
        try:
            target.id.write_direct_chunk((offset[0] + shift, *offset[1:]), stored, mask)
        finally:
            stored.release()  # the buffer grows only without views on it
        copied += size
    return copied


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


def object_address(item) -> int:
    """Return the address of an object's header in its file, one for all its names.

    Hard links to one object, soft links resolving to it and references to it all give the
    same address; compare addresses only between objects of one file.
    """
    import h5py

    identifier = item.id if isinstance(item, h5py.HLObject) else item  # an object or its id
    return int(h5py.h5o.get_info(identifier).addr)


def same_file(first, second) -> bool:
    """Whether two open h5py objects live in one HDF5 file (not behind an external link)."""
    return first.id.fileno == second.id.fileno


# -- lossy filters ----------------------------------------------------------------------------
# The one rule for "may this filter change a value that is written through it": fastmix's
# reversible guarantee holds only through filters that give back exactly what they are given.

FILTER_SCALEOFFSET = 6
_SCALEOFFSET_INT = 2  # H5Z_SO_INT; the float modes (D-scale, E-scale) round values
_BLOSC2 = 32026
_BLOSC2_TRUNC_PREC = 4  # Blosc2's filter that zeroes low mantissa bits
_BLOSC2_LOSSLESS_CODECS = {0, 1, 2, 4, 5}  # blosclz, lz4, lz4hc, zlib, zstd

#: Filters that give back exactly the bytes written through them, by HDF5 filter id.
LOSSLESS_FILTERS = {
    1: "deflate", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "n-bit", 307: "bzip2",
    32000: "lzf", 32001: "Blosc", 32004: "LZ4", 32008: "Bitshuffle", 32015: "Zstd",
    32018: "FCIDECOMP", _BLOSC2: "Blosc2", 32033: "HTJ2K",
}
#: Filters that keep an approximation of the values (whatever their parameters say).
LOSSY_FILTERS = {32013: "ZFP", 32014: "fpzip", 32017: "SZ", 32019: "JPEG", 32024: "SZ3",
                 32028: "SPERR"}


def lossy_filter(stored: StoredFilter) -> str | None:
    """Why writing through ``stored`` may change values, or ``None`` when it never does.

    Lossless: the filters of :data:`LOSSLESS_FILTERS` (Blosc2 unless its TRUNC_PREC filter
    or a plugin codec is set; HTJ2K through the filter, which compresses reversibly) and
    scale-offset on integers with scale factor 0 (``H5Z_SO_INT_MINBITS_DEFAULT``: HDF5
    computes the bits each chunk needs) or a factor of at least the type's width in bits
    (nothing to drop). Measured on 8- to 64-bit integers, with and without fill values,
    read back after the file was closed: those kept every value, while a smaller factor
    (``scaleoffset=3`` in h5py) changed values in about one case in five. Lossy: that
    integer case, scale-offset on floating point (D-scale rounds to the given decimal
    digits), ZFP (its reversible mode cannot be told apart from the stored parameters, so
    all of ZFP counts as lossy), SZ, SZ3, SPERR, fpzip, JPEG, and every filter fastmix does
    not know.
    """
    values = stored.values
    if stored.code == FILTER_SCALEOFFSET:
        factor = values[1] if len(values) > 1 else 0
        if values[:1] != (_SCALEOFFSET_INT,) or (len(values) > 3 and values[3] != 0):
            return f"scale-offset (floating point, {factor} decimal digits kept)"
        if factor == 0 or (len(values) > 4 and factor >= 8 * values[4]):
            return None
        return f"scale-offset (integer, {factor} bits kept)"
    if stored.code == _BLOSC2:
        if len(values) > 5 and values[5] == _BLOSC2_TRUNC_PREC:
            return "Blosc2 with its TRUNC_PREC filter"
        if len(values) > 6 and values[6] not in _BLOSC2_LOSSLESS_CODECS:
            return f"Blosc2 with codec {values[6]}, which fastmix does not know as lossless"
        return None
    if stored.code in LOSSLESS_FILTERS:
        return None
    if stored.code in LOSSY_FILTERS:
        return LOSSY_FILTERS[stored.code]
    name = f" ({stored.name})" if stored.name else ""
    return f"filter {stored.code}{name}, which fastmix does not know as lossless"


def lossy_filters(dataset) -> list[str]:
    """Describe the lossy filters of ``dataset``'s pipeline (:func:`lossy_filter`)."""
    return [reason for stored in dataset_filters(dataset)
            if (reason := lossy_filter(stored)) is not None]


# -- what a run refuses in the source's structure ---------------------------------------------


def require_stored_here(path: str, file, role: str, dataset) -> None:
    """Refuse an images or labels dataset that lives in another file (an external link).

    Mixing it would write (in place) or leave (in a new file) pixels outside the store the
    user named; the named dataset must be stored in the file itself.

    Raises
    ------
    BadInputError
        Naming the other file.
    """
    from fastmix.errors import BadInputError

    if same_file(dataset, file):
        return
    raise BadInputError(
        f"{role} dataset {dataset.name!r} named in {path!r} is stored in another file, "
        f"{dataset.file.filename!r}, reached through an external link; fastmix mixes only "
        "datasets stored in the store itself. Copy it into the store (h5copy) or give the "
        "file that holds it"
    )


def first_external_link(file) -> str | None:
    """Return ``"NAME (to FILE:PATH)"`` for the first external link in ``file``, or ``None``.

    Links are walked without being followed, so a link to a missing or hostile file is
    never opened.
    """
    import h5py

    found: list[str] = []

    def look(name: str, link) -> bool | None:
        if isinstance(link, h5py.ExternalLink):
            found.append(f"/{name} (to {link.filename}:{link.path})")
            return True  # stops the walk
        return None

    file.visititems_links(look)
    return found[0] if found else None


def require_in_place_safe(path: str, file, images, labels: str | None) -> None:
    """Refuse, before anything is written, what in-place mode cannot rewrite safely.

    The images (and the labels, by the given name and by the one a mix recorded) must be
    stored in the file itself (:func:`require_stored_here`); the file must hold no external
    link (:func:`first_external_link`: the store would keep a live link to another file,
    which may hold the originals, and in place nothing can leave it out); and the images
    must have no lossy filter (:func:`lossy_filter`): rewriting values through one changes
    them, and in place nothing else keeps the originals.

    Raises
    ------
    BadInputError
        One line naming what was found and what to do.
    """
    from fastmix.errors import BadInputError

    require_stored_here(path, file, "images", images)
    recorded = images.attrs.get("fastmix_labels")
    if isinstance(recorded, bytes):
        recorded = recorded.decode("utf-8", "replace")
    for name in dict.fromkeys((labels, recorded)):
        if isinstance(name, str) and name and name in file:
            require_stored_here(path, file, "labels", file[name])
    external = first_external_link(file)
    if external is not None:
        raise BadInputError(
            f"{path!r} holds an external link {external}; in place it would stay a live link "
            "to another file, which may hold the originals. Mix into a new file (it leaves "
            "external links out) or delete the link first"
        )
    lossy = lossy_filters(images)
    if lossy:
        raise BadInputError(
            f"images dataset {images.name!r} of {path!r} uses the lossy filter "
            f"{lossy[0]}; values rewritten through it change, so in-place mode refuses it. "
            "Write a new file instead (fastmix mix or unmix SRC DST stores the images "
            "without that filter), or remove it first (h5repack -f NONE)"
        )


def create_unbuffered_file(path: str):
    """Create (truncate) the HDF5 file ``path`` with no chunk cache and no sieve buffer.

    Every write then reaches the file in the call that makes it, so a full disk fails there,
    while the file is open. Pixels still dirty in a cache when a dataset is closed fail again
    at the close, and h5py then crashes the process (a segfault while collecting garbage).
    """
    import h5py

    # h5py.File(path, "w")'s settings (no times stored, earliest format), less the caches
    creation = h5py.h5p.create(h5py.h5p.FILE_CREATE)
    creation.set_obj_track_times(False)
    access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    access.set_libver_bounds(h5py.h5f.LIBVER_EARLIEST, h5py.h5f.LIBVER_LATEST)
    _, slots, _, weight = access.get_cache()
    access.set_cache(0, slots, 0, weight)
    access.set_sieve_buf_size(0)
    return h5py.File(h5py.h5f.create(os.fsencode(path), h5py.h5f.ACC_TRUNC, fapl=access,
                                     fcpl=creation))
