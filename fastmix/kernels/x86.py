"""The level-table lookup as 64-byte vectors, for x86 CPUs with AVX-512 VBMI.

Numba's loop vectoriser cannot vectorise a table lookup (it would need a gather), so a
scalar lookup moves a byte at a time. AVX-512 VBMI's ``vpermi2b`` looks up 64 bytes at
once in a 128-byte table; two of them and a select on each index's top bit look up 64
bytes in a 256-entry table. :func:`look_up_block` gives the bytes of
:func:`fastmix.kernels.harden_body.look_up_block` on uint8 values (``offset`` 0).

Compiling a call to :func:`look_up_64` on a CPU without VBMI fails, so the CPU backend
compiles its VBMI kernel only where :func:`has_vbmi` says so (it asks LLVM for the host's
features; nothing is probed at import).
"""

from __future__ import annotations

from functools import cache

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, register_jitable

#: Bytes one :func:`look_up_64` handles.
VECTOR_BYTES = 64


@cache
def has_vbmi() -> bool:
    """Whether this CPU has AVX-512 VBMI (and BW, for the masked byte loads and stores)."""
    from llvmlite import binding

    features = binding.get_host_cpu_features()
    return bool(features.get("avx512vbmi")) and bool(features.get("avx512bw"))


@intrinsic
def look_up_64(typingctx, table, pixels, at, count):
    """``pixels.flat[at + i] = table[pixels.flat[at + i]]`` for ``i < count <= 64`` (uint8).

    ``table`` holds 256 uint8 values; ``pixels`` is a C-contiguous uint8 array. Bytes at
    and after ``count`` are neither read nor written (masked load and store).
    """
    if pixels.layout != "C" or pixels.dtype != types.uint8 or table.dtype != types.uint8:
        return None  # flat offsets need C-contiguous bytes
    signature = types.void(table, pixels, types.intp, types.intp)

    def codegen(context, builder, signature, arguments):
        table_value, pixels_value, at_value, count_value = arguments
        byte, word, lane = ir.IntType(8), ir.IntType(32), ir.IntType(64)
        vector = ir.VectorType(byte, VECTOR_BYTES)
        mask_type = ir.VectorType(ir.IntType(1), VECTOR_BYTES)
        pointer = ir.PointerType(vector)
        module = builder.module
        load = cgutils.get_or_insert_function(
            module, ir.FunctionType(vector, [pointer, word, mask_type, vector]),
            "llvm.masked.load.v64i8.p0")
        store = cgutils.get_or_insert_function(
            module, ir.FunctionType(ir.VoidType(), [vector, pointer, word, mask_type]),
            "llvm.masked.store.v64i8.p0")
        permute = cgutils.get_or_insert_function(
            module, ir.FunctionType(vector, [vector, vector, vector]),
            "llvm.x86.avx512.vpermi2var.qi.512")
        table_data = context.make_array(signature.args[0])(context, builder, table_value).data
        pixel_data = context.make_array(signature.args[1])(context, builder, pixels_value).data
        quarters = [builder.load(builder.bitcast(
            builder.gep(table_data, [ir.Constant(lane, VECTOR_BYTES * k)]), pointer), align=1)
            for k in range(4)]
        # Lanes below count: the low count bits of a 64-bit word (all of them at 64).
        shifted = builder.shl(ir.Constant(lane, 1), builder.and_(count_value,
                                                                 ir.Constant(lane, 63)))
        bits = builder.select(builder.icmp_unsigned(">=", count_value, ir.Constant(lane, 64)),
                              ir.Constant(lane, -1), builder.sub(shifted, ir.Constant(lane, 1)))
        mask = builder.bitcast(bits, mask_type)
        address = builder.bitcast(builder.gep(pixel_data, [at_value]), pointer)
        alignment = ir.Constant(word, 1)
        index = builder.call(load, [address, alignment, mask, ir.Constant(vector, None)])
        low_half = builder.call(permute, [quarters[0], index, quarters[1]])
        high_half = builder.call(permute, [quarters[2], index, quarters[3]])
        upper = builder.icmp_signed("<", index, ir.Constant(vector, None))
        builder.call(store, [builder.select(upper, high_half, low_half), address, alignment,
                             mask])
        return context.get_dummy_value()

    return signature, codegen


@register_jitable(inline="always")
def look_up_block(out, image, top, left, height, width, channels, table, offset):
    """:func:`fastmix.kernels.harden_body.look_up_block` on uint8 values, 64 at a time."""
    values = width * channels
    row_values = out.shape[2]
    for row in range(top, top + height):
        at = (image * out.shape[1] + row) * row_values + left * channels
        end = at + values
        while at < end:
            look_up_64(table, out, at, min(VECTOR_BYTES, end - at))
            at += VECTOR_BYTES

