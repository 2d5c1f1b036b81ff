"""The numba.cuda backend: the CPU backend's source maps on an NVIDIA GPU, same bodies.

``numba.cuda`` is imported in this module only, on first use, and ``cuda.is_available()``
is asked only when the cuda backend is asked for; ``import fastmix`` never probes for a
GPU. A request for the backend on a machine without numba-cuda or without a usable GPU
raises :class:`fastmix.BadInputError` (exit status 2 on the command line).

Layout
    Images ``(n, H, W[, C])`` are seen as bytes ``(n, H, W * C * itemsize)`` and those
    bytes as words of 8, 4, 2 or 1 bytes: the widest that divides the row bytes, the
    block-segment bytes and the alignment of both device pointers.
Grid
    x = words of a row, y = rows, z = images, each with a grid-stride loop, so any launch
    geometry covers any shape (the simulator runs with a small one).
Plans
    The source map is made on the host and copied to the device once per window, with two
    small tables: the first block number of every row and the block column of every word.
Device arrays
    Any object with ``__cuda_array_interface__`` (CuPy, PyTorch, Numba) or a CUDA DLPack
    capsule is used in place, without a host copy; results are allocated by the caller's
    own library (its ``empty_like``) and work is queued on the caller's stream.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import types
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import cache
from typing import Any

import numpy as np
from numba import njit

from fastmix._optional import require
from fastmix.errors import BadInputError, BadInputTypeError
from fastmix.kernels import body, harden_body

# The shared bodies the kernels below call, rebound to CUDA device functions by _kernels()
# before any kernel compiles.
from fastmix.kernels.body import copy_row_segment
from fastmix.kernels.harden_body import (
    COPY,
    TABLE,
    blur_band_cols,
    blur_band_rows,
    copy_run,
    fill_level_table,
    oriented_source,
)

THREADS_PER_BLOCK = 256
# Each simulated thread is a Python thread: the simulator gets a small launch, and the
# grid-stride loops cover the rest.
SIMULATOR_BLOCK = (4, 2, 1)
SIMULATOR_GRID = (2, 2, 2)
_WORDS = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}
_DLPACK_CUDA_DEVICES = (2, 13)  # kDLCUDA, kDLCUDAManaged
_INSTALL = ("install numba-cuda with `{install}` (or `[cuda13]`, "
            "matching the driver's CUDA version), or use backend='cpu'")

cuda = None  # numba.cuda once loaded; the kernels below name it as a global


def _import_numba_cuda():
    global cuda
    if cuda is None:
        cuda = require("numba.cuda", "cuda12", needed_by="backend='cuda'", package="numba-cuda",
                       advice=_INSTALL)
    return cuda


@cache
def _checked_numba_cuda():
    module = _import_numba_cuda()
    try:
        available = module.is_available()
    except Exception as error:  # a broken driver install raises instead of answering
        raise BadInputError(f"backend='cuda' found no usable CUDA GPU ({error}); use "
                            "backend='cpu'") from None
    if not available:
        raise BadInputError("backend='cuda' found no usable CUDA GPU (numba.cuda.is_available() "
                            "is False: no NVIDIA GPU or driver); use backend='cpu', or set "
                            "NUMBA_ENABLE_CUDASIM=1 to run the (slow) simulator")
    return module


def require_gpu():
    """``numba.cuda``, imported and checked; raise :class:`BadInputError` without a GPU."""
    return _checked_numba_cuda()


def simulated() -> bool:
    """Whether numba.cuda runs its simulator (``NUMBA_ENABLE_CUDASIM=1``)."""
    return os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")


# --- words and launch geometry ------------------------------------------------------------

def word_size(row_bytes: int, segment_bytes: int, *pointers: int) -> int:
    """Return the widest of 8, 4, 2, 1 bytes that divides the rows, segments and pointers."""
    size = math.gcd(8, row_bytes, segment_bytes, *pointers)
    return max(width for width in _WORDS if size % width == 0)


def word_dtype(size: int) -> np.dtype:
    """Return the unsigned integer dtype of ``size`` bytes."""
    return np.dtype(_WORDS[size])


def launch_geometry(count: int, height: int, words: int) -> tuple[tuple, tuple]:
    """``(blocks, threads)`` for ``count`` images of ``height`` rows of ``words`` words.

    A block's threads take whole rows of words (x) over a few rows (y), so a warp reads
    consecutive bytes even when a row is shorter than a warp.
    """
    if simulated():
        return SIMULATOR_GRID, SIMULATOR_BLOCK
    threads_x = min(words, THREADS_PER_BLOCK)
    threads_y = max(1, THREADS_PER_BLOCK // threads_x)
    blocks = (-(-words // threads_x), min(-(-height // threads_y), 65535),
              min(max(count, 1), 65535))
    return blocks, (threads_x, threads_y, 1)


def block_tables(row_bounds: np.ndarray, col_bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First block number of each row, and block column of each word (int32, host).

    ``col_bounds`` are in words. Looking these up replaces a 64-bit division per word.
    """
    block_cols = col_bounds.size - 1
    row_first = np.repeat(np.arange(row_bounds.size - 1, dtype=np.int32) * block_cols,
                          np.diff(row_bounds)).astype(np.int32)
    word_block = np.repeat(np.arange(block_cols, dtype=np.int32), np.diff(col_bounds))
    return row_first, word_block.astype(np.int32)


