"""The numba.cuda kernels: the CPU backend's source maps on an NVIDIA GPU, same bodies.

Python functions compiled by numba.cuda on first launch (:func:`compiled_kernels`), calling
the shared bodies of :mod:`fastmix.kernels.bodies` as device functions (bound by
:mod:`fastmix.kernels.compile`); :func:`compile_ptx` compiles each to PTX for the argument
types it is launched with, without a GPU. :mod:`fastmix.kernels.cuda.backend` launches them.

The tile kernel (``tile_gather``, :func:`_tile_gather`): the plain and the hardened gather
    A thread block takes one *unit* at a time (grid-stride): one image, a range of rows (whole
    block rows, or a piece of one tall block row) and a *group* of consecutive block columns.
    It reads the unit's plan once (source image, orientation code, jitter draws: one entry a
    block) into shared memory; loads each block's source rows into a shared tile with the
    widest aligned loads (16-byte words as one ``ld.global.v2.u64``, else 8, 4, 2 or 1);
    orients and jitters the pixels from that tile into a second one (the orientation an index
    transform, the jitter of 8-bit values through a 256-entry level table per block, filled
    in shared memory by the block's threads); and writes the destination rows, coalesced, in
    the widest words the output allows. A plain gather whose block segments are aligned to
    the load word skips the second tile. :func:`tile_geometry` lays the units out on the
    host; where a block does not fit a tile (or a value is not aligned to the load word) the
    backend falls back to the word kernels below.
The word kernels (``gather``, ``hardened_gather``): the fallback
    Images ``(n, H, W[, C])`` are seen as bytes ``(n, H, W * C * itemsize)`` and those
    bytes as words of 8, 4, 2 or 1 bytes: the widest that divides the row bytes, the
    block-segment bytes and the alignment of both device pointers (:func:`word_size`); one
    word (plain) or one pixel (hardened) a thread, x = words of a row, y = rows, z = images,
    each with a grid-stride loop, so any launch geometry covers any shape (the simulator runs
    with a small one).
Plans
    The source map (and the orientation codes and jitter draws) are made on the host and
    copied to the device once per window, with small per-shape tables.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np
from numba import njit
from numpy import float64, int32, uint8, uint16, uint32, uint64

from fastmix.device_arrays import numba_cuda, simulated
from fastmix.kernels import bodies
from fastmix.kernels.bodies import (
    COPY,
    TABLE,
    blur_band_cols,
    blur_band_cols_fixed,
    blur_band_rows,
    blur_band_rows_fixed,
    copy_row_segment,
    copy_run,
    fill_level_table,
    level_table_value,
    oriented_source,
    store_stepped,
)
from fastmix.kernels.compile import bind, bodies_for

THREADS_PER_BLOCK = 256
# Each simulated thread is a Python thread: the simulator gets a small launch, and the
# grid-stride loops cover the rest.
SIMULATOR_BLOCK = (4, 2, 1)
SIMULATOR_GRID = (2, 2, 2)
_WORDS = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}

cuda = None  # numba.cuda, which _bound_kernels() gives every kernel as a global
PLAIN = False  # bound per tile kernel (_CONSTANTS)
#: The shared tiles' alignment (16 bytes: vector accesses); the simulator takes none.
TILE_ALIGN: int | None = 16

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


# --- the tile kernel's geometry -----------------------------------------------------------

#: Bytes of each of the tile kernel's two shared tiles (source rows in, destination rows out).
#: With the plan and level tables a thread block holds 45 KiB of static shared memory (48 KiB
#: at most): four blocks a multiprocessor, as many as the registers allow (LAUNCH_BOUNDS),
#: fit in an H100's or H200's 228 KiB. Big enough for whole rows of 224x224x3 images in
#: 19-row blocks, so that units store whole, aligned rows.
TILE_BYTES = 20480
TILES_WORDS = 2 * TILE_BYTES // 8
#: Plan entries (blocks) of one unit, at most: the shared plan's size.
MAX_ENTRIES = 64
#: Blocks of one unit that get a level table in shared memory (8-bit jitter), at most.
TABLE_BLOCKS = 12
#: Entries of a shared level table: every level of an 8-bit dtype.
SHARED_LEVELS = 256
TABLE_BYTES = TABLE_BLOCKS * SHARED_LEVELS
#: A unit's rows are at least this many (or a whole block row) when choosing its group.
MIN_TILE_ROWS = 8
TILE_THREADS = 256
#: ``(threads, blocks per multiprocessor)`` each tile kernel is compiled for: ptxas then keeps
#: it within 64 registers (plain: four blocks of 256 threads a multiprocessor, half its
#: threads) and 80 (hardened: three blocks), with no or few spills (measured with ptxas for
#: sm_90; without bounds, Numba's 64-bit index arithmetic takes 99 and 108).
LAUNCH_BOUNDS = {"tile_gather": (TILE_THREADS, 4), "tile_harden": (TILE_THREADS, 3)}
#: Thread blocks of a tile launch, at most: each loops over units (grid-stride).
MAX_TILE_GRID = 16384
SIMULATOR_TILE_THREADS = 8
SIMULATOR_TILE_GRID = 2
#: Where each constant sits in the tile kernel's ``geometry`` vector.
(GROUPS, PIECES, GROUP, HEIGHT, LOAD_WIDTH, STORE_WIDTH, LOAD_ROW, STORE_ROW, STRIDE, DIRECT,
 CHANNELS, BLOCK_COLS) = range(12)


def _alignment(*values: int) -> int:
    """Return the largest power of two (at most the first value) dividing every value."""
    common = math.gcd(*(int(value) for value in values))
    return common & -common if common else int(values[0])


@dataclass(frozen=True)
class TileGeometry:
    """How the tile kernel covers one image shape: words, groups, row pieces, tables (host).

    Attributes
    ----------
    load_width, store_width : int
        Bytes of the words loaded from the source rows and stored to the destination rows
        (16, 8, 4, 2 or 1; 16 is a pair of uint64 moved as one vector).
    direct : bool
        The loaded tile is the destination tile (a plain gather of aligned segments).
    group : int
        Block columns of a unit (the last group may have fewer).
    stride : int
        Bytes of a tile row (a multiple of 16).
    value_size, channels : int
        Bytes of the values the kernel moves between the tiles, and values per pixel.
    pieces : ndarray of int32, shape (pieces, 3)
        Each unit's rows: first row, end row, first block row.
    group_blocks, load_first, out_first : ndarray of int32, shape (groups + 1,)
        First block column of each group; its first entry in ``load_column``; its first
        store word of a destination row.
    load_column, load_block : ndarray of int32
        For each load word of a group's tile row: its word column in the source row, and
        its block's index in the group.
    value_first : ndarray of int32, shape (block columns,)
        Where each block's values begin in its group's tile row (in values).
    """

    load_width: int
    store_width: int
    direct: bool
    group: int
    stride: int
    value_size: int
    channels: int
    pieces: np.ndarray
    group_blocks: np.ndarray
    load_first: np.ndarray
    out_first: np.ndarray
    load_column: np.ndarray
    load_block: np.ndarray
    value_first: np.ndarray
    row_bytes: int
    height: int

    @property
    def groups(self) -> int:
        """Groups of block columns."""
        return self.group_blocks.size - 1

    def units(self, count: int) -> int:
        """Units of a launch over ``count`` images."""
        return count * self.pieces.shape[0] * self.groups

    def vector(self) -> np.ndarray:
        """Return the kernel's ``geometry`` vector (int64)."""
        values = {GROUPS: self.groups, PIECES: self.pieces.shape[0],
                  GROUP: self.group, HEIGHT: self.height, LOAD_WIDTH: self.load_width,
                  STORE_WIDTH: self.store_width, LOAD_ROW: self.row_bytes // self.load_width,
                  STORE_ROW: self.row_bytes // self.store_width, STRIDE: self.stride,
                  DIRECT: int(self.direct), CHANNELS: self.channels,
                  BLOCK_COLS: self.value_first.size}
        return np.array([values[index] for index in range(len(values))], dtype=np.int64)

    def moved_bytes(self, count: int) -> int:
        """Bytes a launch over ``count`` images reads and writes in device memory.

        The source rows as loaded (aligned spans, so a little more than the images where
        block segments are not aligned to the load word) plus the destination rows.
        """
        loaded = int(self.load_first[-1]) * self.load_width
        rows = int(self.pieces[:, 1].max()) if self.pieces.size else 0
        return count * rows * (loaded + self.row_bytes)


