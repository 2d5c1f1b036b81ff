"""The utility check's intervals: always inside the range a share can take, and they cover.

Issue 22 found a 2-fold Student t interval of ``[-0.137, 1.479]`` for an accuracy. The check
now pools the predictions of all folds: Wilson intervals for accuracies and Newcombe's paired
score interval for changes. These tests need no torch: they exercise the interval functions
and the scikit-learn check, which pools the same way.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastmix.audit.utility import (
    CONTROL_SPEC,
    paired_change_interval,
    utility_check,
    wilson_interval,
)
from fastmix.spec import MixSpec


@pytest.mark.parametrize("count", [1, 2, 3, 5, 12, 40])
def test_wilson_intervals_stay_in_0_1_and_hold_the_share(count):
    for hits in range(count + 1):
        low, high = wilson_interval(hits, count)
        assert 0.0 <= low <= hits / count <= high <= 1.0
        assert high - low > 0


def test_paired_intervals_stay_in_bounds_and_hold_the_change():
    rng = np.random.default_rng(3)
    for count in (1, 2, 5, 20, 200):
        for _ in range(50):
            old = rng.random(count) < rng.random()
            new = np.where(rng.random(count) < 0.7, old, rng.random(count) < 0.5)
            low, high = paired_change_interval(new, old)
            change = new.mean() - old.mean()
            assert -1.0 <= low <= change + 1e-12 and change - 1e-12 <= high <= 1.0


def test_paired_intervals_cover_the_true_change():
    """Coverage by simulation: correlated pairs, true accuracies 0.80 and 0.70, 60 images."""
    rng = np.random.default_rng(11)
    covered = 0
    trials = 400
    for _ in range(trials):
        shared = rng.random(60)
        old = shared < 0.80
        new = np.where(rng.random(60) < 0.6, shared < 0.70, rng.random(60) < 0.70)
        low, high = paired_change_interval(new, old)
        covered += low <= -0.10 <= high
    assert covered / trials >= 0.90


def test_a_narrower_interval_with_more_images():
    rng = np.random.default_rng(5)
    old = rng.random(2000) < 0.8
    new = np.where(rng.random(2000) < 0.8, old, rng.random(2000) < 0.6)
    wide = paired_change_interval(new[:100], old[:100])
    narrow = paired_change_interval(new, old)
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 2


def test_the_control_copies_nothing_from_the_spec_measured():
    assert CONTROL_SPEC.block == (1, 1) and CONTROL_SPEC.mode == "permute"
    assert CONTROL_SPEC.prob == 1.0 and CONTROL_SPEC.group == "window"
    assert CONTROL_SPEC.orient == "none" and CONTROL_SPEC.jitter is None


def test_the_pixel_model_check_reports_bounded_intervals_on_two_folds():
    pytest.importorskip("sklearn")
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 12)
    images = (rng.integers(0, 60, (36, 8, 8)) + 60 * labels[:, None, None]).astype(np.uint8)
    result = utility_check(images, labels, MixSpec(block=(4, 4), donors=2, prob=0.5),
                           folds=2, models=("logistic",))
    row = result["models"]["logistic"]
    for name in ("change_interval", "control_change_interval"):
        low, high = row[name]
        assert -1.0 <= low <= high <= 1.0
    assert row["change_interval"][0] <= row["change"] <= row["change_interval"][1]
    assert "Wilson" in result["interval"]
