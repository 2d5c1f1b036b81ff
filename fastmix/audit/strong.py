"""The strong restoration attack: the jigsaw literature's attacker, knowing the spec only.

Compared with the adapted attack (:mod:`fastmix.audit.adaptive`), the strong attack

* solves the seam blur back (:func:`unblur_seams`): the blur's weights are public and the
  lines outside its band untouched, so the band is the solution of a small linear system
  per pixel; edges are then scored on their true boundary lines, not three lines apart;
* scores edges up to a per-block tone map (:func:`affine_score`), which the jitter's
  monotone tone curves (close to a line over one edge) cannot hide;
* tries all the orientations the spec allows for every block, jointly with its placement;
* assembles restored images from the most compatible links first (Gallagher's constrained
  spanning tree, CVPR 2012, on the fixed grid: :func:`assemble_fragments`), fills the gaps
  by a global assignment (Hungarian) at every position against its placed neighbours, then
  re-solves every position against all four neighbours, horizontal and vertical, choosing
  each block's orientation jointly with its place, until nothing changes
  (:func:`fastmix.audit.attack.sweep_positions`);
* repeats that in rounds (:func:`solve_fragments`): each round assembles the blocks in the
  orientations the last round's sweeps chose, while the total edge score falls.

Measured with ``python bench/bench_attack.py --task colour --keys 1 2 3 --attacks strong``
(colour crops, 4 labels x 40, 192x192, ``balanced``: whole-label pools of 40, 12x12 blocks
of 16 pixels, 8 orientations), it restores 0.56, 0.52 and 0.52 of the displaced blocks (A
0.53, 0.49, 0.50; images restored to 50% or more: 0.63, 0.56, 0.55); with three rounds, as
it stopped before, 0.39, 0.36, 0.37 (A 0.35, 0.32, 0.33). The search, not the edge score,
held it back: on the astronaut label (key 1) the true placement scores 21,321 in total, the
three rounds found 24,691 (restored 0.55); sweeping from the truth keeps 0.93 of it. More
rounds find lower totals: 0.67 restored after 9 rounds, 0.80 after 30, where the rounds'
cap (:data:`ORIENTATION_ROUNDS`) stops them. On the rocket label the edge score is what
fails: the truth scores higher than what the rounds find (0.18 restored either way).

Tried and dropped, as they scored worse here (edge accuracy: the share of blocks whose best
match, among every block in every orientation, is the true neighbour in its true
orientation): rank-normalised blocks (per block, each channel's ranks) and Gallagher's MGC
on the lines outside the blurred band (edge accuracy 0.10 and 0.48 on grey photo crops,
against 0.61 for the tone-map score on unblurred lines); normalising by the second best
*other block* instead of the second best candidate (0.561 against 0.562, restored 0.54
against 0.55 on the astronaut label); the issue's propagation alone (from a seed position,
each position's blocks assigned by Hungarian against all placed neighbours, then swept:
:func:`fastmix.audit.attack.solve_pool` at 25 starts, on the same scores): 0.24 and 0.15
on the astronaut and cat labels, against 0.80 and 0.37 for the rounds; swapping whole
rectangles of blocks between restored images by assignment (1 to 12 positions a side):
0.553 to 0.558; 60 rounds with a patience of 6 instead of 30 and 4: +0.01 to +0.03 for half
as much time again.

It takes the mixed images, their labels and the public spec: never a key.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from fastmix.audit import metrics
from fastmix.audit._deps import require
from fastmix.audit.adaptive import attack_donors
from fastmix.audit.attack import (
    Restoration,
    null_attack,
    position_links,
    restoration_attack,
    sweep_positions,
    total_score,
)
from fastmix.audit.edges import EdgeScorer, normalise_second_best
from fastmix.audit.geometry import BlockGrid
from fastmix.kernels.steps import blur_weights, value_range
from fastmix.spec import MixSpec


def unblur_seams(images: np.ndarray, grid: BlockGrid, sigma: float) -> np.ndarray:
    """Undo the seam blur of ``sigma``: the band's lines solved from the blur's own equations.

    The seam blur (docs/format.md section 2; defined in :mod:`fastmix.pipeline`) replaces the
    ``ceil(sigma)`` lines each side of every internal seam by a Gaussian sum
    (:func:`fastmix.kernels.steps.blur_weights`) of the lines around them, first across the
    horizontal seams, then across the vertical ones.
    The weights are public and the lines outside the band are untouched, so for each seam
    the band's values are the solution of a small linear system per pixel along it. The
    second pass is undone first. What is left is the rounding of each pass (about one grey
    level in the band).

    Parameters
    ----------
    images : ndarray, shape (n, H, W) or (n, H, W, C)
    grid : BlockGrid
        The block grid whose internal edges are the seams.
    sigma : float
        The spec's ``seam_blur``.

    Returns
    -------
    ndarray of float32, shape (n, H, W, C)
    """
    values = np.array(images, dtype=np.float32)
    if values.ndim == 3:
        values = values[..., None]
    if sigma <= 0:
        return values
    weights = blur_weights(float(sigma))
    half = math.ceil(sigma)
    for axis, bounds in ((2, grid.col_edges), (1, grid.row_edges)):
        _unblur_axis(np.moveaxis(values, axis, 1), np.asarray(bounds), weights, half)
    return values


def _unblur_axis(values: np.ndarray, bounds: np.ndarray, weights: np.ndarray,
                 half: int) -> None:
    """Solve, in place, the band lines of every seam along axis 1 of ``values``."""
    radius = (len(weights) - 1) // 2
    size = values.shape[1]
    for seam in bounds[1:-1].tolist():
        band = list(range(seam - half, seam + half))
        if band[0] - radius < 0 or band[-1] + radius >= size:
            continue  # the blur clamped its taps at the image's edge: left as found
        mixing = np.zeros((len(band), len(band)))
        known = np.zeros((len(band), *values.shape[:1], *values.shape[2:]))
        for row, line in enumerate(band):
            for tap in range(-radius, radius + 1):
                source = line + tap
                if source in band:
                    mixing[row, band.index(source)] = weights[tap + radius]
                else:
                    known[row] += weights[tap + radius] * values[:, source]
        observed = np.stack([values[:, line] for line in band]).astype(np.float64)
        solved = np.tensordot(np.linalg.inv(mixing), observed - known, axes=1)
        for row, line in enumerate(band):
            values[:, line] = solved[row]


def affine_score(a2: np.ndarray, a1: np.ndarray, b1: np.ndarray, b2: np.ndarray, *,
                 extrapolate: float = 0.5, slope: float = 0.05,
                 offset: float = 0.03) -> np.ndarray:
    """Residual of the best regularised tone map from one side's boundary to the other's.

    Per-block jitter maps each block's tones by its own monotone curve, close to a line
    over one edge's range. From each side, the boundary line extrapolated by
    ``extrapolate`` steps (``a1 + extrapolate (a1 - a2)``) is mapped onto the other side's
    boundary line by the least-squares line ``alpha x + beta``, penalised by ``slope (alpha
    - 1)^2`` and ``offset beta^2`` per pixel; the score is the square root of both
    directions' residuals. Values are on a [0, 1] scale.

    Parameters
    ----------
    a2, a1 : ndarray, shape (na, length)
        Inner and boundary line of the first (left or top) side.
    b1, b2 : ndarray, shape (nb, length)
        Boundary and inner line of the second side.

    Returns
    -------
    ndarray, shape (na, nb)
    """
    total = np.zeros((len(a1), len(b1)))
    length = a1.shape[1]
    for first, inner, second, transpose in ((a1, a2, b1, False), (b1, b2, a1, True)):
        x = first.astype(np.float64) * (1 + extrapolate) - extrapolate * inner
        y = second.astype(np.float64)
        sum_x = x.sum(axis=1)[:, None]
        sum_xx = (x * x).sum(axis=1)[:, None]
        sum_y = y.sum(axis=1)[None, :]
        sum_yy = (y * y).sum(axis=1)[None, :]
        sum_xy = x @ y.T
        # normal equations of sum (y - alpha x - beta)^2 + L slope (alpha - 1)^2 + L offset beta^2
        a11 = sum_xx + slope * length
        a22 = length * (1 + offset)
        r1 = sum_xy + slope * length
        det = a11 * a22 - sum_x ** 2
        alpha = (r1 * a22 - sum_x * sum_y) / det
        beta = (a11 * sum_y - sum_x * r1) / det
        residual = (sum_yy - 2 * alpha * sum_xy - 2 * beta * sum_y + alpha ** 2 * sum_xx
                    + 2 * alpha * beta * sum_x + beta ** 2 * length
                    + slope * length * (alpha - 1) ** 2 + offset * length * beta ** 2)
        residual = np.maximum(residual, 0.0)
        total += residual.T if transpose else residual
    return np.sqrt(total)


@dataclass
class StrongScorer(EdgeScorer):
    """Edge scores after undoing the seam blur, resistant to per-block tone curves.

    Parameters
    ----------
    blur : float
        The spec's ``seam_blur``: the band is solved back (:func:`unblur_seams`) before
        scoring, so edges are scored on their true boundary lines.
    tone_invariant : bool
        Score with :func:`affine_score` (against jitter) instead of the
        prediction-boundary score.
    """

    blur: float = 0.0
    tone_invariant: bool = False

    def matrices(self, images: np.ndarray, grid: BlockGrid) -> dict[tuple[int, int], np.ndarray]:
        """Raw dissimilarity of every edge of the unblurred images, on a [0, 1] scale."""
        images = np.asarray(images)
        values = unblur_seams(images, grid, self.blur)
        if self.tone_invariant:  # the jitter's scale: the regularisation is in its units
            low, high, _ = value_range(images.dtype, "the strong attack")
            values = (values - low) / (high - low)
        return super().matrices(values, grid)

    def edge_score(self, a2, a1, b1, b2) -> np.ndarray:
        """Return :func:`affine_score` (tone-invariant) or the prediction-boundary score."""
        if self.tone_invariant:
            return affine_score(a2, a1, b1, b2).astype(np.float32)
        return self.score(a2, a1, b1, b2)


def _best_links(normalised: dict, top: int) -> np.ndarray:
    """Rows ``(score, first, candidate, second, candidate)`` of every edge's best matches.

    For every candidate on each side of each edge, its ``top`` best partners on the other
    side; sorted by score, best first.
    """
    found = []
    for (first, second), scores in normalised.items():
        k = min(top, scores.shape[0], scores.shape[1])
        for axis in (1, 0):
            best = np.argpartition(scores, k - 1, axis=axis)
            if axis == 1:
                rows = np.repeat(np.arange(scores.shape[0]), k)
                cols = best[:, :k].ravel()
            else:
                cols = np.tile(np.arange(scores.shape[1]), k)
                rows = best[:k, :].ravel()
            found.append(np.stack([scores[rows, cols], np.full(rows.size, first), rows,
                                   np.full(rows.size, second), cols], axis=1))
    links = np.concatenate(found)
    return links[np.argsort(links[:, 0], kind="stable")]


def assemble_fragments(normalised: dict, variants: int, top: int = 1) -> list[dict]:
    """Grow restored-image fragments from the most compatible links first.

    Gallagher's constrained spanning tree (CVPR 2012) on a fixed grid: links between blocks
    at adjacent positions are taken best first; a link joins two fragments (each a map of
    position to candidate) when they hold no common position and agree on the linked
    blocks' orientations.

    Returns
    -------
    list of dict
        The fragments, ``{position: candidate}``.
    """
    fragment_of: dict[tuple[int, int], int] = {}
    fragments: dict[int, dict[int, int]] = {}
    numbers = itertools.count()
    for _, first, one, second, other in _best_links(normalised, top).tolist():
        first, one, second, other = int(first), int(one), int(second), int(other)
        ends = ((first, one // variants), (second, other // variants))
        ids = [fragment_of.get(end) for end in ends]
        if ids[0] is not None and ids[0] == ids[1]:
            continue
        parts = [fragments[ids[0]] if ids[0] is not None else {first: one},
                 fragments[ids[1]] if ids[1] is not None else {second: other}]
        if parts[0][first] != one or parts[1][second] != other:
            continue  # a block already placed in another orientation
        if len(parts[0]) < len(parts[1]):
            parts.reverse()
            ids.reverse()
        kept, merged = parts
        if any(position in kept for position in merged):
            continue
        kept_id = ids[0]
        if kept_id is None:
            kept_id = next(numbers)
            fragments[kept_id] = kept
            for position, candidate in kept.items():
                fragment_of[(position, candidate // variants)] = kept_id
        for position, candidate in merged.items():
            kept[position] = candidate
            fragment_of[(position, candidate // variants)] = kept_id
        if ids[1] is not None:
            del fragments[ids[1]]
    return list(fragments.values())


def complete_fragments(normalised: dict, grid: BlockGrid, size: int, variants: int,
                       fragments: list[dict]) -> np.ndarray:
    """Restored images from the ``size`` largest fragments, the gaps filled by assignment.

    Position by position, the one whose neighbours hold the most placed blocks first, the
    blocks not yet placed there go to the images that lack that position
    (:func:`scipy.optimize.linear_sum_assignment` against the placed neighbours, each block
    in its best orientation).
    """
    assign = require("scipy.optimize").linear_sum_assignment
    placement = np.full((size, grid.count), -1, dtype=np.int64)
    used = np.zeros((grid.count, size), dtype=bool)
    for slot, fragment in enumerate(sorted(fragments, key=len, reverse=True)[:size]):
        for position, candidate in fragment.items():
            placement[slot, position] = candidate
            used[position, candidate // variants] = True
    links = position_links(normalised, grid)
    adjacent = np.zeros((grid.count, grid.count), dtype=np.int64)
    for at in range(grid.count):
        adjacent[at, grid.neighbours(at)] = 1
    waiting = np.ones(grid.count, dtype=bool)
    while waiting.any():
        # the open position whose neighbours hold the most placed blocks (the first on a tie)
        placed_around = adjacent @ (placement >= 0).sum(axis=0)
        position = int(np.argmax(np.where(waiting, placed_around, -1)))
        waiting[position] = False
        slots = np.flatnonzero(placement[:, position] < 0)
        if not slots.size:
            continue
        blocks = np.flatnonzero(~used[position])
        candidates = (blocks[:, None] * variants + np.arange(variants)).ravel()
        cost = np.zeros((slots.size, candidates.size))
        for neighbour, scores in links[position]:
            placed = placement[slots, neighbour]
            known = placed >= 0
            cost[known] += scores[np.ix_(placed[known], candidates)]
        by_variant = cost.reshape(slots.size, blocks.size, variants)
        variant = np.argmin(by_variant, axis=2)
        rows, cols = assign(np.take_along_axis(by_variant, variant[:, :, None], axis=2)[:, :, 0])
        placement[slots[rows], position] = blocks[cols] * variants + variant[rows, cols]
        used[position, blocks[cols]] = True
    return placement


#: Most rounds of orienting every block, assembling and sweeping (:func:`solve_fragments`).
#: The total score keeps falling for tens of rounds on a pool of 40 colour crops (astronaut,
#: key 1: restored 0.55 after 3 rounds, 0.67 after 9, 0.79 after 27).
ORIENTATION_ROUNDS = 30
#: Rounds without a lower total score after which :func:`solve_fragments` stops.
PATIENCE = 4


def solve_fragments(normalised: dict, grid: BlockGrid, size: int, *, variants: int = 1,
                    starts: int | None = None, rng: np.random.Generator | None = None,
                    max_sweeps: int = 20, rounds: int = ORIENTATION_ROUNDS,
                    patience: int = PATIENCE) -> np.ndarray:
    """Restore one pool: fragments (:func:`assemble_fragments`), gaps filled, then sweeps.

    The signature of :func:`fastmix.audit.attack.solve_pool` (``starts`` and ``rng`` are
    unused: the assembly is deterministic). With orientation variants, the blocks are
    oriented first (:func:`likely_orientations`), then each round assembles the oriented
    blocks, sweeps every position (placement and orientation jointly) and takes the
    orientations the sweeps chose for the next round; it stops after ``rounds`` rounds or
    ``patience`` rounds without a lower total score (:func:`fastmix.audit.attack.total_score`)
    and returns the placement of the lowest. Returns candidate indices, shape (size,
    positions).
    """
    links = position_links(normalised, grid)
    order = list(range(grid.count))
    if variants == 1:
        placement = complete_fragments(normalised, grid, size, 1,
                                       assemble_fragments(normalised, 1))
        return sweep_positions(links, placement, order, variants, max_sweeps)
    # orient every block first, then place the oriented blocks: with one candidate per block
    # the links are far less ambiguous (one colour label of 40 crops: 0.21 -> 0.37 restored);
    # the sweeps choose orientations again jointly with the placement, and the assembly is
    # redone with them: each round corrects some orientations, and the lower total score
    # follows the truth (the true placement scores lower than what 3 rounds find)
    chosen = likely_orientations(links, grid, size, variants)
    best, best_score, waited = None, np.inf, 0
    for _ in range(max(1, rounds)):
        oriented = {(first, second): normalise_second_best(
            scores[np.ix_(chosen[first], chosen[second])])
            for (first, second), scores in normalised.items()}
        placed = complete_fragments(oriented, grid, size, 1, assemble_fragments(oriented, 1))
        placement = sweep_positions(links, np.take_along_axis(chosen.T, placed, axis=0),
                                    order, variants, max_sweeps)
        for position in order:
            chosen[position, placement[:, position] // variants] = placement[:, position]
        score = total_score(normalised, placement)
        if score < best_score:
            best, best_score, waited = placement.copy(), score, 0
        else:
            waited += 1
            if waited >= patience:
                break
    assert best is not None  # at least one round, and its score is finite
    return best


def likely_orientations(links: list, grid: BlockGrid, size: int, variants: int) -> np.ndarray:
    """Per position, each block's candidate in the orientation whose best matches are best.

    The orientation of block ``i`` at position ``p`` minimises the sum, over the neighbouring
    positions, of its best score against any candidate there.

    Returns
    -------
    ndarray of int64, shape (positions, size)
        Candidate indices ``block * variants + variant``.
    """
    chosen = np.empty((grid.count, size), dtype=np.int64)
    for position in range(grid.count):
        fit = np.zeros(size * variants)
        for _, scores in links[position]:
            fit += scores.min(axis=0)
        chosen[position] = (np.arange(size) * variants
                            + np.argmin(fit.reshape(size, variants), axis=1))
    return chosen


def strong_scorer(spec: MixSpec, height: int, width: int) -> StrongScorer:
    """Return the strong attack's scorer for data mixed with ``spec`` (public knowledge only)."""
    spec.block_shape(height, width)  # a clear error for a geometry that does not fit
    return StrongScorer(orientations=spec.orient, blur=spec.seam_blur,
                        tone_invariant=spec.jitter is not None)


