"""The Numba CPU backend (:mod:`fastmix.kernels.cpu.backend`) and its uint8 vector code.

:mod:`~fastmix.kernels.cpu.x86` holds the AVX-512 VBMI lookups and small-block orientation
(compiled only where the CPU has them), :mod:`~fastmix.kernels.cpu.vectors` the
vertical-seam blur in plain LLVM vector operations. The backend's functions are re-exported
here.
"""

from fastmix.kernels.cpu.backend import (
    FIXED_SEGMENT_BYTES,
    LOCATION,
    MAX_FIXED_SEGMENT,
    NAME,
    available,
    gather,
    gather_kernel,
    hardened_gather,
    hardened_kernel,
    hardened_kernels,
    load_window,
    mix_piece,
    plain_gather_for,
    streaming_threads,
)

__all__ = ["FIXED_SEGMENT_BYTES", "LOCATION", "MAX_FIXED_SEGMENT", "NAME", "available",
           "gather", "gather_kernel", "hardened_gather", "hardened_kernel", "hardened_kernels",
           "load_window", "mix_piece", "plain_gather_for", "streaming_threads"]
