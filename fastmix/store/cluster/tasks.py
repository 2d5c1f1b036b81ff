"""What the workers run: one task per window, and how the client submits them in order.

:func:`window_task` opens the source itself (h5py objects cannot be pickled), reads its
window, plans it from (key, window index), mixes it and writes its output chunks into a
file of its own: a *part* (the one-file layout; the client copies its stored chunks into the
one file) or a shard (the sharded layout). Where the workers cannot share the destination's
folder, or the windows do not fall on chunk boundaries, the one-file layout has the task
return its encoded chunks instead. :func:`ordered_results` keeps a bounded number of tasks in
flight and yields their results in window order. Task names (:func:`task_name`) hold no key
material.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from fastmix.keys import Key
from fastmix.pipeline import Pipeline
from fastmix.spec import MixSpec
from fastmix.store.allocator import tune_allocator
from fastmix.store.durable.fsync import fsync_path
from fastmix.store.hdf5.access import open_hdf5
from fastmix.store.hdf5.chunkio import WindowReader, WindowWriter
from fastmix.store.hdf5.chunks import template_dataset
from fastmix.store.hdf5.record import PREFIX
from fastmix.store.hdf5.shard_binding import SHARD_RECORD, shard_name, shard_record
from fastmix.store.newfile.output import create_dataset_like

# Numba's workqueue threading layer aborts when two threads launch parallel kernels at
# once ("Concurrent access"), which a worker with several threads would do. Kernels of one
# worker process take turns; reading and encoding still overlap them.
_KERNEL_LOCK = threading.Lock()
_local = threading.local()


def warm_worker() -> None:
    """Compile the kernels on this worker (one small mix, under the kernel lock)."""
    from fastmix.mixing import mix_array

    images = np.zeros((4, 8, 8, 3), np.uint8)
    labels = np.zeros(4, np.int64)
    with _KERNEL_LOCK:
        mix_array(images, labels, MixSpec(block=(4, 4), donors=3), Key(bytes(32)))


def can_access(source: str, folder: str | None, mark: str | None) -> tuple[str, str]:
    """Return why this worker cannot read ``source``, and why it cannot share ``folder``.

    Each is ``""`` when it can. Sharing means writing ``folder`` and seeing the file
    ``mark`` the client put there.
    """
    source_problem = "" if os.access(source, os.R_OK) else \
        f"source store {source!r} cannot be read"
    folder_problem = ""
    if folder is not None and not (os.access(folder, os.W_OK) and mark is not None
                                   and os.path.exists(mark)):
        folder_problem = (f"folder {folder!r} cannot be written, or is not the folder the "
                          "client sees")
    return source_problem, folder_problem




@dataclass(frozen=True)
class Job:
    """What every window task of one run shares (all public: no key).

    Attributes
    ----------
    source : str
        Absolute path of the source store.
    images : str
        Images dataset name.
    spec : MixSpec
    inverse : bool
        Unmix instead of mix.
    raw : bool
        Whether the raw-chunk I/O path may be used (as in the single-process run).
    backend : str
    shard_folder : str or None
        Write each window into a shard file here (sharded layout).
    token : str
        Digest of the run's public parameters; names tasks.
    run : str
        The sharded run's id, recorded in every shard it writes ("" in the one-file layout).
    part_folder : str or None
        One-file layout: write each window into a part file here, for the client to copy
        its stored chunks; ``None``: return the encoded chunks instead.
    """

    source: str
    images: str
    spec: MixSpec
    inverse: bool
    raw: bool
    backend: str
    shard_folder: str | None
    token: str
    run: str = ""
    part_folder: str | None = None


@dataclass
class WindowResult:
    """What a window task returns.

    Attributes
    ----------
    index, start, stop : int
        The window.
    items : list or None
        Encoded output, as :meth:`WindowWriter.encode_piece` gives it with every encode
        finished (``None`` when the window went into a file).
    unpartnered : int
    seconds : dict
        Time spent reading, mixing, encoding and writing (a shard or a part) the window.
    part : str or None
        The part file holding the window (one-file layout with ``Job.part_folder``); the
        client copies the part it names itself (:func:`part_name`), stamped for its window.
    finished : float
        ``time.time()`` when the task ended (the client's shipping time starts there).
    cpu : dict
        CPU seconds of the worker process per stage, as ``seconds``.
    """

    index: int
    start: int
    stop: int
    items: list | None
    unpartnered: int
    seconds: dict = field(default_factory=dict)
    part: str | None = None
    finished: float = 0.0
    cpu: dict = field(default_factory=dict)


def _buffer(name: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    # Reused across the tasks of one worker thread: fresh pages cost more than the copy.
    buffer = getattr(_local, name, None)
    size = int(np.prod(shape, dtype=np.int64))
    if buffer is None or buffer.dtype != dtype or buffer.size < size:
        buffer = np.empty(size, dtype)
        setattr(_local, name, buffer)
    return buffer[:size].reshape(shape)


def _pool() -> ThreadPoolExecutor:
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = ThreadPoolExecutor(max(1, _numba_threads()), thread_name_prefix="fastmix-codec")
        _local.pool = pool
    return pool


def _numba_threads() -> int:
    import numba

    return numba.get_num_threads()


def window_task(job: Job, index: int, start: int, stop: int, labels: np.ndarray,
                key: Key) -> WindowResult:
    """Mix (or unmix) window ``index`` = images ``[start, stop)`` on a worker.

    Opens the source read-only, reads the window, plans it from (key, ``index``) and runs
    the pipeline's per-piece step a few chunks at a time: each piece is encoded (one-file
    layout, returned) or written into the window's shard file (sharded layout). A worker
    thread holds the window and one piece, besides the encoded chunks it returns.
    """
    # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also fixes glibc's mmap
    # threshold at 128 KiB: every chunk-sized codec buffer was mapped and faulted in afresh,
    # 1.2 s more CPU over 40,000 LZ4 images (3.0 s without). As in the single process.
    tune_allocator()
    stages = _Stages()
    mark = stages.now()
    pool = _pool()
    with open_hdf5(job.source) as file:
        dataset = file[job.images]
        shape, dtype = tuple(dataset.shape[1:]), dataset.dtype
        count = stop - start
        reader = WindowReader(dataset, pool, raw=job.raw)
        try:
            images = reader.read(start, stop, _buffer("input", (count, *shape), dtype))
        finally:
            reader.close()
        mark = stages.add("read", mark)
        pipeline = Pipeline(shape, dtype, job.spec, key, backend=job.backend,
                            inverse=job.inverse)
        with _KERNEL_LOCK:  # planning runs parallel kernels too
            plan = pipeline.plan(labels, index)
            window = pipeline.load(images, plan)
        stages.add("mix", mark)

        def pieces(length: int) -> Iterator[tuple[int, int, np.ndarray]]:
            # Offsets within the window, whole chunks at a time.
            for first in range(0, count, length):
                last = min(first + length, count)
                out = _buffer("piece", (last - first, *shape), dtype)
                started = stages.now()
                with _KERNEL_LOCK:
                    pipeline.mix_piece(window, first, last, out)
                stages.add("mix", started)
                yield first, last, out

        part = None
        with template_dataset(dataset) as template:
            mark, mixed = stages.now(), stages.mixed()
            if job.shard_folder is not None:
                _write_shard(job, template, index, start, stop, pieces, pool, key)
                stage, items = "write", None
            elif job.part_folder is not None:
                part = _write_part(job, template, index, start, stop, pieces, pool)
                stage, items = "write", None
            else:
                encoder = WindowWriter(template, pool, threads=1, raw=job.raw)
                items = []
                for first, last, out in pieces(encoder.piece_length()):
                    items += _finished(encoder.encode_piece(start + first, start + last, out))
                stage = "encode"
            # The pieces' mixing ran inside this loop; it is counted as "mix".
            stages.add(stage, mark, less=mixed)
    return WindowResult(index, start, stop, items, int(plan.unpartnered), stages.seconds, part,
                        time.time(), stages.cpu)


class _Stages:
    """Wall seconds and CPU seconds (of the worker process) per stage of a window task.

    The CPU seconds include the codec threads' and, a little, the worker's own event loop;
    unlike wall seconds they hardly grow when other jobs share the cores.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

    @staticmethod
    def now() -> tuple[float, float]:
        return time.perf_counter(), time.process_time()

    def mixed(self) -> tuple[float, float]:
        """Return the seconds counted as ``mix`` so far (wall, CPU)."""
        return self.seconds.get("mix", 0.0), self.cpu.get("mix", 0.0)

    def add(self, stage: str, since: tuple[float, float],
            less: tuple[float, float] | None = None) -> tuple[float, float]:
        """Count the time from ``since`` to now as ``stage`` (less the mixing since ``less``)."""
        now = self.now()
        wall, cpu = now[0] - since[0], now[1] - since[1]
        if less is not None:
            wall -= self.seconds.get("mix", 0.0) - less[0]
            cpu -= self.cpu.get("mix", 0.0) - less[1]
        self.seconds[stage] = self.seconds.get(stage, 0.0) + wall
        self.cpu[stage] = self.cpu.get(stage, 0.0) + cpu
        return now


