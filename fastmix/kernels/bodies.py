"""The allocation-free bodies every backend compiles: the gather, the hardening, the generator.

Plain Python functions registered with :func:`body` (``numba.extending.register_jitable``,
without the runtime that allocates): jitted code on any target calls them directly
(:mod:`fastmix.kernels.cpu` from ``numba.njit`` kernels, :mod:`fastmix.kernels.cuda` from
``numba.cuda.jit`` kernels), and each is compiled for the caller's target, so the backends
cannot drift. :mod:`fastmix.kernels.compile` is the one way a backend gets them for its target
(read it before adding a backend). Every buffer they need (the level table, the blur lines)
is an argument. They use only ``+ - * /`` and comparisons, which IEEE 754 rounds the same way
everywhere, so every backend and thread count gives the same bytes. A CPU kernel that calls
them divides under NumPy's error model (no zero-division check, so the divisions
vectorise); no divisor here is ever zero. Every product that feeds an addition goes through
:func:`product`, which a backend whose compiler fuses multiply-adds (NVVM does, even with
``fastmath=False``) compiles as a separately rounded multiplication.

The counter-based generator
    :func:`mix64` and :func:`derive` are the arithmetic of the generator whose definitions
    are in :mod:`fastmix.plan.random`, which compiles these bodies for planning; a kernel
    that draws where it computes (the jitter, see :func:`block_jitter`) compiles the same
    bodies, so a draw is the same 64 bits in planning, in a CPU kernel and in a CUDA one.

The plain gather
    :func:`copy_row_segment` is the per-element body of the block gather;
    :func:`copy_units` the same copy on flat (1-D) views, where the CPU kernel computes
    each segment's offsets itself.

The hardened gather
    Pixels are seen as ``(n, H, W * C)`` arrays of values (``C`` values per pixel, the
    channels; or whole-pixel unsigned units when only orientation runs).

    Orientation codes (``code`` in 0..7): bit 0 mirrors columns, bit 1 mirrors rows, bit 2
    transposes (square blocks only). Output pixel ``(y, x)`` of a block of ``height`` x
    ``width`` reads source pixel ``(row, col)`` where ``(row, col) = (x, y)`` if bit 2 else
    ``(y, x)``, then ``row = height - 1 - row`` if bit 1 and ``col = width - 1 - col`` if
    bit 0.

    Value steps (``step`` of :func:`copy_run`): :data:`COPY` stores the source value,
    :data:`TABLE` looks it up in the block's level table (:func:`fill_level_table`),
    :data:`INTEGER` and :data:`FLOAT` compute the jitter of :func:`jitter_level` on the
    value. The table holds exactly the values the arithmetic gives, so the choice never
    changes a byte. A CPU kernel orients a whole block first (:func:`orient_block`), then
    applies the value step to the output block in place (:func:`value_step_block`): the
    same bytes, in contiguous loops.

Numba's on-disk cache of a kernel that calls these bodies is keyed on the kernel's own file:
after editing this file (or :mod:`fastmix.kernels.cpu.x86`), delete the ``__pycache__``
folders under ``fastmix/kernels`` before measuring or testing (touching the kernel's file did
not always invalidate it).
"""

from collections.abc import Callable

import numpy as np
from numba.extending import register_jitable

_register = register_jitable(_nrt=False, inline="always")

#: Every body by name, in the order they are defined (:func:`fastmix.kernels.compile.bodies_for`).
BODIES: dict[str, Callable] = {}


def body(function: Callable) -> Callable:
    """Register ``function`` as a shared body and return it unchanged.

    Jitted code on any Numba target (CPU or CUDA) then compiles it where it calls it, without
    the runtime that allocates: a body that allocated would not compile.
    """
    BODIES[function.__name__] = function
    return _register(function)


