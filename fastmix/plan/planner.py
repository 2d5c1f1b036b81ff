"""The planner: (labels of one window, spec, key, window index) -> source map.

The source map ``source[i, b]`` names, for output image ``i`` and block ``b``, the image
of the same window whose block ``b`` is copied there: ``out[i, b] = in[source[i, b], b]``.
Both modes and every backend reduce to this one gather.

Algorithm of one round (all random numbers from :mod:`fastmix.plan.random`):

permute
    Each image ``i`` gets a sort key ``derive(shuffle_seed, i)``; images are ordered by
    (label code, sort key, index). Each label's run is cut into groups by the spec's plan
    rule (:mod:`fastmix.plan.groups`). The group's first member is its leader.
    For block ``b``, ``block_seed = derive(derive(permute_seed, leader), b)``; draw 0 is the
    coin; if heads, draws 1, 2, ... drive a Fisher-Yates shuffle from the last position down,
    restarted as soon as an element lands on its own position (a uniform derangement
    ``sigma``). Member ``j`` then receives the block of member ``sigma[j]``.
paper
    The members of ``i``'s label (in index order, ``i`` left out) are the candidates; ``k =
    min(donors, candidates)`` of them are chosen with Floyd's algorithm from
    ``derive(donor_seed, i)`` and sorted. For block ``b``, ``block_seed =
    derive(derive(blocks_seed, i), b)``; draw 0 is the coin, draw 1 picks the donor.

Rounds are composed: ``total[i, b] = previous[round_source[i, b], b]``.

A hardened spec's orientation codes and jitter parameters are drawn from the same window
seed (:mod:`fastmix.plan.hardening`), so one call plans everything a backend executes.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from numba import njit, prange

from fastmix.keys import Key
from fastmix.plan.groups import group_starts
from fastmix.plan.hardening import INVERSE_CODE, draw_hardening
from fastmix.plan.random import (
    ROUND_STRIDE,
    STREAM_BLOCKS,
    STREAM_DONORS,
    STREAM_PERMUTE,
    STREAM_SHUFFLE,
    bounded,
    coin,
    coin_threshold,
    derive,
    derive_seed,
)
from fastmix.spec import MixSpec

SOURCE_DTYPE = np.int32


@dataclass(frozen=True)
class Plan:
    """Everything a backend needs to mix one window: source map and hardening draws.

    Attributes
    ----------
    source : ndarray of int32, shape (n, blocks)
        ``out[i, b] = in[source[i, b], b]``, indices local to the window.
    unpartnered : int
        Images whose label has no other image in the window; they pass through unmixed.
    order : ndarray of int64, shape (n,)
        The images listed so that those exchanging blocks are adjacent. Kernels process
        output images in this order to keep their sources in cache; it never changes the
        result.
    codes : ndarray of uint8, shape (n, blocks), or None
        Orientation code of each output block (:mod:`fastmix.kernels.bodies`);
        ``None`` without orientation.
    jitter_seed : numpy.uint64 or None
        The window's jitter stream (:func:`fastmix.plan.hardening.draw_hardening`): a
        backend draws each output block's brightness, contrast and tone from it where it
        computes the block. ``None`` without jitter, and under plan rule 1.
    jitter : ndarray of float64, shape (n, blocks, 3), or None
        Plan rule 1 only (0.1.0's draws): each output block's brightness offset, contrast
        and tone.
    """

    source: np.ndarray
    unpartnered: int
    order: np.ndarray
    codes: np.ndarray | None = None
    jitter_seed: np.uint64 | None = None
    jitter: np.ndarray | None = None

    def inverse(self) -> np.ndarray:
        """Return the source map that undoes this one (permute mode only)."""
        return invert_source(self.source)

    def inverted(self) -> Plan:
        """Return the plan that undoes this one: inverse source map and inverse orientations.

        Only for reversible plans (permute mode, no jitter).
        """
        if self.jitter_seed is not None or self.jitter is not None:
            raise ValueError("a plan with jitter is one-way and has no inverse")
        inverse = invert_source(self.source)
        codes = None
        if self.codes is not None:
            # Output image j (an original) takes block b back from image inverse[j, b],
            # which had oriented it with codes[inverse[j, b], b].
            codes = np.ascontiguousarray(INVERSE_CODE[np.take_along_axis(
                self.codes, inverse.astype(np.int64), axis=0)])
        return replace(self, source=inverse, codes=codes)

    @staticmethod
    def bytes_per_block(spec: MixSpec) -> int:
        """Bytes a plan holds per image and block: source map, its inverse, the codes.

        Jitter needs none (backends draw its parameters per block as they compute), except
        under plan rule 1, whose plans hold 0.1.0's draws.
        """
        return 2 * SOURCE_DTYPE().itemsize + (2 if spec.orient != "none" else 0) + \
            (24 if spec.jitter is not None and spec.plan_rule == 1 else 0)


@njit(parallel=True, cache=True)
def _sort_keys(seed, count):
    keys = np.empty(count, dtype=np.uint64)
    for i in prange(count):
        keys[i] = derive(seed, i)
    return keys


@njit(parallel=True, cache=True)
def _permute_round(order, group_starts, block_count, permute_seed, threshold, source):
    group_count = group_starts.size - 1
    for group in prange(group_count):
        start = group_starts[group]
        size = group_starts[group + 1] - start
        members = order[start:start + size]
        if size < 2:
            for b in range(block_count):
                source[members[0], b] = members[0]
            continue
        group_seed = derive(permute_seed, members[0])
        sigma = np.empty(size, dtype=np.int64)
        for b in range(block_count):
            block_seed = derive(group_seed, b)
            if not coin(derive(block_seed, 0), threshold):
                for j in range(size):
                    source[members[j], b] = members[j]
                continue
            draw = 1
            while True:
                for j in range(size):
                    sigma[j] = j
                accepted = True
                for j in range(size - 1, 0, -1):
                    pick = bounded(derive(block_seed, draw), j + 1)
                    draw += 1
                    held = sigma[j]
                    sigma[j] = sigma[pick]
                    sigma[pick] = held
                    if sigma[j] == j:
                        accepted = False
                        break
                if accepted and sigma[0] != 0:
                    break
            for j in range(size):
                source[members[j], b] = members[sigma[j]]


@njit(parallel=True, cache=True)
def _paper_round(members, label_start, label_of, position, block_count, donors,
                 donor_seed, blocks_seed, threshold, source):
    count = label_of.size
    for i in prange(count):
        label = label_of[i]
        first = label_start[label]
        candidates = label_start[label + 1] - first - 1
        chosen = min(donors, candidates)
        if chosen == 0:
            for b in range(block_count):
                source[i, b] = i
            continue
        # Floyd's algorithm: `chosen` distinct candidate numbers in [0, candidates).
        picked = np.empty(chosen, dtype=np.int64)
        item_seed = derive(donor_seed, i)
        filled = 0
        for j in range(candidates - chosen, candidates):
            value = bounded(derive(item_seed, filled), j + 1)
            for earlier in range(filled):
                if picked[earlier] == value:
                    value = j
                    break
            picked[filled] = value
            filled += 1
        picked.sort()
        own = position[i]
        for j in range(chosen):
            number = picked[j]
            picked[j] = members[first + number + (1 if number >= own else 0)]
        image_seed = derive(blocks_seed, i)
        for b in range(block_count):
            block_seed = derive(image_seed, b)
            if coin(derive(block_seed, 0), threshold):
                source[i, b] = picked[bounded(derive(block_seed, 1), chosen)]
            else:
                source[i, b] = i


@njit(parallel=True, cache=True)
def _compose(previous, round_source, total):
    count, block_count = previous.shape
    for i in prange(count):
        for b in range(block_count):
            total[i, b] = previous[round_source[i, b], b]


@njit(parallel=True, cache=True)
def _invert(source, inverse):
    count, block_count = source.shape
    for b in prange(block_count):
        for i in range(count):
            inverse[source[i, b], b] = i


def invert_source(source: np.ndarray) -> np.ndarray:
    """Inverse of a bijective source map: ``inverse[source[i, b], b] = i``."""
    inverse = np.empty_like(source)
    _invert(source, inverse)
    return inverse


def plan_window(codes: np.ndarray, grid: int | tuple[np.ndarray, np.ndarray], spec: MixSpec,
                key: Key, window_index: int) -> Plan:
    """Plan one window: its source map and, for a hardened spec, its hardening draws.

    Parameters
    ----------
    codes : ndarray of int64, shape (n,)
        Label codes of the window's images (see :func:`fastmix.plan.encode_labels`).
    grid : int or (row_edges, col_edges)
        The block edges in pixels (:func:`fastmix.kernels.steps.block_edges`), or only the
        number of blocks per image for an unhardened spec.
    spec : MixSpec
        The mixing parameters; ``spec.plan_rule`` cuts the permute groups.
    key : Key
        The secret key.
    window_index : int
        Index of the window in the store (0 for a single window).

    Returns
    -------
    Plan
    """
    if isinstance(grid, tuple):
        row_edges, col_edges = grid
        block_count = (len(row_edges) - 1) * (len(col_edges) - 1)
    elif spec.hardened:
        raise ValueError("a hardened spec needs the block edges to plan, not a block count")
    else:
        block_count = int(grid)
    codes = np.ascontiguousarray(codes, dtype=np.int64)
    count = codes.size
    window_seed = key.window_seed(spec.canonical(), window_index)
    threshold = coin_threshold(spec.prob)
    label_counts = np.bincount(codes) if count else np.zeros(0, dtype=np.int64)
    unpartnered = int(np.count_nonzero(label_counts == 1))

    total = None
    order = np.arange(count, dtype=np.int64)
    for round_number in range(spec.rounds):
        stream = ROUND_STRIDE * round_number
        source = np.empty((count, block_count), dtype=SOURCE_DTYPE)
        if spec.mode == "permute":
            sort_keys = _sort_keys(derive_seed(window_seed, stream + STREAM_SHUFFLE), count)
            order = np.lexsort((np.arange(count), sort_keys, codes))
            starts = group_starts(codes[order], spec.group_size(count), spec.plan_rule)
            _permute_round(order, starts, block_count,
                           derive_seed(window_seed, stream + STREAM_PERMUTE), threshold, source)
        else:
            members = np.argsort(codes, kind="stable")
            label_start = np.r_[0, np.cumsum(label_counts)].astype(np.int64)
            position = np.empty(count, dtype=np.int64)
            position[members] = np.arange(count) - label_start[codes[members]]
            order = members
            _paper_round(members, label_start, codes, position, block_count, spec.donors,
                         derive_seed(window_seed, stream + STREAM_DONORS),
                         derive_seed(window_seed, stream + STREAM_BLOCKS), threshold, source)
        if total is None:
            total = source
        else:
            composed = np.empty_like(total)
            _compose(total, source, composed)
            total = composed
    if total is None:
        total = np.empty((count, block_count), dtype=SOURCE_DTYPE)
    orientation = jitter_seed = jitter = None
    if spec.hardened:
        orientation, jitter_seed, jitter = draw_hardening(
            spec, window_seed, count, np.asarray(row_edges), np.asarray(col_edges))
    return Plan(source=total, unpartnered=unpartnered, order=order, codes=orientation,
                jitter_seed=jitter_seed, jitter=jitter)
