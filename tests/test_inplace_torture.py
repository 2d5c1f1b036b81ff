"""In-place mixing under SIGKILL and a full disk: real processes, real files, bit for bit.

``fastmix mix STORE --in-place`` is killed at random moments (fixed seeds) and resumed until
it finishes; the store must then equal an uninterrupted new-file run with the same window.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import h5py
import hdf5plugin
import numpy as np
import pytest

import fastmix
from fastmix.store import mix_store
from fastmix.store.crashrepair import clear_open_flag
from fastmix.store.journal import Journal

WINDOW = 64
CHUNK = 16
SPEC_ARGS = ["--privacy", "fast", "--grid", "4x4", "--donors", "3"]
SPEC = fastmix.MixSpec(grid=(4, 4), donors=3)


def make_store(path, count: int, compressed: bool, seed: int = 1) -> None:
    """A store of photo-like images: smooth halves compress, noisy halves do not."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    images[:, :16] //= 16
    filters = dict(hdf5plugin.LZ4()) if compressed else {}
    # The compressed store uses the v110+ format, whose "open for write" flag a kill leaves set.
    with h5py.File(path, "w", libver="latest" if compressed else "earliest") as file:
        file.create_dataset("images", data=images, chunks=(CHUNK, 32, 32, 3), **filters)
        file.create_dataset("labels", data=rng.integers(0, 4, count))
        file["labels"].attrs["class_names"] = ["a", "b", "c", "d"]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "fastmix.cli", *args]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=120)


def read_images(path) -> np.ndarray:
    with h5py.File(path, "r") as file:
        return file["images"][()]


def reference(tmp_path, store, key, window: int = WINDOW) -> np.ndarray:
    copy = tmp_path / "reference-source.h5"
    shutil.copyfile(store, copy)
    out = tmp_path / "reference.h5"
    mix_store(copy, out, spec=SPEC, key=key, window=window, progress=False)
    return read_images(out)


def lock_owner(store) -> int | None:
    try:
        with open(f"{store}.fastmix-lock") as handle:
            return json.load(handle).get("pid")
    except (OSError, ValueError):
        return None


def committed(store) -> int:
    path = f"{store}.fastmix-journal"
    if not os.path.exists(path):
        return -1
    journal = Journal.open(path)
    if journal is None:
        return -1
    try:
        return journal.committed
    finally:
        journal.close()


def check_after_kill(store, expected: np.ndarray, original: np.ndarray) -> int:
    """Check the journal's promise after a kill; return 1 if a window may be torn.

    Windows before the committed count hold their output and windows after it their input.
    The committed window holds its input unless the journal has its complete undo record,
    which must then hold exactly that input.
    """
    path = f"{store}.fastmix-journal"
    journal = Journal.open(path) if os.path.exists(path) else None
    if journal is None:
        done = finished(store) if not os.path.exists(path) else False
        np.testing.assert_array_equal(read_images(store), expected if done else original)
        return 0
    try:
        done = journal.committed
        buffer = np.empty(expected[:WINDOW].nbytes, dtype=np.uint8)
        undo = journal.pending_undo(buffer)
    finally:
        journal.close()
    clear_open_flag(store)  # what a resumed run does first
    with h5py.File(store, "r") as file:
        images = file["images"]
        for index, start in enumerate(range(0, len(expected), WINDOW)):
            stop = min(start + WINDOW, len(expected))
            if index == done and undo is not None:
                assert (undo.index, undo.start, undo.stop) == (index, start, stop)
                assert bytes(undo.payload) == original[start:stop].tobytes()
                continue  # the store may hold a torn window: resume mixes it again
            wanted = expected if index < done else original
            np.testing.assert_array_equal(images[start:stop], wanted[start:stop],
                                          err_msg=f"window {index}, {done} committed")
    return int(undo is not None)


def finished(store) -> bool:
    if os.path.exists(f"{store}.fastmix-journal"):
        return False
    with h5py.File(store, "r") as file:
        return file["images"].attrs.get("fastmix_state") == "complete"


def leftovers(store) -> list[str]:
    return [path for path in (f"{store}.fastmix-journal", f"{store}.fastmix-lock")
            if os.path.exists(path)]


@pytest.mark.slow
@pytest.mark.parametrize("compressed,count,seed", [(False, 8192, 11), (True, 3072, 23)],
                         ids=["raw", "lz4"])
