"""Mixing on a Dask cluster: one task per window.

Windows are independent (each is seeded by (key, window index)), so a cluster runs one task
per window, after STUMPY's ``stumped``: every task opens the source itself, read-only
(h5py objects cannot be pickled), plans its window from (key, window index), mixes it and
encodes its output chunks with the encoder of the single-process engine
(:meth:`~fastmix.store.chunkio.WindowWriter.encode_piece`).

Two output layouts:

one file (default)
    The client writes the encoded chunks with direct chunk writes, in window order, into a
    hidden partial file beside the destination. After each window it flushes the file and
    appends the window to a done log; at the end it records the ``fastmix_*`` attributes
    and renames the file into place. The images dataset equals the single-process run's
    byte for byte. A killed client is finished by ``resume=True`` from the done log.
shards
    Each task writes its window into its own HDF5 file in ``DST.shards/`` (under a
    temporary name, renamed when complete). The destination then holds an HDF5 virtual
    dataset mapping the shards into one images dataset, the labels and the ``fastmix_*``
    record. ``resume=True`` keeps the completed shards of the same run.

Shard binding
-------------
A sharded store and its shards are bound by a *run id*: 32 lowercase hex characters from
``secrets`` (random, not derived from the key), new for every run that is not a resume.

``DST`` (the store)
    The images dataset carries ``fastmix_shard_run`` = the run id (a string attribute; a
    mixed store's record MAC covers it with every other ``fastmix_*`` attribute, an unmixed
    sharded output carries it alone). Its virtual dataset maps window ``i`` = images
    ``[start, stop)`` to dataset ``images`` of ``DST.shards/window-{i:06d}.h5``, named
    relative to the store's folder with every ``%`` doubled (HDF5 expands ``%b`` in a
    mapped file name and reads ``%%`` as one ``%``).
``DST.shards/window-{i:06d}.h5`` (a shard)
    Its ``images`` dataset carries ``fastmix_shard``, a JSON object (sorted keys) with
    ``run`` (the run id), ``window`` (``i``), ``start`` and ``stop`` (the window's images),
    ``operation`` (``"mix"`` or ``"unmix"``) and ``mac``: 64 hex characters,
    ``Key.mac("shard", run, window, start, stop, operation, shape, dtype)``
    (:meth:`fastmix.keys.Key.mac`) where ``run`` and ``operation`` are text, ``window``,
    ``start`` and ``stop`` integers, ``shape`` the shard's images shape as comma-separated
    decimals (``"32,32,32,3"``) and ``dtype`` their NumPy dtype string (``"|u1"``). The MAC
    binds a shard to its run, its place and the key; it does not cover the pixels.
``DST.shards/fastmix-run.json`` (the run record)
    A JSON object (sorted keys): ``run``; ``token`` (the digest of the run's public
    parameters, :func:`run_token`); ``operation``; ``windows`` (their number); ``source``
    (the source fingerprint, :func:`source_fingerprint`); ``published`` (``false`` until
    the store is complete, set to ``true`` just before the store is renamed into place); and
    ``mac``: ``Key.mac("shard-run", text)`` where ``text`` is the record without ``mac`` as
    JSON with sorted keys. Written atomically (temporary file, fsync, rename).

Every reader of a store whose images dataset names a run (:func:`fastmix.store.access.
open_store`) refuses it, one line, exit status 2, unless every mapped shard's record names
that run, the window of its place (mappings in order of their first image) and that
place's images; ``unmix`` also verifies each shard's MAC under its key
(:func:`fastmix.store.shards.check_shard_binding`). A new sharded run into ``DST.shards/``
discards the shards found there only when no store can read them: their run never
published, or it made ``DST`` itself (which ``overwrite`` replaces); otherwise (a store
renamed away from its shards, or shards without a run record) it refuses and leaves them.
``resume=True`` continues only an unpublished run whose record verifies under the key, with
the same ``token`` and an unchanged source fingerprint, and refuses a shard file that is
not that run's (run id, window, images, operation and MAC).

The key travels only inside task arguments, in memory: task names are a digest of the
run's public parameters (source, destination, spec, window, key check value) and the
window index, so they are deterministic and a rerun task writes the same bytes.

Dask is optional (``pip install 'fastmix[dask]'``): this module imports it only inside the
functions that talk to a cluster.
"""

from __future__ import annotations

import contextlib
import hashlib
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

