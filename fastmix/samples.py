"""Real sample images that the dependencies ship: nothing is downloaded.

scikit-image (the ``audit`` extra) bundles the LFW subset (100 face crops and 100
non-faces, 25x25 grey) and photographs. The demo, the hardening measurement
(``bench/bench_hardening.py``), the benchmarks and the tests load them from here.

:func:`photo_task`, :func:`face_task` and :func:`colour_task` are the tasks of the
deep-learning utility check (``fastmix utility``) and of the privacy/utility frontier, at any
image size.
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


#: The scikit-image pictures cut into :func:`photo_task`, in label order.
TASK_PHOTOS = ("astronaut", "brick", "camera", "chelsea", "coffee", "coins", "grass", "gravel",
               "moon", "rocket")


def _grey(picture: np.ndarray) -> np.ndarray:
    """Return a picture as float grey in [0, 1] (luminance for colour, as skimage's rgb2gray)."""
    picture = np.asarray(picture)
    if picture.ndim == 3:
        picture = picture[:, :, :3].astype(np.float64) @ np.array([0.2125, 0.7154, 0.0721])
    else:
        picture = picture.astype(np.float64)
    return picture / 255.0


def _equalised(picture: np.ndarray) -> np.ndarray:
    """Histogram-equalise one grey float image to uint8 (equal pixels stay equal)."""
    flat = picture.ravel()
    ordered = np.sort(flat)
    # the fraction of pixels at or below each pixel's value: a near-uniform histogram, so that
    # a crop's grey levels say nothing about which picture it came from
    cdf = np.searchsorted(ordered, flat, side="right") / flat.size
    return np.clip(np.rint(cdf * 255.0), 0, 255).astype(np.uint8).reshape(picture.shape)


def photo_task(size: int = 192, per_class: int = 30, seed: int = 0,
               scale: tuple[float, float] = (0.25, 0.6)) -> tuple[np.ndarray, np.ndarray]:
    """Return crops to classify by picture: a task that a 1x1-pixel shuffle cannot solve.

    Each image is a square crop of one of the :data:`TASK_PHOTOS` (10 classes, one per
    picture) at a random position and a random side between ``scale[0]`` and ``scale[1]`` of
    the picture's shorter side, turned grey, resized to ``size`` x ``size`` (bilinear with
    anti-aliasing) and histogram-equalised on its own. Equalisation gives every crop about the
    same, near-uniform histogram, so the grey levels alone, which a 1x1-pixel shuffle keeps,
    tell the classes apart little; the structure (edges, textures, shapes) still does.

    Parameters
    ----------
    size : int
        Side of each image in pixels.
    per_class : int
        Crops per picture.
    seed : int
        Seed of the crop positions and sizes (a local ``numpy.random.default_rng``); the same
        seed and arguments give the same bytes.
    scale : tuple of float
        Smallest and largest crop side, as fractions of the picture's shorter side.

    Returns
    -------
    images : ndarray of uint8, shape (10 * per_class, size, size, 1)
        Grey, C-contiguous; the crops of picture 0 first.
    labels : ndarray of int64, shape (10 * per_class,)
        The picture's index in :data:`TASK_PHOTOS`.
    """
    if size < 8 or per_class < 1 or not 0 < scale[0] <= scale[1] <= 1:
        raise BadInputError(
            f"photo_task needs size >= 8, per_class >= 1 and 0 < scale[0] <= scale[1] <= 1, got "
            f"size={size}, per_class={per_class}, scale={scale}")
    data = skimage_data()
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    images = np.empty((len(TASK_PHOTOS) * per_class, size, size, 1), dtype=np.uint8)
    for label, name in enumerate(TASK_PHOTOS):
        picture = _grey(getattr(data, name)())
        height, width = picture.shape
        for index in range(per_class):
            side = round(rng.uniform(*scale) * min(height, width))
            top = int(rng.integers(0, height - side + 1))
            left = int(rng.integers(0, width - side + 1))
            crop = resize(picture[top:top + side, left:left + side], (size, size), order=1,
                          anti_aliasing=side > size, preserve_range=True)
            images[label * per_class + index, :, :, 0] = _equalised(crop)
    return images, np.repeat(np.arange(len(TASK_PHOTOS), dtype=np.int64), per_class)


def colour_task(size: int = 192, per_class: int = 40, seed: int = 0,
                scale: tuple[float, float] = (0.25, 0.6)) -> tuple[np.ndarray, np.ndarray]:
    """Return colour crops of the :data:`PHOTOS`, labelled by photograph (4 classes).

    Cut as :func:`photo_task` cuts its crops (a random square of ``scale`` of the shorter
    side, bilinear with anti-aliasing), but kept in colour and not equalised: real colour
    photo crops, the kind of data on which issue 22's independent attack was measured.

    Parameters
    ----------
    size : int
        Side of each image in pixels.
    per_class : int
        Crops per photograph.
    seed : int
        Seed of the crop positions and sizes (a local ``numpy.random.default_rng``).
    scale : tuple of float
        Smallest and largest crop side, as fractions of the picture's shorter side.

    Returns
    -------
    images : ndarray of uint8, shape (4 * per_class, size, size, 3)
    labels : ndarray of int64, shape (4 * per_class,)
    """
    if size < 8 or per_class < 1 or not 0 < scale[0] <= scale[1] <= 1:
        raise BadInputError(
            f"colour_task needs size >= 8, per_class >= 1 and 0 < scale[0] <= scale[1] <= 1, "
            f"got size={size}, per_class={per_class}, scale={scale}")
    from skimage.transform import resize

    rng = np.random.default_rng(seed)
    pictures = photos()
    images = np.empty((len(pictures) * per_class, size, size, 3), dtype=np.uint8)
    for label, picture in enumerate(pictures):
        height, width = picture.shape[:2]
        for index in range(per_class):
            side = round(rng.uniform(*scale) * min(height, width))
            top = int(rng.integers(0, height - side + 1))
            left = int(rng.integers(0, width - side + 1))
            crop = resize(picture[top:top + side, left:left + side].astype(np.float64),
                          (size, size), order=1, anti_aliasing=side > size, preserve_range=True)
            images[label * per_class + index] = np.clip(np.rint(crop), 0, 255)
    return images, np.repeat(np.arange(len(pictures), dtype=np.int64), per_class)


def face_task(size: int = 192) -> tuple[np.ndarray, np.ndarray]:
    """Return the LFW subset (100 faces, label 0; 100 non-faces, label 1) at ``size`` x ``size``.

    The 25x25 grey images are resized with bilinear interpolation (scikit-image's
    ``resize``, ``order=1``, no anti-aliasing as they only grow) and rounded to uint8.

    Returns
    -------
    images : ndarray of uint8, shape (200, size, size, 1)
    labels : ndarray of int64, shape (200,)
    """
    if size < 8:
        raise BadInputError(f"face_task needs size >= 8, got {size}")
    from skimage.transform import resize

    faces, labels = lfw_faces()
    images = np.empty((len(faces), size, size, 1), dtype=np.uint8)
    for index, face in enumerate(faces):
        grown = resize(face, (size, size), order=1, anti_aliasing=False, preserve_range=True)
        images[index, :, :, 0] = np.clip(np.rint(grown * 255.0), 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)
