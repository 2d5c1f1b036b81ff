"""In-place mixing and unmixing that survive SIGKILL, power loss and a full disk.

``mix_store(src, in_place=True)`` and ``unmix_store(src, in_place=True)`` land here. The
images dataset is rewritten window by window; every window's input goes into the undo
journal (:mod:`fastmix.store.journal`) before its output touches the store::

    reader thread: read window k (it still holds its input)
                   journal: undo record of k (the input bytes, checksummed), fsync
    main thread:   mix window k piece by piece (as in new-file mode)
    writer thread: write the pieces into the store; at the window's end flush, fsync,
                   journal: commit "k + 1 windows done", fsync

A window therefore always holds either its input or its complete output, or its input is in
the journal: after a crash, ``resume`` mixes window ``committed`` from its undo record when
the record is complete (the store may hold a torn window), and otherwise from the store
(which was not touched). Window plans derive from the key and the window index, so the
remaining windows mix exactly as in an uninterrupted run and no window is ever mixed twice.

HDF5 facts the design relies on are in ``docs/crash-safety.md``; in short: metadata-cache
evictions are turned off so that HDF5 metadata reaches the file only when fastmix flushes;
compressed datasets are flushed and fsynced after every chunk, because a rewritten
compressed chunk moves and a torn flush of several moves could leave two index entries on
one place (a run refuses to write through such an index); and a
resumed run first clears the superblock's "open for write" flag and raises the file's EOA
over every chunk (:mod:`fastmix.store.crashrepair`).

The store carries ``fastmix_state = "in-progress"`` on its images dataset while a run is
pending and ``"complete"`` after a mix. ``STORE.fastmix-journal`` and ``STORE.fastmix-lock``
exist only while a run is pending or running (and ``STORE.fastmix-journal.partial`` only after a
kill while the journal was being made; the next run replaces it). A run killed before its
journal existed or after it completed is resumed too: ``resume`` starts it, or finds it
complete and mixes nothing.
"""

from __future__ import annotations

import bisect
import fcntl
import os
import secrets
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fastmix.errors import BadInputError, FastmixError, WrongKeyError, hint
from fastmix.keys import Key
from fastmix.plan.windows import fixed_windows
from fastmix.progress import PieceProgress, Progress
from fastmix.spec import MixSpec
from fastmix.store.access import open_store, read_labels
from fastmix.store.allocator import tune_allocator
from fastmix.store.chunkio import WindowReader, WindowWriter, codec_threads
from fastmix.store.crashrepair import chunk_extents, clear_open_flag, raise_eoa, shared_bytes
from fastmix.store.durable import fsync_path
from fastmix.store.hdf5 import foreign_layout, hold_metadata, is_filtered, require_in_place_safe
from fastmix.store.journal import (
    Journal,
    JournalError,
    RunHeader,
    journal_path,
    read_journal_header,
)
from fastmix.store.lock import StoreLock
from fastmix.store.metadata import (
    COMPLETE,
    IN_PROGRESS,
    RUN_ATTRIBUTE,
    STATE_ATTRIBUTE,
    attribute_text,
    read_mix_record,
    read_state,
    remove_mix_attributes,
    write_mix_attributes,
)
from fastmix.store.prepare import (
    count_paired,
    count_unpartnered,
    mix_windows,
    piece_images,
    require_no_pairs,
    require_partners,
    require_unmixable,
    require_unmixed,
    warn_after_mix,
)
from fastmix.store.report import StoreReport
from fastmix.store.stream import stream_windows
from fastmix.store.windows import chunk_length, plan_windows
from fastmix.store.writeback import EarlyWriteback


class InPlaceRunStopped(FastmixError):
    """An in-place run stopped part-way; the store is consistent and ``resume`` finishes it."""


