"""How images are laid out for the kernels: wide unsigned views and block edges."""

from __future__ import annotations

import math

import numpy as np

_UNSIGNED = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}


def block_edges(height: int, width: int, block: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Row and column edges of the block grid (the last block may be smaller)."""
    block_height, block_width = block
    rows = np.r_[np.arange(0, height, block_height), height].astype(np.int64)
    cols = np.r_[np.arange(0, width, block_width), width].astype(np.int64)
    return rows, cols


def block_count(height: int, width: int, block: tuple[int, int]) -> int:
    """Blocks per image: ceil(H / bh) * ceil(W / bw)."""
    return -(-height // block[0]) * -(-width // block[1])


class PixelLayout:
    """A view of images ``(n, H, W[, C])`` as ``(n, H, units)`` wide unsigned integers.

    The unit is the widest of 8, 4, 2 or 1 bytes that divides every block's row segment, so
    the kernel moves 8 bytes at a time where it can.
    """

    def __init__(self, image_shape: tuple[int, ...], dtype: np.dtype, block: tuple[int, int]):
        height, width = image_shape[0], image_shape[1]
        channels = int(np.prod(image_shape[2:], dtype=np.int64)) if len(image_shape) > 2 else 1
        pixel_bytes = channels * np.dtype(dtype).itemsize
        row_bytes = width * pixel_bytes
        unit = math.gcd(block[1] * pixel_bytes, row_bytes, 8)
        unit = max(size for size in _UNSIGNED if unit % size == 0)
        self.unit_dtype = np.dtype(_UNSIGNED[unit])
        self.height = height
        self.units = row_bytes // unit
        rows, cols = block_edges(height, width, block)
        self.row_bounds = rows
        self.col_bounds = cols * pixel_bytes // unit
        self.block_count = (rows.size - 1) * (cols.size - 1)

    def view(self, images: np.ndarray) -> np.ndarray:
        """The ``(n, H, units)`` view of C-contiguous ``images`` (no copy)."""
        return images.view(np.uint8).reshape(len(images), -1).view(self.unit_dtype).reshape(
            len(images), self.height, self.units)
