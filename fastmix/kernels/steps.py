"""The per-run constants of the mixing step: everything a backend reads besides the plan.

:func:`steps_for` builds one :class:`Steps` per run (image shape, dtype, spec): how the
kernels view the pixels (:class:`PixelLayout`, :class:`ValueView`), the block grid
(:class:`BlockGrid`), and the constants of each hardening step that runs
(:class:`JitterSteps`, :class:`BlurSteps`). The pipeline (:mod:`fastmix.pipeline`) hands it to
the backend with each window's plan in a :class:`WindowJob`. Everything keyed (the source
map, orientation codes, jitter draws) is in the plan (:mod:`fastmix.plan`); everything here
depends only on the shape, dtype and spec.

The hardening's constants (docs/format.md section 2 and docs/hardening.md), defined here once:

* jitter tables (:func:`jitter_tables`): for the spec's amplitudes ``(a_0, a_1, a_2)`` and
  ``u(k) = (2k + 1) / 256 - 1``, ``k`` in ``0..255``, the brightness offsets ``u(k) * a_0``,
  the contrasts ``exp(u(k) * a_1)`` and the tones ``exp(u(k) * a_2)``; a block's draw picks
  one of each (:func:`fastmix.kernels.bodies.block_jitter`);
* the seam blur's weights (:func:`blur_weights`) and bands (:func:`seam_band`);
* the dtypes jitter and seam blur compute on, and their range (:func:`value_range`).

``exp`` is :func:`exact_exp`, built from ``+ * /`` only, so the constants are the same bytes
on every machine.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from numba import njit

from fastmix.errors import BadInputError
from fastmix.kernels import bodies
from fastmix.spec import MixSpec

# --- views and block edges ----------------------------------------------------------------

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


# --- the hardening's constants ------------------------------------------------------------

#: Integer dtypes with at most this many levels may use a per-block level table.
MAX_TABLE_LEVELS = 1 << 16
#: ... and with at most this many, the tone curves of every jitter tone are computed once
#: per run (256 x 256 float64, 512 KiB), so that filling a block's table divides nothing.
MAX_TONED_LEVELS = 1 << 8


@njit(inline="always", cache=True)
def exact_exp_scalar(z):
    """:func:`exact_exp` of one float64, in jitted code (plan rule 1 draws with it)."""
    reduced = z / 16.0
    term = 1.0
    total = 1.0
    for power in range(1, 18):
        term = term * reduced / float(power)
        total = total + term
    for _ in range(4):
        total = total * total
    return total


def exact_exp(values: np.ndarray) -> np.ndarray:
    """``exp`` from ``+ * /`` only: a Taylor series of ``z / 16``, squared four times.

    Relative error below 1e-13 for ``|z| <= 5``; identical bytes on every IEEE 754
    machine, unlike a platform's ``exp``.
    """
    # The jitted scalar's own Python body, run on arrays: the same operations in the same
    # order, element by element, so the same bytes.
    return np.asarray(exact_exp_scalar.py_func(np.asarray(values, dtype=np.float64)),
                      dtype=np.float64)


def jitter_tables(amplitudes: tuple[float, float, float], hardening_format: int = 1
                  ) -> np.ndarray:
    """Return the jitter parameters a draw can pick: ``(3, 256)`` float64 (module text).

    Row 0: brightness offsets ``u * a_0``; rows 1 and 2: contrasts ``exact_exp(u * a_1)``
    and tones ``exact_exp(u * a_2)``, for ``u = (2k + 1) / 256 - 1`` (hardening format 1),
    or ``u = (2 (k >> 4) + 1) / 16 - 1`` (format 2: 16 levels, each repeated 16 times).
    """
    count = bodies.JITTER_LEVELS
    if hardening_format == 1:
        steps = (2.0 * np.arange(count, dtype=np.float64) + 1.0) / count - 1.0
    else:
        curve_levels = 1 << bodies.CURVE_BITS
        levels = np.arange(count, dtype=np.int64) >> (bodies.JITTER_BITS - bodies.CURVE_BITS)
        steps = (2.0 * levels.astype(np.float64) + 1.0) / curve_levels - 1.0
    brightness, contrast, tone = (float(value) for value in amplitudes)
    return np.stack([steps * brightness, exact_exp(steps * contrast),
                     exact_exp(steps * tone)])


def blur_weights(sigma: float) -> np.ndarray:
    """Normalised Gaussian weights ``k = -radius..radius``, ``radius = ceil(3 sigma)``.

    ``g_k = exact_exp(-k**2 / (2 sigma**2))``, divided by their sum taken in ascending
    ``k``.
    """
    radius = math.ceil(3 * sigma)
    offsets = np.arange(-radius, radius + 1, dtype=np.float64)
    gaussian = exact_exp(-(offsets * offsets) / (2.0 * sigma * sigma))
    total = 0.0
    for value in gaussian.tolist():
        total = total + value
    return gaussian / total


def fixed_blur_weights(sigma: float) -> np.ndarray:
    """Hardening format 2: the seam blur's integer weights, int64, summing to ``2**15``.

    ``w_k = floor(g_k * 2**15 + 1/2)`` of :func:`blur_weights` ``g`` for ``k != 0``, and
    ``w_0 = 2**15 - sum of the others`` (symmetric, so the weights stay symmetric).
    """
    weights = blur_weights(sigma)
    scale = float(1 << bodies.FIXED_SHIFT)
    fixed = np.floor(weights * scale + 0.5).astype(np.int64)
    radius = (weights.size - 1) // 2
    fixed[radius] = 0
    fixed[radius] = (1 << bodies.FIXED_SHIFT) - int(fixed.sum())
    return fixed


def seam_band(bounds: np.ndarray, sigma: float) -> np.ndarray:
    """Rows (or columns) within ``ceil(sigma)`` pixels of an internal seam.

    A seam at edge ``s`` (the first row of a block) covers ``s - w .. s + w - 1`` with
    ``w = ceil(sigma)``, clipped to the image.
    """
    half_width = math.ceil(sigma)
    size = int(bounds[-1])
    band = np.zeros(size, dtype=bool)
    for seam in bounds[1:-1].tolist():
        band[max(seam - half_width, 0):min(seam + half_width, size)] = True
    return np.flatnonzero(band).astype(np.int64)


def value_range(dtype: np.dtype, what: str) -> tuple[float, float, bool]:
    """``(low, high, integer)`` of a dtype that jitter and seam blur can compute on."""
    dtype = np.dtype(dtype)
    if dtype.kind in "ui" and dtype.itemsize <= 4:
        info = np.iinfo(dtype)
        return float(info.min), float(info.max), True
    if dtype.kind == "f" and dtype.itemsize >= 4:
        return 0.0, 1.0, False
    raise BadInputError(
        f"{what} works on integer images up to 32 bits and float32/float64 images, got "
        f"{dtype}; convert the images (for example to uint8 or float32) or drop {what}"
    )


def check_hardening_dtype(spec: MixSpec, dtype: np.dtype) -> None:
    """Raise :class:`BadInputError` if ``spec``'s hardening cannot run on ``dtype``."""
    if spec.jitter is not None:
        value_range(dtype, "jitter")
    if spec.seam_blur > 0:
        value_range(dtype, "seam blur")


