"""The store entry points :func:`mix_store` and :func:`unmix_store`.

They check their arguments and the store (:mod:`fastmix.store.prepare`), then hand the run to
the new-file engine (:mod:`fastmix.store.newfile`), with ``in_place=True`` to the
in-place engine (:mod:`fastmix.store.inplace`), or with ``client=`` to a Dask cluster
(:mod:`fastmix.store.cluster`). The new-file and in-place engines sit below this module and
import neither it nor each other; the cluster reuses the new-file output.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

from fastmix.backends import get_backend
from fastmix.keys import Key
from fastmix.spec import MixSpec, parse_memory
from fastmix.store.cluster import check_cluster_options, run_on_cluster
from fastmix.store.durable.atomic import check_destination
from fastmix.store.hdf5.access import open_store
from fastmix.store.hdf5.chunkio import codec_threads
from fastmix.store.hdf5.chunks import chunk_length
from fastmix.store.hdf5.shard_binding import check_shard_binding
from fastmix.store.inplace import run_in_place
from fastmix.store.newfile import run_new_file
from fastmix.store.prepare import (
    check_key,
    check_run_arguments,
    check_spec,
    count_paired,
    count_unpartnered,
    mix_windows,
    piece_images,
    require_no_pairs,
    require_not_interrupted,
    require_partners,
    require_unmixable,
    require_unmixed,
    warn_after_mix,
)
from fastmix.store.report import StoreReport
from fastmix.store.window_sizing import plan_windows


def mix_store(src: str | os.PathLike, dst: str | os.PathLike | None = None, *,
              spec: MixSpec | None = None, key: Key, memory: int | str = "1GiB",
              window: int | None = None, images: str = "images", labels: str = "labels",
              progress: bool = True, in_place: bool = False, resume: bool = False,
              force: bool = False, overwrite: bool = False, strict: bool = False,
              backend: str = "cpu", threads: int | None = None,
              raw_chunks: bool = True, client=None, shards: bool = False,
              one_way: bool = False) -> StoreReport:
    """Mix an HDF5 image store window by window, within a memory budget.

    Parameters
    ----------
    src : path
        The source store; opened read-only in new-file mode and never altered.
    dst : path, optional
        The new store. Required unless ``in_place``.
    spec : MixSpec, optional
        Mixing parameters (default ``MixSpec()``). When ``resume`` finishes an interrupted
        in-place run, the default is the spec recorded in its journal, and another spec is
        refused; a ``resume`` that finds no recorded run needs the original spec.
    key : Key
        The secret key. Only its check value is stored.
    memory : int or str
        Memory budget (``"1GiB"``); sets the window length unless ``window`` is given.
    window : int, optional
        Window length in images; must fall on chunk boundaries. A resumed in-place run uses
        the recorded window (another one is refused).
    images, labels : str
        Dataset names.
    progress : bool
        Show a progress bar when stderr is a terminal.
    in_place : bool
        Rewrite ``src`` itself (crash-safe, resumable).
    resume : bool
        In place, or on a cluster: finish an interrupted run.
    force : bool
        Mix a store that already carries a fastmix record (the old record is replaced).
    overwrite : bool
        Replace an existing ``dst``.
    strict : bool
        Fail, before writing anything, when some images have no same-label partner.
    backend : str
        Kernel backend.
    threads : int, optional
        Codec threads (default: the CPUs available).
    raw_chunks : bool
        Use the raw-chunk I/O path where possible (``False`` forces h5py's own I/O).
    client : dask.distributed.Client, optional
        Run one task per window on this Dask cluster (:mod:`fastmix.store.cluster`); the
        workers must see ``src`` (and, with ``shards``, the destination's folder) at the same
        path. The output bytes are those of the single-process run.
    shards : bool
        With ``client``: each worker writes its windows into shard files in ``DST.shards/``
        and ``dst`` holds an HDF5 virtual dataset joining them (no single writer).
    one_way : bool
        In place: consent to a one-way spec (paper mode, jitter or seam blur), which
        replaces the store's originals for good; refused without it. Ignored for a new
        file (the source is never altered).

    Returns
    -------
    StoreReport
    """
    check_run_arguments(src=src, dst=dst, images=images, labels=labels, window=window,
                        threads=threads, progress=progress, in_place=in_place, resume=resume,
                        force=force, overwrite=overwrite, strict=strict,
                        raw_chunks=raw_chunks, shards=shards)
    check_cluster_options(client, shards, in_place)
    spec = check_spec(spec)
    key = check_key(key)
    get_backend(backend)
    parse_memory(memory)
    if in_place:
        # spec=None: a resumed run uses the journal's spec, a fresh one MixSpec().
        return run_in_place("mix", src, spec=spec, key=key, memory=memory, window=window,
                            images=images, labels=labels, progress=progress, resume=resume,
                            force=force, strict=strict, backend=backend, one_way=one_way)
    spec = MixSpec() if spec is None else spec
    source = os.fspath(src)
    store = open_store(source, images, labels, rdcc_nbytes=1 << 20)
    try:
        require_not_interrupted(store.images, source)
        destination = check_destination(source, dst, overwrite)
        require_unmixed(store.images, source, force)
        threads = threads or codec_threads()
        piece = piece_images(store, memory, threads)
        windows = mix_windows(store, spec, memory, window, threads=threads, raw=raw_chunks,
                              piece=piece)
        require_partners(count_unpartnered(store.labels, windows), strict)
        paired = count_paired(store.labels, windows, spec)
        require_no_pairs(paired, strict)
        if client is not None:
            report = run_on_cluster("mix", source, destination, client=client, store=store,
                                    windows=windows, spec=spec, key=key, labels_name=labels,
                                    memory=memory, raw=raw_chunks, overwrite=overwrite,
                                    resume=resume, shards=shards, progress=progress,
                                    backend=backend)
        else:
            with ThreadPoolExecutor(threads, thread_name_prefix="fastmix-codec") as pool:
                report = run_new_file("mix", source, destination, spec=spec, key=key,
                                      store=store, windows=windows, labels_name=labels,
                                      overwrite=overwrite, progress=progress,
                                      backend=backend, pool=pool, threads=threads,
                                      raw=raw_chunks, piece=piece)
    finally:
        store.close()
    warn_after_mix(report.unpartnered, paired, stacklevel=2)
    return report


def unmix_store(src: str | os.PathLike, dst: str | os.PathLike | None = None, *, key: Key,
                memory: int | str = "1GiB", images: str = "images", progress: bool = True,
                in_place: bool = False, resume: bool = False, overwrite: bool = False,
                backend: str = "cpu", threads: int | None = None,
                raw_chunks: bool = True, client=None, shards: bool = False,
                trust_unsealed: bool = False) -> StoreReport:
    """Restore a store mixed in permute mode, bit for bit.

    The spec, window and labels dataset come from the store's ``fastmix_*`` attributes; the
    key is checked against the stored check value, and a sharded store's shards against its
    run (:mod:`fastmix.store.cluster.shards`), before anything is written. The output is a plain
    store again (no ``fastmix_*`` attributes; a sharded output names only its shards' run).

    Parameters
    ----------
    src : path
        The mixed store.
    dst : path, optional
        The restored store. Required unless ``in_place``.
    key : Key
        The key the store was mixed with.
    memory : int or str
        Memory budget for the I/O buffers (the window length is the recorded one).
    images : str
        Images dataset name.
    progress, in_place, resume, overwrite, backend, threads, raw_chunks, client, shards
        As for :func:`mix_store`. A sharded store (a virtual dataset) is accepted as
        ``src``.
    trust_unsealed : bool
        Unmix a store whose record carries no MAC (mixed by fastmix 0.2 or older), with a
        warning. Without it such a store is refused: an edited record could not be told
        from a genuine one (docs/format.md section 5.2).

    Returns
    -------
    StoreReport
    """
    check_run_arguments(src=src, dst=dst, images=images, threads=threads, progress=progress,
                        in_place=in_place, resume=resume, overwrite=overwrite,
                        raw_chunks=raw_chunks, shards=shards)
    check_cluster_options(client, shards, in_place)
    key = check_key(key)
    get_backend(backend)
    parse_memory(memory)
    if in_place:
        return run_in_place("unmix", src, key=key, memory=memory, images=images,
                            progress=progress, resume=resume, backend=backend,
                            trust_unsealed=trust_unsealed)
    source = os.fspath(src)
    store = open_store(source, images, labels=None, rdcc_nbytes=1 << 20)
    try:
        require_not_interrupted(store.images, source)
        record = require_unmixable(store.images, source, key, trust_unsealed=trust_unsealed)
        check_shard_binding(store.images, source, key)
        destination = check_destination(source, dst, overwrite)
        store.close()
        store = open_store(source, images, record.labels, rdcc_nbytes=1 << 20)
        threads = threads or codec_threads()
        windows = plan_windows(store.images, memory, record.window, aligned=False)
        aligned = all(start % chunk_length(store.images) == 0 for start, _ in windows)
        if client is not None:
            return run_on_cluster("unmix", source, destination, client=client, store=store,
                                  windows=windows, spec=record.spec, key=key,
                                  labels_name=record.labels, memory=memory,
                                  raw=raw_chunks and aligned, overwrite=overwrite,
                                  resume=resume, shards=shards, progress=progress,
                                  backend=backend)
        with ThreadPoolExecutor(threads, thread_name_prefix="fastmix-codec") as pool:
            return run_new_file("unmix", source, destination, spec=record.spec, key=key,
                                store=store, windows=windows, labels_name=record.labels,
                                overwrite=overwrite, progress=progress,
                                backend=backend, pool=pool, threads=threads,
                                raw=raw_chunks and aligned,
                                piece=piece_images(store, memory, threads))
    finally:
        store.close()
