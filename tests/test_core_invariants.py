"""Invariants of both modes, each checked on its own, on provenance images and real photos."""

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import fastmix
from fastmix.kernels.steps import block_count
from fastmix.plan.groups import group_sizes


def provenance_images(count, height=12, width=16, block=(4, 4)):
    """uint32 images whose every pixel holds (image index, block index), to read provenance."""
    rows, cols = -(-height // block[0]), -(-width // block[1])
    block_ids = np.repeat(np.repeat(np.arange(rows * cols).reshape(rows, cols), block[0], 0),
                          block[1], 1)[:height, :width]
    return (np.arange(count)[:, None, None] * 1000 + block_ids[None]).astype(np.uint32)


def sources(mixed, block):
    """Source image of every output block, read back from provenance images."""
    corner = mixed[:, ::block[0], ::block[1]]
    return (corner // 1000).reshape(len(mixed), -1)


def block_bytes(images, block):
    count, height, width = images.shape[:3]
    out = []
    for top in range(0, height, block[0]):
        for left in range(0, width, block[1]):
            out.append([images[i, top:top + block[0], left:left + block[1]].tobytes()
                        for i in range(count)])
    return out  # [position][image]


LABELS = np.repeat(np.arange(4), 30)[np.random.default_rng(3).permutation(120)]


@pytest.mark.parametrize("rounds", [1, 3])
def test_permute_keeps_the_multiset_of_blocks_per_label_and_position(photo_tiles, key, rounds):
    images, labels = photo_tiles
    spec = fastmix.MixSpec(block=(8, 8), donors=4, prob=0.7, rounds=rounds)
    mixed = fastmix.mix_array(images, labels, spec, key)
    before, after = block_bytes(images, (8, 8)), block_bytes(mixed, (8, 8))
    for position in range(len(before)):
        for label in np.unique(labels):
            chosen = np.flatnonzero(labels == label)
            assert sorted(before[position][i] for i in chosen) == \
                sorted(after[position][i] for i in chosen)


@pytest.mark.parametrize("donors", [1, 2, 4, 10])
def test_permute_with_prob_one_moves_every_block(key, donors):
    images = provenance_images(120)
    source = sources(fastmix.mix_array(images, LABELS, fastmix.MixSpec(
        block=(4, 4), donors=donors, prob=1.0), key), (4, 4))
    assert not np.any(source == np.arange(120)[:, None])
    assert np.all(LABELS[source] == LABELS[:, None])


def test_permute_groups_have_donors_plus_one_images(key):
    images = provenance_images(120)
    source = sources(fastmix.mix_array(images, LABELS, fastmix.MixSpec(
        block=(4, 4), donors=4, prob=1.0), key), (4, 4))
    component = list(range(120))

    def root(i):
        while component[i] != i:
            i = component[i]
        return i

    for i, row in enumerate(source.tolist()):
        for j in row:
            component[root(i)] = root(j)
    sizes = np.bincount([root(i) for i in range(120)])
    # Each label has 30 images: six groups of exactly five exchange blocks among themselves.
    assert sorted(sizes[sizes > 0].tolist()) == [5] * 24


@pytest.mark.filterwarnings("ignore::fastmix.FastmixWarning")
@pytest.mark.parametrize("rounds", [1, 2, 5])
@pytest.mark.parametrize("window", [None, 17])
def test_unmix_restores_exactly(photo_tiles, key, rounds, window):
    images, labels = photo_tiles
    spec = fastmix.MixSpec(block=(5, 7), donors=3, prob=0.8, rounds=rounds)
    mixed = fastmix.mix_array(images, labels, spec, key, window=window)
    assert not np.array_equal(mixed, images)
    np.testing.assert_array_equal(
        fastmix.unmix_array(mixed, labels, spec, key, window=window), images)


def test_paper_blocks_come_from_at_most_donors_same_label_images(key):
    images = provenance_images(120)
    spec = fastmix.MixSpec(block=(4, 4), donors=3, prob=0.9, mode="paper")
    source = sources(fastmix.mix_array(images, LABELS, spec, key), (4, 4))
    for i, row in enumerate(source):
        donors = set(row.tolist()) - {i}
        assert len(donors) <= 3
        assert all(LABELS[d] == LABELS[i] for d in donors)
    assert np.any(source != np.arange(120)[:, None])


def test_paper_reads_sources_from_the_input_not_from_mixed_output(key):
    images = provenance_images(120)
    spec = fastmix.MixSpec(block=(4, 4), donors=3, prob=1.0, mode="paper")
    mixed = fastmix.mix_array(images, LABELS, spec, key)
    # Every output block is an input block at the same position: (image, block) ids intact.
    assert np.all(mixed % 1000 == images % 1000)
    assert np.all(np.isin(mixed // 1000, np.arange(120)))


@pytest.mark.parametrize("mode", ["permute", "paper"])
@pytest.mark.parametrize("prob", [0.1, 0.5, 0.9])
def test_fraction_of_mixed_blocks_matches_prob(key, mode, prob):
    count = 600
    labels = np.repeat(np.arange(6), 100)
    images = provenance_images(count, 16, 16, (2, 2))
    source = sources(fastmix.mix_array(images, labels, fastmix.MixSpec(
        block=(2, 2), prob=prob, mode=mode), key), (2, 2))
    moved = source != np.arange(count)[:, None]
    positions = source.size
    if mode == "paper":
        # A mixed block always comes from a donor, never from the image itself.
        expected = prob
    else:
        expected = prob  # whole groups move together; every member's block leaves
    standard_error = np.sqrt(prob * (1 - prob) / (positions / (11 if mode == "permute" else 1)))
    assert abs(moved.mean() - expected) < 5 * standard_error


def test_same_key_same_bytes_other_key_other_bytes(photo_tiles):
    images, labels = photo_tiles
    spec = fastmix.MixSpec(block=(8, 8))
    first = fastmix.Key.generate()
    again = fastmix.Key.from_hex(first.hex())
    other = fastmix.Key.generate()
    np.testing.assert_array_equal(fastmix.mix_array(images, labels, spec, first),
                                  fastmix.mix_array(images, labels, spec, again))
    assert not np.array_equal(fastmix.mix_array(images, labels, spec, first),
                              fastmix.mix_array(images, labels, spec, other))


def test_other_spec_or_window_gives_other_bytes(photo_tiles, key):
    images, labels = photo_tiles
    base = fastmix.mix_array(images, labels, fastmix.MixSpec(block=(8, 8)), key)
    assert not np.array_equal(
        base, fastmix.mix_array(images, labels, fastmix.MixSpec(block=(8, 8), donors=9), key))


_THREAD_SCRIPT = """
import hashlib, sys, warnings
import numpy as np, numba, fastmix
assert numba.get_num_threads() == int(sys.argv[1])
rng = np.random.default_rng(5)
images = rng.integers(0, 256, (3000, 24, 24, 3), dtype=np.uint8)
labels = rng.integers(0, 7, 3000)
key = fastmix.Key.from_hex("ab" * 32)
digest = hashlib.sha256()
for mode in ("permute", "paper"):
    spec = fastmix.MixSpec(block=(8, 6), donors=5, prob=0.6, rounds=2, mode=mode)
    digest.update(fastmix.mix_array(images, labels, spec, key, window=1000).tobytes())
print(digest.hexdigest())
"""


def test_output_is_identical_with_one_and_two_threads():
    digests = []
    for threads in ("1", "2"):
        environment = dict(os.environ, NUMBA_NUM_THREADS=threads)
        result = subprocess.run([sys.executable, "-c", _THREAD_SCRIPT, threads], env=environment,
                                capture_output=True, text=True, check=True)
        digests.append(result.stdout.strip())
    assert digests[0] == digests[1] and len(digests[0]) == 64


def test_unpartnered_images_pass_through_and_are_reported(key):
    images = provenance_images(5)
    labels = np.array([0, 0, 1, 2, 2])
    spec = fastmix.MixSpec(block=(4, 4), prob=1.0)
    with pytest.warns(fastmix.FastmixWarning, match="1 image"):
        mixed = fastmix.mix_array(images, labels, spec, key)
    np.testing.assert_array_equal(mixed[2], images[2])
    with pytest.raises(fastmix.BadInputError, match="no other image"):
        fastmix.mix_array(images, labels, spec, key, strict=True)


def test_block_count_with_edge_blocks():
    assert block_count(10, 10, (4, 3)) == 3 * 4
    assert fastmix.MixSpec(grid=(2, 8)).block_shape(192, 192) == (96, 24)
    assert fastmix.MixSpec(grid=(3, 3)).block_shape(10, 11) == (4, 4)


@pytest.mark.parametrize(("count", "rule", "warned"),
                         [(13, 1, True), (13, 2, False), (12, 2, False), (2, 2, True),
                          (3, 2, False)])
def test_images_left_in_a_group_of_two_are_reported(key, count, rule, warned):
    # Groups of 11: rule 1 leaves 13 images a last group of two, which swaps whole images;
    # rule 2 makes one group of 13. Only a label of two images stays a pair.
    images = provenance_images(count)
    labels = np.zeros(count, dtype=np.int64)
    spec = fastmix.MixSpec(block=(4, 4), donors=10, prob=1.0, plan_rule=rule)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        source = sources(fastmix.mix_array(images, labels, spec, key), (4, 4))
    messages = [str(item.message) for item in caught if item.category is fastmix.FastmixWarning]
    pairs = [i for i in range(count) if len(set(source[i].tolist())) == 1]
    assert len(pairs) == (2 if warned else 0)
    assert (messages == ["2 image(s) are in permute groups of two: each takes every mixed "
                         "block from one other image, so at prob 1 it shows that other "
                         "original whole; use a larger window or group='window', or drop "
                         "those images"]) == warned
    if warned:
        with pytest.raises(fastmix.BadInputError, match=r"groups of two.*strict refuses"):
            fastmix.mix_array(images, labels, spec, key, strict=True)


@settings(max_examples=60, deadline=None)
@given(count=st.integers(1, 200), size=st.integers(2, 30))
def test_rule_two_groups_are_as_equal_as_possible(count, size):
    sizes = group_sizes(count, size, 2)
    assert sum(sizes) == count
    assert max(sizes) - min(sizes) <= 1
    assert len(sizes) == max(1, count // size)
    assert min(sizes) >= size or len(sizes) == 1