def run_in_place(operation: str, src: str | os.PathLike, *, key: Key,
                 spec: MixSpec | None = None, memory: int | str = "1GiB",
                 window: int | None = None, images: str = "images", labels: str = "labels",
                 progress: bool = True, resume: bool = False, force: bool = False,
                 strict: bool = False, backend: str = "cpu",
                 inverse: bool | None = None) -> StoreReport:
    """Mix (``operation="mix"``) or unmix (``"unmix"``) the images of ``src`` in place.

    Parameters
    ----------
    operation : {"mix", "unmix"}
        What to do; ``inverse=True`` is the same as ``"unmix"``.
    src : path
        The store; rewritten window by window.
    key : Key
        The key. Only its check value is stored (in the store and the journal).
    spec : MixSpec, optional
        Mixing parameters (mix only; unmix reads them from the store). Default: the spec
        recorded in the journal when a run is resumed, ``MixSpec()`` otherwise.
    memory : int or str
        Memory budget; sets the window length unless ``window`` is given.
    window : int, optional
        Window length (mix only; unmix uses the recorded one). Default: the recorded one
        when a run is resumed.
    images, labels : str
        Dataset names (unmix reads the labels name from the store).
    progress : bool
        Show a progress bar on a terminal.
    resume : bool
        Finish an interrupted run on this store; with nothing pending, start one.
    force : bool
        Mix a store that already carries a fastmix record.
    strict : bool
        Fail before anything is written when some images have no same-label partner.
    backend : str
        Kernel backend.
    inverse : bool, optional
        Unmix instead of mix.

    Returns
    -------
    StoreReport

    Raises
    ------
    BadInputError
        A pending run without ``resume``, another process running on the store, an already
        mixed store without ``force``, a read-only store, or options that differ from the
        pending run's. Nothing is changed.
    InPlaceRunStopped
        The run stopped part-way (a full disk, a failing write); the message says how to
        finish it.
    """
    if inverse:
        operation = "unmix"
    if operation not in ("mix", "unmix"):
        raise ValueError(f"operation must be 'mix' or 'unmix', got {operation!r}")
    source = os.fspath(src)
    _check_writable(source)
    started = time.perf_counter()
    lock = StoreLock(source).acquire()
    journal = None
    store = None
    try:
        journal = _open_journal(source)
        if journal is not None and not resume:
            raise BadInputError(_pending_message(source, journal))
        resumed = journal is not None
        if journal is None:
            if resume:
                _clear_flag_of_a_killed_writer(source)
            # Every check runs on a read-only open: a refused run never opens the store for
            # writing, which HDF5 marks in the file even when nothing else is written.
            with open_store(source, images, labels=None, interrupted=True) as checked:
                _refuse_foreign_layout(source, checked.images)
                require_in_place_safe(source, checked.file, checked.images, labels)
                finished = (_finished_run(operation, source, checked, key, spec, window, force)
                            if resume else None)
                run_kept = RUN_ATTRIBUTE in checked.images.attrs
                if finished is None:
                    header = _fresh_header(operation, source, checked, key, spec, memory,
                                           window, labels, force, strict)
            if finished is not None:  # killed after the run was complete: nothing is left
                if run_kept:
                    store = open_store(source, images, labels=None, writable=True)
                    _forget_run(store)
                    store.close()
                    store = None
                finished.seconds = time.perf_counter() - started
                return finished
            store = open_store(source, images, labels=None, writable=True,
                               rdcc_nbytes=1 << 20)
            journal = _start(source, store, header)
        else:
            clear_open_flag(source)  # a killed v110+ writer leaves it set
            store = open_store(source, images, labels=None, writable=True, rdcc_nbytes=1 << 20)
            _refuse_foreign_layout(source, store.images)
            header = _resumed_header(operation, source, store, journal, key, spec, window)
            if read_state(store.images) != IN_PROGRESS:
                _mark_in_progress(store, header)  # killed before the first run marked it
        store.labels = read_labels(store.file, header.labels, store.count, source)
        report = _run(source, store, journal, key, progress, backend, resumed, memory)
        _finish(store, header, report, key)
        journal.remove()
        journal = None
        _forget_run(store)
        store.close()
        store = None
    finally:
        if store is not None:
            store.close()
        if journal is not None:
            journal.close()
        lock.release()
    report.seconds = time.perf_counter() - started
    if operation == "mix":
        warn_after_mix(report.unpartnered, header.paired, stacklevel=3)
    return report


