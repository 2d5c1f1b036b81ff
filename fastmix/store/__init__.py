"""HDF5 image stores: access, windows, chunk codecs, the new-file engine.

Public entry points are :func:`mix_store`, :func:`unmix_store` and :class:`StoreReport`.
The building blocks below are shared with the in-place engine (``fastmix.store.inplace.run``):

``open_store(path, images, labels, writable=False, *, interrupted=False, **h5py_file_options)
-> Store``
    (:mod:`fastmix.store.hdf5.access`) opens and validates a store: images (N, H, W[, C]) of a
    numeric dtype, labels read whole, decoded (bytes -> str) and validated. Every problem is
    a :class:`~fastmix.errors.BadInputError`. ``labels=None`` skips the labels.
``plan_windows(dataset, memory, window, *, block_count, staging_bytes, buffers, aligned,
plan_bytes_per_block)``
    (:mod:`fastmix.store.window_sizing`) -> ``[(start, stop), ...]``: chunk-aligned windows whose
    length comes from the memory budget divided by ``buffers`` (4: the window being read
    ahead, the one being mixed, the one being mixed into and the one being written) times
    the bytes per image, after ``staging_bytes`` for the I/O. A chunk that does not fit
    raises an error naming the fix.
``WindowReader(dataset, pool, raw=True).read(start, stop, buffer)`` and
``WindowWriter(dataset, pool, threads, raw=True).write(start, stop, images)``
    (:mod:`fastmix.store.hdf5.chunkio`) move one window between a dataset and a reused buffer:
    raw chunks (``os.preadv`` by chunk offset, codecs in the thread pool,
    ``write_direct_chunk``) where the filters allow it, h5py otherwise. The reader indexes
    the chunk offsets when it is created.
``stream_windows(reader, writer, windows, labels, spec, key, *, threads, piece, inverse,
backend, progress, indices) -> unpartnered``
    (:mod:`fastmix.store.stream`) the loop of both engines: two window buffers (mixed, read
    ahead); the output is gathered a few chunks at a time into a small ring of reused
    buffers and written by a writer thread. It needs no window-sized output buffer, so a
    window holds twice the images per byte of budget. ``indices`` (default ``0, 1, ...``)
    seeds each window's plan; in-place mode passes the remaining windows of a resumed run
    with their original indices, and wraps the reader and writer to journal and commit.
``piece_images(store, memory, threads)``, ``streaming_staging_bytes(store, threads, raw,
piece)``, ``mix_windows(store, spec, memory, window, *, threads, raw, piece)``
    (:mod:`fastmix.store.prepare`) the output piece length, the loop's memory besides its
    window buffers and the windows a mix cuts, so that both engines cut the same windows
    from the same budget. The same module holds the checks both engines make before a run
    (``check_key``, ``require_not_interrupted``, ``require_unmixed``, ``require_partners``,
    ``require_unmixable(dataset, path, key) -> MixRecord``) and their messages.
``write_mix_attributes(dataset, spec, window=, key_check=, labels=, unpartnered=, key=)``,
``read_mix_record(dataset) -> MixRecord | None``, ``remove_mix_attributes(dataset)``
    (:mod:`fastmix.store.hdf5.record`) the ``fastmix_*`` record. Never the key: the record is
    sealed by ``fastmix_record_mac``, a MAC keyed by the key over the record, the labels and
    the images' shape (``seal_record``, ``check_record_mac``), which ``require_unmixable``
    and ``verify`` check before anything is written.

The entry points live in :mod:`fastmix.store.engine`, above both engines: new-file mode runs
``fastmix.store.newfile.run.run_new_file``, and in-place mode (``mix_store(...,
in_place=True)`` and ``unmix_store(..., in_place=True)``) calls
``fastmix.store.inplace.run.run_in_place(operation, src, **options)`` with ``operation`` "mix"
(options: spec, key, memory, window, images, labels, progress, resume, force, strict,
backend, one_way) or "unmix" (options: key, memory, images, progress, resume, backend); it returns a
:class:`StoreReport`. A resumed run uses the spec and window of its journal (``spec=None``,
``window=None``); others are refused. New-file mode and every reader (``open_store``
without ``writable`` or ``interrupted=True``) refuse a store whose images dataset carries
``fastmix_state = "in-progress"`` (an interrupted in-place run), naming ``--resume``.
"""

from fastmix.store.engine import mix_store, unmix_store
from fastmix.store.hdf5.access import Store, open_store
from fastmix.store.hdf5.record import MixRecord, read_mix_record, write_mix_attributes
from fastmix.store.report import StoreReport
from fastmix.store.stream import stream_windows
from fastmix.store.window_sizing import plan_windows

__all__ = ["MixRecord", "Store", "StoreReport", "mix_store", "open_store", "plan_windows",
           "read_mix_record", "stream_windows", "unmix_store",
           "write_mix_attributes"]
