"""In-place guards, the journal's torn-record handling and the superblock repair."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import struct
import subprocess
import sys
from dataclasses import replace

import h5py
import hdf5plugin
import numpy as np
import pytest

import fastmix
from fastmix.errors import BadInputError, WrongKeyError
from fastmix.store import mix_store, unmix_store
from fastmix.store.durable.journal import Journal, JournalDamaged, RunHeader
from fastmix.store.hdf5.crashrepair import chunk_extents, clear_open_flag, lookup3, shared_bytes
from fastmix.store.inplace import InPlaceRunStopped

WINDOW = 64
SPEC = fastmix.MixSpec(grid=(4, 4), donors=3)
KEY = fastmix.Key(bytes(range(32)))


def make_store(path, count: int = 256, compressed: bool = False, libver: str = "earliest"):
    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (count, 32, 32, 3), dtype=np.uint8)
    images[:, :16] //= 16
    labels = rng.integers(0, 4, count)
    filters = dict(hdf5plugin.LZ4()) if compressed else {}
    with h5py.File(path, "w", libver=libver) as file:
        file.create_dataset("images", data=images, chunks=(16, 32, 32, 3), **filters)
        file.create_dataset("labels", data=labels)
    return images, labels


def read_images(path) -> np.ndarray:
    with h5py.File(path, "r") as file:
        return file["images"][()]


def in_place(path, **options):
    options = {"spec": SPEC, "key": KEY, "window": WINDOW, "progress": False, **options}
    return mix_store(path, in_place=True, **options)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastmix.cli", *args], capture_output=True,
                          text=True, timeout=120)


def cli_in_place(store, key_file, *extra: str) -> subprocess.CompletedProcess:
    return cli("mix", str(store), "--in-place", "--key-file", str(key_file), "--window",
               str(WINDOW), "--privacy", "fast", "--grid", "4x4", "--donors", "3", "--quiet",
               *extra)


def leftovers(store) -> list[str]:
    return [path for path in (f"{store}.fastmix-journal", f"{store}.fastmix-lock")
            if os.path.exists(path)]


def assert_one_line_bad_input(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0], lines[0]


def assert_mixed_in_place(store, original, labels, finished: bool = True) -> None:
    """Assert that the store holds ``mix_array`` of ``original`` (``finished``: nothing beside)."""
    np.testing.assert_array_equal(read_images(store),
                                  fastmix.mix_array(original, labels, SPEC, KEY, window=WINDOW))
    if finished:
        assert leftovers(store) == []


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "key"
    KEY.save(path)
    return path


def interrupt_at_window(store, window_index: int, monkeypatch) -> None:
    """Stop an in-place run at ``window_index`` through the journal's ENOSPC hook."""
    monkeypatch.setenv("FASTMIX_TEST_JOURNAL_ENOSPC", str(window_index))
    with pytest.raises(InPlaceRunStopped, match="no space left on device"):
        in_place(store)
    monkeypatch.delenv("FASTMIX_TEST_JOURNAL_ENOSPC")
    journal = Journal.open(f"{store}.fastmix-journal")
    try:
        assert journal.committed == window_index
    finally:
        journal.close()


# -- success leaves nothing behind -----------------------------------------------------------

@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "lz4"])
def test_in_place_equals_mix_array_and_leaves_no_journal_or_lock(tmp_path, compressed):
    store = tmp_path / "store.h5"
    images, labels = make_store(store, compressed=compressed)
    report = in_place(store)
    assert_mixed_in_place(store, images, labels)
    assert report.windows == 4 and report.destination == str(store)
    with h5py.File(store, "r") as file:
        assert file["images"].attrs["fastmix_state"] == "complete"
        assert file["images"].attrs["fastmix_window"] == WINDOW