# --- device arrays ------------------------------------------------------------------------

def is_device_array(obj: object) -> bool:
    """Whether ``obj`` exposes CUDA memory (``__cuda_array_interface__`` or CUDA DLPack)."""
    if isinstance(obj, np.ndarray):
        return False
    try:
        if getattr(obj, "__cuda_array_interface__", None) is not None:
            return True
    except Exception:  # a CUDA array that refuses it (PyTorch: a tensor requiring grad)
        return True
    device = getattr(obj, "__dlpack_device__", None)
    if device is None:
        return False
    try:
        return int(device()[0]) in _DLPACK_CUDA_DEVICES
    except Exception:
        return False


class DeviceArray:
    """A caller's CUDA array seen through its ``__cuda_array_interface__`` (version 3).

    Nothing is copied: ``words()`` gives a Numba device view of the same memory.
    """

    def __init__(self, obj: object, stream_handle: int | None = None):
        self.obj = obj
        try:
            interface = getattr(obj, "__cuda_array_interface__", None)
        except Exception as error:
            raise BadInputError(
                f"cannot read the CUDA array interface of the {type(obj).__name__} ({error}); "
                "for PyTorch pass tensor.detach()") from None
        if interface is None:
            interface = _interface_from_dlpack(obj, stream_handle)
        if interface.get("mask") is not None:
            raise BadInputError("masked CUDA arrays are not supported; pass a plain array")
        self.interface = interface
        self.shape = tuple(int(size) for size in interface["shape"])
        self.dtype = np.dtype(interface["typestr"])
        self.pointer = int(interface["data"][0])
        self.readonly = bool(interface["data"][1])
        self.stream = interface.get("stream")
        strides = interface.get("strides")
        self.c_contiguous = strides is None or tuple(strides) == _c_strides(
            self.shape, self.dtype.itemsize)

    @property
    def nbytes(self) -> int:
        """Bytes of the array."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize

    def device(self):
        """Return a Numba device view of the array as it is (shape, dtype, strides)."""
        module = require_gpu()
        if simulated():
            return _simulated_view(self.interface)
        return module.from_cuda_array_interface(self.interface, owner=self.obj, sync=True)

    def words(self, shape: tuple[int, ...], size: int, start_byte: int = 0):
        """Return a Numba device view of the bytes from ``start_byte`` as ``shape`` words."""
        module = require_gpu()
        interface = {"shape": tuple(shape), "typestr": word_dtype(size).str,
                     "data": (self.pointer + start_byte, False), "strides": None,
                     "version": 3}
        if simulated():
            return _simulated_view(interface)
        return module.from_cuda_array_interface(interface, owner=self.obj, sync=False)


def to_host(obj: object) -> np.ndarray:
    """Return a host copy of the CUDA array ``obj`` (for small arrays such as labels)."""
    view = DeviceArray(obj).device()
    return np.asarray(view.copy_to_host())


def _c_strides(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _interface_from_dlpack(obj: object, stream_handle: int | None) -> dict:
    require_gpu()
    try:
        from cuda.core.utils import StridedMemoryView
    except ImportError:  # older cuda-python
        from cuda.core.experimental.utils import StridedMemoryView
    # The producer makes the data ready on the stream named (1: the legacy default stream,
    # which every blocking stream waits for).
    view = StridedMemoryView.from_dlpack(obj, stream_ptr=1 if stream_handle is None
                                         else stream_handle)
    itemsize = np.dtype(view.dtype).itemsize
    strides = None if view.strides is None else tuple(s * itemsize for s in view.strides)
    return {"shape": tuple(view.shape), "typestr": np.dtype(view.dtype).str,
            "data": (int(view.ptr), bool(view.readonly)), "strides": strides, "version": 3,
            "_view": view}


def _simulated_view(interface: dict):
    """Wrap the simulator's device memory (host memory) as an array, without copying."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    holder = type("Interface", (), {"__array_interface__": {
        "shape": interface["shape"], "typestr": interface["typestr"],
        "data": interface["data"], "strides": interface["strides"], "version": 3}})()
    return FakeCUDAArray(np.asarray(holder))


