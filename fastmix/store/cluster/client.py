"""The client side of a cluster run: connecting to Dask, and running a store job on it.

:func:`cluster_client` connects the command line to a scheduler or starts a ``LocalCluster``;
:func:`run_on_cluster` (called by :func:`fastmix.store.engine.mix_store` and
:func:`~fastmix.store.engine.unmix_store` with ``client=``) checks that every worker sees the
source, compiles the kernels on every worker, and hands the windows to the one-file layout
(:mod:`fastmix.store.cluster.onefile`) or the sharded one (:mod:`fastmix.store.cluster.shards`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterator

from fastmix._optional import require
from fastmix.errors import BadInputError, BadInputTypeError
from fastmix.keys import Key
from fastmix.progress import Progress
from fastmix.spec import MixSpec, parse_memory
from fastmix.store.cluster.onefile import parts_fit, parts_folder, remove_parts, run_one_file
from fastmix.store.cluster.shards import (
    claim_shard_folder,
    run_sharded,
    shard_folder,
    source_fingerprint,
    write_virtual_store,
)
from fastmix.store.cluster.tasks import Job, can_access, warm_worker
from fastmix.store.durable.atomic import check_destination
from fastmix.store.hdf5.chunkio import codec_threads
from fastmix.store.hdf5.chunks import template_dataset
from fastmix.store.report import StoreReport

#: Seconds to wait for a scheduler before giving up (an unreachable address is bad input).
CONNECT_TIMEOUT = 10.0

INSTALL_HINT = "install the cluster extra: pip install 'fastmix[dask]'"
#: Tries of a broadcast to every worker (a worker killed during it fails the try).
BROADCAST_TRIES = 5




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
    one worker process); the kernels of one worker take turns (see ``_KERNEL_LOCK`` in
    :mod:`fastmix.store.cluster.tasks`).
    """
    broadcast(client, warm_worker)


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


def _check_workers_see(client, source: str, folder: str | None,
                       required: bool = True) -> bool:
    """Raise when a worker cannot read ``source``; return whether all share ``folder``.

    Sharing means the worker can write ``folder`` and sees the marker file this process
    put there (a worker's own local folder of the same path would not hold it). A folder
    that some worker does not share is bad input too when ``required``.
    """
    with _marked(folder) as mark:
        answers = broadcast(client, can_access, source, folder, mark)
    shared = True
    for address, (source_problem, folder_problem) in sorted(answers.items()):
        if source_problem or (folder_problem and required):
            raise BadInputError(
                f"{source_problem or folder_problem} on Dask worker {address} "
                f"({len(answers)} worker(s)); the workers open the store themselves: put it "
                "on a filesystem every worker mounts, at the same path"
            )
        shared = shared and not folder_problem
    return shared


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




def run_token(operation: str, source: str, destination: str, spec: MixSpec,
              windows: list[tuple[int, int]], key_check: str, shards: bool,
              source_state: dict) -> str:
    """Digest of a run's inputs: names its tasks, its parts and marks its shards.

    Holds no key material: ``key_check`` is the key's one-way check value. The spec enters
    as :meth:`MixSpec.identity` (with the hardening format and plan rule, which change the
    output bytes though they seed nothing). ``source_state`` is the source's
    :func:`~fastmix.store.cluster.shards.source_fingerprint`: a source rewritten between a
    killed run and its resume gives another token, so no window written, no part left and no
    task result held from the old contents is taken for the new ones.
    """
    text = json.dumps([operation, source, destination, spec.identity(), windows[:1],
                       len(windows), key_check, shards, source_state], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def in_flight_limit(memory: int | str, window_bytes: int, worker_threads: int) -> int:
    """Return the windows in flight: two per worker thread, as many as ``memory`` holds.

    At least one; the writer holds the windows in flight.
    """
    fits = parse_memory(memory) // max(1, window_bytes)
    return max(1, min(2 * max(1, worker_threads), fits))


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
        With ``extra["stages"]``: seconds spent reading, mixing, encoding and writing
        (summed over the workers) and, one file, shipping and gathering at the client;
        ``extra["cpu"]``: CPU seconds of the same stages (the worker processes'; the client
        thread's for gathering); ``extra["layout"]``; and ``extra["parts"]``: whether a
        one-file run went through part files.
    """
    require_dask()
    started = time.perf_counter()
    source = os.path.abspath(source)
    destination = os.path.abspath(check_destination(source, destination, overwrite))
    folder = shard_folder(destination) if shards else None
    inverse = operation == "unmix"
    fingerprint = source_fingerprint(store)
    token = run_token(operation, source, destination, spec, windows, key.check_value, shards,
                      fingerprint)
    run = ""
    done: dict[int, int] = {}  # {window index: 0} of the shards already written
    if folder is not None:
        os.makedirs(folder, exist_ok=True)
        run, done = claim_shard_folder(folder, destination, store, token, operation, windows,
                                       key, resume, fingerprint)
    with template_dataset(store.images) as template:  # a sharded source: its shards'
        fits = parts_fit(template, windows)
    # One file: the workers write parts beside the destination, if they share its folder.
    # The client copies only the part named and stamped for this run's token and the window
    # (tasks.part_name, part_stamp); a part there from a killed run of the same token (its
    # task still running, or its result the scheduler still holds under this run's task
    # name) holds the same bytes. Parts of other runs are removed when this run ends.
    parts = parts_folder(destination) if folder is None and fits else None
    try:
        if parts is not None:
            os.makedirs(parts, exist_ok=True)
        if not _check_workers_see(client, source, folder or parts, required=parts is None):
            remove_parts(parts)
            parts = None
        warm_up(client)
        job = Job(source=source, images=store.images.name, spec=spec, inverse=inverse,
                  raw=raw, backend=backend, shard_folder=folder, token=token, run=run,
                  part_folder=parts)
        threads = sum(client.nthreads().values())
        image_bytes = store.image_bytes
        longest = max((stop - start for start, stop in windows), default=0)
        limit = in_flight_limit(memory, longest * image_bytes, threads)
        # Seconds summed over the windows: read, mix, encode, write (a shard or a part) in
        # the workers; in the one-file layout also ship (from a task's end until the client
        # has its result) and gather (the client copying or writing the window into the one
        # file).
        stages = {"read": 0.0, "mix": 0.0, "encode": 0.0, "write": 0.0}
        if not shards:
            stages.update(ship=0.0, gather=0.0)
        cpu: dict[str, float] = {}  # CPU seconds per stage (the workers'; gather: the client's)
        with Progress(store.count, image_bytes, operation, progress) as bar:
            if shards:
                unpartnered = run_sharded(client, job, store, windows, key, done, limit, bar,
                                          stages, cpu)
            else:
                unpartnered = run_one_file(client, job, store, windows, key, destination,
                                           resume, overwrite, limit, bar, stages, cpu)
            if folder is not None:  # shards
                write_virtual_store(store, destination, folder, windows, spec, key,
                                    labels_name, unpartnered, operation, overwrite, run)
    finally:
        remove_parts(parts)  # run_one_file removed it already, unless it did not start
    return StoreReport(operation=operation, destination=destination, spec=spec,
                       images=store.count, windows=len(windows), window=longest,
                       unpartnered=unpartnered if operation == "mix" else 0,
                       pixel_bytes=store.count * image_bytes,
                       seconds=time.perf_counter() - started,
                       io_path=f"dask/{'shards' if shards else 'one-file'}",
                       extra={"stages": stages, "layout": "shards" if shards else "one-file",
                              "workers": len(client.nthreads()), "parts": parts is not None,
                              "cpu": cpu})
