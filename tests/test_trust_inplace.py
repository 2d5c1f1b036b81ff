"""Issue 21, in place: nothing lost, no spec changed by a resume, no key deleted that mixed.

Real stores, real processes, the real command line. Each test is the regression test of one
defect the trials found (named in its docstring); each failed on the code before the fix.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import struct
import subprocess
import sys
import textwrap

import h5py
import hdf5plugin
import numpy as np
import pytest
from test_inplace_guards import make_store

import fastmix
from fastmix.cli import main
from fastmix.errors import BadInputError
from fastmix.store import mix_store
from fastmix.store.durable import journal as journal_module
from fastmix.store.inplace import InPlaceRunStopped

WINDOW = 64
SPEC = fastmix.MixSpec(grid=(4, 4), donors=3)
SPEC_ARGS = ["--privacy", "fast", "--grid", "4x4", "--donors", "3", "--window", str(WINDOW)]
KEY = fastmix.Key(bytes(range(32)))
HOOK = "FASTMIX_TEST_JOURNAL_ENOSPC"


def read_images(path, rows=slice(None)) -> np.ndarray:
    with h5py.File(path, "r") as file:
        return file["images"][rows]


def expected(images, labels) -> np.ndarray:
    return fastmix.mix_array(images, labels, SPEC, KEY, window=WINDOW)


def cli(*args, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``fastmix ARGS`` (``fastmix.cli.main``, in this process) with ``env`` set."""
    stdout, stderr = io.StringIO(), io.StringIO()
    saved = {name: os.environ.get(name) for name in env or {}}
    os.environ.update(env or {})
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            status = main([str(arg) for arg in args])
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return subprocess.CompletedProcess(args, status, stdout.getvalue(), stderr.getvalue())


def one_line(result: subprocess.CompletedProcess, status: int = 2) -> str:
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def beside(store) -> list[str]:
    """Return the journal, lock and partial files beside ``store``."""
    folder, name = os.path.split(os.path.realpath(store))
    return sorted(entry for entry in os.listdir(folder) if entry.startswith(f"{name}.fastmix"))


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "key"
    KEY.save(path)
    return path


def interrupt(store, key_file, at_window: int, *extra) -> None:
    """Stop an in-place mix (reversible) by a full disk at ``at_window``: resumable."""
    stopped = cli("mix", store, "--in-place", "--key-file", key_file, *SPEC_ARGS, "--quiet",
                  *extra, env={HOOK: str(at_window)})
    assert stopped.returncode == 1 and "--resume" in stopped.stderr, stopped.stderr
    assert os.path.exists(f"{os.path.realpath(store)}.fastmix-journal")


def damage_chunk(store, first_image: int) -> None:
    """Make the LZ4 chunk that starts at ``first_image`` undecodable (its first tokens)."""
    with h5py.File(store, "r") as file:
        info = file["images"].id.get_chunk_info_by_coord((first_image, 0, 0, 0))
    with open(store, "r+b") as handle:
        handle.seek(info.byte_offset + 16)  # after the 12-byte header and the block's size
        handle.write(b"\xff" * 64)


# -- item 2: a resume never changes the spec ----------------------------------------------------

def test_resume_with_nothing_recorded_refuses_instead_of_mixing_with_the_default(tmp_path,
                                                                                  key_file):
    """A reversible run killed before its journal recorded the spec, resumed with the key only.

    It used to be mixed with the one-way default preset, exit 0, originals gone. Now nothing
    is recorded, so nothing is guessed: exit 2, the store untouched, asking for the options.
    """
    store = tmp_path / "store.h5"
    images, labels = make_store(store)
    before = store.read_bytes()
    line = one_line(cli("mix", store, "--in-place", "--resume", "--key-file", key_file))
    assert "no interrupted in-place run is recorded" in line and "original" in line
    assert "--privacy fast" in line
    assert store.read_bytes() == before and beside(store) == []
    with pytest.raises(BadInputError, match="no interrupted in-place run"):
        mix_store(store, key=KEY, in_place=True, resume=True, progress=False)
    # The original options given again start the run; it is the reversible one.
    done = cli("mix", store, "--in-place", "--resume", "--key-file", key_file, *SPEC_ARGS,
               "--quiet")
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(read_images(store), expected(images, labels))


