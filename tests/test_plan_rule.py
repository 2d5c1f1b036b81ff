"""Plan rule 1 (fastmix 0.1.0) stays exact: its stores still unmix bit for bit.

The digests below were taken from fastmix 0.1.0 (before plan rule 2) on the same inputs, so
the frozen rule-1 path is proved to give 0.1.0's bytes; a store made with it and stripped of
the attributes 0.1.0 did not write is then a 0.1.0 store.
"""

import hashlib
import warnings

import h5py
import numpy as np
import pytest

import fastmix
from fastmix import MixSpec

KEY = fastmix.Key.from_hex("5a" * 32)
# sha256 (first 24 hex digits) of mix_array(IMAGES, LABELS, spec, KEY, window=50), fastmix 0.1.0
FROZEN = {
    "permute-default": ("0acf641b55d067ad6591150e", MixSpec(block=(4, 4))),
    "permute-d3-p1": ("95dc29761071362e8789e0ee", MixSpec(block=(4, 4), donors=3, prob=1.0)),
    "permute-group5-r2": ("87fa3832627119cbe40ff080",
                          MixSpec(block=(5, 3), group=5, prob=0.7, rounds=2)),
    "orient-flip": ("a747a9a5aa5caad91439a63f",
                    MixSpec(block=(4, 4), orient="flip", prob=1.0, donors=3)),
    # the balanced preset of 0.1.0: groups of 11, d4, jitter, seam blur 1
    "balanced": ("305a890161626a8ad1169a2f",
                 MixSpec(block=(4, 4), prob=1.0, orient="d4", jitter=True, seam_blur=1.0)),
    "paper": ("8be711fbd5458daaa5388219", MixSpec(block=(4, 4), mode="paper", donors=3)),
    "paper-r2": ("af7032066c35d0c02b863444",
                 MixSpec(grid=(3, 5), mode="paper", rounds=2, prob=0.9)),
}


def inputs():
    images = np.random.default_rng(20261129).integers(0, 256, (150, 16, 16, 3), dtype=np.uint8)
    labels = np.random.default_rng(11).integers(0, 4, 150)
    return images, labels


def digest(array):
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:24]


def mixed(spec):
    images, labels = inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.FastmixWarning)
        return fastmix.mix_array(images, labels, spec, KEY, window=50)


@pytest.mark.parametrize("name", sorted(FROZEN))
def test_rule_one_gives_the_bytes_of_0_1_0(name):
    frozen, spec = FROZEN[name]
    assert digest(mixed(spec.with_plan_rule(1))) == frozen


@pytest.mark.parametrize("name", ["paper", "paper-r2"])
def test_paper_mode_is_unchanged_by_the_rule(name):
    frozen, spec = FROZEN[name]
    assert spec.plan_rule == 2
    assert digest(mixed(spec)) == frozen


def test_rule_two_changes_only_the_groups():
    frozen, spec = FROZEN["permute-d3-p1"]
    assert digest(mixed(spec)) != frozen


def make_0_1_0_store(tmp_path, name):
    """Return a store as fastmix 0.1.0 wrote it: rule-1 bytes, format 1, no plan rule attribute."""
    images, labels = inputs()
    source = tmp_path / "in.h5"
    with h5py.File(source, "w") as file:
        file.create_dataset("images", data=images, chunks=(10, 16, 16, 3))
        file["labels"] = labels
    frozen, spec = FROZEN[name]
    target = tmp_path / "old.h5"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.FastmixWarning)
        fastmix.mix_store(source, target, spec=spec.with_plan_rule(1), key=KEY, window=50,
                          progress=False)
    with h5py.File(target, "r+") as file:
        dataset = file["images"]
        assert digest(dataset[()]) == frozen
        assert int(dataset.attrs["fastmix_plan_rule"]) == 1
        del dataset.attrs["fastmix_plan_rule"]
        del dataset.attrs["fastmix_record_mac"]  # 0.1.0 wrote no record MAC
        dataset.attrs["fastmix_format_version"] = np.int64(1)
    return images, target


@pytest.mark.parametrize("name", ["permute-default", "permute-d3-p1", "orient-flip"])
def test_a_0_1_0_store_unmixes_bit_for_bit(tmp_path, name):
    images, old = make_0_1_0_store(tmp_path, name)
    with pytest.raises(fastmix.BadInputError, match=r"no record MAC.*trust_unsealed=True"):
        fastmix.unmix_store(old, tmp_path / "refused.h5", key=KEY, progress=False)
    with pytest.warns(fastmix.FastmixWarning, match="no record MAC"):
        fastmix.unmix_store(old, tmp_path / "back.h5", key=KEY, progress=False,
                            trust_unsealed=True)
    with h5py.File(tmp_path / "back.h5") as file:
        assert np.array_equal(file["images"][()], images)
    with pytest.warns(fastmix.FastmixWarning, match="no record MAC"):
        fastmix.unmix_store(old, key=KEY, in_place=True, progress=False, trust_unsealed=True)
    with h5py.File(old) as file:
        assert np.array_equal(file["images"][()], images)


def test_new_stores_record_rule_two(tmp_path):
    images, labels = inputs()
    with h5py.File(tmp_path / "in.h5", "w") as file:
        file.create_dataset("images", data=images, chunks=(10, 16, 16, 3))
        file["labels"] = labels
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.FastmixWarning)
        fastmix.mix_store(tmp_path / "in.h5", tmp_path / "out.h5", spec=MixSpec(block=(4, 4)),
                          key=KEY, window=50, progress=False)
    with h5py.File(tmp_path / "out.h5") as file:
        attrs = file["images"].attrs
        assert int(attrs["fastmix_plan_rule"]) == 2
        assert int(attrs["fastmix_format_version"]) == 2
        assert "plan_rule" not in attrs["fastmix_spec"]
        assert np.array_equal(file["images"][()], mixed(MixSpec(block=(4, 4))))
