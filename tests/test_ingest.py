"""``fastmix ingest``: real image files of every format -> an HDF5 store."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from test_cli_support import run_cli
from test_ingest_support import write_format_tree

from fastmix.errors import BadInputError
from fastmix.images.decode import decode_image, to_uint8
from fastmix.images.ingest import chunk_length, ingest_folder

SIZE = 32


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "photos"
    return root, write_format_tree(root, SIZE)


def _store_listing(tmp_path):
    return sorted(name for name in os.listdir(tmp_path) if name != "photos")


def test_every_format_lands_with_exact_pixels(tree, tmp_path):
    root, expected = tree
    report = ingest_folder(root, tmp_path / "s.h5", size=(SIZE, SIZE), progress=False)
    with h5py.File(tmp_path / "s.h5", "r") as file:
        images = file["images"][()]
        labels = file["labels"][()]
        class_names = list(file["labels"].attrs["class_names"])
        chunks = file["images"].chunks
    paths = sorted(expected)  # class folders and files are read in sorted order
    assert images.shape == (len(paths), SIZE, SIZE, 3) and images.dtype == np.uint8
    assert class_names == ["cat", "dog"]
    assert labels.dtype == np.int64
    assert labels.tolist() == [0 if "/cat/" in path else 1 for path in paths]
    assert chunks[1:] == (SIZE, SIZE, 3)
    for row, path in enumerate(paths):
        np.testing.assert_array_equal(images[row], expected[path], err_msg=path)
    assert report.images == len(paths)
    assert len(report.skipped) == 1 and "z_broken.png" in report.skipped[0]
    assert "skipped 1 unreadable file(s)" in report.skipped_line()
    assert _store_listing(tmp_path) == ["s.h5"]  # no temporary left behind


def test_grey_store_and_resize_match_pillow(tree, tmp_path):
    root, expected = tree
    ingest_folder(root, tmp_path / "grey.h5", size=(16, 24), channels=1, progress=False)
    with h5py.File(tmp_path / "grey.h5", "r") as file:
        images = file["images"][()]
    assert images.shape[1:] == (16, 24, 1)
    from PIL import Image

    grey = Image.fromarray(expected[str(root / "cat" / "b_grey.png")][:, :, 0])
    wanted = np.asarray(grey.resize((24, 16), Image.Resampling.LANCZOS, reducing_gap=3.0))
    np.testing.assert_array_equal(images[1, :, :, 0], wanted)


def test_depth_conversion_rounds():
    assert to_uint8(np.array([0, 257, 65535], np.uint16)).tolist() == [0, 1, 255]
    assert to_uint8(np.array([0.0, 0.5, 1.0])).tolist() == [0, 128, 255]
    assert to_uint8(np.array([True, False])).tolist() == [255, 0]


def test_gif_gives_its_first_frame(tree):
    root, expected = tree
    first = decode_image(root / "dog" / "h.gif", (SIZE, SIZE))
    np.testing.assert_array_equal(first, expected[str(root / "dog" / "h.gif")])


def test_csv_listing_with_header_and_names(tree, tmp_path):
    root, expected = tree
    rows = ["path,label", "dog/e.bmp,7", "cat/a_rgb.png,10", "cat/missing.png,7",
            "README.txt,3", "dog/f.tif,10"]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    report = ingest_folder(root, tmp_path / "c.h5", csv=tmp_path / "list.csv",
                           size=(SIZE, SIZE), progress=False)
    with h5py.File(tmp_path / "c.h5", "r") as file:
        images = file["images"][()]
        labels = file["labels"][()].tolist()
        names = list(file["labels"].attrs["class_names"])
    assert names == ["7", "10"]  # integer names sort as numbers
    assert labels == [0, 1, 1]
    np.testing.assert_array_equal(images[0], expected[str(root / "dog" / "e.bmp")])
    np.testing.assert_array_equal(images[2], expected[str(root / "dog" / "f.tif")])
    assert len(report.skipped) == 1 and "missing.png" in report.skipped[0]


@pytest.mark.parametrize("compression, filter_id", [("gzip", 1), ("lz4", 32004),
                                                     ("zstd", 32015)])
def test_compressed_stores_hold_the_same_pixels(tree, tmp_path, compression, filter_id):
    root, _ = tree
    ingest_folder(root, tmp_path / "plain.h5", size=(SIZE, SIZE), progress=False)
    ingest_folder(root, tmp_path / "packed.h5", size=(SIZE, SIZE), compression=compression,
                  progress=False)
    with h5py.File(tmp_path / "plain.h5", "r") as plain, \
            h5py.File(tmp_path / "packed.h5", "r") as packed:
        create = packed["images"].id.get_create_plist()
        assert create.get_nfilters() == 1 and create.get_filter(0)[0] == filter_id
        assert plain["images"].id.get_create_plist().get_nfilters() == 0
        np.testing.assert_array_equal(plain["images"][()], packed["images"][()])


def test_chunks_hold_whole_images_within_four_mebibytes():
    assert chunk_length(192 * 192 * 3, 10_000) == 32
    assert chunk_length(64 * 64 * 3, 10_000) == 256
    assert chunk_length(64 * 64 * 3, 100) == 100
    assert chunk_length(5000 * 5000 * 3, 10) == 1


def test_batches_stream_through_many_writes(tree, tmp_path, monkeypatch):
    """With a tiny batch, the store is written in many chunk-aligned pieces, same result."""
    import fastmix.images.ingest as ingest

    root, _ = tree
    ingest_folder(root, tmp_path / "one.h5", size=(SIZE, SIZE), progress=False)
    monkeypatch.setattr(ingest, "BATCH_TARGET_BYTES", 1)
    monkeypatch.setattr(ingest, "CHUNK_TARGET_BYTES", 2 * SIZE * SIZE * 3)
    monkeypatch.setattr(ingest, "JOB_IMAGES", 3)
    ingest_folder(root, tmp_path / "many.h5", size=(SIZE, SIZE), progress=False)
    with h5py.File(tmp_path / "one.h5", "r") as one, h5py.File(tmp_path / "many.h5", "r") as many:
        assert many["images"].chunks[0] == 2
        np.testing.assert_array_equal(one["images"][()], many["images"][()])
        np.testing.assert_array_equal(one["labels"][()], many["labels"][()])


def test_cli_skips_and_names_the_broken_file(tree, tmp_path):
    root, expected = tree
    result = run_cli("ingest", root, "out.h5", "--size", f"{SIZE}x{SIZE}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warning) == 1 and "1 unreadable" in warning[0] and "z_broken.png" in warning[0]
    assert f"ingested {len(expected)} images" in result.stdout
    quiet = run_cli("ingest", root, "quiet.h5", "--quiet", cwd=tmp_path)
    assert quiet.returncode == 0 and quiet.stdout == ""


def test_cli_strict_fails_and_leaves_nothing(tree, tmp_path):
    root, _ = tree
    result = run_cli("ingest", root, "out.h5", "--strict", cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "z_broken.png" in result.stderr and "Traceback" not in result.stderr
    assert _store_listing(tmp_path) == []


@pytest.mark.parametrize("arguments, message", [
    (["missing", "out.h5"], "does not exist"),
    (["photos/cat", "out.h5"], "no class sub-folders"),
    (["photos", "out.h5", "--size", "0x3"], "--size"),
    (["photos", "photos", "--size", "8x8"], "is a folder"),
    (["photos", "out.h5", "--csv", "nothing.csv"], "does not exist"),
])
def test_cli_bad_input_is_one_line_exit_2(tree, tmp_path, arguments, message):
    result = run_cli("ingest", *arguments, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert _store_listing(tmp_path) == []


def test_existing_store_needs_overwrite(tree, tmp_path):
    root, _ = tree
    (tmp_path / "s.h5").write_bytes(b"keep me")
    with pytest.raises(BadInputError, match="already exists"):
        ingest_folder(root, tmp_path / "s.h5", progress=False)
    assert (tmp_path / "s.h5").read_bytes() == b"keep me"
    ingest_folder(root, tmp_path / "s.h5", size=(8, 8), progress=False, overwrite=True)
    with h5py.File(tmp_path / "s.h5", "r") as file:
        assert file["images"].shape[1:] == (8, 8, 3)


def test_nothing_readable_is_bad_input(tmp_path):
    (tmp_path / "photos" / "a").mkdir(parents=True)
    (tmp_path / "photos" / "a" / "x.png").write_bytes(b"not a png")
    with pytest.raises(BadInputError, match="none of the 1 image files"):
        ingest_folder(tmp_path / "photos", tmp_path / "s.h5", progress=False)
    assert not (tmp_path / "s.h5").exists()


def test_worker_processes_give_the_same_store(tree, tmp_path):
    root, _ = tree
    threads = ingest_folder(root, tmp_path / "threads.h5", size=(SIZE, SIZE), progress=False,
                            processes=False)
    processes = ingest_folder(root, tmp_path / "processes.h5", size=(SIZE, SIZE),
                              progress=False, processes=True, workers=2)
    assert processes.skipped == threads.skipped and len(threads.skipped) == 1
    with h5py.File(tmp_path / "threads.h5", "r") as one, \
            h5py.File(tmp_path / "processes.h5", "r") as two:
        np.testing.assert_array_equal(one["images"][()], two["images"][()])
        np.testing.assert_array_equal(one["labels"][()], two["labels"][()])


def test_ingest_leaves_the_warning_filters_as_they_were(tree, tmp_path):
    import warnings

    root, _ = tree
    before = list(warnings.filters)
    ingest_folder(root, tmp_path / "s.h5", size=(SIZE, SIZE), progress=False, workers=2)
    assert warnings.filters == before


def test_python_ingest_warns_about_skipped_files(tree, tmp_path):
    """The command line names skipped files on a warning line; Python gets a FastmixWarning."""
    from fastmix.errors import FastmixWarning

    root, _ = tree
    with pytest.warns(FastmixWarning, match="skipped 1 unreadable file.*z_broken.png"):
        report = ingest_folder(root, tmp_path / "s.h5", size=(SIZE, SIZE), progress=False)
    assert len(report.skipped) == 1
