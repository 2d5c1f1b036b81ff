"""Ground truth from the data itself: where every block went.

For each label and block position the original blocks are hashed; every mixed block is
looked up among the originals of its label at the same position. A mixed block that matches
no original exactly (a lossy copy, such as a JPEG round trip) takes the nearest original
block instead. Neither the key nor the planner is needed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from fastmix.audit.geometry import BlockGrid


@dataclass(frozen=True)
class GroundTruth:
    """Where every mixed block came from.

    Attributes
    ----------
    source : ndarray of int64, shape (n, blocks)
        Mixed block ``(k, b)`` is block ``b`` of original ``source[k, b]``.
    exact : ndarray of bool, shape (n, blocks)
        Whether the block matched an original bit for bit (else: nearest block).
    """

    source: np.ndarray
    exact: np.ndarray

    @property
    def displaced(self) -> np.ndarray:
        """Mixed blocks that did not come from the image at their own index."""
        return self.source != np.arange(len(self.source))[:, None]

    def displaced_fraction(self) -> float:
        """Share of mixed blocks that came from another image."""
        return float(self.displaced.mean()) if self.source.size else 0.0

    def copies(self) -> np.ndarray:
        """How many times each original block appears in the mixed set, shape (n, blocks)."""
        count, blocks = self.source.shape
        found = np.zeros((count, blocks), dtype=np.int64)
        np.add.at(found, (self.source, np.broadcast_to(np.arange(blocks), self.source.shape)), 1)
        return found

    def largest_share(self) -> np.ndarray:
        """Per original, the largest share of its blocks held by any single mixed image."""
        count, blocks = self.source.shape
        held = np.zeros((count, count), dtype=np.int64)  # held[mixed, original]
        np.add.at(held, (np.repeat(np.arange(count), blocks), self.source.ravel()), 1)
        return held.max(axis=0) / blocks


def _digest(block: np.ndarray) -> bytes:
    return hashlib.blake2b(np.ascontiguousarray(block).tobytes(), digest_size=16).digest()


def content_classes(images: np.ndarray, pools: np.ndarray, grid: BlockGrid) -> np.ndarray:
    """For every block, the first image of its pool holding an identical block there.

    Blocks with equal content (a uniform sky, a black border) cannot be told apart by any
    attack; the metrics treat them as one. Shape (n, blocks), indices into ``images``.
    """
    classes = np.empty((len(images), grid.count), dtype=np.int64)
    for pool in np.unique(pools):
        members = np.flatnonzero(pools == pool)
        for position in range(grid.count):
            first: dict[bytes, int] = {}
            for local, block in enumerate(grid.block(images[members], position)):
                classes[members[local], position] = members[first.setdefault(_digest(block),
                                                                             local)]
    return classes


def locate_blocks(original: np.ndarray, mixed: np.ndarray, labels: np.ndarray,
                  grid: BlockGrid) -> GroundTruth:
    """Find, for every mixed block, the original block it copies.

    Parameters
    ----------
    original, mixed : ndarray, shape (n, H, W) or (n, H, W, C)
        The data before and after mixing, in the same order.
    labels : ndarray, shape (n,)
        Labels; blocks only move between images of the same label.
    grid : BlockGrid
        The block grid.

    Returns
    -------
    GroundTruth
    """
    count = len(original)
    source = np.empty((count, grid.count), dtype=np.int64)
    exact = np.ones((count, grid.count), dtype=bool)
    labels = np.asarray(labels)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        for position in range(grid.count):
            before = grid.block(original[members], position)
            after = grid.block(mixed[members], position)
            where: dict[bytes, list[int]] = {}
            for local, block in enumerate(before):
                where.setdefault(_digest(block), []).append(local)
            missing = []
            for local, block in enumerate(after):
                found = where.get(_digest(block))
                if found is None:
                    missing.append(local)
                    continue
                # identical originals: the image's own block when it is one of them
                chosen = local if local in found else found[0]
                source[members[local], position] = members[chosen]
            if missing:
                flat_before = before.reshape(len(members), -1).astype(np.float64)
                flat_after = after[missing].reshape(len(missing), -1).astype(np.float64)
                distance = ((flat_after ** 2).sum(1)[:, None] - 2 * flat_after @ flat_before.T
                            + (flat_before ** 2).sum(1)[None, :])
                nearest = np.argmin(distance, axis=1)
                source[members[missing], position] = members[nearest]
                exact[members[missing], position] = False
    return GroundTruth(source=source, exact=exact)
