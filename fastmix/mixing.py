"""In-memory mixing: :func:`mix_array` and :func:`unmix_array`.

One window at a time through :class:`fastmix.pipeline.Pipeline`, the same pipeline the store
engines run.
"""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict

import numpy as np

from fastmix import device_arrays
from fastmix.device_arrays import check_device_images, check_images  # noqa: F401 (re-exported)
from fastmix.errors import (
    BadInputError,
    BadInputTypeError,
    FastmixWarning,
    check_flag,
    check_integer,
)
from fastmix.kernels.steps import PixelLayout, steps_for
from fastmix.keys import Key
from fastmix.pipeline import Pipeline
from fastmix.plan import Plan, images_in_pairs, pairs_warning
from fastmix.plan.labels import encode_labels, validate_labels
from fastmix.plan.window_rule import fixed_windows, unpartnered_message, unpartnered_refusal
from fastmix.spec import MixSpec

#: The largest window index: :meth:`fastmix.Key.window_seed` hashes it as 8 bytes.
MAX_WINDOW_INDEX = 2**64 - 1


def _check_common(images, labels, spec, key, window):
    """Return the checked arguments, ``device`` the DeviceArray of CUDA images."""
    checked = device_arrays.checked_images(images)
    device = None
    if isinstance(checked, device_arrays.DeviceArray):
        device = checked
        if device_arrays.is_device_array(labels):
            labels = device_arrays.to_host(labels)
    else:
        images = checked
    labels = validate_labels(labels, checked.shape[0])
    if spec is None:
        spec = MixSpec()
    if not isinstance(spec, MixSpec):
        raise BadInputTypeError(f"spec must be a fastmix.MixSpec, got {type(spec).__name__}")
    if not isinstance(key, Key):
        raise BadInputTypeError(
            f"key must be a fastmix.Key (Key.generate() or Key.load(path)), got "
            f"{type(key).__name__}"
        )
    if window is not None:
        window = check_integer(window, "window", minimum=1, wording="a positive number of images")
    return images, device, labels, spec, window


def layout_for(images_shape: tuple[int, ...], dtype: np.dtype, spec: MixSpec) -> PixelLayout:
    """Return the plain gather's layout of images of ``images_shape`` (without the leading N).

    Raises :class:`BadInputError` when the spec (its hardening included) cannot run on them.
    """
    return steps_for(tuple(images_shape), dtype, spec).layout


def mix_window(images: np.ndarray, labels: np.ndarray, spec: MixSpec, key: Key,
               window_index: int, out: np.ndarray, *, inverse: bool = False,
               backend: str = "cpu", plan: Plan | None = None) -> Plan:
    """Mix (or, with ``inverse=True``, unmix) one window into ``out``; returns its plan.

    ``images`` and ``out`` are C-contiguous arrays of the same shape and dtype that do not
    overlap; ``labels`` holds the window's validated labels. One piece of
    :class:`fastmix.pipeline.Pipeline` covering the whole window.
    """
    window_index = check_integer(window_index, "window_index", maximum=MAX_WINDOW_INDEX)
    pipeline = Pipeline(images.shape[1:], images.dtype, spec, key, backend=backend,
                        inverse=inverse)
    return pipeline.mix_window(images, labels, window_index, out, plan=plan)


