"""Chunk codecs: decode and encode HDF5 chunks outside HDF5, so that threads can run them.

HDF5's filter pipeline is single-threaded and h5py serializes every call under one lock.
The codecs here reproduce the filters fastmix knows byte-exactly enough for HDF5 to read
them back (gzip, shuffle, LZ4, Zstd, Blosc2) with libraries that release the GIL. Any
other pipeline (lzf, Blosc, Bitshuffle, Fletcher32, szip, scale-offset, n-bit) makes
:func:`pipeline_for` return ``None`` and the engine falls back to h5py's own I/O.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from fastmix.errors import DamagedChunkError, UnsupportedFilterError  # re-exported
from fastmix.store.hdf5.lowlevel import dataset_filters

FILTER_DEFLATE = 1
FILTER_SHUFFLE = 2
FILTER_LZ4 = 32004
FILTER_ZSTD = 32015
FILTER_BLOSC2 = 32026

_LZ4_HEADER = struct.Struct(">QI")
_LZ4_BLOCK_SIZE = struct.Struct(">I")
_LZ4_DEFAULT_BLOCK = 1 << 30


@dataclass(frozen=True)
class Filter:
    """One filter of a dataset's pipeline: its id and client values."""

    code: int
    values: tuple[int, ...]

    def decode(self, data: bytes | memoryview, size: int, chunk_shape: tuple[int, ...],
               itemsize: int) -> bytes | memoryview:
        """Undo this filter; ``size`` is the chunk's decoded size in bytes.

        Raises
        ------
        DamagedChunkError
            When the result would not be exactly ``size`` bytes (checked before any
            allocation a codec header asks for).
        """
        if self.code == FILTER_DEFLATE:
            decoder = zlib.decompressobj()
            plain = decoder.decompress(data, size)
            if decoder.unconsumed_tail:
                raise DamagedChunkError(f"deflate data decodes to more than {size} bytes")
            return _exactly(plain, size, "deflate")
        if self.code == FILTER_SHUFFLE:
            return _shuffle(_exactly(data, size, "shuffle"),
                            self.values[0] if self.values else itemsize, inverse=True)
        if self.code == FILTER_LZ4:
            return _exactly(_lz4_decode(data, size), size, "LZ4")
        if self.code == FILTER_ZSTD:
            import zstandard

            declared = zstandard.frame_content_size(data)
            if declared not in (-1, size):
                raise DamagedChunkError(f"Zstd frame claims {declared} bytes, not {size}")
            plain = _zstd_decompressor().decompress(data, max_output_size=size)
            return _exactly(plain, size, "Zstd")
        if self.code == FILTER_BLOSC2:
            import blosc2

            frame = blosc2.ndarray_from_cframe(bytes(data))  # compressed, nothing decoded
            declared = int(np.prod(frame.shape, dtype=np.int64)) * frame.dtype.itemsize
            if declared != size:
                raise DamagedChunkError(f"Blosc2 frame claims {declared} bytes, not {size}")
            array = frame[...]
            return _exactly(memoryview(np.ascontiguousarray(array)).cast("B"), size, "Blosc2")
        raise UnsupportedFilterError(self.code)

    def encode(self, data: bytes | memoryview, chunk_shape: tuple[int, ...],
               itemsize: int) -> bytes | memoryview:
        """Apply this filter as HDF5 would."""
        if self.code == FILTER_DEFLATE:
            return zlib.compress(data, self.values[0] if self.values else 6)
        if self.code == FILTER_SHUFFLE:
            return _shuffle(data, self.values[0] if self.values else itemsize)
        if self.code == FILTER_LZ4:
            block = self.values[0] if self.values and self.values[0] > 0 else _LZ4_DEFAULT_BLOCK
            return _lz4_encode(data, block)
        if self.code == FILTER_ZSTD:
            level = self.values[0] if self.values else 3
            return _zstd_compressor(level).compress(data)
        if self.code == FILTER_BLOSC2:
            return _blosc2_encode(data, self.values, chunk_shape, itemsize)
        raise UnsupportedFilterError(self.code)


_SUPPORTED = {FILTER_DEFLATE, FILTER_SHUFFLE, FILTER_LZ4, FILTER_ZSTD, FILTER_BLOSC2}


class ChunkPipeline:
    """The filters of one chunked dataset, applied in HDF5's order.

    Parameters
    ----------
    filters : list of Filter
        In pipeline order (as ``H5Pget_filter`` lists them).
    chunk_shape : tuple of int
        The dataset's chunk shape.
    itemsize : int
        Bytes per element.
    """

    def __init__(self, filters: list[Filter], chunk_shape: tuple[int, ...], itemsize: int):
        self.filters = filters
        self.chunk_shape = chunk_shape
        self.itemsize = itemsize
        self.chunk_bytes = int(np.prod(chunk_shape, dtype=np.int64)) * itemsize

    @property
    def identity(self) -> bool:
        """Whether chunks are stored as raw bytes."""
        return not self.filters

    def decode(self, data: bytes | memoryview, filter_mask: int = 0) -> bytes | memoryview:
        """Turn stored chunk bytes into raw chunk bytes (filters skipped per ``filter_mask``)."""
        for position in reversed(range(len(self.filters))):
            if filter_mask & (1 << position):
                continue
            data = self.filters[position].decode(data, self.chunk_bytes, self.chunk_shape,
                                                 self.itemsize)
        return data

    def encode(self, data: bytes | memoryview) -> bytes | memoryview:
        """Raw chunk bytes -> stored chunk bytes, every filter applied (mask 0)."""
        for item in self.filters:
            data = item.encode(data, self.chunk_shape, self.itemsize)
        return data


