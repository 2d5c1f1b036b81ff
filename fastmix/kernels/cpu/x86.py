"""The level-table lookup as 64-byte vectors, for x86 CPUs with AVX-512 VBMI.

Numba's loop vectoriser cannot vectorise a table lookup (it would need a gather), so a
scalar lookup moves a byte at a time. AVX-512 VBMI's ``vpermi2b`` looks up 64 bytes at
once in a 128-byte table; two of them and a select on each index's top bit look up 64
bytes in a 256-entry table. :func:`look_up_block` gives the bytes of
:func:`fastmix.kernels.bodies.look_up_block` on uint8 values (``offset`` 0).

Compiling a call to :func:`look_up_64` on a CPU without VBMI fails, so the CPU backend
compiles its VBMI kernel only where :func:`has_vbmi` says so (it asks LLVM for the host's
features; nothing is probed at import).
"""

from __future__ import annotations

from functools import cache

import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

from fastmix.kernels import bodies

#: Bytes one :func:`look_up_64` handles.
VECTOR_BYTES = 64


@cache
def has_vbmi() -> bool:
    """Whether this CPU has AVX-512 VBMI (and BW, for the masked byte loads and stores)."""
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    return bool(features.get("avx512vbmi")) and bool(features.get("avx512bw"))


BYTES = ir.VectorType(ir.IntType(8), VECTOR_BYTES)
MASK = ir.VectorType(ir.IntType(1), VECTOR_BYTES)
POINTER = ir.PointerType(BYTES)
WORD = ir.IntType(32)


def _function(builder, name, return_type, argument_types):
    return cgutils.get_or_insert_function(builder.module,
                                          ir.FunctionType(return_type, argument_types), name)


def _masked_load(builder, data, at, mask):
    """Return ``data[at:at + 64]`` where ``mask`` is set (zero elsewhere, nothing read)."""
    load = _function(builder, "llvm.masked.load.v64i8.p0", BYTES, [POINTER, WORD, MASK, BYTES])
    return builder.call(load, [builder.bitcast(builder.gep(data, [at]), POINTER),
                               ir.Constant(WORD, 1), mask, ir.Constant(BYTES, None)])


def _masked_store(builder, values, data, at, mask):
    """``data[at:at + 64] = values`` where ``mask`` is set (nothing written elsewhere)."""
    store = _function(builder, "llvm.masked.store.v64i8.p0", ir.VoidType(),
                      [BYTES, POINTER, WORD, MASK])
    builder.call(store, [values, builder.bitcast(builder.gep(data, [at]), POINTER),
                         ir.Constant(WORD, 1), mask])


def _looked_up(builder, table_data, index):
    """``table[index]`` for 64 byte indices into a 256-byte table: two ``vpermi2b``."""
    permute = _function(builder, "llvm.x86.avx512.vpermi2var.qi.512", BYTES,
                        [BYTES, BYTES, BYTES])
    quarters = [builder.load(builder.bitcast(
        builder.gep(table_data, [ir.Constant(ir.IntType(64), VECTOR_BYTES * k)]), POINTER),
        align=1) for k in range(4)]
    low_half = builder.call(permute, [quarters[0], index, quarters[1]])
    high_half = builder.call(permute, [quarters[2], index, quarters[3]])
    upper = builder.icmp_signed("<", index, ir.Constant(BYTES, None))
    return builder.select(upper, high_half, low_half)


def _data(context, builder, signature, arguments, position):
    return context.make_array(signature.args[position])(context, builder,
                                                        arguments[position]).data


def _bytes_only(*arrays) -> bool:
    return all(array.layout == "C" and array.dtype == types.uint8 for array in arrays)


@intrinsic
def look_up_64(typingctx, table, pixels, at, count):
    """``pixels.flat[at + i] = table[pixels.flat[at + i]]`` for ``i < count <= 64`` (uint8).

    ``table`` holds 256 uint8 values; ``pixels`` is a C-contiguous uint8 array. Bytes at
    and after ``count`` are neither read nor written (masked load and store).
    """
    if not _bytes_only(table, pixels):
        return None  # flat offsets need C-contiguous bytes
    signature = types.void(table, pixels, types.intp, types.intp)

    def codegen(context, builder, signature, arguments):
        at, count = arguments[2], arguments[3]
        pixel_data = _data(context, builder, signature, arguments, 1)
        mask = builder.bitcast(_low_bits(builder, count), MASK)
        index = _masked_load(builder, pixel_data, at, mask)
        _masked_store(builder, _looked_up(builder, _data(context, builder, signature,
                                                          arguments, 0), index),
                      pixel_data, at, mask)
        return context.get_dummy_value()

    return signature, codegen


