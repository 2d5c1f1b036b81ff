"""What an in-place run checks and plans before it writes the first byte of a store.

Guards (:func:`check_writable`, :func:`refuse_open_elsewhere`,
:func:`refuse_foreign_layout`), the plan of a fresh run (its journal header,
:func:`fresh_header`, and its disk-space reserve, :func:`reserve_for`), every chunk of the
windows to rewrite read first (:func:`refuse_unreadable`), and what a resume or a rollback
must find (:func:`resumed_header`, :func:`require_same_run`, :func:`require_same_dataset`,
:func:`require_reversible`), or a run that is already complete (:func:`finished_run`).
Each refusal is a :class:`~fastmix.errors.BadInputError` raised before the store changes.
:func:`fastmix.store.inplace.run.run_in_place` calls them in the order of its steps.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
from concurrent.futures import ThreadPoolExecutor

from fastmix.errors import BadInputError, hint
from fastmix.plan.window_rule import fixed_windows
from fastmix.spec import HARDENING_FORMAT, MixSpec
from fastmix.store.durable.journal import PARTIAL_SUFFIX, Journal, RunHeader, journal_path
from fastmix.store.hdf5.access import read_labels
from fastmix.store.hdf5.chunkio import codec_threads
from fastmix.store.hdf5.crashrepair import clear_open_flag
from fastmix.store.hdf5.lowlevel import foreign_layout, is_filtered
from fastmix.store.hdf5.record import (
    COMPLETE,
    IN_PROGRESS,
    RUN_ATTRIBUTE,
    attribute_text,
    read_mix_record,
    read_state,
)
from fastmix.store.inplace.readcheck import first_unreadable
from fastmix.store.prepare import (
    count_paired,
    count_unpartnered,
    mix_windows,
    piece_images,
    require_no_pairs,
    require_partners,
    require_unmixable,
    require_unmixed,
)
from fastmix.store.report import StoreReport
from fastmix.store.window_sizing import plan_windows

# -- guards ---------------------------------------------------------------------------------

def check_writable(source: str) -> None:
    """Refuse a store that is missing, not a file, read-only, or in a read-only folder."""
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


def refuse_foreign_layout(source: str, dataset) -> None:
    """Refuse images whose data lives in other files: in-place mode never writes there."""
    layout = foreign_layout(dataset)
    if layout is not None:
        raise BadInputError(
            f"images dataset {dataset.name!r} of {source!r} is {layout}; in-place mode never "
            "writes through it. Write a new file instead: fastmix mix SRC DST"
        )


def refuse_open_elsewhere(source: str) -> None:
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


def is_rollback(operation: str, journal: Journal) -> bool:
    """Whether this unmix puts back the windows of an interrupted in-place mix.

    Not of a mix that wrote all its windows (killed on its way out): ``--resume`` closes it,
    and a plain unmix then restores the store.
    """
    header = journal.header
    return operation == "unmix" and header.operation == "mix" and not header.rollback and \
        journal.committed < header.windows


def nothing_recorded(source: str) -> str:
    """Return the refusal of a resumed mix that finds no journal and is given no spec."""
    return (f"no interrupted in-place run is recorded for store {source!r} (it has no "
            f"journal {journal_path(source)!r}), so a resume cannot know its options and "
            "takes no default in their place; nothing was changed. Run again with the "
            f"original mixing options (for example {hint('reversible_preset')})")


def open_journal(source: str) -> Journal | None:
    """Return the store's journal, or ``None``; remove what a run killed making it left."""
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


def pending_message(source: str, journal: Journal) -> str:
    """Return the refusal of a run on a store an interrupted run left, naming ``resume``."""
    header = journal.header
    return (f"store {source!r} has an interrupted in-place {header.operation} "
            f"({journal.committed} of {header.windows} windows done, journal "
            f"{journal.path!r}); {hint('resume')}")


def _same_spec(spec: MixSpec | None, recorded: MixSpec) -> bool:
    # not the plan rule: a 0.1.0 store (rule 1) is still the run that the same options ask
    # for, and rule 1 implies format 1; otherwise the hardening format where it changes bytes
    return spec is None or (spec.canonical() == recorded.canonical()
                            and (not spec.computes_values or recorded.plan_rule == 1
                                 or spec.hardening_format == recorded.hardening_format))


def _same_windows(window: int | None, header: RunHeader) -> bool:
    if window is None:
        return True
    return fixed_windows(header.count, window) == header.window_ranges()


# -- planning -------------------------------------------------------------------------------

def fresh_header(operation, source, store, key, spec, memory, window, labels, force,
                 strict, one_way, trust_unsealed=False) -> RunHeader:
    """Check a fresh run's store and options; return its journal header (a new run id)."""
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


def refuse_unreadable(source: str, dataset, header: RunHeader, first: int, stop: int, *,
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


def reserve_for(dataset, header: RunHeader) -> tuple[int, int, int]:
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


def clear_flag_of_a_killed_writer(source: str) -> None:
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


def finished_run(operation, source, store, key, spec, window,
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


def require_same_run(source: str, store, journal: Journal) -> None:
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


def resumed_header(operation, source, journal, spec, window) -> RunHeader:
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
        if spec.canonical() == recorded.canonical():  # only the arithmetic differs
            why = (f" (format {HARDENING_FORMAT} is the default now)"
                   if spec.hardening_format == HARDENING_FORMAT else "")
            raise BadInputError(
                f"the interrupted run hardens with hardening format "
                f"{recorded.hardening_format}, not {spec.hardening_format}{why}; resume "
                f"without the mixing options ('fastmix {operation} STORE --in-place --resume "
                "--key-file KEY' finishes it as recorded)"
            )
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


def require_same_dataset(source: str, store, header: RunHeader) -> None:
    """Refuse a resume on another images dataset (name, shape, dtype) than the run's."""
    images = store.images
    if images.name != header.images or tuple(images.shape) != header.shape or \
            images.dtype.str != header.dtype:
        raise BadInputError(
            f"the interrupted run rewrote dataset {header.images!r} of shape "
            f"{header.shape}; resume with --images {header.images.lstrip('/')}"
        )


def require_reversible(source: str, journal: Journal) -> None:
    """Refuse to roll back an interrupted one-way mix that has done windows."""
    header = journal.header
    if journal.committed and not header.spec.reversible:
        raise BadInputError(
            f"store {source!r} has an interrupted one-way in-place mix with "
            f"{journal.committed} window(s) done, which no key can unmix; finish it with "
            "'fastmix mix --in-place --resume', or restore the store from a copy"
        )
