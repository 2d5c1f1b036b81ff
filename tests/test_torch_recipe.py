"""The training recipe in ``fastmix.torch`` (issue 22): test-time matching and re-mixing.

Real torch tensors, real photographs, real HDF5 stores; the references are ``mix_array`` and
``mix_batch`` themselves, so a matching or a re-mixing that drifts from them fails.
"""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest

import fastmix
from fastmix.errors import BadInputError, BadInputTypeError, FastmixWarning
from fastmix.mixing import mix_array
from fastmix.store import read_mix_record

torch = pytest.importorskip("torch", reason="torch is in the test extra: pip install -e '.[test]'")
pytest.importorskip("skimage.data")

from fastmix.samples import photo_task  # noqa: E402
from fastmix.torch import (  # noqa: E402
    VIEW_STRIDE,
    LabelGroupedBatches,
    MatchHardening,
    RemixEachEpoch,
    mix_batch,
    predict_matched,
)

BALANCED = fastmix.MixSpec.preset("balanced", grid=(4, 4))


@pytest.fixture(scope="module")
def task():
    images, labels = photo_task(size=24, per_class=3, seed=4)
    return images, labels


def _alone(images, spec, key, first_window):
    """Each image mixed alone (its own call, its own window index): the reference."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FastmixWarning)
        return np.concatenate([mix_array(images[j:j + 1], [5], spec, key,
                                         first_window=first_window + j)
                               for j in range(len(images))])


def _nchw(images):
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)


@pytest.mark.parametrize("view", [0, 3])
def test_matching_is_mix_array_of_each_image_alone(task, key, view):
    images, _ = task
    matching = MatchHardening(BALANCED, key=key)
    matched = matching(_nchw(images[:9]), view=view, index=11)
    assert matched.dtype == torch.uint8 and tuple(matched.shape) == (9, 1, 24, 24)
    expected = _alone(images[:9], BALANCED, key, view * VIEW_STRIDE + 11)
    assert np.array_equal(matched.permute(0, 2, 3, 1).numpy(), expected)
    assert not np.array_equal(expected, images[:9])  # the hardening did change the pixels
    # an image's view does not depend on the batch it comes in
    halves = torch.cat([matching(_nchw(images[:4]), view=view, index=11),
                        matching(_nchw(images[4:9]), view=view, index=15)])
    assert torch.equal(halves, matched)


def test_matching_float_and_channels_last_and_three_dimensions(task, key):
    images, _ = task
    matching = MatchHardening(BALANCED, key=key)
    floats = images[:5].astype(np.float32) / 255
    matched = matching(_nchw(floats), view=1)
    assert matched.dtype == torch.float32
    assert np.array_equal(matched.permute(0, 2, 3, 1).numpy(),
                          _alone(floats, BALANCED, key, VIEW_STRIDE))
    rgb = np.repeat(images[:4], 3, axis=3)
    last = _nchw(rgb).contiguous(memory_format=torch.channels_last)
    matched = matching(last)
    assert matched.is_contiguous(memory_format=torch.channels_last)
    assert np.array_equal(matched.permute(0, 2, 3, 1).numpy(), _alone(rgb, BALANCED, key, 0))
    grey = torch.from_numpy(images[:4, :, :, 0].copy())
    assert np.array_equal(matching(grey).numpy(), _alone(images[:4, :, :, 0], BALANCED, key, 0))


def test_a_seed_gives_the_same_bytes_and_no_seed_a_fresh_key(task):
    batch = _nchw(task[0][:6])
    first = MatchHardening(BALANCED, seed=7)(batch)
    assert torch.equal(first, MatchHardening(BALANCED, seed=7)(batch))
    assert not torch.equal(first, MatchHardening(BALANCED, seed=8)(batch))
    assert not torch.equal(MatchHardening(BALANCED)(batch), MatchHardening(BALANCED)(batch))
    assert "seed" not in repr(MatchHardening(BALANCED, seed=7))


def _model(classes=10):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(24 * 24, classes)).eval()


def test_views_average_the_softmax_and_are_deterministic_for_a_seed(task):
    images, _ = task
    batch, model = _nchw(images), _model()
    probabilities = predict_matched(model, batch, MatchHardening(BALANCED, seed=3), views=3,
                                    batch_size=8)
    assert tuple(probabilities.shape) == (len(images), 10)
    again = predict_matched(model, batch, MatchHardening(BALANCED, seed=3), views=3,
                            batch_size=8)
    assert torch.equal(probabilities, again)
    matching = MatchHardening(BALANCED, seed=3)
    with torch.no_grad():
        expected = sum(torch.softmax(model(matching(batch, view=view).float() / 255), 1)
                       for view in range(3)) / 3
    assert torch.allclose(probabilities, expected, atol=1e-6)
    assert torch.allclose(probabilities.sum(1), torch.ones(len(images)))
    one_view = predict_matched(model, batch, MatchHardening(BALANCED, seed=3), views=1)
    assert not torch.allclose(one_view, probabilities)
    # a spec without hardening has one view: the image itself
    plain = predict_matched(model, batch, MatchHardening(fastmix.MixSpec(), seed=3), views=4)
    with torch.no_grad():
        assert torch.allclose(plain, torch.softmax(model(batch.float() / 255), 1))


def _store(path, images, labels):
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=images)
        file.create_dataset("labels", data=labels)
    return path


def test_matching_built_from_a_store_record(task, key, tmp_path):
    images, labels = task
    _store(tmp_path / "plain.h5", images, labels)
    fastmix.mix_store(tmp_path / "plain.h5", tmp_path / "mixed.h5", spec=BALANCED, key=key,
                      progress=False)
    from_store = MatchHardening(tmp_path / "mixed.h5", seed=1)
    assert from_store.spec == BALANCED
    with h5py.File(tmp_path / "mixed.h5", "r") as file:
        record = read_mix_record(file["images"])
    from_record = MatchHardening(record, seed=1)
    batch = _nchw(images[:5])
    assert torch.equal(from_store(batch), from_record(batch))
    assert torch.equal(from_store(batch), MatchHardening(BALANCED, seed=1)(batch))
    with pytest.raises(BadInputError, match="carries no fastmix record") as refused:
        MatchHardening(tmp_path / "plain.h5")
    assert "\n" not in str(refused.value) and "plain.h5" in str(refused.value)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda batch: MatchHardening(BALANCED)(batch.numpy()), BadInputTypeError, "torch.Tensor"),
    (lambda batch: MatchHardening(BALANCED, key=fastmix.Key.generate(), seed=1), BadInputError,
     "not both"),
    (lambda batch: MatchHardening("spec"), BadInputError, "spec"),
    (lambda batch: MatchHardening(42), BadInputTypeError, "MixSpec"),
    (lambda batch: MatchHardening(BALANCED)(batch, view=-1), BadInputError, "view"),
    (lambda batch: predict_matched(_model(), batch, MatchHardening(BALANCED), views=0),
     BadInputError, "views"),
    (lambda batch: predict_matched(_model(), batch, BALANCED), BadInputTypeError, "matching"),
    (lambda batch: LabelGroupedBatches([0, 0, 1, 1], 4, per_label=1), BadInputError,
     "per_label"),
    (lambda batch: RemixEachEpoch(BALANCED, fastmix.Key.generate(), 3)(batch, [0] * 4, 0, 3),
     BadInputError, "step"),
])
def test_bad_input(task, call, error, message):
    with pytest.raises(error, match=message):
        call(_nchw(task[0][:4]))


def test_label_grouped_batches_deal_each_label_in_runs(task):
    labels = np.repeat(np.arange(5), [9, 7, 4, 5, 2])
    sampler = LabelGroupedBatches(labels, 8, per_label=3, seed=2)
    batches = sampler.batches(0)
    assert len(batches) == len(sampler) == len(list(sampler))
    assert sorted(index for batch in batches for index in batch) == list(range(len(labels)))
    for batch in batches:
        counts = np.bincount(labels[batch])
        assert counts[counts > 0].min() >= 2  # a remainder of one joined its label's run
    assert sampler.batches(0) == LabelGroupedBatches(labels, 8, per_label=3, seed=2).batches(0)
    assert sampler.batches(1) != batches
    sampler.set_epoch(1)
    assert list(sampler) == sampler.batches(1)
    dropping = LabelGroupedBatches(labels, 8, per_label=3, seed=2, drop_last=True)
    assert len(dropping) == len(list(dropping)) == len(batches) - 1


def test_remix_each_epoch_changes_the_bytes_and_repeats_for_the_same_step(task, key):
    images, labels = task
    sampler = LabelGroupedBatches(labels, 12, per_label=3, seed=0)
    remix = RemixEachEpoch(BALANCED, key, len(sampler))
    batch = sampler.batches(0)[1]
    pixels, targets = _nchw(images[batch]), torch.from_numpy(labels[batch])
    epoch0 = remix(pixels, targets, 0, 1)
    assert torch.equal(epoch0, remix(pixels, targets, 0, 1))
    assert torch.equal(epoch0, mix_batch(pixels, targets, BALANCED, key, len(sampler) * 0 + 1))
    epoch1 = remix(pixels, targets, 1, 1)
    assert torch.equal(epoch1, mix_batch(pixels, targets, BALANCED, key, len(sampler) + 1))
    assert not torch.equal(epoch0, epoch1)
    assert not torch.equal(epoch0, remix(pixels, targets, 0, 2))


def test_remixed_batches_move_blocks_between_images_of_a_label(task, key):
    """Without hardening every mixed block is a block of a same-label image, often another's."""
    images, labels = task
    spec = fastmix.MixSpec(grid=(4, 4), prob=1.0, group="window")
    sampler = LabelGroupedBatches(labels, 12, per_label=3, seed=0)
    batch = sampler.batches(0)[0]
    mixed = RemixEachEpoch(spec, key, len(sampler))(_nchw(images[batch]), labels[batch], 0, 0)
    mixed = mixed.permute(0, 2, 3, 1).numpy()
    moved = 0
    for i, index in enumerate(batch):
        for top in range(0, 24, 6):
            for left in range(0, 24, 6):
                block = mixed[i, top:top + 6, left:left + 6]
                sources = [other for other in batch if labels[other] == labels[index] and
                           np.array_equal(images[other, top:top + 6, left:left + 6], block)]
                assert sources  # from an image of the same label, same place
                moved += index not in sources
    assert moved > len(batch) * 16 // 2
