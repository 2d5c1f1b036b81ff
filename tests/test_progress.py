"""The progress display: shown on any terminal, advanced per piece, honest after a resume."""

from __future__ import annotations

from typing import ClassVar

import h5py
import numpy as np
import pytest
from test_cli_support import terminal_output

import fastmix
import fastmix.store.inplace.rewrite
import fastmix.store.newfile.run
from fastmix.progress import Progress
from fastmix.store.inplace import InPlaceRunStopped

SPEC = fastmix.MixSpec(grid=(4, 4), donors=3)
KEY = fastmix.Key(bytes(range(32)))


def test_bar_appears_on_a_terminal_of_size_zero():
    """On 0 rows tqdm would hide every bar (it reads -1); Progress gives it a size."""
    text = terminal_output(
        "from fastmix.progress import Progress\n"
        "with Progress(40, 1000, 'mix') as bar:\n"
        "    for _ in range(4):\n"
        "        bar.update(10)\n")
    assert "mix: 100%" in text and "img/s" in text


class RecordingProgress(Progress):
    """A Progress that remembers each update (the display itself stays off)."""

    updates: ClassVar[list[int]] = []  # the engine makes the instance; the test reads this

    def __init__(self, total, image_bytes, description="", enabled=True):
        super().__init__(total, image_bytes, description, enabled=False)
        RecordingProgress.updates = []

    def update(self, images: int) -> None:
        RecordingProgress.updates.append(images)
        super().update(images)


def make_store(path, count: int, compressed: bool = False):
    import hdf5plugin

    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (count, 64, 64, 3), dtype=np.uint8)
    labels = np.arange(count) % 4
    filters = dict(hdf5plugin.LZ4()) if compressed else {}
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=images, chunks=(16, 64, 64, 3), **filters)
        file.create_dataset("labels", data=labels)
    return images, labels


@pytest.mark.parametrize("in_place", [False, True], ids=["new-file", "in-place"])
def test_one_window_store_advances_per_piece(tmp_path, monkeypatch, in_place):
    """A store that fits one window (12 MB of a 1 GiB budget) moves the bar many times."""
    module = fastmix.store.inplace.rewrite if in_place else fastmix.store.newfile.run
    monkeypatch.setattr(module, "Progress", RecordingProgress)
    source = tmp_path / "in.h5"
    images, _ = make_store(source, 1024)
    report = fastmix.mix_store(source, None if in_place else tmp_path / "out.h5", spec=SPEC,
                               key=KEY, memory="1GiB", in_place=in_place)
    assert report.windows == 1
    updates = [count for count in RecordingProgress.updates if count]
    assert sum(updates) == len(images)
    assert len(updates) >= 4  # 12 MB in pieces of about 2 MiB


def test_resumed_run_reports_what_it_did(tmp_path, monkeypatch):
    """After an interruption at window 2 of 4, the resume reports its own 2 windows."""
    store = tmp_path / "store.h5"
    images, _labels = make_store(store, 256)
    options = {"spec": SPEC, "key": KEY, "window": 64, "progress": False, "in_place": True}
    monkeypatch.setenv("FASTMIX_TEST_JOURNAL_ENOSPC", "2")
    with pytest.raises(InPlaceRunStopped):
        fastmix.mix_store(store, **options)
    monkeypatch.delenv("FASTMIX_TEST_JOURNAL_ENOSPC")
    report = fastmix.mix_store(store, resume=True, **options)
    assert (report.images, report.windows) == (128, 2)
    assert report.pixel_bytes == 128 * images[0].nbytes
    assert report.extra["store_images"] == 256
    line = report.summary()
    assert "resumed at window 3 of 4" in line and "128 images" in line, line
    assert "256" not in line


def test_audit_advances_per_attacked_pool(tmp_path, monkeypatch, photo_tiles):
    pytest.importorskip("scipy")
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")
    import fastmix.audit.auditing
    from fastmix.audit.strong import ATTACKS

    monkeypatch.setattr(fastmix.audit.auditing, "Progress", RecordingProgress)
    RecordingProgress.updates = []
    tiles, labels = photo_tiles
    with h5py.File(tmp_path / "in.h5", "w") as file:
        file["images"] = tiles[:96]
        file["labels"] = labels[:96]
    fastmix.mix_store(tmp_path / "in.h5", tmp_path / "out.h5", spec=SPEC, key=KEY,
                      progress=False)
    report = fastmix.audit.audit_stores(tmp_path / "in.h5", tmp_path / "out.h5", sample=40)
    # every attack of the audit advances by each pool it solved (fastmix.audit.strong.ATTACKS)
    assert sum(RecordingProgress.updates) == len(ATTACKS) * report.sampled
    assert len(RecordingProgress.updates) > len(ATTACKS)  # one update per attacked pool
