"""Progress bars for long work: images/s and MB/s on a terminal, silence otherwise."""

from __future__ import annotations

import os
import shutil
import sys
import time


class Progress:
    """A progress display counting images and bytes.

    Shows a tqdm bar on stderr only when ``enabled`` and stderr is a terminal; otherwise
    every method is a no-op. Use as a context manager.

    Parameters
    ----------
    total : int
        Images to process.
    image_bytes : int
        Bytes per image (for MB/s).
    description : str
        Short label shown before the bar (never a key or a path with secrets).
    enabled : bool
        ``False`` (``--quiet``) never shows anything.
    """

    def __init__(self, total: int, image_bytes: int, description: str = "",
                 enabled: bool = True):
        self.total = total
        self.image_bytes = image_bytes
        self.started = time.perf_counter()
        self.done = 0
        self.bar = None
        if enabled and _is_terminal(sys.stderr):
            from tqdm import tqdm

            columns, rows = terminal_size(sys.stderr)
            # Both sizes are given: on a terminal that reports 0x0 (a bare pseudo-terminal)
            # tqdm takes the rows as -1 and hides every bar.
            self.bar = tqdm(total=total, desc=description, unit="img", unit_scale=True,
                            file=sys.stderr, leave=True, ncols=max(columns, 60),
                            nrows=max(rows, 2))

    def update(self, images: int) -> None:
        """Count ``images`` more images as done."""
        self.done += images
        if self.bar is not None:
            elapsed = max(time.perf_counter() - self.started, 1e-9)
            megabytes = self.done * self.image_bytes / 1e6 / elapsed
            self.bar.set_postfix_str(f"{megabytes:,.0f} MB/s", refresh=False)
            self.bar.update(images)

    def close(self) -> None:
        """Finish the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> Progress:
        """Return the bar itself; leaving the block closes it."""
        return self

    def __exit__(self, *exc_info) -> None:
        """Close the bar."""
        self.close()


def terminal_size(stream) -> tuple[int, int]:
    """``(columns, rows)`` of the terminal behind ``stream``; 80x24 where it reports 0 or none."""
    try:
        size = os.get_terminal_size(stream.fileno())
        columns, rows = size.columns, size.lines
    except (AttributeError, ValueError, OSError):
        columns, rows = shutil.get_terminal_size()
    return columns or 80, rows or 24


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class PieceProgress:
    """A window writer that advances a progress display as each piece is stored.

    The window loop reports whole windows; with the default memory budget a store of a few
    hundred MB is one window, and the bar would sit at 0% until it jumps to 100%. Wrapping
    the writer advances it per piece (a few chunks), as the pieces reach the file.

    Parameters
    ----------
    writer
        Anything with ``piece_length()``, ``encode_piece(first, last, images)`` and
        ``store_piece(encoded)``.
    progress : Progress
        The display to advance.
    """

    def __init__(self, writer, progress: Progress):
        self.writer = writer
        self.progress = progress
        self.dataset = getattr(writer, "dataset", None)

    def piece_length(self) -> int:
        """Return the writer's piece length."""
        return self.writer.piece_length()

    def encode_piece(self, first: int, last: int, images) -> tuple:
        """Encode with the writer, remembering how many images the piece holds."""
        return last - first, self.writer.encode_piece(first, last, images)

    def store_piece(self, piece: tuple) -> None:
        """Store with the writer, then count the piece's images as done."""
        count, encoded = piece
        self.writer.store_piece(encoded)
        self.progress.update(count)

    def __getattr__(self, name: str):
        """Delegate everything else to the wrapped writer."""
        return getattr(self.writer, name)