from fastmix._optional import require
from fastmix.errors import BadInputError, BadInputTypeError, hint
from fastmix.keys import Key
from fastmix.pipeline import Pipeline
from fastmix.progress import Progress
from fastmix.spec import MixSpec, parse_memory
from fastmix.store.access import open_hdf5
from fastmix.store.chunkio import WindowReader, WindowWriter, codec_threads
from fastmix.store.crashrepair import clear_open_flag
from fastmix.store.durable import fsync_folder_of, fsync_path
from fastmix.store.hdf5 import stored_chunks
from fastmix.store.metadata import PREFIX, seal_record, write_mix_attributes
from fastmix.store.newfile import (
    check_destination,
    copy_attributes,
    copy_userblock,
    create_dataset_like,
    create_output,
    replace_dataset,
    template_dataset,
)
from fastmix.store.prepare import count_unpartnered
from fastmix.store.report import StoreReport
from fastmix.store.shards import (
    RUN_ATTRIBUTE,
    SHARD_RECORD,
    mapped_file,
    mapping_file_name,
    new_run_id,
    read_shard_record,
    shard_name,
    shard_record,
    store_run,
    verify_shard,
)
from fastmix.store.windows import chunk_bytes

#: Seconds to wait for a scheduler before giving up (an unreachable address is bad input).
CONNECT_TIMEOUT = 10.0

INSTALL_HINT = "install the cluster extra: pip install 'fastmix[dask]'"
PARTIAL_MARK = ".fastmix-partial"
SHARDS_SUFFIX = ".shards"
#: The run record of a sharded run, in its shard folder (JSON; see the module docstring).
RUN_FILE = "fastmix-run.json"
#: Tries of a broadcast to every worker (a worker killed during it fails the try).
BROADCAST_TRIES = 5

# Numba's workqueue threading layer aborts when two threads launch parallel kernels at
# once ("Concurrent access"), which a worker with several threads would do. Kernels of one
# worker process take turns; reading and encoding still overlap them.
_KERNEL_LOCK = threading.Lock()
_local = threading.local()


# ---------------------------------------------------------------------------------------
# Connecting


def check_cluster_options(client, shards: bool, in_place: bool) -> None:
    """Refuse ``shards`` without a client, a client with ``in_place``, and a non-client."""
    if client is None:
        if shards:
            raise BadInputError("shards are written by the workers of a Dask cluster; pass "
                                "client= (--scheduler or --workers), or drop shards")
        return
    if in_place:
        raise BadInputError("a Dask cluster writes a new file; drop in_place (--in-place) "
                            "or the cluster (client=, --scheduler, --workers)")
    if not hasattr(client, "submit") or not hasattr(client, "run"):
        raise BadInputTypeError(
            f"client must be a dask.distributed.Client, got {type(client).__name__}")


def require_dask():
    """Import ``dask.distributed``, or raise :class:`BadInputError` naming the extra."""
    return require("distributed", "dask", needed_by="running on a Dask cluster",
                   package="dask.distributed", advice=INSTALL_HINT)


