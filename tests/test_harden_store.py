"""Hardened specs through real HDF5 stores: same bytes as mix_array, honest reversibility."""

import numpy as np
import pytest

import fastmix
from fastmix import BadInputError, MixSpec

h5py = pytest.importorskip("h5py")


def write_store(path, images, labels):
    with h5py.File(path, "w") as store:
        store.create_dataset("images", data=images, chunks=(16, *images.shape[1:]),
                             compression="gzip")
        store["labels"] = labels


@pytest.mark.parametrize("spec", [
    MixSpec.preset("balanced", block=(8, 8)),
    MixSpec(block=(8, 8), orient="d4", prob=1.0, group="window"),
], ids=["balanced", "d4-window"])
def test_store_equals_mix_array_and_records_reversibility(spec, photo_tiles, key, tmp_path):
    images, labels = photo_tiles
    write_store(tmp_path / "src.h5", images, labels)
    fastmix.mix_store(tmp_path / "src.h5", tmp_path / "dst.h5", spec=spec, key=key, window=64,
                      progress=False)
    with h5py.File(tmp_path / "dst.h5", "r") as store:
        stored = store["images"][()]
        attributes = store["images"].attrs
        assert bool(attributes["fastmix_reversible"]) is spec.reversible
        assert MixSpec.from_dict(__import__("json").loads(attributes["fastmix_spec"])) == spec
    assert np.array_equal(stored, fastmix.mix_array(images, labels, spec, key, window=64))
    if spec.reversible:
        fastmix.unmix_store(tmp_path / "dst.h5", tmp_path / "back.h5", key=key, progress=False)
        with h5py.File(tmp_path / "back.h5", "r") as store:
            assert np.array_equal(store["images"][()], images)
    else:
        with pytest.raises(BadInputError, match=r"not reversible|one-way"):
            fastmix.unmix_store(tmp_path / "dst.h5", tmp_path / "back.h5", key=key,
                                progress=False)
        assert not (tmp_path / "back.h5").exists()
