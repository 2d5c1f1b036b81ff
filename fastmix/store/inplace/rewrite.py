"""The window loop of an in-place run, and the start of a rollback.

For each window: a reader thread reads it and journals its input, the undo record
(:class:`_UndoJournalingReader`); its output is written over it piece by piece
(:class:`_CommittingWriter`), and once the window is durable (flush, fsync) the journal
commits it. A compressed dataset is also made durable after every chunk it rewrites
(:class:`_ChunkFlushingWriter`; why: the notes of :mod:`fastmix.store.inplace.run`).
:func:`begin_rollback` puts back the window an interrupted mix was writing and turns its
journal into the unmix of its done windows. A run that cannot go on stops between two
windows with :class:`InPlaceRunStopped`, the store consistent.
"""

from __future__ import annotations

import bisect
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from fastmix.errors import BadInputError, InPlaceRunStopped, hint  # InPlaceRunStopped: re-exported
from fastmix.keys import Key
from fastmix.progress import PieceProgress, Progress
from fastmix.store.allocator import tune_allocator
from fastmix.store.durable.fsync import fsync_path
from fastmix.store.durable.journal import RESERVE_WINDOW, Journal, JournalError
from fastmix.store.durable.writeback import EarlyWriteback
from fastmix.store.hdf5.chunkio import WindowReader, WindowWriter, codec_threads
from fastmix.store.hdf5.chunks import chunk_length
from fastmix.store.hdf5.crashrepair import chunk_extents, raise_eoa, shared_bytes
from fastmix.store.hdf5.lowlevel import hold_metadata, is_filtered
from fastmix.store.prepare import piece_images
from fastmix.store.report import StoreReport
from fastmix.store.stream import stream_windows


def sync_store(store) -> None:
    """Flush HDF5's caches to the file and the file to the disk."""
    store.file.flush()
    fsync_path(store.path)


def _prepare_writes(store) -> None:
    """Make an open store safe to rewrite, before its first write.

    Why each step: the notes of :mod:`fastmix.store.inplace.run`.
    """
    hold_metadata(store.file)
    if is_filtered(store.images):
        _check_chunk_index(store.path, store.images)
        raise_eoa(store.file, store.images)


def _check_chunk_index(source: str, dataset) -> None:
    """Refuse to write through a chunk index with two chunks on the same bytes.

    fastmix never leaves one (see :class:`_ChunkFlushingWriter`), but rewriting either
    chunk would then silently destroy the other, so it is checked before every run.
    """
    offset = shared_bytes(chunk_extents(dataset))
    if offset is not None:
        raise InPlaceRunStopped(
            f"the chunk index of {dataset.name!r} in {source!r} is damaged: two chunks share "
            f"the bytes at offset {offset}. Writing would destroy one of them; the store "
            "cannot be rewritten in place. Restore it from a copy"
        )