# --- the counter-based generator ---------------------------------------------------------

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MULTIPLIER_1 = np.uint64(0xBF58476D1CE4E5B9)
_MULTIPLIER_2 = np.uint64(0x94D049BB133111EB)
_SHIFT_30 = np.uint64(30)
_SHIFT_27 = np.uint64(27)
_SHIFT_31 = np.uint64(31)
_ONE = np.uint64(1)


@body
def mix64(z):
    """Return the SplitMix64 finalizer of ``z`` (uint64, wrapping)."""
    z = (z ^ (z >> _SHIFT_30)) * _MULTIPLIER_1
    z = (z ^ (z >> _SHIFT_27)) * _MULTIPLIER_2
    return z ^ (z >> _SHIFT_31)


@body
def derive(seed, value):
    """Return the seed of child ``value`` of ``seed`` (a counter-based stream)."""
    return mix64(seed + (np.uint64(value) + _ONE) * GOLDEN)


# --- the plain gather --------------------------------------------------------------------

@body
def copy_row_segment(source, out, image, source_image, row, start, length):
    """``out[image, row, start:start + length] = source[source_image, row, same]``."""
    for unit in range(length):
        out[image, row, start + unit] = source[source_image, row, start + unit]


@body
def copy_units(source, out, source_at, out_at, length):
    """``out[out_at:out_at + length] = source[source_at:source_at + length]`` (1-D views).

    Unsigned indices: no check for negative ones. With ``length`` a compile-time constant
    the loop unrolls into that many word moves.
    """
    for unit in range(length):
        out[np.uint64(out_at + unit)] = source[np.uint64(source_at + unit)]


# --- the hardened gather -----------------------------------------------------------------

COPY = 0
TABLE = 1
INTEGER = 2
FLOAT = 3

#: Bits of each jitter draw: a block's three parameters are indices into tables of
#: ``JITTER_LEVELS`` values (:func:`fastmix.kernels.steps.jitter_tables`). Few enough that
#: the tone curve of every tone and 8-bit level is one table of 512 KiB (:func:`tone_curve`).
JITTER_BITS = 8
JITTER_LEVELS = 1 << JITTER_BITS
_JITTER_MASK = np.uint64(JITTER_LEVELS - 1)
_SHIFT_BRIGHTNESS = np.uint64(64 - JITTER_BITS)
_SHIFT_CONTRAST = np.uint64(64 - 2 * JITTER_BITS)
_SHIFT_TONE = np.uint64(64 - 3 * JITTER_BITS)


@body
def block_jitter_fields(image_seed, block):
    """Return the indices of output block ``block``'s brightness, contrast and tone (uint64).

    ``image_seed`` is ``derive(jitter_seed, image)`` (the image's index in its window);
    ``x = derive(image_seed, block)`` gives three 8-bit indices, its bits 63..56, 55..48 and
    47..40, into the rows of the jitter tables (:func:`fastmix.kernels.steps.jitter_tables`).
    Drawn where the block is computed: a plan holds no per-block parameters.
    """
    x = derive(image_seed, block)
    return (x >> _SHIFT_BRIGHTNESS, (x >> _SHIFT_CONTRAST) & _JITTER_MASK,
            (x >> _SHIFT_TONE) & _JITTER_MASK)


#: Hardening format 2: each field's top ``CURVE_BITS`` bits pick its level, so a block's
#: jitter is one of ``CURVES`` curves (:func:`curve_index`); its tables repeat each level
#: ``1 << (JITTER_BITS - CURVE_BITS)`` times (:func:`fastmix.kernels.steps.jitter_tables`).
CURVE_BITS = 4
CURVES = 1 << (3 * CURVE_BITS)
_CURVE_SHIFT = np.uint64(JITTER_BITS - CURVE_BITS)
_CURVE_FIELD = np.uint64(CURVE_BITS)


