"""Decode one image file into a fixed-size uint8 array, and a batch of them.

JPEG files are decoded by libjpeg-turbo directly (:mod:`fastmix.images.jpeg`, simplejpeg),
scaled in the DCT domain towards the target size. Every other file, and a JPEG that module
leaves alone, is read with imageio (Pillow plugin first, then whatever plugin imageio picks,
which covers float and 16-bit colour TIFF through tifffile). GIF and multi-page TIFF give
their first frame. Conversions, in this order:

* depth: 16-bit and other integer images are scaled to 0..255 (rounded); floats in [0, 1]
  are scaled by 255, other floats are clipped to 0..255; booleans become 0/255;
* channels: grey is repeated into RGB; the alpha channel of RGBA / grey+alpha is dropped
  (the colour values are kept as stored, as Pillow's ``convert("RGB")`` does); RGB becomes
  grey with Pillow's ITU-R 601-2 luma when one channel is asked for;
* size: resized to exactly ``H x W`` (aspect ratio not kept) with Pillow's Lanczos filter,
  which antialiases when shrinking; an image already of that size is not touched.
"""

from __future__ import annotations

import os

import numpy as np

from fastmix.errors import UnreadableImageError  # re-exported
from fastmix.images import jpeg

#: File name extensions that are read as images (lower case); every other file is ignored.
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".gif"})