def test_same_memory_budget_gives_the_same_windows_and_bytes_as_new_file_mode(tmp_path):
    store = tmp_path / "store.h5"
    make_store(store, count=1024, compressed=True)
    copy = tmp_path / "copy.h5"
    copy.write_bytes(store.read_bytes())
    new_file = mix_store(copy, tmp_path / "out.h5", spec=SPEC, key=KEY, memory="3MiB",
                         progress=False)
    in_place = mix_store(store, spec=SPEC, key=KEY, memory="3MiB", progress=False,
                         in_place=True)
    assert new_file.windows > 1
    assert (in_place.windows, in_place.window) == (new_file.windows, new_file.window)
    np.testing.assert_array_equal(read_images(store), read_images(tmp_path / "out.h5"))


def test_unmix_in_place_restores_the_original(tmp_path):
    store = tmp_path / "store.h5"
    images, _ = make_store(store, compressed=True)
    in_place(store)
    unmix_store(store, key=KEY, in_place=True, progress=False)
    np.testing.assert_array_equal(read_images(store), images)
    with h5py.File(store, "r") as file:
        assert not [name for name in file["images"].attrs if name.startswith("fastmix_")]
    assert leftovers(store) == []


def test_resume_with_nothing_pending_starts_a_fresh_run(tmp_path):
    store = tmp_path / "store.h5"
    images, labels = make_store(store)
    in_place(store, resume=True)
    assert_mixed_in_place(store, images, labels, finished=False)


# -- pending runs ----------------------------------------------------------------------------

