"""The window loop and the new-file engine: :func:`mix_store` and :func:`unmix_store`."""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from fastmix.backends import get_backend
from fastmix.errors import BadInputError, BadInputTypeError, FastmixWarning
from fastmix.keys import Key
from fastmix.mixing import layout_for, mix_window
from fastmix.plan import encode_labels, images_in_pairs, pairs_warning, plan_window
from fastmix.progress import Progress
from fastmix.spec import MixSpec, parse_memory
from fastmix.store.access import open_store
from fastmix.store.allocator import tune_allocator
from fastmix.store.chunkio import (
    PIECE_BYTES,
    WindowReader,
    WindowWriter,
    codec_threads,
    piece_length,
)
from fastmix.store.journal import journal_path, read_journal_header
from fastmix.store.metadata import (
    IN_PROGRESS,
    PREFIX,
    STATE_ATTRIBUTE,
    read_mix_record,
    read_state,
    write_mix_attributes,
)
from fastmix.store.newfile import (
    atomic_output,
    check_destination,
    copy_userblock,
    create_output,
)
from fastmix.store.report import StoreReport
from fastmix.store.stream import ring_slots, stream_windows, window_buffers
from fastmix.store.windows import WINDOW_BUFFERS, chunk_bytes, plan_windows
from fastmix.store.writeback import EarlyWriteback


def count_unpartnered(labels: np.ndarray, windows: Iterable[tuple[int, int]]) -> int:
    """Images whose label occurs only once in their window (they pass through unmixed)."""
    total = 0
    for start, stop in windows:
        _, counts = np.unique(labels[start:stop], return_counts=True)
        total += int(np.count_nonzero(counts == 1))
    return total


def count_paired(labels: np.ndarray, windows: Iterable[tuple[int, int]], spec: MixSpec) -> int:
    """Images that permute mode puts in groups of two (see ``images_in_pairs``)."""
    return sum(images_in_pairs(np.unique(labels[start:stop], return_counts=True)[1], spec)
               for start, stop in windows)


def allocate_window_buffers(length: int, image_shape: tuple[int, ...], dtype: np.dtype,
                            count: int = WINDOW_BUFFERS) -> list[np.ndarray]:
    """``count`` reusable window buffers.

    Their pages are faulted in on first use, so a short last window never touches (and the
    kernel never zeroes) the part it does not need.
    """
    return [np.empty((length, *image_shape), dtype=dtype) for _ in range(count)]


def buffer_count(windows: int) -> int:
    """Window buffers worth allocating: four to pipeline several windows, two for one."""
    return WINDOW_BUFFERS if windows > 1 else 2


