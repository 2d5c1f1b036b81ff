"""Real sample images that the dependencies ship: nothing is downloaded.

scikit-image (the ``audit`` extra) bundles the LFW subset (100 face crops and 100
non-faces, 25x25 grey) and photographs. The demo, the hardening measurement
(``bench/bench_hardening.py``), the benchmarks and the tests load them from here.
"""

from __future__ import annotations

import numpy as np

from fastmix.errors import BadInputError

#: The scikit-image photographs used as sample data, in label order.
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def skimage_data():
    """scikit-image's ``data`` module; a one-line error naming the extra when it is missing."""
    try:
        from skimage import data
    except ImportError:
        raise BadInputError(
            "the sample images come with scikit-image; install it with "
            "pip install 'fastmix[audit]' (make demo does this)") from None
    return data


def photos() -> list[np.ndarray]:
    """Return the photographs of :data:`PHOTOS`, uint8 RGB (at least 300x451 each)."""
    data = skimage_data()
    return [getattr(data, name)()[:, :, :3] for name in PHOTOS]


def lfw_faces() -> tuple[np.ndarray, np.ndarray]:
    """Return the LFW subset: 200 grey 25x25 float images in [0, 1] and their labels.

    Label 0 marks the first 100 (faces), label 1 the last 100 (non-faces).
    """
    images = skimage_data().lfw_subset()
    return images, np.repeat(np.array([0, 1]), 100)


def lfw_faces_uint8() -> tuple[np.ndarray, np.ndarray]:
    """:func:`lfw_faces` as uint8 grey images (rounded from [0, 1] to 0-255)."""
    images, labels = lfw_faces()
    return np.clip(np.rint(images * 255.0), 0, 255).astype(np.uint8), labels


def photo_tiles(size: int = 32, stride: int | None = None,
                crop: int | None = 256) -> tuple[np.ndarray, np.ndarray]:
    """Square RGB tiles of the photographs, labelled by photograph (0 to 3).

    Parameters
    ----------
    size : int
        Side of a tile in pixels.
    stride : int, optional
        Pixels between tile corners (default ``size``: tiles do not overlap).
    crop : int, optional
        Tile only the top-left ``crop`` x ``crop`` pixels of each photograph (the default
        gives 64 tiles of 32x32 per photograph); ``None`` tiles the whole photograph.

    Returns
    -------
    images : ndarray of uint8, shape (n, size, size, 3)
        C-contiguous; the tiles of photograph 0 first, each row by row.
    labels : ndarray of int, shape (n,)
    """
    stride = size if stride is None else stride
    tiles, labels = [], []
    for label, photo in enumerate(photos()):
        if crop is not None:
            photo = photo[:crop, :crop]
        for top in range(0, photo.shape[0] - size + 1, stride):
            for left in range(0, photo.shape[1] - size + 1, stride):
                tiles.append(photo[top:top + size, left:left + size])
                labels.append(label)
    return np.ascontiguousarray(np.stack(tiles)), np.asarray(labels)
