"""Numba CPU kernels of the hardening: oriented gather, jitter and seam blur.

Parallel over output images; each iteration owns its image, so the result never depends on
the thread count. The per-element bodies live in :mod:`fastmix.kernels.harden_body`.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from fastmix.kernels import harden_body

_compile = njit(inline="always", cache=True, nogil=True)
oriented_source = _compile(harden_body.oriented_source)
copy_oriented_row = _compile(harden_body.copy_oriented_row)
round_half_even = _compile(harden_body.round_half_even)
jitter_level = _compile(harden_body.jitter_level)
clip_value = _compile(harden_body.clip_value)
blur_across_rows = _compile(harden_body.blur_across_rows)
blur_across_cols = _compile(harden_body.blur_across_cols)


@njit(parallel=True, nogil=True, cache=True)
def oriented_gather(source, out, source_map, codes, row_bounds, col_bounds, order):
    """``out[i, block b] = orient(source[source_map[i, b], block b], codes[i, b])``.

    ``source`` and ``out`` are ``(n, H, W, units)`` views of whole pixels; ``row_bounds``
    and ``col_bounds`` are the block edges in pixels.
    """
    block_cols = col_bounds.size - 1
    for position in prange(order.size):
        image = order[position]
        for block_row in range(row_bounds.size - 1):
            top = row_bounds[block_row]
            height = row_bounds[block_row + 1] - top
            for block_col in range(block_cols):
                block = block_row * block_cols + block_col
                left = col_bounds[block_col]
                width = col_bounds[block_col + 1] - left
                for y in range(height):
                    copy_oriented_row(source, out, image, source_map[image, block],
                                      codes[image, block], top, left, height, width, y)


@njit(parallel=True, nogil=True, cache=True)
def jitter(pixels, brightness, contrast, tone, row_bounds, col_bounds, low, span, integer):
    """Jitter every block of ``pixels`` ``(n, H, W, C)`` in place with its own parameters.

    Integer blocks with more values than their dtype has levels go through a per-block
    table of every level, computed with the same body, so the bytes are the same.
    """
    block_cols = col_bounds.size - 1
    channels = pixels.shape[3]
    levels = int(span) + 1 if integer and span < 65536.0 else 0
    for image in prange(pixels.shape[0]):
        table = np.empty(max(levels, 1), dtype=np.float64)
        for block_row in range(row_bounds.size - 1):
            top = row_bounds[block_row]
            bottom = row_bounds[block_row + 1]
            for block_col in range(block_cols):
                block = block_row * block_cols + block_col
                left = col_bounds[block_col]
                right = col_bounds[block_col + 1]
                block_brightness = brightness[image, block]
                block_contrast = contrast[image, block]
                block_tone = tone[image, block]
                if levels > 0 and (bottom - top) * (right - left) * channels > levels:
                    for level in range(levels):
                        table[level] = round_half_even(jitter_level(
                            level + low, low, span, integer, block_brightness,
                            block_contrast, block_tone) * span) + low
                    for row in range(top, bottom):
                        for col in range(left, right):
                            for channel in range(channels):
                                pixels[image, row, col, channel] = table[
                                    int(pixels[image, row, col, channel] - low)]
                    continue
                for row in range(top, bottom):
                    for col in range(left, right):
                        for channel in range(channels):
                            level = jitter_level(
                                pixels[image, row, col, channel], low, span, integer,
                                block_brightness, block_contrast, block_tone)
                            if integer:
                                pixels[image, row, col, channel] = \
                                    round_half_even(level * span) + low
                            else:
                                pixels[image, row, col, channel] = level


@njit(parallel=True, nogil=True, cache=True)
def seam_blur(pixels, band_rows, band_cols, weights, radius, low, high, integer):
    """Blur ``pixels`` ``(n, H, W, C)`` in place across the seams, rows then columns.

    Pass 1 sets every pixel of ``band_rows`` to the vertical weighted sum of the unblurred
    image, stored (rounded) in the dtype; pass 2 sets every pixel of ``band_cols`` to the
    horizontal weighted sum of the result of pass 1.
    """
    height = pixels.shape[1]
    width = pixels.shape[2]
    channels = pixels.shape[3]
    for image in prange(pixels.shape[0]):
        before = pixels[image].copy()
        for index in range(band_rows.size):
            row = band_rows[index]
            for col in range(width):
                for channel in range(channels):
                    total = blur_across_rows(before, row, col, channel, weights, radius,
                                             height)
                    if integer:
                        total = clip_value(round_half_even(total), low, high)
                    pixels[image, row, col, channel] = total
        before = pixels[image].copy()
        for row in range(height):
            for index in range(band_cols.size):
                col = band_cols[index]
                for channel in range(channels):
                    total = blur_across_cols(before, row, col, channel, weights, radius,
                                             width)
                    if integer:
                        total = clip_value(round_half_even(total), low, high)
                    pixels[image, row, col, channel] = total