def test_sigkill_at_random_moments_then_resume_equals_uninterrupted_run(tmp_path, compressed,
                                                                        count, seed):
    # Sized so that an uninterrupted run takes about a second here: kills land in it.
    store = tmp_path / "store.h5"
    make_store(store, count, compressed)
    key_file = tmp_path / "key"
    key = fastmix.Key(bytes(range(32)))
    key.save(key_file)
    expected = reference(tmp_path, store, key)
    original = read_images(store)
    schedule = random.Random(seed)
    kills = torn_windows = 0
    for attempt in range(40):
        command = cli("mix", str(store), "--in-place", "--key-file", str(key_file),
                      "--window", str(WINDOW), *SPEC_ARGS, "--quiet",
                      *(["--resume"] if attempt else []))
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Kill at a random moment of the run proper: mostly while windows are written (after
        # this run has committed one), sometimes anywhere from the start (recovery included).
        before = committed(store)
        anywhere = schedule.random() < 0.25
        deadline = time.monotonic() + 60
        while process.poll() is None and time.monotonic() < deadline:
            if lock_owner(store) == process.pid and (anywhere or committed(store) > before):
                break
            time.sleep(0.002)
        time.sleep(schedule.uniform(0.0, 1.5 if anywhere else 0.12))
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait()
            kills += 1
            torn_windows += check_after_kill(store, expected, original)
            if finished(store):  # killed on its way out, after the run completed
                break
            continue
        _, stderr = process.communicate()
        assert process.returncode == 0, stderr.decode()
        break
    else:
        pytest.fail("the run never finished")
    assert kills >= 3, f"only {kills} kills landed; the schedule is too short for this machine"
    mixed = read_images(store)
    assert not np.array_equal(mixed, original)
    np.testing.assert_array_equal(mixed, expected)
    assert not os.path.exists(f"{store}.fastmix-journal")
    with h5py.File(store, "r") as file:
        assert file["images"].attrs["fastmix_state"] == "complete"
        assert file["images"].attrs["fastmix_key_check"] == key.check_value
        assert list(file["labels"].attrs["class_names"]) == ["a", "b", "c", "d"]
    print(f"{'lz4' if compressed else 'raw'}: survived {kills} SIGKILLs, {torn_windows} of them "
          "mid-window (the undo record of a window being written was complete)")


def test_full_disk_on_journal_write_stops_cleanly_and_resume_finishes(tmp_path):
    """The journal's documented test hook fails window 3's redo record with ENOSPC."""
    store = tmp_path / "store.h5"
    make_store(store, 512, compressed=True)
    key_file = tmp_path / "key"
    key = fastmix.Key(bytes(range(32)))
    key.save(key_file)
    expected = reference(tmp_path, store, key)
    original = read_images(store)
    arguments = ["mix", str(store), "--in-place", "--key-file", str(key_file), "--window",
                 str(WINDOW), *SPEC_ARGS, "--quiet"]
    failing = subprocess.run(cli(*arguments), capture_output=True, text=True, timeout=120,
                             env={**os.environ, "FASTMIX_TEST_JOURNAL_ENOSPC": "3"})
    assert failing.returncode == 1
    assert len(failing.stderr.strip().splitlines()) == 1
    assert "no space left on device" in failing.stderr
    assert "--resume" in failing.stderr
    # Windows 0-2 are mixed, window 3 onward untouched.
    partial = read_images(store)
    np.testing.assert_array_equal(partial[:3 * WINDOW], expected[:3 * WINDOW])
    np.testing.assert_array_equal(partial[3 * WINDOW:], original[3 * WINDOW:])
    plain = run_cli(*arguments)
    assert plain.returncode == 2 and "--resume" in plain.stderr
    resumed = run_cli(*arguments, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    np.testing.assert_array_equal(read_images(store), expected)
    assert leftovers(store) == []


def _mount_tmpfs(folder, size: str) -> bool:
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    folder.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                            capture_output=True)
    return result.returncode == 0


def test_full_filesystem_refuses_before_touching_the_store_then_resume_finishes(tmp_path):
    """A real full filesystem (a 4 MiB tmpfs; needs root, skipped otherwise)."""
    folder = tmp_path / "small"
    if not _mount_tmpfs(folder, "4M"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        store = folder / "store.h5"
        make_store(store, 512, compressed=False)  # 1.5 MiB
        key_file = tmp_path / "key"
        key = fastmix.Key(bytes(range(32)))
        key.save(key_file)
        expected = reference(tmp_path, store, key, window=256)
        before = store.read_bytes()
        filler = folder / "filler"
        free = os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize
        filler.write_bytes(b"\0" * max(0, free - 64 * 1024))
        arguments = ["mix", str(store), "--in-place", "--key-file", str(key_file),
                     "--window", "256", *SPEC_ARGS, "--quiet"]
        full = run_cli(*arguments)
        assert full.returncode == 1
        assert len(full.stderr.strip().splitlines()) == 1
        assert "no space left on device" in full.stderr
        assert store.read_bytes() == before
        assert leftovers(store) == []
        filler.unlink()
        resumed = run_cli(*arguments, "--resume")
        assert resumed.returncode == 0, resumed.stderr
        np.testing.assert_array_equal(read_images(store), expected)
        assert leftovers(store) == []
    finally:
        subprocess.run(["umount", str(folder)], check=False)
