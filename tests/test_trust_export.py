"""Issue 21 (trust), export and ingest: nothing deleted or replaced that fastmix did not write.

Real stores, real image files, the real CLI in a subprocess (a crash shows as its exit
status), real kills and a real full disk (a small tmpfs; skipped where it cannot be mounted).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
from test_cli_support import run_cli

import fastmix
from fastmix.errors import BadInputError
from fastmix.images.export import export_store

MARKER = ".fastmix-export"


def _snapshot(folder) -> dict[str, str]:
    """Every file below ``folder`` (hidden ones included) with the SHA-256 of its bytes."""
    found = {}
    for top, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(top, name)
            with open(path, "rb") as handle:
                found[os.path.relpath(path, folder)] = hashlib.sha256(handle.read()).hexdigest()
    return found


def _store(path, count=8, class_names=None, size=8):
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=np.arange(count * size * size * 3, dtype=np.uint8)
                            .reshape(count, size, size, 3), chunks=(max(1, min(count, 4)),
                                                                    size, size, 3),
                            maxshape=(None, size, size, 3))
        labels = file.create_dataset("labels", data=np.arange(count, dtype=np.int64) % 2)
        if class_names is not None:
            labels.attrs["class_names"] = class_names


def _temporaries(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if ".fastmix-" in name)


def _one_line(stderr: str) -> bool:
    return len(stderr.strip().splitlines()) == 1


# --- item 1: export --overwrite deletes only an earlier export --------------------------------


def test_export_into_the_folder_of_its_store_is_refused_and_deletes_nothing(tmp_path):
    work = tmp_path / "w"
    (work / "keys").mkdir(parents=True)
    _store(work / "m.h5")
    fastmix.Key.generate().save(work / "k.key")
    fastmix.Key.generate().save(work / "keys" / "k.key")
    (work / "notes.txt").write_text("unrelated")
    before = _snapshot(work)
    result = run_cli("export", "w/m.h5", "w", "--overwrite", cwd=tmp_path)
    assert result.returncode == 2 and _one_line(result.stderr), result.stderr
    assert "holds the store" in result.stderr
    dot = run_cli("export", "m.h5", ".", "--overwrite", cwd=work)
    assert dot.returncode == 2 and _one_line(dot.stderr), dot.stderr
    with pytest.raises(BadInputError, match="holds the store"):  # a folder above it too
        export_store(work / "keys" / ".." / "m.h5", tmp_path, overwrite=True, progress=False)
    assert _snapshot(work) == before
    assert sorted(os.listdir(tmp_path)) == ["w"]  # no temporary folder left anywhere


def test_overwrite_refuses_a_folder_that_export_did_not_write(tmp_path):
    _store(tmp_path / "s.h5")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "photo.png").write_bytes(b"not written by fastmix")
    result = run_cli("export", "s.h5", "mine", "--overwrite", cwd=tmp_path)
    assert result.returncode == 2 and _one_line(result.stderr), result.stderr
    assert "not an earlier fastmix export" in result.stderr
    assert _snapshot(tmp_path / "mine") == {"photo.png": hashlib.sha256(
        b"not written by fastmix").hexdigest()}
    # An earlier export that was given a file of someone else's is not replaced either.
    export_store(tmp_path / "s.h5", tmp_path / "out", progress=False)
    fastmix.Key.generate().save(tmp_path / "out" / "0" / "k.key")
    before = _snapshot(tmp_path / "out")
    with pytest.raises(BadInputError, match="0/k\\.key"):
        export_store(tmp_path / "s.h5", tmp_path / "out", overwrite=True, progress=False)
    assert _snapshot(tmp_path / "out") == before
    assert _temporaries(tmp_path) == []


def test_overwrite_replaces_an_earlier_export(tmp_path):
    _store(tmp_path / "a.h5", count=8)
    _store(tmp_path / "b.h5", count=3)
    export_store(tmp_path / "a.h5", tmp_path / "out", progress=False)
    assert os.path.isfile(tmp_path / "out" / MARKER)
    export_store(tmp_path / "b.h5", tmp_path / "out", overwrite=True, progress=False)
    assert sorted(_snapshot(tmp_path / "out")) == sorted(
        [MARKER, "0/000000.png", "0/000002.png", "1/000001.png"])
    assert _temporaries(tmp_path) == []


# --- item 2: export of an empty store, long class names, killed exports -----------------------


def test_a_store_of_no_images_exports_an_empty_folder(tmp_path):
    _store(tmp_path / "empty.h5", count=0)
    result = run_cli("export", "empty.h5", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "exported 0 PNG files" in result.stdout
    assert os.listdir(tmp_path / "out") == [MARKER]


def test_class_names_longer_than_a_file_name_are_shortened_the_same_way_each_time(tmp_path):
    names = ["a" * 300, "é" * 200]  # 300 and 400 bytes; a file name holds 255
    _store(tmp_path / "s.h5", class_names=names)
    result = run_cli("export", "s.h5", "one", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    export_store(tmp_path / "s.h5", tmp_path / "two", progress=False)
    folders = [sorted(set(os.listdir(tmp_path / out)) - {MARKER}) for out in ("one", "two")]
    assert folders[0] == folders[1] and len(folders[0]) == 2
    assert all(len(name.encode()) <= 255 for name in folders[0])
    assert folders[0][0].startswith("a" * 200) and folders[0][1].startswith("é" * 100)
    assert _temporaries(tmp_path) == []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_later_export_removes_what_a_killed_export_left_and_nothing_else(tmp_path):
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "s.h5", "w") as file:  # random pixels: slow to encode
        file.create_dataset("images", data=rng.integers(0, 256, (1000, 48, 48, 3), np.uint8),
                            chunks=(16, 48, 48, 3))
        file.create_dataset("labels", data=np.arange(1000) % 2)
    child = subprocess.Popen(
        [sys.executable, "-m", "fastmix.cli", "export", "s.h5", "out", "--quiet"],
        cwd=tmp_path, stderr=subprocess.PIPE)
    temporary = tmp_path / f".out.fastmix-tmp-{child.pid}"
    deadline = time.monotonic() + 120
    while not (temporary / "0").is_dir() or not os.listdir(temporary / "0"):
        assert child.poll() is None, "the export finished before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.002)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert temporary.is_dir()  # what a killed export leaves behind
    # Look-alikes that are not a dead export's own: no marker, a live writer, a file.
    mine = tmp_path / f".out.fastmix-tmp-{_dead_pid()}"
    (mine / "0").mkdir(parents=True)
    (mine / "0" / "000001.png").write_bytes(b"user data")
    live = tmp_path / f".out.fastmix-tmp-{os.getppid()}"
    live.mkdir()
    (live / MARKER).write_text(f'{{"written_by": "fastmix export", "pid": {os.getppid()}}}\n')
    (tmp_path / f".out.fastmix-tmp-{_dead_pid()}x").mkdir()
    _store(tmp_path / "t.h5", count=2)
    export_store(tmp_path / "t.h5", tmp_path / "other", progress=False)
    assert temporary.is_dir()  # another destination's: left alone
    export_store(tmp_path / "t.h5", tmp_path / "out", progress=False)
    assert not temporary.exists()
    assert (mine / "0" / "000001.png").read_bytes() == b"user data"
    assert live.is_dir() and len(_temporaries(tmp_path)) == 3


# --- item 3: ingest never replaces its inputs, and reads only inside IMAGE_DIR ----------------


@pytest.fixture
def photos(tmp_path):
    root = tmp_path / "photos"
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for number in range(2):
            iio.imwrite(root / label / f"{number}.png",
                        np.full((8, 8, 3), 40 * number + 100 * (label == "b"), np.uint8))
    return root


@pytest.mark.parametrize("how", ["same path", "symbolic link", "hard link"])
def test_ingest_refuses_to_overwrite_one_of_its_images(tmp_path, photos, how):
    image = photos / "a" / "0.png"
    before = image.read_bytes()
    if how == "same path":
        store = "photos/a/0.png"
    elif how == "symbolic link":
        os.symlink(image, tmp_path / "link.png")
        store = "link.png"
    else:
        os.link(image, tmp_path / "hard.png")
        store = "hard.png"
    result = run_cli("ingest", "photos", store, "--overwrite", "--size", "8x8", cwd=tmp_path)
    assert result.returncode == 2 and _one_line(result.stderr), result.stderr
    assert "is also an input" in result.stderr
    assert image.read_bytes() == before
    assert not [name for name in os.listdir(photos / "a") if "fastmix" in name]


def test_ingest_refuses_to_overwrite_its_csv(tmp_path, photos):
    listing = tmp_path / "labels.csv"
    listing.write_text("a/0.png,cat\nb/0.png,dog\n")
    result = run_cli("ingest", "photos", "labels.csv", "--csv", "labels.csv", "--overwrite",
                     "--size", "8x8", cwd=tmp_path)
    assert result.returncode == 2 and "is also an input" in result.stderr, result.stderr
    assert listing.read_text() == "a/0.png,cat\nb/0.png,dog\n"


@pytest.mark.parametrize("row", ["../outside.png", "a/../../outside.png", "ABSOLUTE",
                                 "a/link.png"])
def test_csv_rows_outside_the_image_folder_are_refused(tmp_path, photos, row):
    iio.imwrite(tmp_path / "outside.png", np.zeros((8, 8, 3), np.uint8))
    os.symlink(tmp_path / "outside.png", photos / "a" / "link.png")
    row = str(tmp_path / "outside.png") if row == "ABSOLUTE" else row
    (tmp_path / "rows.csv").write_text(f"a/0.png,cat\n{row},dog\n")
    result = run_cli("ingest", "photos", "s.h5", "--csv", "rows.csv", "--size", "8x8",
                     cwd=tmp_path)
    assert result.returncode == 2 and _one_line(result.stderr), result.stderr
    assert "rows.csv:2" in result.stderr and "out" in result.stderr
    assert "the image folder 'photos'" in result.stderr
    assert not (tmp_path / "s.h5").exists()
    if row == "a/link.png":  # a link out is read when asked for, as in a class folder
        followed = run_cli("ingest", "photos", "s.h5", "--csv", "rows.csv", "--size", "8x8",
                           "--follow-symlinks", cwd=tmp_path)
        assert followed.returncode == 0, followed.stderr


# --- item 4: ingest onto a full disk exits 1 with one line and leaves nothing ----------------


@pytest.fixture(scope="module")
def noisy_photos(tmp_path_factory):
    """200 random 64x64 PNG files (about 2.4 MB once ingested) and the store's size."""
    root = tmp_path_factory.mktemp("noisy") / "photos"
    rng = np.random.default_rng(1)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for number in range(100):
            iio.imwrite(root / label / f"{number:03d}.png",
                        rng.integers(0, 256, (64, 64, 3), np.uint8))
    reference = root.parent / "reference.h5"
    fastmix.ingest_folder(root, reference, size=(64, 64), progress=False)
    return root, os.path.getsize(reference)


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = []

    def mount(kib: int):
        result = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kib}k", "tmpfs",
                                 str(folder)], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here ({result.stderr.strip()})")
        mounted.append(folder)
        return folder

    yield mount
    for path in mounted:
        subprocess.run(["umount", str(path)], check=False)


