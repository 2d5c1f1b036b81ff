"""Hardening format 2 (docs/format.md section 2): its bytes, its record, and what it keeps.

Format 2 quantises each jitter field to its top 4 bits (16 levels, 4,096 curves tabled once
per run for 8-bit values) and sums the seam blur of integer images in fixed point. Every
backend and CPU kernel equals the oracle (``tests/naive.py``) bit for bit; the keyed draws
are format 1's; stores record the format and ``verify`` reproduces it.
"""

import json
import warnings

import naive
import numpy as np
import pytest

import fastmix
from fastmix import BadInputError, MixSpec
from fastmix.backends import available_backends
from fastmix.kernels import bodies
from fastmix.kernels import cpu as cpu_kernels
from fastmix.kernels.steps import (
    blur_weights,
    fixed_blur_weights,
    jitter_curves,
    jitter_tables,
    steps_for,
)
from fastmix.pipeline import Pipeline
from fastmix.spec import HARDENING_FORMAT

h5py = pytest.importorskip("h5py")
BACKENDS = available_backends()

SPECS = [
    pytest.param(MixSpec.preset("balanced", block=(8, 8), hardening_format=2), id="balanced"),
    pytest.param(MixSpec.preset("strong", block=(5, 5), hardening_format=2), id="strong-5x5"),
    pytest.param(MixSpec(block=(9, 6), prob=1.0, jitter=(0.3, 0.5, 0.7), seam_blur=2.5,
                         orient="flip", donors=3, hardening_format=2), id="wide-blur"),
    pytest.param(MixSpec(block=(8, 8), mode="paper", orient="d4", jitter=True, seam_blur=1.0,
                         hardening_format=2), id="paper"),
]


def _quiet_mix(images, labels, spec, key, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.FastmixWarning)
        return fastmix.mix_array(images, labels, spec, key, **options)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("spec", SPECS)
def test_rgb_tiles_equal_oracle(spec, backend, photo_tiles, key):
    images, labels = photo_tiles
    step = 16 if backend == "cuda" else 4
    images, labels = images[::step], labels[::step]
    mixed = _quiet_mix(images, labels, spec, key, window=40, backend=backend)
    assert np.array_equal(mixed, naive.mix(images, labels, spec, key, window=40))
    format_1 = _quiet_mix(images, labels, spec.with_hardening_format(1), key, window=40,
                          backend=backend)
    assert not np.array_equal(mixed, format_1)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("dtype", ["uint16", "int8", "int16", "int32", "float32", "float64"])
def test_dtypes_equal_oracle(dtype, backend, photo_tiles, key):
    tiles, labels = photo_tiles
    grey = tiles[:24, :, :30].mean(axis=3)
    if dtype.startswith("float"):
        images = (grey / 255.0).astype(dtype)
    else:
        info = np.iinfo(dtype)
        images = (info.min + grey / 255.0 * (float(info.max) - info.min)).astype(dtype)
    spec = MixSpec(block=(7, 6), orient="d4", jitter=(0.3, 0.5, 0.5), seam_blur=1.5, prob=1.0,
                   donors=3, hardening_format=2)
    mixed = _quiet_mix(images, labels[:24], spec, key, backend=backend)
    assert mixed.dtype == images.dtype
    assert np.array_equal(mixed.view(np.uint8),
                          naive.mix(images, labels[:24], spec, key).view(np.uint8))


@pytest.mark.parametrize("name", sorted(cpu_kernels.hardened_kernels()))
@pytest.mark.parametrize("block", [(6, 6), (16, 16), (6, 7)], ids=["6x6", "16x16", "6x7"])
def test_each_cpu_kernel_equals_oracle(name, block, key):
    """The portable kernel and the VBMI one (where the CPU has it) on 96x96 photographs."""
    pytest.importorskip("skimage.data")
    from fastmix.samples import photo_tiles

    images, labels = photo_tiles(size=96, crop=None)
    spec = MixSpec.preset("balanced", block=block, hardening_format=2)
    pipeline = Pipeline(images.shape[1:], images.dtype, spec, key)
    window = pipeline.load(images, pipeline.plan(labels, 0))
    mixed = np.empty_like(images)
    cpu_kernels.mix_piece(window, 0, len(images), mixed, window.plan.order,
                          kernel=cpu_kernels.hardened_kernels()[name])
    assert np.array_equal(mixed, naive.mix(images, labels, spec, key))