def run_windows(reader: WindowReader, writer: WindowWriter, windows: list[tuple[int, int]],
                labels: np.ndarray, spec: MixSpec, key: Key, *, inverse: bool = False,
                backend: str = "cpu", buffers: list[np.ndarray] | None = None,
                indices: Iterable[int] | None = None, progress: Progress | None = None,
                after_window=None) -> int:
    """Mix (or unmix) ``windows`` from ``reader`` into ``writer``, overlapping the I/O.

    Three stages run at once: a reader thread reads window k+1, the calling thread mixes
    window k, and a writer thread writes window k-1. Returns the number of unpartnered
    images.

    Parameters
    ----------
    reader, writer
        Window reader and writer (see :mod:`fastmix.store.chunkio`).
    windows : list of (start, stop)
        The windows to process, in order.
    labels : ndarray
        All labels of the store.
    spec, key
        Mixing parameters and key.
    inverse : bool
        Unmix instead of mix.
    backend : str
        Kernel backend.
    buffers : list of ndarray, optional
        Four window buffers (two inputs, two outputs) of the longest window's length, from
        :func:`allocate_window_buffers`.
    indices : iterable of int, optional
        The window index of each window (seeds its plan); default ``0, 1, 2, ...``. In-place
        resumption passes the remaining windows with their original indices.
    progress : Progress, optional
        Updated after each window is written.
    after_window : callable, optional
        ``after_window(position, start, stop)``, called in the writer thread right after a
        window is written, in window order (in-place mode journals there).
    """
    if not windows:
        return 0
    indices = list(range(len(windows))) if indices is None else list(indices)
    dataset = reader.dataset
    if buffers is None:
        longest = max(stop - start for start, stop in windows)
        buffers = allocate_window_buffers(longest, tuple(dataset.shape[1:]), dataset.dtype,
                                          buffer_count(len(windows)))
    # Four buffers pipeline the stages; two (one input, one output) run them in turn.
    inputs, outputs = (buffers[:2], buffers[2:4]) if len(buffers) >= 4 else \
        ([buffers[0]] * 2, [buffers[1]] * 2)
    shared_input, shared_output = inputs[0] is inputs[1], outputs[0] is outputs[1]
    layout = layout_for(tuple(dataset.shape[1:]), dataset.dtype, spec)
    unpartnered = 0

    def prepare(position: int, buffer: np.ndarray) -> tuple[np.ndarray, object]:
        # Runs in the reader thread: the window's pixels and its plan, ready to mix.
        start, stop = windows[position]
        images = reader.read(start, stop, buffer)
        codes = encode_labels(labels[start:stop])
        return images, plan_window(codes, layout.block_count, spec, key, indices[position])

    def write(position: int, start: int, stop: int, mixed: np.ndarray) -> None:
        writer.write(start, stop, mixed)
        if after_window is not None:
            after_window(position, start, stop)
        if progress is not None:
            progress.update(stop - start)

    with ThreadPoolExecutor(1, thread_name_prefix="fastmix-reader") as read_thread, \
            ThreadPoolExecutor(1, thread_name_prefix="fastmix-writer") as write_thread:
        reading = read_thread.submit(prepare, 0, inputs[0])
        writes: list = []
        try:
            for position, (start, stop) in enumerate(windows):
                images, plan = reading.result()
                more = position + 1 < len(windows)
                if more and not shared_input:
                    reading = read_thread.submit(prepare, position + 1,
                                                 inputs[(position + 1) % 2])
                while writes and (len(writes) >= 2 or shared_output):
                    writes.pop(0).result()  # the output buffer about to be reused is free
                mixed = outputs[position % 2][:stop - start]
                mix_window(images, labels[start:stop], spec, key, indices[position], mixed,
                           inverse=inverse, backend=backend, layout=layout, plan=plan)
                unpartnered += plan.unpartnered
                writes.append(write_thread.submit(write, position, start, stop, mixed))
                if more and shared_input:
                    reading = read_thread.submit(prepare, position + 1, inputs[0])
            for pending in writes:
                pending.result()
        finally:
            for pending in writes:
                pending.cancel()
    return unpartnered


def _check_key(key: object) -> Key:
    if not isinstance(key, Key):
        raise BadInputTypeError(
            f"key must be a fastmix.Key (Key.generate() or Key.load(path)), got "
            f"{type(key).__name__}"
        )
    return key


def _output_cache(dataset) -> int:
    # Room for two chunks where HDF5 runs the filters; raw-chunk paths bypass the cache.
    return max(1 << 20, 2 * chunk_bytes(dataset))


class _WritebackWriter:
    """A :class:`WindowWriter` that queues its output for writeback every few pieces.

    The disk then writes while the rest is mixed, and the final fsync has little left.
    """

    def __init__(self, writer: WindowWriter, writeback: EarlyWriteback, every: int = 8):
        self.writer, self.writeback, self.every = writer, writeback, every
        self.dataset = writer.dataset
        self.stored = 0

    def piece_length(self) -> int:
        return self.writer.piece_length()

    def encode_piece(self, start: int, stop: int, images: np.ndarray) -> list:
        return self.writer.encode_piece(start, stop, images)

    def store_piece(self, items: list) -> None:
        self.writer.store_piece(items)
        self.stored += 1
        if self.stored % self.every == 0:
            self.writeback.kick()


