"""The per-element body of the block gather, shared by every backend.

These are plain Python functions: :mod:`fastmix.kernels.cpu` compiles them with
``numba.njit`` and a CUDA module compiles them with ``numba.cuda.jit(device=True)``, so the
two cannot drift.
"""


def copy_row_segment(source, out, image, source_image, row, start, length):
    """``out[image, row, start:start + length] = source[source_image, row, same]``."""
    for unit in range(length):
        out[image, row, start + unit] = source[source_image, row, start + unit]

