"""Orientation keeps permute exact to undo; jitter and seam blur are one-way and refused."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import fastmix
from fastmix import BadInputError, MixSpec


@pytest.mark.parametrize("spec", [
    MixSpec(block=(8, 8), orient="flip", prob=1.0),
    MixSpec(block=(8, 8), orient="d4", prob=0.6, donors=3),
    MixSpec(block=(5, 5), orient="d4", prob=1.0, group="window"),
    MixSpec(block=(10, 7), orient="d4", prob=1.0, rounds=2, group=4),
])
@pytest.mark.parametrize("dtype", ["uint8", "float64"])
def test_unmix_is_exact_with_orientation(spec, dtype, photo_tiles, key):
    images, labels = photo_tiles
    images = images[:, :, :29].astype(dtype)
    mixed = fastmix.mix_array(images, labels, spec, key, window=100)
    assert not np.array_equal(mixed, images)
    assert np.array_equal(fastmix.unmix_array(mixed, labels, spec, key, window=100), images)


def test_orientation_is_applied_to_square_blocks_in_all_eight_ways(photo_tiles, key):
    images, labels = photo_tiles
    images, labels = images[::8], labels[::8]
    spec = MixSpec(block=(8, 8), orient="d4", prob=1.0)
    mixed = fastmix.mix_array(images, labels, spec, key)
    found = set()
    for i in range(len(images)):
        for top in range(0, 32, 8):
            for left in range(0, 32, 8):
                block = mixed[i, top:top + 8, left:left + 8]
                for j in range(len(images)):
                    candidate = images[j, top:top + 8, left:left + 8]
                    variants = [np.rot90(candidate, turn) for turn in range(4)]
                    variants += [np.rot90(candidate.swapaxes(0, 1), turn) for turn in range(4)]
                    hits = [n for n, v in enumerate(variants) if np.array_equal(v, block)]
                    if hits and labels[j] == labels[i] and j != i:
                        found.add(hits[0])
                        break
    assert found == set(range(8))


@pytest.mark.parametrize("spec", [
    MixSpec(block=(8, 8), jitter=True),
    MixSpec(block=(8, 8), seam_blur=1.0, orient="flip"),
    MixSpec.preset("balanced", block=(8, 8)),
])
def test_unmix_of_one_way_specs_is_refused(spec, photo_tiles, key):
    images, labels = photo_tiles
    mixed = fastmix.mix_array(images, labels, spec, key)
    before = mixed.copy()
    with pytest.raises(BadInputError, match="one-way; it cannot be unmixed"):
        fastmix.unmix_array(mixed, labels, spec, key)
    assert np.array_equal(mixed, before)


@pytest.mark.parametrize("dtype", ["int64", "bool", "float16"])
def test_jitter_refuses_dtypes_it_cannot_compute_exactly(dtype, key):
    images = np.ones((4, 8, 8), dtype=dtype)
    with pytest.raises(BadInputError, match="jitter works on integer images up to 32 bits"):
        fastmix.mix_array(images, [0, 0, 1, 1], MixSpec(block=(4, 4), jitter=True), key)


def test_orientation_moves_any_dtype(key):
    images = np.arange(4 * 8 * 8, dtype=np.int64).reshape(4, 8, 8)
    spec = MixSpec(block=(4, 4), orient="d4", prob=1.0)
    mixed = fastmix.mix_array(images, [0, 0, 1, 1], spec, key)
    assert np.array_equal(np.sort(mixed, axis=None), np.sort(images, axis=None))
    assert np.array_equal(fastmix.unmix_array(mixed, [0, 0, 1, 1], spec, key), images)


def test_same_key_same_bytes_different_key_different_bytes(photo_tiles, key):
    images, labels = photo_tiles
    spec = MixSpec.preset("balanced", block=(8, 8))
    first = fastmix.mix_array(images, labels, spec, key)
    assert np.array_equal(first, fastmix.mix_array(images, labels, spec, key))
    other = fastmix.mix_array(images, labels, spec, fastmix.Key.from_hex("1e" * 32))
    assert not np.array_equal(first, other)


_THREADS_SCRIPT = textwrap.dedent("""
    import hashlib, numpy as np, fastmix
    from skimage import data
    photo = data.astronaut()[:256, :256]
    tiles = photo.reshape(8, 32, 8, 32, 3).swapaxes(1, 2).reshape(64, 32, 32, 3).copy()
    labels = np.arange(64) % 3
    key = fastmix.Key.from_hex("0f" * 32)
    digest = hashlib.sha256()
    for spec in (fastmix.MixSpec.preset("balanced", block=(8, 8)),
                 fastmix.MixSpec.preset("strong", block=(10, 6)),
                 fastmix.MixSpec(block=(8, 8), orient="d4", prob=1.0)):
        digest.update(fastmix.mix_array(tiles, labels, spec, key, window=32).tobytes())
    print(digest.hexdigest())
""")


def test_one_and_two_threads_give_the_same_bytes():
    digests = []
    for threads in ("1", "2"):
        result = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], capture_output=True,
                                text=True, check=True,
                                env={**__import__("os").environ, "NUMBA_NUM_THREADS": threads})
        digests.append(result.stdout.strip())
    assert len(digests[0]) == 64
    assert digests[0] == digests[1]