@body
def curve_index(brightness, contrast, tone):
    """Hardening format 2: the curve of a block's three jitter fields (uint64, 0..CURVES-1).

    ``(b >> 4) * 256 + (c >> 4) * 16 + (t >> 4)`` for 4-bit curve levels.
    """
    return ((((brightness >> _CURVE_SHIFT) << _CURVE_FIELD) | (contrast >> _CURVE_SHIFT))
            << _CURVE_FIELD) | (tone >> _CURVE_SHIFT)


@body
def block_jitter(image_seed, block, tables):
    """Return the brightness offset, contrast and tone of output block ``block`` of one image."""
    brightness, contrast, tone = block_jitter_fields(image_seed, block)
    return tables[0, brightness], tables[1, contrast], tables[2, tone]


@body
def fill_jitter(jitter, jitter_seed, first, tables):
    """``jitter[i, b] = block_jitter(derive(jitter_seed, first + i), b, tables)``, all of them.

    For a backend that takes the parameters as an array (``jitter`` of ``(n, blocks, 3)``).
    """
    for image in range(jitter.shape[0]):
        image_seed = derive(jitter_seed, first + image)
        for block in range(jitter.shape[1]):
            brightness, contrast, tone = block_jitter(image_seed, block, tables)
            jitter[image, block, 0] = brightness
            jitter[image, block, 1] = contrast
            jitter[image, block, 2] = tone


@body
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


#: 1.5 * 2**52: adding it and subtracting it again rounds a float64 below 2**51 in
#: magnitude to an integer, ties to even (IEEE 754's default rounding does the work).
ROUNDING_SHIFT = 6755399441055744.0


@body
def round_half_even(value):
    """Round to the nearest integer, ties to even (``np.rint``), for ``|value| < 2**51``.

    Two additions in IEEE 754's default rounding mode: no branch, no ``floor``, and it
    vectorises. The same integer as ``np.rint`` (checked on ties, negatives and random
    values; a negative zero comes out as ``+0.0``, which stores the same integer). Every
    value rounded here is within a 32-bit dtype's range.
    """
    return (value + ROUNDING_SHIFT) - ROUNDING_SHIFT


@body
def clip_value(value, low, high):
    """``value`` clipped to ``[low, high]``."""
    if value < low:
        return low
    if value > high:
        return high
    return value


@body
def product(first, second):
    """``first * second``, rounded on its own before the addition that uses it.

    A fused multiply-add rounds ``a * b + c`` once instead of twice, which changes bytes.
    Numba's CPU target never fuses; NVVM does by default, so :mod:`fastmix.kernels.cuda`
    compiles this body as an explicitly rounded ``mul.rn``, which it cannot fuse. Every
    product that feeds an addition or a subtraction goes through here.
    """
    return first * second


@body
def tone_curve(level, tone):
    """Return the tone curve at ``level`` in [0, 1]: ``level / (level + tone * (1 - level))``."""
    return level / (level + product(tone, 1.0 - level))


@body
def contrast_and_brightness(toned, brightness, contrast):
    """``(toned - 0.5) * contrast + 0.5 + brightness``, clipped to [0, 1]."""
    result = product(toned - 0.5, contrast) + 0.5 + brightness
    if result < 0.0:
        result = 0.0
    if result > 1.0:
        result = 1.0
    return result


@body
def jitter_from_level(level, brightness, contrast, tone):
    """Return the jitter of a value at ``level`` in [0, 1], on the [0, 1] scale, clipped."""
    return contrast_and_brightness(tone_curve(level, tone), brightness, contrast)


@body
def jitter_level(value, low, span, integer, brightness, contrast, tone):
    """One jittered pixel value on the [0, 1] scale (see :func:`jittered_value`)."""
    if integer:
        level = (value - low) / span
    else:
        level = float(value)  # float64, also for float32 values in the CUDA simulator
        if level < 0.0:
            level = 0.0
        if level > 1.0:
            level = 1.0
    return jitter_from_level(level, brightness, contrast, tone)


