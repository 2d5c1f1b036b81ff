"""Progress bars for long work: images/s and MB/s on a terminal, silence otherwise."""

from __future__ import annotations

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

            columns = shutil.get_terminal_size().columns or 80  # 0 on a sizeless terminal
            self.bar = tqdm(total=total, desc=description, unit="img", unit_scale=True,
                            file=sys.stderr, leave=True, ncols=max(columns, 60))

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
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