def _new_file_run(operation: str, source: str, destination: str, *, spec: MixSpec, key: Key,
                  store, windows: list[tuple[int, int]], labels_name: str, inverse: bool,
                  overwrite: bool, progress: bool, backend: str, pool: ThreadPoolExecutor,
                  threads: int, raw: bool, piece: int) -> StoreReport:
    import h5py

    started = time.perf_counter()
    tune_allocator()
    images = store.images
    reader = WindowReader(images, pool, raw=raw)
    try:
        with atomic_output(destination, overwrite) as temporary:
            with h5py.File(temporary, "w", libver=store.file.libver,
                           rdcc_nbytes=_output_cache(images),
                           userblock_size=store.file.userblock_size) as target:
                output = create_output(store.file, target, images, skip_prefix=PREFIX,
                                       early_allocation=raw)
                writer = WindowWriter(output, pool, threads, raw=raw)
                if raw:
                    target.flush()  # the allocated chunks exist in the file before pwrite
                    writer.write_in_place(temporary)
                longest = max((stop - start for start, stop in windows), default=0)
                writeback = EarlyWriteback(temporary)
                try:
                    with Progress(store.count, store.image_bytes, operation, progress) as bar:
                        unpartnered = stream_windows(reader,
                                                     _WritebackWriter(writer, writeback),
                                                     windows, store.labels,
                                                     spec, key, threads=threads,
                                                     piece=piece, inverse=inverse,
                                                     backend=backend, progress=bar)
                        writeback.kick()
                finally:
                    writeback.close()
                    writer.close()
                if operation == "mix":
                    write_mix_attributes(output, spec, window=longest,
                                         key_check=key.check_value, labels=labels_name,
                                         unpartnered=unpartnered)
                io_path = f"{reader.path}/{writer.path}"
            copy_userblock(source, temporary, store.file.userblock_size)
    finally:
        reader.close()
    return StoreReport(operation=operation, destination=destination, spec=spec,
                       images=store.count, windows=len(windows), window=longest,
                       unpartnered=unpartnered if operation == "mix" else 0,
                       pixel_bytes=store.count * store.image_bytes,
                       seconds=time.perf_counter() - started, io_path=io_path)


