"""The sample tasks of ``fastmix.samples``: shapes, determinism, no shortcut in grey levels."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage.data")

from fastmix.errors import BadInputError
from fastmix.samples import TASK_PHOTOS, face_task, photo_task


def test_photo_task_shape_labels_and_determinism():
    images, labels = photo_task(size=48, per_class=4, seed=3)
    assert images.shape == (4 * len(TASK_PHOTOS), 48, 48, 1) and images.dtype == np.uint8
    assert images.flags.c_contiguous
    assert np.array_equal(np.bincount(labels), np.full(len(TASK_PHOTOS), 4))
    again, _ = photo_task(size=48, per_class=4, seed=3)
    assert np.array_equal(images, again)
    other, _ = photo_task(size=48, per_class=4, seed=4)
    assert not np.array_equal(images, other)
    state = np.random.get_state()[1].copy()  # noqa: NPY002 - checking it is untouched
    photo_task(size=16, per_class=1)
    assert np.array_equal(np.random.get_state()[1], state)  # noqa: NPY002


def test_photo_task_grey_levels_alone_do_not_tell_the_classes_apart():
    """Each crop is equalised, so its histogram (all a 1x1 shuffle keeps) is near uniform.

    A classifier on the 32-bin histograms scores 0.12-0.13 over seeds 0 and 1 (chance 0.10).
    """
    model_selection = pytest.importorskip("sklearn.model_selection")
    linear_model = pytest.importorskip("sklearn.linear_model")
    images, labels = photo_task(size=64, per_class=30, seed=0)
    histograms = np.stack([np.bincount(image.ravel() // 8, minlength=32) for image in images])
    shares = histograms / histograms.sum(axis=1, keepdims=True)
    assert np.median(np.abs(shares * 32 - 1).max(axis=1)) < 1.0
    accuracy = model_selection.cross_val_score(
        linear_model.LogisticRegression(max_iter=3000), shares * 32, labels, cv=3).mean()
    assert accuracy < 0.25


def test_face_task():
    images, labels = face_task(size=50)
    assert images.shape == (200, 50, 50, 1) and images.dtype == np.uint8
    assert np.array_equal(np.bincount(labels), [100, 100])
    assert images.std() > 20


@pytest.mark.parametrize("call", [lambda: photo_task(size=4), lambda: photo_task(per_class=0),
                                  lambda: photo_task(scale=(0.5, 0.2)),
                                  lambda: face_task(size=2)])
def test_bad_task_arguments(call):
    with pytest.raises(BadInputError):
        call()