def toned_levels(levels: np.ndarray, tones: np.ndarray) -> np.ndarray:
    """Return :func:`~fastmix.kernels.bodies.fill_toned_levels` of ``levels`` for ``tones``.

    ``(tones, levels)`` float64, computed on the host once per run by the same body compiled
    for it, so a table filled from a row (:func:`~fastmix.kernels.bodies.fill_toned_table`)
    holds the bytes of :func:`~fastmix.kernels.bodies.fill_level_table`.
    """
    toned = np.empty((tones.size, levels.size), dtype=np.float64)
    _host_toned_levels(toned, np.ascontiguousarray(levels, dtype=np.float64),
                       np.ascontiguousarray(tones, dtype=np.float64))
    return toned


_host_toned_levels = njit(cache=True, error_model="numpy")(bodies.fill_toned_levels)


def native_values(dtype: np.dtype, spec: MixSpec) -> np.dtype | None:
    """Return the native-order twin of ``dtype`` when the spec computes on pixel values.

    Jitter and seam blur compute on values, which the kernels read in native byte order
    only; the plain and oriented gathers move bytes and take any order. ``None`` when no
    conversion is needed. A converted window costs one more window-sized buffer
    (:func:`fastmix.store.prepare.mix_windows` counts it); the conversion is exact both ways,
    so the output is written back in the images' own byte order, bit for bit.
    """
    dtype = np.dtype(dtype)
    if dtype.isnative or (spec.jitter is None and spec.seam_blur <= 0):
        return None
    return dtype.newbyteorder("=")