@body
def jittered_value(value, low, span, integer, brightness, contrast, tone):
    """Return the value to store: ``rint(level * span) + low`` (integers), or the level."""
    level = jitter_level(value, low, span, integer, brightness, contrast, tone)
    if integer:
        return round_half_even(product(level, span)) + low
    return level


@body
def fill_level_table(table, levels, low, span, brightness, contrast, tone):
    """``table[v] = `` the stored jitter of the integer value ``v + low``, for every level.

    ``levels[v]`` is ``v / span`` (the level of value ``v + low``, computed once per run).
    """
    for index in range(levels.size):
        at = np.uint64(index)
        level = jitter_from_level(levels[at], brightness, contrast, tone)
        table[at] = round_half_even(product(level, span)) + low


@body
def level_table_value(level, low, span, brightness, contrast, tone):
    """One entry of :func:`fill_level_table`: the stored jitter of the value at ``level``.

    The same operations as :func:`fill_level_table`'s loop, for a kernel whose threads fill
    a table together (:mod:`fastmix.kernels.cuda`'s tile kernel).
    """
    level = jitter_from_level(level, brightness, contrast, tone)
    return round_half_even(product(level, span)) + low


@body
def store_stepped(out, at, value, step, table, table_at, low, span, brightness, contrast,
                  tone):
    """``out[at] =`` ``value`` after the value step ``step``, as :func:`copy_run` stores it.

    :data:`TABLE` stores ``table[table_at + int(value)]`` (a block's table of the value
    ``v`` at ``table_at + v``). One branch per step, each storing its own result: a shared
    result would widen a 64-bit unit to float64.
    """
    if step == COPY:
        out[at] = value
    elif step == TABLE:
        out[at] = table[table_at + int(value)]
    else:
        out[at] = jittered_value(value, low, span, step == INTEGER, brightness, contrast, tone)


@body
def fill_toned_levels(toned, levels, tones):
    """``toned[k, v] = tone_curve(levels[v], tones[k])``: every tone's curve, every level."""
    for tone in range(tones.size):
        for index in range(levels.size):
            toned[tone, index] = tone_curve(levels[index], tones[tone])


@body
def fill_toned_table(table, toned, tone, first, last, low, span, brightness, contrast):
    """:func:`fill_level_table` for levels ``first..last`` from precomputed tone curves.

    ``toned[tone, v]`` is :func:`tone_curve` at level ``v`` for the block's tone (see
    :func:`fill_toned_levels`): no division, so the loop vectorises. The same values as
    :func:`fill_level_table`.
    """
    tone = np.uint64(tone)
    for index in range(first, last):
        at = np.uint64(index)
        level = contrast_and_brightness(toned[tone, at], brightness, contrast)
        table[at] = round_half_even(product(level, span)) + low


@body
def orient_block(source, out, image, source_image, code, top, left, height, width, channels):
    """Copy one source block into its output block, oriented by ``code`` (no value step).

    The orientation rule above (the pixels of :func:`copy_run` with :data:`COPY`), in loops
    a CPU runs fast: a row read forwards is one contiguous copy, a mirrored or transposed
    one goes pixel by pixel; indices are unsigned (see :func:`copy_run`). No array views:
    in a CPU kernel each would count references atomically.
    """
    image = np.uint64(image)
    source_image = np.uint64(source_image)
    values = width * channels
    first = left * channels
    if code != 0:
        # Read the first and last value of every source row first, in order: independent
        # loads the CPU overlaps, so the block's lines come in from memory together rather
        # than one at a time as the oriented loops reach them (2.3x on row-reversed blocks).
        touched = source[source_image, np.uint64(top), np.uint64(first)]
        for source_row in range(top, top + height):
            touched = touched + source[source_image, np.uint64(source_row), np.uint64(first)]
            touched = touched + source[source_image, np.uint64(source_row),
                                       np.uint64(first + values - 1)]
        out[image, np.uint64(top), np.uint64(first)] = touched  # overwritten below
    for y in range(height):
        row = np.uint64(top + y)
        if code < 4:
            source_row = np.uint64(top + (height - 1 - y if code & 2 else y))
            if code & 1 == 0:
                for unit in range(first, first + values):
                    out[image, row, np.uint64(unit)] = source[source_image, source_row,
                                                              np.uint64(unit)]
                continue
            # Mirrored: pixel x reads pixel width - 1 - x of the same row.
            last = first + values - channels
            for x in range(width):
                to = np.uint64(first + x * channels)
                start = np.uint64(last - x * channels)
                for channel in range(channels):
                    out[image, row, to + np.uint64(channel)] = source[
                        source_image, source_row, start + np.uint64(channel)]
            continue
        # Transposed: pixel x reads source row x (mirrored by bit 1) of one source column.
        unit = np.uint64((left + (width - 1 - y if code & 1 else y)) * channels)
        first_row = top + height - 1 if code & 2 else top
        row_step = -1 if code & 2 else 1
        for x in range(width):
            to = np.uint64(first + x * channels)
            source_row = np.uint64(first_row + x * row_step)
            for channel in range(channels):
                out[image, row, to + np.uint64(channel)] = source[
                    source_image, source_row, unit + np.uint64(channel)]


