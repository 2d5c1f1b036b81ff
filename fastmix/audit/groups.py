"""Infer which mixed images exchanged blocks (permute mode groups) from the pixels alone.

Blocks that truly met across an edge usually are each other's best match. In permute mode
a block's true neighbours stay inside its group, so images linked by many mutual best
matches belong to the same group. The link graph is cut into the known number of groups by
spectral clustering.
"""

from __future__ import annotations

import numpy as np

from fastmix.audit._deps import require
from fastmix.plan.groups import group_sizes
from fastmix.spec import PLAN_RULE


def group_count(images: int, group_size: int, rule: int = PLAN_RULE) -> int:
    """Return how many groups permute mode cuts ``images`` same-label images into.

    The group rule: docs/format.md section 2.
    """
    return len(group_sizes(images, group_size, rule))


def link_weights(normalised: dict[tuple[int, int], np.ndarray], images: int,
                 variants: int = 1) -> np.ndarray:
    """Symmetric count of mutual best matches between every pair of images, shape (n, n)."""
    weights = np.zeros((images, images), dtype=np.float64)
    for scores in normalised.values():
        best_right = np.argmin(scores, axis=1)
        best_left = np.argmin(scores, axis=0)
        mutual = np.flatnonzero(best_left[best_right] == np.arange(scores.shape[0]))
        np.add.at(weights, (mutual // variants, best_right[mutual] // variants), 1.0)
    weights = weights + weights.T
    np.fill_diagonal(weights, 0.0)
    return weights


def infer_groups(normalised: dict[tuple[int, int], np.ndarray], images: int, group_size: int,
                 *, variants: int = 1, seed: int = 0, rule: int = PLAN_RULE) -> list[np.ndarray]:
    """Split ``images`` mixed images of one label into their likely permute groups.

    Parameters
    ----------
    normalised : dict
        Normalised edge scores over all the label's images (see
        :func:`fastmix.audit.edges.normalise_second_best`).
    images : int
        Number of images.
    group_size : int
        ``donors + 1``.
    variants : int
        Orientation variants per block in the score matrices.
    seed : int
        Seed of the clustering.
    rule : int
        The plan rule the groups were cut with (:mod:`fastmix.plan.groups`).

    Returns
    -------
    list of ndarray
        Image indices of each inferred group.
    """
    clusters = group_count(images, group_size, rule)
    if clusters <= 1:
        return [np.arange(images)]
    weights = link_weights(normalised, images, variants)
    cluster = require("sklearn.cluster")
    affinity = weights + 1e-3 * (weights.max() or 1.0) / images
    np.fill_diagonal(affinity, 0.0)
    assigned = cluster.SpectralClustering(
        n_clusters=clusters, affinity="precomputed", assign_labels="cluster_qr",
        random_state=seed,
    ).fit_predict(affinity)
    return [np.flatnonzero(assigned == label) for label in np.unique(assigned)]
