"""The restoration attack adapted to hardening: a Kerckhoffs attacker who knows it.

The attacker knows the spec (not the key), so against each hardening option it:

* seam blur: scores edges on the first lines *outside* the blurred band, ``ceil(sigma)``
  pixels from the seam, since the band mixes pixels of the wrong neighbours;
* jitter: adds to the raw edge score the score of mean-removed lines (each side's lines
  minus the mean of its boundary line), which a per-block brightness offset cannot move;
* orientation: tries every orientation the spec allows for every candidate block (``d4``
  on square blocks, the four flips on the others, position by position).

Use :func:`scorer_for` as the ``scorer`` of :func:`fastmix.audit.audit_arrays` or
:func:`fastmix.audit.restoration_attack`, and :func:`attack_donors` for its ``donors``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fastmix.audit.edges import EdgeScorer, lines_from_end, lines_from_start
from fastmix.spec import MixSpec


@dataclass
class AdaptiveScorer(EdgeScorer):
    """An :class:`EdgeScorer` that skips blurred bands and resists offset jitter.

    Parameters
    ----------
    skip : int
        Lines next to each seam that are ignored on both sides (the blurred band).
    offset_invariant : bool
        Add the score of mean-removed lines to the raw score.
    """

    skip: int = 0
    offset_invariant: bool = False

    def edge_lines(self, a_blocks: np.ndarray, b_blocks: np.ndarray, axis: int) -> list:
        """Return the edge lines just outside the blurred band."""
        a1, a2 = lines_from_end(a_blocks, axis, self.skip)
        b1, b2 = lines_from_start(b_blocks, axis, self.skip)
        return [line.reshape(line.shape[0], -1) for line in (a2, a1, b1, b2)]

    def edge_score(self, a2, a1, b1, b2) -> np.ndarray:
        """Return the raw score, plus the score of mean-removed lines against jitter."""
        scores = self.score(a2, a1, b1, b2)
        if self.offset_invariant:
            mean_a = a1.mean(axis=1, keepdims=True)
            mean_b = b1.mean(axis=1, keepdims=True)
            scores = scores + self.score(a2 - mean_a, a1 - mean_a, b1 - mean_b, b2 - mean_b)
        return scores


def scorer_for(spec: MixSpec, height: int, width: int) -> EdgeScorer:
    """Return the adapted edge scorer for data mixed with ``spec`` (a plain one when unhardened).

    ``height`` and ``width`` are the image size. Under ``d4`` the scorer tries the eight
    orientations on square blocks and the four flips on the others, as the mixing allows.
    """
    if not spec.hardened:
        return EdgeScorer()
    spec.block_shape(height, width)  # a clear error for a geometry that does not fit
    return AdaptiveScorer(orientations=spec.orient,
                          skip=math.ceil(spec.seam_blur) if spec.seam_blur > 0 else 0,
                          offset_invariant=spec.jitter is not None)


def attack_donors(spec: MixSpec, window_count: int) -> int:
    """Return the ``donors`` to give the attack: the group size minus one (permute mode)."""
    if spec.mode != "permute":
        return spec.donors
    return spec.group_size(window_count) - 1


def audit_options(spec: MixSpec, height: int, width: int, *, key_given: bool) -> dict:
    """Keyword arguments for :func:`fastmix.audit.audit_arrays` on data mixed with ``spec``.

    The adapted scorer; with the key, the true groups too (the conservative upper bound the
    hardening figures are quoted with).
    """
    return {"scorer": scorer_for(spec, height, width),
            "groups_known": bool(key_given and spec.mode == "permute")}