@register_jitable(inline="always")
def look_up_block(out, image, top, left, height, width, channels, table, offset):
    """:func:`fastmix.kernels.bodies.look_up_block` on uint8 values, 64 at a time."""
    values = width * channels
    row_values = out.shape[2]
    for row in range(top, top + height):
        at = (image * out.shape[1] + row) * row_values + left * channels
        end = at + values
        while at < end:
            look_up_64(table, out, at, min(VECTOR_BYTES, end - at))
            at += VECTOR_BYTES



@intrinsic
def mirror_64(typingctx, table, source, source_at, out, out_at, index, index_at, count,
              look_up):
    """``out.flat[out_at + j] = v(source.flat[source_at + index[index_at + j]])``, ``j < count``.

    ``v`` is the level table's lookup when ``look_up`` is true, else the value itself.
    ``index`` holds 64 byte positions (a permutation of the ``count`` bytes read: the
    reversed pixel order of a mirrored row); one ``vpermb`` moves them all.
    """
    if not _bytes_only(table, source, out, index):
        return None  # flat offsets need C-contiguous bytes
    signature = types.void(table, source, types.intp, out, types.intp, index, types.intp,
                           types.intp, types.boolean)

    def codegen(context, builder, signature, arguments):
        source_at, out_at, index_at, count, look_up_value = (
            arguments[2], arguments[4], arguments[6], arguments[7], arguments[8])
        permute = _function(builder, "llvm.x86.avx512.permvar.qi.512", BYTES, [BYTES, BYTES])
        mask = builder.bitcast(_low_bits(builder, count), MASK)
        read = _masked_load(builder, _data(context, builder, signature, arguments, 1),
                            source_at, mask)
        order = builder.load(builder.bitcast(builder.gep(
            _data(context, builder, signature, arguments, 5), [index_at]), POINTER), align=1)
        moved = builder.call(permute, [read, order])
        looked_up = _looked_up(builder, _data(context, builder, signature, arguments, 0), moved)
        flag = look_up_value
        if flag.type != ir.IntType(1):
            flag = builder.icmp_unsigned("!=", flag, ir.Constant(flag.type, 0))
        _masked_store(builder, builder.select(flag, looked_up, moved),
                      _data(context, builder, signature, arguments, 3), out_at, mask)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def copy_64(typingctx, source, source_at, out, out_at, count):
    """``out.flat[out_at + i] = source.flat[source_at + i]`` for ``i < count <= 64`` (uint8)."""
    if not _bytes_only(source, out):
        return None
    signature = types.void(source, types.intp, out, types.intp, types.intp)

    def codegen(context, builder, signature, arguments):
        source_at, out_at, count = arguments[1], arguments[3], arguments[4]
        mask = builder.bitcast(_low_bits(builder, count), MASK)
        values = _masked_load(builder, _data(context, builder, signature, arguments, 0),
                              source_at, mask)
        _masked_store(builder, values, _data(context, builder, signature, arguments, 2), out_at,
                      mask)
        return context.get_dummy_value()

    return signature, codegen