@body
def value_step_block(out, image, top, left, height, width, channels, look_up, table, offset,
                     low, span, integer, brightness, contrast, tone):
    """Apply the value step to every value ``v`` of an output block, in place.

    ``table[v - offset]`` if ``look_up`` (:data:`TABLE`), else :func:`jittered_value`.
    """
    image = np.uint64(image)
    first = left * channels
    for row in range(top, top + height):
        row = np.uint64(row)
        for unit in range(first, first + width * channels):
            at = np.uint64(unit)
            if look_up:
                out[image, row, at] = table[np.uint64(int(out[image, row, at]) - offset)]
            else:
                out[image, row, at] = jittered_value(out[image, row, at], low, span, integer,
                                                     brightness, contrast, tone)


@body
def look_up_block(out, image, top, left, height, width, channels, table, offset):
    """Replace every value ``v`` of an output block by ``table[v - offset]``, in place."""
    value_step_block(out, image, top, left, height, width, channels, True, table, offset,
                     0.0, 1.0, True, 0.0, 1.0, 1.0)


@body
def orient_and_look_up(source, out, image, source_image, code, top, left, height, width,
                       channels, look_up, table, offset, scratch_at, orient_index, shape):
    """:func:`orient_block`, then :func:`look_up_block` if ``look_up``.

    ``scratch_at`` (where scratch space begins in ``table``), ``orient_index`` and ``shape``
    serve a CPU's vector version (:mod:`fastmix.kernels.cpu.x86`); unused here.
    """
    orient_block(source, out, image, source_image, code, top, left, height, width, channels)
    if look_up:
        look_up_block(out, image, top, left, height, width, channels, table, offset)


@body
def copy_run(source, out, image, source_image, out_row, out_unit, row, unit, row_step,
             unit_step, pixels, channels, step, table, offset, low, span, brightness,
             contrast, tone):
    """``pixels`` output pixels from ``(out_row, out_unit)`` on, after the value step ``step``.

    Output pixel ``x`` takes the ``channels`` values of source pixel ``(row + x * row_step,
    unit + x * unit_step)``; ``source`` and ``out`` are ``(n, H, W * channels)``. Indices
    are cast to unsigned (they are never negative): Numba then skips its negative-index
    wraparound, measured 13x faster on a byte copy loop.
    """
    image = np.uint64(image)
    source_image = np.uint64(source_image)
    out_row = np.uint64(out_row)
    if row_step == 0 and unit_step == channels:  # a contiguous run
        row = np.uint64(row)
        values = pixels * channels
        if step == COPY:
            for k in range(values):
                out[image, out_row, np.uint64(out_unit + k)] = \
                    source[source_image, row, np.uint64(unit + k)]
        elif step == TABLE:
            for k in range(values):
                out[image, out_row, np.uint64(out_unit + k)] = table[
                    np.uint64(int(source[source_image, row, np.uint64(unit + k)]) - offset)]
        else:
            for k in range(values):
                out[image, out_row, np.uint64(out_unit + k)] = jittered_value(
                    source[source_image, row, np.uint64(unit + k)], low, span,
                    step == INTEGER, brightness, contrast, tone)
        return
    for x in range(pixels):
        source_row = np.uint64(row + x * row_step)
        first = unit + x * unit_step
        for channel in range(channels):
            value = source[source_image, source_row, np.uint64(first + channel)]
            position = np.uint64(out_unit + x * channels + channel)
            if step == COPY:
                out[image, out_row, position] = value
            elif step == TABLE:
                out[image, out_row, position] = table[np.uint64(int(value) - offset)]
            else:
                out[image, out_row, position] = jittered_value(
                    value, low, span, step == INTEGER, brightness, contrast, tone)