# -- guards ---------------------------------------------------------------------------------

def _check_writable(source: str) -> None:
    if not os.path.exists(source):
        raise BadInputError(f"store {source!r} does not exist; check the path")
    if not os.path.isfile(source):
        raise BadInputError(f"store {source!r} is not a file")
    mode = os.stat(source).st_mode
    # Root passes os.access on any file; a file with no write bit is still meant read-only.
    if not os.access(source, os.W_OK) or not mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH):
        raise BadInputError(
            f"store {source!r} is read-only (no write permission); make it writable "
            "(chmod u+w) to mix it in place, or write a new file: fastmix mix SRC DST"
        )
    folder = os.path.dirname(os.path.abspath(source))
    if not os.access(folder, os.W_OK | os.X_OK):
        raise BadInputError(
            f"folder {folder!r} is not writable: in-place mode keeps its journal and lock "
            "beside the store; make the folder writable, or write a new file"
        )


def _refuse_foreign_layout(source: str, dataset) -> None:
    layout = foreign_layout(dataset)
    if layout is not None:
        raise BadInputError(
            f"images dataset {dataset.name!r} of {source!r} is {layout}; in-place mode never "
            "writes through it. Write a new file instead: fastmix mix SRC DST"
        )


def _open_journal(source: str) -> Journal | None:
    path = journal_path(source)
    if not os.path.exists(path):
        return None
    journal = Journal.open(path)
    if journal is None:
        # Killed while the journal was being created: the store was never touched.
        os.unlink(path)
    return journal


def _pending_message(source: str, journal: Journal) -> str:
    header = journal.header
    return (f"store {source!r} has an interrupted in-place {header.operation} "
            f"({journal.committed} of {header.windows} windows done, journal "
            f"{journal.path!r}); {hint('resume')}")


def pending_run(source: str | os.PathLike) -> RunHeader | None:
    """Return the recorded options of an interrupted in-place run on ``source``, or ``None``.

    Reads the journal header without taking the lock (the run itself checks again under
    it). The header holds the operation, spec, window, windows, labels and the key check
    value, never the key.
    """
    return read_journal_header(journal_path(source))


def _same_spec(spec: MixSpec | None, recorded: MixSpec) -> bool:
    return spec is None or spec.canonical() == recorded.canonical()


def _same_windows(window: int | None, header: RunHeader) -> bool:
    if window is None:
        return True
    return fixed_windows(header.count, window) == header.window_ranges()


# -- planning -------------------------------------------------------------------------------

def _fresh_header(operation, source, store, key, spec, memory, window, labels, force,
                  strict) -> RunHeader:
    images = store.images
    if read_state(images) == IN_PROGRESS:
        raise BadInputError(
            f"store {source!r} was left half-rewritten by an in-place run whose journal "
            f"{journal_path(source)!r} is missing; it cannot be finished. Restore the store "
            "from a copy"
        )
    if operation == "mix":
        spec = MixSpec() if spec is None else spec
        require_unmixed(images, source, force)
        # The same windows as new-file mode for the same budget: the same loop and buffers.
        threads = codec_threads()
        windows = mix_windows(store, spec, memory, window, threads=threads, raw=True,
                              piece=piece_images(store, memory, threads))
        label_array = read_labels(store.file, labels, store.count, source)
        unpartnered = count_unpartnered(label_array, windows)
        require_partners(unpartnered, strict)
        paired = count_paired(label_array, windows, spec)
        require_no_pairs(paired, strict)
        labels_name = labels
    else:
        record = require_unmixable(images, source, key)
        spec, labels_name, unpartnered, paired = record.spec, record.labels, 0, 0
        windows = plan_windows(images, memory, record.window, aligned=False)
    length = max((stop - start for start, stop in windows), default=0)
    return RunHeader(operation=operation, images=images.name, labels=labels_name, spec=spec,
                     window=length, count=store.count, windows=len(windows),
                     key_check=key.check_value, unpartnered=unpartnered, paired=paired,
                     shape=tuple(images.shape), dtype=images.dtype.str,
                     run=secrets.token_hex(8))


