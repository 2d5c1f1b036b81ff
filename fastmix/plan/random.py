"""Counter-based random numbers, identical in Numba, numba.cuda and plain Python.

Every draw is a pure function of the window seed and a few integer coordinates, so a
result never depends on thread count, iteration order or backend. The definitions (all
arithmetic modulo 2**64):

* ``mix64(z)``: the SplitMix64 finaliser.
* ``derive(seed, value) = mix64(seed + (value + 1) * GOLDEN)``.
* stream seed: ``derive(window_seed, stream)``; item seed: ``derive(stream_seed, item)``;
  draw ``t`` of an item: ``derive(item_seed, t)``.
* ``bounded(x, n) = ((x >> 32) * n) >> 32``: an integer in ``[0, n)`` for ``n < 2**32``.
* a coin with probability ``p`` is heads when ``(x >> 11) < threshold(p)``, where
  ``threshold(p) = round(p * 2**53)``.

``tests/naive.py`` re-implements these with Python integers as the oracle.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fastmix.kernels import bodies

GOLDEN = bodies.GOLDEN
_SHIFT_32 = np.uint64(32)
_SHIFT_11 = np.uint64(11)

# Stream numbers. Each round r uses ROUND_STRIDE * r + one of these.
ROUND_STRIDE = 8
STREAM_SHUFFLE = 0
STREAM_PERMUTE = 1
STREAM_DONORS = 2
STREAM_BLOCKS = 3


#: ``mix64(z)`` and ``derive(seed, value)``: the bodies of :mod:`fastmix.kernels.bodies`,
#: compiled for planning (kernels compile the same bodies).
mix64 = njit(inline="always", cache=True)(bodies.mix64)
derive = njit(inline="always", cache=True)(bodies.derive)


@njit(inline="always", cache=True)
def bounded(x, n):
    """Return an integer in ``[0, n)`` from the high 32 bits of ``x`` (Lemire's method)."""
    return np.int64(((x >> _SHIFT_32) * np.uint64(n)) >> _SHIFT_32)


@njit(inline="always", cache=True)
def coin(x, threshold):
    """Return whether the 53-bit draw of ``x`` is below ``threshold`` (see ``coin_threshold``)."""
    return (x >> _SHIFT_11) < threshold


def coin_threshold(prob: float) -> np.uint64:
    """Return the integer threshold of a coin that lands heads with probability ``prob``."""
    return np.uint64(round(prob * 2**53))


def derive_seed(seed: int | np.integer, value: int) -> np.uint64:
    """``derive`` for Python callers (stream seeds)."""
    return np.uint64(derive(np.uint64(seed), np.uint64(value)))
