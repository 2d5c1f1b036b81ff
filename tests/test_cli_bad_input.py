"""Every bad input through the real ``fastmix`` process.

Exit status 2, exactly one line on stderr, no traceback, every file in the folder byte for
byte unchanged, nothing new left.
"""

from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest
from test_cli_support import BLOCK, run_cli, snapshot, write_mixed_pair, write_store

import fastmix

KEY = "key.key"
OTHER_KEY = "other.key"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, photo_tiles):
    """Return a folder of good and broken stores and keys, built once for every case."""
    folder = tmp_path_factory.mktemp("bad-input")
    key = fastmix.Key.from_hex("ab" * 32)
    good, images, labels = write_mixed_pair(folder, photo_tiles, key, original="good.h5")
    key.save(folder / KEY)
    fastmix.Key.from_hex("cd" * 32).save(folder / OTHER_KEY)
    (folder / "malformed.key").write_text("not a key at all\n")
    (folder / "short.key").write_text("ab" * 10 + "\n")
    fastmix.mix_store(good, folder / "paper.h5", spec=fastmix.MixSpec(block=(8, 8), donors=3,
                                                                      mode="paper"),
                      key=key, window=32, progress=False)
    (folder / "text.h5").write_text("this is a text file, not HDF5\n")
    data = good.read_bytes()
    (folder / "truncated.h5").write_bytes(data[: len(data) // 2])
    (folder / "folder.h5").mkdir()
    write_store(folder / "nolabels.h5", images, None)
    write_store(folder / "shortlabels.h5", images, labels[:-1])
    nan_labels = labels.astype(np.float64)
    nan_labels[5] = np.nan
    write_store(folder / "nanlabels.h5", images, nan_labels)
    write_store(folder / "flat.h5", images.reshape(len(images), -1), labels, chunk=None,
                compression=None)
    write_store(folder / "readonly.h5", images, labels)
    os.chmod(folder / "readonly.h5", 0o444)
    lonely = labels.copy()
    lonely[0] = 99  # one image whose label no other image carries
    write_store(folder / "lonely.h5", images, lonely)
    with h5py.File(folder / "good.h5", "r") as file:
        assert list(file["labels"].shape) == [len(images)]
    return folder


MIX = ("mix", "good.h5", "out.h5", "--key-file", KEY, "--block", BLOCK)

CASES = {
    # the source store
    "missing file": (("mix", "missing.h5", "out.h5", "--key-file", KEY), "does not exist"),
    "text file": (("mix", "text.h5", "out.h5", "--key-file", KEY), "not an HDF5 file"),
    "truncated file": (("mix", "truncated.h5", "out.h5", "--key-file", KEY), "truncated"),
    "directory": (("mix", "folder.h5", "out.h5", "--key-file", KEY), "directory"),
    "missing images": ((*MIX, "--images", "pixels"), "--images"),
    "missing labels": (("mix", "nolabels.h5", "out.h5", "--key-file", KEY), "--labels"),
    "labels too short": (("mix", "shortlabels.h5", "out.h5", "--key-file", KEY), "63"),
    "NaN labels": (("mix", "nanlabels.h5", "out.h5", "--key-file", KEY), "NaN"),
    "images of wrong rank": (("mix", "flat.h5", "out.h5", "--key-file", KEY), "(N, H, W)"),
    "already mixed": (("mix", "mixed.h5", "out.h5", "--key-file", KEY), "--force"),
    "strict with a lonely image": ((*MIX[:1], "lonely.h5", *MIX[2:], "--strict"),
                                   "no other image of their label"),
    # the flags
    "block without x": ((*MIX[:-1], "8"), "--block"),
    "block of zero": ((*MIX[:-1], "0x8"), "--block"),
    "block larger than images": ((*MIX[:-1], "64x64"), "larger than"),
    "block and grid": ((*MIX, "--grid", "2x2"), "not allowed with"),
    "grid malformed": (("mix", "good.h5", "out.h5", "--key-file", KEY, "--grid", "2by2"),
                       "--grid"),
    "prob above one": ((*MIX, "--prob", "1.5"), "--prob"),
    "prob not a number": ((*MIX, "--prob", "half"), "--prob"),
    "prob NaN": ((*MIX, "--prob", "nan"), "--prob"),
    "donors zero": ((*MIX, "--donors", "0"), "--donors"),
    "donors not a number": ((*MIX, "--donors", "ten"), "--donors"),
    "rounds fractional": ((*MIX, "--rounds", "1.5"), "--rounds"),
    "unknown mode": ((*MIX, "--mode", "shuffle"), "permute, paper"),
    "memory unit": ((*MIX, "--memory", "1XB"), "memory"),
    "memory negative": ((*MIX, "--memory", "-1GiB"), "memory"),
    "memory below one chunk": ((*MIX, "--memory", "4KiB"), "--memory"),
    "window zero": ((*MIX, "--window", "0"), "--window"),
    "window off chunk boundaries": ((*MIX, "--window", "10"), "chunk"),
    # keys
    "missing key file": (("mix", "good.h5", "out.h5", "--key-file", "absent.key"),
                         "--new-key"),
    "malformed key file": (("mix", "good.h5", "out.h5", "--key-file", "malformed.key"),
                           "malformed"),
    "short key file": (("mix", "good.h5", "out.h5", "--key-file", "short.key"), "64"),
    "new key over existing key": ((*MIX, "--new-key"), "already exists"),
    "new key for a bad store": (("mix", "text.h5", "out.h5", "--key-file", "fresh.key",
                                 "--new-key"), "not an HDF5 file"),
    # destinations
    "destination exists": (("mix", "good.h5", "text.h5", "--key-file", KEY), "--overwrite"),
    "destination is source": (("mix", "good.h5", "./good.h5", "--key-file", KEY),
                              "--in-place"),
    "destination folder missing": (("mix", "good.h5", "nowhere/out.h5", "--key-file", KEY),
                                   "does not exist"),
    "no destination": (("mix", "good.h5", "--key-file", KEY), "--in-place"),
    "in place with destination": (("mix", "good.h5", "out.h5", "--in-place", "--key-file", KEY),
                                  "drop DST"),
    # unmix
    "unmix an unmixed store": (("unmix", "good.h5", "out.h5", "--key-file", KEY),
                               "nothing to unmix"),
    "unmix a paper store": (("unmix", "paper.h5", "out.h5", "--key-file", KEY),
                            "not reversible"),
    "unmix with the wrong key": (("unmix", "mixed.h5", "out.h5", "--key-file", OTHER_KEY),
                                 "wrong key"),
    "unmix with a missing key": (("unmix", "mixed.h5", "out.h5", "--key-file", "absent.key"),
                                 "does not exist"),
    "unmix a text file": (("unmix", "text.h5", "out.h5", "--key-file", KEY),
                          "not an HDF5 file"),
    "unmix bad memory": (("unmix", "mixed.h5", "out.h5", "--key-file", KEY, "--memory", "lots"),
                         "memory"),
    # info and verify
    "info of a missing file": (("info", "missing.h5"), "does not exist"),
    "info of a truncated file": (("info", "truncated.h5", "--json"), "truncated"),
    "info without the images": (("info", "good.h5", "--images", "pixels"), "--images"),
    "info with NaN labels": (("info", "nanlabels.h5"), "NaN"),
    "verify an unmixed store": (("verify", "good.h5", "good.h5"), "not a mixed store"),
    "verify a store against itself": (("verify", "mixed.h5", "./mixed.h5"), "same file"),
    "verify with the wrong key": (("verify", "good.h5", "mixed.h5", "--key-file", OTHER_KEY),
                                  "wrong key"),
    "verify a directory": (("verify", "folder.h5", "mixed.h5"), "directory"),
    "unknown flag": (("mix", "good.h5", "out.h5", "--key-file", KEY, "--blocks", "8x8"),
                     "unrecognized"),
    "unknown command": (("blend", "good.h5"), "invalid choice"),
    # in place (the store is rewritten only when every guard passes)
    "in place on a read-only store": (("mix", "readonly.h5", "--in-place", "--key-file", KEY),
                                      "read-only"),
    "in place on a mixed store": (("mix", "mixed.h5", "--in-place", "--key-file", KEY),
                                  "--force"),
    "resume without in place": ((*MIX, "--resume"), "--in-place"),
    "resume with a new key": (("mix", "good.h5", "--in-place", "--resume", "--new-key",
                               "--key-file", "fresh.key"), "--new-key"),
    "new key in place on a mixed store": (("mix", "mixed.h5", "--in-place", "--new-key",
                                           "--key-file", "fresh.key"), "--force"),
    "overwrite in place": (("mix", "good.h5", "--in-place", "--overwrite", "--key-file", KEY),
                           "--overwrite"),
    "unmix in place of an unmixed store": (("unmix", "good.h5", "--in-place", "--key-file",
                                            KEY), "nothing to unmix"),
    "unmix in place with the wrong key": (("unmix", "mixed.h5", "--in-place", "--key-file",
                                           OTHER_KEY), "wrong key"),
}


@pytest.fixture(scope="module")
def outcomes(workspace, tmp_path_factory):
    """Run every case at once, each in its own hard-linked copy of the workspace.

    Process start-up dominates these runs, so they run concurrently; each copy is
    snapshotted before and after its own run, so every case is judged on its own.
    """
    root = tmp_path_factory.mktemp("bad-input-runs")

    def run_case(index_and_arguments):
        index, arguments = index_and_arguments
        folder = root / f"case{index}"
        shutil.copytree(workspace, folder, copy_function=os.link)
        before = snapshot(folder)
        result = run_cli(*arguments, cwd=folder)
        return result, before, snapshot(folder)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = pool.map(run_case, enumerate(arguments for arguments, _ in CASES.values()))
        return dict(zip(CASES, results))


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_exits_2_with_one_line(outcomes, case):
    result, before, after = outcomes[case]
    expected = CASES[case][1]
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert expected in lines[0], lines[0]
    if "--json" in CASES[case][0]:  # the error as JSON on stdout too, for the parser reading it
        assert json.loads(result.stdout)["exit_status"] == 2
    else:
        assert result.stdout == ""
    assert after == before  # inputs unchanged, no output, no key left behind


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_source_exits_2(workspace):
    before = snapshot(workspace)
    os.chmod(workspace / "good.h5", 0o000)
    try:
        result = run_cli(*MIX, cwd=workspace)
    finally:
        os.chmod(workspace / "good.h5", 0o644)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "permission denied" in result.stderr
    assert snapshot(workspace) == before