def _clear_flag_of_a_killed_writer(source: str) -> None:
    """Clear the "open for write" flag a run killed without a journal may have left.

    A run killed after it opened the store for writing but before its journal existed, or
    after it removed its journal, leaves a v110+ store flagged open; HDF5 then refuses even
    a read-only open. Only when no live process holds the store: HDF5 keeps a ``flock`` on
    every file it has open (the kernel drops it when the process dies), so a lock we can
    take proves its writer is gone.
    """
    descriptor = os.open(source, os.O_RDONLY)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # open in a live process: HDF5's own refusal says so
        clear_open_flag(source)
    finally:
        os.close(descriptor)  # drops the flock


def _wrong_key() -> WrongKeyError:
    return WrongKeyError(
        "wrong key: the interrupted run used another key (its check value differs); "
        "resume with the key file it was started with"
    )


def _finished_run(operation, source, store, key, spec, window,
                  force) -> StoreReport | None:
    """Return the report of a ``resume`` that finds the run complete, or ``None``.

    A run killed after it completed (after its journal was removed, or on its way out)
    leaves no journal; resuming it must then succeed without mixing anything again. The
    store shows it: the run identifier it keeps until the journal is gone, or, for a mix, a
    complete in-place record made with this key and these options. A mix with ``--force``
    is "already complete" only by its run identifier (the record may be of an earlier run).
    """
    images = store.images
    state = read_state(images)
    if state == IN_PROGRESS:
        return None  # half rewritten: refused on the way (its journal is missing)
    run_kept = RUN_ATTRIBUTE in images.attrs
    if operation == "unmix":
        if not run_kept or read_mix_record(images) is not None:
            return None
        record_spec, record_window = MixSpec(), None
    else:
        record = read_mix_record(images)
        if record is None or state != COMPLETE or (force and not run_kept):
            return None
        if record.key_check != key.check_value:
            if not run_kept:
                return None  # mixed with another key, then: refused as already mixed
            raise _wrong_key()
        if not _same_spec(spec, record.spec) or (
                window is not None and
                fixed_windows(store.count, window) != fixed_windows(store.count,
                                                                    record.window)):
            return None  # another run is asked for: refused as already mixed
        record_spec, record_window = record.spec, record.window
    windows = 0 if record_window is None else len(fixed_windows(store.count, record_window))
    return StoreReport(operation=operation, destination=source, spec=record_spec, images=0,
                       windows=0, window=record_window or 0, unpartnered=0, pixel_bytes=0,
                       seconds=0.0, io_path="in-place",
                       extra={"resumed_at_window": windows, "store_images": store.count,
                              "store_windows": windows, "already_complete": True})


def _require_same_run(source: str, store, journal: Journal) -> None:
    """Refuse a journal that is not the one of the run the store was left in."""
    images = store.images
    recorded = images.attrs.get(RUN_ATTRIBUTE)
    recorded = None if recorded is None else attribute_text(recorded)
    if recorded == journal.header.run and (read_state(images) == IN_PROGRESS or
                                           journal.committed == journal.header.windows):
        return  # the run itself; or it finished and was killed before removing the journal
    if read_state(images) == IN_PROGRESS:
        raise BadInputError(
            f"journal {journal.path!r} belongs to another run than the one that left store "
            f"{source!r} half rewritten (their run identifiers differ); nothing was changed. "
            "Put back the journal of that run, or restore the store from a copy"
        )
    # Killed after the journal was made but before the store was marked: nothing is done.
    if journal.ready or journal.committed:
        raise BadInputError(
            f"journal {journal.path!r} records {journal.committed} rewritten window(s), but "
            f"store {source!r} is not marked as being rewritten: the journal is stale (of "
            "another run or another copy of the store); nothing was changed. Move it away "
            "if the store is the one you expect"
        )


