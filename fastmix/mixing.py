"""In-memory mixing: :func:`mix_array` and :func:`unmix_array`, one window at a time through
:class:`fastmix.pipeline.Pipeline` (the same pipeline the store engines run)."""

from __future__ import annotations

import warnings

import numpy as np

from fastmix.errors import BadInputError, BadInputTypeError, FastmixWarning
from fastmix.kernels.layout import PixelLayout
from fastmix.keys import Key
from fastmix.pipeline import Pipeline, steps_for
from fastmix.plan import Plan, images_in_pairs, pairs_warning
from fastmix.plan.labels import validate_labels
from fastmix.plan.windows import fixed_windows, unpartnered_message, unpartnered_refusal
from fastmix.spec import MixSpec


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


def _check_common(images, labels, spec, key, window):
    images = check_images(images)
    labels = validate_labels(labels, len(images))
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
        if isinstance(window, bool) or not isinstance(window, int | np.integer) or window < 1:
            raise BadInputError(f"window must be a positive number of images, got {window!r}")
        window = int(window)
    return images, labels, spec, window


def layout_for(images_shape: tuple[int, ...], dtype: np.dtype, spec: MixSpec) -> PixelLayout:
    """The plain gather's layout of images of ``images_shape`` (without the leading N).

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
    pipeline = Pipeline(images.shape[1:], images.dtype, spec, key, backend=backend,
                        inverse=inverse)
    return pipeline.mix_window(images, labels, window_index, out, plan=plan)


def _run(images, labels, spec, key, window, backend, out, strict, inverse):
    images, labels, spec, window = _check_common(images, labels, spec, key, window)
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
        if np.may_share_memory(out, images):
            raise BadInputError("out must not overlap the input images; pass another buffer")
    images = np.ascontiguousarray(images)
    count = len(images)
    window = window or max(count, 1)
    pipeline = Pipeline(images.shape[1:], images.dtype, spec, key, backend=backend,
                        inverse=inverse)
    unpartnered = paired = 0
    for window_index, (start, stop) in enumerate(fixed_windows(count, window)):
        plan = pipeline.mix_window(images[start:stop], labels[start:stop], window_index,
                                   out[start:stop])
        unpartnered += plan.unpartnered
        paired += images_in_pairs(np.unique(labels[start:stop], return_counts=True)[1], spec)
    if inverse:
        return out
    if strict and unpartnered:
        raise BadInputError(unpartnered_refusal(unpartnered))
    if strict and paired:
        raise BadInputError(pairs_warning(paired) + " (strict refuses them)")
    if paired:
        warnings.warn(pairs_warning(paired), FastmixWarning, stacklevel=3)
    if unpartnered:
        warnings.warn(unpartnered_message(unpartnered), FastmixWarning, stacklevel=3)
    return out


def mix_array(images: np.ndarray, labels: np.ndarray, spec: MixSpec | None, key: Key,
              window: int | None = None, backend: str = "cpu", out: np.ndarray | None = None,
              *, strict: bool = False) -> np.ndarray:
    """Mix pixel blocks between same-label images.

    Parameters
    ----------
    images : ndarray, shape (N, H, W) or (N, H, W, C)
        Images of any fixed-size numeric dtype.
    labels : array-like, shape (N,)
        Integer or string labels.
    spec : MixSpec or None
        Mixing parameters; ``None`` means ``MixSpec()``.
    key : Key
        The secret key; every random choice derives from it.
    window : int, optional
        Mix only within consecutive windows of this many images (as a store does). Default:
        one window of all images.
    backend : str
        Kernel backend, ``"cpu"``.
    out : ndarray, optional
        Write into this C-contiguous array (same shape and dtype, not overlapping
        ``images``) instead of allocating.
    strict : bool
        Raise instead of warning when some images have no same-label partner.

    Returns
    -------
    ndarray
        The mixed images (``out`` when given).
    """
    return _run(images, labels, spec, key, window, backend, out, strict, inverse=False)


def unmix_array(mixed: np.ndarray, labels: np.ndarray, spec: MixSpec | None, key: Key,
                window: int | None = None, backend: str = "cpu",
                out: np.ndarray | None = None) -> np.ndarray:
    """Restore images mixed by :func:`mix_array` in permute mode, bit for bit.

    Takes the same ``labels``, ``spec``, ``key`` and ``window`` that mixed them.
    """
    return _run(mixed, labels, spec, key, window, backend, out, False, inverse=True)
