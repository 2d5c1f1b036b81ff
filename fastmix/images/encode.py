"""Encoding images to files (PNG, JPEG), shared by export and its worker processes.

:func:`write_images` runs in a thread of the exporting process or in a worker process
(:mod:`fastmix.images.workers`); both import it from here, below either of them.
"""

from __future__ import annotations

import os
import zlib

import numpy as np

from fastmix.images import jpeg

#: zlib level of the PNG files: level 1 is about 3x faster than Pillow's default 6 and the
#: files are only a few percent larger on photographs.
PNG_COMPRESS_LEVEL = 1
#: zlib strategy of the PNG files: run-length (Z_RLE) after Pillow's PNG filters took 20%
#: less CPU than the default strategy on photographs, and made slightly smaller files.
PNG_STRATEGY = zlib.Z_RLE


def png_ready(image: np.ndarray) -> np.ndarray:
    """Return an image as Pillow writes it to PNG: (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA."""
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    return np.ascontiguousarray(image)


def png_options(compress_level: int = PNG_COMPRESS_LEVEL) -> dict:
    """imageio/Pillow keyword arguments of the PNG files export writes."""
    return {"extension": ".png", "compress_level": int(compress_level),
            "compress_type": PNG_STRATEGY}


def jpeg_options(quality: int = 95) -> dict:
    """imageio/Pillow keyword arguments of the JPEG files export writes."""
    return {"extension": ".jpg", "quality": int(quality)}


def write_file(path: str, data: bytes) -> None:
    """Create ``path`` holding ``data``, with the fewest system calls (no Python file object)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(descriptor, view):]
    finally:
        os.close(descriptor)


def write_images(images: np.ndarray, paths: list[str], options: dict) -> int:
    """Write each image to its path; returns the number written.

    JPEG goes through libjpeg-turbo directly (:func:`fastmix.images.jpeg.encode`) when
    simplejpeg is installed; PNG (and JPEG without it) through imageio's Pillow plugin.
    ``options`` must name the ``extension``; the file is opened here and handed to imageio
    as an open file, which skips imageio's URI parsing (measured cheaper per file).
    """
    if options["extension"] == ".jpg" and jpeg.codec() is not None:
        for image, path in zip(images, paths):
            encoded = jpeg.encode(image, options.get("quality", 95))
            assert encoded is not None  # simplejpeg is there: codec() said so
            write_file(path, encoded)
        return len(paths)
    import imageio.v3 as iio

    from fastmix.images.decode import cache_missing_optional_plugins

    cache_missing_optional_plugins()
    for image, path in zip(images, paths):
        # unbuffered: Pillow writes whole encoded blocks itself, and Python's buffered open
        # would add a terminal check and position queries (syscalls) to every file
        with open(path, "wb", buffering=0) as handle:
            iio.imwrite(handle, png_ready(image), plugin="pillow", **options)
    return len(paths)
