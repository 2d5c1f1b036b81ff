"""In-place mixing and unmixing that survive SIGKILL, power loss and a full disk.

``mix_store(src, in_place=True)`` and ``unmix_store(src, in_place=True)`` land here. A run
goes through these steps; nothing before step 4 changes a byte of the store::

    1. lock       STORE.fastmix-lock (beside the file a symbolic link names)
    2. check      on a read-only open: the store, the options, a one-way spec's consent
                  (``one_way=True`` / ``--one-way``), and every chunk of the images read
                  and decoded (:mod:`fastmix.store.readcheck`): a damaged store is refused
    3. journal    header (operation, spec, window, key check, run id) bound to the key by
                  ``Key.mac("journal", ...)``, the undo slots and a disk-space reserve,
                  preallocated and fsynced with its folder (:mod:`fastmix.store.journal`)
    4. mark       open the store for writing; ``fastmix_state = "in-progress"`` and
                  ``fastmix_run`` (the run id), flush, fsync
    5. windows    reader thread: read window k (it still holds its input); journal: undo
                  record of k (the input bytes, checksummed), fsync
                  main thread: mix window k piece by piece (as in new-file mode)
                  writer thread: write the pieces into the store; at the window's end
                  flush, fsync; journal: commit "k + 1 windows done", fsync
    6. finish     the ``fastmix_*`` record and ``fastmix_state = "complete"`` (an unmix
                  removes them), flush, fsync; delete the journal; drop ``fastmix_run``

A window therefore always holds either its input or its complete output, or its input is in
the journal: after a crash, ``resume`` mixes window ``committed`` from its undo record when
the record is complete (the store may hold a torn window), and otherwise from the store
(which was not touched). Window plans derive from the key and the window index, so the
remaining windows mix exactly as in an uninterrupted run and no window is ever mixed twice.

A resume never changes the spec. It verifies the journal's MAC under the key (an edited
header is refused) and runs with the recorded spec and window; other options are refused.
With no journal, nothing was changed (step 3 precedes every write) or the run completed (the
store says so: its record, or ``fastmix_run`` until the journal is gone); a ``resume`` of a
mix with nothing recorded refuses unless the original spec is given again, and never falls
back on a default. A resume first reads the windows it has left: a damaged one is refused
before anything is written, naming the way back.

An unmix over an interrupted reversible mix undoes it (a rollback): the window being written
gets its input back from its undo record, the mix's journal is replaced (atomically, same
run id) by a journal of an unmix of the done windows, and those are unmixed as any in-place
unmix, with their own window indices. A kill at any moment leaves one of the two journals.

A full disk never interrupts HDF5 in the middle of a flush (which would leave its metadata
unreadable, "addr overflow"): the journal holds back disk space in three parts (marking,
finishing, and for a dataset whose chunks move, one window's growth), and gives each part
back just before HDF5 needs it. A run that cannot hold its reserve again stops between two
windows, consistent and resumable.

HDF5 facts the design relies on are in ``docs/crash-safety.md``; in short: metadata-cache
evictions are turned off so that HDF5 metadata reaches the file only when fastmix flushes;
compressed datasets are flushed and fsynced after every chunk, because a rewritten
compressed chunk moves and a torn flush of several moves could leave two index entries on
one place (a run refuses to write through such an index); and a
resumed run first clears the superblock's "open for write" flag and raises the file's EOA
over every chunk (:mod:`fastmix.store.crashrepair`).

``STORE.fastmix-journal`` and ``STORE.fastmix-lock`` exist only while a run is pending or
running (and ``STORE.fastmix-journal.partial`` only after a kill while the journal was being
made; the next run removes it). A store held open by another process (reader or writer) is
refused before anything is written. An exception raised after the journal existed carries
:func:`store_was_changed`: the key of such a run is never deleted.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import os
import secrets
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from fastmix.errors import BadInputError, InPlaceRunStopped, hint  # InPlaceRunStopped: re-exported
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
    PARTIAL_SUFFIX,
    RESERVE_FINISH,
    RESERVE_MARK,
    RESERVE_WINDOW,
    Journal,
    JournalError,
    RunHeader,
    journal_path,
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
from fastmix.store.readcheck import first_unreadable
from fastmix.store.report import StoreReport
from fastmix.store.stream import stream_windows
from fastmix.store.windows import chunk_length, plan_windows
from fastmix.store.writeback import EarlyWriteback


def run_in_place(operation: str, src: str | os.PathLike, *, key: Key,
                 spec: MixSpec | None = None, memory: int | str = "1GiB",
                 window: int | None = None, images: str = "images", labels: str = "labels",
                 progress: bool = True, resume: bool = False, force: bool = False,
                 strict: bool = False, backend: str = "cpu",
                 inverse: bool | None = None, one_way: bool = False,
                 trust_unsealed: bool = False) -> StoreReport:
    """Mix (``operation="mix"``) or unmix (``"unmix"``) the images of ``src`` in place.

    Parameters
    ----------
    operation : {"mix", "unmix"}
        What to do; ``inverse=True`` is the same as ``"unmix"``. An unmix over an
        interrupted in-place mix undoes the windows that mix had done (a rollback; the mix
        must be reversible, unless it had done none).
    src : path
        The store; rewritten window by window.
    key : Key
        The key. Only its check value is stored (in the store and the journal), and the
        journal's header is bound to it by a MAC.
    spec : MixSpec, optional
        Mixing parameters (mix only; unmix reads them from the store). A resumed run uses
        the spec its journal recorded, and refuses another one. Default: ``MixSpec()`` for a
        fresh run; a ``resume`` that finds no recorded run refuses to guess it.
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
        Finish an interrupted run on this store. With nothing recorded, a mix starts only
        when ``spec`` is given (the original options); an unmix of a store that carries no
        record is already complete.
    force : bool
        Mix a store that already carries a fastmix record.
    strict : bool
        Fail before anything is written when some images have no same-label partner.
    backend : str
        Kernel backend.
    inverse : bool, optional
        Unmix instead of mix.
    one_way : bool
        Consent to a one-way mix (paper mode, jitter or seam blur) in place: it replaces
        the store's originals for good. Without it such a run is refused.
    trust_unsealed : bool
        Unmix a store whose record carries no MAC (an older fastmix), with a warning.

    Returns
    -------
    StoreReport

    Raises
    ------
    BadInputError
        A pending run without ``resume``, another process running on the store or holding
        it open, an already mixed store without ``force``, a one-way spec without
        ``one_way``, a read-only store, a chunk that cannot be read, a journal that does not
        verify under ``key``, or options that differ from the pending run's. Nothing is
        changed.
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
    changed = False  # whether the store may have been changed (its journal exists)
    try:
        journal = _open_journal(source)
        changed = journal is not None
        rollback = journal is not None and _is_rollback(operation, journal)
        if journal is not None and not (resume or rollback):
            raise BadInputError(_pending_message(source, journal))
        resumed = journal is not None and not rollback
        if journal is None:
            if resume:
                _clear_flag_of_a_killed_writer(source)
            _refuse_open_elsewhere(source)
            # Every check runs on a read-only open: the journal, with the spec and the key's
            # MAC, is durable before the store is opened for writing (which HDF5 marks in
            # the file even when nothing else is written).
            with open_store(source, images, labels=None, interrupted=True) as checked:
                _refuse_foreign_layout(source, checked.images)
                require_in_place_safe(source, checked.file, checked.images, labels)
                finished = (_finished_run(operation, source, checked, key, spec, window, force)
                            if resume else None)
                run_kept = RUN_ATTRIBUTE in checked.images.attrs
                if finished is None:
                    if resume and operation == "mix" and spec is None:
                        raise BadInputError(_nothing_recorded(source))
                    header = _fresh_header(operation, source, checked, key, spec, memory,
                                           window, labels, force, strict, one_way,
                                           trust_unsealed)
                    _refuse_unreadable(source, checked.images, header, 0, header.windows)
                    reserve = _reserve_for(checked.images, header)
            if finished is not None:  # killed after the run was complete: nothing is left
                if run_kept:
                    store = open_store(source, images, labels=None, writable=True)
                    _forget_run(store)
                    store.close()
                    store = None
                finished.seconds = time.perf_counter() - started
                return finished
            journal = _start(source, header, key, reserve)
            changed = True
            store = open_store(source, images, labels=None, writable=True,
                               rdcc_nbytes=1 << 20)
            _mark_in_progress(store, header, journal)
        else:
            journal.verify(key)  # the key, then the header's MAC: before any write
            header = (journal.header if rollback else
                      _resumed_header(operation, source, journal, spec, window))
            _refuse_open_elsewhere(source)
            clear_open_flag(source)  # a killed v110+ writer leaves it set
            with open_store(source, images, labels=None, interrupted=True) as checked:
                _refuse_foreign_layout(source, checked.images)
                _require_same_run(source, checked, journal)
                _require_same_dataset(source, checked, header)
                marked = read_state(checked.images) == IN_PROGRESS
                if rollback:
                    _require_reversible(source, journal)
                    _refuse_unreadable(source, checked.images, header, 0, journal.committed,
                                       rolling_back=True)
                else:
                    first = journal.committed + (journal.ready > journal.committed)
                    _refuse_unreadable(source, checked.images, header, first, header.windows,
                                       done=journal.committed)
            _hold_reserve(journal, marked)
            store = open_store(source, images, labels=None, writable=True, rdcc_nbytes=1 << 20)
            if not marked:
                _mark_in_progress(store, header, journal)  # killed before the run marked it
            if rollback:
                journal = _begin_rollback(store, journal, key)
                header = journal.header
        store.labels = read_labels(store.file, header.labels, store.count, source)
        report = _run(source, store, journal, key, progress, backend, resumed, memory)
        journal.release(RESERVE_FINISH)
        _finish(store, header, report, key)
        journal.remove()
        journal = None
        _forget_run(store)
        store.close()
        store = None
    except BaseException as error:
        if changed:
            setattr(error, _CHANGED, True)
        raise
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


