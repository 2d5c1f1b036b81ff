"""JPEG through libjpeg-turbo (simplejpeg): same pixels as Pillow, deterministic ingest."""

from __future__ import annotations

import io

import h5py
import numpy as np
import pytest
from PIL import Image
from test_ingest_support import photo

from fastmix.images import jpeg
from fastmix.images.decode import decode_image
from fastmix.images.export import export_store
from fastmix.images.ingest import ingest_folder

pytestmark = pytest.mark.skipif(jpeg.codec() is None, reason="simplejpeg is not installed")


def jpeg_bytes(pixels: np.ndarray, quality: int = 90, **options) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, **options)
    return buffer.getvalue()


def pillow_pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


def test_full_size_decode_is_pillows_bytes():
    for pixels in (photo("astronaut", 96, 80), photo("coffee", 64, 64)[:, :, 0]):
        data = jpeg_bytes(np.ascontiguousarray(pixels))
        decoded = jpeg.decode(data)
        expected = pillow_pixels(data)
        if expected.ndim == 2:
            expected = np.repeat(expected[:, :, None], 3, axis=2)
        np.testing.assert_array_equal(decoded, expected)


def test_dct_scaling_covers_the_target_and_stays_close_to_lanczos(tmp_path):
    path = tmp_path / "big.jpg"
    path.write_bytes(jpeg_bytes(photo("astronaut", 512, 512), quality=95))
    assert jpeg.decode(path.read_bytes(), (192, 192)).shape == (192, 192, 3)  # 3/8 in DCT
    assert jpeg.decode(path.read_bytes(), (100, 120)).shape == (128, 128, 3)  # 1/4 covers it
    image = decode_image(path, (100, 120))
    full = Image.open(path).resize((120, 100), Image.Resampling.LANCZOS)
    difference = np.abs(image.astype(np.int16) - np.asarray(full).astype(np.int16))
    assert image.shape == (100, 120, 3) and difference.mean() < 3.0  # of 255: measured 2.1


def test_what_libjpeg_turbo_cannot_do_as_imageio_goes_to_imageio(tmp_path):
    pixels = photo("chelsea", 40, 64)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    rotated = tmp_path / "rotated.jpg"
    rotated.write_bytes(jpeg_bytes(pixels, exif=exif))
    assert jpeg.exif_orientation(rotated.read_bytes()) == 6
    assert jpeg.decode(rotated.read_bytes()) is None
    assert decode_image(rotated, (64, 40)).shape == (64, 40, 3)  # upright, as imageio shows it
    cmyk = Image.fromarray(photo("coffee", 32, 32)).convert("CMYK")
    buffer = io.BytesIO()
    cmyk.save(buffer, "JPEG")
    assert jpeg.decode(buffer.getvalue()) is None
    data = jpeg_bytes(pixels)
    assert jpeg.decode(data[: len(data) // 2]) is None  # damaged: imageio says why
    assert jpeg.exif_orientation(data) == 1 and jpeg.exif_orientation(b"not a jpeg") is None


def test_jpeg_folder_ingest_is_deterministic(tmp_path):
    """Threads, worker processes and any worker count store the same bytes."""
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    for number in range(40):
        name = ("astronaut", "coffee")[number % 2]
        side = int(rng.integers(100, 300))
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{number:03d}.jpg").write_bytes(jpeg_bytes(photo(name, side, side)))
    stores = []
    for index, options in enumerate(({"workers": 1}, {"workers": 2},
                                     {"workers": 2, "processes": True})):
        store = tmp_path / f"s{index}.h5"
        ingest_folder(root, store, size=(64, 48), progress=False, **options)
        with h5py.File(store, "r") as file:
            stores.append(file["images"][()])
    assert stores[0].shape == (40, 64, 48, 3)
    for other in stores[1:]:
        np.testing.assert_array_equal(stores[0], other)


def test_jpeg_export_writes_files_pillow_reads_back_closely(tmp_path):
    images = np.stack([photo("astronaut", 64, 64), photo("coffee", 64, 64)])
    with h5py.File(tmp_path / "s.h5", "w") as file:
        file["images"] = images
        file["labels"] = np.array([0, 1])
        file["grey"] = images[:, :, :, :1]
    export_store(tmp_path / "s.h5", tmp_path / "out", image_format="jpeg", progress=False)
    for index in range(2):
        written = pillow_pixels((tmp_path / "out" / str(index) / f"{index:06d}.jpg")
                                .read_bytes())
        assert written.shape == (64, 64, 3)
        assert np.abs(written.astype(np.int16) - images[index]).mean() < 3.0
    export_store(tmp_path / "s.h5", tmp_path / "grey", images="grey", image_format="jpeg",
                 progress=False)
    written = Image.open(tmp_path / "grey" / "0" / "000000.jpg")
    assert written.mode == "L" and written.size == (64, 64)