class _ChunkFlushingWriter(WindowWriter):
    """A window writer that flushes (and fsyncs) HDF5 after every chunk it writes.

    A rewritten compressed chunk moves, and HDF5 may put it where another chunk of the
    same window used to be. Making the file durable after each chunk keeps every state it
    can be caught in to one moved chunk, so the chunk index never holds two entries on one
    place.
    """

    def __init__(self, dataset, pool, threads, flush, raw):
        super().__init__(dataset, pool, threads, raw=raw)
        self._flush = flush

    def _store(self, offset, encoded) -> None:
        super()._store(offset, encoded)
        self._flush()

    def store_piece(self, items: list) -> None:
        for offset, encoded in items:
            if offset is not None:
                self._store(offset, encoded)
                continue
            start, stop, images = encoded
            step = self.chunk_images
            first = start
            while first < stop:
                last = min(stop, (first // step + 1) * step)
                self.dataset.write_direct(images, np.s_[first - start:last - start],
                                          np.s_[first:last])
                self._flush()
                first = last


class _Commits:
    """The committed-window count, shared by the reader and writer threads.

    The reader thread waits on it before it reuses an undo slot; the writer thread advances
    it.
    """

    def __init__(self, committed: int):
        self.value = committed
        self.failed = False
        self.condition = threading.Condition()

    def advance(self, value: int) -> None:
        with self.condition:
            self.value = value
            self.condition.notify_all()

    def fail(self) -> None:
        with self.condition:
            self.failed = True
            self.condition.notify_all()

    def wait_for(self, value: int) -> None:
        with self.condition:
            self.condition.wait_for(lambda: self.failed or self.value >= value)
            if self.failed:
                raise InPlaceRunStopped("stopped because an earlier window failed; "
                                        f"{hint('resume_again')}")


class _UndoJournalingReader:
    """Reads a window and journals its input (the undo record) before it is handed on.

    The window pending after a crash is read from its complete undo record instead (the
    store may hold it torn); without a complete record the store still holds its input.
    """

    def __init__(self, inner: WindowReader, journal: Journal, commits: _Commits,
                 index_of: dict[int, int], pool):
        self.inner = inner
        self.dataset = inner.dataset
        self.path = inner.path
        self.journal = journal
        self.commits = commits
        self.index_of = index_of
        self.pool = pool
        self.pending = commits.value

    def read(self, start: int, stop: int, buffer: np.ndarray) -> np.ndarray:
        index = self.index_of[start]
        if index == self.pending:
            record = self.journal.pending_undo(buffer)
            if record is not None and (record.start, record.stop) == (start, stop):
                return buffer[:stop - start]
        try:
            images = self.inner.read(start, stop, buffer)
        except BadInputError as error:  # damaged since the run read every chunk first
            raise BadInputError(
                f"{error}; window {index} was not touched, the windows before it are done "
                f"and the store is pending: repair the chunk and {hint('resume_again')}, or "
                "(a reversible mix) put the done windows back with an in-place unmix"
            ) from None
        # Slot index % 2 holds window index - 2's input until that window is committed.
        self.commits.wait_for(index - 1)
        try:
            self.journal.write_undo(index, start, stop, images, self.pool)
        except JournalError as error:
            raise InPlaceRunStopped(
                f"{error.strerror}; window {index} was not touched, the store is consistent: "
                f"free space and {hint('resume_again')}"
            ) from None
        return images

    def close(self) -> None:
        self.inner.close()


class _CommittingWriter:
    """Writes pieces into the store in order and commits each window once it is durable.

    The window loop may hand over further pieces before it learns that one failed; after a
    failure every later piece is refused without touching the store.
    """

    def __init__(self, inner: WindowWriter, store, journal: Journal, commits: _Commits,
                 windows: list[tuple[int, int]], writeback: EarlyWriteback):
        self.inner = inner
        self.writeback = writeback
        self.path = inner.path
        self.store = store
        self.journal = journal
        self.commits = commits
        self.windows = windows
        self.starts = [start for start, _ in windows]

    def piece_length(self) -> int:
        return self.inner.piece_length()

    def encode_piece(self, first: int, last: int, images: np.ndarray):
        return first, last, self.inner.encode_piece(first, last, images)

    def store_piece(self, piece) -> None:
        first, last, items = piece
        index = bisect.bisect_right(self.starts, first) - 1
        if self.commits.failed or index != self.commits.value:
            self.commits.fail()
            raise InPlaceRunStopped(
                f"window {index} was not written because window {self.commits.value} was "
                f"not committed; {hint('resume_again')}"
            )
        try:
            if first == self.windows[index][0]:
                # The room this window's moved chunks may need (see checks.reserve_for).
                self.journal.release(RESERVE_WINDOW)
            self.inner.store_piece(items)
            # Start the disk on this piece now, so the window's fsync has little left to do.
            self.writeback.kick()
            if last == self.windows[index][1]:
                sync_store(self.store)
                self.journal.commit(index + 1)
                self.commits.advance(index + 1)
                if index + 1 < len(self.windows):
                    self.journal.hold(RESERVE_WINDOW)
        except JournalError as error:
            self.commits.fail()
            raise InPlaceRunStopped(
                f"{error.strerror}: the disk is full after window {index}; the store is "
                f"consistent ({index + 1} window(s) done): free space and "
                f"{hint('resume_again')}"
            ) from None
        except Exception as error:  # HDF5 raises several types
            self.commits.fail()
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise InPlaceRunStopped(
                f"writing window {index} into the store failed ({type(error).__name__}: "
                f"{first_line}); the journal holds its input: {hint('resume_again')}"
            ) from None


def rewrite_windows(source, store, journal, key, progress, backend, resumed,
                    memory) -> StoreReport:
    """Rewrite the windows the journal has left, each journaled and committed; report them."""
    header = journal.header
    images = store.images
    spec = header.spec
    windows = header.window_ranges()
    inverse = header.operation == "unmix"
    step = chunk_length(images)
    aligned = all(start % step == 0 for start, _ in windows)
    filtered = is_filtered(images)
    committed = journal.committed
    threads = codec_threads()
    piece = piece_images(store, memory, threads)
    tune_allocator()
    _prepare_writes(store)
    with ThreadPoolExecutor(threads, thread_name_prefix="fastmix-codec") as pool:
        inner: WindowWriter
        if filtered:
            inner = _ChunkFlushingWriter(images, pool, threads, lambda: sync_store(store), aligned)
        else:
            inner = WindowWriter(images, pool, threads, raw=aligned)
        commits = _Commits(committed)
        writeback = EarlyWriteback(source)
        writer = _CommittingWriter(inner, store, journal, commits, windows, writeback)
        reader = _UndoJournalingReader(
            WindowReader(images, pool, raw=aligned), journal, commits,
            {start: index for index, (start, _) in enumerate(windows)}, pool)
        try:
            with Progress(store.count, store.image_bytes, header.operation, progress) as bar:
                bar.update(sum(stop - start for start, stop in windows[:committed]))
                # The remaining windows keep their own indices, which seed their plans.
                stream_windows(reader, PieceProgress(writer, bar), windows[committed:],
                               store.labels, spec, key, threads=threads, piece=piece,
                               inverse=inverse, backend=backend,
                               indices=range(committed, len(windows)))
        finally:
            reader.close()
            writeback.close()
        io_path = f"in-place {reader.path}/{inner.path}"
    # A resumed run reports what it did itself: the windows left, not the whole store.
    done = sum(stop - start for start, stop in windows[committed:])
    return StoreReport(operation=header.operation, destination=source, spec=spec,
                       images=done, windows=len(windows) - committed, window=header.window,
                       unpartnered=header.unpartnered,
                       pixel_bytes=done * store.image_bytes, seconds=0.0,
                       io_path=io_path,
                       extra={"resumed_at_window": committed if resumed else None,
                              "store_images": store.count, "store_windows": len(windows),
                              **({"rolled_back_windows": len(windows)} if header.rollback
                                 else {})})


def begin_rollback(store, journal: Journal, key: Key) -> Journal:
    """Turn an interrupted mix into the unmix of the windows it had done; return its journal.

    The window the mix was writing gets its input back from its undo record (the store may
    hold it torn); the mix's journal is then replaced, atomically, by a rollback journal of
    the same run over its done windows, which :func:`rewrite_windows` unmixes as any in-place unmix.
    A kill at any moment leaves one of the two journals, each consistent with the store.
    """
    header = journal.header
    committed = journal.committed
    if journal.ready > committed:
        start, stop = header.window_ranges()[committed]
        buffer = np.empty((stop - start, *header.shape[1:]), dtype=np.dtype(header.dtype))
        record = journal.pending_undo(buffer)
        if record is not None:
            _prepare_writes(store)
            journal.release(RESERVE_WINDOW)
            _write_back(store, start, stop, buffer)
            try:
                journal.hold(RESERVE_WINDOW)
            except JournalError as error:
                raise InPlaceRunStopped(f"{error.strerror}; the store is consistent: free "
                                        "space and run the unmix again") from None
    rollback = replace(header, operation="unmix", windows=committed, rollback=True)
    try:
        replacement = Journal.create(journal.path, rollback,
                                     header.window * header.image_bytes, key, header.reserve,
                                     replace_existing=True)
    except JournalError as error:
        raise InPlaceRunStopped(f"{error.strerror}; the store is consistent: free space and "
                                "run the unmix again") from None
    journal.close()
    return replacement


def _write_back(store, start: int, stop: int, images: np.ndarray) -> None:
    """Write ``images`` over ``[start, stop)`` chunk by chunk, durable after each chunk."""
    dataset = store.images
    step = chunk_length(dataset)
    first = start
    while first < stop:
        last = min(stop, (first // step + 1) * step)
        dataset.write_direct(images, np.s_[first - start:last - start], np.s_[first:last])
        sync_store(store)
        first = last
