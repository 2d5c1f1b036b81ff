"""The restoration attack: put mixed blocks back into whole images, without the key.

The attacker sees the mixed images, their labels, the block grid, the mode, ``donors`` and
``prob``. Block positions are fixed by the scheme, so restoring a pool of ``m`` images is,
at every position, an assignment of the ``m`` blocks found there to ``m`` restored images
("slots"). Starting from a seed position, positions are filled outward, each solved with
:func:`scipy.optimize.linear_sum_assignment` against the neighbours already placed; then
every position is re-solved against all four neighbours until nothing changes. The start
with the lowest total edge score wins.

Pools: in permute mode the groups of ``donors + 1`` images (inferred, see
:mod:`fastmix.audit.groups`, unless given); in paper mode all images of the label.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from fastmix.audit._deps import require
from fastmix.audit.edges import EdgeScorer, normalise_second_best
from fastmix.audit.geometry import BlockGrid
from fastmix.audit.groups import infer_groups
from fastmix.spec import PLAN_RULE


@dataclass(frozen=True)
class Restoration:
    """Where the attack put every mixed block.

    Attributes
    ----------
    placement : ndarray of int64, shape (n, blocks)
        Restored image ``s`` holds, at position ``b``, block ``b`` of mixed image
        ``placement[s, b]``. Every column is a permutation of the images.
    variant : ndarray of int64, shape (n, blocks)
        Orientation variant chosen for each placed block (0 = as found).
    pools : list of ndarray
        The image pools solved independently (inferred groups in permute mode).
    """

    placement: np.ndarray
    variant: np.ndarray
    pools: list

    def images(self, mixed: np.ndarray, grid: BlockGrid,
               scorer: EdgeScorer | None = None) -> np.ndarray:
        """Assemble the restored images from ``mixed``."""
        restored = np.empty_like(mixed)
        scorer = scorer or EdgeScorer()
        for position in range(grid.count):
            rows, cols = grid.slices(position)
            sources = mixed[self.placement[:, position], rows, cols]
            if np.any(self.variant[:, position]):
                transforms = scorer.transforms
                expanded = sources if sources.ndim == 4 else sources[..., None]
                for index, variant in enumerate(self.variant[:, position]):
                    block = transforms[variant](expanded[index:index + 1])[0]
                    sources[index] = block.reshape(sources[index].shape)
            restored[:, rows, cols] = sources
        return restored


def position_links(normalised: dict, grid: BlockGrid) -> list:
    """Per position, ``(neighbour, scores[neighbour candidate, own candidate])`` pairs.

    Every matrix is C-ordered: a transposed edge is copied once (a position's solve gathers
    rows of it; gathering the rows of a transposed view read one value per cache line, and
    took four times the rest of the solve). The copies double the scores held
    (:func:`fastmix.audit.strong.attack_memory`).
    """
    links = []
    for position in range(grid.count):
        found = []
        for neighbour in grid.neighbours(position):
            if (neighbour, position) in normalised:
                found.append((neighbour, normalised[(neighbour, position)]))
            else:
                found.append((neighbour,
                              np.ascontiguousarray(normalised[(position, neighbour)].T)))
        links.append(found)
    return links


def _likely_variant(links, position, size, variants):
    """Choose, per block at ``position``, the orientation whose best matches are the best.

    The seed of a restoration is oriented before anything is placed around it: the chosen
    variant is the one whose best match on every side is the best.
    """
    if variants == 1:
        return np.zeros(size, dtype=np.int64)
    fit = np.zeros(size * variants, dtype=np.float64)
    for _, scores in links[position]:
        fit += scores.min(axis=0)
    return np.argmin(fit.reshape(size, variants), axis=1)


@njit(cache=True)
def _best_variants(cost, variants):
    """Per slot and block, the lowest cost over the block's variants and that variant.

    ``cost`` is (slots, blocks * variants); the first variant wins a tie (as ``argmin``).
    NumPy's ``argmin`` over a last axis of 8 took most of a sweep.
    """
    slots, blocks = cost.shape[0], cost.shape[1] // variants
    best = np.empty((slots, blocks))
    chosen = np.zeros((slots, blocks), dtype=np.int64)
    for slot in range(slots):
        for block in range(blocks):
            start = block * variants
            low = cost[slot, start]
            for variant in range(1, variants):
                if cost[slot, start + variant] < low:
                    low = cost[slot, start + variant]
                    chosen[slot, block] = variant
            best[slot, block] = low
    return best, chosen


def _solve_position(links, placement, position, variants, assign):
    """Best one-to-one choice of candidates at ``position`` against the placed neighbours."""
    slots = placement.shape[0]
    cost = np.zeros((slots, slots * variants), dtype=np.float64)
    for neighbour, scores in links[position]:
        placed = placement[:, neighbour]
        if placed[0] >= 0:
            cost += scores[placed]
    if variants == 1:
        _, blocks = assign(cost)
        return blocks.astype(np.int64)
    best_cost, best_variant = _best_variants(cost, variants)
    rows, blocks = assign(best_cost)
    chosen = np.empty(slots, dtype=np.int64)
    chosen[rows] = blocks * variants + best_variant[rows, blocks]
    return chosen


def sweep_positions(links: list, placement: np.ndarray, order: list[int], variants: int,
                    max_sweeps: int = 20) -> np.ndarray:
    """Re-solve every position against its four placed neighbours until nothing changes.

    ``links`` comes from :func:`position_links`; ``placement`` (candidate indices, shape
    (size, positions), every entry placed) is updated in place and returned.
    """
    assign = require("scipy.optimize").linear_sum_assignment
    neighbours = [[neighbour for neighbour, _ in found] for found in links]
    # a position is solved again only once a neighbour changed since its last solve: the
    # assignment of the same costs is the same, so the result is that of solving them all
    stale = np.ones(len(links), dtype=bool)
    for _ in range(max_sweeps):
        changed = False
        for position in order:
            if not stale[position]:
                continue
            stale[position] = False
            chosen = _solve_position(links, placement, position, variants, assign)
            if not np.array_equal(chosen, placement[:, position]):
                placement[:, position] = chosen
                stale[neighbours[position]] = True
                changed = True
        if not changed:
            break
    return placement


def total_score(normalised: dict, placement: np.ndarray) -> float:
    """Sum of the edge scores of every adjacent pair in the restored images."""
    return float(sum(scores[placement[:, first], placement[:, second]].sum()
                     for (first, second), scores in normalised.items()))


def solve_pool(normalised: dict[tuple[int, int], np.ndarray], grid: BlockGrid, size: int, *,
               variants: int = 1, starts: int = 3, max_sweeps: int = 20,
               rng: np.random.Generator | None = None) -> np.ndarray:
    """Restore one pool of ``size`` images from its normalised edge scores.

    Returns the placement as candidate indices ``block * variants + variant``, shape
    (size, positions).
    """
    assign = require("scipy.optimize").linear_sum_assignment
    rng = rng or np.random.default_rng(0)
    centre = (grid.rows // 2) * grid.cols + grid.cols // 2
    seeds = [centre] + [int(s) for s in rng.permutation(grid.count) if s != centre]
    links = position_links(normalised, grid)
    best, best_score = None, np.inf
    starting_points = [("as found", centre)] + [("grow", seed) for seed in seeds[:max(1, starts)]]
    for kind, seed in starting_points:
        order = grid.order_from(seed)
        if kind == "as found":
            # every block where it was found: blocks that were not mixed (prob < 1) anchor
            placement = np.tile((np.arange(size) * variants)[:, None], (1, grid.count))
        else:
            placement = np.full((size, grid.count), -1, dtype=np.int64)
            placement[:, seed] = np.arange(size) * variants + _likely_variant(links, seed,
                                                                              size, variants)
            for position in order[1:]:
                placement[:, position] = _solve_position(links, placement, position, variants,
                                                         assign)
        sweep_positions(links, placement, order, variants, max_sweeps)
        score = total_score(normalised, placement)
        if best is None or score < best_score:
            best, best_score = placement, score
    assert best is not None  # there is always a first starting point
    return best


def default_starts(positions: int, pool_size: int) -> int:
    """Seed positions to try: all of them for small pools, fewer as pools grow.

    On LFW faces (5x5 blocks, groups of 5) trying every position instead of 3 raises the
    restored share from 0.89 to 0.94; the cost grows with the pool size.
    """
    return int(max(2, min(positions, 25, 2000 // max(pool_size, 1))))


def _restricted(raw, members, variants):
    candidates = (members[:, None] * variants + np.arange(variants)).ravel()
    return {edge: normalise_second_best(scores[np.ix_(candidates, candidates)])
            for edge, scores in raw.items()}


def restoration_attack(mixed: np.ndarray, labels: np.ndarray, block: tuple[int, int],
                       mode: str, donors: int, *, groups: list | None = None,
                       scorer: EdgeScorer | None = None, starts: int | None = None,
                       seed: int = 0, progress=None, rule: int = PLAN_RULE,
                       solver=None) -> Restoration:
    """Restore mixed images without the key.

    Parameters
    ----------
    mixed : ndarray, shape (n, H, W) or (n, H, W, C)
        The mixed images (one window).
    labels : ndarray, shape (n,)
        Their labels.
    block : tuple of int
        Block size ``(bh, bw)``.
    mode : {"permute", "paper"}
        The mixing mode.
    donors : int
        The ``donors`` parameter; permute groups hold ``donors + 1`` images.
    groups : list of array-like, optional
        Known pools of image indices (for example the true permute groups). Default: inferred
        per label in permute mode, the whole label in paper mode.
    scorer : EdgeScorer, optional
        Edge score and orientation variants.
    starts : int, optional
        Seed positions tried per pool; the lowest total score wins. Default: every
        position for small pools, fewer for large ones (see :func:`default_starts`).
    rule : int
        The plan rule that cut the permute groups (:mod:`fastmix.plan.groups`).
    seed : int
        Seed of the attack's own random choices (clustering, seed positions).
    progress : Progress, optional
        Advanced by each pool's images once the pool is solved.
    solver : callable, optional
        ``solver(normalised, grid, size, variants=..., starts=..., rng=...)`` returning a
        pool's placement as :func:`solve_pool` does (the default).

    Returns
    -------
    Restoration
    """
    scorer = scorer or EdgeScorer()
    solver = solver or solve_pool
    variants = scorer.variants
    height, width = mixed.shape[1:3]
    grid = BlockGrid.of(height, width, block)
    count = len(mixed)
    rng = np.random.default_rng(seed)
    placement = np.empty((count, grid.count), dtype=np.int64)
    variant = np.zeros((count, grid.count), dtype=np.int64)
    pools = []
    labels = np.asarray(labels)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if groups is not None:
            label_pools = [np.intersect1d(np.asarray(pool), members) for pool in groups]
            label_pools = [pool for pool in label_pools if pool.size]
            if not label_pools:
                continue
            local_pools = [np.searchsorted(members, pool) for pool in label_pools]
        else:
            local_pools = None
        raw = scorer.matrices(mixed[members], grid)
        if local_pools is None:
            if mode == "permute" and members.size > donors + 1:
                whole = {edge: normalise_second_best(scores) for edge, scores in raw.items()}
                local_pools = infer_groups(whole, members.size, donors + 1, variants=variants,
                                           seed=int(rng.integers(2**31)), rule=rule)
                del whole  # one label's scores at a time (fastmix.audit.strong.attack_memory)
            else:
                local_pools = [np.arange(members.size)]
        for local in local_pools:
            local = np.sort(local)
            normalised = _restricted(raw, local, variants)
            pool_starts = starts or default_starts(grid.count, local.size)
            solved = solver(normalised, grid, local.size, variants=variants,
                            starts=pool_starts, rng=rng)
            del normalised
            slots = members[local]
            placement[slots] = slots[solved // variants]
            variant[slots] = solved % variants
            pools.append(slots)
            if progress is not None:
                progress.update(int(slots.size))
        del raw
    return Restoration(placement=placement, variant=variant, pools=pools)


def null_attack(pools: list, positions: int, count: int, *, seed: int = 0) -> Restoration:
    """Return a random one-to-one placement within the same pools: the chance level."""
    rng = np.random.default_rng(seed)
    placement = np.tile(np.arange(count, dtype=np.int64)[:, None], (1, positions))
    for pool in pools:
        pool = np.asarray(pool)
        for position in range(positions):
            placement[pool, position] = rng.permutation(pool)
    return Restoration(placement=placement, variant=np.zeros_like(placement), pools=pools)
