"""The one mixing pipeline: plan a window, load it on the backend, produce it piece by piece.

:func:`fastmix.mix_array`, the new-file store engine (:mod:`fastmix.store.stream`) and the
in-place engine all run windows through :class:`Pipeline`::

    pipeline = Pipeline(image_shape, dtype, spec, key, backend="cpu", inverse=False)
    plan = pipeline.plan(labels_of_window, window_index)      # no pixels: any thread
    window = pipeline.load(window_images, plan)               # once per window
    pipeline.mix_piece(window, first, last, out)              # any range of output images

The per-piece step does, for each output image of the range and in one pass while the
image is in cache: gather with orientation, then jitter, then seam blur (definitions in
:mod:`fastmix.kernels.bodies`, which every backend compiles). Without hardening it is
the plain block gather. A piece never needs more output memory than its own images.

Definitions of the hardening steps (every backend computes exactly these bytes):

oriented gather
    ``out[i, block b] = orient(in[source[i, b], block b], code[i, b])``. Unmixing gathers
    with the inverse source map and the inverse codes (:meth:`fastmix.plan.Plan.inverted`),
    so permute + orientation stays exact.
jitter
    Per block, with the parameters drawn for it (:mod:`fastmix.plan.hardening`), every pixel
    value ``x`` (every channel alike) becomes, in float64 with each operation rounded as
    IEEE 754 does: ``v = (x - low) / span`` for integer dtypes (``low`` and ``span`` the
    dtype's minimum and range), or ``v = clip(x, 0, 1)`` for float dtypes (float images are
    taken to be in [0, 1]); ``t = v / (v + tone * (1 - v))`` (a gamma-like tone curve made
    of ``+ - * /`` only); ``y = clip((t - 0.5) * contrast + 0.5 + brightness, 0, 1)``;
    stored as ``rint(y * span) + low`` (round half to even) for integers, or cast to the
    float dtype. Integer values go through a per-block table of every level, computed with
    the same arithmetic, where that is cheaper (8-bit dtypes always, their tone curves
    computed once per run; 16-bit blocks with at least a quarter as many values as levels),
    so the bytes are the same.
seam blur
    With ``w = ceil(sigma)``, radius ``R = ceil(3 sigma)`` and the normalised weights of
    :func:`fastmix.kernels.steps.blur_weights`: pass 1 replaces every pixel of the rows
    within ``w`` of an internal horizontal seam by ``sum_k weight[k] * M[clamp(r + k - R),
    c]`` read from the image ``M`` before the pass; pass 2 does the same along the row for
    every pixel of the columns near a vertical seam, reading the result of pass 1. Sums run
    in ascending ``k`` in float64; each pass stores its values in the dtype (integers
    rounded half to even and clipped). Only those band pixels are read and written.

Every output block is hardened, including blocks that stay in place (``prob < 1``) and
images without a same-label partner, so no block is left recognisably untouched. Jitter and
seam blur are one-way (rounding, clipping, smoothing).
"""

from __future__ import annotations

from contextlib import AbstractContextManager

import numpy as np

from fastmix.backends import Backend, get_backend
from fastmix.errors import BadInputError
from fastmix.kernels.steps import WindowJob, native_values, steps_for
from fastmix.keys import Key
from fastmix.plan import Plan, encode_labels, plan_window
from fastmix.spec import MixSpec


class Pipeline:
    """Mix (or unmix) the windows of one run: images of one shape and dtype, one spec.

    Parameters
    ----------
    image_shape : tuple of int
        ``(H, W[, C])``.
    dtype : numpy.dtype
        The images' dtype.
    spec : MixSpec
        Mixing parameters (``spec.plan_rule`` included).
    key : Key
        The secret key.
    backend : str
        A name of :func:`fastmix.backends.available_backends`.
    inverse : bool
        Unmix: execute each plan's inverse (reversible specs only).
    """

    def __init__(self, image_shape: tuple[int, ...], dtype: np.dtype, spec: MixSpec, key: Key,
                 *, backend: str = "cpu", inverse: bool = False):
        if inverse and not spec.reversible:
            raise BadInputError(
                "this data was mixed with jitter/seam blur, which are one-way; it cannot be "
                "unmixed (only permute mode with orientation at most can be restored)"
            )
        self.spec, self.key, self.inverse = spec, key, inverse
        self.backend: Backend = get_backend(backend)
        self.steps = steps_for(tuple(image_shape), dtype, spec)
        self.native = native_values(dtype, spec)

    @property
    def block_count(self) -> int:
        """Blocks per image."""
        return self.steps.layout.block_count

    def plan(self, labels: np.ndarray, window_index: int) -> Plan:
        """Return the plan of the window whose validated labels are ``labels`` (no pixels)."""
        grid = self.steps.grid
        return plan_window(encode_labels(labels), (grid.row_edges, grid.col_edges),
                           self.spec, self.key, window_index)

    def load(self, images: np.ndarray, plan: Plan) -> WindowJob:
        """Hand one window (C-contiguous host ``images``) and its plan to the backend."""
        executed = plan.inverted() if self.inverse else plan
        if self.native is not None:  # a copy: the caller's window keeps its bytes
            images = images.astype(self.native)
        return self.backend.load_window(images, WindowJob(self.steps, executed))

    def mix_piece(self, window: WindowJob, first: int, last: int, out: np.ndarray,
                  order: np.ndarray | None = None) -> None:
        """Output images ``first..last`` of the loaded ``window`` into ``out``."""
        if self.native is None:
            self.backend.mix_piece(window, first, last, out, order)
            return
        # native values into out's own memory, then swapped there into out's byte order
        values = out.view(self.native)
        self.backend.mix_piece(window, first, last, values, order)
        values.byteswap(inplace=True)

    def mix_window(self, images: np.ndarray, labels: np.ndarray, window_index: int,
                   out: np.ndarray, plan: Plan | None = None) -> Plan:
        """Return a whole window into ``out`` as one piece, visiting images in the plan's order."""
        plan = self.plan(labels, window_index) if plan is None else plan
        window = self.load(images, plan)
        self.mix_piece(window, 0, len(images), out, window.plan.order)
        return plan

    def streaming_threads(self) -> AbstractContextManager[None]:
        """Return the backend's thread setting while a store streams."""
        return self.backend.streaming_threads()