KILL_AT = textwrap.dedent(r"""
    import os, signal, sys
    import fastmix
    from fastmix.store.durable import journal

    step, store = sys.argv[1], sys.argv[2]

    def die(*_):
        os.kill(os.getpid(), signal.SIGKILL)

    real_fallocate, real_rename = os.posix_fallocate, os.rename
    os.posix_fallocate = lambda *a: die() if step == "before-preallocation" else (
        real_fallocate(*a), step == "after-preallocation" and die())
    real_write_all = journal._write_all
    def write_all(*a):
        real_write_all(*a)
        if step == "after-journal-header":
            die()
    journal._write_all = write_all
    def rename(*a):
        real_rename(*a)
        if step == "after-journal-rename":
            die()
    os.rename = rename
    fastmix.mix_store(store, spec=fastmix.MixSpec(grid=(4, 4), donors=3),
                      key=fastmix.Key(bytes(range(32))), in_place=True, window=64,
                      progress=False)
""")


@pytest.mark.parametrize("step", ["before-preallocation", "after-preallocation",
                                  "after-journal-header", "after-journal-rename"])
def test_no_byte_of_the_store_changes_before_the_spec_is_durable(tmp_path, key_file, step):
    """A kill at any step of making the journal leaves the store identical, byte for byte.

    The v110+ format marks a file open for writing: the old code opened the store for writing
    before its journal existed, so a kill there changed it with nothing recorded. Once the
    journal is in place, ``--resume`` with the key only finishes with the recorded spec.
    """
    store = tmp_path / "store.h5"
    images, labels = make_store(store, libver="latest")
    before = store.read_bytes()
    child = subprocess.run([sys.executable, "-c", KILL_AT, step, str(store)],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert store.read_bytes() == before
    resumed = cli("mix", store, "--in-place", "--resume", "--key-file", key_file, "--quiet")
    if step == "after-journal-rename":  # recorded: finished with the recorded spec
        assert resumed.returncode == 0, resumed.stderr
        np.testing.assert_array_equal(read_images(store), expected(images, labels))
    else:  # nothing recorded: refused, nothing changed
        assert "no interrupted in-place run is recorded" in one_line(resumed)
        assert store.read_bytes() == before
    assert beside(store) == []


def _edit_journal_header(path, edit) -> None:
    """Apply ``edit`` to the header's JSON and make the header's own digest match again.

    What someone who edits the file can do: the digest is not keyed. The MAC (journal format
    3 and later) is left as it was.
    """
    mac = 32 if journal_module.JOURNAL_FORMAT >= 3 else 0
    with open(path, "r+b") as handle:
        head = handle.read(4096)
        (length,) = struct.unpack_from("<I", head, 8)
        text = edit(head[12:12 + length])
        body = text + head[12 + length:12 + length + mac]
        block = head[:8] + struct.pack("<I", len(text)) + body + journal_module._digest(body)
        handle.seek(0)
        handle.write(block.ljust(4096, b"\0"))


def test_an_edited_journal_header_is_refused(tmp_path, key_file):
    """The journal header is bound to the key: an edited spec is never resumed with."""
    store = tmp_path / "store.h5"
    make_store(store)
    interrupt(store, key_file, 2)
    journal = f"{store}.fastmix-journal"
    _edit_journal_header(journal, lambda text: text.replace(b'"donors": 3', b'"donors": 2'))
    before = store.read_bytes()
    line = one_line(cli("mix", store, "--in-place", "--resume", "--key-file", key_file))
    assert "does not verify" in line
    assert store.read_bytes() == before and os.path.exists(journal)


def test_one_way_in_place_needs_explicit_consent(tmp_path, key_file):
    """The default preset is one-way: in place over the only copy it asks first."""
    store = tmp_path / "store.h5"
    images, _ = make_store(store)
    before = store.read_bytes()
    line = one_line(cli("mix", store, "--in-place", "--key-file", key_file))
    assert "one-way" in line and "--privacy fast" in line and "--one-way" in line
    assert store.read_bytes() == before and beside(store) == []
    with pytest.raises(BadInputError, match=r"one_way=True") as raised:
        mix_store(store, spec=fastmix.MixSpec(mode="paper"), key=KEY, in_place=True,
                  progress=False)
    assert "MixSpec.preset('fast')" in str(raised.value)
    assert store.read_bytes() == before
    consented = cli("mix", store, "--in-place", "--key-file", key_file, "--one-way",
                    "--mode", "paper", *SPEC_ARGS, "--quiet")
    assert consented.returncode == 0, consented.stderr
    assert not np.array_equal(read_images(store), images) and beside(store) == []


# -- item 3: a key that mixed a byte is never deleted ------------------------------------------

def test_a_new_key_is_deleted_only_if_the_store_is_unchanged(tmp_path):
    """``--new-key --in-place`` on a store with a damaged later chunk.

    It used to mix the first windows, fail, and delete the new key: those windows were lost
    for good. Either the store is unchanged (a key made for nothing may go) or the key stays.
    """
    store = tmp_path / "store.h5"
    make_store(store, compressed=True)
    damage_chunk(store, 3 * WINDOW)
    before = store.read_bytes()
    key_file = tmp_path / "new.key"
    failed = cli("mix", store, "--in-place", "--key-file", key_file, "--new-key", *SPEC_ARGS,
                 "--quiet")
    assert failed.returncode == 2, failed.stderr
    assert key_file.exists() or store.read_bytes() == before
    # A run stopped after it changed the store keeps its new key, whatever stopped it.
    other = tmp_path / "other.h5"
    make_store(other)
    other_key = tmp_path / "other.key"
    stopped = cli("mix", other, "--in-place", "--key-file", other_key, "--new-key",
                  *SPEC_ARGS, "--quiet", env={HOOK: "2"})
    assert stopped.returncode == 1, stopped.stderr
    assert other_key.exists()


# -- item 4: a damaged chunk --------------------------------------------------------------------

def test_a_damaged_chunk_is_refused_before_the_first_write(tmp_path, key_file):
    """Every chunk is read and decoded first: a damaged store is refused with nothing changed.

    It used to mix windows 0-2, then stop at the damaged chunk of window 3, leaving the store
    pending with no command able to give the images back.
    """
    store = tmp_path / "store.h5"
    make_store(store, compressed=True)
    damage_chunk(store, 3 * WINDOW + 16)
    before = store.read_bytes()
    line = one_line(cli("mix", store, "--in-place", "--key-file", key_file, *SPEC_ARGS))
    assert "window 3" in line and "nothing was changed" in line
    assert store.read_bytes() == before and beside(store) == []


def test_resume_reports_a_damaged_window_and_unmix_puts_the_done_windows_back(tmp_path,
                                                                               key_file):
    """A chunk damaged after windows were mixed: resume says so, unmix undoes the done ones."""
    store = tmp_path / "store.h5"
    images, _ = make_store(store, compressed=True)
    interrupt(store, key_file, 2)
    damage_chunk(store, 3 * WINDOW + 16)
    before = store.read_bytes()
    line = one_line(cli("mix", store, "--in-place", "--resume", "--key-file", key_file))
    assert "window 3" in line and "unmix" in line and "nothing was changed" in line
    assert store.read_bytes() == before
    undone = cli("unmix", store, "--in-place", "--key-file", key_file)
    assert undone.returncode == 0, undone.stderr
    # Windows 0 and 1 unmixed, window 2 untouched, window 3 as it was (its chunk damaged).
    np.testing.assert_array_equal(read_images(store, slice(0, 3 * WINDOW + 16)),
                                  images[:3 * WINDOW + 16])
    np.testing.assert_array_equal(read_images(store, slice(3 * WINDOW + 32, None)),
                                  images[3 * WINDOW + 32:])
    with h5py.File(store, "r") as file:
        assert not [name for name in file["images"].attrs if name.startswith("fastmix_")]
    assert beside(store) == []


KILL_MID_WINDOW = textwrap.dedent(r"""
    import os, signal, sys
    import fastmix
    from fastmix.store.inplace import rewrite as inplace

    real = inplace._CommittingWriter.store_piece
    def store_piece(self, piece):
        real(self, piece)
        if piece[0] >= 2 * 64:  # the first piece of window 2 is in the store: die
            os.kill(os.getpid(), signal.SIGKILL)
    inplace._CommittingWriter.store_piece = store_piece
    fastmix.mix_store(sys.argv[1], spec=fastmix.MixSpec(grid=(4, 4), donors=3),
                      key=fastmix.Key(bytes(range(32))), in_place=True, window=64,
                      memory="1MiB", progress=False)
""")


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "lz4"])
def test_unmix_in_place_undoes_a_mix_killed_mid_window(tmp_path, key_file, compressed):
    """The window being written when the mix died gets its input back from the journal."""
    store = tmp_path / "store.h5"
    images, _ = make_store(store, compressed=compressed)
    child = subprocess.run([sys.executable, "-c", KILL_MID_WINDOW, str(store)],
                           capture_output=True, text=True, timeout=300)
    assert child.returncode == -signal.SIGKILL, child.stderr
    with contextlib.suppress(Exception), h5py.File(store, "r") as file:
        assert not np.array_equal(file["images"][()], images)  # windows were rewritten
    undone = cli("unmix", store, "--in-place", "--key-file", key_file, "--quiet")
    assert undone.returncode == 0, undone.stderr
    np.testing.assert_array_equal(read_images(store), images)
    assert beside(store) == []