def tile_geometry(row_edges: np.ndarray, col_edges: np.ndarray, pixel_bytes: int,
                  itemsize: int, *, plain: bool, transposes: bool, tabled: bool,
                  source_pointer: int = 0, out_pointer: int = 0,
                  budget: int = TILE_BYTES) -> TileGeometry | None:
    """Lay out the tile kernel's units for one image shape, or ``None`` where it cannot run.

    Parameters
    ----------
    row_edges, col_edges : ndarray
        Block edges in pixels.
    pixel_bytes : int
        Bytes of a pixel.
    itemsize : int
        Bytes of a value (the hardened gather's value dtype; ignored when ``plain``).
    plain : bool
        A plain gather (whole pixels move; no orientation or value step).
    transposes : bool
        Some block is transposed (a code of 4 or more): every unit then holds whole block
        rows.
    tabled : bool
        Blocks use a shared level table: at most :data:`TABLE_BLOCKS` blocks a unit.
    source_pointer, out_pointer : int
        Device addresses of the source and destination images (their alignment bounds the
        words).
    budget : int
        Bytes of a tile (at most :data:`TILE_BYTES`).

    Returns
    -------
    TileGeometry or None
        ``None`` when one block (whole, if ``transposes``; else one row of it) does not fit
        a tile, or a value is not aligned to the load word.
    """
    row_edges = np.asarray(row_edges, dtype=np.int64)
    col_edges = np.asarray(col_edges, dtype=np.int64)
    heights, widths = np.diff(row_edges), np.diff(col_edges)
    row_bytes = int(col_edges[-1]) * pixel_bytes
    starts, ends = col_edges[:-1] * pixel_bytes, col_edges[1:] * pixel_bytes
    aligned = _alignment(16, row_bytes, source_pointer)
    segment_width = _alignment(aligned, int(widths[0]) * pixel_bytes)
    # Aligned segments load as they are, unless a wider word is had by loading each
    # segment's aligned span (a few bytes of its neighbours, never used).
    load_width = segment_width if segment_width >= min(8, aligned) else aligned
    value_size = _alignment(load_width, pixel_bytes, 8) if plain else itemsize
    if load_width % value_size:
        return None
    span_starts = starts // load_width * load_width
    span_ends = -(-ends // load_width) * load_width
    span_bytes = span_ends - span_starts
    block_cols, tallest = widths.size, int(heights.max())
    entries = TABLE_BLOCKS if tabled else MAX_ENTRIES
    needed = tallest if transposes else min(tallest, MIN_TILE_ROWS)

    def stride_of(group: int) -> int:
        firsts = np.arange(0, block_cols, group)
        widest = max(int(np.add.reduceat(span_bytes, firsts).max()),
                     int(np.add.reduceat(widths * pixel_bytes, firsts).max()))
        return -(-widest // 16) * 16

    widest = min(block_cols, entries)
    while widest > 1 and stride_of(widest) * needed > budget:
        widest -= 1

    def store_width_of(group: int) -> int:
        if group >= block_cols:  # one group: whole rows
            return _alignment(16, row_bytes, out_pointer)
        return _alignment(16, row_bytes, group * int(widths[0]) * pixel_bytes, out_pointer)

    # The widest group, unless one up to half as wide stores wider words.
    group = max(range(widest, (widest + 1) // 2 - 1, -1),
                key=lambda group: (store_width_of(group), group))
    stride = stride_of(group)
    if stride * (tallest if transposes else 1) > budget:
        return None
    rows_per_unit = budget // stride
    block_rows_per_unit = max(1, entries // group)
    pieces: list[tuple[int, int, int]] = []
    for block_row, (top, height) in enumerate(zip(row_edges[:-1].tolist(), heights.tolist())):
        if height > rows_per_unit:  # a tall block row in pieces (never transposed)
            pieces += [(row, min(row + rows_per_unit, top + height), block_row)
                       for row in range(top, top + height, rows_per_unit)]
            continue
        if pieces and pieces[-1][1] == top and pieces[-1][1] - pieces[-1][0] + height <= \
                rows_per_unit and block_row - pieces[-1][2] < block_rows_per_unit and \
                row_edges[pieces[-1][2]] == pieces[-1][0]:
            pieces[-1] = (pieces[-1][0], top + height, pieces[-1][2])
        else:
            pieces.append((top, top + height, block_row))
    firsts = [*range(0, block_cols, group), block_cols]
    store_width = store_width_of(group)
    load_first, load_column, load_block = [0], list[int](), list[int]()
    value_first = np.zeros(block_cols, dtype=np.int64)
    for first, last in itertools.pairwise(firsts):
        position = 0
        for column in range(first, last):
            words = int(span_bytes[column]) // load_width
            load_column += range(int(span_starts[column]) // load_width,
                                 int(span_starts[column]) // load_width + words)
            load_block += [column - first] * words
            value_first[column] = (position + int(starts[column] - span_starts[column])) \
                // value_size
            position += words * load_width
        load_first.append(len(load_column))

    def int32(values) -> np.ndarray:
        return np.ascontiguousarray(values, dtype=np.int32)

    return TileGeometry(
        load_width=load_width, store_width=store_width,
        direct=plain and load_width == segment_width, group=group, stride=stride,
        value_size=value_size, channels=pixel_bytes // value_size,
        pieces=int32(np.array(pieces, dtype=np.int64).reshape(-1, 3)),
        group_blocks=int32(firsts), load_first=int32(load_first),
        out_first=int32([int(starts[first]) // store_width for first in firsts[:-1]]
                        + [row_bytes // store_width]),
        load_column=int32(load_column), load_block=int32(load_block),
        value_first=int32(value_first), row_bytes=row_bytes, height=int(row_edges[-1]))


def tile_launch(units: int) -> tuple[int, int]:
    """``(blocks, threads)`` of a tile launch over ``units`` units (one-dimensional)."""
    if simulated():
        return min(max(units, 1), SIMULATOR_TILE_GRID), SIMULATOR_TILE_THREADS
    return min(max(units, 1), MAX_TILE_GRID), TILE_THREADS


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


def _blur_rows_fixed(pixels, band_rows, lines, weights, radius):
    """:func:`_blur_rows` in fixed point (hardening format 2): integer weights and scratch."""
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
            blur_band_rows_fixed(pixels[:, :, unit:unit + 1], image, band_rows, scratch,
                                 weights, radius)
            unit += step_x
        image += step_z


def _blur_cols_fixed(pixels, band_cols, line, weights, radius, channels):
    """:func:`_blur_cols` in fixed point (hardening format 2): integer weights and scratch."""
    start_x, start_y, start_z = cuda.grid(3)
    step_x, step_y, step_z = cuda.gridsize(3)
    if start_x != 0:  # two threads on one row would race
        return
    scratch = line[:, start_x + step_x * (start_y + step_y * start_z)]  # coalesced
    image = start_z
    while image < pixels.shape[0]:
        row = start_y
        while row < pixels.shape[1]:
            blur_band_cols_fixed(pixels[:, row:row + 1, :], image, band_cols, scratch, weights,
                                 radius, channels)
            row += step_y
        image += step_z


def _load_words(source, tile, pair, base, words, rows, first_row, group, row_words, height,
                stride, load_column, load_block, row_edges, row_block, first_block_row,
                sources, oriented, orients, thread, threads):
    """Load a unit's source rows into ``tile``: word ``k`` of tile row ``r`` a thread at a time.

    ``source`` and ``tile`` (the shared tiles, the source tile first) are words (two uint64
    a word if ``pair``); tile row ``r`` holds image row ``first_row + r`` of each block's
    source, mirrored upside down (if ``oriented``) for a block whose code mirrors rows
    without transposing: the orientation's row index, applied here. Indices are unsigned
    (never negative): no wraparound code, fewer registers.
    """
    per = 2 if pair else 1
    row = thread // words
    word = thread - row * words
    row_step = threads // words
    word_step = threads - row_step * words
    while row < rows:
        y = first_row + row
        block_row = row_block[uint64(y)]
        entry = uint64((block_row - first_block_row) * group + load_block[uint64(base + word)])
        source_row = y
        if oriented:
            code = orients[entry]
            if code < 4 and code & 2:
                source_row = row_edges[uint64(block_row)] + row_edges[uint64(block_row + 1)] \
                    - 1 - y
        at = uint64(((sources[entry] * height + source_row) * row_words
                     + load_column[uint64(base + word)]) * per)
        to = uint64((row * stride + word) * per)
        if pair:
            low, high = load_pair(source, at)
            store_pair(tile, to, low, high)
        else:
            tile[to] = source[at]
        word += word_step
        row += row_step
        if word >= words:
            word -= words
            row += 1


def _store_words(tile, tile_first, out, pair, first_word, words, rows, first_out_row,
                 row_words, stride, thread, threads):
    """Store ``rows`` tile rows of ``words`` words to the destination rows, coalesced.

    The tile begins at word ``tile_first`` of ``tile`` (the shared tiles).
    """
    per = 2 if pair else 1
    row = thread // words
    word = thread - row * words
    row_step = threads // words
    word_step = threads - row_step * words
    while row < rows:
        at = uint64(((first_out_row + row) * row_words + first_word + word) * per)
        frm = uint64((tile_first + row * stride + word) * per)
        if pair:
            low, high = load_pair(tile, frm)
            store_pair(out, at, low, high)
        else:
            out[at] = tile[frm]
        word += word_step
        row += row_step
        if word >= words:
            word -= words
            row += 1


def _tile_gather(source, out, source_map, codes, jitter, levels, first, count, geometry, pieces,
                 row_edges, col_edges, row_block, pixel_block, group_blocks, load_first,
                 load_column, load_block, value_first, out_first, jitter_step, table_levels,
                 offset, low, span):
    """Gather ``out`` (values, flat), plain or hardened, a unit a thread block at a time.

    See the module's text. ``source`` and ``out`` are the images' values (the hardened
    gather's dtype, or whole-pixel units for the plain gather), flat; ``codes`` and
    ``jitter`` have no rows where the spec has no orientation or no jitter.
    """
    tiles = cuda.shared.array(TILES_WORDS, uint64, alignment=TILE_ALIGN)  # source, output
    table_bytes = cuda.shared.array(TABLE_BYTES, uint8, alignment=TILE_ALIGN)
    sources = cuda.shared.array(MAX_ENTRIES, int32)
    orients = cuda.shared.array(MAX_ENTRIES, int32)
    draws = cuda.shared.array((3, MAX_ENTRIES), float64)
    thread = cuda.threadIdx.x
    threads = cuda.blockDim.x
    groups = geometry[GROUPS]
    piece_count = geometry[PIECES]
    units = count * piece_count * groups
    group = geometry[GROUP]
    height = geometry[HEIGHT]
    load_width = geometry[LOAD_WIDTH]
    store_width = geometry[STORE_WIDTH]
    stride = geometry[STRIDE]
    direct = geometry[DIRECT] != 0
    channels = geometry[CHANNELS]
    block_cols = geometry[BLOCK_COLS]
    values = tiles.view(source.dtype)
    output_tile = TILE_BYTES // source.itemsize  # where the output tile begins in values
    table = table_bytes.view(source.dtype)
    value_stride = stride // source.itemsize
    # PLAIN (bound per kernel: True for the plain gather's copy) is a compile-time constant:
    # the plain kernel compiles without the orientation and the value step.
    oriented = not PLAIN and codes.shape[0] > 0
    jittered = not PLAIN and jitter.shape[0] > 0
    tabled = jittered and 0 < table_levels <= SHARED_LEVELS
    unit = cuda.blockIdx.x
    while unit < units:
        group_index = unit % groups
        rest = unit // groups
        piece = rest % piece_count
        image = rest // piece_count
        first_row = pieces[piece, 0]
        rows = pieces[piece, 1] - first_row
        first_block_row = pieces[piece, 2]
        block_rows = row_block[first_row + rows - 1] - first_block_row + 1
        first_col = group_blocks[group_index]
        cols = group_blocks[group_index + 1] - first_col
        planned = first + image
        # The plan, once per block: source image, orientation, jitter draws.
        entry = thread
        while entry < block_rows * group:
            col = entry % group
            if col < cols:
                block = (first_block_row + entry // group) * block_cols + first_col + col
                sources[entry] = source_map[planned, block]
                if oriented:
                    orients[entry] = codes[planned, block]
                if jittered:
                    draws[0, entry] = jitter[planned, block, 0]
                    draws[1, entry] = jitter[planned, block, 1]
                    draws[2, entry] = jitter[planned, block, 2]
            entry += threads
        cuda.syncthreads()
        if tabled:  # each block's level table, by all threads
            index = thread
            while index < min(block_rows * group, TABLE_BLOCKS) * table_levels:
                entry = index // table_levels
                level = index - entry * table_levels
                col = entry % group
                if col < cols:
                    block_row = first_block_row + entry // group
                    block_height = row_edges[block_row + 1] - row_edges[block_row]
                    width = col_edges[first_col + col + 1] - col_edges[first_col + col]
                    if block_height * width * channels > table_levels:
                        table[entry * SHARED_LEVELS + level] = level_table_value(
                            levels[level], low, span, draws[0, entry], draws[1, entry],
                            draws[2, entry])
                index += threads
        base = load_first[group_index]
        words = load_first[group_index + 1] - base
        row_words = geometry[LOAD_ROW]
        # One call a word width: each view is valid for the rows' bytes at its own width.
        if load_width >= 8:
            _load_words(source.view(uint64), tiles, load_width == 16, base, words, rows,
                        first_row, group, row_words, height, stride // load_width,
                        load_column, load_block, row_edges, row_block, first_block_row,
                        sources, oriented, orients, thread, threads)
        elif load_width == 4:
            _load_words(source.view(uint32), tiles.view(uint32), False, base, words, rows,
                        first_row, group, row_words, height, stride // 4, load_column,
                        load_block, row_edges, row_block, first_block_row, sources, oriented,
                        orients, thread, threads)
        elif load_width == 2:
            _load_words(source.view(uint16), tiles.view(uint16), False, base, words, rows,
                        first_row, group, row_words, height, stride // 2, load_column,
                        load_block, row_edges, row_block, first_block_row, sources, oriented,
                        orients, thread, threads)
        else:
            _load_words(source.view(uint8), tiles.view(uint8), False, base, words, rows,
                        first_row, group, row_words, height, stride, load_column, load_block,
                        row_edges, row_block, first_block_row, sources, oriented, orients,
                        thread, threads)
        cuda.syncthreads()
        stored = 0  # the tile stored: the source tile, or the output tile (in bytes)
        if not direct:
            # Orientation and value step, tile to tile, one output pixel a thread at a time.
            left = col_edges[first_col]
            pixels = col_edges[first_col + cols] - left
            row = thread // pixels
            pixel = thread - row * pixels
            row_step = threads // pixels
            pixel_step = threads - row_step * pixels
            while row < rows:
                y = first_row + row
                block_row = row_block[y]
                top = row_edges[block_row]
                block_height = row_edges[block_row + 1] - top
                col = pixel_block[left + pixel]
                block_left = col_edges[col]
                width = col_edges[col + 1] - block_left
                entry = (block_row - first_block_row) * group + col - first_col
                code = orients[entry] if oriented else 0
                source_row, source_col = oriented_source(code, y - top, left + pixel - block_left,
                                                         block_height, width)
                tile_row = row  # rows mirrored at load
                if code >= 4:
                    tile_row = top + source_row - first_row
                at = tile_row * value_stride + value_first[col] + source_col * channels
                to = row * value_stride + pixel * channels
                step = COPY
                brightness = contrast = tone = 0.0
                if jittered:
                    step = jitter_step
                    brightness = draws[0, entry]
                    contrast = draws[1, entry]
                    tone = draws[2, entry]
                    if tabled and entry < TABLE_BLOCKS and \
                            block_height * width * channels > table_levels:
                        step = TABLE
                for channel in range(channels):
                    store_stepped(values, output_tile + to + channel, values[at + channel],
                                  step, table, entry * SHARED_LEVELS - offset, low, span,
                                  brightness, contrast, tone)
                pixel += pixel_step
                row += row_step
                if pixel >= pixels:
                    pixel -= pixels
                    row += 1
            cuda.syncthreads()
            stored = TILE_BYTES
        first_word = out_first[group_index]
        words = out_first[group_index + 1] - first_word
        out_row = image * height + first_row
        row_words = geometry[STORE_ROW]
        if store_width >= 8:
            _store_words(tiles, stored // store_width, out.view(uint64), store_width == 16,
                         first_word, words, rows, out_row, row_words, stride // store_width,
                         thread, threads)
        elif store_width == 4:
            _store_words(tiles.view(uint32), stored // 4, out.view(uint32), False, first_word,
                         words, rows, out_row, row_words, stride // 4, thread, threads)
        elif store_width == 2:
            _store_words(tiles.view(uint16), stored // 2, out.view(uint16), False, first_word,
                         words, rows, out_row, row_words, stride // 2, thread, threads)
        else:
            _store_words(tiles.view(uint8), stored, out.view(uint8), False, first_word, words,
                         rows, out_row, row_words, stride, thread, threads)
        cuda.syncthreads()
        unit += cuda.gridDim.x


#: :func:`fastmix.kernels.bodies.fill_jitter` on the host: the backend draws a window's jitter
#: there and copies it to the device.
fill_jitter = njit(cache=True)(bodies.fill_jitter)

_KERNELS: dict[str, Callable[..., Any]] = {
    "tile_gather": _tile_gather, "tile_harden": _tile_gather, "gather": _gather,
    "hardened_gather": _hardened_gather, "fill_tables": _fill_tables, "blur_rows": _blur_rows,
    "blur_cols": _blur_cols, "blur_rows_fixed": _blur_rows_fixed,
    "blur_cols_fixed": _blur_cols_fixed}
#: Compile-time constants of each kernel: the tile kernel's plain copy ("tile_gather") and
#: its hardened gather ("tile_harden") are one Python function, compiled twice.
_CONSTANTS: dict[str, dict[str, object]] = {"tile_gather": {"PLAIN": True},
                                             "tile_harden": {"PLAIN": False}}
#: Device functions of the tile kernel (not shared bodies: they read the launch's words).
_HELPERS: dict[str, Callable[..., Any]] = {"_load_words": _load_words,
                                           "_store_words": _store_words}


def load_pair(array, index):
    """``(array[index], array[index + 1])``: in the simulator; one vector load on a GPU.

    On a GPU, :mod:`fastmix.kernels.cuda.wide` replaces it (and :func:`store_pair`).
    """
    return array[index], array[index + 1]


def store_pair(array, index, first, second):
    """``array[index], array[index + 1] = first, second`` (see :func:`load_pair`)."""
    array[index] = first
    array[index + 1] = second

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
        helpers = dict(_HELPERS)
        align = None
    else:
        from numba.cuda import libdevice as device_library

        from fastmix.kernels.cuda import wide

        product = bind(_rounded_product, {}, libdevice=device_library)
        device_bodies = bodies_for(module.jit(device=True), replace={"product": product})
        helpers = {name: module.jit(device=True)(bind(
            helper, {}, load_pair=wide.load_pair, store_pair=wide.store_pair))
            for name, helper in _HELPERS.items()}
        align = TILE_ALIGN
    return {name: bind(kernel, {**device_bodies, **helpers}, name=f"_{name}", cuda=module,
                       TILE_ALIGN=align, **_CONSTANTS.get(name, {}))
            for name, kernel in _KERNELS.items()}


@cache
def compiled_kernels() -> dict:
    """Return the kernels by name, as numba.cuda kernels that compile on first launch."""
    module = numba_cuda()
    if simulated():  # the simulator takes no launch bounds
        return {name: module.jit(function) for name, function in _bound_kernels().items()}
    return {name: module.jit(function, **_options(name))
            for name, function in _bound_kernels().items()}


def _options(name: str) -> dict[str, Any]:
    """Return the compile options of kernel ``name``: the tile kernels' launch bounds."""
    bounds = LAUNCH_BOUNDS.get(name)
    return {} if bounds is None else {"launch_bounds": bounds}


def _array(dtype, dimensions):
    return f"{dtype}[{', '.join([':'] * (dimensions - 1) + ['::1'])}]"


#: The value dtypes the tile kernel is launched with: the hardened gather's dtypes, and the
#: unsigned units whole pixels move in.
TILE_VALUES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64",
               "uint64")
#: ... and the plain gather's: the unsigned units of whole pixels.
PLAIN_VALUES = ("uint8", "uint16", "uint32", "uint64")


def _ptx_signatures() -> dict[str, list[str]]:
    """Return the argument types each kernel is launched with, for :func:`compile_ptx`."""
    tables = [_array("int32", 1)] * 2
    edges = [_array("int64", 1)] * 2
    signatures: dict[str, list[str]] = {"tile_gather": [], "tile_harden": [], "gather": [],
                                        "hardened_gather": [], "fill_tables": [],
                                        "blur_rows": [], "blur_cols": [],
                                        "blur_rows_fixed": [], "blur_cols_fixed": []}
    for value in TILE_VALUES:
        for name in ("tile_gather", "tile_harden"):
            if name == "tile_gather" and value not in PLAIN_VALUES:
                continue
            signatures[name].append(
                f"void({_array(value, 1)}, {_array(value, 1)}, {_array('int32', 2)}, "
                f"{_array('uint8', 2)}, {_array('float64', 3)}, {_array('float64', 1)}, int64, "
                f"int64, {_array('int64', 1)}, {_array('int32', 2)}, {', '.join(edges)}, "
                f"{', '.join([_array('int32', 1)] * 8)}, int64, int64, int64, float64, "
                "float64)")
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
        if value.startswith(("uint", "int")) and value != "uint64":
            signatures["blur_rows_fixed"].append(
                f"void({_array(value, 3)}, {_array('int64', 1)}, {_array('int64', 2)}, "
                f"{_array('int64', 1)}, int64)")
            signatures["blur_cols_fixed"].append(
                f"void({_array(value, 3)}, {_array('int64', 1)}, {_array('int64', 2)}, "
                f"{_array('int64', 1)}, int64, int64)")
    return signatures


def compile_ptx(cc: tuple[int, int] = (9, 0), *, kernels: tuple[str, ...] | None = None,
                values: tuple[str, ...] | None = None) -> dict[str, str]:
    """PTX of every kernel for the argument types it is launched with (no GPU needed).

    Used by the tests, so that a kernel the simulator accepts but NVVM rejects fails CI,
    and to check that the hardening arithmetic has no fused multiply-add and that the tile
    kernels load and store wide words through shared memory. ``kernels`` and ``values``
    keep only those kernels, and only signatures whose first argument has one of those
    dtypes. Keys are ``"name signature"``.
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
            if kernels is not None and name not in kernels:
                continue
            for signature in signatures:
                if values is not None and signature[5:signature.index("[")] not in values:
                    continue
                ptx, _ = module.compile_ptx(bound[name], signature, cc=cc, **_options(name))
                listing[f"{name} {signature}"] = ptx
    finally:
        dispatcher.get_current_device = current_device
    return listing




# --- resources: registers, shared memory, occupancy ----------------------------------------

#: An H100's (and H200's, sm_90) limits per multiprocessor, for :func:`occupancy` without a
#: GPU: threads, blocks, registers, shared memory, shared memory the system reserves a block.
SM90_LIMITS = {"threads": 2048, "blocks": 32, "registers": 65536, "shared": 233472,
               "reserved_shared": 1024}


def occupancy(threads: int, registers: int, shared: int,
              limits: dict[str, int] | None = None) -> float:
    """Theoretical occupancy: resident warps over the multiprocessor's most.

    ``threads`` a block, ``registers`` a thread, ``shared`` bytes of static shared memory a
    block; ``limits`` as :data:`SM90_LIMITS` (a GPU's own: :func:`device_limits`). Registers
    are allocated per warp in units of 256.
    """
    limits = limits or SM90_LIMITS
    warps = -(-threads // 32)
    per_warp = -(-registers * 32 // 256) * 256
    by_registers = (limits["registers"] // max(per_warp, 1)) // warps
    by_shared = limits["shared"] // (shared + limits["reserved_shared"])
    by_threads = limits["threads"] // (warps * 32)
    blocks = min(by_registers, by_shared, by_threads, limits["blocks"])
    return blocks * warps * 32 / limits["threads"]


def device_limits() -> dict[str, int]:
    """Return the current GPU's :data:`SM90_LIMITS` (on a GPU only)."""
    device = numba_cuda().get_current_device()
    return {"threads": device.MAX_THREADS_PER_MULTIPROCESSOR,
            "blocks": device.MAX_BLOCKS_PER_MULTIPROCESSOR,
            "registers": device.MAX_REGISTERS_PER_MULTIPROCESSOR,
            "shared": device.MAX_SHARED_MEMORY_PER_MULTIPROCESSOR,
            "reserved_shared": device.RESERVED_SHARED_MEMORY_PER_BLOCK}


def ptx_shared_bytes(ptx: str) -> int:
    """Bytes of static shared memory a PTX listing declares."""
    return sum(int(size) for size in
               re.findall(r"\.shared\s+\.align\s+\d+\s+\.b8\s+\S+\[(\d+)\];", ptx))


def ptx_registers(ptx: str, cc: tuple[int, int] = (9, 0)) -> dict[str, int]:
    """Return ptxas's registers and spill bytes a thread for a PTX listing (no GPU needed).

    Through nvJitLink (``cuda.bindings``, which numba-cuda installs): ``{"registers",
    "spill_stores", "spill_loads"}``.
    """
    from cuda.bindings import nvjitlink

    handle = nvjitlink.create(2, [f"-arch=sm_{cc[0]}{cc[1]}", "-Xptxas=-v"])
    try:
        data = ptx.encode()
        nvjitlink.add_data(handle, nvjitlink.InputType.PTX, data, len(data), "kernel")
        nvjitlink.complete(handle)
        log = bytearray(nvjitlink.get_info_log_size(handle))
        nvjitlink.get_info_log(handle, log)
    finally:
        nvjitlink.destroy(handle)
    text = bytes(log).decode(errors="replace")

    def number(pattern: str) -> int:
        found = re.search(pattern, text)
        return int(found.group(1)) if found else 0

    return {"registers": number(r"Used (\d+) registers"),
            "spill_stores": number(r"(\d+) bytes spill stores"),
            "spill_loads": number(r"(\d+) bytes spill loads")}