# --- the records a backend reads ----------------------------------------------------------

@dataclass(frozen=True)
class BlockGrid:
    """The block grid of one image, in pixels.

    Attributes
    ----------
    row_edges, col_edges : ndarray of int64
        Block edges in pixels (:func:`block_edges`): block row ``r`` is rows
        ``row_edges[r]..row_edges[r + 1]``; the last block may be smaller.
    """

    row_edges: np.ndarray
    col_edges: np.ndarray


@dataclass(frozen=True)
class ValueView:
    """How the hardening kernels see pixels: ``(n, H, W * channels)`` values, and their range.

    The dtype's values when jitter or seam blur run; whole-pixel unsigned units when only
    orientation does (they move pixels, never compute on them).

    Attributes
    ----------
    dtype : numpy.dtype
        The dtype of :meth:`view`.
    channels : int
        Values per pixel in :meth:`view`.
    low, high : float
        The range jitter and seam blur clip to (:func:`value_range`): the dtype's for
        integers, ``0, 1`` for floats (and when neither runs).
    integer : bool
        Whether computed values are rounded and clipped to integers.
    """

    dtype: np.dtype
    channels: int
    low: float
    high: float
    integer: bool

    @property
    def span(self) -> float:
        """``high - low``: integer values ``v`` are at level ``(v - low) / span``."""
        return self.high - self.low

    @property
    def jitter_step(self) -> int:
        """The value step of jitter on these values: ``bodies.INTEGER`` or ``bodies.FLOAT``."""
        return bodies.INTEGER if self.integer else bodies.FLOAT

    def view(self, images: np.ndarray) -> np.ndarray:
        """Return the ``(n, H, W * channels)`` view of C-contiguous ``images`` (no copy)."""
        count, height = images.shape[0], images.shape[1]
        return images.view(np.uint8).reshape(count, -1).view(self.dtype).reshape(
            count, height, -1)


@dataclass(frozen=True)
class JitterSteps:
    """The per-run constants of the jitter.

    Attributes
    ----------
    tables : ndarray of float64, shape (3, 256)
        The parameters a jitter draw picks (:func:`jitter_tables`).
    toned_levels : ndarray of float64, shape (tones, levels)
        The tone curve of every jitter tone at every level (:func:`toned_levels`), for
        dtypes of at most :data:`MAX_TONED_LEVELS` levels under drawn jitter (not plan rule
        1); else empty.
    levels : ndarray of float64
        ``v / span`` for every integer level ``v`` when a block may use a level table
        (integer dtypes of at most :data:`MAX_TABLE_LEVELS` levels); else size 0.
    curves : ndarray, shape (CURVES, levels)
        Hardening format 2 on dtypes of at most :data:`MAX_TONED_LEVELS` levels: the stored
        jitter of every value under each curve (:func:`jitter_curves`), in the values'
        dtype, so that a block's table is a row (:func:`fastmix.kernels.bodies.curve_index`);
        else ``(0, 0)``.
    """

    tables: np.ndarray
    toned_levels: np.ndarray
    levels: np.ndarray
    curves: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.uint8))


