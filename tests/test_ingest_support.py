"""Helpers for the image workflow tests: real image files of every format.

This module holds no tests; ``test_ingest`` imports it (the real CLI
runs through ``test_cli_support.run_cli``).
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np


def photo(name: str, height: int, width: int, top: int = 0, left: int = 0) -> np.ndarray:
    """Return a crop of a real scikit-image sample photograph (RGB uint8)."""
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)()[top:top + height, left:left + width, :3])


def write_format_tree(root: Path, size: int = 32) -> dict[str, np.ndarray]:
    """Write an ImageFolder of real pictures in every format; return path -> expected pixels.

    Expected pixels are what ingest at ``size x size``, 3 channels, must store: files already
    of that size are lossless (or decoded by imageio for JPEG/GIF), so the expectation is
    exact. Also writes a truncated PNG, a README.txt at the root, a notes.txt in a class
    folder and a larger image that must be resized.
    """
    cat = root / "cat"
    dog = root / "dog"
    cat.mkdir(parents=True)
    dog.mkdir()
    expected: dict[str, np.ndarray] = {}
    rgb = photo("chelsea", size, size, 100, 150)
    iio.imwrite(cat / "a_rgb.png", rgb)
    expected[str(cat / "a_rgb.png")] = rgb
    from skimage import data

    grey = np.ascontiguousarray(data.camera()[100:100 + size, 200:200 + size])
    iio.imwrite(cat / "b_grey.png", grey)
    expected[str(cat / "b_grey.png")] = np.repeat(grey[:, :, None], 3, axis=2)
    alpha = np.full((size, size, 1), 128, np.uint8)
    rgba = np.concatenate([photo("coffee", size, size, 50, 50), alpha], axis=2)
    iio.imwrite(cat / "c_rgba.png", rgba)
    expected[str(cat / "c_rgba.png")] = rgba[:, :, :3]
    deep = grey.astype(np.uint16) * 257 + 3
    iio.imwrite(cat / "d_deep.png", deep)
    expected[str(cat / "d_deep.png")] = np.repeat(grey[:, :, None], 3, axis=2)
    bmp = photo("astronaut", size, size, 40, 200)
    iio.imwrite(dog / "e.bmp", bmp)
    expected[str(dog / "e.bmp")] = bmp
    tif = photo("rocket", size, size, 200, 300)
    iio.imwrite(dog / "f.tif", tif)
    expected[str(dog / "f.tif")] = tif
    jpeg = photo("astronaut", size, size, 200, 200)
    iio.imwrite(dog / "g.jpg", jpeg, quality=95)
    expected[str(dog / "g.jpg")] = iio.imread(dog / "g.jpg")
    frames = np.stack([photo("coffee", size, size, 150, 300), photo("chelsea", size, size)])
    iio.imwrite(dog / "h.gif", frames, loop=0)
    expected[str(dog / "h.gif")] = iio.imread(dog / "h.gif", index=0)[:, :, :3]
    big = photo("astronaut", 3 * size, 2 * size, 0, 180)
    iio.imwrite(dog / "i_big.png", big)
    from PIL import Image

    expected[str(dog / "i_big.png")] = np.asarray(
        Image.fromarray(big).resize((size, size), Image.Resampling.LANCZOS, reducing_gap=3.0))
    whole = (cat / "a_rgb.png").read_bytes()
    (cat / "z_broken.png").write_bytes(whole[: len(whole) // 3])
    (root / "README.txt").write_text("not an image\n")
    (dog / "notes.txt").write_text("not an image either\n")
    return expected
