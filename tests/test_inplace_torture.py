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
from fastmix.store.durable.journal import Journal, JournalDamaged
from fastmix.store.hdf5.crashrepair import clear_open_flag

WINDOW = 64
#: SIGKILLs per torture run; the run after the last one finishes undisturbed.
KILLS = 15
CHUNK = 16
SPEC_ARGS = ["--privacy", "fast", "--grid", "4x4", "--donors", "3"]
SPEC = fastmix.MixSpec(grid=(4, 4), donors=3)


def make_store(path, count: int, compressed: bool, seed: int = 1) -> None:
    """Return a store of photo-like images: smooth halves compress, noisy halves do not."""
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
    """Windows committed, read while a run may be writing (-1 when not readable now)."""
    path = f"{store}.fastmix-journal"
    try:
        journal = Journal.open(path)
    except (OSError, JournalDamaged):  # gone, or caught between two writes of a live run
        return -1
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
        # Killed before its journal existed or after it removed it: a v110+ store may be
        # left flagged open, which a resume clears first (as it does here).
        clear_open_flag(store)
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
    # Kills stop after KILLS, so the run always ends however slow the machine is; every
    # wait below is on the run's progress (its lock, its commits), never on a deadline.
    for attempt in range(KILLS + 1):
        command = cli("mix", str(store), "--in-place", "--key-file", str(key_file),
                      "--window", str(WINDOW), *SPEC_ARGS, "--quiet",
                      *(["--resume"] if attempt else []))
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        # Kill at a random moment of the run proper: mostly while windows are written (after
        # this run has committed one), sometimes anywhere from the start (recovery included).
        before = committed(store)
        anywhere = schedule.random() < 0.25
        while process.poll() is None and attempt < KILLS:
            if lock_owner(store) == process.pid and (anywhere or committed(store) > before):
                break
            time.sleep(0.002)
        if attempt < KILLS:
            time.sleep(schedule.uniform(0.0, 1.5 if anywhere else 0.12))
        if process.poll() is None and attempt < KILLS:
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


# -- a damaged journal: refusal or the right bytes, never silent wrong bytes ------------------

DAMAGE_COUNT = 512  # 8 windows of 64 raw 32x32x3 images


def stop_at_window_3(store, key) -> None:
    """Mix ``store`` in place until the journal's ENOSPC hook stops the run at window 3."""
    os.environ["FASTMIX_TEST_JOURNAL_ENOSPC"] = "3"
    try:
        with pytest.raises(fastmix.errors.FastmixError):
            mix_store(store, spec=SPEC, key=key, in_place=True, window=WINDOW, progress=False)
    finally:
        del os.environ["FASTMIX_TEST_JOURNAL_ENOSPC"]


@pytest.fixture(scope="module")
def crashed(tmp_path_factory):
    """Return a store and journal as a crash leaves them while window 3 is half written.

    Windows 0-2 are committed; window 3's undo record is complete and made ready, and the
    store holds garbage in half of window 3 (a torn write). Returns the folder, the
    expected result and the store's bytes.
    """
    folder = tmp_path_factory.mktemp("crashed")
    store = folder / "store.h5"
    make_store(store, DAMAGE_COUNT, compressed=False)
    key = fastmix.Key(bytes(range(32)))
    expected = reference(folder, store, key)
    original = read_images(store)
    stop_at_window_3(store, key)
    journal = Journal.open(f"{store}.fastmix-journal")
    assert (journal.committed, journal.ready) == (3, 3)
    journal.write_undo(3, 3 * WINDOW, 4 * WINDOW, original[3 * WINDOW:4 * WINDOW])
    assert journal.ready == 4
    journal.close()
    with h5py.File(store, "r+") as file:
        file["images"][3 * WINDOW:3 * WINDOW + 32] = 255 - original[3 * WINDOW:3 * WINDOW + 32]
    for leftover in ("reference.h5", "reference-source.h5"):
        os.remove(folder / leftover)
    return folder, expected, store.read_bytes(), key


def resume_copy(tmp_path, crashed, damage) -> tuple[str, np.ndarray | None]:
    """Copy the crashed pair, apply ``damage(journal_path)``, resume; return what happened."""
    folder, expected, store_bytes, key = crashed
    store = tmp_path / "store.h5"
    shutil.copyfile(folder / "store.h5", store)
    shutil.copyfile(folder / "store.h5.fastmix-journal", f"{store}.fastmix-journal")
    damage(f"{store}.fastmix-journal")
    try:
        mix_store(store, spec=SPEC, key=key, in_place=True, resume=True, window=WINDOW,
                  progress=False)
    except fastmix.errors.BadInputError as error:
        assert store.read_bytes() == store_bytes, "a refusal changed the store"
        assert "\n" not in str(error)
        return str(error), None
    np.testing.assert_array_equal(read_images(store), expected)
    return "", read_images(store)


def test_intact_crash_state_resumes_to_the_right_bytes(tmp_path, crashed):
    refusal, _ = resume_copy(tmp_path, crashed, lambda path: None)
    assert refusal == ""