def strong_attack(mixed: np.ndarray, labels: np.ndarray, spec: MixSpec, *,
                  window: int | None = None, groups: list | None = None,
                  scorer: EdgeScorer | None = None, starts: int | None = None,
                  seed: int = 0, progress=None) -> Restoration:
    """Restore mixed images without the key, with the strong attack.

    Parameters
    ----------
    mixed : ndarray, shape (n, H, W) or (n, H, W, C)
        The mixed images (one window).
    labels : ndarray, shape (n,)
        Their labels.
    spec : MixSpec
        The public mixing parameters (the attacker knows them, never the key).
    window : int, optional
        The window the data was mixed with (sets the permute group size).
    groups : list of array-like, optional
        Known pools of image indices (an upper bound); default inferred as the adapted
        attack does.
    scorer : EdgeScorer, optional
        Default: :func:`strong_scorer`.
    starts : int, optional
        Seed positions tried per pool (see :func:`fastmix.audit.attack.default_starts`).
    seed : int
        Seed of the attack's own random choices.
    progress : Progress, optional
        Advanced by each pool's images once the pool is solved.

    Returns
    -------
    Restoration
    """
    mixed = np.asarray(mixed)
    height, width = mixed.shape[1:3]
    scorer = scorer or strong_scorer(spec, height, width)
    return restoration_attack(mixed, labels, spec.block_shape(height, width), spec.mode,
                              attack_donors(spec, window or len(mixed)), groups=groups,
                              scorer=scorer, starts=starts, seed=seed, progress=progress,
                              rule=spec.plan_rule, solver=solve_fragments)


