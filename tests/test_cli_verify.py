"""``fastmix.verify_stores``, the logic behind ``fastmix verify``, called in-process."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
from test_cli_support import write_mixed_pair, write_store

import fastmix
from fastmix.errors import WrongKeyError


@pytest.fixture(scope="module")
def pair(tmp_path_factory, photo_tiles):
    folder = tmp_path_factory.mktemp("verify")
    key = fastmix.Key.from_hex("5a" * 32)
    original, images, labels = write_mixed_pair(folder, photo_tiles, key,
                                                original="original.h5")
    return folder, original, folder / "mixed.h5", key, images, labels


def test_result_of_a_good_pair(pair):
    _, original, mixed, key, _, _ = pair
    plain = fastmix.verify_stores(original, mixed)
    assert plain and plain.ok and not plain.key_checked
    assert (plain.mode, plain.images, plain.windows) == ("permute", 64, 2)
    keyed = fastmix.verify_stores(original, mixed, key)
    assert keyed.ok and keyed.key_checked
    assert keyed.message.endswith("unmix with the key restores the original bit for bit")


def test_other_chunkings_of_the_original_verify(pair):
    folder, _, mixed, key, images, labels = pair
    for name, chunk in (("contiguous.h5", None), ("chunks-of-5.h5", 5)):
        other = write_store(folder / name, images, labels, chunk=chunk,
                            compression=None if chunk is None else "gzip")
        assert fastmix.verify_stores(other, mixed, key).ok


def test_a_different_original_fails(pair):
    folder, _, mixed, _, images, labels = pair
    relabelled = labels.copy()
    relabelled[9] = (relabelled[9] + 1) % 4
    shorter = write_store(folder / "shorter.h5", images[:48], labels[:48])
    other_labels = write_store(folder / "relabelled.h5", images, relabelled)
    brighter = images.copy()
    brighter[40] = np.minimum(brighter[40].astype(np.int16) + 1, 255).astype(np.uint8)
    other_pixels = write_store(folder / "brighter.h5", brighter, labels)
    cases = [(shorter, "shape"), (other_labels, "labels differ between the stores (first at "
                                                "image 9)"),
             (other_pixels, "window 1 (images 32-63)")]
    for original, message in cases:
        result = fastmix.verify_stores(original, mixed)
        assert not result and message in result.message, result.message
        assert result.message.startswith("verification failed: ")


def test_wrong_key_and_missing_record_are_bad_input(pair):
    _, original, mixed, _, _, _ = pair
    with pytest.raises(WrongKeyError, match="wrong key"):
        fastmix.verify_stores(original, mixed, fastmix.Key.from_hex("a5" * 32))
    with pytest.raises(fastmix.BadInputError, match="not a mixed store"):
        fastmix.verify_stores(mixed, original)


def test_an_interrupted_in_place_run_is_refused(pair):
    folder, original, mixed, _, _, _ = pair
    pending = folder / "pending.h5"
    pending.write_bytes(mixed.read_bytes())
    with h5py.File(pending, "r+") as file:
        file["images"].attrs["fastmix_state"] = "in-progress"
    with pytest.raises(fastmix.BadInputError, match="in_place=True, resume=True"):
        fastmix.verify_stores(original, pending)


def _tampered(source, target, change):
    target.write_bytes(source.read_bytes())
    with h5py.File(target, "r+") as file:
        images = file["images"][()]
        change(images, file["labels"][()])
        file["images"][...] = images
    return target


def _same_label_pair(labels):
    return np.flatnonzero(labels[:32] == labels[0])[:2]


def _duplicate_block(images, labels):
    first, second = _same_label_pair(labels)
    images[second, 0:8, 8:16] = images[first, 0:8, 8:16]


def _swap_across_labels(images, labels):
    other = int(np.flatnonzero(labels[:32] != labels[0])[0])
    images[[0, other], 8:16, 8:16] = images[[other, 0], 8:16, 8:16]


def _swap_positions(images, labels):
    images[7, 0:8, 0:8], images[7, 0:8, 8:16] = images[7, 0:8, 8:16].copy(), \
        images[7, 0:8, 0:8].copy()


def _one_pixel(images, labels):
    images[50, 31, 31, 2] ^= 1


@pytest.mark.parametrize("change, message", [
    (_duplicate_block, "block (row 0, col 1) some original blocks are missing and others "
                       "appear twice"),
    (_swap_across_labels, "block (row 1, col 1) of image 0 is not the block"),
    (_swap_positions, "of image 7 is not the block at that position"),
    (_one_pixel, "block (row 3, col 3) of image 50"),
], ids=["duplicated block", "swap across labels", "swap of positions", "one bit"])
def test_tampering_is_found_without_the_key(pair, change, message):
    folder, original, mixed, key, _, _ = pair
    tampered = _tampered(mixed, folder / f"tampered-{change.__name__}.h5", change)
    result = fastmix.verify_stores(original, tampered)
    assert not result.ok
    assert message in result.message, result.message
    keyed = fastmix.verify_stores(original, tampered, key)
    assert not keyed.ok
