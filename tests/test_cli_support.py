"""Helpers for the command-line tests: run the real ``fastmix`` process, build real stores.

This module holds no tests; the ``test_cli_*`` modules import it.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np

import fastmix

#: Block size the CLI tests mix with (the photo tiles are 32x32).
BLOCK = "8x8"


def run_cli(*arguments: str, cwd: Path) -> subprocess.CompletedProcess:
    """Run ``python -m fastmix.cli ARGUMENTS`` in ``cwd`` and return the finished process."""
    environment = {name: value for name, value in os.environ.items()
                   if name != "FASTMIX_DEBUG"}
    return subprocess.run([sys.executable, "-m", "fastmix.cli", *map(str, arguments)],
                          cwd=cwd, capture_output=True, text=True, timeout=300,
                          env=environment)


def terminal_output(script: str, *arguments: str, size: tuple[int, int] | None = None) -> str:
    """Run ``python -c script ARGUMENTS`` with stderr on a fresh pseudo-terminal.

    The terminal is ``size`` (rows, columns), or 0x0 (never sized) when ``size`` is None.
    Returns what the child wrote there; the child must exit 0.
    """
    import fcntl
    import pty
    import struct
    import termios

    controller, terminal = pty.openpty()
    if size is not None:
        fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    child = subprocess.Popen([sys.executable, "-c", script, *arguments],
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=terminal)
    os.close(terminal)
    shown = b""
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:
            break
        if not data:
            break
        shown += data
    os.close(controller)
    text = shown.decode(errors="replace")
    assert child.wait(timeout=120) == 0, text[-2000:]
    return text


def photo_subset(photo_tiles, count: int = 64, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """``count`` photo tiles drawn evenly from the four photos, in a fixed shuffled order."""
    tiles, labels = photo_tiles
    chosen = np.random.default_rng(seed).permutation(len(tiles))[:count]
    return np.ascontiguousarray(tiles[chosen]), labels[chosen]


def write_store(path: Path, images: np.ndarray, labels: np.ndarray | None, *,
                images_name: str = "images", labels_name: str = "labels",
                chunk: int | None = 16, compression: str | None = "gzip",
                class_names: list[str] | None = None) -> Path:
    """Write an HDF5 store with an extra dataset and attributes that mixing must keep."""
    with h5py.File(path, "w") as file:
        options = {"compression": compression} if compression else {}
        if chunk:
            options["chunks"] = (chunk, *images.shape[1:])
        file.create_dataset(images_name, data=images, **options)
        if labels is not None:
            dataset = file.create_dataset(labels_name, data=labels)
            if class_names is not None:
                dataset.attrs["class_names"] = class_names
        file["meta/ids"] = np.arange(len(images), dtype=np.int32)
        file.attrs["source"] = "test"
    return path


def write_mixed_pair(folder: Path, photo_tiles, key: fastmix.Key, *, original: str,
                     mixed: str = "mixed.h5") -> tuple[Path, np.ndarray, np.ndarray]:
    """Write a store of :func:`photo_subset` tiles and its permute mix (8x8 blocks, windows of 32).

    Returns the original store's path, its images and its labels.
    """
    images, labels = photo_subset(photo_tiles)
    path = write_store(folder / original, images, labels)
    fastmix.mix_store(path, folder / mixed, spec=fastmix.MixSpec(block=(8, 8), donors=3),
                      key=key, window=32, progress=False)
    return path, images, labels


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative name -> SHA-256 of its bytes)."""
    found = {}
    for root, _folders, files in os.walk(folder):
        for name in files:
            path = Path(root, name)
            found[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def read_images(path: Path, name: str = "images") -> np.ndarray:
    """Return the whole images dataset of a store."""
    with h5py.File(path, "r") as file:
        return file[name][()]
