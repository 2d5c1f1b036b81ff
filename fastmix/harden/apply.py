"""Run the hardening of one window: oriented gather, then jitter, then seam blur.

Definitions (every backend computes exactly these bytes):

oriented gather
    ``out[i, block b] = orient(in[source[i, b], block b], code[i, b])`` with the codes of
    :mod:`fastmix.kernels.harden_body`. Unmixing gathers with the inverse source map and
    the inverse codes, so permute + orientation stays exact.
jitter
    Per block, with the parameters of :func:`fastmix.harden.plan.plan_hardening`, every
    pixel value ``x`` (every channel alike) becomes, in float64 with each operation rounded
    as IEEE 754 does: ``v = (x - low) / span`` for integer dtypes (``low`` and ``span`` the
    dtype's minimum and range), or ``v = clip(x, 0, 1)`` for float dtypes (float images
    are taken to be in [0, 1]); ``t = v / (v + tone * (1 - v))`` (a gamma-like tone curve
    made of ``+ - * /`` only); ``y = clip((t - 0.5) * contrast + 0.5 + brightness, 0, 1)``;
    stored as ``rint(y * span) + low`` (round half to even) for integers, or cast to the
    float dtype.
seam blur
    With ``w = ceil(sigma)``, radius ``R = ceil(3 sigma)`` and the normalised weights of
    :func:`fastmix.harden.plan.blur_weights`: pass 1 replaces every pixel of the rows within
    ``w`` of an internal horizontal seam by ``sum_k weight[k] * M[clamp(r + k - R), c]``
    read from the image ``M`` before the pass; pass 2 does the same along the row for every
    pixel of the columns near a vertical seam, reading the result of pass 1. Sums run in
    ascending ``k`` in float64; each pass stores its values in the dtype (integers rounded
    half to even and clipped).

Every output block is hardened, including blocks that stay in place (``prob < 1``) and
images without a same-label partner, so no block is left recognisably untouched. Jitter and
seam blur are one-way (rounding, clipping, smoothing).
"""

from __future__ import annotations

import importlib

import numpy as np

from fastmix.errors import BadInputError
from fastmix.harden.plan import (
    INVERSE_CODE,
    HardenPlan,
    blur_weights,
    plan_hardening,
    seam_band,
)
from fastmix.kernels.layout import block_edges
from fastmix.keys import Key
from fastmix.plan import Plan
from fastmix.spec import MixSpec

_KERNELS = {"cpu": "fastmix.kernels.harden_cpu"}
_UNSIGNED = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}


def _kernels(backend: str):
    try:
        return importlib.import_module(_KERNELS[backend])
    except KeyError:
        raise BadInputError(
            f"hardening (orient, jitter, seam_blur) runs on the backends "
            f"{', '.join(_KERNELS)} only, got {backend!r}"
        ) from None


def pixel_view(images: np.ndarray) -> np.ndarray:
    """``(n, H, W, units)`` view of whole pixels as the widest unsigned unit that fits."""
    count, height, width = images.shape[:3]
    pixel_bytes = images.dtype.itemsize * int(np.prod(images.shape[3:], dtype=np.int64))
    unit = max(size for size in _UNSIGNED if pixel_bytes % size == 0)
    return images.view(np.uint8).reshape(count, height, width, pixel_bytes).view(
        _UNSIGNED[unit])


def value_view(images: np.ndarray) -> np.ndarray:
    """``(n, H, W, C)`` view of the pixel values (``C = 1`` for grey images)."""
    return images.reshape(images.shape[0], images.shape[1], images.shape[2], -1)


def value_range(dtype: np.dtype, what: str) -> tuple[float, float, bool]:
    """``(low, high, integer)`` of a dtype that jitter and seam blur can compute on."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui" and dtype.itemsize <= 4:
        info = np.iinfo(dtype)
        return float(info.min), float(info.max), True
    if dtype.kind == "f" and dtype.itemsize >= 4:
        return 0.0, 1.0, False
    raise BadInputError(
        f"{what} works on integer images up to 32 bits and float32/float64 images, got "
        f"{dtype}; convert the images (for example to uint8 or float32) or drop {what}"
    )


def check_hardening_dtype(spec: MixSpec, dtype: np.dtype) -> None:
    """Raise :class:`BadInputError` if ``spec``'s hardening cannot run on ``dtype``."""
    if spec.jitter is not None:
        value_range(dtype, "jitter")
    if spec.seam_blur > 0:
        value_range(dtype, "seam blur")


def mix_window_hardened(images: np.ndarray, out: np.ndarray, plan: Plan, spec: MixSpec,
                        key: Key, window_index: int, *, inverse: bool = False,
                        backend: str = "cpu") -> HardenPlan:
    """Gather one window with orientation, then jitter and seam blur ``out`` in place.

    ``images`` and ``out`` are C-contiguous ``(n, H, W[, C])`` arrays that do not overlap;
    ``plan`` is the window's plan. With ``inverse=True`` the oriented gather is undone
    (permute + orientation only). Returns the window's hardening plan.
    """
    kernels = _kernels(backend)
    if inverse and not spec.reversible:
        raise BadInputError(
            "this data was mixed with jitter/seam blur, which are one-way; it cannot be unmixed"
        )
    height, width = images.shape[1], images.shape[2]
    row_bounds, col_bounds = block_edges(height, width, spec.block_shape(height, width))
    harden = plan_hardening(spec, key, window_index, len(images), row_bounds, col_bounds)
    if inverse:
        source_map = plan.inverse()
        codes = np.ascontiguousarray(
            INVERSE_CODE[np.take_along_axis(harden.codes, source_map.astype(np.int64), axis=0)])
    else:
        source_map, codes = plan.source, harden.codes
    kernels.oriented_gather(pixel_view(images), pixel_view(out), source_map, codes,
                            row_bounds, col_bounds, plan.order)
    if inverse:
        return harden
    values = value_view(out)
    if harden.brightness is not None:
        low, high, integer = value_range(out.dtype, "jitter")
        kernels.jitter(values, harden.brightness, harden.contrast, harden.tone, row_bounds,
                       col_bounds, low, high - low, integer)
    if spec.seam_blur > 0:
        low, high, integer = value_range(out.dtype, "seam blur")
        weights = blur_weights(spec.seam_blur)
        kernels.seam_blur(values, seam_band(row_bounds, spec.seam_blur),
                          seam_band(col_bounds, spec.seam_blur), weights,
                          (weights.size - 1) // 2, low, high, integer)
    return harden
