"""Measures of a restoration against the ground truth, with bootstrap intervals.

All arrays are local to the audited sample: ``source[k, b]`` is the original (index in the
sample) whose block ``b`` mixed image ``k`` holds, or -1 when that original is outside the
sample (it then counts for nothing).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastmix.audit._deps import require
from fastmix.audit.geometry import BlockGrid


@dataclass(frozen=True)
class Scored:
    """Per-original results of one restoration.

    Attributes
    ----------
    match : ndarray, shape (n,)
        ``match[o]``: the restored image (slot) matched to original ``o``.
    displaced : ndarray, shape (n,)
        Displaced blocks of each original found in the mixed images.
    restored : ndarray, shape (n,)
        Of those, how many the restoration put back into the image matched to the original.
    share : ndarray, shape (n,)
        Share of the original's positions that its matched restored image gets right.
    neighbours : ndarray, shape (n,)
        Adjacent block pairs of the matched restored image that come from one original.
    """

    match: np.ndarray
    displaced: np.ndarray
    restored: np.ndarray
    share: np.ndarray
    neighbours: np.ndarray


def origins(placement: np.ndarray, source: np.ndarray) -> np.ndarray:
    """``origin[s, b]``: the original of the block that restored image ``s`` holds at ``b``."""
    return source[placement, np.arange(placement.shape[1])[None, :]]


def match_slots(origin: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pair every original with one restored image, maximising the blocks they share."""
    assign = require("scipy.optimize").linear_sum_assignment
    count, _blocks = origin.shape
    match = np.arange(count)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        local = np.full(count, -1, dtype=np.int64)
        local[members] = np.arange(members.size)
        held = local[np.where(origin[members] >= 0, origin[members], 0)]
        held[origin[members] < 0] = -1
        overlap = np.zeros((members.size, members.size), dtype=np.int64)  # [slot, original]
        valid = held >= 0
        rows = np.broadcast_to(np.arange(members.size)[:, None], held.shape)
        np.add.at(overlap, (rows[valid], held[valid]), 1)
        slots, originals = assign(-overlap)
        match[members[originals]] = members[slots]
    return match


def adjacent_same(origin: np.ndarray, grid: BlockGrid) -> np.ndarray:
    """Per image, how many adjacent block pairs come from the same original."""
    same = np.zeros(len(origin), dtype=np.int64)
    for first, second, _ in grid.edges():
        same += (origin[:, first] == origin[:, second]) & (origin[:, first] >= 0)
    return same


def score_restoration(placement: np.ndarray, source: np.ndarray, labels: np.ndarray,
                      grid: BlockGrid, classes: np.ndarray | None = None) -> Scored:
    """Score a restoration against the ground truth ``source``.

    ``classes[o, b]`` names one representative of all originals whose block ``b`` is
    identical to that of ``o`` (see :func:`fastmix.audit.groundtruth.content_classes`); such
    blocks count as the same block. Default: every block is distinct.
    """
    count, blocks = placement.shape
    positions = np.arange(blocks)[None, :]
    if classes is None:
        classes = np.broadcast_to(np.arange(count)[:, None], (count, blocks))
    origin = origins(placement, source)
    match = match_slots(origin, labels)
    original_of_slot = np.empty(count, dtype=np.int64)
    original_of_slot[match] = np.arange(count)
    slot_of = np.empty_like(placement)
    slot_of[placement, positions] = np.arange(count)[:, None]
    valid = source >= 0
    owner = np.where(valid, source, 0)
    content = classes[owner, positions]
    displaced_mask = valid & (content != classes)
    put_back = classes[original_of_slot[slot_of], positions] == content
    displaced = np.bincount(owner[displaced_mask], minlength=count)
    restored = np.bincount(owner[displaced_mask & put_back], minlength=count)
    matched_origin = origin[match]
    placed_content = classes[np.where(matched_origin >= 0, matched_origin, 0), positions]
    share = ((matched_origin >= 0) & (placed_content == classes)).mean(axis=1)
    neighbours = adjacent_same(matched_origin, grid)
    return Scored(match, displaced, restored, share, neighbours)


def bootstrap_weights(count: int, repeats: int, seed: int) -> np.ndarray:
    """How often each of ``count`` items is drawn in each of ``repeats`` resamples."""
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, count, size=(repeats, count))
    weights = np.zeros((repeats, count), dtype=np.float64)
    np.add.at(weights, (np.repeat(np.arange(repeats), count), draws.ravel()), 1.0)
    return weights


def interval(samples: np.ndarray) -> list[float]:
    """Return the central 95% interval of bootstrap samples."""
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return [float("nan"), float("nan")]
    low, high = np.percentile(samples, [2.5, 97.5])
    return [float(low), float(high)]


def ratio(weights: np.ndarray, numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """Bootstrap samples of ``sum(numerator) / sum(denominator)``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return (weights @ numerator) / (weights @ denominator)


def flat_distances(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Squared Euclidean distances between the images of ``first`` and ``second``."""
    a = first.reshape(len(first), -1).astype(np.float64)
    b = second.reshape(len(second), -1).astype(np.float64)
    return (a ** 2).sum(1)[:, None] - 2 * a @ b.T + (b ** 2).sum(1)[None, :]


def reidentified(candidates: np.ndarray, original: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Return whether each ``candidates[o]`` is closest to ``original[o]``.

    Closest among all the originals of the same label.
    """
    found = np.zeros(len(original), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        distance = flat_distances(candidates[members], original[members])
        own = distance[np.arange(members.size), np.arange(members.size)]
        np.fill_diagonal(distance, np.inf)
        found[members] = own < distance.min(axis=1)
    return found


def ssim_each(first: np.ndarray, second: np.ndarray, data_range: float) -> np.ndarray:
    """SSIM of every pair ``first[o]``, ``second[o]`` (scikit-image)."""
    structural_similarity = require("skimage.metrics").structural_similarity
    height, width = first.shape[1:3]
    window = min(7, height, width)
    window -= 1 - window % 2
    if window < 3:
        return np.full(len(first), np.nan)
    colour = first.ndim == 4
    values = np.empty(len(first))
    for index in range(len(first)):
        values[index] = structural_similarity(
            first[index].astype(np.float64), second[index].astype(np.float64),
            data_range=data_range, win_size=window, channel_axis=2 if colour else None)
    return values