_CHANGED = "_fastmix_store_changed"


def store_was_changed(error: BaseException) -> bool:
    """Whether the in-place run that raised ``error`` may have changed its store.

    ``True`` once the run's journal existed (before it, not one byte of the store changes):
    the key of such a run may have mixed bytes and must be kept, even if the run failed.
    """
    return bool(getattr(error, _CHANGED, False))


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
    folder = os.path.dirname(os.path.realpath(source))
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


def _refuse_open_elsewhere(source: str) -> None:
    """Refuse a store that another process (or another ``h5py.File`` here) holds open.

    HDF5 keeps a ``flock`` on every file it opens, shared for readers and exclusive for
    writers; an exclusive one we cannot take means someone has the store open. Checked
    before anything is written, and said as it is: a reader counts too.
    """
    descriptor = os.open(source, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise BadInputError(
            f"store {source!r} is open in another process (reading or writing it; HDF5 holds "
            "a lock on it); close it there, then run again. Nothing was changed"
        ) from None
    finally:
        os.close(descriptor)  # drops our flock, if taken


def _is_rollback(operation: str, journal: Journal) -> bool:
    """Whether this unmix puts back the windows of an interrupted in-place mix.

    Not of a mix that wrote all its windows (killed on its way out): ``--resume`` closes it,
    and a plain unmix then restores the store.
    """
    header = journal.header
    return operation == "unmix" and header.operation == "mix" and not header.rollback and \
        journal.committed < header.windows


def _nothing_recorded(source: str) -> str:
    return (f"no interrupted in-place run is recorded for store {source!r} (it has no "
            f"journal {journal_path(source)!r}), so a resume cannot know its options and "
            "takes no default in their place; nothing was changed. Run again with the "
            f"original mixing options (for example {hint('reversible_preset')})")


def _open_journal(source: str) -> Journal | None:
    path = journal_path(source)
    if not os.path.exists(path):
        # A partial journal is what a run killed while making its journal leaves (the store
        # was not touched); we hold the lock, so no live run is making it.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + PARTIAL_SUFFIX)
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


def _same_spec(spec: MixSpec | None, recorded: MixSpec) -> bool:
    return spec is None or spec.canonical() == recorded.canonical()


def _same_windows(window: int | None, header: RunHeader) -> bool:
    if window is None:
        return True
    return fixed_windows(header.count, window) == header.window_ranges()


# -- planning -------------------------------------------------------------------------------

def _fresh_header(operation, source, store, key, spec, memory, window, labels, force,
                  strict, one_way, trust_unsealed=False) -> RunHeader:
    images = store.images
    if read_state(images) == IN_PROGRESS:
        others = (" or another name of this file (a hard link: run through the name the run "
                  "was started with)" if os.stat(source).st_nlink > 1 else "")
        raise BadInputError(
            f"store {source!r} was left half-rewritten by an in-place run whose journal "
            f"{journal_path(source)!r} is missing{others}; it cannot be finished without it. "
            "Put the journal back, or restore the store from a copy"
        )
    if operation == "mix":
        spec = MixSpec() if spec is None else spec
        require_unmixed(images, source, force)
        if not spec.reversible and not one_way:
            raise BadInputError(
                f"mixing store {source!r} in place with a one-way spec ({_one_way_why(spec)}) "
                "replaces its originals for good, and no key brings them back; mix reversibly "
                f"({hint('reversible_preset')}), write a new file, or {hint('one_way')} to "
                "accept"
            )
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
        record = require_unmixable(images, source, key, trust_unsealed=trust_unsealed)
        spec, labels_name, unpartnered, paired = record.spec, record.labels, 0, 0
        windows = plan_windows(images, memory, record.window, aligned=False)
    length = max((stop - start for start, stop in windows), default=0)
    return RunHeader(operation=operation, images=images.name, labels=labels_name, spec=spec,
                     window=max(length, 1), count=store.count, windows=len(windows),
                     key_check=key.check_value, unpartnered=unpartnered, paired=paired,
                     shape=tuple(images.shape), dtype=images.dtype.str,
                     run=secrets.token_hex(8))


def _one_way_why(spec: MixSpec) -> str:
    if spec.mode != "permute":
        return f"{spec.mode} mode"
    return " and ".join(name for name, used in (("jitter", spec.jitter is not None),
                                                 ("seam blur", spec.seam_blur != 0))
                        if used) or "it cannot be unmixed"


def _refuse_unreadable(source: str, dataset, header: RunHeader, first: int, stop: int, *,
                       done: int | None = None, rolling_back: bool = False) -> None:
    """Read windows ``first .. stop - 1`` whole before anything is written; refuse damage.

    Raises
    ------
    BadInputError
        Naming the first window that cannot be read and what can still be done.
    """
    windows = header.window_ranges()[first:stop]
    if not windows:
        return
    threads = codec_threads()
    with ThreadPoolExecutor(threads, thread_name_prefix="fastmix-check") as pool:
        found = first_unreadable(dataset, list(enumerate(windows, start=first)), pool, threads)
    if found is None:
        return
    index, reason = found
    start, end = header.window_ranges()[index]
    where = f"window {index} (images {start}-{end - 1}) of store {source!r} cannot be read"
    if rolling_back:
        what = (f"the rollback would have to unmix it; nothing was changed. Its windows "
                f"0-{stop - 1} stay mixed; restore the store from a copy")
    elif done is None:
        what = "it is damaged; nothing was changed. Repair or restore the store first"
    elif header.operation == "mix" and header.spec.reversible:
        what = (f"the interrupted mix cannot finish; nothing was changed. Its {done} done "
                f"window(s) can be put back: fastmix unmix STORE --in-place --key-file KEY")
    else:
        what = (f"the interrupted {header.operation} cannot finish ({done} window(s) done); "
                "nothing was changed. Repair the damaged chunk, or restore the store from a "
                "copy")
    raise BadInputError(f"{where} ({reason}); {what}")


#: Disk space held back in the journal for HDF5's metadata when the store is marked, and
#: when it is finished (its record): far more than either needs (a few KiB).
METADATA_RESERVE = 64 << 10


def _reserve_for(dataset, header: RunHeader) -> tuple[int, int, int]:
    """Return the three parts of the journal's disk-space reserve for this run.

    Rewritten chunks of a filtered dataset move (and unallocated chunks are allocated), so
    a window can grow the file by up to its encoded size: a window's bytes plus the codecs'
    worst-case overhead. Unfiltered allocated chunks are rewritten where they are.
    """
    grows = is_filtered(dataset) or (
        dataset.id.get_storage_size() < dataset.size * dataset.dtype.itemsize)
    window = header.window * header.image_bytes
    step = max(1, dataset.chunks[0] if dataset.chunks else header.window)
    growth = window + window // 64 + 4096 * (-(-header.window // step) + 16) if grows else 0
    return METADATA_RESERVE, METADATA_RESERVE, growth


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
        # No journal and no record: the unmix is done (or there was nothing to unmix), as
        # a resumed mix that finds the store mixed is done.
        if read_mix_record(images) is not None:
            return None
        record_spec, record_window = MixSpec(), None
    else:
        record = read_mix_record(images)
        if record is None or state != COMPLETE or (force and not run_kept):
            return None
        if record.key_check != key.check_value:
            if not run_kept:
                return None  # mixed with another key, then: refused as already mixed
            key.verify(record.key_check)  # raises: the wrong key
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


def _resumed_header(operation, source, journal, spec, window) -> RunHeader:
    """Return the recorded run, checked against what this resume asks (before any write)."""
    header = journal.header
    if header.operation != operation:
        raise BadInputError(
            f"store {source!r} has an interrupted in-place {header.operation}, not a "
            f"{operation}; finish it with 'fastmix {header.operation} --in-place --resume'"
        )
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


def _require_same_dataset(source: str, store, header: RunHeader) -> None:
    images = store.images
    if images.name != header.images or tuple(images.shape) != header.shape or \
            images.dtype.str != header.dtype:
        raise BadInputError(
            f"the interrupted run rewrote dataset {header.images!r} of shape "
            f"{header.shape}; resume with --images {header.images.lstrip('/')}"
        )


def _require_reversible(source: str, journal: Journal) -> None:
    header = journal.header
    if journal.committed and not header.spec.reversible:
        raise BadInputError(
            f"store {source!r} has an interrupted one-way in-place mix with "
            f"{journal.committed} window(s) done, which no key can unmix; finish it with "
            "'fastmix mix --in-place --resume', or restore the store from a copy"
        )


def _start(source: str, header: RunHeader, key: Key,
           reserve: tuple[int, int, int]) -> Journal:
    """Create the journal (header, MAC, reserve: durable) before the store is opened."""
    try:
        return Journal.create(journal_path(source), header, header.window * header.image_bytes,
                              key, reserve)
    except JournalError as error:
        raise InPlaceRunStopped(f"{error.strerror}; the store was not changed") from None


def _hold_reserve(journal: Journal, marked: bool) -> None:
    """Allocate again the reserve a killed run had given back, before the store is opened."""
    parts = (RESERVE_FINISH, RESERVE_WINDOW) if marked else \
        (RESERVE_MARK, RESERVE_FINISH, RESERVE_WINDOW)
    try:
        for part in parts:
            journal.hold(part)
    except JournalError as error:
        raise InPlaceRunStopped(f"{error.strerror}; nothing was changed: free space and "
                                f"{hint('resume_again')}") from None


def _mark_in_progress(store, header: RunHeader, journal: Journal) -> None:
    """Durably mark the store as being rewritten by the run of ``header``.

    The marking part of the reserve is given back first, so that HDF5 finds the room for
    the new attributes even on a full disk.
    """
    journal.release(RESERVE_MARK)
    store.images.attrs[RUN_ATTRIBUTE] = header.run
    store.images.attrs[STATE_ATTRIBUTE] = IN_PROGRESS
    _sync(store)


def _begin_rollback(store, journal: Journal, key: Key) -> Journal:
    """Turn an interrupted mix into the unmix of the windows it had done; return its journal.

    The window the mix was writing gets its input back from its undo record (the store may
    hold it torn); the mix's journal is then replaced, atomically, by a rollback journal of
    the same run over its done windows, which :func:`_run` unmixes as any in-place unmix.
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
        _sync(store)
        first = last


# -- the run --------------------------------------------------------------------------------

def _sync(store) -> None:
    """Flush HDF5's caches to the file and the file to the disk."""
    store.file.flush()
    fsync_path(store.path)


def _prepare_writes(store) -> None:
    """Make an open store safe to rewrite (see the module notes); before its first write."""
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
                # The room this window's moved chunks may need (see _reserve_for).
                self.journal.release(RESERVE_WINDOW)
            self.inner.store_piece(items)
            # Start the disk on this piece now, so the window's fsync has little left to do.
            self.writeback.kick()
            if last == self.windows[index][1]:
                _sync(self.store)
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


def _run(source, store, journal, key, progress, backend, resumed, memory) -> StoreReport:
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
                              "store_images": store.count, "store_windows": len(windows),
                              **({"rolled_back_windows": len(windows)} if header.rollback
                                 else {})})


def _finish(store, header: RunHeader, report: StoreReport, key: Key) -> None:
    images = store.images
    if header.operation == "mix":
        write_mix_attributes(images, report.spec, window=header.window,
                             key_check=header.key_check, labels=header.labels,
                             unpartnered=header.unpartnered, key=key)
        images.attrs[STATE_ATTRIBUTE] = COMPLETE
    elif header.rollback:
        # The interrupted mix is undone; a record it did not write (a forced mix's earlier
        # one) stays.
        del images.attrs[STATE_ATTRIBUTE]
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

