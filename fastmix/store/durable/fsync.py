"""Making files and folder entries durable (``fsync``), for both store engines and the journal."""

from __future__ import annotations

import os


def fsync_path(path: str | os.PathLike) -> None:
    """Flush the file at ``path`` from the page cache to the disk."""
    descriptor = os.open(os.fspath(path), os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_folder_of(path: str | os.PathLike) -> None:
    """Make a file creation, rename or removal in ``path``'s folder durable."""
    folder = os.path.dirname(os.path.abspath(os.fspath(path)))
    descriptor = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
