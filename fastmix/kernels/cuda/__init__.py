"""The numba.cuda backend: :mod:`~fastmix.kernels.cuda.backend` and its kernels.

:mod:`~fastmix.kernels.cuda.kernels` holds the ``numba.cuda`` kernels and their PTX compile
(:func:`compile_ptx`); :mod:`~fastmix.kernels.cuda.backend` implements the backend protocol
of :mod:`fastmix.backends` with them. Both import ``numba.cuda`` on first use only
(:mod:`fastmix.device_arrays`). Their public functions are re-exported here.
"""

from fastmix.device_arrays import require_gpu, simulated
from fastmix.kernels.cuda.backend import (
    COPY_PIECE_BYTES,
    LOCATION,
    NAME,
    DeviceWindow,
    available,
    load_window,
    mix_piece,
    streaming_threads,
    unavailable_reason,
)
from fastmix.kernels.cuda.kernels import (
    block_tables,
    compile_ptx,
    launch_geometry,
    word_dtype,
    word_size,
)

__all__ = ["COPY_PIECE_BYTES", "LOCATION", "NAME", "DeviceWindow", "available", "block_tables",
           "compile_ptx", "launch_geometry", "load_window", "mix_piece",
           "require_gpu", "simulated", "streaming_threads", "unavailable_reason", "word_dtype",
           "word_size"]