#: The attacks the audit runs, weakest first; the verdict comes from the strongest.
ATTACKS = ("adapted", "strong")


def strongest_attack(mixed: np.ndarray, labels: np.ndarray, spec: MixSpec, *,
                     judge, window: int | None = None, groups: list | None = None,
                     scorer: EdgeScorer | None = None, seed: int = 0,
                     progress=None,
                     every: dict | None = None) -> tuple[str, Restoration, EdgeScorer, dict]:
    """Run every attack of :data:`ATTACKS` and keep the one that restores the most.

    The attacks never see the key. ``judge(restoration) -> float`` is the auditor's measure
    against the ground truth (the advantage A); the highest wins, the first on a tie.
    ``every``, when given, receives ``{name: (restoration, scorer)}`` of every attack (the
    audit re-identifies an image when any attack's restoration does).

    Returns
    -------
    name : str
        The strongest attack.
    restoration : Restoration
        Its restoration.
    scorer : EdgeScorer
        Its edge scorer (to assemble the restored images).
    figures : dict
        ``{name: judge value}`` of every attack run.
    """
    from fastmix.audit.adaptive import scorer_for

    height, width = np.asarray(mixed).shape[1:3]
    adapted = scorer or scorer_for(spec, height, width)
    best = None
    figures = {}
    for name in ATTACKS:
        if name == "adapted":
            used = adapted
            restoration = restoration_attack(
                mixed, labels, spec.block_shape(height, width), spec.mode,
                attack_donors(spec, window or len(mixed)), groups=groups, scorer=used,
                seed=seed, progress=progress, rule=spec.plan_rule)
        else:
            used = strong_scorer(spec, height, width)
            restoration = strong_attack(mixed, labels, spec, window=window, groups=groups,
                                        scorer=used, seed=seed, progress=progress)
        figures[name] = float(judge(restoration))
        if every is not None:
            every[name] = (restoration, used)
        if best is None or figures[name] > figures[best[0]]:
            best = (name, restoration, used)
    assert best is not None  # ATTACKS is never empty
    return best[0], best[1], best[2], figures