@pytest.mark.parametrize("free_pages, compression", [("none", "none"), ("half", "none"),
                                                     ("all but one", "none"), ("half", "gzip")])
def test_ingest_on_a_full_disk_exits_1_with_one_line_and_no_file(tmp_path, noisy_photos,
                                                                 small_disk, free_pages,
                                                                 compression):
    root, size = noisy_photos
    pages = -(-size // 4096)
    disk = small_disk(4 * pages + 256)
    free = {"none": 1, "half": pages // 2, "all but one": pages - 1}[free_pages]
    with open(disk / "filler", "wb") as handle:
        handle.write(b"\0" * 4096 * (pages + 64 - free))
    result = run_cli("ingest", str(root), str(disk / "s.h5"), "--size", "64x64", "--quiet",
                     "--compression", compression, cwd=tmp_path)
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert _one_line(result.stderr) and "no space left" in result.stderr, result.stderr
    assert os.listdir(disk) == ["filler"]


# --- item 5: a file that is no image says so ---------------------------------------------------


@pytest.mark.parametrize("name", ["x.png", "x.jpg"])
def test_a_text_file_with_an_image_name_is_called_not_an_image(tmp_path, photos, name):
    (photos / "a" / name).write_text("hello, I am text\n")
    result = run_cli("ingest", "photos", "s.h5", "--size", "8x8", "--strict", cwd=tmp_path)
    assert result.returncode == 2 and _one_line(result.stderr), result.stderr
    assert name in result.stderr and "not a readable image" in result.stderr
    assert "plugin" not in result.stderr and "pip install" not in result.stderr