@dataclass(frozen=True)
class BlurSteps:
    """The per-run constants of the seam blur.

    Attributes
    ----------
    band_rows, band_cols : ndarray of int64
        The rows and columns it blurs (:func:`seam_band`); size 0: none.
    weights : ndarray of float64
        The blur weights (:func:`blur_weights`), :attr:`radius` on each side.
    fixed : ndarray of int64
        Hardening format 2 on integer values: the weights in fixed point
        (:func:`fixed_blur_weights`), which the blur then uses; size 0: the float64 weights.
    """

    band_rows: np.ndarray
    band_cols: np.ndarray
    weights: np.ndarray
    fixed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def radius(self) -> int:
        """The weights' half width."""
        return (self.weights.size - 1) // 2


#: What a kernel reads where a run has no jitter: tables of no rows, no tone curves, no
#: levels (a kernel jitters only when the tables have rows).
NO_JITTER = JitterSteps(tables=np.zeros((0, bodies.JITTER_LEVELS), dtype=np.float64),
                        toned_levels=np.zeros((0, 0), dtype=np.float64),
                        levels=np.zeros(0, dtype=np.float64))
#: What a kernel reads where a run has no seam blur: no bands, one weight.
NO_BLUR = BlurSteps(band_rows=np.zeros(0, dtype=np.int64), band_cols=np.zeros(0, dtype=np.int64),
                    weights=np.zeros(1, dtype=np.float64))


@dataclass(frozen=True)
class Steps:
    """The constants of the per-piece step for one image shape, dtype and spec.

    Built once per run by :func:`steps_for`; backends read them. Without hardening only
    ``layout`` matters (the plain gather). With hardening, the kernels see pixels through
    ``values`` and read the grid, then the constants of each step that runs.

    Attributes
    ----------
    layout : PixelLayout
        The plain gather's view and block edges in units.
    hardened : bool
        Whether any hardening step runs (else the plain gather).
    grid : BlockGrid
        Block edges in pixels.
    values : ValueView
        How the hardening kernels see and bound pixel values.
    jitter : JitterSteps or None
        The jitter's constants; ``None`` without jitter (a backend passes :data:`NO_JITTER`).
    blur : BlurSteps or None
        The seam blur's constants; ``None`` without it (a backend passes :data:`NO_BLUR`).
    """

    layout: PixelLayout
    hardened: bool
    grid: BlockGrid
    values: ValueView
    jitter: JitterSteps | None = None
    blur: BlurSteps | None = None


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


def steps_for(image_shape: tuple[int, ...], dtype: np.dtype, spec: MixSpec) -> Steps:
    """Return the constants of the per-piece step for images of ``image_shape`` (without N).

    Images of another byte order are described by their native twin where the steps read
    values (:func:`native_values`).

    Raises
    ------
    BadInputError
        When the spec's hardening cannot run on ``dtype``, or the block does not fit.
    """
    dtype = native_values(dtype, spec) or np.dtype(dtype)
    height, width = image_shape[0], image_shape[1]
    block = spec.block_shape(height, width)
    layout = PixelLayout(image_shape, dtype, block)
    check_hardening_dtype(spec, dtype)
    row_edges, col_edges = block_edges(height, width, block)
    channels = int(np.prod(image_shape[2:], dtype=np.int64)) if len(image_shape) > 2 else 1
    low, high, integer = 0.0, 1.0, False
    value_dtype = dtype
    if spec.jitter is not None or spec.seam_blur > 0:
        low, high, integer = value_range(dtype, "jitter" if spec.jitter is not None
                                         else "seam blur")
    elif spec.hardened:  # orientation only: move whole pixels as unsigned units
        pixel_bytes = channels * dtype.itemsize
        value_dtype = unit_dtype(pixel_bytes)
        channels = pixel_bytes // value_dtype.itemsize
    values = ValueView(dtype=np.dtype(value_dtype), channels=channels, low=low, high=high,
                       integer=integer)
    blur = None
    if spec.seam_blur > 0:
        blur = BlurSteps(band_rows=seam_band(row_edges, spec.seam_blur),
                         band_cols=seam_band(col_edges, spec.seam_blur),
                         weights=blur_weights(spec.seam_blur),
                         fixed=fixed_blur_weights(spec.seam_blur)
                         if integer and spec.hardening_format == 2
                         else np.zeros(0, dtype=np.int64))
    return Steps(layout=layout, hardened=spec.hardened, grid=BlockGrid(row_edges, col_edges),
                 values=values, jitter=_jitter_steps(spec, values), blur=blur)


