"""The numba.cuda kernels: the CPU backend's source maps on an NVIDIA GPU, same bodies.

Python functions compiled by numba.cuda on first launch (:func:`compiled_kernels`), calling
the shared bodies of :mod:`fastmix.kernels.bodies` as device functions (bound by
:mod:`fastmix.kernels.compile`); :func:`compile_ptx` compiles each to PTX for the argument
types it is launched with, without a GPU. :mod:`fastmix.kernels.cuda.backend` launches them.

Layout
    Images ``(n, H, W[, C])`` are seen as bytes ``(n, H, W * C * itemsize)`` and those
    bytes as words of 8, 4, 2 or 1 bytes: the widest that divides the row bytes, the
    block-segment bytes and the alignment of both device pointers.
Grid
    x = words of a row, y = rows, z = images, each with a grid-stride loop, so any launch
    geometry covers any shape (the simulator runs with a small one).
Plans
    The source map is made on the host and copied to the device once per window, with two
    small tables: the first block number of every row and the block column of every word.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np
from numba import njit

from fastmix.device_arrays import numba_cuda, simulated
from fastmix.kernels import bodies
from fastmix.kernels.bodies import (
    COPY,
    TABLE,
    blur_band_cols,
    blur_band_rows,
    copy_row_segment,
    copy_run,
    fill_level_table,
    oriented_source,
)
from fastmix.kernels.compile import bind, bodies_for

THREADS_PER_BLOCK = 256
# Each simulated thread is a Python thread: the simulator gets a small launch, and the
# grid-stride loops cover the rest.
SIMULATOR_BLOCK = (4, 2, 1)
SIMULATOR_GRID = (2, 2, 2)
_WORDS = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}

cuda = None  # numba.cuda, which _bound_kernels() gives every kernel as a global

# --- words and launch geometry ------------------------------------------------------------

def word_size(row_bytes: int, segment_bytes: int, *pointers: int) -> int:
    """Return the widest of 8, 4, 2, 1 bytes that divides the rows, segments and pointers."""
    size = math.gcd(8, row_bytes, segment_bytes, *pointers)
    return max(width for width in _WORDS if size % width == 0)


def word_dtype(size: int) -> np.dtype:
    """Return the unsigned integer dtype of ``size`` bytes."""
    return np.dtype(_WORDS[size])


def launch_geometry(count: int, height: int, words: int) -> tuple[tuple, tuple]:
    """``(blocks, threads)`` for ``count`` images of ``height`` rows of ``words`` words.

    A block's threads take whole rows of words (x) over a few rows (y), so a warp reads
    consecutive bytes even when a row is shorter than a warp.
    """
    if simulated():
        return SIMULATOR_GRID, SIMULATOR_BLOCK
    threads_x = min(words, THREADS_PER_BLOCK)
    threads_y = max(1, THREADS_PER_BLOCK // threads_x)
    blocks = (-(-words // threads_x), min(-(-height // threads_y), 65535),
              min(max(count, 1), 65535))
    return blocks, (threads_x, threads_y, 1)


def block_tables(row_bounds: np.ndarray, col_bounds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """First block number of each row, and block column of each word (int32, host).

    ``col_bounds`` are in words. Looking these up replaces a 64-bit division per word.
    """
    block_cols = col_bounds.size - 1
    row_first = np.repeat(np.arange(row_bounds.size - 1, dtype=np.int32) * block_cols,
                          np.diff(row_bounds)).astype(np.int32)
    word_block = np.repeat(np.arange(block_cols, dtype=np.int32), np.diff(col_bounds))
    return row_first, word_block.astype(np.int32)


def small_geometry(count: int, height: int, width: int) -> tuple[tuple, tuple]:
    """Return a launch of at most about 2^19 threads (their scratch is per thread) over z, y, x."""
    if simulated():
        return SIMULATOR_GRID, SIMULATOR_BLOCK
    threads_x = min(max(width, 1), THREADS_PER_BLOCK)
    threads_y = max(1, min(height, THREADS_PER_BLOCK // threads_x))
    grid_x = min(-(-width // threads_x), 64)
    grid_y = min(-(-height // threads_y), 64)
    grid_z = max(1, min(count, (1 << 19) // (threads_x * threads_y * grid_x * grid_y) or 1))
    return (grid_x, grid_y, grid_z), (threads_x, threads_y, 1)


# --- kernels ------------------------------------------------------------------------------
# Python functions compiled by numba.cuda on first launch. They call the shared bodies by
# the names imported above, which _bound_kernels() binds to CUDA device functions (here they
# name the registered bodies, for reading and linting). The grid-stride loops are while
# loops: a range() with a variable step costs a 64-bit division per loop entry, once per
# word in the inner loop.

def _gather(source, out, source_map, first, row_first_block, word_block):
    """``out[i, row, word] = source[source_map[first + i, block], row, word]``."""
    start_x, start_y, start_z = cuda.grid(3)
    step_x, step_y, step_z = cuda.gridsize(3)
    image = start_z
    while image < out.shape[0]:
        row = start_y
        while row < out.shape[1]:
            first_block = row_first_block[row]
            word = start_x
            while word < out.shape[2]:
                copy_row_segment(source, out, image,
                                 source_map[first + image, first_block + word_block[word]],
                                 row, word, 1)
                word += step_x
            row += step_y
        image += step_z


def _hardened_gather(source, out, source_map, codes, jitter, tables, first, row_block,
                     pixel_block, row_edges, col_edges, channels, jitter_step, table_levels,
                     offset, low, span):
    """Oriented gather and jitter of every pixel of ``out`` ``(count, H, W * channels)``.

    One output pixel a thread, through :func:`bodies.copy_run` with a run of one pixel;
    blocks whose level table was filled (:func:`_fill_tables`: blocks with more values than
    levels) look their values up in it.
    """
    start_x, start_y, start_z = cuda.grid(3)
    step_x, step_y, step_z = cuda.gridsize(3)
    block_cols = col_edges.size - 1
    width_pixels = out.shape[2] // channels
    jittered = jitter.shape[0] > 0
    image = start_z
    while image < out.shape[0]:
        planned = first + image
        row = start_y
        while row < out.shape[1]:
            block_row = row_block[row]
            top = row_edges[block_row]
            height = row_edges[block_row + 1] - top
            pixel = start_x
            while pixel < width_pixels:
                block_col = pixel_block[pixel]
                block = block_row * block_cols + block_col
                left = col_edges[block_col]
                width = col_edges[block_col + 1] - left
                source_row, source_col = oriented_source(codes[planned, block], row - top,
                                                         pixel - left, height, width)
                step = COPY
                brightness = contrast = tone = 0.0
                table = tables[0, 0]
                if jittered:
                    brightness = jitter[planned, block, 0]
                    contrast = jitter[planned, block, 1]
                    tone = jitter[planned, block, 2]
                    step = jitter_step
                    if table_levels > 0 and height * width * channels > table_levels:
                        step = TABLE
                        table = tables[image, block]
                copy_run(source, out, image, source_map[planned, block], row,
                         pixel * channels, top + source_row, (left + source_col) * channels,
                         0, channels, 1, channels, step, table, offset, low, span, brightness,
                         contrast, tone)
                pixel += step_x
            row += step_y
        image += step_z


def _fill_tables(tables, levels, jitter, first, row_edges, col_edges, channels, low, span):
    """Fill the level table of every block with more values than levels, a block a thread."""
    start_x, start_y, start_z = cuda.grid(3)
    step_x, _, step_z = cuda.gridsize(3)
    block_cols = col_edges.size - 1
    if start_y != 0:  # y is not a dimension of this work
        return
    image = start_z
    while image < tables.shape[0]:
        block = start_x
        while block < tables.shape[1]:
            block_row = block // block_cols
            block_col = block - block_row * block_cols
            height = row_edges[block_row + 1] - row_edges[block_row]
            width = col_edges[block_col + 1] - col_edges[block_col]
            if height * width * channels > levels.size:
                fill_level_table(tables[image, block], levels, low, span,
                                 jitter[first + image, block, 0],
                                 jitter[first + image, block, 1],
                                 jitter[first + image, block, 2])
            block += step_x
        image += step_z


def _blur_rows(pixels, band_rows, lines, weights, radius, low, high, integer):
    """Seam blur pass 1, one value column of one image a thread (columns never interact)."""
    start_x, start_y, start_z = cuda.grid(3)
    step_x, step_y, step_z = cuda.gridsize(3)
    if start_y != 0:  # two threads on one column would race
        return
    thread = start_x + step_x * (start_y + step_y * start_z)
    scratch = lines[:, thread:thread + 1]  # threads side by side: coalesced
    image = start_z
    while image < pixels.shape[0]:
        unit = start_x
        while unit < pixels.shape[2]:
            blur_band_rows(pixels[:, :, unit:unit + 1], image, band_rows, scratch, weights,
                           radius, low, high, integer)
            unit += step_x
        image += step_z


def _blur_cols(pixels, band_cols, line, weights, radius, channels, low, high, integer):
    """Seam blur pass 2, one row of one image a thread (rows never interact)."""
    start_x, start_y, start_z = cuda.grid(3)
    step_x, step_y, step_z = cuda.gridsize(3)
    if start_x != 0:  # two threads on one row would race
        return
    scratch = line[:, start_x + step_x * (start_y + step_y * start_z)]  # coalesced
    image = start_z
    while image < pixels.shape[0]:
        row = start_y
        while row < pixels.shape[1]:
            blur_band_cols(pixels[:, row:row + 1, :], image, band_cols, scratch, weights,
                           radius, channels, low, high, integer)
            row += step_y
        image += step_z


#: :func:`fastmix.kernels.bodies.fill_jitter` on the host: the backend draws a window's jitter
#: there and copies it to the device.
fill_jitter = njit(cache=True)(bodies.fill_jitter)

_KERNELS: dict[str, Callable[..., Any]] = {
    "gather": _gather, "hardened_gather": _hardened_gather,
    "fill_tables": _fill_tables, "blur_rows": _blur_rows, "blur_cols": _blur_cols}

libdevice = None  # numba.cuda.libdevice, which _bound_kernels() gives _rounded_product


def _rounded_product(first, second):
    """``first * second`` rounded on its own (``mul.rn``): NVVM never fuses it into an FMA."""
    return libdevice.dmul_rn(first, second)


@cache
def _bound_kernels() -> dict:
    """Return the kernels' Python functions, calling the shared bodies as device functions.

    The bodies come from :func:`fastmix.kernels.compile.bodies_for`, compiled by
    ``numba.cuda.jit(device=True)``. On a GPU, ``product`` (the products that must not be
    fused with an addition, see :mod:`fastmix.kernels.bodies`) becomes ``mul.rn``; NVVM
    contracts a plain ``a * b + c`` into a fused multiply-add, which rounds once instead of
    twice. The simulator runs device functions as Python: there the bodies are plain copies.
    """
    module = numba_cuda()
    if simulated():
        device_bodies = bodies_for(lambda function: function)
    else:
        from numba.cuda import libdevice as device_library

        product = bind(_rounded_product, {}, libdevice=device_library)
        device_bodies = bodies_for(module.jit(device=True), replace={"product": product})
    return {name: bind(kernel, device_bodies, cuda=module) for name, kernel in _KERNELS.items()}


@cache
def compiled_kernels() -> dict:
    """Return the kernels by name, as numba.cuda kernels that compile on first launch."""
    module = numba_cuda()
    return {name: module.jit(function) for name, function in _bound_kernels().items()}


def _array(dtype, dimensions):
    return f"{dtype}[{', '.join([':'] * (dimensions - 1) + ['::1'])}]"


def _ptx_signatures() -> dict[str, list[str]]:
    """Return the argument types each kernel is launched with, for :func:`compile_ptx`."""
    tables = [_array("int32", 1)] * 2
    edges = [_array("int64", 1)] * 2
    signatures: dict[str, list[str]] = {"gather": [], "hardened_gather": [], "fill_tables": [],
                                        "blur_rows": [], "blur_cols": []}
    for word in ("uint8", "uint16", "uint32", "uint64"):
        signatures["gather"].append(
            f"void({_array(word, 3)}, {_array(word, 3)}, {_array('int32', 2)}, int64, "
            f"{', '.join(tables)})")
    for value in ("uint8", "uint16", "int32", "float32", "float64", "uint64"):
        signatures["hardened_gather"].append(
            f"void({_array(value, 3)}, {_array(value, 3)}, {_array('int32', 2)}, "
            f"{_array('uint8', 2)}, {_array('float64', 3)}, {_array(value, 3)}, int64, "
            f"{', '.join(tables)}, {', '.join(edges)}, int64, int64, int64, int64, float64, "
            "float64)")
        signatures["fill_tables"].append(
            f"void({_array(value, 3)}, {_array('float64', 1)}, {_array('float64', 3)}, int64, "
            f"{', '.join(edges)}, int64, float64, float64)")
        signatures["blur_rows"].append(
            f"void({_array(value, 3)}, {_array('int64', 1)}, {_array('float64', 2)}, "
            f"{_array('float64', 1)}, int64, float64, float64, boolean)")
        signatures["blur_cols"].append(
            f"void({_array(value, 3)}, {_array('int64', 1)}, {_array('float64', 2)}, "
            f"{_array('float64', 1)}, int64, int64, float64, float64, boolean)")
    return signatures


def compile_ptx(cc: tuple[int, int] = (9, 0)) -> dict[str, str]:
    """PTX of every kernel for the argument types it is launched with (no GPU needed).

    Used by the tests, so that a kernel the simulator accepts but NVVM rejects fails CI,
    and to check that the hardening arithmetic has no fused multiply-add.
    """
    module = numba_cuda()
    from numba.cuda import dispatcher

    bound = _bound_kernels()
    # A device function compiles for the current device's compute capability; without a
    # GPU there is none, so name the one asked for while compiling.
    current_device = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: type("Device", (), {"compute_capability": cc})
    listing = {}
    try:
        for name, signatures in _ptx_signatures().items():
            for signature in signatures:
                ptx, _ = module.compile_ptx(bound[name], signature, cc=cc)
                listing[f"{name} {signature}"] = ptx
    finally:
        dispatcher.get_current_device = current_device
    return listing


