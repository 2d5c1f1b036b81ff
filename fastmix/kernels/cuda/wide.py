"""Two-element vector loads and stores for the tile kernel: 16-byte words as two uint64.

Numba has no 128-bit integer, and NVVM cannot merge two adjacent 8-byte accesses into one
16-byte access without knowing their alignment. :func:`load_pair` and :func:`store_pair`
emit one ``<2 x T>`` access aligned to its size (``ld.global.v2.u64``, ``st.shared.v2.u64``
for ``T = uint64``); the caller guarantees the alignment (:func:`fastmix.kernels.cuda.kernels.
tile_geometry` chooses 16-byte words only where every address is a multiple of 16).

Imported only to compile for a GPU (or to PTX): it imports ``numba.cuda`` at import time.
The simulator runs plain Python twins (:mod:`fastmix.kernels.cuda.kernels`) instead.
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.cuda import cgutils  # type: ignore[attr-defined]  # numba-cuda, untyped
from numba.cuda.extending import intrinsic


def _element_pointer(context, builder, array_type, array, index):
    array = context.make_array(array_type)(context, builder, value=array)
    return cgutils.get_item_pointer(context, builder, array_type, array, [index],
                                    wraparound=False)


def _vector_type(context, array_type) -> tuple[ir.VectorType, int]:
    element = context.get_value_type(array_type.dtype)
    return ir.VectorType(element, 2), 2 * context.get_abi_sizeof(element)


@intrinsic
def load_pair(typingctx, array, index):
    """``(array[index], array[index + 1])`` as one vector load; ``index`` even, 1-D array."""
    if not isinstance(array, types.Array) or array.ndim != 1 or \
            not isinstance(index, types.Integer):
        return None
    signature = types.UniTuple(array.dtype, 2)(array, index)

    def codegen(context, builder, signature, arguments):
        array_type = signature.args[0]
        vector, size = _vector_type(context, array_type)
        pointer = _element_pointer(context, builder, array_type, *arguments)
        loaded = builder.load(builder.bitcast(pointer, vector.as_pointer()), align=size)
        first = builder.extract_element(loaded, ir.Constant(ir.IntType(32), 0))
        second = builder.extract_element(loaded, ir.Constant(ir.IntType(32), 1))
        return context.make_tuple(builder, signature.return_type, [first, second])

    return signature, codegen


@intrinsic
def store_pair(typingctx, array, index, first, second):
    """``array[index], array[index + 1] = first, second`` as one vector store."""
    if not isinstance(array, types.Array) or array.ndim != 1 or \
            not isinstance(index, types.Integer):
        return None
    signature = types.void(array, index, array.dtype, array.dtype)

    def codegen(context, builder, signature, arguments):
        array_type = signature.args[0]
        array, index, first, second = arguments
        vector, size = _vector_type(context, array_type)
        pointer = _element_pointer(context, builder, array_type, array, index)
        value = ir.Constant(vector, ir.Undefined)
        value = builder.insert_element(value, first, ir.Constant(ir.IntType(32), 0))
        value = builder.insert_element(value, second, ir.Constant(ir.IntType(32), 1))
        builder.store(value, builder.bitcast(pointer, vector.as_pointer()), align=size)
        return context.get_dummy_value()

    return signature, codegen

