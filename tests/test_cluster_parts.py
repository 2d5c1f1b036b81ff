"""The part files of the one-file cluster layout, without a cluster: names, stamps, cleanup.

The cluster runs themselves are in ``test_cluster.py`` (slow tier); these check the pieces
the client trusts: the run token, the copy's refusal of a part stamped for another run or
window, and the removal of the parts folder.
"""

import os

import h5py
import hdf5plugin
import numpy as np
import pytest

import fastmix
from fastmix.store.cluster.client import run_token
from fastmix.store.cluster.onefile import _copy_part, remove_parts
from fastmix.store.cluster.tasks import PART_STAMP, part_name, part_stamp

WINDOWS = [(0, 16), (16, 32)]
TOKEN = "0123456789abcdef"
OTHER = "fedcba9876543210"
#: A source fingerprint (fastmix.store.cluster.shards.source_fingerprint) as run_token takes it.
STATE = {"size": 1, "mtime_ns": 2, "shape": [32, 8, 8, 3], "dtype": "|u1", "chunks": "ab",
         "labels": "cd"}


def test_run_token_differs_by_hardening_format_plan_rule_and_source(key):
    spec = fastmix.MixSpec.preset("balanced", block=(8, 8))
    older = spec.with_hardening_format(1)
    assert older.canonical() == spec.canonical()  # canonical() leaves the format out

    def token(one, state=STATE):
        return run_token("mix", "/s.h5", "/d.h5", one, WINDOWS, key.check_value, False, state)

    assert token(older) != token(spec)
    assert spec.plan_rule != 1 and token(spec.with_plan_rule(1)) != token(spec)
    assert token(spec) == token(fastmix.MixSpec.preset("balanced", block=(8, 8)))
    assert key.hex() not in token(spec)
    # the source's contents: any field of its fingerprint
    for field in STATE:
        assert token(spec, {**STATE, field: "other"}) != token(spec)


def write_part(path, token, index, window, count=None, dtype=np.uint8, shape=(8, 8, 3)):
    start, stop = window
    count = stop - start if count is None else count
    with h5py.File(path, "w") as file:
        images = file.create_dataset("images", data=np.full((count, *shape), index, dtype),
                                     chunks=(16, *shape), maxshape=(None, *shape),
                                     **hdf5plugin.LZ4())
        if token is not None:
            images.attrs[PART_STAMP] = part_stamp(token, index, start, stop)


@pytest.fixture
def output(tmp_path):
    with h5py.File(tmp_path / "out.h5", "w") as file:
        yield file.create_dataset("images", shape=(32, 8, 8, 3), dtype=np.uint8,
                                  chunks=(16, 8, 8, 3), **hdf5plugin.LZ4())


def test_a_part_stamped_for_this_run_and_window_is_copied(tmp_path, output):
    path = str(tmp_path / part_name(TOKEN, 1))
    write_part(path, TOKEN, 1, WINDOWS[1])
    _copy_part(path, output, TOKEN, 1, WINDOWS[1], bytearray())
    assert np.all(output[16:32] == 1) and output.id.get_num_chunks() == 1


@pytest.mark.parametrize("stamp_token, stamp_index, stamp_window", [
    (OTHER, 1, WINDOWS[1]),  # another run's part
    (TOKEN, 0, WINDOWS[1]),  # another window's
    (TOKEN, 1, (16, 31)),  # another window's end
    (None, 1, WINDOWS[1]),  # no stamp (an earlier fastmix, or not a part)
], ids=["token", "index", "window", "unstamped"])
def test_a_part_stamped_otherwise_is_refused_not_copied(tmp_path, output, stamp_token,
                                                        stamp_index, stamp_window):
    path = str(tmp_path / part_name(TOKEN, 1))
    write_part(path, stamp_token, stamp_index, stamp_window, count=16)
    with pytest.raises(fastmix.BadInputError, match="not window 1 of this run"):
        _copy_part(path, output, TOKEN, 1, WINDOWS[1], bytearray())
    assert output.id.get_num_chunks() == 0


@pytest.mark.parametrize("count, dtype, shape", [
    (15, np.uint8, (8, 8, 3)), (16, np.uint16, (8, 8, 3)), (16, np.uint8, (8, 4, 3))],
    ids=["length", "dtype", "shape"])
def test_a_stamped_part_that_does_not_fit_its_window_is_refused(tmp_path, output, count,
                                                                dtype, shape):
    path = str(tmp_path / part_name(TOKEN, 1))
    write_part(path, TOKEN, 1, WINDOWS[1], count=count, dtype=dtype, shape=shape)
    with pytest.raises(fastmix.BadInputError, match="does not fit window 1"):
        _copy_part(path, output, TOKEN, 1, WINDOWS[1], bytearray())
    assert output.id.get_num_chunks() == 0


def test_remove_parts_removes_only_part_files_and_follows_no_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / part_name(TOKEN, 0)).write_bytes(b"x")
    folder = tmp_path / ".d.h5.fastmix-partial.parts"
    folder.mkdir()
    ours = [part_name(TOKEN, 0), part_name(OTHER, 3), "part-000007.h5",
            f".{part_name(TOKEN, 1)}.tmp-123-0a1b2c3d"]
    for name in ours:
        (folder / name).write_bytes(b"x")
    (folder / "notes.txt").write_bytes(b"mine")
    os.symlink(outside, folder / "linked")
    remove_parts(str(folder))
    assert sorted(os.listdir(folder)) == ["linked", "notes.txt"]  # kept: not ours
    assert os.listdir(outside) == [part_name(TOKEN, 0)]
    os.remove(folder / "notes.txt")
    os.remove(folder / "linked")
    remove_parts(str(folder))
    assert not folder.exists()
    # A link at the folder's own name is never followed.
    os.symlink(outside, folder)
    remove_parts(str(folder))
    assert os.path.islink(folder) and os.listdir(outside) == [part_name(TOKEN, 0)]
    remove_parts(None)
    remove_parts(str(tmp_path / "absent"))
