"""The hardening equals the slow, obvious NumPy oracle (``tests/naive.py``) bit for bit.

On every backend, for any piece of a window.
"""

from __future__ import annotations

import warnings

import naive
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fastmix
from fastmix import MixSpec
from fastmix.backends import available_backends
from fastmix.kernels import cpu as cpu_kernels
from fastmix.pipeline import Pipeline

BACKENDS = available_backends()
# The cuda backend runs in numba.cuda's simulator here (a Python thread per CUDA thread):
# every fourth of the CPU's tiles keeps its cases within seconds.
SIMULATOR_STEP = 16


SPECS = [
    pytest.param(MixSpec(block=(8, 8), prob=1.0, orient="flip"), id="flip"),
    pytest.param(MixSpec(block=(8, 8), prob=0.7, orient="d4", donors=3), id="d4"),
    pytest.param(MixSpec(block=(10, 7), prob=1.0, orient="d4", donors=2), id="d4-non-square"),
    pytest.param(MixSpec(block=(8, 8), prob=1.0, jitter=True), id="jitter"),
    pytest.param(MixSpec(block=(8, 8), prob=1.0, jitter=(1.0, 1.0, 1.0)), id="jitter-max"),
    pytest.param(MixSpec(block=(16, 12), prob=1.0, jitter=(0.3, 0.5, 0.7)),
                 id="jitter-level-table"),
    pytest.param(MixSpec(block=(8, 8), prob=1.0, seam_blur=1.0), id="seam-blur-1"),
    pytest.param(MixSpec(block=(9, 6), prob=1.0, seam_blur=2.5), id="seam-blur-2.5"),
    pytest.param(MixSpec(block=(8, 8), orient="d4", jitter=True, seam_blur=1.0, group=5,
                         prob=1.0), id="all-group-5"),
    pytest.param(MixSpec.preset("balanced", block=(11, 11)), id="balanced-ragged"),
    pytest.param(MixSpec.preset("strong", grid=(4, 4)), id="strong"),
    pytest.param(MixSpec(block=(8, 8), orient="flip", group="window", prob=1.0), id="window"),
    pytest.param(MixSpec(block=(8, 8), mode="paper", orient="d4", jitter=True, seam_blur=1.0),
                 id="paper"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", SPECS)
def test_rgb_tiles_equal_oracle(spec, backend, photo_tiles, key):
    images, labels = photo_tiles
    step = SIMULATOR_STEP if backend == "cuda" else 4
    images, labels = images[::step], labels[::step]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.FastmixWarning)
        mixed = fastmix.mix_array(images, labels, spec, key, window=40, backend=backend)
    assert np.array_equal(mixed, naive.mix(images, labels, spec, key, window=40))
    assert not np.array_equal(mixed, images)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["uint16", "int8", "int32", "float32", "float64"])
def test_dtypes_equal_oracle(dtype, backend, photo_tiles, key):
    tiles, labels = photo_tiles
    grey = tiles[:48, :, :30].mean(axis=3)
    if dtype.startswith("float"):
        images = (grey / 255.0).astype(dtype)
    else:
        info = np.iinfo(dtype)
        images = (info.min + grey / 255.0 * (float(info.max) - info.min)).astype(dtype)
    for block in ((7, 6), (32, 30)):  # the second takes the per-block level table for 8 bits
        spec = MixSpec(block=block, orient="flip", jitter=(0.3, 0.5, 0.5), seam_blur=1.5,
                       prob=1.0, donors=3)
        mixed = fastmix.mix_array(images, labels[:48], spec, key, backend=backend)
        assert mixed.dtype == images.dtype
        assert np.array_equal(mixed, naive.mix(images, labels[:48], spec, key))


@pytest.mark.parametrize("backend", BACKENDS)
def test_any_piece_of_a_window_equals_the_whole(backend, photo_tiles, key):
    """The per-piece step gives the same images for any range of output images."""
    images, labels = photo_tiles
    images, labels = np.ascontiguousarray(images[:60]), labels[:60]
    spec = MixSpec.preset("balanced", block=(8, 8))
    pipeline = Pipeline(images.shape[1:], images.dtype, spec, key, backend=backend)
    window = pipeline.load(images, pipeline.plan(labels, 3))
    whole = np.empty_like(images)
    pipeline.mix_piece(window, 0, 60, whole)
    for first, last in ((0, 1), (7, 23), (23, 60), (59, 60)):
        piece = np.empty_like(images[first:last])
        pipeline.mix_piece(window, first, last, piece)
        assert np.array_equal(piece, whole[first:last])
    expected = naive.mix(images, labels, spec, key)
    assert np.array_equal(fastmix.mix_array(images, labels, spec, key, backend=backend),
                          expected)


