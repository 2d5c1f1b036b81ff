"""The in-place engine: a store rewritten window by window, surviving any kill or a full disk.

- :mod:`~fastmix.store.inplace.run`: :func:`run_in_place`, the steps of a run (lock, check,
  journal, mark, windows, finish) and the notes on what they rely on;
- :mod:`~fastmix.store.inplace.checks`: what a run checks and plans before it writes the
  first byte (guards, its journal header, what a resume or a rollback must find);
- :mod:`~fastmix.store.inplace.readcheck`: every chunk of the windows to rewrite read first;
- :mod:`~fastmix.store.inplace.rewrite`: the window loop (each window's input journaled,
  its output written over it, then committed) and the start of a rollback.

The journal and the lock beside the store are in :mod:`fastmix.store.durable`.
"""

from fastmix.store.inplace.rewrite import InPlaceRunStopped
from fastmix.store.inplace.run import run_in_place, store_was_changed

__all__ = ["InPlaceRunStopped", "run_in_place", "store_was_changed"]
