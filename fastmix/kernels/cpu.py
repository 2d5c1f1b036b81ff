"""Numba CPU kernels: parallel over output images, each iteration owns its image."""

from __future__ import annotations

from numba import njit, prange

from fastmix.kernels import body

copy_row_segment = njit(inline="always", cache=True, nogil=True)(body.copy_row_segment)


@njit(parallel=True, nogil=True, cache=True)
def gather(source, out, source_map, row_bounds, col_bounds, order):
    """``out[i, block b] = source[source_map[i, b], block b]`` for every image ``i``.

    ``source`` and ``out`` are ``(n, height, units)`` views of the pixel bytes as unsigned
    integers; ``row_bounds`` and ``col_bounds`` are the block edges in rows and units (all
    block columns but the last have equal width). Output images are processed in ``order``
    (a permutation of ``range(n)``), so that images sharing sources run on the same thread
    back to back.
    """
    block_cols = col_bounds.size - 1
    # All block columns but the last have one width: a loop-invariant segment length, with
    # the loop body written here rather than in a helper function, measured 1.3-1.5x faster.
    segment = col_bounds[1] - col_bounds[0]
    last_start = col_bounds[block_cols - 1]
    last_length = col_bounds[block_cols] - last_start
    for position in prange(order.size):
        image = order[position]
        for block_row in range(row_bounds.size - 1):
            first_block = block_row * block_cols
            for row in range(row_bounds[block_row], row_bounds[block_row + 1]):
                for block_col in range(block_cols - 1):
                    copy_row_segment(source, out, image,
                                     source_map[image, first_block + block_col],
                                     row, block_col * segment, segment)
                copy_row_segment(source, out, image,
                                 source_map[image, first_block + block_cols - 1],
                                 row, last_start, last_length)