@contextlib.contextmanager
def cluster_client(scheduler: str | None = None, workers: int | None = None, *,
                   timeout: float = CONNECT_TIMEOUT) -> Iterator[object]:
    """Return a ``dask.distributed.Client`` for the command line, closed on exit.

    Parameters
    ----------
    scheduler : str, optional
        Address of a running scheduler (``tcp://HOST:PORT``).
    workers : int, optional
        Start a ``LocalCluster`` of this many worker processes (one thread each, Numba
        threads shared out over the CPUs) for the run instead.
    timeout : float
        Seconds to wait for the scheduler.

    Raises
    ------
    BadInputError
        Dask is not installed, or the scheduler cannot be reached in ``timeout`` seconds.
    """
    distributed = require_dask()
    import logging

    quiet = [logging.getLogger(name) for name in ("distributed", "tornado", "bokeh")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.CRITICAL)
    try:
        if scheduler is not None:
            try:
                client = distributed.Client(scheduler, timeout=timeout,
                                            set_as_default=False)
            except (OSError, TimeoutError, ValueError) as error:
                reason = str(error).strip().splitlines()[0] if str(error).strip() else \
                    type(error).__name__
                raise BadInputError(
                    f"cannot reach the Dask scheduler at {scheduler!r} within {timeout:g} s "
                    f"({reason}); check the address and that the scheduler is running"
                ) from None
            with client:
                yield client
        else:
            count = workers or 1
            threads = max(1, codec_threads() // count)
            cluster = distributed.LocalCluster(
                n_workers=count, threads_per_worker=1, processes=True,
                dashboard_address=None, silence_logs=logging.CRITICAL,
                env={"NUMBA_NUM_THREADS": str(threads)})
            with cluster, distributed.Client(cluster, set_as_default=False) as client:
                yield client
    finally:
        for logger, level in zip(quiet, levels):
            logger.setLevel(level)


def warm_up(client) -> None:
    """Compile the kernels on every worker once, before the first window.

    The kernels are cached on disk (``cache=True``), so a later worker on the same machine
    loads them instead of compiling. Numba ignores ``OMP_NUM_THREADS``: a worker's kernels
    use ``NUMBA_NUM_THREADS`` threads (set it in the worker's environment, to the cores of
    one worker process); the kernels of one worker take turns (see ``_KERNEL_LOCK``).
    """
    broadcast(client, _warm_worker)


def broadcast(client, function, *args) -> dict:
    """Run ``function(*args)`` on every worker; return ``{worker address: result}``.

    A worker killed during a broadcast closes its connection, which fails the scheduler's
    whole broadcast (``CommClosedError``). Here a connection error of one worker is left
    out of the answers instead, and the broadcast is tried again on the workers the
    scheduler then knows (the functions broadcast here may run twice), at most
    :data:`BROADCAST_TRIES` times, until one try has no connection error. A worker that died
    is not waited for: its nanny's replacement runs on the same machine. Any other exception
    of a worker is raised.
    """
    answers: dict = {}
    lost: BaseException | None = None
    for attempt in range(BROADCAST_TRIES):
        if attempt:
            time.sleep(0.2 * attempt)
        try:
            results = client.run(function, *args, on_error="return")
        except (OSError, TimeoutError) as error:  # the scheduler's own broadcast failed
            lost = error
            continue
        complete = True
        for address, result in results.items():
            if isinstance(result, OSError | TimeoutError):
                lost, complete = result, False
            elif isinstance(result, BaseException):
                raise result
            else:
                answers[address] = result
        if complete:
            return answers
    if answers:
        return answers
    raise lost if lost is not None else RuntimeError("no Dask worker answered")


def _warm_worker() -> None:
    from fastmix.mixing import mix_array

    images = np.zeros((4, 8, 8, 3), np.uint8)
    labels = np.zeros(4, np.int64)
    with _KERNEL_LOCK:
        mix_array(images, labels, MixSpec(block=(4, 4), donors=3), Key(bytes(32)))


def _check_workers_see(client, source: str, folder: str | None) -> None:
    """Raise :class:`BadInputError` when a worker cannot read ``source`` or share ``folder``.

    Sharing means the worker can write ``folder`` and sees the marker file this process
    put there (a worker's own local folder of the same path would not hold it).
    """
    with _marked(folder) as mark:
        answers = broadcast(client, _can_access, source, folder, mark)
    for address, problem in sorted(answers.items()):
        if problem:
            raise BadInputError(
                f"{problem} on Dask worker {address} ({len(answers)} worker(s)); the workers "
                "open the store themselves: put it on a filesystem every worker mounts, at "
                "the same path"
            )


@contextlib.contextmanager
def _marked(folder: str | None) -> Iterator[str | None]:
    # A file only this run creates: a worker that sees it shares the folder with the client
    # (a worker's own local folder of the same path would not hold it).
    if folder is None:
        yield None
        return
    mark = os.path.join(folder, f".fastmix-mark-{uuid.uuid4().hex}")
    with open(mark, "w"):
        pass
    try:
        yield mark
    finally:
        os.remove(mark)


def _can_access(source: str, folder: str | None, mark: str | None) -> str:
    if not os.access(source, os.R_OK):
        return f"source store {source!r} cannot be read"
    if folder is not None and not (os.access(folder, os.W_OK) and mark is not None
                                   and os.path.exists(mark)):
        return (f"shard folder {folder!r} cannot be written, or is not the folder the client "
                "sees")
    return ""


# ---------------------------------------------------------------------------------------
# The task that runs on a worker


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
        Write each window into a shard file here (sharded layout) instead of returning its
        encoded chunks.
    token : str
        Digest of the run's public parameters; names tasks.
    run : str
        The sharded run's id, recorded in every shard it writes ("" in the one-file layout).
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


@dataclass
class WindowResult:
    """What a window task returns.

    Attributes
    ----------
    index, start, stop : int
        The window.
    items : list or None
        Encoded output, as :meth:`WindowWriter.encode_piece` gives it with every encode
        finished (``None`` in the sharded layout).
    unpartnered : int
    seconds : dict
        Time spent reading, mixing, encoding and (sharded) writing the window.
    """

    index: int
    start: int
    stop: int
    items: list | None
    unpartnered: int
    seconds: dict = field(default_factory=dict)


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
    seconds = {"read": 0.0, "mix": 0.0}
    clock = time.perf_counter()
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
        seconds["read"] = time.perf_counter() - clock
        clock = time.perf_counter()
        pipeline = Pipeline(shape, dtype, job.spec, key, backend=job.backend,
                            inverse=job.inverse)
        with _KERNEL_LOCK:  # planning runs parallel kernels too
            plan = pipeline.plan(labels, index)
            window = pipeline.load(images, plan)
        seconds["mix"] = time.perf_counter() - clock

        def pieces(length: int) -> Iterator[tuple[int, int, np.ndarray]]:
            # Offsets within the window, whole chunks at a time.
            for first in range(0, count, length):
                last = min(first + length, count)
                out = _buffer("piece", (last - first, *shape), dtype)
                started = time.perf_counter()
                with _KERNEL_LOCK:
                    pipeline.mix_piece(window, first, last, out)
                seconds["mix"] += time.perf_counter() - started
                yield first, last, out

        with template_dataset(dataset) as template:
            clock, planning = time.perf_counter(), seconds["mix"]
            if job.shard_folder is not None:
                _write_shard(job, template, index, start, stop, pieces, pool, key)
                stage, items = "write", None
            else:
                encoder = WindowWriter(template, pool, threads=1, raw=job.raw)
                items = []
                for first, last, out in pieces(encoder.piece_length()):
                    items += _finished(encoder.encode_piece(start + first, start + last, out))
                stage = "encode"
            # The pieces' mixing ran inside this loop; it is counted as "mix".
            seconds[stage] = time.perf_counter() - clock - (seconds["mix"] - planning)
    return WindowResult(index, start, stop, items, int(plan.unpartnered), seconds)


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
    import h5py

    assert job.shard_folder is not None  # a shard is written in the sharded layout only
    final = os.path.join(job.shard_folder, shard_name(index))
    temporary = os.path.join(job.shard_folder,
                             f".{shard_name(index)}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        with h5py.File(temporary, "w", libver=template.file.libver) as shard:
            dataset = create_dataset_like(template, shard, "images", skip_prefix=PREFIX,
                                          shape=(stop - start, *template.shape[1:]))
            writer = WindowWriter(dataset, pool, threads=1, raw=job.raw)
            for first, last, out in pieces(writer.piece_length()):
                writer.write(first, last, out)
            dataset.attrs[SHARD_RECORD] = shard_record(
                key, job.run, index, start, stop, "unmix" if job.inverse else "mix",
                dataset.shape, dataset.dtype)
        fsync_path(temporary)
        os.replace(temporary, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)


# ---------------------------------------------------------------------------------------
# The client side


def run_token(operation: str, source: str, destination: str, spec: MixSpec,
              windows: list[tuple[int, int]], key_check: str, shards: bool) -> str:
    """Digest of a run's public parameters: names its tasks and marks its shards."""
    text = json.dumps([operation, source, destination, spec.canonical(), windows[:1],
                       len(windows), key_check, shards])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def task_name(operation: str, token: str, index: int) -> str:
    """Return the deterministic Dask key of window ``index``'s task (holds no key material)."""
    return f"fastmix-{operation}-{token}-{index:06d}"


def partial_path(destination: str) -> str:
    """Return the hidden file a one-file cluster run writes, then renames to ``destination``."""
    folder, name = os.path.split(os.path.abspath(destination))
    return os.path.join(folder, f".{name}{PARTIAL_MARK}")


def shard_folder(destination: str) -> str:
    """Return the folder of a sharded destination's shard files."""
    return os.path.abspath(destination) + SHARDS_SUFFIX


def in_flight_limit(memory: int | str, window_bytes: int, worker_threads: int) -> int:
    """Return the windows in flight: two per worker thread, as many as ``memory`` holds.

    At least one; the writer holds the windows in flight.
    """
    fits = parse_memory(memory) // max(1, window_bytes)
    return max(1, min(2 * max(1, worker_threads), fits))


class _DoneLog:
    """The done marks of a one-file run: a header line, then one line per written window."""

    def __init__(self, path: str):
        self.path = path

    def read(self, header: dict) -> dict[int, int]:
        """``{window index: unpartnered}`` of a log whose header equals ``header``."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except FileNotFoundError:
            return {}
        if not lines or lines[0] != json.dumps(header, sort_keys=True):
            return {}
        done = {}
        for line in lines[1:]:
            parts = line.split()
            if len(parts) == 2 and all(part.isdigit() for part in parts):
                done[int(parts[0])] = int(parts[1])
        return done

    def start(self, header: dict) -> None:
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(header, sort_keys=True) + "\n")

    def mark(self, index: int, unpartnered: int) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(f"{index} {unpartnered}\n")

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


def run_on_cluster(operation: str, source: str, destination: str | os.PathLike[str] | None, *,
                   client, store,
                   windows: list[tuple[int, int]], spec: MixSpec, key: Key, labels_name: str,
                   memory: int | str, raw: bool, overwrite: bool, resume: bool, shards: bool,
                   progress: bool, backend: str) -> StoreReport:
    """Run a new-file mix or unmix of ``store`` on the cluster of ``client``.

    ``windows`` and ``raw`` are those the single-process engine would use, so the output
    bytes are the same. Called by :func:`fastmix.store.engine.mix_store` and
    :func:`~fastmix.store.engine.unmix_store` with ``client=``.

    Returns
    -------
    StoreReport
        With ``extra["stages"]``: seconds spent reading, mixing, encoding (summed over the
        workers) and writing, and ``extra["layout"]``.
    """
    require_dask()
    started = time.perf_counter()
    source = os.path.abspath(source)
    destination = os.path.abspath(check_destination(source, destination, overwrite))
    folder = shard_folder(destination) if shards else None
    inverse = operation == "unmix"
    token = run_token(operation, source, destination, spec, windows, key.check_value, shards)
    run = ""
    done: dict[int, int] = {}  # {window index: 0} of the shards already written
    if folder is not None:
        os.makedirs(folder, exist_ok=True)
        run, done = _claim_shard_folder(folder, destination, store, token, operation, windows,
                                        key, resume)
    _check_workers_see(client, source, folder)
    warm_up(client)
    job = Job(source=source, images=store.images.name, spec=spec, inverse=inverse, raw=raw,
              backend=backend, shard_folder=folder, token=token, run=run)
    threads = sum(client.nthreads().values())
    image_bytes = store.image_bytes
    longest = max((stop - start for start, stop in windows), default=0)
    limit = in_flight_limit(memory, longest * image_bytes, threads)
    stages = {"read": 0.0, "mix": 0.0, "encode": 0.0, "write": 0.0}
    with Progress(store.count, image_bytes, operation, progress) as bar:
        if shards:
            unpartnered = _run_sharded(client, job, store, windows, key, done, limit, bar,
                                       stages)
        else:
            unpartnered = _run_one_file(client, job, store, windows, key, destination,
                                        resume, overwrite, limit, bar, stages)
        if folder is not None:  # shards
            _write_virtual_store(store, destination, folder, windows, spec, key, labels_name,
                                 unpartnered, operation, overwrite, run)
    return StoreReport(operation=operation, destination=destination, spec=spec,
                       images=store.count, windows=len(windows), window=longest,
                       unpartnered=unpartnered if operation == "mix" else 0,
                       pixel_bytes=store.count * image_bytes,
                       seconds=time.perf_counter() - started,
                       io_path=f"dask/{'shards' if shards else 'one-file'}",
                       extra={"stages": stages, "layout": "shards" if shards else "one-file",
                              "workers": len(client.nthreads())})


def _ordered_results(client, job: Job, windows, todo: list[int], labels: np.ndarray, key: Key,
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
        pending.append(client.submit(window_task, job, index, start, stop,
                                     labels[start:stop], key,
                                     key=task_name(operation, job.token, index), pure=False))

    for _ in range(limit):
        submit_next()
    try:
        while pending:
            future = pending.popleft()
            try:
                result = future.result()
            finally:
                # Also a failed task's: the scheduler would keep its error under its
                # (deterministic) name and hand it to the resume of this run.
                future.release()
            submit_next()
            yield result
    finally:
        for future in pending:
            future.cancel()


def _add_stages(stages: dict, seconds: dict) -> None:
    for name, value in seconds.items():
        stages[name] = stages.get(name, 0.0) + value


def _run_one_file(client, job: Job, store, windows, key: Key, destination: str, resume: bool,
                  overwrite: bool, limit: int, bar, stages: dict) -> int:
    import h5py

    partial = partial_path(destination)
    log = _DoneLog(partial + ".done")
    header = {"token": job.token, "windows": len(windows)}
    done = log.read(header) if resume and os.path.exists(partial) else {}
    target = None
    if done:
        try:
            clear_open_flag(partial)  # a killed writer leaves it set in newer file formats
            target = h5py.File(partial, "r+")
            output = target[job.images]
            if not _windows_written(output, windows, done):
                raise OSError("done windows without their chunks")
        except (OSError, KeyError):
            if target is not None:
                target.close()
            target, done = None, {}
    if target is None:
        log.remove()
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)
        target = h5py.File(partial, "w", libver=store.file.libver,
                           userblock_size=store.file.userblock_size,
                           rdcc_nbytes=max(1 << 20, 2 * chunk_bytes(store.images)))
        output = create_output(store.file, target, store.images.name, skip_prefix=PREFIX,
                               early_allocation=job.raw)
        target.flush()
        log.start(header)
    finished = False
    try:
        with ThreadPoolExecutor(1) as pool:
            writer = WindowWriter(output, pool, threads=1, raw=job.raw)
            if job.raw:
                writer.write_in_place(partial)
            try:
                for index in done:
                    start, stop = windows[index]
                    bar.update(stop - start)
                todo = [index for index in range(len(windows)) if index not in done]
                for result in _ordered_results(client, job, windows, todo, store.labels, key,
                                               limit):
                    clock = time.perf_counter()
                    assert result.items is not None  # the one-file layout's results have them
                    writer.store_piece(result.items)
                    target.flush()
                    stages["write"] += time.perf_counter() - clock
                    _add_stages(stages, result.seconds)
                    log.mark(result.index, result.unpartnered)
                    done[result.index] = result.unpartnered
                    bar.update(result.stop - result.start)
            finally:
                writer.close()
        unpartnered = sum(done.values())
        if not job.inverse:
            write_mix_attributes(output, job.spec, window=max(b - a for a, b in windows),
                                 key_check=key.check_value, labels=store.labels_name,
                                 unpartnered=unpartnered, key=key)
        target.close()
        target = None
        copy_userblock(store.path, partial, store.file.userblock_size)
        fsync_path(partial)
        if os.path.exists(destination) and not overwrite:
            raise BadInputError(
                f"destination {destination!r} appeared while fastmix was writing; it was left "
                "alone. Choose another path or pass --overwrite"
            )
        os.replace(partial, destination)
        finished = True
        log.remove()
        fsync_folder_of(destination)
    finally:
        if target is not None:
            target.close()
        if not finished and not _resumable(partial, log):
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
            log.remove()
    return unpartnered


def _resumable(partial: str, log: _DoneLog) -> bool:
    # Keep a partial file that has windows marked done: resume=True finishes it.
    try:
        with open(log.path, encoding="utf-8") as handle:
            return os.path.exists(partial) and len(handle.read().splitlines()) > 1
    except FileNotFoundError:
        return False


def _windows_written(output, windows, done: dict[int, int]) -> bool:
    """Whether every chunk of the windows in ``done`` is in ``output``'s chunk index."""
    if output.chunks is None:
        return True
    step = int(output.chunks[0])
    present = {chunk.first for chunk in stored_chunks(output)}
    for index in done:
        start, stop = windows[index]
        if any(chunk not in present for chunk in range(start - start % step, stop, step)):
            return False
    return True


def _run_sharded(client, job: Job, store, windows, key: Key, done: dict[int, int], limit: int,
                 bar, stages: dict) -> int:
    for index in done:
        start, stop = windows[index]
        bar.update(stop - start)
    todo = [index for index in range(len(windows)) if index not in done]
    unpartnered = 0
    for result in _ordered_results(client, job, windows, todo, store.labels, key, limit):
        _add_stages(stages, result.seconds)
        unpartnered += result.unpartnered
        bar.update(result.stop - result.start)
    if done:
        # Unpartnered counts of shards finished before: the labels tell them.
        unpartnered += count_unpartnered(store.labels, [windows[index] for index in done])
    return unpartnered


def _claim_shard_folder(folder: str, destination: str, store, token: str, operation: str,
                        windows, key: Key, resume: bool) -> tuple[str, dict[int, int]]:
    """Return the run id of a sharded run into ``folder`` and its windows already done.

    A new run gets a new id and a fresh run record. It discards the shards of an earlier
    run only when no store can be reading them: that run never finished, or it made
    ``destination`` itself (which ``overwrite`` lets this run replace). ``resume`` continues
    the unfinished run of the folder's record when the record verifies under ``key``, names
    the same options (``token``) and the source is unchanged; its shards that verify are
    done.

    Raises
    ------
    BadInputError
        The folder holds shards this run may not take over, or cannot resume.
    """
    record = _read_run_file(folder)
    present = _shard_files(folder)
    fingerprint = source_fingerprint(store)
    if resume and (record is not None or present):
        _check_resumable(folder, record, token, fingerprint, key)
        assert record is not None  # _check_resumable refuses a folder without one
        return record["run"], _completed_shards(folder, record["run"], windows, key, operation)
    if record is not None or present:
        unfinished = record is not None and record.get("published") is False
        replaced = record is not None and \
            _destination_run(destination, store.images.name) == record.get("run")
        if not (unfinished or replaced):
            raise BadInputError(
                f"shard folder {folder!r} holds the shards of another store (one that was "
                "renamed or moved, or that fastmix did not record), which would read this "
                "run's images instead of its own; fastmix never takes them over. Choose "
                "another destination, or delete that folder if no store uses it"
            )
        _remove_shards(folder)
    run = new_run_id()
    _write_run_file(folder, {"run": run, "token": token, "operation": operation,
                             "windows": len(windows), "source": fingerprint,
                             "published": False}, key)
    return run, {}


def _check_resumable(folder: str, record: dict | None, token: str, fingerprint: dict,
                     key: Key) -> None:
    cannot = f"cannot resume into shard folder {folder!r}"
    if record is None or not key.verify_mac(str(record.get("mac")), RUN_PURPOSE,
                                            _run_text(record)):
        raise BadInputError(
            f"{cannot}: its shards have no run record that verifies under this key (written "
            "with another key, by another program, or edited); use the original key, or "
            f"{hint('drop_resume')} to start again"
        )
    if record.get("published") is not False:
        raise BadInputError(
            f"{cannot}: the run that wrote it finished, and its store may still read these "
            f"shards, so there is nothing to resume; {hint('drop_resume')}, into another "
            "destination"
        )
    if record.get("token") != token:
        raise BadInputError(
            f"{cannot}: its run used other options (spec, window, key, images or "
            f"destination); resume with the original options, or {hint('drop_resume')} to "
            "start again"
        )
    changed = _fingerprint_change(record.get("source"), fingerprint)
    if changed:
        raise BadInputError(
            f"cannot resume: the source changed since the interrupted run began ({changed}), "
            f"so its shards no longer match it; {hint('drop_resume')} to start again"
        )


def _completed_shards(folder: str, run: str, windows, key: Key,
                      operation: str) -> dict[int, int]:
    """``{window index: 0}`` of the shards of run ``run``; refuse any other shard file."""
    import h5py

    done = {}
    for name in _shard_files(folder):
        path = os.path.join(folder, name)
        try:
            with h5py.File(path, "r") as shard:
                images = shard["images"]
                record = read_shard_record(images)
                shape, dtype = tuple(images.shape), images.dtype
        except Exception:  # a damaged shard is judged below
            record = None
        index = record["window"] if record is not None else -1
        if record is None or record["run"] != run or not 0 <= index < len(windows) or \
                name != shard_name(index) or \
                (record["start"], record["stop"]) != tuple(windows[index]) or \
                record["operation"] != operation or not verify_shard(record, key, shape, dtype):
            raise BadInputError(
                f"cannot resume: shard {path!r} was not written by the interrupted run (another "
                f"run's, another window's, or edited); delete it to have it written again, or "
                f"{hint('drop_resume')} to start again"
            )
        done[index] = 0
    return done


def _shard_files(folder: str) -> list[str]:
    """Names of the finished shard files (``window-*.h5``) in ``folder``, sorted."""
    return sorted(entry for entry in os.listdir(folder)
                  if entry.startswith("window-") and entry.endswith(".h5") and
                  os.path.isfile(os.path.join(folder, entry)))


def _destination_run(destination: str, images: str) -> str | None:
    """Return the shard run id ``destination``'s images name, or ``None``."""
    import h5py

    if not os.path.isfile(destination):
        return None
    try:
        with h5py.File(destination, "r") as file:
            return store_run(file[images])
    except Exception:  # not a store of ours: it names no run
        return None


RUN_PURPOSE = "shard-run"


def _run_text(record: dict) -> str:
    """Return the canonical text of a run record without its MAC (what the MAC covers)."""
    return json.dumps({name: value for name, value in record.items() if name != "mac"},
                      sort_keys=True)


def _write_run_file(folder: str, record: dict, key: Key) -> None:
    """Write ``record`` with its MAC as the folder's run record, atomically and durably."""
    record = {**record, "mac": key.mac(RUN_PURPOSE, _run_text(record))}
    path = os.path.join(folder, RUN_FILE)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_folder_of(path)


def _read_run_file(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, RUN_FILE), encoding="utf-8") as handle:
            record = json.loads(handle.read(1 << 20))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("run"), str) else None