@body
def blur_band_rows(pixels, image, band_rows, lines, weights, radius, low, high, integer):
    """Blur across the horizontal seams: pass 1 of the seam blur, on ``band_rows`` only.

    Every value of the rows ``band_rows`` becomes ``sum_k weights[k] * M[clamp(row + k -
    radius), same column]`` (``k`` ascending, float64) of the image ``M`` before the pass,
    stored in the dtype (integers rounded half to even and clipped). ``lines`` is scratch of
    at least ``(band_rows.size, W * C)``.
    """
    image = np.uint64(image)
    height = pixels.shape[1]
    values = pixels.shape[2]
    # Tap by tap across the whole row: the inner loop runs over contiguous values.
    for index in range(band_rows.size):
        row = band_rows[index]
        for unit in range(values):
            lines[index, unit] = 0.0
        for k in range(2 * radius + 1):
            source_row = np.uint64(min(max(row + k - radius, 0), height - 1))
            weight = weights[k]
            for unit in range(values):
                lines[index, unit] = lines[index, unit] + product(
                    weight, pixels[image, source_row, unit])
    for index in range(band_rows.size):
        row = np.uint64(band_rows[index])
        for unit in range(values):
            total = lines[index, unit]
            if integer:
                total = clip_value(round_half_even(total), low, high)
            pixels[image, row, unit] = total


#: Hardening format 2: the seam blur's integer weights sum to ``1 << FIXED_SHIFT``.
FIXED_SHIFT = 15
_FIXED_HALF = 1 << (FIXED_SHIFT - 1)


@body
def fixed_round(total):
    """Hardening format 2: ``floor((total + 2**14) / 2**15)``, the weighted sum rounded half up.

    ``total`` is an exact integer sum of integer weights (summing to ``2**15``) times
    integer values, so the result lies between the smallest and largest value summed:
    no clipping.
    """
    return (np.int64(total) + _FIXED_HALF) >> FIXED_SHIFT


@body
def blur_band_rows_fixed(pixels, image, band_rows, lines, weights, radius):
    """:func:`blur_band_rows` in fixed point (hardening format 2, integer values).

    ``weights`` are integers summing to ``2**15``; ``lines`` integer scratch wide enough
    for the sums (int32 for values of up to 16 bits, else int64); each value becomes
    :func:`fixed_round` of its exact weighted sum.
    """
    image = np.uint64(image)
    height = pixels.shape[1]
    values = pixels.shape[2]
    for index in range(band_rows.size):
        row = band_rows[index]
        for unit in range(values):
            lines[index, unit] = 0
        for k in range(2 * radius + 1):
            source_row = np.uint64(min(max(row + k - radius, 0), height - 1))
            weight = weights[k]
            for unit in range(values):
                lines[index, unit] = lines[index, unit] + weight * pixels[
                    image, source_row, unit]
    for index in range(band_rows.size):
        row = np.uint64(band_rows[index])
        for unit in range(values):
            pixels[image, row, unit] = fixed_round(lines[index, unit])