# -- item 5: a full disk while the store is marked -----------------------------------------------

def _mount_tmpfs(folder, kib: int) -> bool:
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs",
                           str(folder)], capture_output=True)
    return done.returncode == 0


def _fill_to(folder, free_bytes: int) -> None:
    status = os.statvfs(folder)
    spare = status.f_bavail * status.f_frsize - free_bytes
    with open(folder / "filler", "wb") as handle:
        handle.write(b"\1" * max(spare, 0))


@pytest.mark.parametrize("compressed", [False, True], ids=["raw", "lz4"])
def test_a_full_disk_at_every_boundary_loses_nothing(tmp_path, compressed):
    """Free space stepped a page at a time from "no room for the journal" to "enough".

    After each run the store opens, and either the run completed, or the store holds its
    originals, or (freeing the space) a resume completes it. It used to leave the store's
    HDF5 metadata broken ("addr overflow") when the journal fit but the marking did not.
    """
    mount = tmp_path / "disk"
    if not _mount_tmpfs(mount, 2048):
        pytest.skip("cannot mount a tmpfs here (needs root); the full-disk boundaries are "
                    "not checked")
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    images[:, :8] //= 16
    labels = np.arange(64) % 4
    spec = fastmix.MixSpec(grid=(2, 2), donors=3)
    want = fastmix.mix_array(images, labels, spec, KEY, window=32)
    outcomes = []
    try:
        free = 16 << 10
        completed = 0
        while completed < 3 and free < (1536 << 10):
            store = mount / "store.h5"
            for leftover in os.listdir(mount):
                os.unlink(mount / leftover)
            with h5py.File(store, "w") as file:
                file.create_dataset("images", data=images, chunks=(16, 16, 16, 3),
                                    **(dict(hdf5plugin.LZ4()) if compressed else {}))
                file["labels"] = labels
            _fill_to(mount, free)
            try:
                mix_store(store, spec=spec, key=KEY, in_place=True, window=32,
                          progress=False)
                outcome = "completed"
            except (InPlaceRunStopped, OSError) as error:
                outcome = f"stopped: {str(error)[:60]}"
            with h5py.File(store, "r") as file:  # it opens: its metadata is intact
                now = file["images"][()]
            if outcome == "completed":
                np.testing.assert_array_equal(now, want)
                completed += 1
            elif os.path.exists(f"{store}.fastmix-journal"):
                os.unlink(mount / "filler")
                mix_store(store, key=KEY, in_place=True, resume=True, progress=False)
                np.testing.assert_array_equal(read_images(store), want)
                outcome += ", resumed"
            else:
                np.testing.assert_array_equal(now, images)
                assert beside(store) == []
            outcomes.append((free >> 10, outcome))
            free += 4096
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
    assert any(text.startswith("stopped") for _, text in outcomes), outcomes
    assert completed == 3, outcomes


