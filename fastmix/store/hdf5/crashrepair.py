"""Undo what a killed writer leaves in an HDF5 file's superblock, before it is reopened.

Two things, both measured on HDF5 2.0 (see ``docs/crash-safety.md``):

* Files in the v110-or-later format (superblock version 2 or 3) carry an "open for write"
  flag that a killed writer never clears; HDF5 then refuses to open the file ("file is
  already open for write (may use <h5clear file> ...)"). :func:`clear_open_flag` does what
  ``h5clear -s`` does: zero the flag and recompute the superblock checksum.
* The end-of-allocation address (EOA) in the superblock is written last when HDF5 flushes.
  A writer killed mid-flush can leave chunk-index entries pointing past it; the next session
  would then allocate new chunks over chunks the index still references. :func:`raise_eoa`
  does what ``h5clear --increment=0`` does: EOA := max(EOA, EOF, end of every chunk).

Only the in-place engine calls these, under its lock, on a store its own journal shows was
interrupted.
"""

from __future__ import annotations

import ctypes
import os
import struct

from fastmix.store.hdf5.access import HDF5_SIGNATURE
from fastmix.store.hdf5.lowlevel import stored_chunks

_MASK = 0xFFFFFFFF


def _rot(value: int, shift: int) -> int:
    return ((value << shift) | (value >> (32 - shift))) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 ``hashlittle``, HDF5's metadata checksum."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    position = 0
    while length > 12:
        x, y, z = struct.unpack_from("<III", data, position)
        a, b, c = (a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK
        a = (a - c) & _MASK; a ^= _rot(c, 4); c = (c + b) & _MASK  # noqa: E702
        b = (b - a) & _MASK; b ^= _rot(a, 6); a = (a + c) & _MASK  # noqa: E702
        c = (c - b) & _MASK; c ^= _rot(b, 8); b = (b + a) & _MASK  # noqa: E702
        a = (a - c) & _MASK; a ^= _rot(c, 16); c = (c + b) & _MASK  # noqa: E702
        b = (b - a) & _MASK; b ^= _rot(a, 19); a = (a + c) & _MASK  # noqa: E702
        c = (c - b) & _MASK; c ^= _rot(b, 4); b = (b + a) & _MASK  # noqa: E702
        length -= 12
        position += 12
    if length == 0:
        return c
    tail = data[position:] + bytes(12 - length)
    x, y, z = struct.unpack("<III", tail)
    a, b, c = (a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK
    c ^= b; c = (c - _rot(b, 14)) & _MASK  # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & _MASK  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & _MASK  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & _MASK  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & _MASK  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & _MASK  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & _MASK  # noqa: E702
    return c


def _superblock_offset(descriptor: int) -> int | None:
    size = os.fstat(descriptor).st_size
    offset = 0
    while offset + 8 <= size:
        if os.pread(descriptor, 8, offset) == HDF5_SIGNATURE:
            return offset
        offset = 512 if offset == 0 else offset * 2
    return None


def clear_open_flag(path: str | os.PathLike) -> bool:
    """Clear the superblock's "open for write" flags; return whether any was set."""
    descriptor = os.open(os.fspath(path), os.O_RDWR)
    try:
        offset = _superblock_offset(descriptor)
        if offset is None:
            return False
        head = os.pread(descriptor, 12, offset)
        version, offset_size = head[8], head[9]
        if version < 2 or head[11] == 0:
            return False  # versions 0 and 1 never refuse to open on this flag
        length = 12 + 4 * offset_size
        block = bytearray(os.pread(descriptor, length, offset))
        block[11] = 0
        os.pwrite(descriptor, bytes(block) + struct.pack("<I", lookup3(bytes(block))), offset)
        os.fsync(descriptor)
        return True
    finally:
        os.close(descriptor)


def _library():
    """Return the HDF5 library h5py loaded (found in this process's memory map)."""
    import h5py  # noqa: F401 - makes sure the library is loaded

    with open("/proc/self/maps") as maps:
        for line in maps:
            path = line.rsplit(" ", 1)[-1].strip()
            if "libhdf5" in os.path.basename(path) and "_hl" not in os.path.basename(path):
                library = ctypes.CDLL(path)
                library.H5Fincrement_filesize.argtypes = [ctypes.c_int64, ctypes.c_uint64]
                library.H5Fincrement_filesize.restype = ctypes.c_int
                return library
    raise OSError("the HDF5 library h5py uses was not found in this process")


def chunk_extents(dataset) -> list[tuple[int, int]]:
    """``(file offset, stored size)`` of every allocated chunk, sorted by offset."""
    return sorted((chunk.offset, chunk.size) for chunk in stored_chunks(dataset))


def shared_bytes(extents: list[tuple[int, int]]) -> int | None:
    """Return the offset of the first chunk that overlaps the one before it, or ``None``."""
    end = 0
    for offset, size in extents:
        if offset < end:
            return offset
        end = max(end, offset + size)
    return None


def raise_eoa(file, dataset) -> None:
    """Set the open ``file``'s EOA to at least its size and the end of every chunk.

    Parameters
    ----------
    file : h5py.File
        Open for writing.
    dataset : h5py.Dataset
        The chunked dataset whose chunk index may point past the stored EOA.
    """
    ends = [offset + size for offset, size in chunk_extents(dataset)]
    size = os.path.getsize(file.filename)
    increment = max(0, max(ends, default=0) - size)
    if _library().H5Fincrement_filesize(file.id.id, increment) < 0:
        raise OSError("H5Fincrement_filesize failed")
