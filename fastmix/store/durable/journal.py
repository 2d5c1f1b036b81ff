r"""The undo journal of an in-place run: ``STORE.fastmix-journal`` beside the store.

Layout (all integers little-endian)::

    [0, 4096)        header: magic ``FMXJRNL1``, uint32 length of the JSON that follows,
                     the JSON of the run (a :class:`RunHeader`: operation, spec, window,
                     windows, images and labels names, shape, dtype, key check value, run
                     identifier, reserve sizes; keys sorted), the 32-byte MAC
                     ``Key.mac("journal", json)`` under the run's key, and a 16-byte BLAKE2b
                     digest of JSON + MAC (a torn write, found without the key). Written
                     once and fsynced, with its folder, before the first byte of the store
                     changes (the store is not even opened for writing before).
    [4096, 4608)     state slot 0 \  the run's state: a sequence number, the windows
    [4608, 5120)     state slot 1 /  committed to the store, and the undo records proven
                                     durable ("ready"); both slots hold the same state,
                                     written by one write, so that a torn write or one
                                     damaged slot leaves the other valid.
    [8192, R)        two undo record slots, window k in slot k % 2: window index, start,
                     stop, payload length, the window's input bytes, CRC-32 of each 4 MiB
                     segment, BLAKE2b digest of the rest (written last).
    [R, end)         the disk-space reserve: three parts (marking, finishing, one window's
                     growth), each ``reserve[i]`` bytes, allocated with ``posix_fallocate``
                     when the journal is made. The in-place engine punches a part out of the
                     file (``fallocate(PUNCH_HOLE)``, the file keeps its length) just before
                     HDF5 writes metadata or moves compressed chunks, so that HDF5 finds the
                     room it needs on a full disk, and allocates it again afterwards (where
                     that fails the run stops between two windows, consistent and
                     resumable). A full disk therefore never interrupts HDF5 in the middle of
                     a flush, which would leave its metadata unreadable.

The MAC binds the header to the key: a resume first checks the key check value (a wrong key
is named as such), then the MAC; an edited header (another spec, window, dataset or run) is
refused, so a resume never runs with options the original run did not record. A journal
without a header that verifies is never used to start or change a run.

Protocol for window ``k`` (see :mod:`fastmix.store.inplace.rewrite`): read window k from the
store and write its undo record, fsync; record ``ready = k + 1`` in the state slots, fsync;
only then write the window's output into the store, flush and fsync the store; record
``committed = k + 1``, fsync. Slot ``k % 2`` is reused only once window ``k - 2`` is
committed, so the undo record of the window being written is never overwritten.

After a crash the journal proves what it says before anything uses it
(:meth:`Journal.open`): its full preallocated length, a valid state slot, a state that a run
can be in (``committed <= ready <= committed + 2 <= windows + 2``) and, when
``ready > committed`` (the store may hold window ``committed`` torn), a complete undo record
of exactly that window: magic, index, bounds, length, every segment's CRC and the digest.
Anything else is a :class:`JournalDamaged` refusal, and the store is left alone. With
``ready == committed`` the store was not touched for window ``committed``, which therefore
still holds its input.

The journal is made under ``STORE.fastmix-journal.partial`` and renamed once its header and
state are durable, so a kill while it is created never leaves a journal that --resume would
have to refuse. It is preallocated to its full size then, so a full disk is found before
the store is touched, and later records never need new space.

Test hook: when the environment variable ``FASTMIX_TEST_JOURNAL_ENOSPC`` holds a window
index, writing that window's undo record fails with ``ENOSPC`` (as a full disk would) after
part of it is written. Only this module reads it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import hashlib
import hmac
import json
import os
import struct
import threading
import zlib
from dataclasses import dataclass, fields, replace

import numpy as np

from fastmix.errors import (  # JournalDamaged, JournalError: re-exported
    BadInputError,
    JournalDamaged,
    JournalError,
    WrongKeyError,
)
from fastmix.keys import Key
from fastmix.plan.window_rule import fixed_windows
from fastmix.spec import MixSpec
from fastmix.store.durable.fsync import fsync_folder_of

#: Version of the header's fields; a journal of another version is refused. 3 adds the
#: header's MAC, the disk-space reserve and ``rollback``.
JOURNAL_FORMAT = 3
JOURNAL_SUFFIX = ".fastmix-journal"
#: Suffix (after the journal's name) of a journal being created.
PARTIAL_SUFFIX = ".partial"
FAILURE_HOOK = "FASTMIX_TEST_JOURNAL_ENOSPC"

_HEADER_MAGIC = b"FMXJRNL1"
_COMMIT_MAGIC = b"FMXC"
_RECORD_MAGIC = b"FMXU"
_HEADER_SIZE = 4096
_SLOT_OFFSETS = (4096, 4608)
_RECORDS_OFFSET = 8192
_DIGEST = 16
_MAC = 32
#: The parts of the disk-space reserve, in file order.
RESERVE_MARK, RESERVE_FINISH, RESERVE_WINDOW = 0, 1, 2
_SEGMENT = 4 << 20
_COMMIT = struct.Struct("<4sQQQ")  # magic, sequence, committed, ready
_SLOT_BYTES = 512
_RECORD = struct.Struct("<4sQQQQ")


def journal_path(store_path: str | os.PathLike) -> str:
    """Return the journal file of ``store_path``: beside the file a symbolic link names.

    Every name of a store through symbolic links gives the same journal (and lock), so a
    run through a link finds the journal of a run through the file's own name.
    """
    return os.path.realpath(os.fspath(store_path)) + JOURNAL_SUFFIX


def _digest(*parts) -> bytes:
    digest = hashlib.blake2b(digest_size=_DIGEST)
    for part in parts:
        digest.update(part)
    return digest.digest()


def _segment_crcs(payload: memoryview) -> list[int]:
    return [zlib.crc32(payload[start:start + _SEGMENT])
            for start in range(0, payload.nbytes, _SEGMENT)]


def _slot_size(max_payload: int) -> int:
    size = _RECORD.size + max_payload + 4 * (max_payload // _SEGMENT + 1) + _DIGEST
    return -(-size // 4096) * 4096


@dataclass(frozen=True)
class RunHeader:
    """What an in-place run records before it touches the store. Never the key.

    Attributes
    ----------
    operation : {"mix", "unmix"}
    images, labels : str
        The images dataset's path and the labels dataset's name.
    spec : MixSpec
        The mixing parameters.
    window : int
        Window length in images.
    count : int
        Images in the store.
    windows : int
        Windows in the run.
    key_check : str
        The key's check value.
    unpartnered, paired : int
        Images left unmixed, and images in permute groups of two (for the report).
    shape : tuple of int
        The images dataset's shape.
    dtype : str
        Its dtype (``numpy.dtype.str``).
    max_payload : int
        Bytes of the largest undo record (set by :meth:`Journal.create`).
    format : int
        :data:`JOURNAL_FORMAT`.
    run : str
        A random identifier of this run, also recorded on the store while it runs: a
        journal of another run is refused.
    reserve : tuple of int
        Bytes of the three parts of the disk-space reserve (set by :meth:`Journal.create`).
    rollback : bool
        An unmix that puts back the ``windows`` windows an interrupted mix had done (its
        windows are the first ``windows`` of the mix's, with the mix's indices).
    """

    operation: str
    images: str
    labels: str
    spec: MixSpec
    window: int
    count: int
    windows: int
    key_check: str
    unpartnered: int
    paired: int
    shape: tuple[int, ...]
    dtype: str
    max_payload: int = 0
    format: int = JOURNAL_FORMAT
    run: str = ""
    reserve: tuple[int, int, int] = (0, 0, 0)
    rollback: bool = False

    @property
    def image_bytes(self) -> int:
        """Bytes of one image."""
        return int(np.prod(self.shape[1:], dtype=np.int64)) * np.dtype(self.dtype).itemsize

    def window_ranges(self) -> list[tuple[int, int]]:
        """Return the run's windows ``[(start, stop), ...]``; the position is the window index."""
        return fixed_windows(self.count, self.window)[:self.windows]

    def to_json(self) -> bytes:
        """Return the header as canonical JSON (the spec as :meth:`MixSpec.to_dict`)."""
        values = {field.name: getattr(self, field.name) for field in fields(self)}
        values.update(spec=self.spec.to_dict(), shape=list(self.shape),
                      reserve=list(self.reserve), plan_rule=self.spec.plan_rule,
                      hardening_format=self.spec.hardening_format)
        return json.dumps(values, sort_keys=True).encode()

    @classmethod
    def from_json(cls, text: bytes, path: str) -> RunHeader:
        """Parse a header written by :meth:`to_json`.

        Raises
        ------
        BadInputError
            When the header has another format or fields this version does not know (a
            journal of another fastmix version); ``path`` names the journal.
        """
        refused = BadInputError(f"journal {path!r} was written by another fastmix version; "
                                "finish the run with that version")
        try:
            values = json.loads(text)
            if not isinstance(values, dict) or values.get("format") != JOURNAL_FORMAT:
                raise refused
            # A journal without a plan rule was written by fastmix 0.1.0: rule 1.
            rule = int(values.pop("plan_rule", 1))
            # Written explicitly, so a later default cannot reinterpret it; absent: format 1.
            hardening_format = int(values.pop("hardening_format", 1))
            values["spec"] = replace(MixSpec.from_dict(values["spec"]).with_plan_rule(rule),
                                     hardening_format=hardening_format)
            values["shape"] = tuple(int(size) for size in values["shape"])
            values["reserve"] = tuple(int(size) for size in values["reserve"])
            if len(values["reserve"]) != 3 or min(values["reserve"]) < 0:
                raise ValueError("reserve")
            return cls(**values)
        except (ValueError, TypeError, KeyError, BadInputError):
            raise refused from None


