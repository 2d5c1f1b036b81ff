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
from functools import cache

import numpy as np

from fastmix.errors import BadInputError, BadInputTypeError
from fastmix.kernels import body

THREADS_PER_BLOCK = 256
# Each simulated thread is a Python thread: the simulator gets a small launch, and the
# grid-stride loops cover the rest.
SIMULATOR_BLOCK = (4, 2, 1)
SIMULATOR_GRID = (2, 2, 2)
_WORDS = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}
_DLPACK_CUDA_DEVICES = (2, 13)  # kDLCUDA, kDLCUDAManaged
_INSTALL = ("install numba-cuda with `pip install 'fastmix[cuda12]'` (or `[cuda13]`, "
            "matching the driver's CUDA version), or use backend='cpu'")

cuda = None  # numba.cuda once loaded; the kernels below name it as a global


def _import_numba_cuda():
    global cuda
    if cuda is None:
        try:
            from numba import cuda as module
        except ImportError as error:
            raise BadInputError(f"backend='cuda' needs numba-cuda, which is not importable "
                                f"({error}); {_INSTALL}") from None
        cuda = module
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
    """The widest of 8, 4, 2, 1 bytes dividing the row and segment bytes and every pointer."""
    size = math.gcd(8, row_bytes, segment_bytes, *pointers)
    return max(width for width in _WORDS if size % width == 0)


def word_dtype(size: int) -> np.dtype:
    """The unsigned integer dtype of ``size`` bytes."""
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
    if hasattr(obj, "__cuda_array_interface__"):
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
        interface = getattr(obj, "__cuda_array_interface__", None)
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

    def words(self, shape: tuple[int, ...], size: int, start_byte: int = 0):
        """A Numba device view of the bytes from ``start_byte`` as ``shape`` words."""
        module = require_gpu()
        interface = {"shape": tuple(shape), "typestr": word_dtype(size).str,
                     "data": (self.pointer + start_byte, False), "strides": None,
                     "version": 3}
        if simulated():
            return _simulated_view(interface)
        return module.from_cuda_array_interface(interface, owner=self.obj, sync=False)


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
    view = StridedMemoryView.from_dlpack(obj, stream_ptr=-1 if stream_handle is None
                                         else stream_handle)
    itemsize = np.dtype(view.dtype).itemsize
    strides = None if view.strides is None else tuple(s * itemsize for s in view.strides)
    return {"shape": tuple(view.shape), "typestr": np.dtype(view.dtype).str,
            "data": (int(view.ptr), bool(view.readonly)), "strides": strides, "version": 3,
            "_view": view}


def _simulated_view(interface: dict):
    """The simulator's device memory is host memory: wrap it without copying."""
    from numba.cuda.simulator.cudadrv.devicearray import FakeCUDAArray

    holder = type("Interface", (), {"__array_interface__": {
        "shape": interface["shape"], "typestr": interface["typestr"],
        "data": interface["data"], "strides": interface["strides"], "version": 3}})()
    return FakeCUDAArray(np.asarray(holder))


def library_of(obj: object):
    """The module of the library that made ``obj`` (``torch``, ``cupy``, ...)."""
    return sys.modules.get(type(obj).__module__.partition(".")[0])


def empty_like(obj: object):
    """A new array like ``obj``, allocated by ``obj``'s own library (its ``empty_like``)."""
    library = library_of(obj)
    allocate = getattr(library, "empty_like", None)
    if allocate is None:
        raise BadInputTypeError(
            f"cannot allocate the result like a {type(obj).__module__}.{type(obj).__name__}: "
            "its library has no empty_like; pass out= (a CUDA array of the same shape and dtype)")
    return allocate(obj)


def caller_stream(stream: object = None, like: object = None):
    """The Numba stream to queue work on.

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

def _gather(source, out, source_map, row_first_block, word_block):
    """``out[i, row, word] = source[source_map[i, block], row, word]``, one word a thread."""
    start_x, start_y, start_z = cuda.grid(3)
    step_x, step_y, step_z = cuda.gridsize(3)
    for image in range(start_z, out.shape[0], step_z):
        for row in range(start_y, out.shape[1], step_y):
            first_block = row_first_block[row]
            for word in range(start_x, out.shape[2], step_x):
                copy_row_segment(source, out, image,
                                 source_map[image, first_block + word_block[word]],
                                 row, word, 1)


# The shared bodies as CUDA device functions, bound by _kernels() before any compile.
copy_row_segment = body.copy_row_segment


@cache
def _kernels():
    """Compile the shared bodies as device functions; the kernels compile on first launch."""
    global copy_row_segment
    module = _import_numba_cuda()
    device = module.jit(device=True)
    copy_row_segment = device(body.copy_row_segment)
    return {"gather": module.jit(_gather)}


PTX_SIGNATURES = {
    "gather": [f"void({word}[:, :, ::1], {word}[:, :, ::1], int32[:, ::1], int32[::1], "
               "int32[::1])" for word in ("uint8", "uint16", "uint32", "uint64")],
}


def compile_ptx(cc: tuple[int, int] = (9, 0)) -> dict[str, str]:
    """PTX of every kernel for every signature it is launched with (no GPU needed).

    Used by the tests, so that a kernel the simulator accepts but NVVM rejects fails CI.
    """
    module = _import_numba_cuda()
    from numba.cuda import dispatcher

    _kernels()
    # A device function compiles for the current device's compute capability; without a
    # GPU there is none, so name the one asked for while compiling.
    current_device = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: type("Device", (), {"compute_capability": cc})
    functions = {"gather": _gather}
    listing = {}
    try:
        for name, signatures in PTX_SIGNATURES.items():
            for signature in signatures:
                ptx, _ = module.compile_ptx(functions[name], signature, cc=cc)
                listing[f"{name} {signature}"] = ptx
    finally:
        dispatcher.get_current_device = current_device
    return listing


def gather_words(source, out, source_map, row_first_block, word_block, stream) -> None:
    """Launch the gather on device word views ``(n, H, words)`` (queued on ``stream``)."""
    blocks, threads = launch_geometry(*out.shape)
    _kernels()["gather"][blocks, threads, stream](source, out, source_map, row_first_block,
                                                  word_block)


def gather(source: np.ndarray, out: np.ndarray, source_map: np.ndarray,
           row_bounds: np.ndarray, col_bounds: np.ndarray, order: np.ndarray) -> None:
    """The CPU backend's ``gather`` on host arrays: copy to the device, gather, copy back.

    ``source`` and ``out`` are ``(n, H, units)`` unsigned views of host memory, as for
    :func:`fastmix.kernels.cpu.gather`; ``order`` only orders the CPU's work and is unused.
    """
    module = require_gpu()
    stream = module.stream()
    row_first, word_block = block_tables(row_bounds, col_bounds)
    device_source = module.to_device(np.ascontiguousarray(source), stream=stream)
    device_out = module.device_array(out.shape, dtype=out.dtype, stream=stream)
    gather_words(device_source, device_out,
                 module.to_device(np.ascontiguousarray(source_map, dtype=np.int32),
                                  stream=stream),
                 module.to_device(row_first, stream=stream),
                 module.to_device(word_block, stream=stream), stream)
    device_out.copy_to_host(out, stream=stream)
    stream.synchronize()