def library_of(obj: object):
    """Return the module of the library that made ``obj`` (``torch``, ``cupy``, ...)."""
    name = type(obj).__module__
    module = sys.modules.get(name)
    if module is not None and hasattr(module, "empty_like"):
        return module
    return sys.modules.get(name.partition(".")[0])


def empty_like(obj: object):
    """Return a new array like ``obj``, allocated by ``obj``'s own library (its ``empty_like``)."""
    library = library_of(obj)
    allocate = getattr(library, "empty_like", None)
    if allocate is None:
        raise BadInputTypeError(
            f"cannot allocate the result like a {type(obj).__module__}.{type(obj).__name__}: "
            "its library has no empty_like; pass out= (a CUDA array of the same shape and dtype)")
    return allocate(obj)


def caller_stream(stream: object = None, like: Any = None):
    """Return the Numba stream to queue work on.

    ``stream`` may be a Numba stream, a ``torch.cuda.Stream``, a ``cupy.cuda.Stream`` or a
    raw ``cudaStream_t`` handle (int). Without one, the current stream of the library that
    made ``like`` (PyTorch or CuPy) is used, else the stream its interface names, else the
    default stream.
    """
    module = require_gpu()
    if stream is None and like is not None:
        library = library_of(like)
        name = getattr(library, "__name__", "")
        if name == "torch":
            stream = library.cuda.current_stream(like.device)
        elif name == "cupy":
            stream = library.cuda.get_current_stream()
        else:
            interface = getattr(like, "__cuda_array_interface__", None) or {}
            stream = interface.get("stream")
    if stream is None:
        return module.default_stream()
    if type(stream).__module__.startswith("numba"):
        return stream
    handle = getattr(stream, "cuda_stream", None)  # torch
    if handle is None:
        handle = getattr(stream, "ptr", stream)  # cupy, or an int
    if isinstance(handle, bool) or not isinstance(handle, int | np.integer):
        raise BadInputTypeError(
            f"stream must be a Numba, PyTorch or CuPy stream or an integer handle, got "
            f"{type(stream).__name__}")
    if simulated():  # the simulator runs everything synchronously
        return module.stream()
    if int(handle) == 0:
        return module.default_stream()
    if int(handle) == 1:
        return module.legacy_default_stream()
    if int(handle) == 2:
        return module.per_thread_default_stream()
    return module.external_stream(int(handle))