def _publish_run(folder: str, key: Key) -> None:
    """Mark the folder's run finished: from now on a store may read its shards."""
    record = _read_run_file(folder)
    if record is not None:
        record.pop("mac", None)
        _write_run_file(folder, {**record, "published": True}, key)


def source_fingerprint(store) -> dict:
    """Return what a resumed sharded run checks to know its source is unchanged.

    All of it is metadata, read in milliseconds without a pixel: the file's size and
    modification time (nanoseconds), the images' shape and dtype, a digest of the chunk
    index (each chunk's first image, byte offset, stored size and filter mask; the data
    offset of a contiguous dataset; each mapped file's size and time for a virtual one) and
    a digest of the labels. A rewritten compressed chunk moves or changes size, so the chunk
    index changes even when the modification time is set back; a relabelled image changes
    the labels digest. An unfiltered chunk rewritten in place keeps the index and the size:
    only the modification time shows it (a copy that also set it back is not detected).
    """
    images = store.images
    status = os.stat(store.path)
    index = hashlib.sha256()
    try:
        for chunk in stored_chunks(images):
            index.update(f"{chunk.first},{chunk.offset},{chunk.size},{chunk.filter_mask};"
                         .encode())
    except Exception:  # HDF5 without H5Dchunk_iter: size and time remain
        index.update(b"no chunk index;")
    if images.is_virtual:
        folder = os.path.dirname(os.path.abspath(store.path))
        for mapping in images.virtual_sources():
            name = mapped_file(mapping.file_name) or mapping.file_name
            try:
                mapped = os.stat(os.path.join(folder, name))
                index.update(f"{name},{mapped.st_size},{mapped.st_mtime_ns};".encode())
            except OSError:
                index.update(f"{name},missing;".encode())
    elif images.chunks is None:
        index.update(f"contiguous,{images.id.get_offset()};".encode())
    labels = np.asarray(store.labels)
    digest = hashlib.sha256(f"{labels.dtype.str}:{labels.shape}:".encode())
    if labels.dtype.kind in "OU":
        for label in labels.tolist():
            text = repr(label).encode("utf-8", "backslashreplace")
            digest.update(len(text).to_bytes(8, "little") + text)
    else:
        digest.update(np.ascontiguousarray(labels).tobytes())
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns,
            "shape": [int(size) for size in images.shape], "dtype": images.dtype.str,
            "chunks": index.hexdigest(), "labels": digest.hexdigest()}