def _resumed_header(operation, source, store, journal, key, spec, window) -> RunHeader:
    header = journal.header
    _require_same_run(source, store, journal)
    if header.operation != operation:
        raise BadInputError(
            f"store {source!r} has an interrupted in-place {header.operation}, not a "
            f"{operation}; finish it with 'fastmix {header.operation} --in-place --resume'"
        )
    if store.images.name != header.images or tuple(store.images.shape) != header.shape:
        raise BadInputError(
            f"the interrupted run rewrote dataset {header.images!r} of shape "
            f"{header.shape}; resume with --images {header.images.lstrip('/')}"
        )
    if key.check_value != header.key_check:
        raise _wrong_key()
    recorded = header.spec
    resume_hint = (f"resume with the same options, or with none of them ('fastmix "
                   f"{operation} STORE --in-place --resume --key-file KEY' uses the recorded "
                   "ones)")
    if operation == "mix" and not _same_spec(spec, recorded):
        raise BadInputError(
            f"the interrupted run mixes with spec {recorded.canonical()}, not "
            f"{spec.canonical()}; {resume_hint}"
        )
    if operation == "mix" and not _same_windows(window, header):
        raise BadInputError(
            f"the interrupted run mixes in windows of {header.window} images, not {window}; "
            f"{resume_hint}"
        )
    return header


def _start(source: str, store, header: RunHeader) -> Journal:
    """Create the journal, then mark the store in progress (both durable)."""
    try:
        journal = Journal.create(journal_path(source), header,
                                 header.window * store.image_bytes)
    except JournalError as error:
        raise InPlaceRunStopped(f"{error.strerror}; the store was not changed") from None
    _mark_in_progress(store, header)
    return journal


def _mark_in_progress(store, header: RunHeader) -> None:
    """Durably mark the store as being rewritten by the run of ``header``."""
    store.images.attrs[RUN_ATTRIBUTE] = header.run
    store.images.attrs[STATE_ATTRIBUTE] = IN_PROGRESS
    _sync(store)


# -- the run --------------------------------------------------------------------------------

def _sync(store) -> None:
    """Flush HDF5's caches to the file and the file to the disk."""
    store.file.flush()
    fsync_path(store.path)


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
        images = self.inner.read(start, stop, buffer)
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
            self.inner.store_piece(items)
            # Start the disk on this piece now, so the window's fsync has little left to do.
            self.writeback.kick()
            if last == self.windows[index][1]:
                _sync(self.store)
                self.journal.commit(index + 1)
                self.commits.advance(index + 1)
        except Exception as error:  # HDF5 raises several types
            self.commits.fail()
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise InPlaceRunStopped(
                f"writing window {index} into the store failed ({type(error).__name__}: "
                f"{first_line}); the journal holds its input: {hint('resume_again')}"
            ) from None


def _run(source, store, journal, key, progress, backend, resumed, memory) -> StoreReport:
    header = journal.header
    images = store.images
    spec = header.spec
    windows = header.window_ranges()
    inverse = header.operation == "unmix"
    step = chunk_length(images)
    aligned = all(start % step == 0 for start, _ in windows)
    filtered = is_filtered(images)
    hold_metadata(store.file)
    committed = journal.committed
    threads = codec_threads()
    piece = piece_images(store, memory, threads)
    tune_allocator()
    with ThreadPoolExecutor(threads, thread_name_prefix="fastmix-codec") as pool:
        if filtered:
            _check_chunk_index(source, images)
            raise_eoa(store.file, images)
            inner = _ChunkFlushingWriter(images, pool, threads, lambda: _sync(store), aligned)
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
                              "store_images": store.count, "store_windows": len(windows)})


def _finish(store, header: RunHeader, report: StoreReport, key: Key) -> None:
    images = store.images
    if header.operation == "mix":
        write_mix_attributes(images, report.spec, window=header.window,
                             key_check=header.key_check, labels=header.labels,
                             unpartnered=header.unpartnered, key=key)
        images.attrs[STATE_ATTRIBUTE] = COMPLETE
    else:
        remove_mix_attributes(images)
    # Kept until the journal is gone: a run killed in between is known as finished.
    images.attrs[RUN_ATTRIBUTE] = header.run
    _sync(store)


def _forget_run(store) -> None:
    """Drop the run identifier once the journal is removed (the run is over)."""
    if RUN_ATTRIBUTE in store.images.attrs:
        del store.images.attrs[RUN_ATTRIBUTE]
        _sync(store)

