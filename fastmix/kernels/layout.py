"""How images are laid out for the kernels: wide unsigned views and block edges."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

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
        """Return the ``(n, H, units)`` view of C-contiguous ``images`` (no copy)."""
        return images.view(np.uint8).reshape(len(images), -1).view(self.unit_dtype).reshape(
            len(images), self.height, self.units)


def unit_dtype(pixel_bytes: int) -> np.dtype:
    """Return the widest unsigned integer of 8, 4, 2 or 1 bytes that divides ``pixel_bytes``."""
    return np.dtype(_UNSIGNED[max(size for size in _UNSIGNED if pixel_bytes % size == 0)])


@dataclass(frozen=True)
class Steps:
    """The constants of the per-piece step for one image shape, dtype and spec.

    Built once per run by :func:`fastmix.pipeline.steps_for`; backends read them. Without
    hardening only ``layout`` matters (the plain gather). With hardening, pixels are seen as
    ``(n, H, W * channels)`` values (:meth:`values`): the dtype's values when jitter or seam
    blur run, whole-pixel unsigned units when only orientation does.

    Attributes
    ----------
    layout : PixelLayout
        The plain gather's view and block edges in units.
    hardened : bool
        Whether any hardening step runs (else the plain gather).
    row_edges, col_edges : ndarray of int64
        Block edges in pixels.
    value_dtype : numpy.dtype
        The dtype of :meth:`values`.
    channels : int
        Values per pixel in :meth:`values`.
    jitter_step : int
        ``bodies.INTEGER`` or ``bodies.FLOAT``.
    jitter_tables : ndarray of float64
        The parameters a jitter draw picks (:func:`fastmix.plan.hardening.jitter_tables`),
        ``(3, levels)``; no rows without jitter.
    toned_levels : ndarray of float64
        The tone curve of every jitter tone at every level (:func:`bodies.toned_levels`),
        ``(tones, levels)``, for dtypes of at most 256 levels under drawn jitter; else empty.
    levels : ndarray of float64
        ``v / span`` for every integer level ``v`` when a block may use a level table (size
        0 otherwise).
    low, span, high : float
        The dtype's value range (0, 1, 1 for floats).
    band_rows, band_cols : ndarray of int64
        The seam blur's rows and columns (size 0: no blur).
    weights : ndarray of float64
        The blur weights; ``radius`` their half width.
    blur_integer : bool
        Whether blurred values are rounded and clipped.
    """

    layout: PixelLayout
    hardened: bool
    row_edges: np.ndarray
    col_edges: np.ndarray
    value_dtype: np.dtype
    channels: int
    jitter_step: int
    jitter_tables: np.ndarray
    toned_levels: np.ndarray
    levels: np.ndarray
    low: float
    span: float
    high: float
    band_rows: np.ndarray
    band_cols: np.ndarray
    weights: np.ndarray
    radius: int
    blur_integer: bool

    def values(self, images: np.ndarray) -> np.ndarray:
        """Return the ``(n, H, W * channels)`` view of C-contiguous ``images`` (no copy)."""
        count, height = images.shape[0], images.shape[1]
        return images.view(np.uint8).reshape(count, -1).view(self.value_dtype).reshape(
            count, height, -1)


@dataclass(frozen=True)
class WindowJob:
    """One window handed to a backend: the run's steps, the window's plan, its pixels.

    ``plan`` is a :class:`fastmix.plan.Plan` (the inverted one when unmixing); ``pixels``
    is the window's input where the backend computes (``None`` until
    :func:`load_window` of the backend puts it there).
    """

    steps: Steps
    plan: Any
    pixels: Any = None

    def with_pixels(self, pixels: Any) -> WindowJob:
        """Return the same job with the window's pixels where the backend computes."""
        return replace(self, pixels=pixels)