def piece_images(store, memory: int | str, threads: int) -> int:
    """Images per output piece: about 2 MiB, less when the ring would crowd the budget.

    Parameters
    ----------
    store : Store
        The open store (:func:`~fastmix.store.access.open_store`).
    memory : int or str
        The memory budget.
    threads : int
        Codec threads (the ring holds ``threads + 2`` pieces).

    Returns
    -------
    int
        Whole chunks' worth of images.
    """
    target = min(PIECE_BYTES, parse_memory(memory) // (8 * ring_slots(threads)))
    return piece_length(store.images, target)


def streaming_staging_bytes(store, threads: int, raw: bool, piece: int) -> int:
    """Memory of the streaming loop besides its window buffers: the output ring and I/O.

    Parameters
    ----------
    store : Store
        The open store.
    threads : int
        Codec threads.
    raw : bool
        Whether the raw-chunk I/O path is used.
    piece : int
        Images per output piece (:func:`piece_images`).

    Returns
    -------
    int
        Bytes, to pass to :func:`~fastmix.store.windows.plan_windows` as ``staging_bytes``.
    """
    from fastmix.store.codecs import pipeline_for

    ring = ring_slots(threads) * piece * store.image_bytes
    pipeline = pipeline_for(store.images) if raw else None
    if pipeline is not None and pipeline.filters:
        ring *= 2  # each piece's encoded chunks wait beside it until they are written
    return ring + chunk_io_staging_bytes(store, threads, raw)


def chunk_io_staging_bytes(store, threads: int, raw: bool) -> int:
    """Memory the chunk I/O needs besides the window buffers (codec buffers), in bytes."""
    from fastmix.store.codecs import pipeline_for

    size = chunk_bytes(store.images)
    pipeline = pipeline_for(store.images) if raw else None
    if pipeline is not None and pipeline.filters:
        # Reading: each codec thread holds a stored and a decoded chunk. Writing: encodes in
        # flight (threads + 1) plus the codec's temporary copy of each.
        return (2 * threads + 2 * (threads + 1) + 1) * size
    if pipeline is not None:
        return size  # the padded copy of a partial last chunk
    return 2 * size + (1 << 20)  # HDF5's chunk cache and filter buffer


# The former private names, kept for code that imported them.
_piece = piece_images
_new_file_staging = streaming_staging_bytes
_staging = chunk_io_staging_bytes


def require_not_interrupted(dataset, path: str) -> None:
    """Refuse a store that an interrupted in-place run left half rewritten.

    Its images dataset carries ``fastmix_state = "in-progress"``: some windows are mixed
    (or unmixed) and the others are not, so reading it as a whole would give garbage.

    Raises
    ------
    BadInputError
        Naming ``--in-place --resume``, which finishes the interrupted run.
    """
    if read_state(dataset) != IN_PROGRESS:
        return
    header = read_journal_header(journal_path(path))
    operation = header.get("operation") if header else None
    how = (f"finish it first with 'fastmix {operation} {path} --in-place --resume "
           "--key-file KEY'" if operation in ("mix", "unmix") else
           "finish it first with fastmix mix (or unmix, as it was started) --in-place "
           "--resume and the same key file")
    raise BadInputError(
        f"store {path!r} is half rewritten by an interrupted in-place run ({dataset.name!r} "
        f"has {STATE_ATTRIBUTE} = {IN_PROGRESS!r}); {how}"
    )


def mix_store(src: str | os.PathLike, dst: str | os.PathLike | None = None, *,
              spec: MixSpec | None = None, key: Key, memory: int | str = "1GiB",
              window: int | None = None, images: str = "images", labels: str = "labels",
              progress: bool = True, in_place: bool = False, resume: bool = False,
              force: bool = False, overwrite: bool = False, strict: bool = False,
              backend: str = "cpu", threads: int | None = None,
              raw_chunks: bool = True) -> StoreReport:
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
        refused.
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
        In place: finish an interrupted run.
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

    Returns
    -------
    StoreReport
    """
    if spec is not None and not isinstance(spec, MixSpec):
        raise BadInputTypeError(f"spec must be a fastmix.MixSpec, got {type(spec).__name__}")
    key = _check_key(key)
    get_backend(backend)
    parse_memory(memory)
    if in_place:
        # spec=None: a resumed run uses the journal's spec, a fresh one MixSpec().
        return _in_place("mix", src, spec=spec, key=key, memory=memory, window=window,
                         images=images, labels=labels, progress=progress, resume=resume,
                         force=force, strict=strict, backend=backend)
    spec = MixSpec() if spec is None else spec
    source = os.fspath(src)
    store = open_store(source, images, labels, rdcc_nbytes=1 << 20)
    try:
        require_not_interrupted(store.images, source)
        destination = check_destination(source, dst, overwrite)
        if read_mix_record(store.images) is not None and not force:
            raise BadInputError(
                f"store {source!r} is already mixed by fastmix; unmix it first, or pass "
                "force=True (--force) to mix it again"
            )
        threads = threads or codec_threads()
        layout = layout_for(tuple(store.images.shape[1:]), store.images.dtype, spec)
        piece = piece_images(store, memory, threads)
        windows = plan_windows(store.images, memory, window, block_count=layout.block_count,
                               staging_bytes=streaming_staging_bytes(store, threads,
                                                                     raw_chunks, piece),
                               buffers=window_buffers(spec))
        unpartnered = count_unpartnered(store.labels, windows)
        paired = count_paired(store.labels, windows, spec)
        if unpartnered and strict:
            raise BadInputError(
                f"{unpartnered} image(s) have no other image of their label in their window; "
                "use a larger window (--window/--memory) or drop those images"
            )
        with ThreadPoolExecutor(threads, thread_name_prefix="fastmix-codec") as pool:
            report = _new_file_run("mix", source, destination, spec=spec, key=key,
                                   store=store, windows=windows, labels_name=labels,
                                   inverse=False, overwrite=overwrite, progress=progress,
                                   backend=backend, pool=pool, threads=threads,
                                   raw=raw_chunks, piece=piece)
    finally:
        store.close()
    if report.unpartnered:
        warnings.warn(f"{report.unpartnered} image(s) have no other image of their label in "
                      "their window and were left unmixed", FastmixWarning, stacklevel=2)
    if paired:
        warnings.warn(pairs_warning(paired), FastmixWarning, stacklevel=2)
    return report


def unmix_store(src: str | os.PathLike, dst: str | os.PathLike | None = None, *, key: Key,
                memory: int | str = "1GiB", images: str = "images", progress: bool = True,
                in_place: bool = False, resume: bool = False, overwrite: bool = False,
                backend: str = "cpu", threads: int | None = None,
                raw_chunks: bool = True) -> StoreReport:
    """Restore a store mixed in permute mode, bit for bit.

    The spec, window and labels dataset come from the store's ``fastmix_*`` attributes; the
    key is checked against the stored check value before anything is written. The output is
    a plain store again (no ``fastmix_*`` attributes).

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
    progress, in_place, resume, overwrite, backend, threads, raw_chunks
        As for :func:`mix_store`.

    Returns
    -------
    StoreReport
    """
    key = _check_key(key)
    get_backend(backend)
    parse_memory(memory)
    if in_place:
        return _in_place("unmix", src, key=key, memory=memory, images=images,
                         progress=progress, resume=resume, backend=backend)
    source = os.fspath(src)
    store = open_store(source, images, labels=None, rdcc_nbytes=1 << 20)
    try:
        require_not_interrupted(store.images, source)
        record = require_unmixable(store.images, source, key)
        destination = check_destination(source, dst, overwrite)
        store.close()
        store = open_store(source, images, record.labels, rdcc_nbytes=1 << 20)
        threads = threads or codec_threads()
        windows = plan_windows(store.images, memory, record.window, aligned=False)
        aligned = all(start % _chunk_step(store.images) == 0 for start, _ in windows)
        with ThreadPoolExecutor(threads, thread_name_prefix="fastmix-codec") as pool:
            return _new_file_run("unmix", source, destination, spec=record.spec, key=key,
                                 store=store, windows=windows, labels_name=record.labels,
                                 inverse=True, overwrite=overwrite, progress=progress,
                                 backend=backend, pool=pool, threads=threads,
                                 raw=raw_chunks and aligned,
                                 piece=piece_images(store, memory, threads))
    finally:
        store.close()


def _chunk_step(dataset) -> int:
    return int(dataset.chunks[0]) if dataset.chunks is not None else 1


def require_unmixable(dataset, path: str, key: Key):
    """The dataset's :class:`~fastmix.store.metadata.MixRecord`, checked for unmixing.

    Raises :class:`BadInputError` for an unmixed or paper-mode store and
    :class:`~fastmix.errors.WrongKeyError` for the wrong key.
    """
    record = read_mix_record(dataset)
    if record is None:
        raise BadInputError(
            f"store {path!r} carries no fastmix record on {dataset.name!r}: it was not mixed by "
            "fastmix, so there is nothing to unmix"
        )
    if record.spec.mode != "permute":
        raise BadInputError(
            f"store {path!r} was mixed in {record.spec.mode!r} mode, which is not reversible; "
            "only permute-mode stores can be unmixed"
        )
    if not record.reversible or not record.spec.reversible:
        raise BadInputError(
            f"store {path!r} was mixed with one-way hardening (jitter or seam blur), which is "
            "not reversible; it cannot be unmixed"
        )
    key.verify(record.key_check)
    return record


def _in_place(operation: str, src, **options) -> StoreReport:
    try:
        from fastmix.store.inplace import run_in_place
    except ModuleNotFoundError as error:
        if error.name != "fastmix.store.inplace":
            raise
        raise BadInputError("in-place mixing is not available yet") from None
    return run_in_place(operation, src, **options)