def test_orientation_alone_is_the_same_in_both_formats(photo_tiles, key):
    """The format changes arithmetic only: the keyed draws (here, the orientations) stay."""
    images, labels = photo_tiles
    spec = MixSpec(block=(8, 8), orient="d4", prob=1.0, group="window")
    assert np.array_equal(_quiet_mix(images, labels, spec, key),
                          _quiet_mix(images, labels, spec.with_hardening_format(2), key))


def test_the_constants_of_format_2():
    fixed = fixed_blur_weights(1.0)
    assert fixed.dtype == np.int64 and int(fixed.sum()) == 1 << bodies.FIXED_SHIFT
    assert np.array_equal(fixed, fixed[::-1])
    assert np.all(np.abs(fixed / 2.0**15 - blur_weights(1.0)) <= 2.0**-15)
    tables = jitter_tables((0.1, 0.2, 0.2), 2)
    assert [np.unique(row).size for row in tables] == [16, 16, 16]
    assert np.array_equal(tables[:, ::16], tables[:, 15::16])
    assert np.array_equal(jitter_tables((0.1, 0.2, 0.2)), jitter_tables((0.1, 0.2, 0.2), 1))
    curves = jitter_curves((0.1, 0.2, 0.2), np.dtype(np.uint8))
    assert curves.shape == (bodies.CURVES, 256) and curves.dtype == np.uint8
    # Every curve is monotone: the jitter keeps the order of values within a block.
    assert np.all(np.diff(curves.astype(np.int64), axis=1) >= 0)
    steps = steps_for((16, 16, 3), np.dtype(np.uint16), MixSpec.preset(
        "balanced", block=(4, 4), hardening_format=2))
    assert steps.jitter.curves.size == 0 and steps.blur.fixed.size > 0
    steps = steps_for((16, 16, 3), np.dtype(np.float32), MixSpec.preset(
        "balanced", block=(4, 4), hardening_format=2))
    assert steps.blur.fixed.size == 0  # floats blur in float64, as format 1


def test_spec_carries_the_format_outside_its_canonical_text():
    spec = MixSpec.preset("balanced", hardening_format=2)
    assert spec.hardening_format == 2
    assert MixSpec.from_dict(spec.to_dict()).hardening_format == 2
    assert spec.canonical() == spec.with_hardening_format(1).canonical()
    assert MixSpec.preset("balanced").to_dict()["hardening_format"] == 2  # decides bytes
    assert "hardening_format" not in MixSpec(prob=1.0, orient="d4").to_dict()  # decides none
    for bad in (3, -1, True, "2"):
        with pytest.raises(BadInputError, match="hardening_format must be one of 1, 2"):
            MixSpec(hardening_format=bad)
    with pytest.raises(BadInputError, match="needs plan_rule 2"):
        MixSpec(jitter=True, plan_rule=1, hardening_format=2)


def test_format_2_is_the_default_except_under_plan_rule_1():
    assert HARDENING_FORMAT == 2
    assert MixSpec().hardening_format == MixSpec.preset("balanced").hardening_format == 2
    assert MixSpec(plan_rule=1).hardening_format == 1
    assert MixSpec.preset("balanced").with_plan_rule(1).hardening_format == 1
    assert MixSpec.from_dict({**MixSpec().to_dict(), "plan_rule": 1}).hardening_format == 1
    assert MixSpec.preset("balanced").with_plan_rule(2).hardening_format == 2
    # where no step computes on values, the format decides no byte
    plain = MixSpec(prob=1.0, orient="d4")
    assert plain.identity() == plain.with_hardening_format(1).identity()
    hardened = MixSpec.preset("balanced")
    assert hardened.identity() != hardened.with_hardening_format(1).identity()


def _write_store(path, images, labels):
    with h5py.File(path, "w") as store:
        store.create_dataset("images", data=images, chunks=(16, *images.shape[1:]))
        store["labels"] = labels
    return path


