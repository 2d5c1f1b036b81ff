"""The window loop of both store engines: whole windows in, output streamed out piece by piece.

Mixing needs a whole window of input (any image may give blocks to any other), but each
output image depends only on that input. So the output is produced a few chunks at a time
by the pipeline's per-piece step (:mod:`fastmix.pipeline`: gather, orientation, jitter and
seam blur in one pass) into a small ring of reused buffers, encoded in the codec pool while
still in cache, and written by a writer thread. Only two window-sized buffers exist: the
window being mixed and the next one being read (and planned) by the reader thread. Fresh
memory is expensive (every page is faulted in and zeroed by the kernel), so the window
length per byte of ``--memory`` doubles compared with buffering the output too. Hardened
specs stream the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

from fastmix.keys import Key
from fastmix.pipeline import Pipeline
from fastmix.spec import MixSpec

#: Window-sized buffers of the streaming loop: the window being mixed and the next one.
STREAM_BUFFERS = 2


def ring_slots(threads: int) -> int:
    """Output pieces in flight: one being mixed, one being written, one per codec thread."""
    return threads + 2


class WindowSource(Protocol):
    """What :func:`stream_windows` reads: a :class:`WindowReader`, or one that wraps it."""

    @property
    def dataset(self) -> Any:
        """The h5py dataset read."""

    def read(self, start: int, stop: int, buffer: np.ndarray, /) -> np.ndarray:
        """Read images ``[start, stop)`` into ``buffer`` and return them."""


class PieceSink(Protocol):
    """What :func:`stream_windows` writes to: a :class:`WindowWriter`, or one that wraps it."""

    def piece_length(self) -> int:
        """Images per output piece, whole chunks."""

    def encode_piece(self, first: int, last: int, images: np.ndarray, /) -> Any:
        """Start encoding images ``[first, last)``; the result goes to :meth:`store_piece`."""

    def store_piece(self, encoded: Any, /) -> None:
        """Write what :meth:`encode_piece` returned."""


def stream_windows(reader: WindowSource, writer: PieceSink,
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
    reader : WindowSource
        Anything with ``dataset`` and ``read(start, stop, buffer)``.
    writer : PieceSink
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
    pipeline = Pipeline(shape, dtype, spec, key, backend=backend, inverse=inverse)
    longest = max(stop - start for start, stop in windows)
    inputs = [np.empty((longest, *shape), dtype) for _ in range(min(2, len(windows)))]
    piece = piece or writer.piece_length()
    ring = [np.empty((min(piece, longest), *shape), dtype) for _ in range(ring_slots(threads))]
    in_flight: list[Future | None] = [None] * len(ring)
    unpartnered = 0
    counter = 0

    def prepare(position: int, buffer: np.ndarray):
        start, stop = windows[position]
        images = reader.read(start, stop, buffer)
        return images, pipeline.plan(labels[start:stop], indices[position])

    with ThreadPoolExecutor(1, thread_name_prefix="fastmix-reader") as read_thread, \
            ThreadPoolExecutor(1, thread_name_prefix="fastmix-writer") as write_thread, \
            pipeline.streaming_threads():
        reading = read_thread.submit(prepare, 0, inputs[0])
        try:
            for position, (start, stop) in enumerate(windows):
                try:
                    images, plan = reading.result()
                except BaseException:
                    # Let the previous window, whose pieces are all handed over, be
                    # written (and in place, committed) before stopping.
                    for pending in in_flight:
                        if pending is not None:
                            pending.result()
                    raise
                if position + 1 < len(windows):
                    reading = read_thread.submit(prepare, position + 1,
                                                 inputs[(position + 1) % len(inputs)])
                unpartnered += plan.unpartnered
                window = pipeline.load(images, plan)
                for first in range(start, stop, piece):
                    last = min(first + piece, stop)
                    slot = counter % len(ring)
                    counter += 1
                    previous = in_flight[slot]
                    if previous is not None:
                        previous.result()  # its previous piece is written
                    out = ring[slot][:last - first]
                    pipeline.mix_piece(window, first - start, last - start, out)
                    items = writer.encode_piece(first, last, out)
                    in_flight[slot] = write_thread.submit(writer.store_piece, items)
                if progress is not None:
                    write_thread.submit(progress.update, stop - start)
            for pending in in_flight:
                if pending is not None:
                    pending.result()
        finally:
            for pending in in_flight:
                if pending is not None:
                    pending.cancel()
    return unpartnered
