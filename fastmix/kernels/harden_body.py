"""The per-element bodies of the hardening kernels, shared by every backend.

Plain Python functions: :mod:`fastmix.kernels.harden_cpu` compiles them with
``numba.njit`` and a CUDA module can compile them with ``numba.cuda.jit(device=True)``.
They use only ``+ - * /``, comparisons and ``math.floor``, which IEEE 754 rounds the same
way everywhere, so every backend and thread count gives the same bytes. A backend must
compile them without fused multiply-add contraction (Numba's default on CPU).

Orientation codes (``code`` in 0..7): bit 0 mirrors columns, bit 1 mirrors rows, bit 2
transposes (square blocks only). Output pixel ``(y, x)`` of a block of ``height`` x ``width``
reads source pixel ``(row, col)`` where ``(row, col) = (x, y)`` if bit 2 else ``(y, x)``,
then ``row = height - 1 - row`` if bit 1 and ``col = width - 1 - col`` if bit 0.
"""

import math


def oriented_source(code, y, x, height, width):
    """Source ``(row, col)`` inside the block of output pixel ``(y, x)`` under ``code``."""
    if code >= 4:
        row = x
        col = y
    else:
        row = y
        col = x
    if code & 2:
        row = height - 1 - row
    if code & 1:
        col = width - 1 - col
    return row, col


def copy_oriented_row(source, out, image, source_image, code, top, left, height, width, y):
    """Row ``y`` of one output block: ``source`` and ``out`` are ``(n, H, W, units)``.

    The orientation of :func:`oriented_source`, written out so the body calls nothing.
    """
    units = out.shape[3]
    for x in range(width):
        if code >= 4:
            row = x
            col = y
        else:
            row = y
            col = x
        if code & 2:
            row = height - 1 - row
        if code & 1:
            col = width - 1 - col
        for unit in range(units):
            out[image, top + y, left + x, unit] = source[source_image, top + row, left + col, unit]


def round_half_even(value):
    """Round to the nearest integer, ties to even (``np.rint``), with ``math.floor`` only."""
    lower = math.floor(value)
    fraction = value - lower
    if fraction > 0.5:
        return lower + 1.0
    if fraction < 0.5:
        return lower
    if lower % 2.0 == 0.0:
        return lower
    return lower + 1.0


def jitter_level(value, low, span, integer, brightness, contrast, tone):
    """One jittered pixel on the [0, 1] scale (store it with :func:`to_dtype_value`)."""
    if integer:
        level = (value - low) / span
    else:
        level = value * 1.0
        if level < 0.0:
            level = 0.0
        if level > 1.0:
            level = 1.0
    toned = level / (level + tone * (1.0 - level))
    result = (toned - 0.5) * contrast + 0.5 + brightness
    if result < 0.0:
        result = 0.0
    if result > 1.0:
        result = 1.0
    return result


def clip_value(value, low, high):
    """``value`` clipped to ``[low, high]``."""
    if value < low:
        return low
    if value > high:
        return high
    return value


def blur_across_rows(pixels, row, col, channel, weights, radius, height):
    """``sum_k weights[k] * pixels[clamp(row + k - radius), col, channel]``, k ascending."""
    total = 0.0
    for k in range(2 * radius + 1):
        source_row = row + k - radius
        if source_row < 0:
            source_row = 0
        if source_row > height - 1:
            source_row = height - 1
        total = total + weights[k] * pixels[source_row, col, channel]
    return total


def blur_across_cols(pixels, row, col, channel, weights, radius, width):
    """``sum_k weights[k] * pixels[row, clamp(col + k - radius), channel]``, k ascending."""
    total = 0.0
    for k in range(2 * radius + 1):
        source_col = col + k - radius
        if source_col < 0:
            source_col = 0
        if source_col > width - 1:
            source_col = width - 1
        total = total + weights[k] * pixels[row, source_col, channel]
    return total
