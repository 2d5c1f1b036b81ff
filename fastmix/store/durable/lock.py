"""``STORE.fastmix-lock``: one in-place run per store at a time.

The lock file is created with ``O_EXCL`` and holds the owner's PID and host name. The owner
also holds an exclusive ``flock`` on it for as long as it runs: the kernel drops that lock
when the process dies, however it dies, so a lock file whose ``flock`` can be taken is stale
(its owner is gone, even if its PID was reused) and is taken over. On another host (a
network file system) the PID cannot be checked; ``flock`` still decides.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time

from fastmix.errors import BadInputError, hint

LOCK_SUFFIX = ".fastmix-lock"


def lock_path(store_path: str | os.PathLike) -> str:
    """Return the lock file of ``store_path`` (beside the file a symbolic link names).

    Two runs through two names of one store (the file and a link to it) take the same lock.
    """
    return os.path.realpath(os.fspath(store_path)) + LOCK_SUFFIX


def pid_alive(pid: int) -> bool:
    """Return whether process ``pid`` runs here (one we may not signal counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _owner(descriptor: int) -> dict:
    try:
        return json.loads(os.pread(descriptor, 4096, 0) or b"{}")
    except ValueError:
        return {}


class StoreLock:
    """An exclusive lock on one store, held from :meth:`acquire` to :meth:`release`.

    Attributes
    ----------
    path : str
        The lock file.
    took_over : dict or None
        The owner recorded in a stale lock file that was taken over (``pid``, ``host``).
    """

    def __init__(self, store_path: str | os.PathLike):
        self.store = os.fspath(store_path)
        self.path = lock_path(store_path)
        self.descriptor: int | None = None
        self.took_over: dict | None = None

    def acquire(self) -> StoreLock:
        """Take the lock, or raise :class:`BadInputError` naming the process that holds it."""
        for _ in range(20):
            try:
                descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                created = True
            except FileExistsError:
                try:
                    descriptor = os.open(self.path, os.O_RDWR)
                except FileNotFoundError:  # released between our two calls: try again
                    continue
                created = False
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                owner = _owner(descriptor)
                os.close(descriptor)
                raise BadInputError(self._held_message(owner)) from None
            # The file we locked may have been removed and replaced by its owner's release.
            try:
                same = os.path.samestat(os.fstat(descriptor), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(descriptor)
                continue
            if not created:
                self.took_over = _owner(descriptor)
            record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.time()}).encode()
            try:
                os.ftruncate(descriptor, 0)
                os.pwrite(descriptor, record, 0)
            except OSError as error:  # a full disk: leave no lock file behind
                os.unlink(self.path)
                os.close(descriptor)
                raise OSError(error.errno, f"cannot write the lock file {self.path!r} "
                                           f"({error.strerror}); the store was not "
                                           "changed") from None
            self.descriptor = descriptor
            return self
        raise BadInputError(f"cannot take the lock {self.path!r}: it keeps changing; "
                            "another fastmix run is starting on this store")

    def _held_message(self, owner: dict) -> str:
        pid, host = owner.get("pid"), owner.get("host")
        here = socket.gethostname()
        who = f"process {pid} on {host}" if pid else "another process"
        if pid and host == here and not pid_alive(int(pid)):
            who += " (its PID is gone, but the lock is still held)"
        return (f"store {self.store!r} is being rewritten in place by {who} (lock "
                f"{self.path!r}); wait for it to finish, or stop it and "
                f"{hint('resume_again')}")

    def release(self) -> None:
        """Remove the lock file and drop the lock."""
        if self.descriptor is None:
            return
        try:
            os.unlink(self.path)
        finally:
            os.close(self.descriptor)
            self.descriptor = None

    def __enter__(self) -> StoreLock:
        """Acquire the lock."""
        return self.acquire()

    def __exit__(self, *exc_info) -> None:
        """Release the lock."""
        self.release()