# --- kernels ------------------------------------------------------------------------------
# Python functions compiled by numba.cuda on first launch. They call the shared bodies by
# the names imported above, which _kernels() rebinds to CUDA device functions first. The
# grid-stride loops are while loops: a range() with a variable step costs a 64-bit division
# per loop entry, once per word in the inner loop.

def _gather(source, out, source_map, first, row_first_block, word_block):
    """``out[i, row, word] = source[source_map[first + i, block], row, word]``."""
    start_x, start_y, start_z = cuda.grid(3)
    step_x, step_y, step_z = cuda.gridsize(3)
    image = start_z
    while image < out.shape[0]:
        row = start_y
        while row < out.shape[1]:
            first_block = row_first_block[row]
            word = start_x
            while word < out.shape[2]:
                copy_row_segment(source, out, image,
                                 source_map[first + image, first_block + word_block[word]],
                                 row, word, 1)
                word += step_x
            row += step_y
        image += step_z


def _hardened_gather(source, out, source_map, codes, jitter, tables, first, row_block,
                     pixel_block, row_edges, col_edges, channels, jitter_step, table_levels,
                     offset, low, span):
    """Oriented gather and jitter of every pixel of ``out`` ``(count, H, W * channels)``.

    One output pixel a thread, through :func:`harden_body.copy_run` with a run of one pixel;
    blocks whose level table was filled (:func:`_fill_tables`: blocks with more values than
    levels) look their values up in it.
    """
    start_x, start_y, start_z = cuda.grid(3)
    step_x, step_y, step_z = cuda.gridsize(3)
    block_cols = col_edges.size - 1
    width_pixels = out.shape[2] // channels
    jittered = jitter.shape[0] > 0
    image = start_z
    while image < out.shape[0]:
        planned = first + image
        row = start_y
        while row < out.shape[1]:
            block_row = row_block[row]
            top = row_edges[block_row]
            height = row_edges[block_row + 1] - top
            pixel = start_x
            while pixel < width_pixels:
                block_col = pixel_block[pixel]
                block = block_row * block_cols + block_col
                left = col_edges[block_col]
                width = col_edges[block_col + 1] - left
                source_row, source_col = oriented_source(codes[planned, block], row - top,
                                                         pixel - left, height, width)
                step = COPY
                brightness = contrast = tone = 0.0
                table = tables[0, 0]
                if jittered:
                    brightness = jitter[planned, block, 0]
                    contrast = jitter[planned, block, 1]
                    tone = jitter[planned, block, 2]
                    step = jitter_step
                    if table_levels > 0 and height * width * channels > table_levels:
                        step = TABLE
                        table = tables[image, block]
                copy_run(source, out, image, source_map[planned, block], row,
                         pixel * channels, top + source_row, (left + source_col) * channels,
                         0, channels, 1, channels, step, table, offset, low, span, brightness,
                         contrast, tone)
                pixel += step_x
            row += step_y
        image += step_z


def _fill_tables(tables, levels, jitter, first, row_edges, col_edges, channels, low, span):
    """Fill the level table of every block with more values than levels, a block a thread."""
    start_x, start_y, start_z = cuda.grid(3)
    step_x, _, step_z = cuda.gridsize(3)
    block_cols = col_edges.size - 1
    if start_y != 0:  # y is not a dimension of this work
        return
    image = start_z
    while image < tables.shape[0]:
        block = start_x
        while block < tables.shape[1]:
            block_row = block // block_cols
            block_col = block - block_row * block_cols
            height = row_edges[block_row + 1] - row_edges[block_row]
            width = col_edges[block_col + 1] - col_edges[block_col]
            if height * width * channels > levels.size:
                fill_level_table(tables[image, block], levels, low, span,
                                 jitter[first + image, block, 0],
                                 jitter[first + image, block, 1],
                                 jitter[first + image, block, 2])
            block += step_x
        image += step_z


