"""Issue 21, items 6 and 10: the record MAC, and readers refusing half-rewritten stores.

A mixed store's record (its ``fastmix_*`` attributes) is bound by a MAC keyed by the mixing
key to the labels and the images' shape and dtype: an edited record or a relabelled image is
refused (exit 2, the store unchanged) before anything is written, instead of unmixing into
wrong images. A store that an interrupted in-place run left half rewritten is refused by
every reader, naming ``--resume``.
"""

from __future__ import annotations

import json
import os
import shutil
import warnings

import h5py
import numpy as np
import pytest

import fastmix
from fastmix.cli import main
from fastmix.cli.commands.info import describe_store
from fastmix.errors import BadInputError, FastmixWarning, WrongKeyError
from fastmix.store import mix_store, unmix_store
from fastmix.store.inplace import InPlaceRunStopped

KEY = fastmix.Key(bytes(range(32)))
OTHER_KEY = fastmix.Key(bytes(range(1, 33)))
SPEC = fastmix.MixSpec(grid=(4, 4), donors=3)
WINDOW = 32
COUNT = 128
EDITED = "the record was edited or the labels changed since mixing"


def make_store(path) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(21)
    images = rng.integers(0, 256, (COUNT, 16, 16, 3), dtype=np.uint8)
    # Eight images of each of 4 labels in every window, so that every image is mixed.
    labels = np.concatenate([rng.permutation(np.arange(WINDOW) % 4)
                             for _ in range(COUNT // WINDOW)])
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=images, chunks=(16, 16, 16, 3))
        file.create_dataset("labels", data=labels)
        # A second labels dataset of the same length: a record edited to name it is in range.
        file.create_dataset("labels2", data=(labels + 1) % 4)
    return images, labels


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """Return the original store, its new-file mix and its in-place mix (both with KEY)."""
    folder = tmp_path_factory.mktemp("trust-record")
    original = folder / "original.h5"
    images, labels = make_store(original)
    mixed = folder / "mixed.h5"
    mix_store(original, mixed, spec=SPEC, key=KEY, window=WINDOW, progress=False)
    in_place = folder / "in-place.h5"
    shutil.copyfile(original, in_place)
    mix_store(in_place, spec=SPEC, key=KEY, window=WINDOW, in_place=True, progress=False)
    return original, mixed, in_place, images, labels


def copy_of(source, tmp_path, name="store.h5"):
    target = tmp_path / name
    shutil.copyfile(source, target)
    return target


def read_images(path) -> np.ndarray:
    with h5py.File(path, "r") as file:
        return file["images"][()]


def cli(capsys, *args) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_refusal(status: int, err: str, *words: str) -> None:
    assert status == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], lines[0]


# -- item 6: edits of the record, each in range ----------------------------------------------

def _set(name, value):
    def edit(file):
        file["images"].attrs[name] = value
    return edit


def _spec_field(field, value):
    def edit(file):
        data = json.loads(file["images"].attrs["fastmix_spec"])
        data[field] = value
        file["images"].attrs["fastmix_spec"] = json.dumps(data, sort_keys=True)
    return edit


def _relabel_one(file):
    labels = file["labels"]
    labels[5] = (labels[5] + 1) % 4


def _other_key_check(file):
    check = file["images"].attrs["fastmix_key_check"]
    file["images"].attrs["fastmix_key_check"] = check[:-1] + ("0" if check[-1] != "0" else "1")


EDITS = {
    "window": _set("fastmix_window", np.int64(WINDOW // 2)),
    "plan-rule": _set("fastmix_plan_rule", np.int64(1)),
    "spec-donors": _spec_field("donors", 2),
    "spec-prob": _spec_field("prob", 0.25),
    "spec-rounds": _spec_field("rounds", 2),
    "donors-attribute": _set("fastmix_donors", np.int64(2)),
    "format-version": _set("fastmix_format_version", np.int64(1)),
    "labels-name": _set("fastmix_labels", "labels2"),
    "unpartnered": _set("fastmix_unpartnered", np.int64(3)),
    "key-check": _other_key_check,
    "type-only": _set("fastmix_window", np.int32(WINDOW)),
    "added-attribute": _set("fastmix_shard_run", "0123456789abcdef"),
    "mac": _set("fastmix_record_mac", "0" * 64),
    "relabel-one-image": _relabel_one,
}


def edited_copy(source, tmp_path, edit):
    store = copy_of(source, tmp_path)
    with h5py.File(store, "r+") as file:
        edit(file)
    return store


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_unmix_refuses_an_edited_record_and_changes_nothing(stores, tmp_path, capsys, edit):
    _, mixed, _, _, _ = stores
    store = edited_copy(mixed, tmp_path, edit)
    before = store.read_bytes()
    KEY.save(tmp_path / "key")
    output = tmp_path / "restored.h5"
    status, _, err = cli(capsys, "unmix", store, output, "--key-file", tmp_path / "key",
                         "--quiet")
    assert_one_line_refusal(status, err, EDITED, "Restore the store from a copy")
    assert store.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["key", "store.h5"]


@pytest.mark.parametrize("edit", EDITS.values(), ids=EDITS.keys())
def test_in_place_unmix_refuses_an_edited_record_and_changes_nothing(stores, tmp_path, capsys,
                                                                     edit):
    _, _, in_place, _, _ = stores
    store = edited_copy(in_place, tmp_path, edit)
    before = store.read_bytes()
    KEY.save(tmp_path / "key")
    status, _, err = cli(capsys, "unmix", store, "--in-place", "--key-file", tmp_path / "key",
                         "--quiet")
    assert_one_line_refusal(status, err, EDITED)
    assert store.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["key", "store.h5"]  # no journal, no lock


@pytest.mark.parametrize("kind", ["variable-length text", "fixed-length text"])
def test_text_labels_are_bound_too(tmp_path, kind):
    images, labels = make_store(tmp_path / "numbers.h5")
    names = np.array(["cat", "dog", "emu", "gnu"])[labels]
    dtype = h5py.string_dtype() if kind.startswith("variable") else "S3"
    with h5py.File(tmp_path / "text.h5", "w") as file:
        file.create_dataset("images", data=images, chunks=(16, 16, 16, 3))
        file.create_dataset("labels", data=names.astype(object if kind.startswith("variable")
                                                        else "S3"), dtype=dtype)
    mix_store(tmp_path / "text.h5", tmp_path / "mixed.h5", spec=SPEC, key=KEY, window=WINDOW,
              progress=False)
    unmix_store(tmp_path / "mixed.h5", tmp_path / "back.h5", key=KEY, progress=False)
    np.testing.assert_array_equal(read_images(tmp_path / "back.h5"), images)
    with h5py.File(tmp_path / "mixed.h5", "r+") as file:
        file["labels"][7] = b"yak"
    with pytest.raises(BadInputError, match=EDITED):
        unmix_store(tmp_path / "mixed.h5", tmp_path / "again.h5", key=KEY, progress=False)
    assert not (tmp_path / "again.h5").exists()


def test_a_record_whose_labels_dataset_is_gone_is_refused(stores, tmp_path):
    _, mixed, _, _, _ = stores
    store = copy_of(mixed, tmp_path)
    with h5py.File(store, "r+") as file:
        del file["labels"]
    with pytest.raises(BadInputError, match=r"labels dataset 'labels' cannot be opened.*"
                                            + EDITED):
        unmix_store(store, tmp_path / "out.h5", key=KEY, progress=False)


def test_verify_with_the_key_refuses_an_edited_record(stores, tmp_path, capsys):
    original, mixed, _, _, _ = stores
    store = edited_copy(mixed, tmp_path, EDITS["window"])
    KEY.save(tmp_path / "key")
    status, _, err = cli(capsys, "verify", original, store, "--key-file", tmp_path / "key",
                         "--quiet")
    assert_one_line_refusal(status, err, EDITED)
    with pytest.raises(BadInputError, match=EDITED):
        fastmix.verify_stores(original, edited_copy(mixed, tmp_path, _relabel_one), KEY)


def test_audit_with_the_key_refuses_an_edited_record(stores, tmp_path, capsys):
    original, mixed, _, _, _ = stores
    store = edited_copy(mixed, tmp_path, EDITS["spec-donors"])
    KEY.save(tmp_path / "key")
    status, _, err = cli(capsys, "audit", original, store, "--key-file", tmp_path / "key",
                         "--quiet")
    assert_one_line_refusal(status, err, EDITED)


def test_the_record_mac_verifies_and_both_unmixes_restore(stores, tmp_path):
    """New-file and in-place records carry a MAC that verifies; unmix restores bit for bit."""
    original, mixed, in_place, images, _ = stores
    for store in (mixed, in_place):
        with h5py.File(store, "r") as file:
            mac = file["images"].attrs["fastmix_record_mac"]
        assert isinstance(mac, str) and len(mac) == 64 and int(mac, 16) >= 0
        assert describe_store(str(store))["record_mac"] is True
    with warnings.catch_warnings():
        warnings.simplefilter("error", FastmixWarning)
        unmix_store(mixed, tmp_path / "restored.h5", key=KEY, progress=False)
        np.testing.assert_array_equal(read_images(tmp_path / "restored.h5"), images)
        store = copy_of(in_place, tmp_path, "in-place.h5")
        unmix_store(store, key=KEY, in_place=True, progress=False)
        np.testing.assert_array_equal(read_images(store), images)
        assert fastmix.verify_stores(original, mixed, KEY).ok


def test_a_wrong_key_still_gets_the_wrong_key_message(stores, tmp_path):
    _, mixed, _, _, _ = stores
    for store in (mixed, edited_copy(mixed, tmp_path, EDITS["window"])):
        with pytest.raises(WrongKeyError, match="wrong key"):
            unmix_store(store, tmp_path / "out.h5", key=OTHER_KEY, progress=False)
    assert not (tmp_path / "out.h5").exists()


def test_an_attribute_added_and_sealed_again_unmixes(stores, tmp_path):
    """The MAC covers every ``fastmix_*`` attribute; ``seal_record`` re-seals after a writer."""
    from fastmix.store.hdf5.record import seal_record

    _, mixed, _, images, _ = stores
    store = edited_copy(mixed, tmp_path, EDITS["added-attribute"])
    with pytest.raises(BadInputError, match=EDITED):
        unmix_store(store, tmp_path / "out.h5", key=KEY, progress=False)
    with h5py.File(store, "r+") as file:
        seal_record(file["images"], KEY)
    unmix_store(store, tmp_path / "out.h5", key=KEY, progress=False)
    np.testing.assert_array_equal(read_images(tmp_path / "out.h5"), images)


def test_a_store_without_a_mac_is_refused_unless_trusted(stores, tmp_path, capsys):
    """A record without a MAC (an older fastmix's, or one deleted) is refused unless trusted.

    It cannot be told from an edited one: refused by default, unmixed with a warning only when
    the caller trusts it.
    """
    _, mixed, _, images, _ = stores
    store = copy_of(mixed, tmp_path)
    with h5py.File(store, "r+") as file:
        del file["images"].attrs["fastmix_record_mac"]
    before = store.read_bytes()
    with pytest.raises(BadInputError, match=r"no record MAC.*trust_unsealed=True"):
        unmix_store(store, tmp_path / "refused.h5", key=KEY, progress=False)
    KEY.save(tmp_path / "key")
    status, _, err = cli(capsys, "unmix", store, tmp_path / "refused.h5", "--key-file",
                         tmp_path / "key", "--quiet")
    assert status == 2 and "--trust-unsealed" in err and len(err.strip().splitlines()) == 1
    assert store.read_bytes() == before and not (tmp_path / "refused.h5").exists()
    with pytest.warns(FastmixWarning, match="no record MAC"):
        unmix_store(store, tmp_path / "out.h5", key=KEY, progress=False, trust_unsealed=True)
    np.testing.assert_array_equal(read_images(tmp_path / "out.h5"), images)
    status, _, err = cli(capsys, "unmix", store, tmp_path / "cli.h5", "--key-file",
                         tmp_path / "key", "--quiet", "--trust-unsealed")
    assert status == 0, err
    assert err.count("no record MAC") == 1
    np.testing.assert_array_equal(read_images(tmp_path / "cli.h5"), images)


def test_the_mac_is_the_documented_computation(stores):
    """An independent computation of the MAC from the module docstring's description."""
    import hashlib
    import hmac

    _, mixed, _, _, _ = stores

    def frame(data: bytes) -> bytes:
        return len(data).to_bytes(8, "little") + data

    def integer(value: int) -> bytes:
        return frame(b"i" + value.to_bytes(16, "little", signed=True))

    def text(value: str) -> bytes:
        return frame(b"s" + value.encode())

    def value_bytes(value) -> bytes:
        if isinstance(value, str):
            return b"u" + value.encode()
        array = np.asarray(value)
        shape = ",".join(map(str, array.shape)).encode()
        return b"n" + array.dtype.str.encode() + b":" + shape + b":" + array.tobytes()

    with h5py.File(mixed, "r") as file:
        attrs = file["images"].attrs
        names = sorted(name for name in attrs if name.startswith("fastmix_")
                       and name not in ("fastmix_record_mac", "fastmix_state", "fastmix_run"))
        message = b"fastmix/mac/v1\x00record\x00" + integer(len(names))
        for name in names:
            message += text(name) + frame(b"b" + value_bytes(attrs[name]))
        labels = file["labels"][()]
        digest = hashlib.sha256(labels.dtype.str.encode() + b":" + str(len(labels)).encode()
                                + b":" + labels.tobytes()).digest()
        message += frame(b"b" + digest)
        images = file["images"]
        message += integer(images.ndim) + b"".join(integer(size) for size in images.shape)
        message += text(images.dtype.str)
        expected = hmac.new(bytes(range(32)), message, hashlib.sha256).hexdigest()
        assert attrs["fastmix_record_mac"] == expected


# -- item 10: readers refuse a store an interrupted in-place run left half rewritten ---------

@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """Return a store whose in-place mix stopped after 2 of 4 windows (ENOSPC hook)."""
    folder = tmp_path_factory.mktemp("interrupted")
    original = folder / "original.h5"
    make_store(original)
    store = folder / "store.h5"
    shutil.copyfile(original, store)
    os.environ["FASTMIX_TEST_JOURNAL_ENOSPC"] = "2"
    try:
        with pytest.raises(InPlaceRunStopped, match="no space left on device"):
            mix_store(store, spec=SPEC, key=KEY, window=WINDOW, in_place=True, progress=False)
    finally:
        del os.environ["FASTMIX_TEST_JOURNAL_ENOSPC"]
    with h5py.File(store, "r") as file:
        assert file["images"].attrs["fastmix_state"] == "in-progress"
        # Half rewritten for real: the first windows are mixed, the last ones are not.
        half = file["images"][()]
    with h5py.File(original, "r") as file:
        assert not np.array_equal(half[:WINDOW], file["images"][:WINDOW])
        np.testing.assert_array_equal(half[-WINDOW:], file["images"][-WINDOW:])
    return original, store


READERS = {
    "export": lambda store, out, original: ["export", store, out / "export"],
    "preview": lambda store, out, original: ["preview", store, "-o", out / "grid.png"],
    "audit": lambda store, out, original: ["audit", original, store, "--quiet"],
    "audit-original": lambda store, out, original: ["audit", store, original, "--quiet"],
}


@pytest.mark.parametrize("command", READERS.values(), ids=READERS.keys())
def test_readers_refuse_a_half_rewritten_store_naming_resume(interrupted, tmp_path, capsys,
                                                             command):
    original, store = interrupted
    before = store.read_bytes()
    status, _, err = cli(capsys, *command(store, tmp_path, original))
    assert_one_line_refusal(status, err, "interrupted in-place", "--in-place --resume",
                            "fastmix mix")
    assert "--block" not in err
    assert store.read_bytes() == before
    assert os.listdir(tmp_path) == []


def test_the_dataset_refuses_a_half_rewritten_store(interrupted):
    _, store = interrupted
    with pytest.raises(BadInputError, match=r"interrupted in-place .*in_place=True, "
                                            r"resume=True"):
        fastmix.H5ImageDataset(store)


def test_info_still_describes_a_half_rewritten_store(interrupted, capsys):
    _, store = interrupted
    status, out, err = cli(capsys, "info", store)
    assert status == 0, err
    assert "interrupted" in out and "--in-place --resume" in out
