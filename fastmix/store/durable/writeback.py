"""Start writing a growing output file to disk early, so the final fsync has little left.

``sync_file_range(SYNC_FILE_RANGE_WRITE)`` queues the dirty pages for writeback without
waiting for them; called after each window, the disk works while the next window is mixed.
Linux only; elsewhere it does nothing and the final fsync does all the work.
"""

from __future__ import annotations

import ctypes
import functools
import os

_SYNC_FILE_RANGE_WRITE = 2


@functools.cache
def _sync_file_range():
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int
    return function


class EarlyWriteback:
    """Queue a file's dirty pages for writeback on :meth:`kick`; close with :meth:`close`."""

    def __init__(self, path: str):
        self.function = _sync_file_range()
        self.descriptor = os.open(path, os.O_RDONLY) if self.function is not None else None

    def kick(self, *_ignored) -> None:
        """Start writeback of everything written so far (does not wait for it)."""
        if self.descriptor is not None:
            self.function(self.descriptor, 0, 0, _SYNC_FILE_RANGE_WRITE)

    def close(self) -> None:
        """Release the descriptor."""
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None
