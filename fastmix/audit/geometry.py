"""The block grid of an image: edges, positions and the adjacent position pairs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fastmix.kernels.steps import block_edges


@dataclass(frozen=True)
class BlockGrid:
    """Block edges of ``height`` x ``width`` images cut into blocks of ``block`` pixels.

    Positions are numbered row-major over the block grid; the last row and column of blocks
    may be smaller.
    """

    row_edges: np.ndarray
    col_edges: np.ndarray

    @classmethod
    def of(cls, height: int, width: int, block: tuple[int, int]) -> BlockGrid:
        """Return the grid of ``block``-sized blocks on ``height`` x ``width`` images."""
        rows, cols = block_edges(height, width, block)
        return cls(rows, cols)

    @property
    def rows(self) -> int:
        """Blocks per column (rows of blocks)."""
        return self.row_edges.size - 1

    @property
    def cols(self) -> int:
        """Blocks per row (columns of blocks)."""
        return self.col_edges.size - 1

    @property
    def count(self) -> int:
        """Blocks per image."""
        return self.rows * self.cols

    def slices(self, position: int) -> tuple[slice, slice]:
        """Row and column slices of block ``position``."""
        row, col = divmod(position, self.cols)
        return (slice(int(self.row_edges[row]), int(self.row_edges[row + 1])),
                slice(int(self.col_edges[col]), int(self.col_edges[col + 1])))

    def block(self, images: np.ndarray, position: int) -> np.ndarray:
        """Block ``position`` of every image: shape (n, bh, bw, ...)."""
        rows, cols = self.slices(position)
        return images[:, rows, cols]

    def edges(self) -> list[tuple[int, int, str]]:
        """Return the adjacent position pairs ``(first, second, "h" | "v")``.

        ``first`` is left of or above ``second``.
        """
        pairs = []
        for row in range(self.rows):
            for col in range(self.cols):
                position = row * self.cols + col
                if col + 1 < self.cols:
                    pairs.append((position, position + 1, "h"))
                if row + 1 < self.rows:
                    pairs.append((position, position + self.cols, "v"))
        return pairs

    def neighbours(self, position: int) -> list[int]:
        """Positions sharing an edge with ``position``."""
        row, col = divmod(position, self.cols)
        found = []
        for d_row, d_col in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            r, c = row + d_row, col + d_col
            if 0 <= r < self.rows and 0 <= c < self.cols:
                found.append(r * self.cols + c)
        return found

    def order_from(self, seed: int) -> list[int]:
        """Positions by growing distance from ``seed`` (breadth first)."""
        order, seen, frontier = [seed], {seed}, [seed]
        while frontier:
            following = []
            for position in frontier:
                for neighbour in self.neighbours(position):
                    if neighbour not in seen:
                        seen.add(neighbour)
                        following.append(neighbour)
            order.extend(following)
            frontier = following
        return order
