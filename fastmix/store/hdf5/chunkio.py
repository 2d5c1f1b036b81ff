"""Reading and writing windows of images into reused buffers.

Two paths, chosen per dataset:

raw chunks
    Chunks that hold whole images and whose filters :mod:`fastmix.store.hdf5.codecs` can
    reproduce are read by byte offset with ``os.preadv`` (no h5py call, so no h5py lock)
    and decoded in a thread pool; written chunks are encoded in the pool and stored with
    ``write_direct_chunk``. Unfiltered chunks and contiguous datasets are read straight
    into the window buffer; unfiltered chunks allocated at creation are written in place
    with ``os.pwrite`` (:meth:`WindowWriter.write_in_place`).
h5py
    Anything else (lzf, Blosc, Bitshuffle, chunks that split images, unaligned windows)
    goes through h5py's own ``read_direct`` / ``write_direct``; HDF5 runs the filters.
"""

from __future__ import annotations

import errno
import os
import threading
from collections import deque
from concurrent.futures import Executor

import numpy as np

from fastmix.errors import BadInputError
from fastmix.store.hdf5.chunks import chunk_bytes, chunk_length
from fastmix.store.hdf5.codecs import ChunkPipeline, pipeline_for
from fastmix.store.hdf5.lowlevel import stored_chunks

#: Bytes the new-file engine hands to the writer at a time (whole chunks).
PIECE_BYTES = 2 << 20


