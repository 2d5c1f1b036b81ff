"""The keyed per-block hardening choices of one window, drawn with its source map.

Every choice is a pure function of the window seed (docs/format.md section 3) and the coordinates
(output image ``i`` local to the window, block ``b``), drawn with
:mod:`fastmix.plan.random` on streams of their own, so plans of unhardened specs never
change:

* orientation: ``code = bounded(derive(derive(derive(window_seed, STREAM_ORIENT), i), b),
  choices[b])`` where ``choices[b]`` is 8 (``d4`` on a square block), 4 (``flip``, or
  ``d4`` on a non-square block) or 1 (no orientation);
* jitter: block ``b`` of image ``i`` takes the entries of the run's jitter tables
  (:func:`fastmix.kernels.steps.jitter_tables`: brightness offsets, contrasts and tones)
  picked by three 8-bit fields of ``derive(derive(derive(window_seed, STREAM_JITTER), i),
  b)`` (:func:`fastmix.kernels.bodies.block_jitter`). The plan holds only the stream seed:
  a backend draws a block's parameters where it computes the block, so a window's plan
  needs no memory per block for them.

:func:`fastmix.plan.plan_window` calls :func:`draw_hardening` with the window seed of the
source map (one derivation per window).

Plan rule 1 (fastmix 0.1.0, see :data:`fastmix.spec.PLAN_RULES`) drew the jitter
differently, and its plans still do, so that the key still reproduces a 0.1.0 store
(``fastmix verify``): with ``x_t = derive(derive(derive(derive(window_seed, STREAM_JITTER),
i), b), t)`` and ``u_t = (x_t >> 11) * 2**-52 - 1``, the parameters ``u_0 * a_0``,
``exp(u_1 * a_1)`` and ``exp(u_2 * a_2)``, held in the plan per block (24 bytes a block,
and two ``exp`` a block, :func:`fastmix.kernels.steps.exact_exp`: the tables of rule 2 make
a draw one hash and three lookups, and a plan no larger than a plain one).

The per-run constants (the jitter tables these draws index, the seam blur's weights and
bands) are in :mod:`fastmix.kernels.steps`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastmix.kernels.steps import exact_exp_scalar
from fastmix.plan.random import bounded, derive, derive_seed
from fastmix.spec import MixSpec

STREAM_ORIENT = 1000
STREAM_JITTER = 1001
_SHIFT_11 = np.uint64(11)

# Inverse of each orientation code: mirrors are their own inverse, and a transpose followed
# by mirrors is undone by the transpose with the two mirrors exchanged.
INVERSE_CODE = np.array([0, 1, 2, 3, 4, 6, 5, 7], dtype=np.uint8)


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
                jitter[image, block, draw] = value if draw == 0 else exact_exp_scalar(value)


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