@intrinsic
def permute_128(typingctx, table, in_at, index, index_at, out_at, look_up):
    """``table.flat[out_at + j] = v(table.flat[in_at + index[index_at + j]])``, ``j < 128``.

    Two ``vpermi2b`` move any of 128 bytes to any of 128 places; ``v`` is the lookup in the
    level table ``table[:256]`` when ``look_up`` is true, else the value itself.
    """
    if not _bytes_only(table, index):
        return None
    signature = types.void(table, types.intp, index, types.intp, types.intp, types.boolean)

    def codegen(context, builder, signature, arguments):
        in_at, index_at, out_at, look_up_value = (arguments[1], arguments[3], arguments[4],
                                                  arguments[5])
        permute = _function(builder, "llvm.x86.avx512.vpermi2var.qi.512", BYTES,
                            [BYTES, BYTES, BYTES])
        table_data = _data(context, builder, signature, arguments, 0)
        index_data = _data(context, builder, signature, arguments, 2)
        sixty_four = ir.Constant(in_at.type, VECTOR_BYTES)

        def vector(data, at):
            return builder.load(builder.bitcast(builder.gep(data, [at]), POINTER), align=1)

        first = vector(table_data, in_at)
        second = vector(table_data, builder.add(in_at, sixty_four))
        flag = look_up_value
        if flag.type != ir.IntType(1):
            flag = builder.icmp_unsigned("!=", flag, ir.Constant(flag.type, 0))
        for half in range(2):
            offset = ir.Constant(in_at.type, VECTOR_BYTES * half)
            moved = builder.call(permute, [first, vector(index_data,
                                                         builder.add(index_at, offset)), second])
            value = builder.select(flag, _looked_up(builder, table_data, moved), moved)
            builder.store(value, builder.bitcast(builder.gep(table_data, [
                builder.add(out_at, offset)]), POINTER), align=1)
        return context.get_dummy_value()

    return signature, codegen


#: Blocks of at most this many bytes (and rows of at most 64) are oriented in two vectors.
SMALL_BLOCK_BYTES = 2 * VECTOR_BYTES


@register_jitable(inline="always")
def fill_orient_index(index, row_edges, col_edges, channels):
    """``index[c, code, p]``: the source byte of output byte ``p`` of a small block.

    ``c`` is the block's shape class, ``2 * (last block row) + (last block column)``; each
    class has one block shape. Output pixel ``(y, x)`` reads source pixel
    ``oriented_source(code, y, x, H, W)`` (``code`` 4-7 only on square blocks; others keep
    the identity there, never drawn), both in the block's bytes row by row.
    """
    block_rows = row_edges.size - 1
    block_cols = col_edges.size - 1
    for shape in range(4):
        block_row = block_rows - 1 if shape >= 2 else 0
        block_col = block_cols - 1 if shape & 1 else 0
        height = row_edges[block_row + 1] - row_edges[block_row]
        width = col_edges[block_col + 1] - col_edges[block_col]
        if height * width * channels > SMALL_BLOCK_BYTES:
            continue
        for code in range(8):
            usable = code < 4 or height == width
            for y in range(height):
                for x in range(width):
                    row, col = y, x
                    if usable:
                        row, col = bodies.oriented_source(code, y, x, height, width)
                    for channel in range(channels):
                        index[shape, code, (y * width + x) * channels + channel] = \
                            (row * width + col) * channels + channel


@register_jitable
def orient_indices(row_edges, col_edges, channels):
    """Return the small blocks' byte orders (:func:`fill_orient_index`), ``(4, 8, 128)``."""
    index = np.zeros((4, 8, SMALL_BLOCK_BYTES), dtype=np.uint8)
    fill_orient_index(index, row_edges, col_edges, channels)
    return index


def _low_bits(builder, count):
    """Return an i64 whose low ``count`` bits are set (all 64 from 64 on)."""
    lane = ir.IntType(64)
    shifted = builder.shl(ir.Constant(lane, 1), builder.and_(count, ir.Constant(lane, 63)))
    return builder.select(builder.icmp_unsigned(">=", count, ir.Constant(lane, 64)),
                          ir.Constant(lane, -1), builder.sub(shifted, ir.Constant(lane, 1)))


@register_jitable(inline="always")
def _mirror_order(index, at, pixels, channels):
    """``index[at + p * channels + c] = (pixels - 1 - p) * channels + c``: pixels reversed."""
    for pixel in range(pixels):
        for channel in range(channels):
            index[at + pixel * channels + channel] = (pixels - 1 - pixel) * channels + channel


@intrinsic
def copy_4(typingctx, source, source_at, out, out_at):
    """``out.flat[out_at:out_at + 4] = source.flat[source_at:source_at + 4]`` (uint8, unaligned)."""
    if not _bytes_only(source, out):
        return None
    signature = types.void(source, types.intp, out, types.intp)

    def codegen(context, builder, signature, arguments):
        word_pointer = ir.PointerType(ir.IntType(32))
        read = builder.bitcast(builder.gep(_data(context, builder, signature, arguments, 0),
                                           [arguments[1]]), word_pointer)
        written = builder.bitcast(builder.gep(_data(context, builder, signature, arguments, 2),
                                              [arguments[3]]), word_pointer)
        builder.store(builder.load(read, align=1), written, align=1)
        return context.get_dummy_value()

    return signature, codegen


