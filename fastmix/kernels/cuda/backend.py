"""The numba.cuda backend: windows on the device, pieces through the kernels of :mod:`.kernels`.

It implements the backend protocol of :mod:`fastmix.backends`. ``numba.cuda`` is imported on
first use only, and ``cuda.is_available()`` is asked only when the cuda backend is asked for
(:mod:`fastmix.device_arrays`); ``import fastmix`` never probes for a GPU. A request for the
backend on a machine without numba-cuda or without a usable GPU raises
:class:`fastmix.BadInputError` (exit status 2 on the command line).

Device arrays
    Any object with ``__cuda_array_interface__`` (CuPy, PyTorch, Numba) or a CUDA DLPack
    capsule is used in place, without a host copy; results are allocated by the caller's
    own library (its ``empty_like``) and work is queued on the caller's stream
    (:mod:`fastmix.device_arrays`).
Host arrays
    Copied to the device and back through pinned buffers, in pieces on two streams.
"""

from __future__ import annotations

from collections import OrderedDict
from contextlib import nullcontext
from typing import Any

import numpy as np

from fastmix.device_arrays import (
    DeviceArray,
    caller_stream,
    is_device_array,
    numba_cuda,
    require_gpu,
    simulated,
    stream_override,
)
from fastmix.errors import BadInputError
from fastmix.kernels.cuda.kernels import (
    SHARED_LEVELS,
    TILE_BYTES,
    TileGeometry,
    block_tables,
    compiled_kernels,
    fill_jitter,
    launch_geometry,
    small_geometry,
    tile_geometry,
    tile_launch,
    word_dtype,
    word_size,
)
from fastmix.kernels.steps import NO_BLUR, NO_JITTER

NAME = "cuda"
LOCATION = "device"
# Host-to-device and device-to-host copies go through pinned buffers in pieces of about
# this many bytes, alternating two streams, so one piece's copy overlaps the next one's
# kernels.
COPY_PIECE_BYTES = 32 << 20
#: Device bytes of the plans kept for reuse (:meth:`_Buffers.device_plan`), at most.
PLAN_CACHE_BYTES = 64 << 20
#: Bytes of a tile the tile kernel's units are laid out for (at most
#: :data:`~fastmix.kernels.cuda.kernels.TILE_BYTES`; smaller only to test its pieces).
TILE_BUDGET = TILE_BYTES


def available() -> bool:
    """Whether numba.cuda imports and sees a GPU (or runs its simulator); asked only here."""
    try:
        return bool(numba_cuda().is_available())
    except Exception:
        return False


def unavailable_reason() -> str:
    """Why the backend cannot run here, and what to do (see :func:`available`)."""
    try:
        numba_cuda()
    except BadInputError:
        return ("numba-cuda is not installed: pip install 'fastmix[cuda12]' or "
                "'fastmix[cuda13]', matching the driver's CUDA version")
    return ("numba.cuda sees no NVIDIA GPU or driver; NUMBA_ENABLE_CUDASIM=1 runs numba's "
            "slow simulator")


def streaming_threads():
    """Nothing to set: the kernels run on the GPU, beside the store's I/O threads."""
    return nullcontext()


class _Shape:
    """Device copies of the per-shape index tables, made once per run and word size."""

    def __init__(self, steps, word: int, stream):
        module = require_gpu()
        self.steps = steps  # the tables are of this Steps object (checked by identity)
        layout = steps.layout
        height = int(layout.row_bounds[-1])
        pixel_bytes = self.pixel_bytes = _pixel_bytes(steps)
        word_bounds = np.asarray(steps.grid.col_edges) * pixel_bytes // word
        row_first, word_block = block_tables(np.asarray(steps.grid.row_edges), word_bounds)
        self.word = word
        self.words_per_row = int(word_bounds[-1])
        self.row_first_block = module.to_device(row_first, stream=stream)
        self.word_block = module.to_device(word_block, stream=stream)
        if steps.hardened:
            jitter, blur = steps.jitter or NO_JITTER, steps.blur or NO_BLUR
            rows = np.asarray(steps.grid.row_edges)
            cols = np.asarray(steps.grid.col_edges)
            row_block = np.repeat(np.arange(rows.size - 1, dtype=np.int32), np.diff(rows))
            pixel_block = np.repeat(np.arange(cols.size - 1, dtype=np.int32), np.diff(cols))
            self.row_block = module.to_device(row_block.astype(np.int32), stream=stream)
            self.pixel_block = module.to_device(pixel_block.astype(np.int32), stream=stream)
            self.row_edges = module.to_device(rows.astype(np.int64), stream=stream)
            self.col_edges = module.to_device(cols.astype(np.int64), stream=stream)
            self.levels = module.to_device(np.asarray(jitter.levels, dtype=np.float64),
                                           stream=stream)
            self.band_rows = module.to_device(np.asarray(blur.band_rows, dtype=np.int64),
                                              stream=stream)
            self.band_cols = module.to_device(np.asarray(blur.band_cols, dtype=np.int64),
                                              stream=stream)
            self.weights = module.to_device(np.asarray(blur.weights, dtype=np.float64),
                                            stream=stream)
            self.fixed = module.to_device(
                np.asarray(blur.fixed if blur.fixed.size else np.zeros(1), dtype=np.int64),
                stream=stream)
        self.height = height


