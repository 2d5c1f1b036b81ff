"""Edge compatibility scores between blocks that could meet across an edge.

A score function takes the two boundary strips of each side of an edge and returns a
dissimilarity matrix (lower = more likely true neighbours). The default,
:func:`prediction_boundary_score`, predicts each boundary line from the two lines before it
on both sides (``|2 a1 - a2 - b1|^0.5``, both directions) and adds the plain boundary
difference ``|a1 - b1|^0.5``. :func:`normalise_second_best` divides it by each block's
second-best score, so an unambiguous match stands out.

Candidates can include orientation variants of every block (for keyed orientation, a
hardening option): candidate ``c`` is block ``c // k`` in variant ``c % k`` of the ``k``
variants of :data:`ORIENTATIONS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange

from fastmix.audit.geometry import BlockGrid
from fastmix.errors import BadInputError

#: Strips of one edge side: ``(outer, boundary)`` lines of shape (candidates, length).
ScoreFunction = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def _identity(blocks):
    return blocks


def _flip_columns(blocks):
    return blocks[:, :, ::-1]


def _flip_rows(blocks):
    return blocks[:, ::-1, :]


def _rotate_half(blocks):
    return blocks[:, ::-1, ::-1]


def _transpose(blocks):
    return np.swapaxes(blocks, 1, 2)


def _transpose_flip_rows(blocks):
    return np.swapaxes(blocks, 1, 2)[:, ::-1, :]


def _transpose_flip_columns(blocks):
    return np.swapaxes(blocks, 1, 2)[:, :, ::-1]


def _transpose_rotate_half(blocks):
    return np.swapaxes(blocks, 1, 2)[:, ::-1, ::-1]


#: Factor above every real score given to a candidate variant that cannot occur.
IMPOSSIBLE = 1e3

#: Orientation variants by name; the first variant of each is the identity, and the first
#: four of ``d4`` are ``flip``.
ORIENTATIONS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], ...]] = {
    "none": (_identity,),
    "flip": (_identity, _flip_columns, _flip_rows, _rotate_half),
    "d4": (_identity, _flip_columns, _flip_rows, _rotate_half, _transpose,
           _transpose_flip_rows, _transpose_flip_columns, _transpose_rotate_half),
}


@njit(parallel=True, cache=True, fastmath=True)
def _prediction_boundary(pred_a, a1, pred_b, b1, out):
    count_a, length = a1.shape
    count_b = b1.shape[0]
    for i in prange(count_a):
        for j in range(count_b):
            total = 0.0
            for k in range(length):
                total += (np.sqrt(abs(pred_a[i, k] - b1[j, k]))
                          + np.sqrt(abs(pred_b[j, k] - a1[i, k]))
                          + np.sqrt(abs(a1[i, k] - b1[j, k])))
            out[i, j] = total


def prediction_boundary_score(a2: np.ndarray, a1: np.ndarray, b1: np.ndarray,
                              b2: np.ndarray) -> np.ndarray:
    """Dissimilarity of every first-side candidate with every second-side candidate.

    Parameters
    ----------
    a2, a1 : ndarray, shape (na, length)
        Second-to-last and last line of the first block (left or top), towards the edge.
    b1, b2 : ndarray, shape (nb, length)
        First and second line of the second block (right or bottom), away from the edge.

    Returns
    -------
    ndarray, shape (na, nb)
        ``sum |2 a1 - a2 - b1|^0.5 + |2 b1 - b2 - a1|^0.5 + |a1 - b1|^0.5``.
    """
    a1 = np.ascontiguousarray(a1, dtype=np.float32)
    b1 = np.ascontiguousarray(b1, dtype=np.float32)
    pred_a = np.ascontiguousarray(2 * a1 - a2, dtype=np.float32)
    pred_b = np.ascontiguousarray(2 * b1 - b2, dtype=np.float32)
    out = np.empty((a1.shape[0], b1.shape[0]), dtype=np.float32)
    _prediction_boundary(pred_a, a1, pred_b, b1, out)
    return out


def normalise_second_best(scores: np.ndarray) -> np.ndarray:
    """Divide each score by the second-best score of both blocks involved.

    ``scores[i, j] / s_i + scores[i, j] / t_j``, where ``s_i`` is the second smallest of row
    ``i`` and ``t_j`` the second smallest of column ``j``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    tiny = 1e-9 + 1e-9 * float(np.abs(scores).mean()) if scores.size else 1e-9

    def second_smallest(matrix: np.ndarray, axis: int) -> np.ndarray:
        if matrix.shape[axis] < 2:
            return np.take(matrix, 0, axis=axis)
        return np.partition(matrix, 1, axis=axis).take(1, axis=axis)

    row_second = second_smallest(scores, 1) + tiny
    col_second = second_smallest(scores, 0) + tiny
    return scores / row_second[:, None] + scores / col_second[None, :]