def _check_first_window(first_window: object, count: int, window: int | None) -> int:
    """Return ``first_window``, refused unless every window's index is a valid one."""
    first_window = check_integer(first_window, "first_window", maximum=MAX_WINDOW_INDEX)
    windows = -(-count // window) if window else 1
    if first_window + max(windows - 1, 0) > MAX_WINDOW_INDEX:
        raise BadInputError(
            f"first_window {first_window:,} leaves no room for the {windows:,} windows of "
            f"{count:,} images: window indices end at {MAX_WINDOW_INDEX:,}; give a smaller one"
        )
    return first_window


class PlanCache:
    """Pipelines and window plans kept between calls (:func:`fastmix.torch.mix_batch`'s).

    A pipeline (its per-run constants, and the backend's tables of them) is kept per image
    shape, dtype, spec, key and backend; a plan per pipeline, label codes and window index.
    A call with the same labels and window index (a training batch's step) then plans
    nothing, and the cuda backend copies nothing to the device but the pixels' work. A plan
    is a value of those inputs, so reuse never changes a byte. Least recently used entries
    go first; safe to share between threads.
    """

    def __init__(self, pipelines: int = 4, plans: int = 16):
        self._pipelines: OrderedDict[tuple, Pipeline] = OrderedDict()
        self._plans: OrderedDict[tuple, tuple[Pipeline, Plan]] = OrderedDict()
        self._sizes = (pipelines, plans)
        self._lock = threading.Lock()

    def pipeline(self, image_shape: tuple[int, ...], dtype: np.dtype, spec: MixSpec, key: Key,
                 backend: str, inverse: bool) -> Pipeline:
        """Return the kept pipeline of these arguments, made on first use."""
        name = (tuple(image_shape), np.dtype(dtype).str, spec.identity(), key, backend,
                inverse)
        with self._lock:
            pipeline = self._pipelines.get(name)
            if pipeline is not None:
                self._pipelines.move_to_end(name)
                return pipeline
        pipeline = Pipeline(image_shape, dtype, spec, key, backend=backend, inverse=inverse)
        with self._lock:
            self._pipelines[name] = pipeline
            while len(self._pipelines) > self._sizes[0]:
                self._pipelines.popitem(last=False)
        return pipeline

    def plan(self, pipeline: Pipeline, labels: np.ndarray, window_index: int) -> Plan:
        """Return the kept plan of one window of ``pipeline``, planned on first use."""
        name = (id(pipeline), encode_labels(labels).tobytes(), int(window_index))
        with self._lock:
            kept = self._plans.get(name)
            if kept is not None and kept[0] is pipeline:
                self._plans.move_to_end(name)
                return kept[1]
        plan = pipeline.plan(labels, window_index)
        with self._lock:
            self._plans[name] = (pipeline, plan)
            while len(self._plans) > self._sizes[1]:
                self._plans.popitem(last=False)
        return plan


def mix_cached(images, labels, spec: MixSpec | None, key: Key, cache: PlanCache, *,
               backend: str = "cpu", stream: object = None, strict: bool = False,
               first_window: int = 0):
    """:func:`mix_array` of one window, its pipeline and plan kept in ``cache``.

    The same checks and bytes as :func:`mix_array` (``window=None``); for callers that mix
    many batches of one shape (:func:`fastmix.torch.mix_batch`).
    """
    return _run(images, labels, spec, key, None, backend, None, strict, False, stream=stream,
                first_window=first_window, cache=cache)


def _pipeline(cache: PlanCache | None, image_shape, dtype, spec, key, backend,
              inverse) -> Pipeline:
    if cache is None:
        return Pipeline(image_shape, dtype, spec, key, backend=backend, inverse=inverse)
    return cache.pipeline(image_shape, dtype, spec, key, backend, inverse)


def _run(images, labels, spec, key, window, backend, out, strict, inverse, stream=None,
         first_window=0, cache=None):
    images, device, labels, spec, window = _check_common(images, labels, spec, key, window)
    strict = check_flag(strict, "strict")
    first_window = _check_first_window(first_window, len(labels), window)
    if inverse and spec.mode == "permute" and not spec.reversible:
        raise BadInputError(
            "this data was mixed with jitter/seam blur, which are one-way; it cannot be "
            "unmixed (only permute mode with orientation at most can be restored)"
        )
    if inverse and not spec.reversible:
        raise BadInputError(
            f"a spec in {spec.mode!r} mode cannot be unmixed: it is not reversible. Only "
            "permute mode can be restored with the key"
        )
    if device is not None:
        return _run_device(images, device, labels, spec, key, window, backend, out, strict,
                           inverse, stream, first_window, cache)
    if stream is not None:
        raise BadInputError("stream= applies to CUDA arrays (backend='cuda') only")
    if out is None:
        out = np.empty(images.shape, dtype=images.dtype)
    else:
        if not isinstance(out, np.ndarray) or out.shape != images.shape or \
                out.dtype != images.dtype:
            raise BadInputError(
                "out must be a NumPy array with the images' shape and dtype "
                f"{images.shape} {images.dtype}"
            )
        if not out.flags.c_contiguous:
            raise BadInputError("out must be C-contiguous; allocate it with np.empty")
        if not out.flags.writeable:
            raise BadInputError("out is read-only; pass a writable array (np.empty_like(images))")
        if np.may_share_memory(out, images):
            raise BadInputError("out must not overlap the input images; pass another buffer")
    images = np.ascontiguousarray(images)
    pipeline = _pipeline(cache, images.shape[1:], images.dtype, spec, key, backend, inverse)
    _windows(pipeline, images, labels, out, window, spec, strict, inverse, first_window,
             stacklevel=4, cache=cache)
    return out


def _run_device(images, array, labels, spec, key, window, backend, out, strict, inverse,
                stream, first_window, cache=None):
    """:func:`_run` for CUDA arrays, seen through ``array``: no host copy; the result is theirs."""
    pipeline = _pipeline(cache, array.shape[1:], array.dtype, spec, key, backend, inverse)
    if pipeline.backend.LOCATION != "device":
        raise BadInputError(
            f"images are CUDA arrays ({type(images).__module__}.{type(images).__name__}) but "
            f"backend={backend!r} computes in host memory; pass backend='cuda', or copy them to "
            "the host first (for PyTorch: .cpu().numpy())")
    if out is None:
        out = device_arrays.empty_like(images)
    elif not device_arrays.is_device_array(out):
        raise BadInputError("out must be a CUDA array like the images (same library, shape and "
                            "dtype)")
    target = device_arrays.DeviceArray(out)
    if target.shape != array.shape or target.dtype != array.dtype or not target.c_contiguous:
        raise BadInputError(
            f"out must be a C-contiguous CUDA array of shape {array.shape} and dtype "
            f"{array.dtype}, got {target.shape} {target.dtype}")
    if target.pointer < array.pointer + array.nbytes and \
            array.pointer < target.pointer + target.nbytes:
        raise BadInputError("out must not overlap the input images; pass another buffer")
    with device_arrays.queue_on(stream):
        _windows(pipeline, images, labels, out, window, spec, strict, inverse, first_window,
                 stacklevel=5, cache=cache)
    return out


def _windows(pipeline, images, labels, out, window, spec, strict, inverse, first_window,
             stacklevel, cache=None):
    """Mix ``images`` into ``out`` window by window, then warn (or refuse) as the spec says.

    ``stacklevel`` points the warnings at the caller of :func:`mix_array`; ``cache`` keeps
    the windows' plans (:class:`PlanCache`).
    """
    count = len(labels)
    window = window or max(count, 1)
    unpartnered = paired = 0
    for number, (start, stop) in enumerate(fixed_windows(count, window)):
        kept = None if cache is None else \
            cache.plan(pipeline, labels[start:stop], first_window + number)
        plan = pipeline.mix_window(images[start:stop], labels[start:stop],
                                   first_window + number, out[start:stop], plan=kept)
        unpartnered += plan.unpartnered
        paired += images_in_pairs(np.unique(labels[start:stop], return_counts=True)[1], spec)
    if inverse:
        return
    if strict and unpartnered:
        raise BadInputError(unpartnered_refusal(unpartnered))
    if strict and paired:
        raise BadInputError(pairs_warning(paired) + " (strict refuses them)")
    if paired:
        warnings.warn(pairs_warning(paired), FastmixWarning, stacklevel=stacklevel)
    if unpartnered:
        warnings.warn(unpartnered_message(unpartnered), FastmixWarning, stacklevel=stacklevel)


def mix_array(images: np.ndarray, labels: np.ndarray, spec: MixSpec | None, key: Key,
              window: int | None = None, backend: str = "cpu", out: np.ndarray | None = None,
              *, strict: bool = False, stream: object = None,
              first_window: int = 0) -> np.ndarray:
    """Mix pixel blocks between same-label images.

    Parameters
    ----------
    images : ndarray or CUDA array, shape (N, H, W) or (N, H, W, C)
        Images of any fixed-size numeric dtype, in either byte order (big-endian images are
        mixed as their native twins and returned big-endian, bit for bit). With
        ``backend="cuda"`` they may be a CUDA array of any library
        (``__cuda_array_interface__`` or DLPack: PyTorch, CuPy, ...), used in place with no
        host copy; a NumPy array is then copied to the GPU and back.
    labels : array-like, shape (N,)
        Integer or string labels (a CUDA array of integers is copied to the host). Float
        labels must be whole numbers within int64; labels that do not convert exactly (NaN,
        fractions, text mixed with numbers) are refused.
    spec : MixSpec or None
        Mixing parameters; ``None`` means ``MixSpec()``.
    key : Key
        The secret key; every random choice derives from it.
    window : int, optional
        Mix only within consecutive windows of this many images (as a store does). Default:
        one window of all images.
    backend : str
        Kernel backend: ``"cpu"`` (Numba) or ``"cuda"`` (numba.cuda; a clear error on a
        machine without a GPU).
    out : ndarray or CUDA array, optional
        Write into this C-contiguous array (same shape and dtype, not overlapping
        ``images``; a CUDA array for CUDA images) instead of allocating.
    strict : bool
        Raise instead of warning when some images have no same-label partner.
    stream : optional
        For CUDA images: the stream to queue the work on (a PyTorch, CuPy or Numba stream,
        or a raw handle). Default: the current stream of the images' library (PyTorch,
        CuPy), so the result is ordered with the caller's work without a synchronisation.
    first_window : int
        The index of the first window, which with the key seeds its plan (default 0, as a
        store's first window). :func:`fastmix.torch.mix_batch` passes the batch's step.
        An integer from 0; the last window's index may not pass ``2**64 - 1``.

    Raises
    ------
    BadInputError
        For a bad value: labels that do not convert exactly, a window or ``first_window``
        out of range, a read-only or mismatched ``out``, an unknown backend.
    BadInputTypeError
        For an argument of the wrong type (it is also a ``TypeError``).

    Returns
    -------
    ndarray or CUDA array
        The mixed images (``out`` when given): for CUDA images, an array of their own
        library, allocated by it (its ``empty_like``).
    """
    return _run(images, labels, spec, key, window, backend, out, strict, inverse=False,
                stream=stream, first_window=first_window)


def unmix_array(mixed: np.ndarray, labels: np.ndarray, spec: MixSpec | None, key: Key,
                window: int | None = None, backend: str = "cpu",
                out: np.ndarray | None = None, *, stream: object = None,
                first_window: int = 0) -> np.ndarray:
    """Restore images mixed by :func:`mix_array` in permute mode, bit for bit.

    Takes the same ``labels``, ``spec``, ``key``, ``window`` and ``first_window`` that mixed
    them; ``backend``, ``out`` and ``stream`` as for :func:`mix_array`.
    """
    return _run(mixed, labels, spec, key, window, backend, out, False, inverse=True,
                stream=stream, first_window=first_window)
