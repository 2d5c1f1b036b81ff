"""Numba CPU kernels: parallel over output images, each iteration owns its image."""

from __future__ import annotations

from numba import njit, prange

from fastmix.kernels import body

copy_row_segment = njit(inline="always", cache=True, nogil=True)(body.copy_row_segment)


@njit(inline="always", cache=True, nogil=True)
def gather_image(source, out, source_map, image, row_bounds, col_bounds):
    block_cols = col_bounds.size - 1
    for block_row in range(row_bounds.size - 1):
        first_block = block_row * block_cols
        for row in range(row_bounds[block_row], row_bounds[block_row + 1]):
            for block_col in range(block_cols):
                copy_row_segment(source, out, image, source_map[image, first_block + block_col],
                                 row, col_bounds[block_col], col_bounds[block_col + 1])


@njit(parallel=True, nogil=True, cache=True)
def gather(source, out, source_map, row_bounds, col_bounds, order):
    """``out[i, block b] = source[source_map[i, b], block b]`` for every image ``i``.

    ``source`` and ``out`` are ``(n, height, units)`` views of the pixel bytes as unsigned
    integers; ``row_bounds`` and ``col_bounds`` are the block edges in rows and units.
    Output images are processed in ``order`` (a permutation of ``range(n)``), so that images
    sharing sources run on the same thread back to back.
    """
    for position in prange(order.size):
        gather_image(source, out, source_map, order[position], row_bounds, col_bounds)