def _pixel_bytes(steps) -> int:
    layout = steps.layout
    return int(layout.units * layout.unit_dtype.itemsize // int(steps.grid.col_edges[-1]))


class DevicePlan:
    """A window plan's arrays on the device: source map, orientation codes, jitter draws.

    Made once per plan object (:meth:`_Buffers.device_plan`): a plan used again (the same
    training batch and step through :func:`fastmix.torch.mix_batch`) is not drawn or copied
    again. ``ready`` is recorded on the stream that copied it.
    """

    def __init__(self, plan, steps, count: int, stream):
        module = require_gpu()
        self.source_map = module.to_device(np.ascontiguousarray(plan.source, dtype=np.int32),
                                           stream=stream)
        blocks = plan.source.shape[1]
        codes = np.zeros((0, 0), dtype=np.uint8)
        jitter = np.zeros((0, 0, 3), dtype=np.float64)
        if steps.hardened:
            codes = plan.codes if getattr(plan, "codes", None) is not None else \
                np.zeros((count, blocks), dtype=np.uint8)
            if getattr(plan, "jitter", None) is not None:  # plan rule 1: drawn in the plan
                jitter = plan.jitter
            elif getattr(plan, "jitter_seed", None) is not None:
                # Drawn on the host for the whole window, then copied (device memory is not
                # this backend's limit; the CPU backend draws per block as it computes).
                jitter = np.empty((count, blocks, 3), dtype=np.float64)
                fill_jitter(jitter, np.uint64(plan.jitter_seed), 0, steps.jitter.tables)
        #: Whether a block is transposed (a code of 4 or more): the tile kernel then keeps
        #: whole block rows in a unit.
        self.transposes = bool(codes.size and int(codes.max()) >= 4)
        self.codes = module.to_device(np.ascontiguousarray(codes, dtype=np.uint8), stream=stream)
        self.jitter = module.to_device(np.ascontiguousarray(jitter, dtype=np.float64),
                                       stream=stream)
        self.nbytes = int(plan.source.size) * 4 + int(codes.size) + int(jitter.size) * 8
        self.ready = module.event()
        self.ready.record(stream)


class DeviceWindow:
    """One window on the device: its pixels, its plan's arrays, the stream it is ready on."""

    def __init__(self, source, count: int, image_bytes: int, plan, steps, stream,
                 caller_array: DeviceArray | None):
        self.source = source  # (count, image_bytes) uint8 device view
        self.count = count
        self.image_bytes = image_bytes
        self.steps = steps
        self.stream = stream
        self.caller_array = caller_array
        self.plan = _buffers.device_plan(plan, steps, count, stream)
        self.plan.ready.wait(stream)
        self.source_map = self.plan.source_map
        self.codes = self.plan.codes if steps.hardened else None
        self.jitter = self.plan.jitter if steps.hardened else None


class _Buffers:
    """Pinned host buffers and device buffers, grown on demand and reused across windows."""

    def __init__(self) -> None:
        self.pinned: dict[str, np.ndarray] = {}
        self.device: dict[str, Any] = {}  # numba device arrays
        self.streams: list = []
        self.shapes: dict = {}
        self.tiles: dict = {}
        self.plans: OrderedDict[int, tuple[Any, DevicePlan]] = OrderedDict()
        self.last_use: dict = {}

    def device_plan(self, plan, steps, count: int, stream) -> DevicePlan:
        """Return ``plan``'s arrays on the device, copied once per plan object.

        The last few plans (up to :data:`PLAN_CACHE_BYTES` of them) stay on the device, so
        that a plan used again is neither drawn nor copied again.
        """
        cached = self.plans.get(id(plan))
        if cached is not None and cached[0] is plan:
            self.plans.move_to_end(id(plan))
            return cached[1]
        arrays = DevicePlan(plan, steps, count, stream)
        if arrays.nbytes <= PLAN_CACHE_BYTES:
            self.plans[id(plan)] = (plan, arrays)
            while sum(entry.nbytes for _, entry in self.plans.values()) > PLAN_CACHE_BYTES:
                self.plans.popitem(last=False)
        return arrays

    def host(self, name: str, nbytes: int) -> np.ndarray:
        buffer = self.pinned.get(name)
        if buffer is None or buffer.nbytes < nbytes:
            buffer = require_gpu().pinned_array(max(nbytes, 1), dtype=np.uint8)
            self.pinned[name] = buffer
        return buffer[:nbytes]

    def on_device(self, name: str, nbytes: int):
        buffer = self.device.get(name)
        if buffer is None or buffer.size < nbytes:
            self.device.pop(name, None)
            buffer = require_gpu().device_array(max(nbytes, 1), dtype=np.uint8)
            self.device[name] = buffer
        return buffer[:nbytes]

    def scratch(self, name: str, shape: tuple[int, ...], dtype) -> object:
        """Return a reused device buffer of ``shape`` (one per name: a name per stream in use)."""
        dtype = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        return _typed(self.on_device(name, max(count, 1) * dtype.itemsize)[:count * dtype.itemsize],
                      shape, dtype)

    def claim(self, slot: str, stream) -> None:
        """Order work on ``stream`` after the last work that used the ``slot`` buffers."""
        last = self.last_use.get(slot)
        if last is not None and last[0] is not stream:
            last[1].wait(stream)

    def release(self, slot: str, stream) -> None:
        """Remember the work just queued on ``stream`` with the ``slot`` buffers."""
        event = require_gpu().event()
        event.record(stream)
        self.last_use[slot] = (stream, event)

    def two_streams(self):
        if not self.streams:
            module = require_gpu()
            self.streams = [module.stream(), module.stream()]
        return self.streams


_buffers = _Buffers()


def _shape_tables(steps, word: int, stream) -> _Shape:
    key = (id(steps), word)
    tables = _buffers.shapes.get(key)
    if tables is None or tables.steps is not steps:
        tables = _Shape(steps, word, stream)
        _buffers.shapes = {key: tables}
    return tables


def load_window(images, job):
    """Put one window on the device; see :func:`fastmix.backends.Backend.load_window`.

    A CUDA array (``__cuda_array_interface__`` or DLPack) is used where it is, on the
    caller's stream. A host array is copied through a pinned buffer in pieces on the
    backend's own stream; the caller may reuse ``images`` as soon as this returns.
    """
    require_gpu()
    compiled_kernels()
    count = len(images)
    if is_device_array(images):
        caller = DeviceArray(images)
        _check_device_window(caller)
        stream = caller_stream(stream_override(), like=images)
        image_bytes = caller.nbytes // max(count, 1)
        source = caller.words((count, image_bytes), 1)
    else:
        caller = None
        stream = _buffers.two_streams()[0]
        host = np.ascontiguousarray(images).reshape(count, -1).view(np.uint8)
        image_bytes = host.shape[1] if count else 0
        nbytes = count * image_bytes
        stream.synchronize()  # the previous window's copies are done with the buffers
        staging = _buffers.host("in", nbytes)
        source = _buffers.on_device("window", nbytes).reshape(count, image_bytes)
        step = max(1, COPY_PIECE_BYTES // max(image_bytes, 1))
        flat = staging.reshape(count, image_bytes)
        for start in range(0, count, step):
            stop = min(start + step, count)
            np.copyto(flat[start:stop], host[start:stop])
            source[start:stop].copy_to_device(flat[start:stop], stream=stream)
    window = DeviceWindow(source, count, image_bytes, job.plan, job.steps, stream, caller)
    return job.with_pixels(window)


def _check_device_window(array: DeviceArray) -> None:
    if not array.c_contiguous:
        raise BadInputError("CUDA images must be C-contiguous; call .contiguous() (PyTorch) "
                            "or cupy.ascontiguousarray first")


def mix_piece(window, first: int, last: int, out, order=None) -> None:
    """Output images ``first..last`` into ``out``; see :func:`fastmix.backends.Backend.mix_piece`.

    ``out`` may be a CUDA array (written in place, queued on the window's stream) or host
    memory (copied back through pinned buffers, done when this returns). ``order`` only
    orders the CPU's work and is ignored.
    """
    module = require_gpu()
    device_window: DeviceWindow = window.pixels
    count = last - first
    if count <= 0:
        return
    image_bytes = device_window.image_bytes
    if is_device_array(out):
        target = DeviceArray(out)
        _check_device_window(target)
        if target.nbytes != count * image_bytes:
            raise BadInputError(f"out holds {target.nbytes} bytes, expected {count} images of "
                                f"{image_bytes} bytes")
        _run_piece(device_window, first, last, target.words((count, image_bytes), 1),
                   target.pointer, device_window.stream, "caller")
        return
    if not out.flags.c_contiguous:
        raise BadInputError("out must be C-contiguous")
    host = out.reshape(count, -1).view(np.uint8)
    streams = _buffers.two_streams()
    ready = module.event()
    ready.record(device_window.stream)
    staging = _buffers.host("out", count * image_bytes).reshape(count, image_bytes)
    device_out = _buffers.on_device("out", count * image_bytes).reshape(count, image_bytes)
    step = max(1, COPY_PIECE_BYTES // max(image_bytes, 1))
    pieces = []
    for number, start in enumerate(range(0, count, step)):
        stop = min(start + step, count)
        stream = streams[number % 2]
        ready.wait(stream)
        _run_piece(device_window, first + start, first + stop, device_out[start:stop],
                   _device_pointer(device_out), stream, f"stream {number % 2}")
        device_out[start:stop].copy_to_host(staging[start:stop], stream=stream)
        done = module.event()
        done.record(stream)
        pieces.append((start, stop, done))
    for start, stop, done in pieces:
        done.synchronize()
        np.copyto(host[start:stop], staging[start:stop])


def _device_pointer(array) -> int:
    interface = getattr(array, "__cuda_array_interface__", None)
    if interface is None:  # the simulator's arrays have none; its memory is host memory
        return int(array.ctypes.data)
    return int(interface["data"][0])


def _run_piece(window: DeviceWindow, first: int, last: int, out_bytes, out_pointer: int,
               stream, slot: str) -> None:
    """Queue the kernels of output images ``first..last`` (``out_bytes``: count x bytes).

    ``slot`` names the scratch buffers: work queued on different streams uses different ones.
    """
    _buffers.claim(slot, stream)
    try:
        _queue_kernels(window, first, last, out_bytes, out_pointer, stream, slot)
    finally:
        _buffers.release(slot, stream)


def _queue_kernels(window: DeviceWindow, first: int, last: int, out_bytes, out_pointer: int,
                   stream, slot: str) -> None:
    """Queue the gather (the tile kernel, or the word kernels where it cannot), then the blur."""
    steps = window.steps
    count = last - first
    tiles = _tile_tables(window, _device_pointer(window.source), out_pointer, stream)
    if tiles is not None:
        _queue_tiles(window, tiles, first, count, out_bytes, stream)
    elif not steps.hardened:
        _queue_word_gather(window, first, count, out_bytes, out_pointer, stream)
        return
    else:
        _queue_hardened_gather(window, first, count, out_bytes, stream, slot)
    if not steps.hardened:
        return
    view, blur = steps.values, steps.blur or NO_BLUR
    if not (np.asarray(blur.band_rows).size or np.asarray(blur.band_cols).size):
        return
    value_dtype = np.dtype(view.dtype)
    channels = int(view.channels)
    tables = _shape_tables(steps, value_dtype.itemsize, stream)
    height = tables.height
    values = int(steps.grid.col_edges[-1]) * channels
    out = _typed(out_bytes, (count, height, values), value_dtype)
    launch = compiled_kernels()
    blur_args = (float(view.low), float(view.high), bool(view.integer))
    if np.asarray(blur.fixed).size:  # hardening format 2 on integer values: fixed point
        if np.asarray(blur.band_rows).size:
            grid, block = small_geometry(count, 1, values)
            lines = _buffers.scratch(f"fixed lines {slot}",
                                     (tables.band_rows.size, _threads(grid, block)), np.int64)
            launch["blur_rows_fixed"][grid, block, stream](
                out, tables.band_rows, lines, tables.fixed, int(blur.radius))
        if np.asarray(blur.band_cols).size:
            grid, block = small_geometry(count, height, 1)
            line = _buffers.scratch(
                f"fixed line {slot}", (tables.band_cols.size * channels, _threads(grid, block)),
                np.int64)
            launch["blur_cols_fixed"][grid, block, stream](
                out, tables.band_cols, line, tables.fixed, int(blur.radius), channels)
        return
    if np.asarray(blur.band_rows).size:
        grid, block = small_geometry(count, 1, values)
        lines = _buffers.scratch(f"lines {slot}", (tables.band_rows.size, _threads(grid, block)),
                                 np.float64)
        launch["blur_rows"][grid, block, stream](out, tables.band_rows, lines, tables.weights,
                                                 int(blur.radius), *blur_args)
    if np.asarray(blur.band_cols).size:
        grid, block = small_geometry(count, height, 1)
        line = _buffers.scratch(
            f"line {slot}", (tables.band_cols.size * channels, _threads(grid, block)),
            np.float64)
        launch["blur_cols"][grid, block, stream](out, tables.band_cols, line, tables.weights,
                                                 int(blur.radius), channels, *blur_args)


class _Tiles:
    """Device copies of one :class:`TileGeometry`'s tables and the grid, made once per shape."""

    def __init__(self, steps, geometry: TileGeometry, stream):
        module = require_gpu()
        self.steps = steps  # the tables are of this Steps object (checked by identity)
        self.geometry = geometry
        rows = np.asarray(steps.grid.row_edges, dtype=np.int64)
        cols = np.asarray(steps.grid.col_edges, dtype=np.int64)
        jitter = steps.jitter or NO_JITTER

        def put(array: np.ndarray, dtype=np.int32):
            return module.to_device(np.ascontiguousarray(array, dtype=dtype), stream=stream)

        self.vector = put(geometry.vector(), np.int64)
        self.pieces = put(geometry.pieces)
        self.row_edges = put(rows, np.int64)
        self.col_edges = put(cols, np.int64)
        self.row_block = put(np.repeat(np.arange(rows.size - 1), np.diff(rows)))
        self.pixel_block = put(np.repeat(np.arange(cols.size - 1), np.diff(cols)))
        self.group_blocks = put(geometry.group_blocks)
        self.load_first = put(geometry.load_first)
        self.load_column = put(geometry.load_column)
        self.load_block = put(geometry.load_block)
        self.value_first = put(geometry.value_first)
        self.out_first = put(geometry.out_first)
        self.levels = put(np.asarray(jitter.levels), np.float64)


def _tile_tables(window: DeviceWindow, source_pointer: int, out_pointer: int,
                 stream) -> _Tiles | None:
    """Return the tile kernel's tables for this window, or ``None`` where it cannot run.

    Made once per run, transposition, level tables and pointer alignment
    (:func:`tile_geometry`).
    """
    steps = window.steps
    jitter = steps.jitter or NO_JITTER
    levels = int(np.asarray(jitter.levels).size)
    rows = np.asarray(steps.grid.row_edges)
    cols = np.asarray(steps.grid.col_edges)
    channels = int(steps.values.channels)
    largest = int(np.diff(rows).max()) * int(np.diff(cols).max()) * channels
    tabled = window.plan.jitter.shape[0] > 0 and 0 < levels <= SHARED_LEVELS and \
        largest > levels
    transposes = window.plan.transposes
    key = (id(steps), source_pointer % 16, out_pointer % 16, transposes, tabled, TILE_BUDGET)
    cached = _buffers.tiles.get(key)
    if cached is not None and cached[0] is steps:
        return cached[1]
    geometry = tile_geometry(rows, cols, _pixel_bytes(steps),
                             np.dtype(steps.values.dtype).itemsize, plain=not steps.hardened,
                             transposes=transposes, tabled=tabled,
                             source_pointer=source_pointer, out_pointer=out_pointer,
                             budget=TILE_BUDGET)
    tiles = None if geometry is None else _Tiles(steps, geometry, stream)
    kept = {name: entry for name, entry in _buffers.tiles.items() if entry[0] is steps}
    _buffers.tiles = kept if len(kept) < 16 else {}
    _buffers.tiles[key] = (steps, tiles)
    return tiles


def _queue_tiles(window: DeviceWindow, tiles: _Tiles, first: int, count: int, out_bytes,
                 stream) -> None:
    """Queue the tile kernel over output images ``first..first + count``."""
    steps, geometry = window.steps, tiles.geometry
    view = steps.values
    if steps.hardened:
        dtype = np.dtype(view.dtype)
        jitter_step, offset, low, span = (int(view.jitter_step), int(view.low), float(view.low),
                                          float(view.span))
    else:
        dtype = word_dtype(geometry.value_size)
        jitter_step, offset, low, span = 0, 0, 0.0, 1.0
    image_values = window.image_bytes // dtype.itemsize
    source = _typed(window.source, (window.count * image_values,), dtype)
    out = _typed(out_bytes, (count * image_values,), dtype)
    blocks, threads = tile_launch(geometry.units(count))
    name = "tile_harden" if steps.hardened else "tile_gather"
    compiled_kernels()[name][blocks, threads, stream](
        source, out, window.plan.source_map, window.plan.codes, window.plan.jitter,
        tiles.levels, first, count, tiles.vector, tiles.pieces, tiles.row_edges,
        tiles.col_edges, tiles.row_block, tiles.pixel_block, tiles.group_blocks,
        tiles.load_first, tiles.load_column, tiles.load_block, tiles.value_first,
        tiles.out_first, jitter_step, int(tiles.levels.size), offset, low, span)


def _queue_word_gather(window: DeviceWindow, first: int, count: int, out_bytes,
                       out_pointer: int, stream) -> None:
    """Queue the plain gather a word a thread (the fallback of :func:`_queue_tiles`)."""
    steps = window.steps
    edges = steps.grid
    pixel_bytes = _pixel_bytes(steps)
    segment = int(edges.col_edges[1] - edges.col_edges[0]) * pixel_bytes
    word = word_size(int(edges.col_edges[-1]) * pixel_bytes, segment,
                     _device_pointer(window.source), out_pointer,
                     steps.layout.unit_dtype.itemsize)
    tables = _shape_tables(steps, word, stream)
    height, words = tables.height, tables.words_per_row
    source = _words(window.source, (window.count, height, words), word)
    out = _words(out_bytes, (count, height, words), word)
    blocks, threads = launch_geometry(count, height, words)
    compiled_kernels()["gather"][blocks, threads, stream](
        source, out, window.source_map, first, tables.row_first_block, tables.word_block)


def _queue_hardened_gather(window: DeviceWindow, first: int, count: int, out_bytes, stream,
                           slot: str) -> None:
    """Queue the hardened gather a pixel a thread (the fallback of :func:`_queue_tiles`)."""
    steps = window.steps
    launch = compiled_kernels()
    view, jitter = steps.values, steps.jitter or NO_JITTER
    value_dtype = np.dtype(view.dtype)
    channels = int(view.channels)
    tables = _shape_tables(steps, value_dtype.itemsize, stream)
    height = tables.height
    values = int(steps.grid.col_edges[-1]) * channels
    source = _typed(window.source, (window.count, height, values), value_dtype)
    out = _typed(out_bytes, (count, height, values), value_dtype)
    levels = int(np.asarray(jitter.levels).size)
    blocks_per_image = window.source_map.shape[1]
    assert window.jitter is not None  # set on every hardened window
    jittered = window.jitter.shape[0] > 0
    if jittered and levels > 0:
        level_tables = _buffers.scratch(f"tables {slot}", (count, blocks_per_image, levels),
                                        value_dtype)
        grid, block = small_geometry(count, 1, blocks_per_image)
        launch["fill_tables"][grid, block, stream](
            level_tables, tables.levels, window.jitter, first, tables.row_edges,
            tables.col_edges, channels, float(view.low), float(view.span))
    else:
        level_tables = _buffers.scratch(f"tables {slot}", (1, 1, 1), value_dtype)
    grid, block = launch_geometry(count, height, values // channels)
    launch["hardened_gather"][grid, block, stream](
        source, out, window.source_map, window.codes, window.jitter, level_tables, first,
        tables.row_block, tables.pixel_block, tables.row_edges, tables.col_edges,
        channels, int(view.jitter_step), levels, int(view.low), float(view.low),
        float(view.span))


def _threads(grid, block) -> int:
    return int(np.prod(grid)) * int(np.prod(block))


def _words(flat_bytes, shape, word: int):
    """``flat_bytes`` (a uint8 device array) seen as ``shape`` words of ``word`` bytes."""
    return _typed(flat_bytes, shape, word_dtype(word))


def _typed(flat_bytes, shape, dtype):
    if simulated():
        return type(flat_bytes)(np.asarray(flat_bytes._ary).reshape(-1).view(dtype).reshape(shape))
    return flat_bytes.reshape(flat_bytes.size).view(dtype).reshape(*shape)