# -- unmix --resume after a completed run; misleading messages -----------------------------------

def test_unmix_resume_after_a_completed_unmix_is_already_complete(tmp_path, key_file):
    """``mix --resume`` after a complete mix says "already complete", exit 0; unmix now too."""
    store = tmp_path / "store.h5"
    images, _ = make_store(store)
    assert cli("mix", store, "--in-place", "--key-file", key_file, *SPEC_ARGS).returncode == 0
    assert cli("unmix", store, "--in-place", "--key-file", key_file).returncode == 0
    again = cli("unmix", store, "--in-place", "--resume", "--key-file", key_file)
    assert again.returncode == 0, again.stderr
    assert "already complete" in again.stdout
    np.testing.assert_array_equal(read_images(store), images)


def test_a_run_through_a_symlink_finds_the_journal(tmp_path, key_file):
    """A second run through a link to the store used to call the journal missing."""
    store = tmp_path / "store.h5"
    images, labels = make_store(store)
    link = tmp_path / "link.h5"
    link.symlink_to(store)
    interrupt(store, key_file, 2)
    line = one_line(cli("mix", link, "--in-place", "--key-file", key_file, *SPEC_ARGS))
    assert "interrupted" in line and "--resume" in line and "missing" not in line
    resumed = cli("mix", link, "--in-place", "--resume", "--key-file", key_file, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    np.testing.assert_array_equal(read_images(store), expected(images, labels))
    assert beside(store) == [] and link.is_symlink()


def test_a_reader_holding_the_store_is_named_as_a_reader(tmp_path, key_file):
    """A reader holding the store open used to be called "open for writing"."""
    store = tmp_path / "store.h5"
    make_store(store)
    before = store.read_bytes()
    reader = subprocess.Popen(
        [sys.executable, "-c", "import sys, time, h5py; f = h5py.File(sys.argv[1], 'r'); "
         "print('open', flush=True); time.sleep(60)", str(store)],
        stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "open"
        line = one_line(cli("mix", store, "--in-place", "--key-file", key_file, *SPEC_ARGS))
        assert "open in another process" in line and "for writing" not in line
    finally:
        reader.kill()
        reader.wait()
    assert store.read_bytes() == before and beside(store) == []
