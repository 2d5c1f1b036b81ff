"""The new-file engine: stream a store's windows, mixed or unmixed, into a new file.

:func:`fastmix.store.engine.mix_store` and :func:`~fastmix.store.engine.unmix_store` check
their inputs (:mod:`fastmix.store.prepare`) and cut the windows, then call
:func:`run_new_file`. The output is written under a temporary name beside the destination
and renamed only once it is complete and fsynced (:mod:`fastmix.store.durable.atomic`).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fastmix.keys import Key
from fastmix.progress import PieceProgress, Progress
from fastmix.spec import MixSpec
from fastmix.store.allocator import tune_allocator
from fastmix.store.durable.atomic import atomic_output
from fastmix.store.durable.writeback import EarlyWriteback
from fastmix.store.hdf5.chunkio import WindowReader, WindowWriter
from fastmix.store.hdf5.chunks import chunk_bytes
from fastmix.store.hdf5.lowlevel import require_stored_here
from fastmix.store.hdf5.record import PREFIX, write_mix_attributes
from fastmix.store.newfile.output import copy_userblock, create_output
from fastmix.store.report import StoreReport
from fastmix.store.stream import stream_windows


def _output_cache(dataset) -> int:
    # Room for two chunks where HDF5 runs the filters; raw-chunk paths bypass the cache.
    return max(1 << 20, 2 * chunk_bytes(dataset))


class _WritebackWriter:
    """A :class:`WindowWriter` that queues its output for writeback every few pieces.

    The disk then writes while the rest is mixed, and the final fsync has little left.
    """

    def __init__(self, writer: WindowWriter, writeback: EarlyWriteback, every: int = 8):
        self.writer, self.writeback, self.every = writer, writeback, every
        self.dataset = writer.dataset
        self.stored = 0

    def piece_length(self) -> int:
        return self.writer.piece_length()

    def encode_piece(self, start: int, stop: int, images: np.ndarray) -> list:
        return self.writer.encode_piece(start, stop, images)

    def store_piece(self, items: list) -> None:
        self.writer.store_piece(items)
        self.stored += 1
        if self.stored % self.every == 0:
            self.writeback.kick()


def run_new_file(operation: str, source: str, destination: str, *, spec: MixSpec, key: Key,
                 store, windows: list[tuple[int, int]], labels_name: str, overwrite: bool,
                 progress: bool, backend: str, pool: ThreadPoolExecutor, threads: int,
                 raw: bool, piece: int) -> StoreReport:
    """Mix (``operation="mix"``) or unmix (``"unmix"``) ``store`` into ``destination``.

    Parameters
    ----------
    operation : {"mix", "unmix"}
        What to do; a mix records the ``fastmix_*`` attributes on the output.
    source, destination : str
        The source store's path and the new file's (checked by the caller).
    spec, key
        Mixing parameters and key.
    store : Store
        The open source store, with its labels.
    windows : list of (int, int)
        The windows, in order; the position of a window is its index.
    labels_name : str
        Name of the labels dataset (recorded on a mix).
    overwrite : bool
        Replace an existing ``destination``.
    progress : bool
        Show a progress bar on a terminal.
    backend : str
        Kernel backend.
    pool : ThreadPoolExecutor
        Codec threads; ``threads`` is their number.
    threads : int
        Codec threads.
    raw : bool
        Use the raw-chunk I/O path.
    piece : int
        Images per output piece.

    Returns
    -------
    StoreReport
    """
    import h5py

    started = time.perf_counter()
    tune_allocator()
    images = store.images
    require_stored_here(source, store.file, "images", images)
    if labels_name and labels_name in store.file:
        require_stored_here(source, store.file, "labels", store.file[labels_name])
    reader = WindowReader(images, pool, raw=raw)
    try:
        with atomic_output(destination, overwrite) as temporary:
            with h5py.File(temporary, "w", libver=store.file.libver,
                           rdcc_nbytes=_output_cache(images),
                           userblock_size=store.file.userblock_size) as target:
                output = create_output(store.file, target, images, skip_prefix=PREFIX,
                                       early_allocation=raw)
                writer = WindowWriter(output, pool, threads, raw=raw)
                if raw:
                    target.flush()  # the allocated chunks exist in the file before pwrite
                    writer.write_in_place(temporary)
                longest = max((stop - start for start, stop in windows), default=0)
                writeback = EarlyWriteback(temporary)
                try:
                    with Progress(store.count, store.image_bytes, operation, progress) as bar:
                        unpartnered = stream_windows(
                            reader, PieceProgress(_WritebackWriter(writer, writeback), bar),
                            windows, store.labels, spec, key, threads=threads, piece=piece,
                            inverse=operation == "unmix", backend=backend)
                        writeback.kick()
                finally:
                    writeback.close()
                    writer.close()
                if operation == "mix":
                    write_mix_attributes(output, spec, window=longest,
                                         key_check=key.check_value, labels=labels_name,
                                         unpartnered=unpartnered, key=key)
                io_path = f"{reader.path}/{writer.path}"
            copy_userblock(source, temporary, store.file.userblock_size)
    finally:
        reader.close()
    return StoreReport(operation=operation, destination=destination, spec=spec,
                       images=store.count, windows=len(windows), window=longest,
                       unpartnered=unpartnered if operation == "mix" else 0,
                       pixel_bytes=store.count * store.image_bytes,
                       seconds=time.perf_counter() - started, io_path=io_path)