def _blur_rows(pixels, band_rows, lines, weights, radius, low, high, integer):
    """Seam blur pass 1, one value column of one image a thread (columns never interact)."""
    start_x, start_y, start_z = cuda.grid(3)
    step_x, step_y, step_z = cuda.gridsize(3)
    if start_y != 0:  # two threads on one column would race
        return
    thread = start_x + step_x * (start_y + step_y * start_z)
    scratch = lines[:, thread:thread + 1]  # threads side by side: coalesced
    image = start_z
    while image < pixels.shape[0]:
        unit = start_x
        while unit < pixels.shape[2]:
            blur_band_rows(pixels[:, :, unit:unit + 1], image, band_rows, scratch, weights,
                           radius, low, high, integer)
            unit += step_x
        image += step_z


def _blur_cols(pixels, band_cols, line, weights, radius, channels, low, high, integer):
    """Seam blur pass 2, one row of one image a thread (rows never interact)."""
    start_x, start_y, start_z = cuda.grid(3)
    step_x, step_y, step_z = cuda.gridsize(3)
    if start_x != 0:  # two threads on one row would race
        return
    scratch = line[:, start_x + step_x * (start_y + step_y * start_z)]  # coalesced
    image = start_z
    while image < pixels.shape[0]:
        row = start_y
        while row < pixels.shape[1]:
            blur_band_cols(pixels[:, row:row + 1, :], image, band_cols, scratch, weights,
                           radius, channels, low, high, integer)
            row += step_y
        image += step_z


_fill_jitter = njit(cache=True)(harden_body.fill_jitter)

_KERNELS = {"gather": _gather, "hardened_gather": _hardened_gather,
            "fill_tables": _fill_tables, "blur_rows": _blur_rows, "blur_cols": _blur_cols}


def _rounded_product(first, second):
    """``first * second`` rounded on its own (``mul.rn``): NVVM never fuses it into an FMA."""
    return libdevice.dmul_rn(first, second)


def device_bodies(module, bodies) -> dict:
    """Every function of the bodies module ``bodies`` as a device function of ``module``.

    Each is a copy of the body whose globals are a copy of the bodies module's, with every
    body replaced by its device function, so that bodies calling bodies compile. On a GPU,
    ``product`` (the products that must not be fused with an addition, see
    :mod:`fastmix.kernels.harden_body`) becomes ``mul.rn``; NVVM contracts a plain
    ``a * b + c`` into a fused multiply-add, which rounds once instead of twice.
    """
    namespace = dict(vars(bodies))
    device = module.jit(device=True)
    if simulated():  # the simulator runs device functions as Python; skip its wrapper
        def device(function):
            return function
    for name, function in vars(bodies).items():
        if isinstance(function, types.FunctionType) and function.__module__ == bodies.__name__:
            namespace[name] = device(types.FunctionType(
                function.__code__, namespace, name, function.__defaults__, function.__closure__))
    if "product" in namespace and not simulated():
        from numba.cuda import libdevice as device_library

        global libdevice
        libdevice = device_library
        namespace["product"] = device(_rounded_product)
    return namespace


libdevice = None


@cache
def _kernels():
    """Bind the shared bodies as device functions; the kernels compile on first launch."""
    global copy_row_segment, oriented_source, copy_run, fill_level_table
    global blur_band_rows, blur_band_cols
    module = _import_numba_cuda()
    copy_row_segment = device_bodies(module, body)["copy_row_segment"]
    hardening = device_bodies(module, harden_body)
    oriented_source = hardening["oriented_source"]
    copy_run = hardening["copy_run"]
    fill_level_table = hardening["fill_level_table"]
    blur_band_rows = hardening["blur_band_rows"]
    blur_band_cols = hardening["blur_band_cols"]
    return {name: module.jit(function) for name, function in _KERNELS.items()}


def _array(dtype, dimensions):
    return f"{dtype}[{', '.join([':'] * (dimensions - 1) + ['::1'])}]"


