"""The Numba planner and kernels equal the slow NumPy oracle bit for bit."""

import warnings

import naive
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastmix
from fastmix.kernels import cpu as cpu_kernels
from fastmix.pipeline import Pipeline

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


@pytest.mark.parametrize(("shape", "dtype", "block"), [
    pytest.param((64, 64, 3), np.uint8, (8, 8), id="3-words"),  # every column 3 words
    pytest.param((40, 37, 3), np.uint8, (5, 7), id="21-bytes-last-6"),  # 1-byte units
    pytest.param((30, 30), np.uint16, (4, 4), id="2-halves-last-1"),  # 4-byte units
    pytest.param((16, 64, 4), np.float32, (4, 2), id="4-words"),
    pytest.param((12, 100), np.uint8, (3, 40), id="10-halves-last-5"),
    pytest.param((24, 192, 3), np.uint8, (8, 64), id="24-words"),
    pytest.param((8, 96, 3), np.float64, (2, 16), id="48-words-any-length"),
])
@pytest.mark.parametrize("mode", ["permute", "paper"])
def test_each_plain_gather_kernel_equals_oracle(shape, dtype, block, mode, key):
    """The plain gather compiled for a segment length gives the oracle's bytes.

    ``mix_array`` takes it for windows of at least ``FIXED_SEGMENT_BYTES``, more than a test
    mixes, so it runs here on the pipeline's views, as ``mix_piece`` calls it; segments
    longer than ``MAX_FIXED_SEGMENT`` units take the kernel for any length.
    """
    rng = np.random.default_rng(3)
    images = rng.integers(0, 255, (30, *shape)).astype(dtype)
    labels = rng.integers(0, 3, 30)
    spec = fastmix.MixSpec(block=block, mode=mode, prob=1.0)
    pipeline = Pipeline(images.shape[1:], images.dtype, spec, key)
    plan = pipeline.plan(labels, 0)
    layout = pipeline.steps.layout
    segment = int(layout.col_bounds[1] - layout.col_bounds[0])
    kernel = cpu_kernels.gather_kernel(segment)
    assert cpu_kernels.plain_gather_for(layout, cpu_kernels.FIXED_SEGMENT_BYTES) is kernel
    assert cpu_kernels.plain_gather_for(layout, cpu_kernels.FIXED_SEGMENT_BYTES - 1) is \
        cpu_kernels.gather
    mixed = np.empty_like(images)
    kernel(layout.view(images), layout.view(mixed), plan.source, layout.row_bounds,
           layout.col_bounds, plan.order)
    np.testing.assert_array_equal(mixed.view(np.uint8),
                                  naive.mix(images, labels, spec, key).view(np.uint8))
    if segment < cpu_kernels.MAX_FIXED_SEGMENT:  # a kernel for another length refuses
        with pytest.raises(ValueError, match="not as wide"):
            cpu_kernels.gather_kernel(segment + 1)(
                layout.view(images), layout.view(mixed), plan.source, layout.row_bounds,
                layout.col_bounds, plan.order)
