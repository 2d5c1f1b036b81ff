"""CUDA arrays of any library, used in place: the interop every CUDA path shares.

Any object with ``__cuda_array_interface__`` (CuPy, PyTorch, Numba) or a CUDA DLPack capsule
is seen through :class:`DeviceArray` without a host copy; results are allocated by the
caller's own library (:func:`empty_like`) and work is queued on the caller's stream
(:func:`caller_stream`, :func:`queue_on`). :func:`fastmix.mix_array` checks its images here,
host or device alike (:func:`checked_images`); the cuda backend (:mod:`fastmix.kernels.cuda`)
computes on them.

``numba.cuda`` is imported on first use only (:func:`numba_cuda`), and
``cuda.is_available()`` is asked only by :func:`require_gpu`, when a CUDA array or the cuda
backend is asked for: ``import fastmix`` never probes for a GPU. Without numba-cuda or a
usable GPU, :func:`require_gpu` raises :class:`fastmix.BadInputError` (exit status 2 on the
command line).
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import numpy as np

from fastmix._optional import require
from fastmix.errors import BadInputError, BadInputTypeError

_DLPACK_CUDA_DEVICES = (2, 13)  # kDLCUDA, kDLCUDAManaged
_INSTALL = ("install numba-cuda with `{install}` (or `[cuda13]`, "
            "matching the driver's CUDA version), or use backend='cpu'")

_numba_cuda = None  # numba.cuda once loaded


def numba_cuda():
    """Return ``numba.cuda``, imported on first use; raise :class:`BadInputError` without it."""
    global _numba_cuda
    if _numba_cuda is None:
        _numba_cuda = require("numba.cuda", "cuda12", needed_by="backend='cuda'",
                              package="numba-cuda", advice=_INSTALL)
    return _numba_cuda


@cache
def _checked_numba_cuda():
    module = numba_cuda()
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
        interface = {"shape": tuple(shape), "typestr": np.dtype(f"u{size}").str,
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


_scope = threading.local()


def stream_override():
    """Return the stream :func:`queue_on` set for this thread (``None`` outside it)."""
    return getattr(_scope, "stream", None)


@contextmanager
def queue_on(stream) -> Iterator[None]:
    """Queue this thread's work on ``stream`` (see :func:`caller_stream`) inside the block."""
    before = stream_override()
    _scope.stream = stream
    try:
        yield
    finally:
        _scope.stream = before


# --- the images argument of mix_array, on the host or on a device -------------------

def check_images(images: object) -> np.ndarray:
    """Return ``images`` as an array of shape (N, H, W) or (N, H, W, C) of a fixed-size dtype."""
    if not isinstance(images, np.ndarray):
        raise BadInputTypeError(
            f"images must be a NumPy array of shape (N, H, W) or (N, H, W, C), got "
            f"{type(images).__name__}"
        )
    if images.ndim not in (3, 4):
        raise BadInputError(
            f"images must have shape (N, H, W) or (N, H, W, C), got {images.ndim} dimensions "
            f"{images.shape}"
        )
    if images.dtype.kind not in "biuf" or images.dtype.hasobject:
        raise BadInputTypeError(
            f"images must have a fixed-size numeric dtype (uint8, uint16, float32, ...), got "
            f"{images.dtype}"
        )
    if 0 in images.shape[1:]:
        raise BadInputError(f"images must not be empty, got shape {images.shape}")
    return images


def check_device_images(images: object) -> DeviceArray:
    """Return the CUDA array ``images`` (N, H, W[, C]), checked as :func:`check_images` checks."""
    array = DeviceArray(images)
    if len(array.shape) not in (3, 4):
        raise BadInputError(
            f"images must have shape (N, H, W) or (N, H, W, C), got {len(array.shape)} "
            f"dimensions {array.shape}"
        )
    if array.dtype.kind not in "biuf":
        raise BadInputTypeError(
            f"images must have a fixed-size numeric dtype (uint8, uint16, float32, ...), got "
            f"{array.dtype}"
        )
    if 0 in array.shape[1:]:
        raise BadInputError(f"images must not be empty, got shape {array.shape}")
    if not array.c_contiguous:
        raise BadInputError("CUDA images must be C-contiguous; call .contiguous() (PyTorch) or "
                            "cupy.ascontiguousarray first")
    return array


def checked_images(images: object) -> np.ndarray | DeviceArray:
    """Return ``images`` checked: a NumPy array, or a :class:`DeviceArray` seeing a CUDA array."""
    if is_device_array(images):
        return check_device_images(images)
    return check_images(images)
