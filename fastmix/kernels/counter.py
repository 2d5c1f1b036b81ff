"""The arithmetic of the counter-based generator, for every Numba target.

The definitions are in :mod:`fastmix.plan.random`, which compiles these bodies for
planning; a kernel that draws where it computes (the jitter, see
:func:`fastmix.kernels.harden_body.block_jitter`) compiles the same bodies, so a draw is
the same 64 bits in planning, in a CPU kernel and in a CUDA one.
"""

import numpy as np
from numba.extending import register_jitable

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MULTIPLIER_1 = np.uint64(0xBF58476D1CE4E5B9)
_MULTIPLIER_2 = np.uint64(0x94D049BB133111EB)
_SHIFT_30 = np.uint64(30)
_SHIFT_27 = np.uint64(27)
_SHIFT_31 = np.uint64(31)
_ONE = np.uint64(1)


@register_jitable(_nrt=False, inline="always")
def mix64(z):
    """Return the SplitMix64 finalizer of ``z`` (uint64, wrapping)."""
    z = (z ^ (z >> _SHIFT_30)) * _MULTIPLIER_1
    z = (z ^ (z >> _SHIFT_27)) * _MULTIPLIER_2
    return z ^ (z >> _SHIFT_31)


@register_jitable(_nrt=False, inline="always")
def derive(seed, value):
    """Return the seed of child ``value`` of ``seed`` (a counter-based stream)."""
    return mix64(seed + (np.uint64(value) + _ONE) * GOLDEN)