def is_image_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` has an image extension fastmix reads."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


_optional_plugins_checked = False


def cache_missing_optional_plugins() -> None:
    """Remember that Pillow's optional HEIF/AVIF plugin is absent.

    imageio's Pillow plugin tries ``import pillow_heif`` twice on every read and write; when
    it is not installed, each failed import searches ``sys.path`` under the import lock,
    which cost more than decoding a 192x192 JPEG and serialised the worker threads. A
    ``None`` entry in ``sys.modules`` makes that import fail at once, exactly as it would
    anyway.
    """
    global _optional_plugins_checked
    if _optional_plugins_checked:
        return
    import importlib.util
    import sys

    if "pillow_heif" not in sys.modules and importlib.util.find_spec("pillow_heif") is None:
        sys.modules["pillow_heif"] = None  # type: ignore[assignment]
    _optional_plugins_checked = True


def _read(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    import imageio.v3 as iio

    # One read of the whole file, then a decoder on the bytes: about 0.1 ms less per file
    # than handing imageio the path (no URI parsing and stat calls, no small buffered reads
    # while Pillow walks the JPEG markers).
    with open(path, "rb", buffering=0) as handle:
        data = handle.readall()
    extension = os.path.splitext(path)[1].lower()
    if extension in jpeg.JPEG_EXTENSIONS:
        _require_jpeg_pixels_within_limit(data, path)
        pixels = jpeg.decode(data, size)  # libjpeg-turbo directly, scaled towards ``size``
        if pixels is not None:
            return pixels
    else:
        _require_pixels_within_limit(data, path)
    cache_missing_optional_plugins()
    # Decoder warnings (odd EXIF data and the like) are silenced by the callers that decode
    # many files (ingest, the worker processes), once: ``warnings.catch_warnings`` here, per
    # file and in several threads at once, could leave the process's filters altered.
    try:
        # writeable_output=False skips a copy: the pixels are copied into a batch anyway
        return np.asarray(iio.imread(data, index=0, plugin="pillow", extension=extension,
                                     rotate=True, writeable_output=False))
    except Exception:  # fall back to imageio's own plugin choice
        pass
    try:
        # The other decoders (tifffile, ...) get the same pixel limit, from the file's
        # metadata, before anything is decoded.
        _check_pixel_count(iio.improps(path, index=0).shape)
        return np.asarray(iio.imread(path, index=0))
    except UnreadableImageError:
        raise
    except Exception as error:  # any decoder failure means unreadable
        if not _pillow_knows(data):
            # imageio found no decoder and suggests plugins (video ones for .png): what the
            # user needs to know is that the content is no image of a format fastmix reads
            raise UnreadableImageError(
                "not a readable image: the content is not PNG, JPEG, BMP, TIFF or GIF"
            ) from None
        raise UnreadableImageError(f"{type(error).__name__}: {one_line(str(error))}") from None


def _pillow_knows(data: bytes) -> bool:
    """Whether Pillow recognises ``data`` as an image of some format (decodable or not)."""
    import io

    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)):
            return True
    except Exception:  # UnidentifiedImageError and whatever a damaged header raises
        return False


def pixel_limit() -> int | None:
    """Return the most pixels an image may have: Pillow's ``MAX_IMAGE_PIXELS`` (``None``: no limit).

    One limit for every decoder, so that a decompression bomb is refused whichever decoder
    would read it.
    """
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def _check_pixel_count(shape: tuple[int, ...]) -> None:
    limit = pixel_limit()
    pixels = int(np.prod(shape[:2], dtype=np.int64)) if len(shape) >= 2 else 0
    if limit is not None and pixels > limit:
        raise UnreadableImageError(
            f"{shape[1]}x{shape[0]} is {pixels:,} pixels, more than the limit of {limit:,} "
            "(Pillow's MAX_IMAGE_PIXELS)"
        )


def _require_jpeg_pixels_within_limit(data: bytes, path: str) -> None:
    """Apply :func:`_require_pixels_within_limit` through libjpeg-turbo's header parse."""
    codec = jpeg.codec()
    if codec is None:
        _require_pixels_within_limit(data, path)
        return
    try:
        height, width, _, _ = codec.decode_jpeg_header(data)
    except (ValueError, RuntimeError):
        _require_pixels_within_limit(data, path)
        return
    _check_pixel_count((height, width))


def _require_pixels_within_limit(data: bytes, path: str) -> None:
    """Refuse an image whose header declares more pixels than :func:`pixel_limit`."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
    except Image.DecompressionBombError:
        raise UnreadableImageError(
            f"more than twice the limit of {pixel_limit():,} pixels (Pillow's "
            "MAX_IMAGE_PIXELS)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return  # not for Pillow: the fallback decoder checks its own metadata
    _check_pixel_count((height, width))


def one_line(text: str) -> str:
    """Return ``text`` with every run of whitespace, line breaks included, as one space."""
    return " ".join(text.split())


def to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Scale an image of any numeric depth to uint8 (see the module notes)."""
    if pixels.dtype == np.uint8:
        return pixels
    if pixels.dtype == np.bool_:
        return pixels.astype(np.uint8) * np.uint8(255)
    if pixels.dtype.kind in "ui":
        top = np.iinfo(pixels.dtype).max
        wide = np.clip(pixels, 0, None).astype(np.uint64)
        return ((wide * 255 + top // 2) // top).astype(np.uint8)
    if pixels.dtype.kind == "f":
        finite = np.nan_to_num(pixels.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            finite = finite * 255.0
        return np.clip(np.rint(finite), 0, 255).astype(np.uint8)
    raise UnreadableImageError(f"unsupported pixel type {pixels.dtype}")


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    """Bring a uint8 image of shape (H, W) or (H, W, C) to (H, W, ``channels``)."""
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 3:
        if pixels.shape[2] == 2:  # grey + alpha
            pixels = pixels[:, :, 0]
        elif pixels.shape[2] in (3, 4):
            pixels = pixels[:, :, :3]
        else:
            raise UnreadableImageError(f"unsupported channel count {pixels.shape[2]}")
    elif pixels.ndim != 2:
        raise UnreadableImageError(f"unsupported image shape {pixels.shape}")
    if channels == 3:
        if pixels.ndim == 2:
            return np.repeat(pixels[:, :, None], 3, axis=2)
        return pixels
    if pixels.ndim == 3:
        from PIL import Image

        pixels = np.asarray(Image.fromarray(np.ascontiguousarray(pixels), "RGB").convert("L"))
    return pixels[:, :, None]


def resize(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a uint8 (H, W, C) image to ``size = (height, width)`` with Lanczos filtering."""
    height, width = size
    if pixels.shape[:2] == (height, width):
        return pixels
    from PIL import Image

    grey = pixels.shape[2] == 1
    image = Image.fromarray(np.ascontiguousarray(pixels[:, :, 0] if grey else pixels))
    # reducing_gap first shrinks by an integer factor with a box filter: much faster on big
    # photos and visually indistinguishable from a full Lanczos pass
    resized = np.asarray(image.resize((width, height), Image.Resampling.LANCZOS,
                                      reducing_gap=3.0))
    return resized[:, :, None] if grey else resized


def decode_image(path: str | os.PathLike, size: tuple[int, int], channels: int = 3) -> np.ndarray:
    """Read one image file as a uint8 array of shape (H, W, ``channels``).

    Parameters
    ----------
    path : str or os.PathLike
        The image file (PNG, JPEG, BMP, TIFF or GIF).
    size : tuple of int
        Output ``(height, width)``.
    channels : {1, 3}
        Output channel count.

    Returns
    -------
    ndarray
        The decoded image.

    Raises
    ------
    UnreadableImageError
        When the file cannot be decoded.
    """
    pixels = _read(os.fspath(path), size)
    if pixels.size == 0:
        raise UnreadableImageError("empty image")
    return resize(to_channels(to_uint8(pixels), channels), size)


def decode_batch(paths: list[str], size: tuple[int, int], channels: int,
                 out: np.ndarray | None = None) -> tuple[np.ndarray, list[int], list[str]]:
    """Decode ``paths`` into one array; runs in a worker thread or process.

    Parameters
    ----------
    paths : list of str
        The image files.
    size : tuple of int
        Output ``(height, width)``.
    channels : {1, 3}
        Output channel count.
    out : ndarray, optional
        A uint8 buffer of shape ``(>= len(paths), H, W, channels)`` to decode into; reusing
        one saves the page faults of fresh memory (about as costly as the copy itself).

    Returns
    -------
    images : ndarray, shape (n_ok, H, W, channels)
        The readable images, in input order (a view of ``out`` when given).
    ok : list of int
        Positions in ``paths`` of the readable images.
    failures : list of str
        ``"path (reason)"`` for each unreadable file.
    """
    height, width = size
    if out is None:
        out = np.empty((len(paths), height, width, channels), dtype=np.uint8)
    ok: list[int] = []
    failures: list[str] = []
    for position, path in enumerate(paths):
        try:
            out[len(ok)] = decode_image(path, size, channels)
        except UnreadableImageError as error:
            failures.append(f"{path} ({one_line(str(error))})")
            continue
        except (OSError, ValueError, MemoryError) as error:
            failures.append(f"{path} ({type(error).__name__}: {one_line(str(error))})")
            continue
        ok.append(position)
    return out[: len(ok)], ok, failures