def advantage_of(restoration: Restoration, source: np.ndarray, labels: np.ndarray,
                 grid: BlockGrid, classes: np.ndarray | None = None, *, seed: int = 0) -> float:
    """Return the auditor's advantage A of a restoration over chance (ground truth known).

    ``(R - R0) / (1 - R0)`` with ``R`` the restored share of displaced blocks and ``R0``
    that of a random assignment within the same pools
    (:func:`fastmix.audit.attack.null_attack`).
    """
    count, positions = restoration.placement.shape
    chance = null_attack(restoration.pools, positions, count, seed=seed)
    found = metrics.score_restoration(restoration.placement, source, labels, grid, classes)
    null = metrics.score_restoration(chance.placement, source, labels, grid, classes)
    displaced = found.displaced.sum()
    if not displaced:
        return float("nan")
    restored, level = found.restored.sum() / displaced, null.restored.sum() / displaced
    return float((restored - level) / (1 - level)) if level < 1 else float("nan")


#: Working memory of the attack, by default: the edge scores of one pool and the images
#: (issue 22 part 5: an audit of 3,200 images of 192x192 once reached 10.5 GB).
ATTACK_MEMORY = 1 << 30
#: Seconds both attacks may take together, by default (``fastmix audit --time``, ``fastmix
#: mix --audit-time``), as :func:`attack_seconds` estimates them.
ATTACK_SECONDS = 180.0
#: Bytes per pair of candidates per edge: the raw float32 score, its float64 normalised copy
#: and that copy's C-ordered transpose (:func:`fastmix.audit.attack.position_links`).
_PAIR_BYTES = 20
#: :func:`attack_seconds`' constants, in seconds of one core of the 2-core development
#: machine (fitted to both attacks on the balanced, strong and fast presets' 192x192 photo
#: crops, pools of 12 to 200 images: within 25% of each of those runs):
#: per edge, candidate pair and boundary value; per position squared, image squared and
#: variant (the adapted attack's assignments, at 25 starts); per pixel of every image
#: (similarity, re-identification, seam solving); per round (:data:`ORIENTATION_ROUNDS`),
#: position, image squared and variant (the strong attack's rounds, with orientation only).
#: The sweeps' speed-up (position_links' C-ordered copies, solving again only where a
#: neighbour changed) took the adapted attack's solve to 0.25-0.42 of its time with 8
#: variants and 0.40-0.63 with one (pools of 40 colour crops, 12x12 grid): the second
#: constant is 0.6 of what it was (7.6e-8). The rounds cost 0.9-1.1 s each on such a pool
#: where the adapted solve took 46-50 s before (20 s by this model).
_SCORE_SECONDS, _SOLVE_SECONDS, _PIXEL_SECONDS = 5.4e-9, 4.6e-8, 3e-7
_ROUND_SECONDS = 2.4e-7


