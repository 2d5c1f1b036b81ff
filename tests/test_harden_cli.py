"""The ``--privacy`` preset and hardening flags, parsed as ``fastmix mix`` parses them."""

import argparse
import warnings

import numpy as np
import pytest

from fastmix import BadInputError, MixSpec
from fastmix.cli.commands import mix
from fastmix.cli.hardening_options import spec_from_arguments
from fastmix.spec import DEFAULT_PRESET, leaks


def parse(*flags):
    parser = argparse.ArgumentParser()
    mix.register(parser)
    return spec_from_arguments(parser.parse_args(["src.h5", "dst.h5", "--key-file", "k",
                                                  *flags]))


def test_no_flag_gives_the_default_preset():
    spec, line, found = parse()
    assert spec == MixSpec.preset(DEFAULT_PRESET)
    assert line.startswith(f"privacy {DEFAULT_PRESET}: permute")
    assert found == []


def test_balanced_is_printed_with_its_parameters():
    spec, line, found = parse("--privacy", "balanced", "--block", "5x5")
    assert spec == MixSpec.preset("balanced", block=(5, 5))
    for fragment in ("block 5x5", "groups of the whole label in a window", "prob 1",
                     "orientation d4", "jitter brightness +-0.1",
                     "seam blur sigma 1 px", "one-way"):
        assert fragment in line
    assert found == []


def test_the_default_preset_sets_its_grid_and_block_or_grid_override_it():
    spec, line, _ = parse()
    assert spec.grid == MixSpec.preset(DEFAULT_PRESET).grid and f"grid {spec.grid[0]}x" in line
    assert parse("--grid", "2x8")[0].grid == (2, 8)
    assert parse("--privacy", "strong", "--block", "96x24")[0].block == (96, 24)


def test_fast_is_the_paper_and_reversible():
    spec, line, _ = parse("--privacy", "fast")
    assert spec.canonical() == MixSpec().canonical()
    assert "no hardening" in line and "reversible with the key" in line


def test_flags_override_the_preset():
    spec, line, _ = parse("--privacy", "strong", "--orient", "flip", "--jitter", "0.05,0.1,0",
                          "--seam-blur", "0", "--group", "window", "--prob", "0.9")
    assert (spec.orient, spec.jitter, spec.seam_blur, spec.group, spec.prob) == \
        ("flip", (0.05, 0.1, 0.0), 0.0, "window", 0.9)
    assert "with overrides" in line and "whole label" in line


@pytest.mark.parametrize("flags, fragment", [
    (("--privacy", "balanced", "--donors", "4"), "groups of 5 are small"),
    (("--privacy", "balanced", "--group", "3"), "groups of 3 are small"),
    (("--privacy", "strong", "--prob", "0.5"), "prob 0.5 leaves blocks in place"),
    (("--privacy", "balanced", "--mode", "paper"), "paper mode with hardening"),
])
def test_leaky_combinations_warn(flags, fragment):
    _, _, found = parse(*flags)
    assert any(fragment in message for message in found)


def test_unhardened_specs_do_not_warn():
    assert leaks(MixSpec(donors=2, prob=0.3)) == []


@pytest.mark.parametrize("flags, fragment", [
    (("--jitter", "loud"), "--jitter must be none, default or three amplitudes"),
    (("--seam-blur", "wide"), "--seam-blur must be a sigma"),
    (("--group", "0"), "--group must be a positive integer"),
    (("--group", "1"), "group must be at least 2"),
    (("--seam-blur", "-2"), "seam_blur must be a sigma"),
])
def test_bad_flags_are_one_clear_error(flags, fragment):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(BadInputError, match=fragment):
            parse(*flags)


def _fastmix(*arguments, cwd):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "fastmix.cli", *arguments], cwd=cwd,
                          capture_output=True, text=True)


def test_mix_command_with_a_preset_end_to_end(tmp_path, photo_tiles):
    h5py = pytest.importorskip("h5py")
    if "--privacy" not in _fastmix("mix", "--help", cwd=tmp_path).stdout:
        pytest.skip("fastmix mix does not offer --privacy yet")
    images, labels = photo_tiles
    with h5py.File(tmp_path / "src.h5", "w") as store:
        store["images"] = images
        store["labels"] = labels
    mixed = _fastmix("mix", "src.h5", "dst.h5", "--key-file", "key", "--new-key",
                     "--privacy", "balanced", "--block", "8x8", cwd=tmp_path)
    assert mixed.returncode == 0, mixed.stderr
    assert "privacy balanced: permute" in mixed.stdout + mixed.stderr
    with h5py.File(tmp_path / "dst.h5", "r") as store:
        assert not bool(store["images"].attrs["fastmix_reversible"])
        assert '"seam_blur":1.0' in str(store["images"].attrs["fastmix_spec"])
        assert not np.array_equal(store["images"][()], images)
    refused = _fastmix("unmix", "dst.h5", "back.h5", "--key-file", "key", cwd=tmp_path)
    assert refused.returncode == 2
    assert len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "back.h5").exists()