def _finished(items: list) -> list:
    """``encode_piece`` output with every encode done and every buffer copied out."""
    done: list[tuple[int | None, object]] = []
    for offset, encoded in items:
        if offset is None:
            start, stop, images = encoded
            done.append((None, (start, stop, np.array(images))))
            continue
        if not isinstance(encoded, memoryview | bytes | bytearray):
            encoded = encoded.result()
        done.append((offset, bytes(encoded)))
    return done


def _write_shard(job: Job, template, index: int, start: int, stop: int, pieces,
                 pool: ThreadPoolExecutor, key: Key) -> None:
    assert job.shard_folder is not None  # a shard is written in the sharded layout only

    def record(dataset) -> None:
        dataset.attrs[SHARD_RECORD] = shard_record(
            key, job.run, index, start, stop, "unmix" if job.inverse else "mix",
            dataset.shape, dataset.dtype)

    _write_window_file(job, template, os.path.join(job.shard_folder, shard_name(index)),
                       stop - start, pieces, pool, finish=record, durable=True)


def _write_part(job: Job, template, index: int, start: int, stop: int, pieces,
                pool: ThreadPoolExecutor) -> str:
    """Write the window into its part file, stamped with :func:`part_stamp`; return its path.

    Not fsynced: the client copies the part's chunks into the one file, which it fsyncs; a
    part lost in a crash is a window not marked done, which the resume mixes again.
    """
    assert job.part_folder is not None  # a part is written in the one-file layout only
    path = os.path.join(job.part_folder, part_name(job.token, index))

    def stamp(dataset) -> None:
        dataset.attrs[PART_STAMP] = part_stamp(job.token, index, start, stop)

    _write_window_file(job, template, path, stop - start, pieces, pool, finish=stamp,
                       durable=False)
    return path


