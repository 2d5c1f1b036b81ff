"""In-place mixing and unmixing that survive SIGKILL, power loss and a full disk.

``mix_store(src, in_place=True)`` and ``unmix_store(src, in_place=True)`` land here. A run
goes through these steps; nothing before step 4 changes a byte of the store::

    1. lock       STORE.fastmix-lock (beside the file a symbolic link names)
    2. check      on a read-only open: the store, the options, a one-way spec's consent
                  (``one_way=True`` / ``--one-way``), and every chunk of the images read
                  and decoded (:mod:`fastmix.store.inplace.readcheck`): a damaged store is refused
    3. journal    header (operation, spec, window, key check, run id) bound to the key by
                  ``Key.mac("journal", ...)``, the undo slots and a disk-space reserve,
                  preallocated and fsynced with its folder (:mod:`fastmix.store.durable.journal`)
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
over every chunk (:mod:`fastmix.store.hdf5.crashrepair`).

``STORE.fastmix-journal`` and ``STORE.fastmix-lock`` exist only while a run is pending or
running (and ``STORE.fastmix-journal.partial`` only after a kill while the journal was being
made; the next run removes it). A store held open by another process (reader or writer) is
refused before anything is written. An exception raised after the journal existed carries
:func:`store_was_changed`: the key of such a run is never deleted.
"""

from __future__ import annotations

import os
import time

from fastmix.errors import BadInputError, hint
from fastmix.keys import Key
from fastmix.spec import MixSpec
from fastmix.store.durable.journal import (
    RESERVE_FINISH,
    RESERVE_MARK,
    RESERVE_WINDOW,
    Journal,
    JournalError,
    RunHeader,
    journal_path,
)
from fastmix.store.durable.lock import StoreLock
from fastmix.store.hdf5.access import open_store, read_labels
from fastmix.store.hdf5.crashrepair import clear_open_flag
from fastmix.store.hdf5.lowlevel import require_in_place_safe
from fastmix.store.hdf5.record import (
    COMPLETE,
    IN_PROGRESS,
    RUN_ATTRIBUTE,
    STATE_ATTRIBUTE,
    read_state,
    remove_mix_attributes,
    write_mix_attributes,
)
from fastmix.store.inplace.checks import (
    check_writable,
    clear_flag_of_a_killed_writer,
    finished_run,
    fresh_header,
    is_rollback,
    nothing_recorded,
    open_journal,
    pending_message,
    refuse_foreign_layout,
    refuse_open_elsewhere,
    refuse_unreadable,
    require_reversible,
    require_same_dataset,
    require_same_run,
    reserve_for,
    resumed_header,
)
from fastmix.store.inplace.rewrite import (
    InPlaceRunStopped,
    begin_rollback,
    rewrite_windows,
    sync_store,
)
from fastmix.store.prepare import warn_after_mix
from fastmix.store.report import StoreReport


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
    check_writable(source)
    started = time.perf_counter()
    lock = StoreLock(source).acquire()
    journal = None
    store = None
    changed = False  # whether the store may have been changed (its journal exists)
    try:
        journal = open_journal(source)
        changed = journal is not None
        rollback = journal is not None and is_rollback(operation, journal)
        if journal is not None and not (resume or rollback):
            raise BadInputError(pending_message(source, journal))
        resumed = journal is not None and not rollback
        if journal is None:
            if resume:
                clear_flag_of_a_killed_writer(source)
            refuse_open_elsewhere(source)
            # Every check runs on a read-only open: the journal, with the spec and the key's
            # MAC, is durable before the store is opened for writing (which HDF5 marks in
            # the file even when nothing else is written).
            with open_store(source, images, labels=None, interrupted=True) as checked:
                refuse_foreign_layout(source, checked.images)
                require_in_place_safe(source, checked.file, checked.images, labels)
                finished = (finished_run(operation, source, checked, key, spec, window, force)
                            if resume else None)
                run_kept = RUN_ATTRIBUTE in checked.images.attrs
                if finished is None:
                    if resume and operation == "mix" and spec is None:
                        raise BadInputError(nothing_recorded(source))
                    header = fresh_header(operation, source, checked, key, spec, memory,
                                          window, labels, force, strict, one_way,
                                          trust_unsealed)
                    refuse_unreadable(source, checked.images, header, 0, header.windows)
                    reserve = reserve_for(checked.images, header)
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
                      resumed_header(operation, source, journal, spec, window))
            refuse_open_elsewhere(source)
            clear_open_flag(source)  # a killed v110+ writer leaves it set
            with open_store(source, images, labels=None, interrupted=True) as checked:
                refuse_foreign_layout(source, checked.images)
                require_same_run(source, checked, journal)
                require_same_dataset(source, checked, header)
                marked = read_state(checked.images) == IN_PROGRESS
                if rollback:
                    require_reversible(source, journal)
                    refuse_unreadable(source, checked.images, header, 0, journal.committed,
                                      rolling_back=True)
                else:
                    first = journal.committed + (journal.ready > journal.committed)
                    refuse_unreadable(source, checked.images, header, first, header.windows,
                                      done=journal.committed)
            _hold_reserve(journal, marked)
            store = open_store(source, images, labels=None, writable=True, rdcc_nbytes=1 << 20)
            if not marked:
                _mark_in_progress(store, header, journal)  # killed before the run marked it
            if rollback:
                journal = begin_rollback(store, journal, key)
                header = journal.header
        store.labels = read_labels(store.file, header.labels, store.count, source)
        report = rewrite_windows(source, store, journal, key, progress, backend, resumed, memory)
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
    sync_store(store)


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
    sync_store(store)


def _forget_run(store) -> None:
    """Drop the run identifier once the journal is removed (the run is over)."""
    if RUN_ATTRIBUTE in store.images.attrs:
        del store.images.attrs[RUN_ATTRIBUTE]
        sync_store(store)
