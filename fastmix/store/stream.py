"""The new-file window loop: whole windows in, output streamed out piece by piece.

Mixing needs a whole window of input (any image may give blocks to any other), but each
output image depends only on that input. So the output is produced a few chunks at a time
into a small ring of reused buffers, encoded in the codec pool while still in cache, and
written by a writer thread. Only two window-sized buffers exist: the window being mixed and
the next one being read (and planned) by the reader thread. Fresh memory is expensive
(every page is faulted in and zeroed by the kernel), so the window length per byte of
``--memory`` doubles compared with buffering the output too.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext

import numpy as np

from fastmix.backends import get_backend
from fastmix.keys import Key
from fastmix.mixing import layout_for, mix_window
from fastmix.plan import encode_labels, plan_window
from fastmix.spec import MixSpec
from fastmix.store.chunkio import WindowReader, WindowWriter

#: Window-sized buffers of the streaming loop: the window being mixed and the next one.
STREAM_BUFFERS = 2


def ring_slots(threads: int) -> int:
    """Output pieces in flight: one being mixed, one being written, one per codec thread."""
    return threads + 2


def streaming(spec: MixSpec) -> bool:
    """Whether the output can be produced piece by piece (plain gathers can; hardened
    mixing transforms whole windows, so it keeps a window-sized output buffer)."""
    return not getattr(spec, "hardened", False)


def window_buffers(spec: MixSpec) -> int:
    """Window-sized buffers :func:`stream_windows` allocates for ``spec``."""
    return STREAM_BUFFERS + (0 if streaming(spec) else 1)


@contextmanager
def kernel_threads_leaving_one_core(backend: str) -> Iterator[None]:
    """Run the calling thread's CPU kernels on one thread fewer than Numba's default.

    The reader and writer threads copy (and decode or encode) while the kernel gathers;
    a kernel that spreads over every core waits for its slowest thread, the one sharing a
    core with them. Measured on 2 cores, unfiltered: 0.202 s against 0.216 s for 20,000
    images. The setting is Numba's per-thread one, restored on exit.
    """
    if backend != "cpu":
        yield
        return
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, before - 1))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def stream_windows(reader: WindowReader, writer: WindowWriter,
                   windows: list[tuple[int, int]], labels: np.ndarray, spec: MixSpec,
                   key: Key, *, threads: int, piece: int | None = None, inverse: bool = False,
                   backend: str = "cpu", progress=None,
                   indices: Sequence[int] | None = None) -> int:
    """Mix (or unmix) ``windows`` from ``reader`` into ``writer``; returns unpartnered images.

    The reader thread reads and plans window k+1 while the calling thread mixes window k
    piece by piece (``piece`` images, whole chunks) and the writer thread writes the pieces
    in order. When reading a window fails, the pieces already handed to the writer are
    written before the error is raised (in-place mode commits the previous window there).

    Parameters
    ----------
    reader : WindowReader
        Anything with ``dataset`` and ``read(start, stop, buffer)``.
    writer : WindowWriter
        Anything with ``piece_length()``, ``encode_piece(first, last, images)`` and
        ``store_piece(encoded)``.
    windows : list of (start, stop)
        The windows to process, in order.
    labels : ndarray
        All labels of the store.
    spec, key
        Mixing parameters and key.
    threads : int
        Codec threads (sizes the output ring).
    piece : int, optional
        Images per output piece; default ``writer.piece_length()``.
    inverse : bool
        Unmix instead of mix.
    backend : str
        Kernel backend.
    progress : Progress, optional
        Updated (in the writer thread) after each window.
    indices : sequence of int, optional
        The window index of each window, which seeds its plan; default ``0, 1, 2, ...``.
        A resumed in-place run passes its remaining windows with their original indices.

    Returns
    -------
    int
        Images left unmixed for want of a same-label partner in their window.
    """
    if not windows:
        return 0
    indices = range(len(windows)) if indices is None else indices
    if len(indices) != len(windows):
        raise ValueError(f"{len(windows)} windows but {len(indices)} window indices")
    dataset = reader.dataset
    shape, dtype = tuple(dataset.shape[1:]), dataset.dtype
    layout = layout_for(shape, dtype, spec)
    longest = max(stop - start for start, stop in windows)
    inputs = [np.empty((longest, *shape), dtype) for _ in range(min(2, len(windows)))]
    piece = piece or writer.piece_length()
    if streaming(spec):
        ring = [np.empty((min(piece, longest), *shape), dtype) for _ in range(ring_slots(threads))]
        whole_output = None
    else:
        ring = []
        whole_output = np.empty((longest, *shape), dtype)
    kernel = get_backend(backend)
    visit_order = np.arange(min(piece, longest), dtype=np.int64)
    in_flight: list[Future | None] = [None] * len(ring)
    written: list[Future] = []
    unpartnered = 0
    counter = 0

    def prepare(position: int, buffer: np.ndarray):
        start, stop = windows[position]
        images = reader.read(start, stop, buffer)
        codes = encode_labels(labels[start:stop])
        return images, plan_window(codes, layout.block_count, spec, key, indices[position])

    kernel_threads = kernel_threads_leaving_one_core(backend) if whole_output is None \
        else nullcontext()
    with ThreadPoolExecutor(1, thread_name_prefix="fastmix-reader") as read_thread, \
            ThreadPoolExecutor(1, thread_name_prefix="fastmix-writer") as write_thread, \
            kernel_threads:
        reading = read_thread.submit(prepare, 0, inputs[0])
        try:
            for position, (start, stop) in enumerate(windows):
                try:
                    images, plan = reading.result()
                except BaseException:
                    # Let the previous window, whose pieces are all handed over, be
                    # written (and in place, committed) before stopping.
                    for pending in [*in_flight, *written]:
                        if pending is not None:
                            pending.result()
                    raise
                if position + 1 < len(windows):
                    reading = read_thread.submit(prepare, position + 1,
                                                 inputs[(position + 1) % len(inputs)])
                unpartnered += plan.unpartnered
                if whole_output is not None:
                    for pending in written:
                        pending.result()  # the output buffer is about to be rewritten
                    written.clear()
                    mixed = whole_output[:stop - start]
                    mix_window(images, labels[start:stop], spec, key, indices[position], mixed,
                               inverse=inverse, backend=backend, layout=layout, plan=plan)
                    for first in range(start, stop, piece):
                        last = min(first + piece, stop)
                        items = writer.encode_piece(first, last,
                                                    mixed[first - start:last - start])
                        written.append(write_thread.submit(writer.store_piece, items))
                else:
                    source_map = plan.inverse() if inverse else plan.source
                    source = layout.view(images)
                    for first in range(start, stop, piece):
                        last = min(first + piece, stop)
                        slot = counter % len(ring)
                        counter += 1
                        if in_flight[slot] is not None:
                            in_flight[slot].result()  # its previous piece is written
                        out = ring[slot][:last - first]
                        kernel.gather(source, layout.view(out),
                                      source_map[first - start:last - start],
                                      layout.row_bounds, layout.col_bounds,
                                      visit_order[:last - first])
                        items = writer.encode_piece(first, last, out)
                        in_flight[slot] = write_thread.submit(writer.store_piece, items)
                if progress is not None:
                    write_thread.submit(progress.update, stop - start)
            for pending in [*in_flight, *written]:
                if pending is not None:
                    pending.result()
        finally:
            for pending in [*in_flight, *written]:
                if pending is not None:
                    pending.cancel()
    return unpartnered
