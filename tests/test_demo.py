"""``fastmix demo``: the whole path from nothing, in a real process."""

from __future__ import annotations

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
from test_cli_support import run_cli

from fastmix.demo import run_demo
from fastmix.errors import BadInputError
from fastmix.keys import Key
from fastmix.spec import DEFAULT_PRESET, MixSpec
from fastmix.store.hdf5.record import read_mix_record


def test_demo_runs_end_to_end(tmp_path):
    pytest.importorskip("skimage", reason="the demo's sample images come with scikit-image")
    result = run_cli("demo", "--out", "demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = tmp_path / "demo"
    for name in ("source.h5", "mixed-default.h5", "mixed-reversible.h5", "restored.h5",
                 "preview.png", "preview-reversible.png", "demo.key"):
        assert (out / name).is_file(), name
    assert "bit for bit" in result.stdout and "images/s" in result.stdout
    # Both specs are shown: the preset fastmix mix runs, one-way, beside the reversible one.
    lines = result.stdout.splitlines()
    default = next(line for line in lines if "mixed-default.h5" in line and "mixed " in line)
    reversible = next(line for line in lines if "mixed-reversible.h5" in line)
    assert f"default preset {DEFAULT_PRESET}" in default
    assert MixSpec.preset(DEFAULT_PRESET).reversible == ("one-way" not in default)
    assert "reversible with the key" in reversible
    assert "round trip of the reversible store" in result.stdout
    assert "demo.key" in result.stdout
    key = Key.load(out / "demo.key")
    assert key.hex() not in result.stdout + result.stderr
    with h5py.File(out / "source.h5", "r") as source:
        names = list(source["labels"].attrs["class_names"])
        count = len(source["images"])
        assert source["images"].shape[1:] == (64, 64, 3)
    assert names == sorted(["face", "non-face", "astronaut", "coffee", "chelsea", "rocket"])
    for name in ("default", "reversible"):
        with h5py.File(out / f"mixed-{name}.h5", "r") as mixed, \
                h5py.File(out / "source.h5", "r") as source:
            assert not np.array_equal(mixed["images"][()], source["images"][()])
    # The default store is mixed with exactly the spec fastmix mix runs by default.
    with h5py.File(out / "mixed-default.h5", "r") as mixed:
        recorded = read_mix_record(mixed["images"])
    assert recorded.spec == MixSpec.preset(DEFAULT_PRESET)
    preview = iio.imread(out / "preview.png")
    assert preview.ndim == 3 and preview.shape[2] == 3 and preview.shape[0] > 6 * 128
    exported = sum(len(list(folder.iterdir())) for folder in (out / "mixed-images").iterdir()
                   if folder.is_dir())
    assert exported == count


def test_demo_never_deletes_a_folder_it_did_not_write(tmp_path):
    pytest.importorskip("skimage", reason="the demo's sample images come with scikit-image")
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "mine.txt").write_text("precious")
    with pytest.raises(BadInputError, match="not written by the demo"):
        run_demo(tmp_path, progress=False, echo=False)
    assert (tmp_path / "images" / "mine.txt").read_text() == "precious"