def attack_seconds(size: int, grid: BlockGrid, variants: int, pixels: int,
                   channels: int = 1) -> float:
    """Estimated seconds of both attacks on one pool of ``size`` images (a model, not a timer).

    ``pixels`` per image and channel; ``channels`` per pixel. The estimate is the same on
    every machine, so the sample it chooses, and so the audit's figures, are too. The strong
    attack's rounds are counted at their most (:data:`ORIENTATION_ROUNDS`).
    """
    from fastmix.audit.attack import default_starts

    edges, positions = max(len(grid.edges()), 1), grid.count
    line = (grid.row_edges[-1] / grid.rows + grid.col_edges[-1] / grid.cols) / 2 * channels
    candidates = size * max(variants, 1)
    starts = default_starts(positions, size) / 25
    rounds = ORIENTATION_ROUNDS if variants > 1 else 0
    return (_SCORE_SECONDS * edges * line * candidates ** 2
            + _SOLVE_SECONDS * positions ** 2 * size * candidates * starts
            + _ROUND_SECONDS * rounds * positions * size * candidates
            + _PIXEL_SECONDS * size * pixels * channels)


def attack_memory(size: int, sampled: int, grid: BlockGrid, variants: int,
                  image_bytes: int, pixels: int) -> int:
    """Bytes the attack holds at once: one pool of ``size`` of ``sampled`` images.

    The pool's edge scores (:data:`_PAIR_BYTES` per candidate pair and edge), its images as
    float32 in every orientation and as float64 (re-identification), and three copies of the
    sample (original, mixed, restored).
    """
    edges = max(len(grid.edges()), 1)
    scores = edges * (size * max(variants, 1)) ** 2 * _PAIR_BYTES
    pool = size * pixels * (4 * (1 + max(variants, 1)) + 16)
    return int(scores + pool + 3 * sampled * image_bytes)