def piece_length(dataset, target_bytes: int = PIECE_BYTES) -> int:
    """Images per streamed output piece: whole chunks, about ``target_bytes``, at least one."""
    image_bytes = int(np.prod(dataset.shape[1:], dtype=np.int64)) * dataset.dtype.itemsize
    step = chunk_length(dataset)  # a sharded store's: its shards' chunks
    if chunk_bytes(dataset) == 0:
        return max(1, target_bytes // max(image_bytes, 1))
    return step * max(1, -(-target_bytes // max(step * image_bytes, 1)))


def codec_threads() -> int:
    """Threads for chunk codecs: the CPUs this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _holds_whole_images(dataset) -> bool:
    return dataset.chunks is not None and tuple(dataset.chunks[1:]) == tuple(dataset.shape[1:])


def _read_exactly(descriptor: int, target: memoryview, offset: int) -> None:
    done = 0
    while done < target.nbytes:
        count = os.preadv(descriptor, [target[done:]], offset + done)
        if count <= 0:
            raise OSError(f"unexpected end of file reading {target.nbytes} bytes at {offset}")
        done += count


def _write_exactly(descriptor: int, source: memoryview, offset: int) -> None:
    done = 0
    while done < source.nbytes:
        done += os.pwrite(descriptor, source[done:], offset + done)


def _chunk_index(dataset) -> dict[int, tuple[int, int, int]] | None:
    """Map chunk start (along axis 0) -> (file offset, stored size, filter mask)."""
    try:
        chunks = stored_chunks(dataset)
    except Exception:  # older HDF5 without H5Dchunk_iter: use the h5py path
        return None
    return {chunk.first: (chunk.offset, chunk.size, chunk.filter_mask) for chunk in chunks}


def _fill_value(dataset) -> np.ndarray:
    fill = dataset.fillvalue
    return np.asarray(fill if fill is not None else 0, dtype=dataset.dtype)


#: ``errno`` values of a failing machine, not of a damaged file: they stay exit status 1.
MACHINE_ERRORS = frozenset({errno.EIO, errno.ENOMEM, errno.ENOSPC, errno.EACCES, errno.EPERM,
                            errno.ESTALE, errno.ENXIO, errno.EBADF})


def _damaged(dataset, start: int, stop: int, error: BaseException) -> BadInputError:
    text = str(error).strip().splitlines()
    detail = text[0] if text else type(error).__name__
    return BadInputError(
        f"store {dataset.file.filename!r}: images {start}-{stop - 1} of {dataset.name!r} "
        f"cannot be read ({detail}); the file is truncated or damaged"
    )


class WindowReader:
    """Reads windows ``[start, stop)`` of an images dataset into a caller's buffer.

    Parameters
    ----------
    dataset : h5py.Dataset
        The images dataset (its file opened read-only or read-write).
    pool : Executor
        Thread pool for chunk decoding.
    raw : bool
        Allow the raw-chunk path (``False`` forces h5py, for tests and unaligned windows).
    """

    def __init__(self, dataset, pool: Executor, raw: bool = True):
        self.dataset = dataset
        self.pool = pool
        self.image_shape = tuple(dataset.shape[1:])
        self.image_bytes = int(np.prod(self.image_shape, dtype=np.int64)) * dataset.dtype.itemsize
        self.chunk_images = chunk_length(dataset)
        self.pipeline: ChunkPipeline | None = None
        self.index: dict[int, tuple[int, int, int]] | None = None
        self.contiguous_offset: int | None = None
        self.descriptor: int | None = None
        self._local = threading.local()
        self.path = "h5py"
        if dataset.is_virtual:  # no direct chunk access through a virtual dataset
            raw = False
        if raw and dataset.chunks is None and dataset.compression is None:
            offset = dataset.id.get_offset()
            if offset is not None and not dataset.external:
                self.contiguous_offset = int(offset)
                self.path = "contiguous"
        elif raw and _holds_whole_images(dataset):
            pipeline = pipeline_for(dataset)
            index = _chunk_index(dataset) if pipeline is not None else None
            if pipeline is not None and index is not None:
                self.pipeline, self.index = pipeline, index
                self.path = "raw-chunks" if pipeline.filters else "chunks"
        if self.path != "h5py":
            self.descriptor = os.open(dataset.file.filename, os.O_RDONLY)

    def staging_bytes(self, threads: int) -> int:
        """Memory this reader needs besides the window buffer."""
        if self.path == "raw-chunks":
            return 3 * threads * chunk_bytes(self.dataset)
        if self.path == "h5py":
            return 2 * chunk_bytes(self.dataset)
        return 0

    def read(self, start: int, stop: int, buffer: np.ndarray) -> np.ndarray:
        """Read images ``[start, stop)`` into ``buffer[:stop - start]`` and return that view.

        Raises
        ------
        BadInputError
            When the stored bytes cannot be read as images (a truncated file, a damaged
            chunk or index); a failure of the machine (an I/O error) stays an ``OSError``.
        """
        try:
            return self._read(start, stop, buffer)
        except BadInputError:
            raise
        except OSError as error:
            if error.errno in MACHINE_ERRORS:
                raise
            raise _damaged(self.dataset, start, stop, error) from None
        except MemoryError:
            raise
        except Exception as error:  # codecs (zlib.error, ...) and HDF5
            raise _damaged(self.dataset, start, stop, error) from None

    def _read(self, start: int, stop: int, buffer: np.ndarray) -> np.ndarray:
        count = stop - start
        target = buffer[:count]
        if count == 0:
            return target
        if self.path == "contiguous":
            assert self.descriptor is not None and self.contiguous_offset is not None
            _read_exactly(self.descriptor, memoryview(target).cast("B"),
                          self.contiguous_offset + start * self.image_bytes)
        elif self.path in ("chunks", "raw-chunks"):
            chunk_starts = range(start - start % self.chunk_images, stop, self.chunk_images)
            flat = target.reshape(-1).view(np.uint8)
            tasks = [self.pool.submit(self._read_chunk, chunk_start, start, stop, flat)
                     for chunk_start in chunk_starts]
            for task in tasks:
                task.result()
        else:
            self.dataset.read_direct(target, np.s_[start:stop], np.s_[0:count])
        return target

    def _read_chunk(self, chunk_start: int, start: int, stop: int, flat: np.ndarray) -> None:
        assert self.index is not None and self.descriptor is not None  # the chunk paths'
        assert self.pipeline is not None
        first = max(chunk_start, start)
        last = min(chunk_start + self.chunk_images, stop, self.dataset.shape[0])
        destination = flat[(first - start) * self.image_bytes:(last - start) * self.image_bytes]
        skip = (first - chunk_start) * self.image_bytes
        entry = self.index.get(chunk_start)
        if entry is None:  # never written: HDF5 reads the fill value
            destination.view(self.dataset.dtype)[...] = _fill_value(self.dataset)
            return
        offset, size, mask = entry
        if self.path == "chunks":
            _read_exactly(self.descriptor, memoryview(destination), offset + skip)
            return
        stored = self._stored_buffer(size)
        _read_exactly(self.descriptor, stored, offset)
        decoded = self.pipeline.decode(stored, mask)
        destination[...] = np.frombuffer(decoded, dtype=np.uint8, count=destination.size,
                                         offset=skip)

    def _stored_buffer(self, size: int) -> memoryview:
        """Return a per-thread buffer for stored chunk bytes, reused across chunks."""
        buffer = getattr(self._local, "stored", None)
        if buffer is None or len(buffer) < size:
            buffer = bytearray(max(size, chunk_bytes(self.dataset) + 4096))
            self._local.stored = buffer
        return memoryview(buffer)[:size]

    def close(self) -> None:
        """Release the file descriptor."""
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None


class WindowWriter:
    """Writes windows of images from a caller's buffer into an images dataset.

    Parameters
    ----------
    dataset : h5py.Dataset
        The output images dataset (file open for writing).
    pool : Executor
        Thread pool for chunk encoding.
    threads : int
        Encodes kept in flight ahead of the writes (bounds the memory they hold).
    raw : bool
        Allow the raw-chunk path.
    """

    def __init__(self, dataset, pool: Executor, threads: int, raw: bool = True):
        self.dataset = dataset
        self.pool = pool
        self.ahead = max(1, threads) + 1
        self.image_shape = tuple(dataset.shape[1:])
        self.image_bytes = int(np.prod(self.image_shape, dtype=np.int64)) * dataset.dtype.itemsize
        self.chunk_images = chunk_length(dataset)
        self.pipeline = pipeline_for(dataset) if raw and _holds_whole_images(dataset) else None
        self.path = "h5py"
        self.scratch: np.ndarray | None = None
        self.offsets: dict[int, int] | None = None
        self.descriptor: int | None = None
        if self.pipeline is not None:
            self.path = "raw-chunks" if self.pipeline.filters else "chunks"

    def write_in_place(self, filename: str) -> bool:
        """Write unfiltered chunks with ``os.pwrite`` at their file offsets.

        Only where every chunk of the dataset is already allocated (early allocation) at
        full size: the chunks are then overwritten in place, without h5py (whose lock and
        GIL it holds while writing) or HDF5's chunk index. Returns whether that path is on;
        call :meth:`close` when done.
        """
        if self.path != "chunks" or self.offsets is not None:
            return self.offsets is not None
        index = _chunk_index(self.dataset)
        full = self.chunk_images * self.image_bytes
        chunks = -(-self.dataset.shape[0] // self.chunk_images)
        if index is None or len(index) != chunks or \
                any(size != full or mask for _, size, mask in index.values()):
            return False
        self.offsets = {start: offset for start, (offset, _, _) in index.items()}
        self.descriptor = os.open(filename, os.O_WRONLY)
        return True

    def close(self) -> None:
        """Release the file descriptor of :meth:`write_in_place`."""
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None

    def staging_bytes(self, threads: int) -> int:
        """Memory this writer needs besides the window buffer."""
        if self.path == "raw-chunks":
            return (2 * self.ahead + 1) * chunk_bytes(self.dataset)  # encoded + temporaries
        return 2 * chunk_bytes(self.dataset)

    def piece_length(self) -> int:
        """Images per streamed piece (see :func:`piece_length`)."""
        return piece_length(self.dataset)

    def encode_piece(self, start: int, stop: int, images: np.ndarray) -> list:
        """Start encoding images ``[start, stop)`` (chunk-aligned); see :meth:`store_piece`.

        The encodes run in the pool; ``images`` must stay untouched until
        :meth:`store_piece` of the result returns.
        """
        if self.path == "h5py":
            return [(None, (start, stop, images))]
        assert self.pipeline is not None  # every path but h5py has one
        flat = images.reshape(-1).view(np.uint8)
        rank = self.dataset.ndim
        items = []
        for chunk_start in range(start, stop, self.chunk_images):
            raw = self._chunk_bytes(flat, chunk_start - start,
                                    min(self.chunk_images, stop - chunk_start))
            offset = (chunk_start,) + (0,) * (rank - 1)
            items.append((offset, self.pool.submit(self.pipeline.encode, raw)
                          if self.pipeline.filters else raw))
        return items

    def store_piece(self, items: list) -> None:
        """Write what :meth:`encode_piece` returned, in order."""
        for offset, encoded in items:
            if offset is None:
                start, stop, images = encoded
                self.dataset.write_direct(images, np.s_[0:stop - start], np.s_[start:stop])
            else:
                self._store(offset, encoded)

    def write(self, start: int, stop: int, images: np.ndarray) -> None:
        """Write ``images`` (C-contiguous, ``stop - start`` of them) at ``[start, stop)``."""
        count = stop - start
        if count == 0:
            return
        if self.path == "h5py":
            self.dataset.write_direct(images, np.s_[0:count], np.s_[start:stop])
            return
        if start % self.chunk_images:
            raise ValueError("raw-chunk writes must start on a chunk boundary")
        assert self.pipeline is not None  # every path but h5py has one
        flat = images.reshape(-1).view(np.uint8)
        rank = self.dataset.ndim
        pending: deque = deque()
        for chunk_start in range(start, stop, self.chunk_images):
            if len(pending) >= self.ahead:
                self._store(*pending.popleft())
            raw = self._chunk_bytes(flat, chunk_start - start, min(self.chunk_images,
                                                                   stop - chunk_start))
            offset = (chunk_start,) + (0,) * (rank - 1)
            if self.pipeline.filters:
                pending.append((offset, self.pool.submit(self.pipeline.encode, raw)))
            else:
                pending.append((offset, raw))
        while pending:
            self._store(*pending.popleft())

    def _chunk_bytes(self, flat: np.ndarray, first: int, count: int):
        data = flat[first * self.image_bytes:(first + count) * self.image_bytes]
        if count == self.chunk_images:
            return memoryview(data)
        # HDF5 stores edge chunks whole; pad the images past the end with zeros.
        if self.scratch is None:
            self.scratch = np.zeros(self.chunk_images * self.image_bytes, dtype=np.uint8)
        self.scratch[:data.size] = data
        self.scratch[data.size:] = 0
        return memoryview(self.scratch)

    def _store(self, offset: tuple[int, ...], encoded) -> None:
        if not isinstance(encoded, memoryview | bytes | bytearray):
            encoded = encoded.result()
        if self.offsets is not None:
            assert self.descriptor is not None  # opened with the offsets (write_in_place)
            _write_exactly(self.descriptor, memoryview(encoded).cast("B"),
                           self.offsets[offset[0]])
            return
        self.dataset.id.write_direct_chunk(offset, encoded, 0)
