"""``fastmix export``: stores -> folders of PNG files, and the whole folder round trip."""

from __future__ import annotations

import os

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
from test_cli_support import run_cli

import fastmix
from fastmix.errors import BadInputError
from fastmix.images.export import export_store
from fastmix.images.ingest import ingest_folder


def _write_folder(root, photo_tiles, per_class=12):
    tiles, labels = photo_tiles
    names = ["astronaut", "coffee", "chelsea", "rocket"]
    for label, name in enumerate(names):
        (root / name).mkdir(parents=True)
        for number, index in enumerate(np.flatnonzero(labels == label)[:per_class]):
            iio.imwrite(root / name / f"{number:03d}.png", tiles[index])
    return names


def _class_folders(folder):
    """Return the class folders of an export (its marker file, ``.fastmix-export``, left out)."""
    return sorted(name for name in os.listdir(folder) if name != ".fastmix-export")


def _read_export(folder):
    found = {}
    for class_name in _class_folders(folder):
        for name in sorted(os.listdir(folder / class_name)):
            found[int(name.removesuffix(".png"))] = (class_name, iio.imread(folder / class_name
                                                                            / name))
    return found


def test_folder_to_mixed_store_to_folder(tmp_path, photo_tiles, key):
    names = sorted(_write_folder(tmp_path / "photos", photo_tiles))  # label = sorted index
    ingest_folder(tmp_path / "photos", tmp_path / "source.h5", size=(32, 32), compression="lz4",
                  progress=False)
    spec = fastmix.MixSpec(block=(8, 8))
    fastmix.mix_store(tmp_path / "source.h5", tmp_path / "mixed.h5", spec=spec, key=key,
                      progress=False)
    result = run_cli("export", "mixed.h5", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "exported 48 PNG files into 4 class folders" in result.stdout
    with h5py.File(tmp_path / "mixed.h5", "r") as mixed, \
            h5py.File(tmp_path / "source.h5", "r") as source:
        pixels = mixed["images"][()]
        labels = mixed["labels"][()]
        assert not np.array_equal(pixels, source["images"][()])  # it really is mixed
    exported = _read_export(tmp_path / "out")
    assert sorted(exported) == list(range(len(pixels)))
    assert _class_folders(tmp_path / "out") == names
    assert all(len(name) == len("000000.png")
               for name in os.listdir(tmp_path / "out" / names[0]))
    for index, (class_name, image) in exported.items():
        assert class_name == names[labels[index]]
        np.testing.assert_array_equal(image, pixels[index])


def test_grey_store_without_class_names_uses_label_values(tmp_path, photo_tiles):
    tiles, labels = photo_tiles
    grey = np.ascontiguousarray(tiles[:40, :, :, 1])
    with h5py.File(tmp_path / "grey.h5", "w") as file:
        file.create_dataset("pixels", data=grey, chunks=(16, 32, 32), compression="gzip")
        file.create_dataset("y", data=labels[:40] * 10 + 5)
    report = export_store(tmp_path / "grey.h5", tmp_path / "out", images="pixels", labels="y",
                          progress=False, workers=3)
    assert report.images == 40
    exported = _read_export(tmp_path / "out")
    assert {class_name for class_name, _ in exported.values()} == \
        {str(value) for value in set(labels[:40] * 10 + 5)}
    for index, (_, image) in exported.items():
        np.testing.assert_array_equal(image, grey[index])


def test_nonempty_folder_is_refused_and_an_export_replaced(tmp_path, photo_tiles):
    tiles, labels = photo_tiles
    with h5py.File(tmp_path / "s.h5", "w") as file:
        file.create_dataset("images", data=tiles[:8])
        file.create_dataset("labels", data=labels[:8])
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    result = run_cli("export", "s.h5", "out", cwd=tmp_path)
    assert result.returncode == 2 and "not empty" in result.stderr
    assert os.listdir(tmp_path / "out") == ["keep.txt"]
    with pytest.raises(BadInputError, match="not an earlier fastmix export"):
        export_store(tmp_path / "s.h5", tmp_path / "out", overwrite=True, progress=False)
    assert os.listdir(tmp_path / "out") == ["keep.txt"]  # overwrite replaces only an export
    export_store(tmp_path / "s.h5", tmp_path / "new", progress=False)
    export_store(tmp_path / "s.h5", tmp_path / "new", overwrite=True, progress=False)
    assert sorted(os.listdir(tmp_path / "new")) == [".fastmix-export", "0"]
    assert len(os.listdir(tmp_path / "new" / "0")) == 8
    assert sorted(os.listdir(tmp_path)) == ["new", "out", "s.h5"]  # no temporary left


def test_float_images_are_refused(tmp_path):
    with h5py.File(tmp_path / "f.h5", "w") as file:
        file.create_dataset("images", data=np.zeros((4, 8, 8, 3), np.float32))
        file.create_dataset("labels", data=np.zeros(4, np.int64))
    with pytest.raises(BadInputError, match="PNG export supports"):
        export_store(tmp_path / "f.h5", tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()


def test_jpeg_export_is_close_and_named_jpg(tmp_path, photo_tiles):
    tiles, labels = photo_tiles
    with h5py.File(tmp_path / "s.h5", "w") as file:
        file.create_dataset("images", data=tiles[:20], chunks=(8, 32, 32, 3))
        file.create_dataset("labels", data=labels[:20])
    result = run_cli("export", "s.h5", "out", "--format", "jpeg", "--quality", "95",
                         cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "exported 20 JPEG files" in result.stdout
    for index in range(20):
        image = iio.imread(tmp_path / "out" / str(labels[index]) / f"{index:06d}.jpg")
        error = np.abs(image.astype(np.int16) - tiles[index]).mean()
        assert image.shape == tiles[index].shape and error < 4.0
    bad = run_cli("export", "s.h5", "out2", "--format", "jpeg", "--quality", "100",
                      cwd=tmp_path)
    assert bad.returncode == 2 and "--quality" in bad.stderr


def test_worker_processes_write_the_same_files(tmp_path, photo_tiles):
    tiles, labels = photo_tiles
    with h5py.File(tmp_path / "s.h5", "w") as file:
        file.create_dataset("images", data=tiles[:40], chunks=(16, 32, 32, 3))
        file.create_dataset("labels", data=labels[:40])
    export_store(tmp_path / "s.h5", tmp_path / "threads", progress=False, processes=False)
    export_store(tmp_path / "s.h5", tmp_path / "processes", progress=False, processes=True,
                 workers=2)
    threads, processes = _read_export(tmp_path / "threads"), _read_export(tmp_path / "processes")
    assert sorted(processes) == list(range(40))
    for index, (class_name, image) in processes.items():
        assert class_name == threads[index][0]
        np.testing.assert_array_equal(image, tiles[index])


def test_worker_process_errors_surface_as_one_message(tmp_path):
    from fastmix.images.workers import WorkerError, WorkerProcesses

    with WorkerProcesses() as workers:
        with pytest.raises(WorkerError, match="unknown operation"):
            workers.call({"op": "nonsense"})
        images = np.zeros((2, 4, 4, 3), np.uint8)
        with pytest.raises(WorkerError, match=r"FileNotFoundError|No such file"):
            workers.write(images, [str(tmp_path / "missing" / "a.png"),
                                   str(tmp_path / "missing" / "b.png")], {"extension": ".png"})
        decoded, ok, failures = workers.decode([str(tmp_path / "none.png")], (4, 4), 3)
        assert decoded.shape == (0, 4, 4, 3) and ok == [] and "none.png" in failures[0]


@pytest.mark.parametrize("processes", [False, True])
def test_many_small_windows_through_reused_buffers(tmp_path, photo_tiles, monkeypatch,
                                                   processes):
    """Windows of one chunk and one-image jobs rotate through the reused window buffers."""
    import fastmix.images.export as export

    tiles, labels = photo_tiles
    with h5py.File(tmp_path / "s.h5", "w") as file:
        file.create_dataset("images", data=tiles[:41], chunks=(2, 32, 32, 3))
        file.create_dataset("labels", data=labels[:41])
    monkeypatch.setattr(export, "WINDOW_TARGET_BYTES", 1)
    monkeypatch.setattr(export, "JOB_IMAGES", 1)
    export_store(tmp_path / "s.h5", tmp_path / "out", progress=False, workers=2,
                 processes=processes)
    written = _read_export(tmp_path / "out")
    assert sorted(written) == list(range(41))
    for index, (_, image) in written.items():
        np.testing.assert_array_equal(image, tiles[index], err_msg=str(index))
