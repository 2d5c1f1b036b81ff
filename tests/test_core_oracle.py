"""The Numba planner and kernels equal the slow NumPy oracle bit for bit."""

import warnings

import naive
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastmix

DTYPES = [np.uint8, np.uint16, np.int32, np.float32, np.float64, np.int8, np.uint64]


@st.composite
def mixing_cases(draw):
    count = draw(st.integers(1, 40))
    height = draw(st.integers(1, 13))
    width = draw(st.integers(1, 13))
    channels = draw(st.sampled_from([None, 1, 3, 4]))
    dtype = draw(st.sampled_from(DTYPES))
    shape = (count, height, width) + (() if channels is None else (channels,))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 255, size=shape).astype(dtype)
    label_kind = draw(st.sampled_from(["int", "str", "few"]))
    classes = draw(st.integers(1, 5))
    raw = rng.integers(0, classes, size=count)
    labels = {"int": raw * 7 - 3, "str": np.array([f"class-{v}" for v in raw]),
              "few": np.zeros(count, dtype=np.int64)}[label_kind]
    if draw(st.booleans()):
        geometry = {"block": (draw(st.integers(1, height)), draw(st.integers(1, width)))}
    else:
        geometry = {"grid": (draw(st.integers(1, height)), draw(st.integers(1, width)))}
    spec = fastmix.MixSpec(
        **geometry,
        donors=draw(st.integers(1, 6)),
        prob=draw(st.sampled_from([0.0, 0.3, 0.5, 1.0])),
        rounds=draw(st.integers(1, 3)),
        mode=draw(st.sampled_from(["permute", "paper"])),
    )
    window = draw(st.one_of(st.none(), st.integers(1, count)))
    key = fastmix.Key(bytes(rng.integers(0, 256, 32, dtype=np.uint8)))
    return images, labels, spec, key, window


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mixing_cases())
def test_mix_array_equals_oracle(case):
    images, labels, spec, key, window = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.FastmixWarning)
        mixed = fastmix.mix_array(images, labels, spec, key, window=window)
    expected = naive.mix(images, labels, spec, key, window=window)
    assert mixed.dtype == images.dtype and mixed.shape == images.shape
    np.testing.assert_array_equal(mixed.view(np.uint8), expected.view(np.uint8))
    if spec.mode == "permute":
        restored = fastmix.unmix_array(mixed, labels, spec, key, window=window)
        np.testing.assert_array_equal(restored.view(np.uint8), images.view(np.uint8))
        undone = naive.mix(mixed, labels, spec, key, window=window, inverse=True)
        np.testing.assert_array_equal(undone.view(np.uint8), images.view(np.uint8))


def test_oracle_on_real_photographs(photo_tiles, key):
    images, labels = photo_tiles
    for mode in ("permute", "paper"):
        spec = fastmix.MixSpec(block=(8, 8), donors=4, prob=0.5, mode=mode)
        mixed = fastmix.mix_array(images, labels, spec, key, window=100)
        np.testing.assert_array_equal(mixed, naive.mix(images, labels, spec, key, window=100))


def test_out_buffer_is_written_and_returned(photo_tiles, key):
    images, labels = photo_tiles
    spec = fastmix.MixSpec(block=(8, 8))
    buffer = np.zeros_like(images)
    result = fastmix.mix_array(images, labels, spec, key, out=buffer)
    assert result is buffer
    np.testing.assert_array_equal(buffer, fastmix.mix_array(images, labels, spec, key))


def test_non_contiguous_input_is_mixed_like_a_contiguous_copy(photo_tiles, key):
    images, labels = photo_tiles
    strided = images[:, ::2, ::2]
    spec = fastmix.MixSpec(block=(4, 4), prob=1.0)
    np.testing.assert_array_equal(
        fastmix.mix_array(strided, labels, spec, key),
        fastmix.mix_array(np.ascontiguousarray(strided), labels, spec, key),
    )


@pytest.mark.parametrize("window", [7, 64, 256])
@pytest.mark.filterwarnings("ignore::fastmix.FastmixWarning")
def test_windows_mix_only_inside_themselves(photo_tiles, key, window):
    images, labels = photo_tiles
    spec = fastmix.MixSpec(block=(8, 8), prob=1.0)
    mixed = fastmix.mix_array(images, labels, spec, key, window=window)
    for start in range(0, len(images), window):
        part = slice(start, start + window)
        np.testing.assert_array_equal(
            np.sort(mixed[part].reshape(-1)), np.sort(images[part].reshape(-1)))