def _ptx_signatures() -> dict[str, list[str]]:
    """Return the argument types each kernel is launched with, for :func:`compile_ptx`."""
    tables = [_array("int32", 1)] * 2
    edges = [_array("int64", 1)] * 2
    signatures: dict[str, list[str]] = {"gather": [], "hardened_gather": [], "fill_tables": [],
                                        "blur_rows": [], "blur_cols": []}
    for word in ("uint8", "uint16", "uint32", "uint64"):
        signatures["gather"].append(
            f"void({_array(word, 3)}, {_array(word, 3)}, {_array('int32', 2)}, int64, "
            f"{', '.join(tables)})")
    for value in ("uint8", "uint16", "int32", "float32", "float64", "uint64"):
        signatures["hardened_gather"].append(
            f"void({_array(value, 3)}, {_array(value, 3)}, {_array('int32', 2)}, "
            f"{_array('uint8', 2)}, {_array('float64', 3)}, {_array(value, 3)}, int64, "
            f"{', '.join(tables)}, {', '.join(edges)}, int64, int64, int64, int64, float64, "
            "float64)")
        signatures["fill_tables"].append(
            f"void({_array(value, 3)}, {_array('float64', 1)}, {_array('float64', 3)}, int64, "
            f"{', '.join(edges)}, int64, float64, float64)")
        signatures["blur_rows"].append(
            f"void({_array(value, 3)}, {_array('int64', 1)}, {_array('float64', 2)}, "
            f"{_array('float64', 1)}, int64, float64, float64, boolean)")
        signatures["blur_cols"].append(
            f"void({_array(value, 3)}, {_array('int64', 1)}, {_array('float64', 2)}, "
            f"{_array('float64', 1)}, int64, int64, float64, float64, boolean)")
    return signatures


def compile_ptx(cc: tuple[int, int] = (9, 0)) -> dict[str, str]:
    """PTX of every kernel for the argument types it is launched with (no GPU needed).

    Used by the tests, so that a kernel the simulator accepts but NVVM rejects fails CI,
    and to check that the hardening arithmetic has no fused multiply-add.
    """
    module = _import_numba_cuda()
    from numba.cuda import dispatcher

    _kernels()
    # A device function compiles for the current device's compute capability; without a
    # GPU there is none, so name the one asked for while compiling.
    current_device = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: type("Device", (), {"compute_capability": cc})
    listing = {}
    try:
        for name, signatures in _ptx_signatures().items():
            for signature in signatures:
                ptx, _ = module.compile_ptx(_KERNELS[name], signature, cc=cc)
                listing[f"{name} {signature}"] = ptx
    finally:
        dispatcher.get_current_device = current_device
    return listing


# --- the backend protocol (see fastmix.backends) -----------------------------------------

NAME = "cuda"
LOCATION = "device"
# Host-to-device and device-to-host copies go through pinned buffers in pieces of about
# this many bytes, alternating two streams, so one piece's copy overlaps the next one's
# kernels.
COPY_PIECE_BYTES = 32 << 20


def available() -> bool:
    """Whether numba.cuda imports and sees a GPU (or runs its simulator); asked only here."""
    try:
        return bool(_import_numba_cuda().is_available())
    except Exception:
        return False


def unavailable_reason() -> str:
    """Why the backend cannot run here, and what to do (see :func:`available`)."""
    try:
        _import_numba_cuda()
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
        word_bounds = np.asarray(steps.col_edges) * pixel_bytes // word
        row_first, word_block = block_tables(np.asarray(steps.row_edges), word_bounds)
        self.word = word
        self.words_per_row = int(word_bounds[-1])
        self.row_first_block = module.to_device(row_first, stream=stream)
        self.word_block = module.to_device(word_block, stream=stream)
        if steps.hardened:
            rows = np.asarray(steps.row_edges)
            cols = np.asarray(steps.col_edges)
            row_block = np.repeat(np.arange(rows.size - 1, dtype=np.int32), np.diff(rows))
            pixel_block = np.repeat(np.arange(cols.size - 1, dtype=np.int32), np.diff(cols))
            self.row_block = module.to_device(row_block.astype(np.int32), stream=stream)
            self.pixel_block = module.to_device(pixel_block.astype(np.int32), stream=stream)
            self.row_edges = module.to_device(rows.astype(np.int64), stream=stream)
            self.col_edges = module.to_device(cols.astype(np.int64), stream=stream)
            self.levels = module.to_device(np.asarray(steps.levels, dtype=np.float64),
                                           stream=stream)
            self.band_rows = module.to_device(np.asarray(steps.band_rows, dtype=np.int64),
                                              stream=stream)
            self.band_cols = module.to_device(np.asarray(steps.band_cols, dtype=np.int64),
                                              stream=stream)
            self.weights = module.to_device(np.asarray(steps.weights, dtype=np.float64),
                                            stream=stream)
        self.height = height


