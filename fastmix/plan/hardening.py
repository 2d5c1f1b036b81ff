"""The keyed per-block hardening choices of one window, drawn with its source map.

Every choice is a pure function of the window seed (docs/format.md section 3) and the coordinates
(output image ``i`` local to the window, block ``b``), drawn with
:mod:`fastmix.plan.random` on streams of their own, so plans of unhardened specs never
change:

* orientation: ``code = bounded(derive(derive(derive(window_seed, STREAM_ORIENT), i), b),
  choices[b])`` where ``choices[b]`` is 8 (``d4`` on a square block), 4 (``flip``, or
  ``d4`` on a non-square block) or 1 (no orientation);
* jitter: ``u(k) = (2k + 1) / 256 - 1`` for ``k`` in ``0..255`` (the midpoints of 256
  equal steps of [-1, 1]); the tables of :func:`jitter_tables` hold, for the spec's
  amplitudes ``(a_0, a_1, a_2)``, the brightness offsets ``u(k) * a_0``, the contrasts
  ``exp(u(k) * a_1)`` and the tones ``exp(u(k) * a_2)``. Block ``b`` of image ``i`` takes
  the entries picked by three 8-bit fields of ``derive(derive(derive(window_seed,
  STREAM_JITTER), i), b)`` (:func:`fastmix.kernels.bodies.block_jitter`). The plan
  holds only the stream seed: a backend draws a block's parameters where it computes the
  block, so a window's plan needs no memory per block for them.

``exp`` is :func:`exact_exp`, built from ``+ * /`` only, so the parameters are the same
bytes on every machine. :func:`fastmix.plan.plan_window` calls :func:`draw_hardening` with
the window seed of the source map (one derivation per window).

Plan rule 1 (fastmix 0.1.0, see :data:`fastmix.spec.PLAN_RULES`) drew the jitter
differently, and its plans still do, so that the key still reproduces a 0.1.0 store
(``fastmix verify``): with ``x_t = derive(derive(derive(derive(window_seed, STREAM_JITTER),
i), b), t)`` and ``u_t = (x_t >> 11) * 2**-52 - 1``, the parameters ``u_0 * a_0``,
``exp(u_1 * a_1)`` and ``exp(u_2 * a_2)``, held in the plan per block (24 bytes a block,
and two ``exact_exp`` a block: the tables of rule 2 make a draw one hash and three lookups,
and a plan no larger than a plain one).

This module also holds the constants of the later steps (:func:`blur_weights`,
:func:`seam_band`) and the dtypes they accept (:func:`value_range`).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from fastmix.errors import BadInputError
from fastmix.kernels.bodies import JITTER_LEVELS
from fastmix.plan.random import bounded, derive, derive_seed
from fastmix.spec import MixSpec

STREAM_ORIENT = 1000
STREAM_JITTER = 1001
_SHIFT_11 = np.uint64(11)

# Inverse of each orientation code: mirrors are their own inverse, and a transpose followed
# by mirrors is undone by the transpose with the two mirrors exchanged.
INVERSE_CODE = np.array([0, 1, 2, 3, 4, 6, 5, 7], dtype=np.uint8)


@njit(inline="always", cache=True)
def _exact_exp(z):
    reduced = z / 16.0
    term = 1.0
    total = 1.0
    for power in range(1, 18):
        term = term * reduced / float(power)
        total = total + term
    for _ in range(4):
        total = total * total
    return total


@njit(parallel=True, cache=True)
def _orientation_codes(stream_seed, count, choices, codes):
    for image in prange(count):
        image_seed = derive(stream_seed, image)
        for block in range(choices.size):
            codes[image, block] = bounded(derive(derive(image_seed, block), 0), choices[block])


@njit(parallel=True, cache=True)
def _jitter_parameters_rule_1(stream_seed, count, block_count, amplitudes, jitter):
    for image in prange(count):
        image_seed = derive(stream_seed, image)
        for block in range(block_count):
            block_seed = derive(image_seed, block)
            for draw in range(3):
                uniform = float(derive(block_seed, draw) >> _SHIFT_11) * 2.0**-52 - 1.0
                value = uniform * amplitudes[draw]
                jitter[image, block, draw] = value if draw == 0 else _exact_exp(value)


def exact_exp(values: np.ndarray) -> np.ndarray:
    """``exp`` from ``+ * /`` only: a Taylor series of ``z / 16``, squared four times.

    Relative error below 1e-13 for ``|z| <= 5``; identical bytes on every IEEE 754
    machine, unlike a platform's ``exp``.
    """
    # The jitted scalar's own Python body, run on arrays: the same operations in the same
    # order, element by element, so the same bytes.
    return np.asarray(_exact_exp.py_func(np.asarray(values, dtype=np.float64)),
                      dtype=np.float64)


def jitter_tables(amplitudes: tuple[float, float, float]) -> np.ndarray:
    """Return the jitter parameters a draw can pick: ``(3, 256)`` float64 (module text).

    Row 0: brightness offsets ``u * a_0``; rows 1 and 2: contrasts ``exact_exp(u * a_1)``
    and tones ``exact_exp(u * a_2)``, for ``u = (2k + 1) / 256 - 1``.
    """
    steps = (2.0 * np.arange(JITTER_LEVELS, dtype=np.float64) + 1.0) / JITTER_LEVELS - 1.0
    brightness, contrast, tone = (float(value) for value in amplitudes)
    return np.stack([steps * brightness, exact_exp(steps * contrast),
                     exact_exp(steps * tone)])


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


def draw_hardening(spec: MixSpec, window_seed: int, count: int, row_edges: np.ndarray,
                   col_edges: np.ndarray
                   ) -> tuple[np.ndarray | None, np.uint64 | None, np.ndarray | None]:
    """Draw the orientation codes of one window, and its jitter stream.

    Parameters
    ----------
    spec : MixSpec
        The mixing parameters (with their hardening options and plan rule).
    window_seed : int
        The window's seed (:meth:`fastmix.Key.window_seed`), the one the source map uses.
    count : int
        Images in the window.
    row_edges, col_edges : ndarray of int64
        Block edges in pixels.

    Returns
    -------
    codes : ndarray of uint8, shape (count, blocks), or None
        Orientation code of each output block; ``None`` without orientation.
    jitter_seed : numpy.uint64 or None
        ``derive(window_seed, STREAM_JITTER)``, from which a backend draws each block's
        jitter (:func:`fastmix.kernels.bodies.block_jitter`); ``None`` without jitter
        or under plan rule 1.
    jitter : ndarray of float64, shape (count, blocks, 3), or None
        Plan rule 1 only: each block's brightness offset, contrast and tone.
    """
    seed = np.uint64(window_seed)
    block_count = (row_edges.size - 1) * (col_edges.size - 1)
    codes = jitter_seed = jitter = None
    if spec.orient != "none":
        codes = np.empty((count, block_count), dtype=np.uint8)
        _orientation_codes(derive_seed(seed, STREAM_ORIENT), count,
                           orientation_choices(spec.orient, row_edges, col_edges), codes)
    if spec.jitter is not None and spec.plan_rule == 1:
        jitter = np.empty((count, block_count, 3), dtype=np.float64)
        _jitter_parameters_rule_1(derive_seed(seed, STREAM_JITTER), count, block_count,
                                  np.asarray(spec.jitter, dtype=np.float64), jitter)
    elif spec.jitter is not None:
        jitter_seed = derive_seed(seed, STREAM_JITTER)
    return codes, jitter_seed, jitter


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