def test_plain_run_over_a_pending_run_is_refused_and_resume_finishes(tmp_path, key_file,
                                                                      monkeypatch):
    store = tmp_path / "store.h5"
    images, labels = make_store(store, compressed=True, libver="latest")
    interrupt_at_window(store, 2, monkeypatch)
    with h5py.File(store, "r") as file:
        assert file["images"].attrs["fastmix_state"] == "in-progress"
    before = store.read_bytes()
    assert_one_line_bad_input(cli_in_place(store, key_file), "interrupted", "--resume",
                              "2 of 4 windows")
    with pytest.raises(BadInputError, match="resume=True"):
        in_place(store, force=True)
    assert store.read_bytes() == before
    resumed = cli_in_place(store, key_file, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert_mixed_in_place(store, images, labels)


def test_resume_with_another_key_or_spec_is_refused(tmp_path, monkeypatch):
    store = tmp_path / "store.h5"
    images, labels = make_store(store)
    interrupt_at_window(store, 1, monkeypatch)
    with pytest.raises(WrongKeyError, match="another key"):
        in_place(store, resume=True, key=fastmix.Key(bytes(32)))
    with pytest.raises(BadInputError, match="same options"):
        in_place(store, resume=True, spec=fastmix.MixSpec(grid=(2, 2), donors=3))
    in_place(store, resume=True)
    assert_mixed_in_place(store, images, labels, finished=False)


def test_half_rewritten_store_without_its_journal_is_refused(tmp_path, monkeypatch):
    store = tmp_path / "store.h5"
    make_store(store)
    interrupt_at_window(store, 1, monkeypatch)
    os.unlink(f"{store}.fastmix-journal")
    for resume in (False, True):
        with pytest.raises(BadInputError, match=r"journal .* is missing"):
            in_place(store, resume=resume)


def test_new_file_mode_refuses_a_store_left_half_rewritten(tmp_path, key_file, monkeypatch):
    """A new-file run refuses a store an interrupted in-place run left half rewritten.

    Some of its windows are mixed and others not, so no new-file run may read it as a whole;
    the message names the way to finish it.
    """
    store = tmp_path / "store.h5"
    make_store(store)
    in_place(store)
    # An interrupted unmix: its journal names the operation to resume.
    monkeypatch.setenv("FASTMIX_TEST_JOURNAL_ENOSPC", "1")
    with pytest.raises(InPlaceRunStopped, match="no space left on device"):
        unmix_store(store, key=KEY, in_place=True, progress=False)
    monkeypatch.delenv("FASTMIX_TEST_JOURNAL_ENOSPC")
    before = store.read_bytes()
    output = tmp_path / "out.h5"
    with pytest.raises(BadInputError, match=r"fastmix unmix .* --in-place --resume"):
        unmix_store(store, output, key=KEY, progress=False)
    with pytest.raises(BadInputError, match=r"interrupted in-place run.*--in-place --resume"):
        mix_store(store, output, spec=SPEC, key=KEY, window=WINDOW, progress=False,
                  force=True)
    for command in (["mix", str(store), str(output), "--force"], ["unmix", str(store),
                                                                   str(output)]):
        assert_one_line_bad_input(cli(*command, "--key-file", str(key_file), "--quiet"),
                                  "in-progress", "fastmix unmix", "--in-place --resume")
    assert not output.exists()
    assert store.read_bytes() == before
    # Without its journal the store still counts as half rewritten.
    os.unlink(f"{store}.fastmix-journal")
    with pytest.raises(BadInputError, match="--in-place --resume"):
        mix_store(store, output, spec=SPEC, key=KEY, window=WINDOW, progress=False,
                  force=True)
    assert not output.exists()


def test_resume_through_the_cli_uses_the_recorded_spec_and_window(tmp_path, key_file):
    """``--resume`` with only the key finishes a ``--privacy fast`` run exactly.

    Not the default preset, and exactly as an uninterrupted new-file run; conflicting flags
    are refused.
    """
    store = tmp_path / "store.h5"
    make_store(store, compressed=True)
    copy = tmp_path / "copy.h5"
    copy.write_bytes(store.read_bytes())
    expected = tmp_path / "expected.h5"
    flags = ["--key-file", str(key_file), "--window", str(WINDOW), "--privacy", "fast",
             "--quiet"]
    uninterrupted = cli("mix", str(copy), str(expected), *flags)
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    failing = subprocess.run([sys.executable, "-m", "fastmix.cli", "mix", str(store),
                              "--in-place", *flags], capture_output=True, text=True,
                             timeout=120, env={**os.environ, "FASTMIX_TEST_JOURNAL_ENOSPC": "2"})
    assert failing.returncode == 1, failing.stderr
    assert "--resume" in failing.stderr
    before = read_images(store)
    resume = ["mix", str(store), "--in-place", "--resume", "--key-file", str(key_file)]
    assert_one_line_bad_input(cli(*resume, "--privacy", "balanced", "--quiet"),
                              "interrupted run mixes with spec", "--resume --key-file KEY")
    assert_one_line_bad_input(cli(*resume, "--window", str(2 * WINDOW), "--quiet"),
                              f"windows of {WINDOW} images, not {2 * WINDOW}")
    np.testing.assert_array_equal(read_images(store), before)
    resumed = cli(*resume)
    assert resumed.returncode == 0, resumed.stderr
    assert "as recorded by the interrupted run" in resumed.stdout
    assert "no hardening" in resumed.stdout
    np.testing.assert_array_equal(read_images(store), read_images(expected))
    with h5py.File(store, "r") as mixed, h5py.File(expected, "r") as reference:
        for name in ("fastmix_spec", "fastmix_window", "fastmix_key_check"):
            assert mixed["images"].attrs[name] == reference["images"].attrs[name]
    assert leftovers(store) == []


def test_a_resume_asking_for_another_hardening_format_is_refused(tmp_path, monkeypatch):
    """A run interrupted in format 1 resumes in format 1: the new default never mixes in."""
    store = tmp_path / "store.h5"
    make_store(store)
    expected = tmp_path / "expected.h5"
    older = fastmix.MixSpec.preset("balanced", grid=(4, 4), hardening_format=1)
    mix_store(store, expected, spec=older, key=KEY, window=WINDOW, progress=False)
    monkeypatch.setenv("FASTMIX_TEST_JOURNAL_ENOSPC", "2")
    with pytest.raises(InPlaceRunStopped):
        in_place(store, spec=older, one_way=True)
    monkeypatch.delenv("FASTMIX_TEST_JOURNAL_ENOSPC")
    before = store.read_bytes()
    newer = fastmix.MixSpec.preset("balanced", grid=(4, 4))
    assert newer.hardening_format == 2 and newer.canonical() == older.canonical()
    with pytest.raises(BadInputError, match=r"hardening format 1, not 2.*resume without the"):
        in_place(store, spec=newer, resume=True, one_way=True)
    assert store.read_bytes() == before
    in_place(store, spec=None, resume=True, one_way=True)
    np.testing.assert_array_equal(read_images(store), read_images(expected))
    with h5py.File(store, "r") as mixed:
        assert "fastmix_hardening_format" not in mixed["images"].attrs  # format 1's record


def test_a_plan_rule_1_run_resumes_with_the_options_it_was_started_with(tmp_path, monkeypatch):
    """Rule 1 (fastmix 0.1.0) implies format 1: the same options resume it, in format 1."""
    store = tmp_path / "store.h5"
    make_store(store)
    expected = tmp_path / "expected.h5"
    older = fastmix.MixSpec.preset("balanced", grid=(4, 4)).with_plan_rule(1)
    assert older.hardening_format == 1
    mix_store(store, expected, spec=older, key=KEY, window=WINDOW, progress=False)
    monkeypatch.setenv("FASTMIX_TEST_JOURNAL_ENOSPC", "2")
    with pytest.raises(InPlaceRunStopped):
        in_place(store, spec=older, one_way=True)
    monkeypatch.delenv("FASTMIX_TEST_JOURNAL_ENOSPC")
    in_place(store, spec=fastmix.MixSpec.preset("balanced", grid=(4, 4)), resume=True,
             one_way=True)
    np.testing.assert_array_equal(read_images(store), read_images(expected))


# -- other guards ----------------------------------------------------------------------------

def test_already_mixed_store_is_refused_unless_force(tmp_path, key_file):
    store = tmp_path / "store.h5"
    _images, labels = make_store(store)
    in_place(store)
    once = read_images(store)
    assert_one_line_bad_input(cli_in_place(store, key_file), "already mixed", "--force")
    np.testing.assert_array_equal(read_images(store), once)
    forced = cli_in_place(store, key_file, "--force")
    assert forced.returncode == 0, forced.stderr
    assert_mixed_in_place(store, once, labels)


def test_read_only_store_is_refused(tmp_path, key_file):
    store = tmp_path / "store.h5"
    make_store(store)
    before = store.read_bytes()
    store.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    try:
        assert_one_line_bad_input(cli_in_place(store, key_file), "read-only")
    finally:
        store.chmod(stat.S_IRUSR | stat.S_IWUSR)
    assert store.read_bytes() == before
    assert leftovers(store) == []


def test_second_process_is_refused_while_the_lock_is_held(tmp_path, key_file):
    store = tmp_path / "store.h5"
    make_store(store)
    before = store.read_bytes()
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; from fastmix.store.durable.lock import StoreLock; "
         "StoreLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)",
         str(store)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert_one_line_bad_input(cli_in_place(store, key_file), "being rewritten in place",
                                  f"process {holder.pid}")
        with pytest.raises(BadInputError, match="being rewritten in place"):
            in_place(store)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert store.read_bytes() == before
    # The holder died without releasing: its lock file is stale and is taken over.
    assert os.path.exists(f"{store}.fastmix-lock")
    in_place(store)
    assert leftovers(store) == []


def test_stale_lock_of_a_dead_pid_is_recovered(tmp_path):
    store = tmp_path / "store.h5"
    images, labels = make_store(store)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with open(f"{store}.fastmix-lock", "w") as handle:
        json.dump({"pid": dead.pid, "host": socket.gethostname()}, handle)
    in_place(store)
    assert_mixed_in_place(store, images, labels)


# -- the journal -----------------------------------------------------------------------------

def test_journal_detects_torn_records_and_torn_commits(tmp_path):
    path = str(tmp_path / "journal")
    header = RunHeader(operation="mix", images="/images", labels="labels", spec=SPEC,
                       window=64, count=640, windows=10, key_check=KEY.check_value,
                       unpartnered=0, paired=0, shape=(640, 8, 8), dtype="|u1")
    journal = Journal.create(path, header, max_payload=10_000, key=KEY)
    reopened = Journal.open(path)
    assert reopened.header == replace(header, max_payload=10_000)
    reopened.close()
    window = np.arange(10_000, dtype=np.uint8).reshape(100, 100)
    buffer = np.empty(10_000, dtype=np.uint8)
    journal.commit(3)
    assert journal.pending_undo(buffer) is None  # no record yet
    journal.write_undo(3, 192, 256, window)
    record = journal.pending_undo(buffer)
    assert (record.index, record.start, record.stop) == (3, 192, 256)
    assert bytes(record.payload) == window.tobytes()
    # Window 4 goes to the other slot; window 3's record stays until window 3 commits.
    journal.write_undo(4, 256, 320, window[::-1])
    assert bytes(journal.pending_undo(buffer).payload) == window.tobytes()
    journal.commit(4)
    assert bytes(journal.pending_undo(buffer).payload) == window[::-1].tobytes()
    journal.commit(5)
    assert journal.pending_undo(buffer) is None  # window 5 has no record: nothing to undo
    journal.close()
    # A torn payload byte in the record of the window being written is a refusal.
    journal = Journal.open(path)
    journal.write_undo(5, 320, 384, window)
    os.pwrite(journal.descriptor, b"\xff", journal._slot(5) + 40 + 5_000)
    with pytest.raises(JournalDamaged, match="undo record of window 5"):
        journal.pending_undo(buffer)
    with pytest.raises(JournalDamaged, match="undo record of window 5"):
        Journal.open(path)
    # One damaged state slot: the other holds the same state.
    journal.write_undo(5, 320, 384, window)
    journal.commit(6)
    os.pwrite(journal.descriptor, b"\0\0", 4096 + 12)
    assert journal.committed == 6
    journal.close()
    assert Journal.open(path).committed == 6
    # A torn header after records were written is a refusal, not a fresh start.
    with open(path, "r+b") as handle:
        handle.seek(20)
        handle.write(b"#")
    with pytest.raises(JournalDamaged, match="header"):
        Journal.open(path)
    # A torn header before any record: the journal was never used.
    fresh = str(tmp_path / "fresh")
    Journal.create(fresh, header, max_payload=10_000, key=KEY).close()
    with open(fresh, "r+b") as handle:
        handle.seek(20)
        handle.write(b"#")
    assert Journal.open(fresh) is None


# -- superblock repair -----------------------------------------------------------------------

def test_lookup3_matches_the_hdf5_superblock_checksum(tmp_path):
    path = tmp_path / "latest.h5"
    with h5py.File(path, "w", libver="latest") as file:
        file["x"] = np.arange(3)
    head = path.read_bytes()[:48]
    assert head[8] >= 2
    assert struct.unpack("<I", head[44:48])[0] == lookup3(head[:44])
    assert lookup3(b"") == 0xDEADBEEF


def test_open_for_write_flag_left_by_a_killed_writer_is_cleared(tmp_path):
    path = tmp_path / "killed.h5"
    make_store(path, compressed=True, libver="latest")
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time, h5py, hdf5plugin; f = h5py.File(sys.argv[1], 'r+'); "
         "f['images'][0:16] = 0; f.flush(); print('open', flush=True); time.sleep(60)",
         str(path)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "open"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(path, "r")
    assert clear_open_flag(path) is True
    with h5py.File(path, "r") as file:
        assert not file["images"][0:16].any()
    assert clear_open_flag(path) is False


def test_chunk_extents_sharing_bytes_are_found(tmp_path):
    path = tmp_path / "store.h5"
    make_store(path, compressed=True)
    with h5py.File(path, "r") as file:
        extents = chunk_extents(file["images"])
    assert len(extents) == 16
    assert shared_bytes(extents) is None
    offset, size = extents[3]
    damaged = sorted([*extents, (offset + size // 2, size)])
    assert shared_bytes(damaged) == offset + size // 2