def attack_sample(sample: int, pools, grid: BlockGrid, variants: int, *,
                  memory: int = ATTACK_MEMORY, seconds: float = ATTACK_SECONDS,
                  image_bytes: int = 0, pixels: int = 0, channels: int = 1) -> int:
    """Images per pool the attack may take within its memory and time budget.

    ``pools``: the size of every pool (label within a window) the sample is drawn from, or
    their number (each then taken as larger than ``sample``). The largest ``m`` up to
    ``sample`` whose :func:`attack_memory` fits ``memory`` and whose :func:`attack_seconds`,
    summed over the pools (each giving ``min(size, m)`` images), fits ``seconds``. At least
    2, whatever the budget.
    """
    sizes = ([int(sample)] * int(pools) if isinstance(pools, int | np.integer)
             else [int(size) for size in pools])
    channels = max(int(channels), 1)

    def fits(m: int) -> bool:
        taken = [min(size, m) for size in sizes]
        largest = max(taken, default=0)
        cost = sum(attack_seconds(size, grid, variants, pixels, channels) for size in taken)
        held = attack_memory(largest, sum(taken), grid, variants, image_bytes,
                             pixels * channels)
        return cost <= seconds and held <= memory

    low, high = 2, max(2, int(sample))
    while low < high:  # the largest m that fits; both costs grow with m
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return int(low)
