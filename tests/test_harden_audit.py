"""The audit adapted to hardening (a Kerckhoffs attacker) on real LFW faces, 5x5 blocks."""

import numpy as np
import pytest

import fastmix
from fastmix import MixSpec

pytest.importorskip("sklearn")
audit = pytest.importorskip("fastmix.audit")
adaptive = pytest.importorskip("fastmix.audit.adaptive")


@pytest.fixture(scope="module")
def lfw():
    data = pytest.importorskip("skimage.data")
    images = data.lfw_subset()
    return images, np.r_[np.zeros(100, int), np.ones(100, int)]


def attack(lfw, spec, scorer):
    images, labels = lfw
    key = fastmix.Key.from_hex("0f" * 32)
    mixed = fastmix.mix_array(images, labels, spec, key)
    return audit.audit_arrays(images, mixed, labels, spec, key=key, scorer=scorer,
                              groups_known=True, seed=0)


BALANCED = MixSpec.preset("balanced", block=(5, 5))


@pytest.fixture(scope="module")
def balanced_adapted(lfw):
    return attack(lfw, BALANCED, adaptive.scorer_for(BALANCED, 25, 25))


def test_adapted_attack_restores_clearly_more_than_a_plain_one_on_balanced(lfw,
                                                                           balanced_adapted):
    plain = attack(lfw, BALANCED, audit.EdgeScorer())
    assert balanced_adapted.restored_fraction > plain.restored_fraction + 0.04
    assert balanced_adapted.advantage > plain.advantage + 0.05


def test_adapted_attack_sees_through_seam_blur(lfw):
    spec = MixSpec(block=(5, 5), prob=1.0, seam_blur=1.0)
    plain = attack(lfw, spec, audit.EdgeScorer())
    adapted = attack(lfw, spec, adaptive.scorer_for(spec, 25, 25))
    assert adapted.restored_fraction > plain.restored_fraction + 0.1
    assert adapted.advantage > plain.advantage + 0.1


def test_balanced_preset_protects_lfw_faces(balanced_adapted):
    assert balanced_adapted.displaced_fraction > 0.95
    assert balanced_adapted.advantage < 0.2
    assert balanced_adapted.reidentified_fraction < 0.2


def test_scorer_follows_the_spec():
    scorer = adaptive.scorer_for(MixSpec.preset("balanced", block=(5, 5)), 25, 25)
    assert (scorer.orientations, scorer.skip, scorer.offset_invariant) == ("d4", 1, True)
    ragged = adaptive.scorer_for(MixSpec(block=(10, 10), orient="d4", seam_blur=2.5), 25, 25)
    assert (ragged.orientations, ragged.skip, ragged.offset_invariant) == ("flip", 3, False)
    assert type(adaptive.scorer_for(MixSpec(), 25, 25)) is audit.EdgeScorer
    assert adaptive.attack_donors(MixSpec(group="window"), 40) == 39
    assert adaptive.attack_donors(MixSpec(donors=4), 40) == 4
    options = adaptive.audit_options(MixSpec.preset("strong", block=(5, 5)), 25, 25,
                                     key_given=True)
    assert options["groups_known"] and options["scorer"].offset_invariant
    assert not adaptive.audit_options(MixSpec(), 25, 25, key_given=False)["groups_known"]