def test_stores_record_the_format_and_verify_reproduces_it(photo_tiles, key, tmp_path):
    images, labels = photo_tiles
    images, labels = images[:64], labels[:64]
    source = _write_store(tmp_path / "src.h5", images, labels)
    spec = MixSpec.preset("balanced", block=(8, 8))
    for hardening_format in (1, 2):
        mixed = tmp_path / f"format-{hardening_format}.h5"
        fastmix.mix_store(source, mixed, spec=spec.with_hardening_format(hardening_format),
                          key=key, window=32, progress=False)
        with h5py.File(mixed, "r") as store:
            attrs = store["images"].attrs
            if hardening_format == 1:  # stores of format 1 keep the record they had
                assert "fastmix_hardening_format" not in attrs
            else:
                assert int(attrs["fastmix_hardening_format"]) == 2
            assert "hardening_format" not in json.loads(attrs["fastmix_spec"])
            stored = store["images"][()]
        assert np.array_equal(stored, fastmix.mix_array(
            images, labels, spec.with_hardening_format(hardening_format), key, window=32))
        assert fastmix.verify_stores(source, mixed, key).ok
    # The record's MAC covers the format: a store relabelled as format 1 is refused.
    with h5py.File(tmp_path / "format-2.h5", "r+") as store:
        store["images"].attrs["fastmix_hardening_format"] = np.int64(1)
    with pytest.raises(BadInputError, match="edited"):
        fastmix.verify_stores(source, tmp_path / "format-2.h5", key)


def test_a_reversible_store_records_no_format(photo_tiles, key, tmp_path):
    images, labels = photo_tiles
    source = _write_store(tmp_path / "src.h5", images[:32], labels[:32])
    spec = MixSpec(block=(8, 8), orient="d4", prob=1.0, group="window", hardening_format=2)
    fastmix.mix_store(source, tmp_path / "dst.h5", spec=spec, key=key, progress=False)
    with h5py.File(tmp_path / "dst.h5", "r") as store:
        assert "fastmix_hardening_format" not in store["images"].attrs
    fastmix.unmix_store(tmp_path / "dst.h5", tmp_path / "back.h5", key=key, progress=False)
    with h5py.File(tmp_path / "back.h5", "r") as store:
        assert np.array_equal(store["images"][()], images[:32])


def test_a_plan_cache_tells_the_formats_apart(photo_tiles, key):
    # one cache serves mix_batch, MatchHardening and RemixEachEpoch for a whole process
    from fastmix.mixing import PlanCache, mix_cached

    images, labels = photo_tiles
    images, labels = images[:24], labels[:24]
    spec = MixSpec.preset("balanced", block=(8, 8), hardening_format=1)
    cache = PlanCache()
    for hardening_format in (1, 2, 1):
        chosen = spec.with_hardening_format(hardening_format)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fastmix.FastmixWarning)
            cached = mix_cached(images, labels, chosen, key, cache)
        assert np.array_equal(cached, _quiet_mix(images, labels, chosen, key))
    assert spec.identity() != spec.with_hardening_format(2).identity()
    assert spec.canonical() == spec.with_hardening_format(2).canonical()


@pytest.mark.parametrize("hardening_format", [1, 2])
def test_a_journal_header_writes_the_format_down(hardening_format):
    # a later default must not reinterpret an interrupted run's journal
    from fastmix.store.durable.journal import RunHeader

    spec = MixSpec.preset("balanced").with_hardening_format(hardening_format)
    header = RunHeader(operation="mix", images="images", labels="labels", spec=spec,
                       window=64, count=128, windows=2, key_check="00", unpartnered=0,
                       paired=0, shape=(128, 8, 8, 3), dtype="|u1")
    text = json.loads(header.to_json())
    assert text["hardening_format"] == hardening_format
    assert RunHeader.from_json(header.to_json(), "j").spec.hardening_format == hardening_format
    del text["hardening_format"]  # a journal written before format 2 existed
    assert RunHeader.from_json(json.dumps(text).encode(), "j").spec.hardening_format == 1
