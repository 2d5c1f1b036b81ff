"""``fastmix preview``: a valid PNG grid, originals beside mixed images."""

from __future__ import annotations

import h5py
import imageio.v3 as iio
import numpy as np
from test_cli_support import run_cli

import fastmix
from fastmix.images.preview import (
    CAPTION,
    MARGIN,
    PAIR_GAP,
    choose,
    enlargement,
    preview_grid,
)


def _stores(tmp_path, photo_tiles, key):
    tiles, labels = photo_tiles
    import hdf5plugin

    with h5py.File(tmp_path / "source.h5", "w") as file:
        file.create_dataset("images", data=tiles, chunks=(64, 32, 32, 3), **hdf5plugin.Zstd())
        names = file.create_dataset("labels", data=labels.astype(np.int64))
        names.attrs["class_names"] = ["astronaut", "coffee", "chelsea", "rocket"]
    fastmix.mix_store(tmp_path / "source.h5", tmp_path / "mixed.h5",
                      spec=fastmix.MixSpec(block=(8, 8)), key=key, progress=False)


def test_paired_grid_has_the_expected_size_and_cells(tmp_path, photo_tiles, key):
    _stores(tmp_path, photo_tiles, key)
    layout = preview_grid(tmp_path / "mixed.h5", tmp_path / "grid.png",
                          original=tmp_path / "source.h5", count=3, seed=5)
    picture = iio.imread(tmp_path / "grid.png")
    scale = enlargement(32, 32)
    assert scale == 4
    cell = 32 * scale
    assert picture.shape == (CAPTION + 4 * cell + 5 * MARGIN,
                             layout.label_width + 3 * (2 * cell + PAIR_GAP) + 4 * MARGIN, 3)
    assert (layout.size[1], layout.size[0]) == picture.shape[:2]
    with h5py.File(tmp_path / "mixed.h5", "r") as mixed, \
            h5py.File(tmp_path / "source.h5", "r") as source:
        labels = mixed["labels"][()]
        chosen = choose(labels, 3, 5)
        for row, (_, indices) in enumerate(chosen):
            for column, index in enumerate(indices):
                x, y = layout.cell_origin(row, column)
                original = picture[y:y + cell:scale, x:x + cell:scale]
                np.testing.assert_array_equal(original, source["images"][index])
                x += cell + PAIR_GAP
                mixed_cell = picture[y:y + cell:scale, x:x + cell:scale]
                np.testing.assert_array_equal(mixed_cell, mixed["images"][index])


def test_seed_selects_and_cli_writes_png(tmp_path, photo_tiles, key):
    _stores(tmp_path, photo_tiles, key)
    labels = photo_tiles[1]
    assert [list(i) for _, i in choose(labels, 4, 0)] == [list(i) for _, i in choose(labels, 4, 0)]
    assert [list(i) for _, i in choose(labels, 4, 0)] != [list(i) for _, i in choose(labels, 4, 1)]
    result = run_cli("preview", "mixed.h5", "-o", "grid.png", "--count", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    picture = iio.imread(tmp_path / "grid.png")
    assert picture.shape[0] == 4 * 128 + 5 * MARGIN
    assert "4 class(es) x 2 image(s)" in result.stdout


def test_mismatched_original_is_one_line_exit_2(tmp_path, photo_tiles, key):
    _stores(tmp_path, photo_tiles, key)
    with h5py.File(tmp_path / "other.h5", "w") as file:
        file.create_dataset("images", data=np.zeros((5, 32, 32, 3), np.uint8))
        file.create_dataset("labels", data=np.zeros(5, np.int64))
    result = run_cli("preview", "mixed.h5", "--original", "other.h5", "-o", "g.png",
                         cwd=tmp_path)
    assert result.returncode == 2 and "give the store it was mixed from" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "g.png").exists()