def codec_filters(dataset) -> list[Filter]:
    """Return the filter pipeline of an h5py dataset, as filters fastmix can apply."""
    return [Filter(stored.code, stored.values) for stored in dataset_filters(dataset)]


def pipeline_for(dataset) -> ChunkPipeline | None:
    """Return the dataset's chunk pipeline, or ``None`` when fastmix cannot reproduce it."""
    if dataset.chunks is None:
        return None
    filters = codec_filters(dataset)
    if any(item.code not in _SUPPORTED for item in filters):
        return None
    return ChunkPipeline(filters, tuple(dataset.chunks), dataset.dtype.itemsize)


def _shuffle(data, itemsize: int, inverse: bool = False):
    """HDF5's shuffle filter: byte ``k`` of every element together (``inverse``: undo it).

    Trailing bytes that do not fill an element are copied as they are, as HDF5 does.
    """
    if itemsize <= 1:
        return data
    raw = np.frombuffer(data, dtype=np.uint8)
    whole = raw.size - raw.size % itemsize
    by_element, by_byte = (-1, itemsize), (itemsize, -1)
    target, source = (by_element, by_byte) if inverse else (by_byte, by_element)
    moved = np.empty_like(raw)
    moved[:whole].reshape(target)[...] = raw[:whole].reshape(source).T
    moved[whole:] = raw[whole:]
    return memoryview(moved)


def _exactly(data, size: int, codec: str):
    if memoryview(data).nbytes != size:
        raise DamagedChunkError(f"{codec} data decodes to {memoryview(data).nbytes} bytes, "
                                f"not the chunk's {size}")
    return data


def _lz4_decode(data, size: int) -> bytes | bytearray | memoryview:
    import lz4.block

    view = memoryview(data)
    total, block_size = _LZ4_HEADER.unpack_from(view, 0)
    if total != size or block_size < 1:
        raise DamagedChunkError(f"LZ4 header claims {total} bytes in blocks of {block_size}, "
                                f"not the chunk's {size}")
    if total <= block_size:  # one block, the usual case: no reassembly copy
        (stored,) = _LZ4_BLOCK_SIZE.unpack_from(view, _LZ4_HEADER.size)
        payload = view[_LZ4_HEADER.size + _LZ4_BLOCK_SIZE.size:][:stored]
        if stored == total:
            return payload
        return lz4.block.decompress(payload, uncompressed_size=total)
    out = bytearray(total)
    position = _LZ4_HEADER.size
    written = 0
    while written < total:
        expected = min(block_size, total - written)
        (stored,) = _LZ4_BLOCK_SIZE.unpack_from(view, position)
        position += _LZ4_BLOCK_SIZE.size
        payload = view[position:position + stored]
        position += stored
        if stored == expected:
            out[written:written + expected] = payload
        else:
            out[written:written + expected] = lz4.block.decompress(
                payload, uncompressed_size=expected)
        written += expected
    return out


def _lz4_encode(data, block_size: int) -> bytes:
    import lz4.block

    view = memoryview(data).cast("B")
    total = view.nbytes
    block_size = min(block_size, total) if total else block_size
    parts = [_LZ4_HEADER.pack(total, block_size)]
    for start in range(0, total, block_size):
        block = view[start:start + block_size]
        compressed = lz4.block.compress(block, store_size=False)
        if len(compressed) >= len(block):
            compressed = bytes(block)
        parts.append(_LZ4_BLOCK_SIZE.pack(len(compressed)))
        parts.append(compressed)
    return b"".join(parts)


_ZSTD: dict[tuple, object] = {}  # zstandard (de)compressors, by kind, level and thread


def _zstd_decompressor():
    import threading

    import zstandard

    # zstandard objects are not thread-safe: one per thread.
    name = ("d", threading.get_ident())
    if name not in _ZSTD:
        _ZSTD[name] = zstandard.ZstdDecompressor()
    return _ZSTD[name]


def _zstd_compressor(level: int):
    import threading

    import zstandard

    name = ("c", level, threading.get_ident())
    if name not in _ZSTD:
        _ZSTD[name] = zstandard.ZstdCompressor(level=level)
    return _ZSTD[name]


def _blosc2_encode(data, values: tuple[int, ...], chunk_shape: tuple[int, ...], itemsize: int):
    import blosc2

    # cd_values: revision, version, typesize, chunk bytes, clevel, shuffle, codec, ndim,
    # then the chunk shape (see hdf5plugin's blosc2 filter).
    clevel = values[4] if len(values) > 4 else 5
    shuffle = values[5] if len(values) > 5 else 1
    codec = values[6] if len(values) > 6 else 0
    filters = {0: blosc2.Filter.NOFILTER, 1: blosc2.Filter.SHUFFLE,
               2: blosc2.Filter.BITSHUFFLE}.get(shuffle, blosc2.Filter.SHUFFLE)
    array = np.frombuffer(data, dtype=f"V{itemsize}").reshape(chunk_shape)
    cparams = blosc2.CParams(codec=blosc2.Codec(codec), clevel=clevel, typesize=itemsize,
                             filters=[filters], nthreads=1)
    return blosc2.asarray(array, chunks=chunk_shape, cparams=cparams).to_cframe()
