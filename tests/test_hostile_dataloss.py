"""Data loss and writes outside the output: each case that once lost data is its own test.

Stores that name other files (external raw storage, virtual datasets) are mixed without
ever writing into those files; in-place mode refuses them.
"""

from __future__ import annotations

import hashlib
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from test_cli_support import run_cli

import fastmix
from fastmix.errors import FastmixWarning

SPEC = fastmix.MixSpec(block=(8, 8), donors=3)
MIX = ("--privacy", "fast", "--block", "8x8", "--donors", "3")


def digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def sample(count: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    return rng.integers(0, 256, (count, 16, 16, 3), dtype=np.uint8), np.arange(count) % 2


def plain_store(path: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    with h5py.File(path, "w") as file:
        file["images"] = images
        file["labels"] = labels
    return path


def external_store(folder: Path, images: np.ndarray, labels: np.ndarray,
                   raw_name: str = "pixels.raw") -> Path:
    """Return a store whose images keep their bytes in ``raw_name`` (relative: from the folder)."""
    (folder / raw_name).write_bytes(images.tobytes())
    with h5py.File(folder / "external.h5", "w") as file:
        file.create_dataset("images", shape=images.shape, dtype=images.dtype,
                            external=[(raw_name, 0, images.nbytes)])
        file["labels"] = labels
    return folder / "external.h5"


def virtual_store(folder: Path, images: np.ndarray, labels: np.ndarray) -> Path:
    """Return a store whose images are a virtual dataset over two shard files."""
    half = len(images) // 2
    layout = h5py.VirtualLayout(shape=images.shape, dtype=images.dtype)
    for number, part in enumerate((images[:half], images[half:])):
        with h5py.File(folder / f"shard{number}.h5", "w") as shard:
            shard["images"] = part
        layout[number * half:number * half + len(part)] = h5py.VirtualSource(
            f"shard{number}.h5", "images", shape=part.shape)
    with h5py.File(folder / "virtual.h5", "w") as file:
        file.create_virtual_dataset("images", layout)
        file["labels"] = labels
    return folder / "virtual.h5"


def expected(tmp_path: Path, images, labels, key) -> np.ndarray:
    out = tmp_path / "expected.h5"
    fastmix.mix_store(plain_store(tmp_path / "plain.h5", images, labels), out, spec=SPEC,
                      key=key, progress=False)
    with h5py.File(out, "r") as file:
        return file["images"][()]


def layout_of(path: Path, name: str = "images") -> tuple[int, int]:
    with h5py.File(path, "r") as file:
        dcpl = file[name].id.get_create_plist()
        return dcpl.get_layout(), dcpl.get_external_count()


def mix_warnings(source, destination, key) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fastmix.mix_store(source, destination, spec=SPEC, key=key, progress=False)
    return [str(item.message) for item in caught if issubclass(item.category, FastmixWarning)]


def test_external_images_are_read_never_written(tmp_path, key, monkeypatch):
    images, labels = sample()
    source = external_store(tmp_path, images, labels)
    before = digest(tmp_path / "pixels.raw")
    monkeypatch.chdir(tmp_path)  # HDF5 resolves external names from the current folder
    said = mix_warnings(source, tmp_path / "out.h5", key)
    assert digest(tmp_path / "pixels.raw") == before
    assert layout_of(tmp_path / "out.h5") == (h5py.h5d.CONTIGUOUS, 0)
    assert any("external raw files" in text and "inside the output file" in text
               for text in said)
    with h5py.File(tmp_path / "out.h5", "r") as file:
        assert np.array_equal(file["images"][()], expected(tmp_path, images, labels, key))


def test_external_images_aimed_at_another_file_leave_it_alone(tmp_path, key, monkeypatch):
    images, labels = sample()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(images.tobytes())  # the bytes a crafted store would overwrite
    source = external_store(tmp_path, images, labels, raw_name=str(victim))
    monkeypatch.chdir(tmp_path)
    mix_warnings(source, tmp_path / "out.h5", key)
    assert victim.read_bytes() == images.tobytes()


def test_virtual_images_are_read_never_written(tmp_path, key):
    images, labels = sample()
    source = virtual_store(tmp_path, images, labels)
    shards = {name: digest(tmp_path / name) for name in ("shard0.h5", "shard1.h5")}
    said = mix_warnings(source, tmp_path / "out.h5", key)
    assert {name: digest(tmp_path / name) for name in shards} == shards
    assert layout_of(tmp_path / "out.h5") == (h5py.h5d.CONTIGUOUS, 0)
    assert any("virtual dataset" in text for text in said)
    with h5py.File(tmp_path / "out.h5", "r") as file:
        assert np.array_equal(file["images"][()], expected(tmp_path, images, labels, key))


def test_other_external_datasets_are_copied_inside(tmp_path, key, monkeypatch):
    images, labels = sample()
    extra = np.arange(64, dtype=np.int32)
    (tmp_path / "extra.raw").write_bytes(extra.tobytes())
    source = plain_store(tmp_path / "source.h5", images, labels)
    with h5py.File(source, "a") as file:
        file.create_group("meta").create_dataset(
            "ids", shape=extra.shape, dtype=extra.dtype,
            external=[("extra.raw", 0, extra.nbytes)])
    monkeypatch.chdir(tmp_path)
    said = mix_warnings(source, tmp_path / "out.h5", key)
    assert any("'/meta/ids'" in text for text in said)
    (tmp_path / "extra.raw").write_bytes(b"\0" * extra.nbytes)  # the copy must not need it
    assert layout_of(tmp_path / "out.h5", "meta/ids") == (h5py.h5d.CONTIGUOUS, 0)
    with h5py.File(tmp_path / "out.h5", "r") as file:
        assert np.array_equal(file["meta/ids"][()], extra)


@pytest.mark.parametrize("kind", ["external", "virtual"])
def test_in_place_refuses_images_kept_in_other_files(tmp_path, key, kind):
    images, labels = sample()
    source = (external_store if kind == "external" else virtual_store)(tmp_path, images, labels)
    key.save(tmp_path / "k.key")
    before = {path.name: digest(path) for path in tmp_path.iterdir()}
    done = run_cli("mix", source.name, "--in-place", "--key-file", "k.key", *MIX, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "in-place mode never writes through it" in lines[0]
    assert {path.name: digest(path) for path in tmp_path.iterdir()} == before


# -- keys are never an output ----------------------------------------------------------------

@pytest.fixture
def folder(tmp_path, key):
    images, labels = sample()
    plain_store(tmp_path / "good.h5", images, labels)
    key.save(tmp_path / "k.key")
    fastmix.Key.from_hex("cd" * 32).save(tmp_path / "other.key")
    fastmix.mix_store(tmp_path / "good.h5", tmp_path / "mixed.h5", spec=SPEC, key=key,
                      progress=False)
    return tmp_path


def refused(folder: Path, *arguments: str) -> str:
    before = {path.name: digest(path) for path in folder.iterdir() if path.is_file()}
    done = run_cli(*arguments, cwd=folder)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert {path.name: digest(path) for path in folder.iterdir() if path.is_file()} == before
    return lines[0]


def test_mix_never_writes_onto_its_own_new_key(folder):
    line = refused(folder, "mix", "good.h5", "new.key", "--key-file", "new.key", "--new-key",
                   "--overwrite", *MIX)
    assert "input of this run" in line
    assert not (folder / "new.key").exists()


def test_mix_never_writes_onto_its_own_key(folder):
    line = refused(folder, "mix", "good.h5", "k.key", "--key-file", "k.key", "--overwrite", *MIX)
    assert "input of this run" in line


def test_overwrite_never_replaces_another_key(folder):
    line = refused(folder, "mix", "good.h5", "other.key", "--key-file", "k.key", "--overwrite",
                   *MIX)
    assert "is a fastmix key file" in line
    line = refused(folder, "unmix", "mixed.h5", "other.key", "--key-file", "k.key",
                   "--overwrite")
    assert "is a fastmix key file" in line


def test_ingest_never_writes_onto_a_key(folder):
    pictures = folder / "pictures" / "cats"
    pictures.mkdir(parents=True)
    from PIL import Image

    Image.new("RGB", (8, 8)).save(pictures / "a.png")
    line = refused(folder, "ingest", "pictures", "other.key", "--size", "8x8", "--overwrite")
    assert "is a fastmix key file" in line


# -- preview -o --------------------------------------------------------------------------------

def test_preview_refuses_an_existing_output(folder):
    (folder / "grid.png").write_bytes(b"precious")
    line = refused(folder, "preview", "mixed.h5", "-o", "grid.png")
    assert "already exists" in line and "--overwrite" in line
    done = run_cli("preview", "mixed.h5", "-o", "grid.png", "--overwrite", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert (folder / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_preview_never_writes_onto_its_store_or_a_key(folder):
    assert "input of this run" in refused(folder, "preview", "mixed.h5", "-o", "mixed.h5",
                                          "--overwrite")
    assert "input of this run" in refused(folder, "preview", "mixed.h5", "--original",
                                          "good.h5", "-o", "good.h5", "--overwrite")
    assert "key file" in refused(folder, "preview", "mixed.h5", "-o", "k.key", "--overwrite")


def test_preview_writes_the_format_its_extension_names(folder):
    done = run_cli("preview", "mixed.h5", "-o", "grid.jpg", cwd=folder)
    assert done.returncode == 0, done.stderr
    assert (folder / "grid.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert "extension" in refused(folder, "preview", "mixed.h5", "-o", "grid.h5")
    assert "extension" in refused(folder, "preview", "mixed.h5", "-o", "grid")


# -- SIGTERM and SIGHUP clean up like Ctrl-C ----------------------------------------------------

@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGHUP])
def test_termination_removes_the_temporary_output(tmp_path, key, number):
    rng = np.random.default_rng(5)
    with h5py.File(tmp_path / "big.h5", "w") as file:
        file.create_dataset("images", data=rng.integers(0, 256, (3072, 64, 64, 3), np.uint8),
                            chunks=(16, 64, 64, 3), compression="gzip", compression_opts=1)
        file["labels"] = np.arange(3072) % 4
    key.save(tmp_path / "k.key")
    child = subprocess.Popen(
        [sys.executable, "-m", "fastmix.cli", "mix", "big.h5", "out.h5", "--key-file", "k.key",
         "--window", "64", *MIX], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
    # Wait on progress: the hidden temporary output exists and has grown past its start.
    while child.poll() is None and not any(
            path.name.startswith(".out.h5") and path.stat().st_size > (1 << 20)
            for path in tmp_path.iterdir()):
        time.sleep(0.02)
    assert child.poll() is None, "the run ended before it could be stopped; enlarge the store"
    child.send_signal(number)
    _, stderr = child.communicate(timeout=300)
    assert child.returncode == 128 + number, stderr
    assert stderr.strip().splitlines()[-1].endswith(f"stopped by {signal.Signals(number).name}")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["big.h5", "k.key"]
