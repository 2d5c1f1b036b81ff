"""The Numba CPU backend (:mod:`fastmix.kernels.cpu.backend`) and its uint8 vector code.

:mod:`~fastmix.kernels.cpu.x86` holds the AVX-512 VBMI lookups and small-block orientation
(compiled only where the CPU has them), :mod:`~fastmix.kernels.cpu.vectors` the
vertical-seam blur in plain LLVM vector operations. The backend's functions are re-exported
here.
"""

from fastmix.kernels.cpu.backend import (
    LOCATION,
    NAME,
    available,
    gather,
    hardened_gather,
    hardened_kernel,
    hardened_kernels,
    load_window,
    mix_piece,
    streaming_threads,
)

__all__ = ["LOCATION", "NAME", "available", "gather", "hardened_gather", "hardened_kernel",
           "hardened_kernels", "load_window", "mix_piece", "streaming_threads"]