#: Attribute of a part's ``images`` dataset: the run token and window it was written for.
PART_STAMP = "fastmix_part"


def part_name(token: str, index: int) -> str:
    """Return the file name of window ``index``'s part file in the run of ``token``.

    The token is in the name: a task of another run (one a killed client left running,
    which Dask cannot stop) never writes the part this run copies.
    """
    return f"part-{token}-{index:06d}.h5"


def part_stamp(token: str, index: int, start: int, stop: int) -> str:
    """Return the stamp of a part: run token, window index, first and end image (no key)."""
    return json.dumps({"token": token, "index": index, "start": start, "stop": stop},
                      sort_keys=True)


def _write_window_file(job: Job, template, final: str, count: int, pieces,
                       pool: ThreadPoolExecutor, finish=None, durable: bool = True) -> None:
    """Write a window into a new HDF5 file ``final`` with the chunks and filters of ``template``.

    Written under a temporary name and renamed when complete, so a file of that name is
    always whole (a task that runs twice writes the same bytes twice).
    """
    import h5py

    folder, name = os.path.split(final)
    temporary = os.path.join(folder, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with h5py.File(temporary, "w", libver=template.file.libver) as file:
            dataset = create_dataset_like(template, file, "images", skip_prefix=PREFIX,
                                          shape=(count, *template.shape[1:]))
            writer = WindowWriter(dataset, pool, threads=1, raw=job.raw)
            for first, last, out in pieces(writer.piece_length()):
                writer.write(first, last, out)
            if finish is not None:
                finish(dataset)
        if durable:
            fsync_path(temporary)
        os.replace(temporary, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


def task_name(operation: str, token: str, index: int) -> str:
    """Return the deterministic Dask key of window ``index``'s task (holds no key material)."""
    return f"fastmix-{operation}-{token}-{index:06d}"


def ordered_results(client, job: Job, windows, todo: list[int], labels: np.ndarray, key: Key,
                    limit: int) -> Iterator[WindowResult]:
    """Submit the windows of ``todo``, at most ``limit`` in flight; yield results in order."""
    operation = "unmix" if job.inverse else "mix"
    pending: deque = deque()
    queue = iter(todo)

    def submit_next() -> None:
        index = next(queue, None)
        if index is None:
            return
        start, stop = windows[index]
        pending.append((index, client.submit(window_task, job, index, start, stop,
                                             labels[start:stop], key,
                                             key=task_name(operation, job.token, index),
                                             pure=False)))

    for _ in range(limit):
        submit_next()
    try:
        while pending:
            index, future = pending.popleft()
            try:
                result = future.result()
            finally:
                # Also a failed task's: the scheduler would keep its error under its
                # (deterministic) name and hand it to the resume of this run.
                future.release()
            if (result.index, result.start, result.stop) != (index, *windows[index]):
                raise RuntimeError(f"the task of window {index} returned window "
                                   f"{result.index} [{result.start}, {result.stop})")
            submit_next()
            yield result
    finally:
        for _, future in pending:
            future.cancel()


def add_stages(stages: dict, seconds: dict) -> None:
    """Add a task's seconds per stage to the run's totals."""
    for name, value in seconds.items():
        stages[name] = stages.get(name, 0.0) + value