@dataclass(frozen=True)
class UndoRecord:
    """A complete undo record: the input of window ``index``, images ``[start, stop)``."""

    index: int
    start: int
    stop: int
    payload: memoryview


class Journal:
    """An open journal file. Create with :meth:`create`, reopen with :meth:`open`."""

    def __init__(self, path: str, descriptor: int, header: RunHeader, mac: str = "",
                 text: bytes = b""):
        self.path = path
        self.descriptor = descriptor
        self.header = header
        self.mac = mac
        self.text = text  # the header's JSON as written, which the MAC covers
        self._sequence = 0
        self._state = (0, 0)  # (committed, ready), as last written
        self._lock = threading.Lock()
        self.slot_size = _slot_size(header.max_payload)

    @property
    def size(self) -> int:
        """The journal's full, preallocated length in bytes."""
        return self._reserve_offset(len(self.header.reserve))

    def _reserve_offset(self, part: int) -> int:
        return _RECORDS_OFFSET + 2 * self.slot_size + sum(self.header.reserve[:part])

    def verify(self, key: Key) -> None:
        """Refuse this journal unless its header was written with ``key`` and not edited since.

        Raises
        ------
        WrongKeyError
            When the header's key check value is not ``key``'s.
        JournalDamaged
            When its MAC does not verify: the header was edited (or damaged) after it was
            written, so nothing it records can be trusted.
        """
        if not hmac.compare_digest(key.check_value, self.header.key_check):
            raise WrongKeyError(
                "wrong key: the interrupted run used another key (its check value differs); "
                "resume with the key file it was started with"
            )
        if not key.verify_mac(self.mac, "journal", self.text):
            raise JournalDamaged(self.path, "its header does not verify under the run's key: "
                                            "it was edited or damaged")

    # -- the disk-space reserve -----------------------------------------------------------

    def release(self, part: int) -> None:
        """Give part ``part`` of the reserve back to the file system (the file keeps its length).

        Called just before HDF5 writes what needs new room in the store. Does nothing where
        the file system cannot punch holes (the reserve is then only checked at creation).
        """
        size = self.header.reserve[part]
        if size and _punch_hole(self.descriptor, self._reserve_offset(part), size):
            os.fsync(self.descriptor)  # some file systems free blocks only once it is durable

    def hold(self, part: int) -> None:
        """Allocate part ``part`` of the reserve again.

        Raises
        ------
        JournalError
            When the disk has no room for it (the caller stops between two windows).
        """
        size = self.header.reserve[part]
        if not size:
            return
        try:
            os.posix_fallocate(self.descriptor, self._reserve_offset(part), size)
        except OSError as error:
            if error.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                return
            raise JournalError(
                error.errno, f"cannot hold {size:,} bytes of disk space in the journal "
                f"{self.path!r} ({_describe(error)})"
            ) from None

    # -- creation and opening -------------------------------------------------------------

    @classmethod
    def create(cls, path: str, header: RunHeader, max_payload: int, key: Key,
               reserve: tuple[int, int, int] = (0, 0, 0), replace_existing: bool = False
               ) -> Journal:
        """Create a new journal holding ``header`` and two records of ``max_payload`` bytes.

        The header is bound to ``key`` by its MAC. ``reserve`` sizes the three parts of the
        disk-space reserve (see the module notes). With ``replace_existing``, the new journal
        atomically replaces the one at ``path`` once it is durable (a rollback takes over the
        journal of the run it undoes); otherwise an existing journal is an error.

        Raises
        ------
        JournalError
            When the file cannot be created or the disk has no room for it; nothing is left.
        """
        marking, finishing, window = (int(size) for size in reserve)
        header = replace(header, max_payload=int(max_payload),
                         reserve=(marking, finishing, window))
        text = header.to_json()
        mac = key.mac("journal", text)
        body = text + bytes.fromhex(mac)
        block = _HEADER_MAGIC + struct.pack("<I", len(text)) + body + _digest(body)
        if len(block) > _HEADER_SIZE:
            raise ValueError("journal header too large")
        if os.path.lexists(path) and not replace_existing:
            raise JournalError(errno.EEXIST, f"journal {path!r} already exists")
        # Built under another name and renamed once complete: a run killed while it creates
        # the journal leaves no journal (only a partial file, which the next run replaces),
        # so a journal under its own name is always whole and --resume never refuses one a
        # kill left half made.
        partial = path + PARTIAL_SUFFIX
        with contextlib.suppress(FileNotFoundError):
            os.unlink(partial)  # left by a run killed while it created the journal
        try:
            descriptor = os.open(partial, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except OSError as error:
            raise JournalError(
                error.errno, f"cannot create the journal {path!r} ({_describe(error)})"
            ) from None
        journal = cls(path, descriptor, header, mac, text)
        size = journal.size
        try:
            try:
                os.posix_fallocate(descriptor, 0, size)
            except OSError as error:
                if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                os.ftruncate(descriptor, size)  # filesystems without fallocate
            _write_all(descriptor, block, 0)
            journal._write_state(0, 0)  # fsyncs; a journal without a valid state is damaged
            os.rename(partial, path)
            fsync_folder_of(path)
        except OSError as error:
            os.close(descriptor)
            for leftover in (partial,) if replace_existing else (partial, path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(leftover)
            raise JournalError(
                error.errno, f"cannot create the journal {path!r} "
                f"({_describe(error)}; it needs {size:,} bytes beside the store)"
            ) from None
        return journal

    @classmethod
    def open(cls, path: str) -> Journal | None:
        """Open an existing journal and prove it intact; ``None`` when it was never used.

        A journal was never used when its header is torn (a crash while it was created)
        and neither record slot holds a record: the store was then never touched.

        Raises
        ------
        BadInputError
            When the journal was written by another fastmix version.
        JournalDamaged
            When it cannot be proven complete and intact (see the module notes).
        """
        descriptor = os.open(path, os.O_RDWR)
        try:
            found = _read_header(descriptor, path)
            if found is None:
                # Creation preallocates the file before it writes the header.
                if os.fstat(descriptor).st_size <= _RECORDS_OFFSET or \
                        _records_written(descriptor):
                    raise JournalDamaged(path, "its header is unreadable and the journal was "
                                               "used or cut short")
                os.close(descriptor)
                return None
            journal = cls(path, descriptor, *found)
            journal._prove()
        except BaseException:
            os.close(descriptor)
            raise
        return journal

    def _prove(self) -> None:
        """Check everything a resume relies on (see the module notes)."""
        length = os.fstat(self.descriptor).st_size
        if length != self.size:
            raise JournalDamaged(self.path, f"{length:,} bytes where the run preallocated "
                                            f"{self.size:,}")
        found = self._read_slots()
        if found is None:
            raise JournalDamaged(self.path, "no valid state slot")
        self._sequence, committed, ready = found
        self._state = (committed, ready)
        if self.header.window < 1 or self.header.count < 0:
            raise JournalDamaged(self.path, f"a window of {self.header.window} images")
        windows = self.header.window_ranges()
        if not committed <= ready <= min(committed + 2, len(windows)) or \
                len(windows) != self.header.windows:
            raise JournalDamaged(self.path, f"an impossible state: {committed} windows "
                                            f"committed, {ready} undo records ready, of "
                                            f"{self.header.windows}")
        if ready > committed:
            start, stop = windows[committed]
            if not self._record_intact(committed, start, stop):
                raise JournalDamaged(self.path, f"the undo record of window {committed}, "
                                                "which the store may hold half written, is "
                                                "incomplete or corrupt")

    def _record_intact(self, index: int, start: int, stop: int) -> bool:
        """Whether slot ``index % 2`` holds window ``index``'s complete record (streamed)."""
        base = self._slot(index)
        length = (stop - start) * self.header.image_bytes
        head = os.pread(self.descriptor, _RECORD.size, base)
        if head != _RECORD.pack(_RECORD_MAGIC, index, start, stop, length):
            return False
        count = -(-length // _SEGMENT)
        trailer = os.pread(self.descriptor, 4 * count + _DIGEST, base + _RECORD.size + length)
        crcs, digest = trailer[:4 * count], trailer[4 * count:]
        if len(trailer) != 4 * count + _DIGEST or digest != _digest(head, crcs):
            return False
        expected = struct.unpack(f"<{count}I", crcs)
        for number in range(count):
            first = number * _SEGMENT
            segment = os.pread(self.descriptor, min(_SEGMENT, length - first),
                               base + _RECORD.size + first)
            if len(segment) != min(_SEGMENT, length - first) or \
                    zlib.crc32(segment) != expected[number]:
                return False
        return True

    # -- state ----------------------------------------------------------------------------

    def _read_slots(self) -> tuple[int, int, int] | None:
        """Return the newest valid ``(sequence, committed, ready)``, or ``None``."""
        best = None
        for offset in _SLOT_OFFSETS:
            raw = os.pread(self.descriptor, _COMMIT.size + _DIGEST, offset)
            if len(raw) < _COMMIT.size + _DIGEST:
                continue
            magic, sequence, committed, ready = _COMMIT.unpack_from(raw)
            if magic == _COMMIT_MAGIC and raw[_COMMIT.size:] == _digest(raw[:_COMMIT.size]):
                best = max(best or (0, 0, 0), (sequence, committed, ready))
        return best

    def _write_state(self, committed: int | None = None, ready: int | None = None) -> None:
        """Durably record the state in both slots (one write, then fsync).

        ``None`` keeps that field; the reader thread (ready) and the writer thread
        (committed) update it concurrently, so the new state is made under the lock.
        """
        with self._lock:
            committed = self._state[0] if committed is None else committed
            ready = max(self._state[1], committed, 0 if ready is None else ready)
            self._sequence += 1
            body = _COMMIT.pack(_COMMIT_MAGIC, self._sequence, committed, ready)
            slot = (body + _digest(body)).ljust(_SLOT_BYTES, b"\0")
            _write_all(self.descriptor, slot + slot, _SLOT_OFFSETS[0])
            os.fsync(self.descriptor)
            self._state = (committed, ready)

    @property
    def committed(self) -> int:
        """Windows durably written to the store."""
        found = self._read_slots()
        return 0 if found is None else found[1]

    @property
    def ready(self) -> int:
        """Undo records durably written (window ``ready - 1``'s is the newest)."""
        found = self._read_slots()
        return 0 if found is None else found[2]

    def commit(self, committed: int) -> None:
        """Durably record that windows ``0 .. committed - 1`` are in the store."""
        self._write_state(committed=committed)

    # -- undo records ---------------------------------------------------------------------

    def _slot(self, index: int) -> int:
        return _RECORDS_OFFSET + (index % 2) * self.slot_size

    def write_undo(self, index: int, start: int, stop: int, window: np.ndarray,
                   pool=None) -> None:
        """Durably record the input bytes of window ``index`` before the store is written.

        ``pool`` (an executor) computes the checksums while the bytes are written. Once
        the record is durable, the state records it as ready.

        Raises
        ------
        JournalError
            When the write fails (a full disk): the store has not been touched.
        """
        payload = memoryview(np.ascontiguousarray(window)).cast("B")
        if payload.nbytes > self.header.max_payload:
            raise ValueError("window larger than the journal's records")
        segments = [payload[first:first + _SEGMENT]
                    for first in range(0, payload.nbytes, _SEGMENT)]
        # The checksums run in the pool while the bytes are written (both release the GIL).
        checksums = [pool.submit(zlib.crc32, segment) for segment in segments] \
            if pool is not None else None
        head = _RECORD.pack(_RECORD_MAGIC, index, start, stop, payload.nbytes)
        base = self._slot(index)
        try:
            # The header first; the digest that makes the record valid goes last.
            _write_all(self.descriptor, head, base)
            failing = os.environ.get(FAILURE_HOOK)
            if failing is not None and int(failing) == index:
                _write_all(self.descriptor, payload[:payload.nbytes // 2], base + _RECORD.size)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            _write_all(self.descriptor, payload, base + _RECORD.size)
            crcs = ([task.result() for task in checksums] if checksums is not None
                    else [zlib.crc32(segment) for segment in segments])
            trailer = struct.pack(f"<{len(crcs)}I", *crcs)
            _write_all(self.descriptor, trailer + _digest(head, trailer),
                       base + _RECORD.size + payload.nbytes)
            os.fsync(self.descriptor)
            self._write_state(ready=index + 1)
        except OSError as error:
            raise JournalError(
                error.errno, f"cannot write the journal {self.path!r} ({_describe(error)})"
            ) from None

    def pending_undo(self, buffer: np.ndarray) -> UndoRecord | None:
        """Return the undo record of window ``committed`` when the store may hold it torn.

        ``None`` when no record of that window was made ready: the store was not touched
        for it. Its payload is read into ``buffer`` (C-contiguous, at least the window's
        size) and returned as a view of it.

        Raises
        ------
        JournalDamaged
            When the record was made ready but is no longer intact.
        """
        found = self._read_slots()
        if found is None:
            raise JournalDamaged(self.path, "no valid state slot")
        _, committed, ready = found
        if ready <= committed:
            return None
        base = self._slot(committed)
        head = os.pread(self.descriptor, _RECORD.size, base)
        damaged = JournalDamaged(self.path, f"the undo record of window {committed} is "
                                            "incomplete or corrupt")
        if len(head) < _RECORD.size:
            raise damaged
        magic, index, start, stop, length = _RECORD.unpack(head)
        if magic != _RECORD_MAGIC or index != committed or length > self.slot_size:
            raise damaged
        count = -(-length // _SEGMENT)
        trailer = os.pread(self.descriptor, 4 * count + _DIGEST, base + _RECORD.size + length)
        if len(trailer) != 4 * count + _DIGEST:
            raise damaged
        crcs, digest = trailer[:4 * count], trailer[4 * count:]
        view = memoryview(buffer.reshape(-1).view(np.uint8))
        if digest != _digest(head, crcs) or view.nbytes < length:
            raise damaged
        view = view[:length]
        done = 0
        while done < length:
            read = os.preadv(self.descriptor, [view[done:]], base + _RECORD.size + done)
            if read <= 0:
                raise damaged
            done += read
        if list(struct.unpack(f"<{count}I", crcs)) != _segment_crcs(view):
            raise damaged
        return UndoRecord(index, start, stop, view)

    # -- end ------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the file (it stays on disk)."""
        if self.descriptor >= 0:
            os.close(self.descriptor)
            self.descriptor = -1

    def remove(self) -> None:
        """Close and delete the journal, durably (the run is complete)."""
        self.close()
        os.unlink(self.path)
        fsync_folder_of(self.path)


def _records_written(descriptor: int) -> bool:
    """Whether any undo record was ever written (the header cannot say where they are).

    Window 0's record, the first of every run, starts record slot 0, and every later
    record there starts with the same magic: its absence proves that no record was made,
    so the store was never touched.
    """
    return os.pread(descriptor, len(_RECORD_MAGIC), _RECORDS_OFFSET) == _RECORD_MAGIC


def read_journal_header(path: str | os.PathLike) -> RunHeader | None:
    """Return the header of the journal at ``path`` (read-only), or ``None``.

    ``None`` when there is no journal or its header is torn (it was never used); a
    :class:`~fastmix.errors.BadInputError` when another fastmix version wrote it.
    """
    try:
        descriptor = os.open(os.fspath(path), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        found = _read_header(descriptor, os.fspath(path))
    finally:
        os.close(descriptor)
    return None if found is None else found[0]


def _read_header(descriptor: int, path: str) -> tuple[RunHeader, str, bytes] | None:
    """Return the header, its MAC (hex) and its JSON, or ``None`` for a torn header."""
    head = os.pread(descriptor, _HEADER_SIZE, 0)
    if head[:8] != _HEADER_MAGIC or len(head) < 12:
        return None
    (length,) = struct.unpack_from("<I", head, 8)
    body = head[12:12 + length + _MAC]
    if len(body) != length + _MAC or \
            head[12 + len(body):12 + len(body) + _DIGEST] != _digest(body):
        # A header of format 2 had no MAC: say "another version" rather than "torn".
        text = head[12:12 + length]
        if len(text) == length and head[12 + length:12 + length + _DIGEST] == _digest(text):
            RunHeader.from_json(text, path)  # raises: another format
        return None
    text = body[:length]
    return RunHeader.from_json(text, path), body[length:].hex(), text


def _punch_hole(descriptor: int, offset: int, length: int) -> bool:
    """Free ``[offset, offset + length)`` of a file, keeping its length; ``False``: unsupported."""
    function = _fallocate()
    if function is None:
        return False
    if function(descriptor, _PUNCH_HOLE | _KEEP_SIZE, offset, length) == 0:
        return True
    number = ctypes.get_errno()
    if number in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
        return False
    raise OSError(number, os.strerror(number))


_PUNCH_HOLE, _KEEP_SIZE = 0x02, 0x01


@functools.cache
def _fallocate():
    try:
        function = ctypes.CDLL(None, use_errno=True).fallocate
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    function.restype = ctypes.c_int
    return function


def _write_all(descriptor: int, data, offset: int) -> None:
    view = memoryview(data).cast("B")
    done = 0
    while done < view.nbytes:
        done += os.pwrite(descriptor, view[done:], offset + done)


def _describe(error: OSError) -> str:
    if error.errno == errno.ENOSPC:
        return "no space left on device"
    return error.strerror or str(error)