def journal_cuts(folder) -> list[int]:
    journal = Journal.open(f"{folder / 'store.h5'}.fastmix-journal")
    slot, size = journal.slot_size, journal.size
    journal.close()
    record = 8192 + slot  # window 3's record, in slot 1
    points = [0, 12, 4096, 4096 + 20, 4608, 5120, 8192, 8192 + 20, 8192 + slot // 2,
              record, record + 40, record + slot // 2, record + slot - 4096, size - 1]
    return sorted(set(points))


def test_a_journal_cut_anywhere_is_refused(tmp_path, crashed):
    for cut in journal_cuts(crashed[0]):
        def truncate(path, cut=cut):
            os.truncate(path, cut)

        (tmp_path / f"cut{cut}").mkdir()
        refusal, _ = resume_copy(tmp_path / f"cut{cut}", crashed, truncate)
        assert "is damaged" in refusal and "Restore the store" in refusal, (cut, refusal)


def test_zeroed_blocks_give_a_refusal_or_the_right_bytes(tmp_path, crashed):
    journal = Journal.open(f"{crashed[0] / 'store.h5'}.fastmix-journal")
    slot, size = journal.slot_size, journal.size
    journal.close()
    record = 8192 + slot
    outcomes = {}
    for offset in sorted({0, 4096, 8192, 8192 + slot // 2, record, record + 4096,
                          record + slot // 2, record + slot - 4096, size - 4096}):
        def zero(path, offset=offset):
            with open(path, "r+b") as handle:
                handle.seek(offset)
                handle.write(b"\0" * 4096)

        (tmp_path / f"zero{offset}").mkdir()
        refusal, _ = resume_copy(tmp_path / f"zero{offset}", crashed, zero)
        outcomes[offset] = refusal
    # The blocks window 3's resume needs are refused; the others resume correctly (checked
    # inside resume_copy).
    assert outcomes[record] and outcomes[record + slot // 2] and outcomes[4096]
    assert outcomes[8192 + slot // 2] == ""  # window 2's old record is not needed


def test_a_stale_journal_of_another_run_is_refused(tmp_path, crashed):
    _folder, _expected, _, key = crashed
    other = tmp_path / "other"
    other.mkdir()
    # Another run of the same store, stopped at the same point: a different run identifier.
    store = other / "store.h5"
    make_store(store, DAMAGE_COUNT, compressed=False)
    stop_at_window_3(store, key)

    def swap(path):
        shutil.copyfile(f"{store}.fastmix-journal", path)

    (tmp_path / "swapped").mkdir()
    refusal, _ = resume_copy(tmp_path / "swapped", crashed, swap)
    assert "another run" in refusal
    # A journal left beside a store that is not being rewritten at all.
    plain = tmp_path / "plain.h5"
    make_store(plain, DAMAGE_COUNT, compressed=False)
    before = plain.read_bytes()
    shutil.copyfile(f"{store}.fastmix-journal", f"{plain}.fastmix-journal")
    with pytest.raises(fastmix.errors.BadInputError, match="stale"):
        mix_store(plain, spec=SPEC, key=key, in_place=True, resume=True, window=WINDOW,
                  progress=False)
    assert plain.read_bytes() == before


# -- kills at the edges of a run: a resume never fails ----------------------------------------
#
# A run killed while it creates its journal, or after it has completed, must be finished by
# ``--resume`` with exit 0. The child below kills itself (SIGKILL) at one named step, so each
# window is hit deterministically, without timing.

KILL_AT_STEP = r"""
import os, signal, sys
import fastmix
from fastmix.store.durable import journal
from fastmix.store.inplace import run as inplace

step, store, operation = sys.argv[1], sys.argv[2], sys.argv[3]

def die():
    os.kill(os.getpid(), signal.SIGKILL)

def after(owner, name, wanted):
    real = getattr(owner, name)
    def wrapper(*args, **kwargs):
        result = real(*args, **kwargs)
        if step == wanted:
            die()
        return result
    setattr(owner, name, wrapper)

real_fallocate = os.posix_fallocate
def fallocate(*args):
    if step == "before-preallocation":
        die()
    return real_fallocate(*args)
os.posix_fallocate = fallocate
after(os, "posix_fallocate", "after-preallocation")
after(journal, "_write_all", "after-journal-header")  # the header is its first write
after(os, "rename", "after-journal-rename")
after(inplace, "_finish", "after-finish")
after(journal.Journal, "remove", "after-journal-removed")
after(inplace, "_forget_run", "after-run-forgotten")
key = fastmix.Key(bytes(range(32)))
if operation == "mix":
    fastmix.mix_store(store, spec=fastmix.MixSpec(grid=(4, 4), donors=3), key=key,
                      in_place=True, window=64, progress=False)
else:
    fastmix.unmix_store(store, key=key, in_place=True, progress=False)
"""

CREATION_STEPS = ["before-preallocation", "after-preallocation", "after-journal-header",
                  "after-journal-rename"]
COMPLETION_STEPS = ["after-finish", "after-journal-removed", "after-run-forgotten"]


def kill_at(step: str, store, operation: str = "mix") -> None:
    child = subprocess.run([sys.executable, "-c", KILL_AT_STEP, step, str(store), operation],
                           capture_output=True, text=True, timeout=300)
    wanted = 0 if step == "none" else -signal.SIGKILL
    assert child.returncode == wanted, (step, child.returncode, child.stderr)


def resume_cli(store, key_file, operation: str = "mix",
               *extra: str) -> subprocess.CompletedProcess:
    # The run's own options: a run killed before its journal exists recorded none.
    options = ["--window", str(WINDOW), *SPEC_ARGS] if operation == "mix" else []
    return run_cli(operation, str(store), "--in-place", "--key-file", str(key_file),
                   "--resume", "--quiet", *options, *extra)


def all_leftovers(store) -> list[str]:
    return sorted(path.name for path in store.parent.iterdir()
                  if path.name.startswith(f"{store.name}.fastmix"))


def store_and_key(tmp_path, compressed=False):
    """Return a fresh 256-image store, its key file and the key."""
    store = tmp_path / "store.h5"
    make_store(store, 256, compressed=compressed)
    key_file = tmp_path / "key"
    key = fastmix.Key(bytes(range(32)))
    key.save(key_file)
    return store, key_file, key


# The v110+ (LZ4) store is left flagged "open for write" by a kill while it is open.
@pytest.mark.parametrize("step,compressed",
                         [(step, False) for step in CREATION_STEPS + COMPLETION_STEPS]
                         + [("after-preallocation", True), ("after-journal-removed", True)])
def test_a_kill_at_the_edges_of_a_run_is_resumed_with_exit_0(tmp_path, step, compressed):
    store, key_file, key = store_and_key(tmp_path, compressed)
    expected = reference(tmp_path, store, key)
    kill_at(step, store)
    resumed = resume_cli(store, key_file)
    assert resumed.returncode == 0, (step, resumed.stderr)
    np.testing.assert_array_equal(read_images(store), expected)
    assert all_leftovers(store) == []
    with h5py.File(store, "r") as file:
        assert file["images"].attrs["fastmix_state"] == "complete"
        assert "fastmix_run" not in file["images"].attrs
    again = resume_cli(store, key_file)  # a second resume finds the run complete too
    assert again.returncode == 0, (step, again.stderr)
    np.testing.assert_array_equal(read_images(store), expected)


@pytest.mark.parametrize("step", ["after-finish", "after-journal-removed"])
def test_resume_with_force_of_a_run_killed_as_it_ended_does_not_mix_twice(tmp_path, step):
    """The store names the run until its journal is gone, so --force cannot mix again."""
    store, key_file, key = store_and_key(tmp_path)
    expected = reference(tmp_path, store, key)
    kill_at(step, store)
    resumed = resume_cli(store, key_file, "mix", "--force")
    assert resumed.returncode == 0, resumed.stderr
    np.testing.assert_array_equal(read_images(store), expected)
    assert all_leftovers(store) == []


def test_a_resume_after_a_complete_run_still_refuses_another_run(tmp_path):
    """"Already complete" holds only for this key and these options; others are refused."""
    store, key_file, _ = store_and_key(tmp_path)
    kill_at("after-run-forgotten", store)
    # The kill leaves HDF5's "open for write" flag set; the refusal may clear it, no more.
    before = read_images(store), attributes(store)
    other_key = tmp_path / "other-key"
    fastmix.Key(bytes(32)).save(other_key)
    for key, extra in ((other_key, SPEC_ARGS), (key_file, ["--privacy", "fast", "--grid",
                                                          "2x2", "--donors", "3"])):
        refused = run_cli("mix", str(store), "--in-place", "--key-file", str(key), "--resume",
                          "--quiet", "--window", str(WINDOW), *extra)
        assert refused.returncode == 2 and "already mixed" in refused.stderr, refused.stderr
        np.testing.assert_array_equal(read_images(store), before[0])
        assert attributes(store) == before[1]


def attributes(store) -> dict:
    with h5py.File(store, "r") as file:
        return {name: str(value) for name, value in file["images"].attrs.items()}


@pytest.mark.parametrize("step", ["after-journal-removed", "after-run-forgotten"])
def test_a_kill_after_an_in_place_unmix_completed(tmp_path, step):
    store, key_file, _ = store_and_key(tmp_path)
    original = read_images(store)
    kill_at("none", store)  # an uninterrupted mix: the child is killed as it ends
    kill_at(step, store, "unmix")
    resumed = resume_cli(store, key_file, "unmix")
    # Whether the store still names the run or not (a plain store again), the unmix is
    # complete: exit 0, as a resumed mix that finds its store mixed (issue 21).
    assert resumed.returncode == 0, resumed.stderr
    np.testing.assert_array_equal(read_images(store), original)
    assert all_leftovers(store) == []
