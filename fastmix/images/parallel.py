"""Worker threads for decoding and encoding image files.

Pillow releases the GIL while it decodes and encodes (checked with Pillow 13: another Python
thread runs freely during a long JPEG encode or decode), so threads overlap the work; only
imageio's and Pillow's per-file Python code holds it. :mod:`fastmix.images.workers` offers
worker processes (``processes=True``), but on the two shared cores where fastmix is measured
they cost more CPU per image than threads (interpreter start-up, pipe copies) and were slower
(``bench/bench_ingest.py``), so threads are the default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor


def worker_count(workers: int | None = None) -> int:
    """Return the number of workers: ``workers`` if given, else the CPUs this process may use."""
    from fastmix.store.hdf5.chunkio import codec_threads

    return max(1, int(workers)) if workers is not None else codec_threads()


def make_pool(workers: int | None = None) -> ThreadPoolExecutor:
    """Return a thread pool of :func:`worker_count` threads."""
    return ThreadPoolExecutor(worker_count(workers), thread_name_prefix="fastmix-images")


def bounded_map(pool: Executor, function: Callable, jobs: Iterable[tuple],
                ahead: int) -> Iterator:
    """``function(*job)`` for each job, results in order, at most ``ahead`` jobs in flight.

    Keeps memory bounded however many jobs there are (``Executor.map`` submits them all).
    The next job is taken from ``jobs`` only after the caller is done with the previous
    result, so jobs may write into ``ahead + 1`` buffers used in turn.
    """
    pending = []
    try:
        for job in jobs:
            pending.append(pool.submit(function, *job))
            if len(pending) >= ahead:
                yield pending.pop(0).result()
        while pending:
            yield pending.pop(0).result()
    finally:
        for future in pending:
            future.cancel()
