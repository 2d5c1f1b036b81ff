"""Wrong input raises a ValueError/TypeError that says what was found and what to do."""

import numpy as np
import pytest

import fastmix
from fastmix.spec import parse_memory, parse_pair

IMAGES = np.zeros((6, 8, 8, 3), dtype=np.uint8)
LABELS = np.array([0, 0, 0, 1, 1, 1])


@pytest.mark.parametrize(
    ("images", "labels", "error", "match"),
    [
        (np.zeros((6, 8), np.uint8), LABELS, ValueError, "shape \\(N, H, W\\)"),
        (np.zeros((6, 8, 8, 3, 2), np.uint8), LABELS, ValueError, "5 dimensions"),
        (IMAGES, LABELS[:5], ValueError, "5 entries but there are 6 images"),
        (IMAGES, np.array([0, 1, np.nan, 0, 1, 1]), ValueError, "NaN"),
        (IMAGES, np.array([0.5, 1, 1, 0, 1, 1]), ValueError, "fractions"),
        (IMAGES, np.array([0, 1, None, 0, 1, 1], dtype=object), ValueError, "None or NaN"),
        (IMAGES.tolist(), LABELS, TypeError, "NumPy array"),
        (np.zeros((6, 8, 8), dtype=object), LABELS, TypeError, "fixed-size numeric dtype"),
        (np.zeros((6, 8, 8), dtype=complex), LABELS, TypeError, "fixed-size numeric dtype"),
    ],
)
def test_bad_images_and_labels(key, images, labels, error, match):
    with pytest.raises(error, match=match):
        fastmix.mix_array(images, labels, fastmix.MixSpec(block=(4, 4)), key)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"block": (0, 4)}, ValueError, "positive integers"),
        ({"block": (4,)}, TypeError, "pair of positive integers"),
        ({"block": (4, 4), "grid": (2, 2)}, ValueError, "not both"),
        ({"grid": (2.5, 2)}, TypeError, "pair of positive integers"),
        ({"donors": 0}, ValueError, "donors must be a positive integer"),
        ({"donors": 2.0}, TypeError, "donors must be a positive integer"),
        ({"prob": 1.5}, ValueError, "prob must be in \\[0, 1\\]"),
        ({"prob": float("nan")}, ValueError, "prob must be in"),
        ({"prob": "half"}, TypeError, "prob must be a number"),
        ({"rounds": 0}, ValueError, "rounds must be a positive integer"),
        ({"mode": "shuffle"}, ValueError, "mode must be one of permute, paper"),
    ],
)
def test_bad_spec_values(kwargs, error, match):
    with pytest.raises(error, match=match):
        fastmix.MixSpec(**kwargs)


def test_block_larger_than_image(key):
    with pytest.raises(ValueError, match="larger than the 8x8 images"):
        fastmix.mix_array(IMAGES, LABELS, fastmix.MixSpec(block=(16, 4)), key)
    with pytest.raises(ValueError, match="grid 9x9 has more blocks"):
        fastmix.mix_array(IMAGES, LABELS, fastmix.MixSpec(grid=(9, 9)), key)


def test_unmix_of_paper_mode_is_refused(key):
    with pytest.raises(ValueError, match="not reversible"):
        fastmix.unmix_array(IMAGES, LABELS, fastmix.MixSpec(block=(4, 4), mode="paper"), key)


def test_bad_key_spec_window_and_out(key):
    spec = fastmix.MixSpec(block=(4, 4))
    with pytest.raises(TypeError, match=r"fastmix.Key"):
        fastmix.mix_array(IMAGES, LABELS, spec, "0f" * 32)
    with pytest.raises(TypeError, match=r"fastmix.MixSpec"):
        fastmix.mix_array(IMAGES, LABELS, {"block": (4, 4)}, key)
    with pytest.raises(ValueError, match="window must be a positive"):
        fastmix.mix_array(IMAGES, LABELS, spec, key, window=0)
    with pytest.raises(ValueError, match="must not overlap"):
        images = IMAGES.copy()
        fastmix.mix_array(images, LABELS, spec, key, out=images)
    with pytest.raises(ValueError, match="shape and dtype"):
        fastmix.mix_array(IMAGES, LABELS, spec, key, out=np.empty((6, 8, 8, 3), np.uint16))
    with pytest.raises(ValueError, match="unknown backend 'tpu'"):
        fastmix.mix_array(IMAGES, LABELS, spec, key, backend="tpu")


def test_parsers():
    assert parse_pair("96x24") == (96, 24)
    assert parse_memory("1GiB") == 2**30
    assert parse_memory("512MB") == 512 * 10**6
    for text in ("96", "0x4", "ax4", "96x24x3"):
        with pytest.raises(ValueError, match="must look like 96x24"):
            parse_pair(text, "block")
    for text in ("lots", "-1GiB", "1 parsec", "0"):
        with pytest.raises(ValueError, match="memory must be"):
            parse_memory(text)