@register_jitable(inline="always")
def _transpose_rgb(source, out, image, source_image, code, top, left, height, width):
    """:func:`fastmix.kernels.bodies.orient_block` for a transposing ``code`` (4-7), RGB.

    Each pixel but a row's last moves as one 4-byte word; the fourth byte lands where the
    row's next pixel is written right after. A word is read only where its fourth byte is
    in the same image row (never past the array's end).
    """
    row_values = out.shape[2]
    image_width = row_values // 3
    first_row = top + height - 1 if code & 2 else top
    row_step = -1 if code & 2 else 1
    for y in range(height):
        column = left + (width - 1 - y if code & 1 else y)
        source_start = (source_image * source.shape[1] + first_row) * row_values + column * 3
        out_start = (image * out.shape[1] + top + y) * row_values + left * 3
        words = width - 1 if column < image_width - 1 else 0
        for x in range(words):
            copy_4(source, source_start + x * row_step * row_values, out, out_start + 3 * x)
        for x in range(words, width):
            source_row = np.uint64(first_row + x * row_step)
            for channel in range(3):
                out[np.uint64(image), np.uint64(top + y), np.uint64((left + x) * 3 + channel)] = \
                    source[np.uint64(source_image), source_row, np.uint64(column * 3 + channel)]


@register_jitable(inline="always")
def orient_and_look_up(source, out, image, source_image, code, top, left, height, width,
                       channels, look_up, table, offset, scratch_at, orient_index, shape):
    """:func:`fastmix.kernels.bodies.orient_and_look_up` on uint8 values, in vectors.

    A block of at most 128 bytes (rows of at most 64) is copied row by row into
    ``table[scratch_at + 128:]``, oriented and looked up there by :func:`permute_128` with
    its byte order ``orient_index[shape, code]`` (:func:`fill_orient_index`), and copied
    out row by row. Mirrored rows of larger blocks (``code`` 1 and 3) are read, reversed
    pixel by pixel with ``vpermb`` and looked up in one pass, up to 64 bytes at a time
    (``table[scratch_at:]`` holds the two byte orders a row needs, 128 bytes); other codes
    are oriented by the body, then looked up 64 bytes at a time.
    """
    row_bytes = width * channels
    row_values = out.shape[2]
    if row_bytes * height <= SMALL_BLOCK_BYTES and row_bytes <= VECTOR_BYTES:
        block_in = scratch_at + SMALL_BLOCK_BYTES
        block_out = block_in + SMALL_BLOCK_BYTES
        source_start = (source_image * source.shape[1] + top) * row_values + left * channels
        out_start = (image * out.shape[1] + top) * row_values + left * channels
        for y in range(height):
            copy_64(source, source_start + y * row_values, table, block_in + y * row_bytes,
                    row_bytes)
        permute_128(table, block_in, orient_index, (shape * 8 + code) * SMALL_BLOCK_BYTES,
                    block_out, look_up)
        for y in range(height):
            copy_64(table, block_out + y * row_bytes, out, out_start + y * row_values,
                    row_bytes)
        return
    if (code != 1 and code != 3) or channels > VECTOR_BYTES:
        if code >= 4 and channels == 3:
            _transpose_rgb(source, out, image, source_image, code, top, left, height, width)
        else:
            bodies.orient_block(source, out, image, source_image, code, top, left, height,
                                width, channels)
        if look_up:
            look_up_block(out, image, top, left, height, width, channels, table, offset)
        return
    per_vector = VECTOR_BYTES // channels
    full, last = scratch_at, scratch_at + VECTOR_BYTES
    _mirror_order(table, full, per_vector, channels)
    remainder = width - (width - 1) // per_vector * per_vector
    _mirror_order(table, last, remainder, channels)
    for y in range(height):
        source_row = top + (height - 1 - y if code & 2 else y)
        source_start = (source_image * source.shape[1] + source_row) * row_values
        out_start = (image * out.shape[1] + top + y) * row_values
        done = 0
        while done < width:
            pixels = min(per_vector, width - done)
            mirror_64(table, source, source_start + (left + width - done - pixels) * channels,
                      out, out_start + (left + done) * channels, table,
                      full if pixels == per_vector else last, pixels * channels, look_up)
            done += pixels
