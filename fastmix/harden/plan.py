"""The keyed per-block hardening choices of one window.

Every choice is a pure function of the window seed (SPEC section 3) and the coordinates
(output image ``i`` local to the window, block ``b``), drawn with
:mod:`fastmix.plan.random` on streams of their own, so plans of unhardened specs never
change:

* orientation: ``code = bounded(derive(derive(derive(window_seed, STREAM_ORIENT), i), b),
  choices[b])`` where ``choices[b]`` is 8 (``d4`` on a square block), 4 (``flip``, or
  ``d4`` on a non-square block) or 1 (no orientation);
* jitter: with ``x_t = derive(derive(derive(derive(window_seed, STREAM_JITTER), i), b), t)``
  and ``u_t = (x_t >> 11) * 2**-52 - 1`` (uniform in [-1, 1)), the block's brightness
  offset is ``u_0 * a_0``, its contrast ``exp(u_1 * a_1)`` and its tone ``exp(u_2 * a_2)``,
  for the spec's amplitudes ``(a_0, a_1, a_2)``.

``exp`` is :func:`exact_exp`, built from ``+ * /`` only, so the parameters are the same
bytes on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit

from fastmix.keys import Key
from fastmix.plan.random import bounded, derive, derive_seed
from fastmix.spec import MixSpec

STREAM_ORIENT = 1000
STREAM_JITTER = 1001
JITTER_DRAWS = 3

# Inverse of each orientation code: mirrors are their own inverse, and a transpose followed
# by mirrors is undone by the transpose with the two mirrors exchanged.
INVERSE_CODE = np.array([0, 1, 2, 3, 4, 6, 5, 7], dtype=np.uint8)


@dataclass(frozen=True)
class HardenPlan:
    """The hardening choices of one window, indexed ``[output image, block]``.

    Attributes
    ----------
    codes : ndarray of uint8
        Orientation code of each output block (0 = unchanged).
    brightness, contrast, tone : ndarray of float64 or None
        Jitter parameters of each output block; ``None`` without jitter.
    """

    codes: np.ndarray
    brightness: np.ndarray | None
    contrast: np.ndarray | None
    tone: np.ndarray | None


@njit(cache=True)
def _draws(stream_seed, count, block_count, draw_count):
    values = np.empty((count, block_count, draw_count), dtype=np.uint64)
    for image in range(count):
        image_seed = derive(stream_seed, image)
        for block in range(block_count):
            block_seed = derive(image_seed, block)
            for draw in range(draw_count):
                values[image, block, draw] = derive(block_seed, draw)
    return values


@njit(cache=True)
def _codes(draws, choices):
    count, block_count = draws.shape[0], draws.shape[1]
    codes = np.empty((count, block_count), dtype=np.uint8)
    for image in range(count):
        for block in range(block_count):
            codes[image, block] = bounded(draws[image, block, 0], choices[block])
    return codes


def exact_exp(values: np.ndarray) -> np.ndarray:
    """``exp`` from ``+ * /`` only: a Taylor series of ``z / 16``, squared four times.

    Relative error below 1e-13 for ``|z| <= 5``; identical bytes on every IEEE 754
    machine, unlike a platform's ``exp``.
    """
    reduced = np.asarray(values, dtype=np.float64) / 16.0
    term = np.ones_like(reduced)
    total = np.ones_like(reduced)
    for power in range(1, 18):
        term = term * reduced / float(power)
        total = total + term
    for _ in range(4):
        total = total * total
    return total


def orientation_choices(orient: str, row_bounds: np.ndarray, col_bounds: np.ndarray
                        ) -> np.ndarray:
    """Orientations allowed at each block position: 1, 4 (flips) or 8 (``d4``, square)."""
    heights = np.diff(row_bounds)
    widths = np.diff(col_bounds)
    square = (heights[:, None] == widths[None, :]).ravel()
    if orient == "none":
        return np.ones(square.size, dtype=np.int64)
    if orient == "flip":
        return np.full(square.size, 4, dtype=np.int64)
    return np.where(square, 8, 4).astype(np.int64)


def uniform_signed(draws: np.ndarray) -> np.ndarray:
    """Map 64-bit draws to floats uniform in [-1, 1), exactly."""
    return (draws >> np.uint64(11)).astype(np.float64) * 2.0**-52 - 1.0


def plan_hardening(spec: MixSpec, key: Key, window_index: int, count: int,
                   row_bounds: np.ndarray, col_bounds: np.ndarray) -> HardenPlan:
    """Draw the orientation codes and jitter parameters of one window.

    Parameters
    ----------
    spec : MixSpec
        The mixing parameters (with their hardening options).
    key : Key
        The secret key.
    window_index : int
        Index of the window in the store.
    count : int
        Images in the window.
    row_bounds, col_bounds : ndarray of int64
        Block edges in pixels.

    Returns
    -------
    HardenPlan
    """
    window_seed = key.window_seed(spec.canonical(), window_index)
    block_count = (row_bounds.size - 1) * (col_bounds.size - 1)
    choices = orientation_choices(spec.orient, row_bounds, col_bounds)
    if spec.orient == "none":
        codes = np.zeros((count, block_count), dtype=np.uint8)
    else:
        draws = _draws(derive_seed(window_seed, STREAM_ORIENT), count, block_count, 1)
        codes = _codes(draws, choices)
    if spec.jitter is None:
        return HardenPlan(codes, None, None, None)
    draws = _draws(derive_seed(window_seed, STREAM_JITTER), count, block_count, JITTER_DRAWS)
    uniform = uniform_signed(draws)
    brightness_amplitude, contrast_amplitude, tone_amplitude = spec.jitter
    return HardenPlan(
        codes,
        np.ascontiguousarray(uniform[:, :, 0] * brightness_amplitude),
        np.ascontiguousarray(exact_exp(uniform[:, :, 1] * contrast_amplitude)),
        np.ascontiguousarray(exact_exp(uniform[:, :, 2] * tone_amplitude)),
    )


def blur_weights(sigma: float) -> np.ndarray:
    """Normalised Gaussian weights ``k = -radius..radius``, ``radius = ceil(3 sigma)``.

    ``g_k = exact_exp(-k**2 / (2 sigma**2))``, divided by their sum taken in ascending
    ``k``.
    """
    radius = math.ceil(3 * sigma)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    gaussian = exact_exp(-(offsets * offsets) / (2.0 * sigma * sigma))
    total = 0.0
    for value in gaussian.tolist():
        total = total + value
    return gaussian / total


def seam_band(bounds: np.ndarray, sigma: float) -> np.ndarray:
    """Rows (or columns) within ``ceil(sigma)`` pixels of an internal seam.

    A seam at edge ``s`` (the first row of a block) covers ``s - w .. s + w - 1`` with
    ``w = ceil(sigma)``, clipped to the image.
    """
    half_width = math.ceil(sigma)
    size = int(bounds[-1])
    band = np.zeros(size, dtype=bool)
    for seam in bounds[1:-1].tolist():
        band[max(seam - half_width, 0):min(seam + half_width, size)] = True
    return np.flatnonzero(band).astype(np.int64)