def _fingerprint_change(recorded, current: dict) -> str:
    """Return what differs between two source fingerprints, in words ("" when nothing)."""
    if not isinstance(recorded, dict):
        return "no fingerprint of it was recorded"
    for names, words in ((("shape", "dtype"), "its images' shape or dtype"),
                         (("labels",), "its labels"),
                         (("chunks",), "its stored chunks"),
                         (("size", "mtime_ns"), "its size or modification time")):
        if any(recorded.get(name) != current[name] for name in names):
            return words
    return ""


def _remove_shards(folder: str) -> None:
    for entry in os.listdir(folder):
        if (entry.startswith(("window-", ".window-")) and ".h5" in entry) or entry == RUN_FILE:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, entry))


def _write_virtual_store(store, destination: str, folder: str, windows, spec: MixSpec,
                         key: Key, labels_name: str, unpartnered: int, operation: str,
                         overwrite: bool, run: str) -> None:
    import h5py

    from fastmix.store.newfile import atomic_output

    for entry in os.listdir(folder):  # temporaries of tasks that a dead worker left
        if entry.startswith(".window-"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, entry))
    images = store.images
    shape = tuple(images.shape)
    layout = h5py.VirtualLayout(shape=shape, dtype=images.dtype)
    relative = os.path.basename(folder)
    for index, (start, stop) in enumerate(windows):
        layout[start:stop] = h5py.VirtualSource(
            mapping_file_name(f"{relative}/{shard_name(index)}"), "images",
            shape=(stop - start, *shape[1:]))
    with atomic_output(destination, overwrite) as temporary:
        with h5py.File(temporary, "w", libver=store.file.libver,
                       userblock_size=store.file.userblock_size) as target:
            output = create_output(store.file, target, images.name, skip_prefix=PREFIX)
            fill = images.fillvalue
            virtual = replace_dataset(
                output, images.name, lambda parent, name: parent.create_virtual_dataset(
                    name, layout, fillvalue=fill if fill is not None else 0))
            copy_attributes(images, virtual, skip_prefix=PREFIX)
            if operation == "mix":
                write_mix_attributes(virtual, spec, window=max(b - a for a, b in windows),
                                     key_check=key.check_value, labels=labels_name,
                                     unpartnered=unpartnered, key=key)
            virtual.attrs[RUN_ATTRIBUTE] = run
            if operation == "mix":
                seal_record(virtual, key)  # the run id is part of the record the MAC covers
        copy_userblock(store.path, temporary, store.file.userblock_size)
        # Before the store appears: a store never reads the shards of an unpublished run,
        # which a new run may discard.
        _publish_run(folder, key)
    fsync_folder_of(os.path.join(folder, shard_name(0)))