def _pixel_bytes(steps) -> int:
    layout = steps.layout
    return int(layout.units * layout.unit_dtype.itemsize // int(steps.col_edges[-1]))


class DeviceWindow:
    """One window on the device: its pixels, its plan's arrays, the stream it is ready on."""

    def __init__(self, source, count: int, image_bytes: int, plan, steps, stream,
                 caller_array: DeviceArray | None):
        module = require_gpu()
        self.source = source  # (count, image_bytes) uint8 device view
        self.count = count
        self.image_bytes = image_bytes
        self.steps = steps
        self.stream = stream
        self.caller_array = caller_array
        self.source_map = module.to_device(np.ascontiguousarray(plan.source, dtype=np.int32),
                                           stream=stream)
        self.codes = self.jitter = None
        if steps.hardened:
            blocks = plan.source.shape[1]
            codes = plan.codes if getattr(plan, "codes", None) is not None else \
                np.zeros((count, blocks), dtype=np.uint8)
            jitter = np.zeros((0, 0, 3), dtype=np.float64)
            if getattr(plan, "jitter", None) is not None:  # plan rule 1: drawn in the plan
                jitter = plan.jitter
            elif getattr(plan, "jitter_seed", None) is not None:
                # Drawn on the host for the whole window, then copied (device memory is not
                # this backend's limit; the CPU backend draws per block as it computes).
                jitter = np.empty((count, blocks, 3), dtype=np.float64)
                _fill_jitter(jitter, np.uint64(plan.jitter_seed), 0, steps.jitter_tables)
            self.codes = module.to_device(np.ascontiguousarray(codes, dtype=np.uint8),
                                          stream=stream)
            self.jitter = module.to_device(np.ascontiguousarray(jitter, dtype=np.float64),
                                           stream=stream)


class _Buffers:
    """Pinned host buffers and device buffers, grown on demand and reused across windows."""

    def __init__(self) -> None:
        self.pinned: dict[str, np.ndarray] = {}
        self.device: dict[str, Any] = {}  # numba device arrays
        self.streams: list = []
        self.shapes: dict = {}
        self.last_use: dict = {}

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
    _kernels()
    count = len(images)
    if is_device_array(images):
        caller = DeviceArray(images)
        _check_device_window(caller)
        stream = caller_stream(_stream_override(), like=images)
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
    steps = window.steps
    count = last - first
    kernels = _kernels()
    source_pointer = _device_pointer(window.source)
    if not steps.hardened:
        layout = steps.layout
        pixel_bytes = _pixel_bytes(steps)
        segment = int(steps.col_edges[1] - steps.col_edges[0]) * pixel_bytes
        word = word_size(int(steps.col_edges[-1]) * pixel_bytes, segment, source_pointer,
                         out_pointer, layout.unit_dtype.itemsize)
        tables = _shape_tables(steps, word, stream)
        height, words = tables.height, tables.words_per_row
        source = _words(window.source, (window.count, height, words), word)
        out = _words(out_bytes, (count, height, words), word)
        blocks, threads = launch_geometry(count, height, words)
        kernels["gather"][blocks, threads, stream](source, out, window.source_map, first,
                                                   tables.row_first_block, tables.word_block)
        return
    value_dtype = np.dtype(steps.value_dtype)
    tables = _shape_tables(steps, value_dtype.itemsize, stream)
    height = tables.height
    values = int(steps.col_edges[-1]) * int(steps.channels)
    source = _typed(window.source, (window.count, height, values), value_dtype)
    out = _typed(out_bytes, (count, height, values), value_dtype)
    levels = int(np.asarray(steps.levels).size)
    blocks_per_image = window.source_map.shape[1]
    assert window.jitter is not None  # set on every hardened window
    jittered = window.jitter.shape[0] > 0
    if jittered and levels > 0:
        level_tables = _buffers.scratch(f"tables {slot}", (count, blocks_per_image, levels),
                                        value_dtype)
        grid, block = _small_geometry(count, 1, blocks_per_image)
        kernels["fill_tables"][grid, block, stream](
            level_tables, tables.levels, window.jitter, first, tables.row_edges,
            tables.col_edges, int(steps.channels), float(steps.low), float(steps.span))
    else:
        level_tables = _buffers.scratch(f"tables {slot}", (1, 1, 1), value_dtype)
    grid, block = launch_geometry(count, height, values // int(steps.channels))
    kernels["hardened_gather"][grid, block, stream](
        source, out, window.source_map, window.codes, window.jitter, level_tables, first,
        tables.row_block, tables.pixel_block, tables.row_edges, tables.col_edges,
        int(steps.channels), int(steps.jitter_step), levels,
        int(steps.low), float(steps.low), float(steps.span))
    blur_args = (float(steps.low), float(steps.high), bool(steps.blur_integer))
    if np.asarray(steps.band_rows).size:
        grid, block = _small_geometry(count, 1, values)
        lines = _buffers.scratch(f"lines {slot}", (tables.band_rows.size, _threads(grid, block)),
                                 np.float64)
        kernels["blur_rows"][grid, block, stream](out, tables.band_rows, lines, tables.weights,
                                                  int(steps.radius), *blur_args)
    if np.asarray(steps.band_cols).size:
        grid, block = _small_geometry(count, height, 1)
        line = _buffers.scratch(
            f"line {slot}", (tables.band_cols.size * int(steps.channels), _threads(grid, block)),
            np.float64)
        kernels["blur_cols"][grid, block, stream](out, tables.band_cols, line, tables.weights,
                                                  int(steps.radius), int(steps.channels),
                                                  *blur_args)


def _threads(grid, block) -> int:
    return int(np.prod(grid)) * int(np.prod(block))


def _small_geometry(count: int, height: int, width: int) -> tuple[tuple, tuple]:
    """Return a launch of at most about 2^19 threads (their scratch is per thread) over z, y, x."""
    if simulated():
        return SIMULATOR_GRID, SIMULATOR_BLOCK
    threads_x = min(max(width, 1), THREADS_PER_BLOCK)
    threads_y = max(1, min(height, THREADS_PER_BLOCK // threads_x))
    grid_x = min(-(-width // threads_x), 64)
    grid_y = min(-(-height // threads_y), 64)
    grid_z = max(1, min(count, (1 << 19) // (threads_x * threads_y * grid_x * grid_y) or 1))
    return (grid_x, grid_y, grid_z), (threads_x, threads_y, 1)


def _words(flat_bytes, shape, word: int):
    """``flat_bytes`` (a uint8 device array) seen as ``shape`` words of ``word`` bytes."""
    return _typed(flat_bytes, shape, word_dtype(word))


def _typed(flat_bytes, shape, dtype):
    if simulated():
        return type(flat_bytes)(np.asarray(flat_bytes._ary).reshape(-1).view(dtype).reshape(shape))
    return flat_bytes.reshape(flat_bytes.size).view(dtype).reshape(*shape)


_scope = threading.local()


def _stream_override():
    return getattr(_scope, "stream", None)


@contextmanager
def queue_on(stream) -> Iterator[None]:
    """Queue this thread's work on ``stream`` (see :func:`caller_stream`) inside the block."""
    before = _stream_override()
    _scope.stream = stream
    try:
        yield
    finally:
        _scope.stream = before