@dataclass
class EdgeScorer:
    """Computes the raw dissimilarity matrices of every edge of a block grid.

    Parameters
    ----------
    score : callable
        ``score(a2, a1, b1, b2) -> (na, nb)`` dissimilarities (see
        :func:`prediction_boundary_score`).
    orientations : {"none", "flip", "d4"}
        Orientation variants considered for every block.
    """

    score: ScoreFunction = prediction_boundary_score
    orientations: str = "none"
    _variants: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Check the orientations and precompute the variants."""
        if self.orientations not in ORIENTATIONS:
            raise BadInputError(
                f"orientations must be one of {', '.join(ORIENTATIONS)}, got {self.orientations!r}"
            )
        self._variants = ORIENTATIONS[self.orientations]

    @property
    def transforms(self) -> tuple:
        """The orientation variants: functions of a block stack (n, bh, bw, C)."""
        return self._variants

    @property
    def variants(self) -> int:
        """How many candidates each block gives (orientation variants)."""
        return len(self._variants)

    def allowed(self, grid: BlockGrid, position: int) -> int:
        """Return how many of the variants apply at ``position``.

        Only the flips apply on a non-square block under ``d4``, as in the mixing (the
        transposes would change its shape).
        """
        rows, cols = grid.slices(position)
        square = rows.stop - rows.start == cols.stop - cols.start
        return self.variants if square or self.orientations != "d4" else len(ORIENTATIONS["flip"])

    def candidates(self, images: np.ndarray, grid: BlockGrid, position: int) -> np.ndarray:
        """Blocks at ``position`` in every variant: (n * variants, bh, bw, channels).

        Variants that do not apply at ``position`` (see :meth:`allowed`) repeat the allowed
        ones, so every position has the same candidate numbering; :meth:`matrices` rules
        them out.
        """
        blocks = grid.block(images, position)
        if blocks.ndim == 3:
            blocks = blocks[..., None]
        allowed = self.allowed(grid, position)
        variants = [self._variants[index % allowed](blocks) for index in range(self.variants)]
        return np.stack(variants, axis=1).reshape(-1, *variants[0].shape[1:])

    def _rule_out(self, scores: np.ndarray, grid: BlockGrid, first: int,
                  second: int) -> np.ndarray:
        """Give candidates in a variant that does not apply the worst possible score."""
        masks = [np.arange(scores.shape[axis]) % self.variants >= self.allowed(grid, position)
                 for axis, position in ((0, first), (1, second))]
        if not (masks[0].any() or masks[1].any()):
            return scores
        scores = np.array(scores, dtype=np.float32)
        worst = np.float32(2 * float(scores.max(initial=0.0)) + 1.0) * IMPOSSIBLE
        scores[masks[0], :] = worst
        scores[:, masks[1]] = worst
        return scores

    def edge_lines(self, a_blocks: np.ndarray, b_blocks: np.ndarray, axis: int) -> list:
        """Return the lines ``(a2, a1, b1, b2)`` either side of an edge, flattened per candidate.

        ``axis`` is 2 for a left-right edge and 1 for a top-bottom one. Subclasses move the
        lines away from the seam (see :mod:`fastmix.audit.adaptive`).
        """
        a1, a2 = lines_from_end(a_blocks, axis, 0)
        b1, b2 = lines_from_start(b_blocks, axis, 0)
        return [line.reshape(line.shape[0], -1) for line in (a2, a1, b1, b2)]

    def edge_score(self, a2, a1, b1, b2) -> np.ndarray:
        """Dissimilarity of every candidate pair across one edge."""
        return self.score(a2, a1, b1, b2)

    def matrices(self, images: np.ndarray, grid: BlockGrid) -> dict[tuple[int, int], np.ndarray]:
        """Raw dissimilarity of every edge: ``{(first, second): (n*k, n*k)}``.

        ``images`` has shape (n, H, W) or (n, H, W, C), any numeric dtype.
        """
        images = np.asarray(images, dtype=np.float32)
        blocks = {position: self.candidates(images, grid, position)
                  for position in range(grid.count)}
        found = {}
        for first, second, direction in grid.edges():
            lines = self.edge_lines(blocks[first], blocks[second], 2 if direction == "h" else 1)
            found[(first, second)] = self._rule_out(self.edge_score(*lines), grid, first,
                                                    second)
        return found


def lines_from_end(blocks: np.ndarray, axis: int, skip: int):
    """Return the last line of ``blocks`` along ``axis`` after ``skip`` lines, and its inner one."""
    size = blocks.shape[axis]
    depth = min(skip, max(size - 2, 0))
    return (np.take(blocks, size - 1 - depth, axis=axis),
            np.take(blocks, max(size - 2 - depth, 0), axis=axis))


def lines_from_start(blocks: np.ndarray, axis: int, skip: int):
    """Return the first line of ``blocks`` along ``axis`` after ``skip`` lines, and the next one."""
    size = blocks.shape[axis]
    depth = min(skip, max(size - 2, 0))
    return (np.take(blocks, depth, axis=axis),
            np.take(blocks, min(depth + 1, size - 1), axis=axis))