def _jitter_steps(spec: MixSpec, values: ValueView) -> JitterSteps | None:
    """Return the jitter's constants for ``values`` (``None`` without jitter)."""
    if spec.jitter is None:
        return None
    span = values.span
    levels = np.zeros(0, dtype=np.float64)
    if values.integer and span + 1 <= MAX_TABLE_LEVELS:
        levels = np.arange(int(span) + 1, dtype=np.float64) / span
    tables = jitter_tables(spec.jitter, spec.hardening_format)
    toned = np.zeros((0, 0), dtype=np.float64)
    if spec.hardening_format == 2:
        curves = np.zeros((0, 0), dtype=values.dtype)
        if 0 < levels.size <= MAX_TONED_LEVELS:
            curves = jitter_curves(spec.jitter, values.dtype)
        return JitterSteps(tables=tables, toned_levels=toned, levels=levels, curves=curves)
    if 0 < levels.size <= MAX_TONED_LEVELS and spec.plan_rule != 1:
        toned = toned_levels(levels, tables[2])
    return JitterSteps(tables=tables, toned_levels=toned, levels=levels)


@functools.cache
def _jitter_curves(amplitudes: tuple[float, float, float], dtype_text: str) -> np.ndarray:
    dtype = np.dtype(dtype_text)
    low, high, _ = value_range(dtype, "jitter")
    span = high - low
    levels = np.arange(int(span) + 1, dtype=np.float64) / span
    tables = jitter_tables(amplitudes, 2)
    curves = np.empty((bodies.CURVES, levels.size), dtype=dtype)
    _host_fill_curves(curves, levels, tables, low, span)
    return curves


def jitter_curves(amplitudes: tuple[float, float, float], dtype: np.dtype) -> np.ndarray:
    """Hardening format 2: ``(CURVES, levels)``, the stored jitter of each value per curve.

    Row ``curve_index(b, c, t)`` holds :func:`~fastmix.kernels.bodies.fill_level_table` of
    the parameters the fields ``b, c, t`` pick in format 2's :func:`jitter_tables`: the
    bytes the arithmetic gives, computed once per amplitudes and dtype (integer dtypes of at
    most :data:`MAX_TONED_LEVELS` levels; shared between runs: never write to it).
    """
    return _jitter_curves(tuple(float(value) for value in amplitudes), np.dtype(dtype).str)


def _fill_curves(curves, levels, tables, low, span):
    """Fill every curve's table from the format-2 ``tables`` (curve ``i``: fields ``i``'s)."""
    repeat = 1 << (bodies.JITTER_BITS - bodies.CURVE_BITS)
    count = 1 << bodies.CURVE_BITS
    for brightness in range(count):
        for contrast in range(count):
            for tone in range(count):
                curve = (brightness * count + contrast) * count + tone
                bodies.fill_level_table(curves[curve], levels, low, span,
                                        tables[0, brightness * repeat],
                                        tables[1, contrast * repeat],
                                        tables[2, tone * repeat])


_host_fill_curves = njit(cache=True, error_model="numpy")(_fill_curves)