@body
def blur_band_cols_fixed(pixels, image, band_cols, line, weights, radius, channels):
    """:func:`blur_band_cols` in fixed point (hardening format 2, integer values).

    As :func:`blur_band_rows_fixed`, along the rows of the image after pass 1; ``line``
    integer scratch of at least ``band_cols.size * channels`` values.
    """
    image = np.uint64(image)
    height = pixels.shape[1]
    width = pixels.shape[2] // channels
    taps = 2 * radius + 1
    for row in range(height):
        row = np.uint64(row)
        at = 0
        for index in range(band_cols.size):
            column = band_cols[index]
            interior = column >= radius and column + radius < width
            for channel in range(channels):
                total = 0
                if interior:
                    first = (column - radius) * channels + channel
                    for k in range(taps):
                        total = total + weights[np.uint64(k)] * pixels[
                            image, row, np.uint64(first + k * channels)]
                else:
                    for k in range(taps):
                        source = min(max(column + k - radius, 0), width - 1) * channels
                        total = total + weights[np.uint64(k)] * pixels[
                            image, row, np.uint64(source + channel)]
                line[np.uint64(at)] = total
                at += 1
        # Stored once every band value of the row is summed: bands may share taps.
        at = 0
        for index in range(band_cols.size):
            first = band_cols[index] * channels
            for channel in range(channels):
                pixels[image, row, np.uint64(first + channel)] = fixed_round(
                    line[np.uint64(at)])
                at += 1


@body
def blur_band_cols(pixels, image, band_cols, line, weights, radius, channels, low, high,
                   integer):
    """Blur across the vertical seams: pass 2 of the seam blur, on ``band_cols`` only.

    Every value of the columns ``band_cols`` becomes the weighted sum along its row of the
    image after pass 1 (as :func:`blur_band_rows`, across columns). ``line`` is scratch of
    at least ``band_cols.size * channels`` values.
    """
    image = np.uint64(image)
    height = pixels.shape[1]
    width = pixels.shape[2] // channels
    taps = 2 * radius + 1
    for row in range(height):
        row = np.uint64(row)
        at = 0
        for index in range(band_cols.size):
            column = band_cols[index]
            # Away from the image's edges the taps are consecutive pixels: no clamping.
            interior = column >= radius and column + radius < width
            if interior and channels == 3:
                # Colour pixels: three independent sums, kept in registers.
                first = (column - radius) * 3
                total0 = total1 = total2 = 0.0
                for k in range(taps):
                    weight = weights[np.uint64(k)]
                    tap = first + k * 3
                    total0 = total0 + product(weight, pixels[image, row, np.uint64(tap)])
                    total1 = total1 + product(weight, pixels[image, row, np.uint64(tap + 1)])
                    total2 = total2 + product(weight, pixels[image, row, np.uint64(tap + 2)])
                line[np.uint64(at)] = total0
                line[np.uint64(at + 1)] = total1
                line[np.uint64(at + 2)] = total2
                at += 3
                continue
            for channel in range(channels):
                total = 0.0
                if interior:
                    first = (column - radius) * channels + channel
                    for k in range(taps):
                        total = total + product(weights[np.uint64(k)], pixels[
                            image, row, np.uint64(first + k * channels)])
                else:
                    for k in range(taps):
                        source = min(max(column + k - radius, 0), width - 1) * channels
                        total = total + product(weights[np.uint64(k)], pixels[
                            image, row, np.uint64(source + channel)])
                line[np.uint64(at)] = total
                at += 1
        # Stored once every band value of the row is summed: bands may share taps.
        at = 0
        for index in range(band_cols.size):
            first = band_cols[index] * channels
            for channel in range(channels):
                total = line[np.uint64(at)]
                if integer:
                    total = clip_value(round_half_even(total), low, high)
                pixels[image, row, np.uint64(first + channel)] = total
                at += 1
