"""Hardening options of MixSpec: validation, canonical text, presets, reversibility."""

import pytest

from fastmix import BadInputError, MixSpec


def test_canonical_of_an_unhardened_spec_is_unchanged():
    literal = '{"donors":10,"grid":[2,8],"mode":"permute","prob":0.5,"rounds":1}'
    assert MixSpec().canonical() == literal
    assert MixSpec(orient="none", jitter=None, seam_blur=0, group=None).canonical() == literal
    assert MixSpec.preset("fast").canonical() == literal


def test_hardened_fields_appear_in_canonical_and_round_trip():
    spec = MixSpec(block=(5, 5), orient="d4", jitter=True, seam_blur=1, group="window")
    assert spec.canonical() == (
        '{"block":[5,5],"donors":10,"group":"window","jitter":[0.1,0.2,0.2],"mode":"permute",'
        '"orient":"d4","prob":0.5,"rounds":1,"seam_blur":1.0}')
    assert MixSpec.from_dict(spec.to_dict()) == spec
    assert MixSpec.from_dict(MixSpec(group=7).to_dict()).group_size(100) == 7


@pytest.mark.parametrize("spec, reversible", [
    (MixSpec(), True),
    (MixSpec(orient="d4"), True),
    (MixSpec(orient="flip", group="window"), True),
    (MixSpec(jitter=True), False),
    (MixSpec(seam_blur=0.5), False),
    (MixSpec(mode="paper", orient="flip"), False),
])
def test_reversible(spec, reversible):
    assert spec.reversible is reversible


def test_group_size():
    assert MixSpec(donors=4).group_size(50) == 5
    assert MixSpec(donors=4, group=11).group_size(50) == 11
    assert MixSpec(group="window").group_size(50) == 50


def test_presets():
    fast = MixSpec.preset("fast")
    assert (fast.donors, fast.prob, fast.hardened, fast.grid) == (10, 0.5, False, (2, 8))
    balanced = MixSpec.preset("balanced")
    assert balanced.grid == (12, 12) and balanced.block_shape(192, 192) == (16, 16)
    assert balanced.group_size(1000) == 1000 and balanced.prob == 1.0
    assert (balanced.orient, balanced.jitter, balanced.seam_blur) == ("d4", (0.1, 0.2, 0.2), 1.0)
    assert not balanced.reversible
    strong = MixSpec.preset("strong", prob=0.9)
    assert strong.grid == (24, 24) and strong.block_shape(192, 192) == (8, 8)
    assert strong.group == "window"
    assert strong.prob == 0.9 and strong.hardened


def test_overrides_replace_the_presets_geometry_and_groups():
    assert MixSpec.preset("balanced", block=(5, 5)).block == (5, 5)
    assert MixSpec.preset("balanced", block=(5, 5)).grid is None
    assert MixSpec.preset("strong", grid=(2, 8)).grid == (2, 8)
    assert MixSpec.preset("balanced", donors=24).group_size(1000) == 25
    assert MixSpec.preset("balanced", donors=24, group=13).group_size(1000) == 13
    assert MixSpec.preset("balanced", group=11).group_size(1000) == 11


@pytest.mark.parametrize("kwargs, fragment", [
    ({"orient": "rotate"}, "orient must be one of none, flip, d4"),
    ({"jitter": (0.1, 0.2)}, "three amplitudes"),
    ({"jitter": (0.1, 0.2, 1.5)}, "three amplitudes"),
    ({"jitter": (0, 0, 0)}, "all zero"),
    ({"jitter": "loud"}, "three amplitudes"),
    ({"seam_blur": -1}, "seam_blur must be a sigma"),
    ({"seam_blur": float("nan")}, "seam_blur must be a sigma"),
    ({"seam_blur": "1"}, "seam_blur must be a number"),
    ({"group": 1}, "at least 2"),
    ({"group": True}, "group must be an integer"),
    ({"group": "label"}, "group must be an integer"),
    ({"group": 5, "mode": "paper"}, "permute mode only"),
])
def test_bad_hardening_is_refused_clearly(kwargs, fragment):
    with pytest.raises(BadInputError, match=fragment):
        MixSpec(**kwargs)


def test_unknown_preset():
    with pytest.raises(BadInputError, match="fast, balanced, strong"):
        MixSpec.preset("paranoid")


def test_jitter_text_and_default():
    assert MixSpec(jitter="0.1,0.3,0").jitter == (0.1, 0.3, 0.0)
    assert MixSpec(jitter="default").jitter == (0.1, 0.2, 0.2)
    assert MixSpec(jitter=False).jitter is None
