"""Pass 2 of the seam blur on uint8 values, eight values at a time, in LLVM vector code.

Hardening format 2's fixed-point pass runs the same way on 16 int32 lanes
(:func:`blur_columns_fixed`).

Numba leaves LLVM's straight-line (SLP) vectoriser off, and its loop vectoriser cannot
vectorise sums of six or so values along a row (too short) or down the rows (strided), so
:func:`fastmix.kernels.bodies.blur_band_cols` sums one value at a time. Here the same
sums run on vectors of eight float64 values, written as plain LLVM vector operations (no
instruction set named: any CPU LLVM targets runs them): per tap, eight consecutive bytes
are loaded (masked past the run's end), converted, multiplied by the tap's weight and
added, each operation rounded on its own in ascending tap order, exactly as the body's
scalar arithmetic; then rounded half to even, clipped and stored eight at a time.

:func:`blur_columns` picks this for uint8 values and the body for every other dtype.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, overload

from fastmix.kernels import bodies

#: Values one vector holds.
LANES = 8


def _mask(builder, count):
    """``<8 x i1>``: lanes below ``count`` (an i64 of at most 8)."""
    bits = builder.sub(builder.shl(ir.Constant(ir.IntType(64), 1), count),
                       ir.Constant(ir.IntType(64), 1))
    return builder.bitcast(builder.trunc(bits, ir.IntType(LANES)),
                           ir.VectorType(ir.IntType(1), LANES))


def _masked(builder, name, return_type, argument_types):
    return cgutils.get_or_insert_function(builder.module,
                                          ir.FunctionType(return_type, argument_types), name)


@intrinsic
def sum_taps(typingctx, pixels, at, stride, weights, taps, line, line_at, count):
    """``line.flat[line_at + i] = sum_k weights[k] * pixels.flat[at + i + k * stride]``.

    For ``i < count <= 8`` (lanes past ``count`` read nothing; all eight lanes of ``line``
    are written, so ``line`` needs eight values from ``line_at``). ``pixels`` is uint8.
    """
    if pixels.layout != "C" or pixels.dtype != types.uint8 or line.layout != "C":
        return None  # flat offsets need C-contiguous arrays
    signature = types.void(pixels, types.intp, types.intp, weights, types.intp, line,
                           types.intp, types.intp)

    def codegen(context, builder, signature, arguments):
        pixels_value, at, stride, weights_value, taps, line_value, line_at, count = arguments
        byte_vector = ir.VectorType(ir.IntType(8), LANES)
        double_vector = ir.VectorType(ir.DoubleType(), LANES)
        word = ir.IntType(32)
        mask_type = ir.VectorType(ir.IntType(1), LANES)
        load = _masked(builder, "llvm.masked.load.v8i8.p0", byte_vector,
                       [ir.PointerType(byte_vector), word, mask_type, byte_vector])
        pixel_data = context.make_array(signature.args[0])(context, builder, pixels_value).data
        weight_data = context.make_array(signature.args[3])(
            context, builder, weights_value).data
        line_data = context.make_array(signature.args[5])(context, builder, line_value).data
        mask = _mask(builder, count)
        total = cgutils.alloca_once_value(builder, ir.Constant(double_vector, None))
        with cgutils.for_range(builder, taps) as loop:
            tap = loop.index
            address = builder.gep(pixel_data, [builder.add(at, builder.mul(tap, stride))])
            values = builder.call(load, [builder.bitcast(address, ir.PointerType(byte_vector)),
                                         ir.Constant(word, 1), mask,
                                         ir.Constant(byte_vector, None)])
            weight = builder.load(builder.gep(weight_data, [tap]))
            splat = builder.insert_element(ir.Constant(double_vector, ir.Undefined), weight,
                                           ir.Constant(word, 0))
            splat = builder.shuffle_vector(splat, splat, ir.Constant(
                ir.VectorType(word, LANES), [0] * LANES))
            product = builder.fmul(splat, builder.uitofp(values, double_vector))
            builder.store(builder.fadd(builder.load(total), product), total)
        target = builder.bitcast(builder.gep(line_data, [line_at]),
                                 ir.PointerType(double_vector))
        builder.store(builder.load(total), target, align=8)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def store_rounded(typingctx, line, line_at, pixels, at, count):
    """``pixels.flat[at + i] = clip(rint(line.flat[line_at + i]), 0, 255)`` for ``i < count``.

    Rounds half to even as :func:`fastmix.kernels.bodies.round_half_even` does (the
    same two additions) and clips as :func:`~fastmix.kernels.bodies.clip_value`.
    """
    if pixels.layout != "C" or pixels.dtype != types.uint8 or line.layout != "C":
        return None  # flat offsets need C-contiguous arrays
    signature = types.void(line, types.intp, pixels, types.intp, types.intp)

    def codegen(context, builder, signature, arguments):
        line_value, line_at, pixels_value, at, count = arguments
        byte_vector = ir.VectorType(ir.IntType(8), LANES)
        double_vector = ir.VectorType(ir.DoubleType(), LANES)
        word = ir.IntType(32)
        mask_type = ir.VectorType(ir.IntType(1), LANES)
        store = _masked(builder, "llvm.masked.store.v8i8.p0", ir.VoidType(),
                        [byte_vector, ir.PointerType(byte_vector), word, mask_type])
        line_data = context.make_array(signature.args[0])(context, builder, line_value).data
        pixel_data = context.make_array(signature.args[2])(context, builder, pixels_value).data
        total = builder.load(builder.bitcast(builder.gep(line_data, [line_at]),
                                             ir.PointerType(double_vector)), align=8)
        shift = ir.Constant(double_vector, [bodies.ROUNDING_SHIFT] * LANES)
        rounded = builder.fsub(builder.fadd(total, shift), shift)
        low = ir.Constant(double_vector, [0.0] * LANES)
        high = ir.Constant(double_vector, [255.0] * LANES)
        rounded = builder.select(builder.fcmp_ordered("<", rounded, low), low, rounded)
        rounded = builder.select(builder.fcmp_ordered(">", rounded, high), high, rounded)
        address = builder.bitcast(builder.gep(pixel_data, [at]), ir.PointerType(byte_vector))
        builder.call(store, [builder.fptoui(rounded, byte_vector), address,
                             ir.Constant(word, 1), _mask(builder, count)])
        return context.get_dummy_value()

    return signature, codegen


def blur_columns(pixels, image, band_cols, runs, line, weights, radius, channels, low, high,
                 integer):
    """Pass 2 of the seam blur (:func:`fastmix.kernels.bodies.blur_band_cols`).

    ``runs[r]`` is ``(first, last)``: a run of adjacent band columns. ``line`` is float64
    scratch of at least ``band_cols.size * channels + 8`` values. Jitted code only.
    """


@overload(blur_columns, jit_options={"error_model": "numpy"})
def _blur_columns(pixels, image, band_cols, runs, line, weights, radius, channels, low, high,
                  integer):
    if pixels.dtype != types.uint8:
        def blur_values(pixels, image, band_cols, runs, line, weights, radius, channels, low,
                        high, integer):
            bodies.blur_band_cols(pixels, image, band_cols, line, weights, radius, channels,
                                  low, high, integer)
        return blur_values

    def blur_bytes(pixels, image, band_cols, runs, line, weights, radius, channels, low, high,
                   integer):
        height = pixels.shape[1]
        values = pixels.shape[2]
        width = values // channels
        taps = 2 * radius + 1
        # Vectors only where every run's taps stay inside the image (else the body clamps).
        for run in range(runs.shape[0]):
            if runs[run, 0] < radius or runs[run, 1] + radius > width:
                bodies.blur_band_cols(pixels, image, band_cols, line, weights, radius,
                                      channels, low, high, integer)
                return
        for row in range(height):
            start = (image * height + row) * values
            at = 0
            for run in range(runs.shape[0]):
                first = runs[run, 0] * channels
                count = (runs[run, 1] - runs[run, 0]) * channels
                for chunk in range(0, count, LANES):
                    sum_taps(pixels, start + first + chunk - radius * channels, channels,
                             weights, taps, line, at + chunk, min(LANES, count - chunk))
                at += count
            # Stored once every run of the row is summed: runs may share taps.
            at = 0
            for run in range(runs.shape[0]):
                first = runs[run, 0] * channels
                count = (runs[run, 1] - runs[run, 0]) * channels
                for chunk in range(0, count, LANES):
                    store_rounded(line, at + chunk, pixels, start + first + chunk,
                                  min(LANES, count - chunk))
                at += count

    return blur_bytes


#: Values one fixed-point vector holds (:func:`sum_taps_fixed`): 16 int32 lanes.
FIXED_LANES = 16


@intrinsic
def sum_taps_fixed(typingctx, pixels, at, stride, weights, taps, line, line_at, count):
    """:func:`sum_taps` in fixed point (hardening format 2): 16 int32 lanes, exact.

    ``line.flat[line_at + i] = sum_k weights[k] * pixels.flat[at + i + k * stride]`` for
    ``i < count <= 16`` (uint8 values, int32 weights summing to ``2**15``: the sums stay
    below ``2**23``); ``line`` is int32 with 16 values from ``line_at``. (float32 lanes,
    exact below ``2**24`` too, measured no faster: 6.1 against 5.8 us an image, 64x64x3,
    6x6 blocks, one thread, a loaded machine.)
    """
    if pixels.layout != "C" or pixels.dtype != types.uint8 or line.layout != "C" or \
            line.dtype != types.int32 or weights.dtype != types.int32:
        return None
    signature = types.void(pixels, types.intp, types.intp, weights, types.intp, line,
                           types.intp, types.intp)

    def codegen(context, builder, signature, arguments):
        pixels_value, at, stride, weights_value, taps, line_value, line_at, count = arguments
        lanes = FIXED_LANES
        byte_vector = ir.VectorType(ir.IntType(8), lanes)
        int_vector = ir.VectorType(ir.IntType(32), lanes)
        word = ir.IntType(32)
        mask_type = ir.VectorType(ir.IntType(1), lanes)
        load = _masked(builder, "llvm.masked.load.v16i8.p0", byte_vector,
                       [ir.PointerType(byte_vector), word, mask_type, byte_vector])
        pixel_data = context.make_array(signature.args[0])(context, builder, pixels_value).data
        weight_data = context.make_array(signature.args[3])(
            context, builder, weights_value).data
        line_data = context.make_array(signature.args[5])(context, builder, line_value).data
        mask = _mask_of(builder, count, lanes)
        total = cgutils.alloca_once_value(builder, ir.Constant(int_vector, None))
        with cgutils.for_range(builder, taps) as loop:
            tap = loop.index
            address = builder.gep(pixel_data, [builder.add(at, builder.mul(tap, stride))])
            values = builder.call(load, [builder.bitcast(address, ir.PointerType(byte_vector)),
                                         ir.Constant(word, 1), mask,
                                         ir.Constant(byte_vector, None)])
            weight = builder.load(builder.gep(weight_data, [tap]))
            splat = builder.insert_element(ir.Constant(int_vector, ir.Undefined), weight,
                                           ir.Constant(word, 0))
            splat = builder.shuffle_vector(splat, splat, ir.Constant(
                ir.VectorType(word, lanes), [0] * lanes))
            product = builder.mul(splat, builder.zext(values, int_vector))
            builder.store(builder.add(builder.load(total), product), total)
        target = builder.bitcast(builder.gep(line_data, [line_at]), ir.PointerType(int_vector))
        builder.store(builder.load(total), target, align=4)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def store_fixed(typingctx, line, line_at, pixels, at, count):
    """``pixels.flat[at + i] = (line.flat[line_at + i] + 2**14) >> 15`` for ``i < count <= 16``.

    :func:`fastmix.kernels.bodies.fixed_round` of :func:`sum_taps_fixed`'s sums (non-negative:
    a logical shift), stored as uint8.
    """
    if pixels.layout != "C" or pixels.dtype != types.uint8 or line.layout != "C" or \
            line.dtype != types.int32:
        return None
    signature = types.void(line, types.intp, pixels, types.intp, types.intp)

    def codegen(context, builder, signature, arguments):
        line_value, line_at, pixels_value, at, count = arguments
        lanes = FIXED_LANES
        byte_vector = ir.VectorType(ir.IntType(8), lanes)
        int_vector = ir.VectorType(ir.IntType(32), lanes)
        word = ir.IntType(32)
        mask_type = ir.VectorType(ir.IntType(1), lanes)
        store = _masked(builder, "llvm.masked.store.v16i8.p0", ir.VoidType(),
                        [byte_vector, ir.PointerType(byte_vector), word, mask_type])
        line_data = context.make_array(signature.args[0])(context, builder, line_value).data
        pixel_data = context.make_array(signature.args[2])(context, builder, pixels_value).data
        total = builder.load(builder.bitcast(builder.gep(line_data, [line_at]),
                                             ir.PointerType(int_vector)), align=4)
        half = ir.Constant(int_vector, [1 << (bodies.FIXED_SHIFT - 1)] * lanes)
        shift = ir.Constant(int_vector, [bodies.FIXED_SHIFT] * lanes)
        rounded = builder.lshr(builder.add(total, half), shift)
        address = builder.bitcast(builder.gep(pixel_data, [at]), ir.PointerType(byte_vector))
        builder.call(store, [builder.trunc(rounded, byte_vector), address,
                             ir.Constant(word, 1), _mask_of(builder, count, lanes)])
        return context.get_dummy_value()

    return signature, codegen


def _mask_of(builder, count, lanes):
    """``<lanes x i1>``: lanes below ``count`` (an i64 of at most ``lanes``)."""
    bits = builder.sub(builder.shl(ir.Constant(ir.IntType(64), 1), count),
                       ir.Constant(ir.IntType(64), 1))
    return builder.bitcast(builder.trunc(bits, ir.IntType(lanes)),
                           ir.VectorType(ir.IntType(1), lanes))


def blur_columns_fixed(pixels, image, band_cols, runs, line, weights, radius, channels):
    """Pass 2 of the seam blur in fixed point (``bodies.blur_band_cols_fixed``).

    uint8 values with int32 ``weights`` and ``line`` run 16 values at a time
    (:func:`sum_taps_fixed`); other dtypes the body. ``line`` holds at least
    ``band_cols.size * channels + 16`` values. Jitted code only.
    """


@overload(blur_columns_fixed, jit_options={"error_model": "numpy"})
def _blur_columns_fixed(pixels, image, band_cols, runs, line, weights, radius, channels):
    if pixels.dtype != types.uint8 or line.dtype != types.int32 or \
            weights.dtype != types.int32:
        def blur_values(pixels, image, band_cols, runs, line, weights, radius, channels):
            bodies.blur_band_cols_fixed(pixels, image, band_cols, line, weights, radius,
                                        channels)
        return blur_values

    def blur_bytes(pixels, image, band_cols, runs, line, weights, radius, channels):
        height = pixels.shape[1]
        values = pixels.shape[2]
        width = values // channels
        taps = 2 * radius + 1
        for run in range(runs.shape[0]):
            if runs[run, 0] < radius or runs[run, 1] + radius > width:
                bodies.blur_band_cols_fixed(pixels, image, band_cols, line, weights, radius,
                                            channels)
                return
        for row in range(height):
            start = (image * height + row) * values
            at = 0
            for run in range(runs.shape[0]):
                first = runs[run, 0] * channels
                count = (runs[run, 1] - runs[run, 0]) * channels
                for chunk in range(0, count, FIXED_LANES):
                    sum_taps_fixed(pixels, start + first + chunk - radius * channels, channels,
                                   weights, taps, line, at + chunk,
                                   min(FIXED_LANES, count - chunk))
                at += count
            at = 0
            for run in range(runs.shape[0]):
                first = runs[run, 0] * channels
                count = (runs[run, 1] - runs[run, 0]) * channels
                for chunk in range(0, count, FIXED_LANES):
                    store_fixed(line, at + chunk, pixels, start + first + chunk,
                                min(FIXED_LANES, count - chunk))
                at += count

    return blur_bytes


@intrinsic
def prefetch(typingctx, values, at):
    """Ask the CPU to bring the cache line of ``values.flat[at]`` in (``llvm.prefetch``).

    A hint only: nothing is read, and an address past the array's end is never touched.
    """
    if values.layout != "C":
        return None
    signature = types.void(values, types.intp)

    def codegen(context, builder, signature, arguments):
        data = context.make_array(signature.args[0])(context, builder, arguments[0]).data
        byte_pointer = ir.PointerType(ir.IntType(8))
        word = ir.IntType(32)
        hint = _masked(builder, "llvm.prefetch.p0", ir.VoidType(),
                       [byte_pointer, word, word, word])
        address = builder.bitcast(builder.gep(data, [arguments[1]]), byte_pointer)
        builder.call(hint, [address, ir.Constant(word, 0), ir.Constant(word, 3),
                            ir.Constant(word, 1)])
        return context.get_dummy_value()

    return signature, codegen