@st.composite
def hardened_cases(draw):
    count = draw(st.integers(2, 24))
    height = draw(st.integers(2, 14))
    width = draw(st.integers(2, 14))
    channels = draw(st.sampled_from([None, 1, 3]))
    dtype = draw(st.sampled_from(["uint8", "uint16", "int8", "int32", "float32", "float64"]))
    shape = (count, height, width) + (() if channels is None else (channels,))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    if dtype.startswith("float"):
        images = rng.uniform(-0.1, 1.1, size=shape).astype(dtype)
    else:
        info = np.iinfo(dtype)
        images = rng.integers(info.min, int(info.max) + 1, size=shape, dtype=np.int64)
        images = images.astype(dtype)
    labels = rng.integers(0, draw(st.integers(1, 4)), size=count)
    block = (draw(st.integers(1, height)), draw(st.integers(1, width)))
    jitter = draw(st.one_of(st.none(), st.just(True), st.tuples(
        *[st.floats(0.0, 1.0, allow_nan=False) for _ in range(3)]).filter(any)))
    mode = draw(st.sampled_from(["permute", "paper"]))
    spec = MixSpec(block=block, mode=mode, donors=draw(st.integers(1, 5)),
                   prob=draw(st.sampled_from([0.0, 0.5, 1.0])),
                   rounds=draw(st.integers(1, 2)),
                   orient=draw(st.sampled_from(["none", "flip", "d4"])), jitter=jitter,
                   seam_blur=draw(st.sampled_from([0.0, 0.5, 1.0, 2.5])),
                   plan_rule=(rule := draw(st.sampled_from([1, 2]))),
                   hardening_format=draw(st.sampled_from([1, 2])) if rule == 2 else 1)
    window = draw(st.one_of(st.none(), st.integers(1, count)))
    key = fastmix.Key(bytes(rng.integers(0, 256, 32, dtype=np.uint8)))
    return images, labels, spec, key, window


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(case=hardened_cases())
def test_hardened_mix_equals_oracle(backend, case):
    images, labels, spec, key, window = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.FastmixWarning)
        mixed = fastmix.mix_array(images, labels, spec, key, window=window, backend=backend)
    expected = naive.mix(images, labels, spec, key, window=window)
    np.testing.assert_array_equal(mixed.view(np.uint8), expected.view(np.uint8))
    if spec.reversible:
        restored = fastmix.unmix_array(mixed, labels, spec, key, window=window, backend=backend)
        np.testing.assert_array_equal(restored.view(np.uint8), images.view(np.uint8))
        np.testing.assert_array_equal(
            naive.mix(mixed, labels, spec, key, window=window, inverse=True).view(np.uint8),
            images.view(np.uint8))


@pytest.mark.parametrize("name", sorted(cpu_kernels.hardened_kernels()))
@pytest.mark.parametrize("spec", [
    pytest.param(MixSpec.preset("balanced"), id="balanced-2x8"),
    pytest.param(MixSpec.preset("balanced", block=(16, 16)), id="balanced-16"),
    pytest.param(MixSpec.preset("strong", block=(24, 24)), id="strong-24"),
    # blocks of at most 128 bytes are oriented in two vectors on a VBMI CPU, with edge
    # blocks of other shapes: 5x5 inside, 5x1, 1x5 and 1x1 at the edges; 6x7 (126 bytes,
    # no transposes drawn) with 6x5 at the right
    pytest.param(MixSpec.preset("strong", block=(5, 5)), id="strong-5x5-small"),
    pytest.param(MixSpec.preset("balanced", block=(6, 7)), id="balanced-6x7-small"),
    pytest.param(MixSpec(block=(9, 70), prob=1.0, jitter=(0.3, 0.5, 0.7), orient="flip"),
                 id="wide-rows"),
])
def test_each_cpu_lookup_kernel_equals_oracle(name, spec, key):
    """Both CPU kernels (portable; AVX-512 VBMI where the CPU has it) give the oracle's bytes.

    uint8 images take the VBMI lookup by default on such a CPU, so the portable lookup of
    uint8 values is run here explicitly, on 96x96 photograph tiles; rows of more than 64
    values take several vectors.
    """
    pytest.importorskip("skimage.data")
    from fastmix.samples import photo_tiles

    images, labels = photo_tiles(size=96, crop=None)
    kernel = cpu_kernels.hardened_kernels()[name]
    pipeline = Pipeline(images.shape[1:], images.dtype, spec, key)
    window = pipeline.load(images, pipeline.plan(labels, 0))
    mixed = np.empty_like(images)
    cpu_kernels.mix_piece(window, 0, len(images), mixed, window.plan.order, kernel=kernel)
    assert np.array_equal(mixed, naive.mix(images, labels, spec, key))
