"""The new-file store engine: mix_store / unmix_store on real HDF5 files."""

import itertools
import os

import h5py
import hdf5plugin
import numpy as np
import pytest
from test_cli_support import terminal_output

import fastmix
from fastmix.errors import BadInputError, WrongKeyError
from fastmix.store import open_store, plan_windows, read_mix_record

pytestmark = pytest.mark.filterwarnings("ignore::fastmix.FastmixWarning")

SPEC = fastmix.MixSpec(block=(8, 8), donors=3, prob=0.5, rounds=1)

FILTERS = {
    "none": {},
    "gzip": {"compression": "gzip", "compression_opts": 1},
    "lzf": {"compression": "lzf"},
    "shuffle-gzip": {"shuffle": True, "compression": "gzip"},
    "lz4": dict(hdf5plugin.LZ4()),
    "zstd": dict(hdf5plugin.Zstd()),
    "blosc2": dict(hdf5plugin.Blosc2()),
    "blosc": dict(hdf5plugin.Blosc()),
    "bitshuffle": dict(hdf5plugin.Bitshuffle()),
}


def write_store(path, images, labels, *, chunks=(64,), **options):
    """Return a store with images, labels, and other content that must survive untouched."""
    with h5py.File(path, "w") as file:
        if chunks is None:
            file.create_dataset("images", data=images)
        else:
            file.create_dataset("images", data=images, chunks=chunks + images.shape[1:],
                                **options)
        file["images"].attrs["source"] = "scikit-image samples"
        file["images"].attrs["scale"] = np.float32(0.5)
        file["labels"] = labels
        file["labels"].attrs["class_names"] = ["astronaut", "coffee", "chelsea", "rocket"]
        file.attrs["created_by"] = "test"
        file.create_group("meta/nested").attrs["depth"] = 2
        file["meta/nested/table"] = np.arange(10, dtype=np.int16)
        file["meta"].attrs["version"] = np.int64(3)
    return path


def read_images(path, name="images"):
    with h5py.File(path, "r") as file:
        return file[name][()]


@pytest.fixture(scope="module")
def photos():
    """512 real 32x32 photo tiles (the samples, then each tile upside down) with 4 labels."""
    pytest.importorskip("skimage.data")
    from fastmix.samples import photo_tiles

    tiles, labels = photo_tiles()
    tiles, labels = np.concatenate([tiles, tiles[:, ::-1]]), np.concatenate([labels, labels])
    order = np.random.default_rng(1).permutation(len(tiles))
    return np.ascontiguousarray(tiles[order]), labels[order]


@pytest.mark.parametrize("filter_name", sorted(FILTERS))
def test_mix_store_equals_mix_array_for_every_filter(tmp_path, photos, key, filter_name):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels, chunks=(64,),
                         **FILTERS[filter_name])
    report = fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key, window=128,
                               progress=False)
    expected = fastmix.mix_array(images, labels, SPEC, key, window=128)
    assert np.array_equal(read_images(tmp_path / "out.h5"), expected)
    assert not np.array_equal(expected, images)
    assert report.window == 128 and report.windows == 4 and report.images == len(images)
    with h5py.File(source) as original, h5py.File(tmp_path / "out.h5") as mixed:
        assert mixed["images"].chunks == original["images"].chunks
        before = original["images"].id.get_create_plist()
        after = mixed["images"].id.get_create_plist()
        assert [before.get_filter(i)[:3] for i in range(before.get_nfilters())] == \
            [after.get_filter(i)[:3] for i in range(after.get_nfilters())]
    restored = fastmix.unmix_store(tmp_path / "out.h5", tmp_path / "back.h5", key=key,
                                   progress=False)
    assert np.array_equal(read_images(tmp_path / "back.h5"), images)
    assert restored.operation == "unmix"


@pytest.mark.parametrize("chunks, window", [(None, 100), ((1,), 77), ((100,), 200),
                                            ((48,), 96), ((512,), None), ((33,), 33)])
def test_chunkings_and_windows(tmp_path, photos, key, chunks, window):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels, chunks=chunks)
    report = fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key, window=window,
                               progress=False)
    expected = fastmix.mix_array(images, labels, SPEC, key, window=report.window)
    assert np.array_equal(read_images(tmp_path / "out.h5"), expected)
    fastmix.unmix_store(tmp_path / "out.h5", tmp_path / "back.h5", key=key, progress=False)
    assert np.array_equal(read_images(tmp_path / "back.h5"), images)


@pytest.mark.parametrize("filter_name", ["none", "gzip", "lz4", "shuffle-gzip"])
def test_h5py_fallback_path_gives_the_same_bytes(tmp_path, photos, key, filter_name):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels, chunks=(100,),
                         **FILTERS[filter_name])
    fast = fastmix.mix_store(source, tmp_path / "fast.h5", spec=SPEC, key=key, window=200,
                             progress=False)
    slow = fastmix.mix_store(source, tmp_path / "slow.h5", spec=SPEC, key=key, window=200,
                             progress=False, raw_chunks=False)
    assert slow.io_path == "h5py/h5py"
    assert fast.io_path != slow.io_path
    assert np.array_equal(read_images(tmp_path / "fast.h5"), read_images(tmp_path / "slow.h5"))


def test_memory_budget_sets_the_window(tmp_path, photos, key):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels, chunks=(16,))
    with h5py.File(source) as file:
        windows = plan_windows(file["images"], memory="800KiB", block_count=16)
    length = windows[0][1] - windows[0][0]
    assert length % 16 == 0 and 16 <= length < len(images)
    assert windows[-1][1] == len(images)
    assert all(b[0] == a[1] for a, b in itertools.pairwise(windows))
    report = fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key,
                               memory="800KiB", progress=False)
    assert report.windows > 1
    with h5py.File(tmp_path / "out.h5") as file:
        assert file["images"].attrs["fastmix_window"] == report.window
    expected = fastmix.mix_array(images, labels, SPEC, key, window=report.window)
    assert np.array_equal(read_images(tmp_path / "out.h5"), expected)


def test_other_content_and_attributes_are_copied(tmp_path, photos, key):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels, chunks=(64,), compression="gzip")
    with h5py.File(source, "a") as file:
        file["link"] = h5py.SoftLink("/meta/nested")
    fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key, progress=False)
    with h5py.File(source) as original, h5py.File(tmp_path / "out.h5") as mixed:
        assert dict(mixed.attrs) == dict(original.attrs)
        assert mixed["meta"].attrs["version"] == 3
        assert mixed["meta/nested"].attrs["depth"] == 2
        assert np.array_equal(mixed["meta/nested/table"][()], original["meta/nested/table"][()])
        assert mixed["meta/nested/table"].dtype == np.int16
        assert np.array_equal(mixed["labels"][()], original["labels"][()])
        assert list(mixed["labels"].attrs["class_names"]) == \
            list(original["labels"].attrs["class_names"])
        assert mixed.get("link", getlink=True).path == "/meta/nested"
        assert mixed["images"].attrs["source"] == "scikit-image samples"
        assert mixed["images"].attrs["scale"].dtype == np.float32
        attrs = mixed["images"].attrs
        assert attrs["fastmix_mode"] == "permute"
        assert list(attrs["fastmix_block"]) == [8, 8]
        assert attrs["fastmix_donors"] == 3 and attrs["fastmix_rounds"] == 1
        assert attrs["fastmix_prob"] == 0.5
        assert attrs["fastmix_key_check"] == key.check_value
        assert attrs["fastmix_labels"] == "labels"
        assert bool(attrs["fastmix_reversible"])
        record = read_mix_record(mixed["images"])
        assert record.spec == SPEC and record.window == len(images)
        assert not any(name.startswith("fastmix_") for name in original["images"].attrs)
    fastmix.unmix_store(tmp_path / "out.h5", tmp_path / "back.h5", key=key, progress=False)
    with h5py.File(tmp_path / "back.h5") as restored:
        assert not any(name.startswith("fastmix_") for name in restored["images"].attrs)
        assert restored["images"].attrs["source"] == "scikit-image samples"


def test_key_never_appears_in_the_output(tmp_path, photos, key):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels)
    fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key, progress=False)
    content = (tmp_path / "out.h5").read_bytes()
    assert key.check_value.encode() in content  # the search itself works
    secret = key.hex()
    assert secret.encode() not in content
    assert secret.upper().encode() not in content
    assert bytes.fromhex(secret) not in content
    assert not [name for name in os.listdir(tmp_path) if "fastmix-tmp" in name]


@pytest.mark.parametrize("kind", ["fixed", "vlen"])
def test_string_labels(tmp_path, photos, key, kind):
    images, labels = photos
    names = np.array(["astronaut", "coffee", "chelsea", "rocket"])[labels]
    source = write_store(tmp_path / "in.h5", images, labels)
    with h5py.File(source, "a") as file:
        del file["labels"]
        if kind == "fixed":
            file["labels"] = names.astype("S")
        else:
            file.create_dataset("labels", data=names.tolist(), dtype=h5py.string_dtype())
    fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key, window=256,
                      progress=False)
    expected = fastmix.mix_array(images, names, SPEC, key, window=256)
    assert np.array_equal(read_images(tmp_path / "out.h5"), expected)
    with h5py.File(source) as file:
        store = open_store(source)
        assert store.labels.tolist()[:3] == names.tolist()[:3]
        store.close()
        assert file["labels"].dtype.kind in "SO"


def test_other_dtypes_and_grayscale(tmp_path, photos, key):
    images, labels = photos
    gray = (images[..., 0].astype(np.uint16) * 257).astype(">u2")
    source = tmp_path / "gray.h5"
    with h5py.File(source, "w") as file:
        file.create_dataset("pixels", data=gray, chunks=(32, 32, 32), compression="gzip",
                            shuffle=True)
        file["classes"] = labels
    fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key, images="pixels",
                      labels="classes", window=256, progress=False)
    with h5py.File(tmp_path / "out.h5") as file:
        mixed = file["pixels"][()]
        assert file["pixels"].dtype == np.dtype(">u2")
    assert np.array_equal(mixed, fastmix.mix_array(gray, labels, SPEC, key, window=256))
    fastmix.unmix_store(tmp_path / "out.h5", tmp_path / "back.h5", key=key, images="pixels",
                        progress=False)
    assert np.array_equal(read_images(tmp_path / "back.h5", "pixels"), gray)


def test_chunks_that_split_images_use_h5py(tmp_path, photos, key):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels, chunks=None)
    with h5py.File(source, "a") as file:
        del file["images"]
        file.create_dataset("images", data=images, chunks=(64, 16, 16, 3), compression="gzip")
    report = fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key, window=128,
                               progress=False)
    assert report.io_path == "h5py/h5py"
    assert np.array_equal(read_images(tmp_path / "out.h5"),
                          fastmix.mix_array(images, labels, SPEC, key, window=128))


def test_refusals_leave_nothing_behind(tmp_path, photos, key):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels, chunks=(64,))
    before = source.read_bytes()
    (tmp_path / "exists.h5").write_bytes(b"keep me")
    with pytest.raises(BadInputError, match=r"already exists.*overwrite"):
        fastmix.mix_store(source, tmp_path / "exists.h5", spec=SPEC, key=key, progress=False)
    assert (tmp_path / "exists.h5").read_bytes() == b"keep me"
    with pytest.raises(BadInputError, match="in_place=True"):
        fastmix.mix_store(source, source, spec=SPEC, key=key, progress=False)
    os.link(source, tmp_path / "hardlink.h5")
    with pytest.raises(BadInputError, match="in_place=True"):
        fastmix.mix_store(source, tmp_path / "hardlink.h5", spec=SPEC, key=key, progress=False)
    with pytest.raises(BadInputError, match="multiple of 64"):
        fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key, window=100,
                          progress=False)
    with pytest.raises(BadInputError, match=r"Raise --memory.*rechunk"):
        fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key, memory="100KiB",
                          progress=False)
    with pytest.raises(BadInputError, match="no images dataset 'pixels'"):
        fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key, images="pixels",
                          progress=False)
    with pytest.raises(BadInputError, match=r"folder .* does not exist"):
        fastmix.mix_store(source, tmp_path / "nowhere" / "out.h5", spec=SPEC, key=key,
                          progress=False)
    with pytest.raises(BadInputError, match="destination"):
        fastmix.mix_store(source, spec=SPEC, key=key, progress=False)
    lonely = write_store(tmp_path / "lonely.h5", images[:5], np.arange(5), chunks=None)
    with pytest.raises(BadInputError, match="no other image of their label"):
        fastmix.mix_store(lonely, tmp_path / "out.h5", spec=SPEC, key=key, strict=True,
                          progress=False)
    with pytest.warns(fastmix.FastmixWarning, match="left unmixed"):
        report = fastmix.mix_store(lonely, tmp_path / "lonely-out.h5", spec=SPEC, key=key,
                                   progress=False)
    assert report.unpartnered == 5
    assert source.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["exists.h5", "hardlink.h5", "in.h5", "lonely-out.h5",
                                            "lonely.h5"]


def test_overwrite_replaces_the_destination(tmp_path, photos, key):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels)
    (tmp_path / "out.h5").write_bytes(b"old")
    fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key, overwrite=True,
                      progress=False)
    assert np.array_equal(read_images(tmp_path / "out.h5"),
                          fastmix.mix_array(images, labels, SPEC, key))


def test_unmix_refusals(tmp_path, photos, key):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels)
    with pytest.raises(BadInputError, match="not mixed by fastmix"):
        fastmix.unmix_store(source, tmp_path / "back.h5", key=key, progress=False)
    fastmix.mix_store(source, tmp_path / "paper.h5", spec=fastmix.MixSpec(mode="paper"),
                      key=key, progress=False)
    with pytest.raises(BadInputError, match=r"paper.*not reversible"):
        fastmix.unmix_store(tmp_path / "paper.h5", tmp_path / "back.h5", key=key,
                            progress=False)
    fastmix.mix_store(source, tmp_path / "mixed.h5", spec=SPEC, key=key, progress=False)
    with pytest.raises(WrongKeyError, match="wrong key"):
        fastmix.unmix_store(tmp_path / "mixed.h5", tmp_path / "back.h5",
                            key=fastmix.Key.generate(), progress=False)
    with pytest.raises(BadInputError, match="already mixed"):
        fastmix.mix_store(tmp_path / "mixed.h5", tmp_path / "twice.h5", spec=SPEC, key=key,
                          progress=False)
    assert not (tmp_path / "back.h5").exists() and not (tmp_path / "twice.h5").exists()
    assert not [name for name in os.listdir(tmp_path) if "fastmix-tmp" in name]


def test_bad_files(tmp_path, key):
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(BadInputError, match="not an HDF5 file"):
        fastmix.mix_store(tmp_path / "text.h5", tmp_path / "out.h5", key=key, progress=False)
    with pytest.raises(BadInputError, match="does not exist"):
        fastmix.mix_store(tmp_path / "missing.h5", tmp_path / "out.h5", key=key, progress=False)
    with h5py.File(tmp_path / "good.h5", "w") as file:
        file["images"] = np.zeros((4, 8, 8), np.uint8)
        file["labels"] = np.zeros(3)
    with pytest.raises(BadInputError, match="3 entries but there are 4 images"):
        fastmix.mix_store(tmp_path / "good.h5", tmp_path / "out.h5", key=key, progress=False)
    data = (tmp_path / "good.h5").read_bytes()
    (tmp_path / "cut.h5").write_bytes(data[: len(data) // 3])
    with pytest.raises(BadInputError):
        fastmix.mix_store(tmp_path / "cut.h5", tmp_path / "out.h5", key=key, progress=False)
    assert not (tmp_path / "out.h5").exists()


def test_report(tmp_path, photos, key, capfd):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels)
    # progress=True draws a bar only on a terminal; under pytest stderr is not one.
    report = fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key, progress=True)
    captured = capfd.readouterr()
    assert captured.err == "" and captured.out == ""
    assert isinstance(report, fastmix.StoreReport)
    assert report.pixel_bytes == images.nbytes and report.seconds > 0
    line = report.summary()
    assert "images/s" in line and "MB/s" in line and key.hex() not in line
    data = report.to_dict()
    assert data["images"] == len(images) and data["spec"] == SPEC.to_dict()


def test_progress_bar_on_a_terminal(tmp_path, photos, key):
    """Under a pseudo-terminal the bar shows images/s and MB/s, and never the key."""
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels, chunks=(16,))
    script = (
        "import fastmix, sys; key = fastmix.Key.from_hex(sys.argv[3]); "
        "fastmix.mix_store(sys.argv[1], sys.argv[2], key=key, memory='600KiB', "
        "spec=fastmix.MixSpec(block=(8, 8)))"
    )
    text = terminal_output(script, str(source), str(tmp_path / "out.h5"), key.hex(),
                           size=(24, 100))
    assert "MB/s" in text and "img/s" in text and "512" in text
    assert key.hex() not in text


@pytest.mark.parametrize("chunks", [None, (64,)])
def test_user_block_is_kept_and_offsets_respected(tmp_path, photos, key, chunks):
    images, labels = photos
    source = tmp_path / "in.h5"
    with h5py.File(source, "w", userblock_size=512) as file:
        if chunks is None:
            file["images"] = images
        else:
            file.create_dataset("images", data=images, chunks=chunks + images.shape[1:])
        file["labels"] = labels
    with open(source, "r+b") as handle:
        handle.write(b"user block text")
    report = fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key, window=128,
                               progress=False)
    assert report.io_path.split("/")[0] in ("contiguous", "chunks")
    assert (tmp_path / "out.h5").read_bytes()[:15] == b"user block text"
    assert np.array_equal(read_images(tmp_path / "out.h5"),
                          fastmix.mix_array(images, labels, SPEC, key, window=128))


@pytest.mark.parametrize("options", [dict(hdf5plugin.LZ4(nbytes=1000)),
                                     dict(hdf5plugin.Zstd(clevel=9)),
                                     {"compression": "gzip", "compression_opts": 9,
                                      "shuffle": True}],
                         ids=["lz4-small-blocks", "zstd-9", "shuffle-gzip-9"])
def test_codec_edge_cases(tmp_path, photos, key, options):
    """Multi-block LZ4 chunks, incompressible blocks stored raw, other levels, uint16."""
    images, labels = photos
    noise = np.random.default_rng(5).integers(0, 65536, images.shape[:3], dtype=np.uint16)
    noise[:100] = images[:100, ..., 0]  # compressible and incompressible chunks
    source = tmp_path / "in.h5"
    with h5py.File(source, "w") as file:
        file.create_dataset("images", data=noise, chunks=(50, 32, 32), **options)
        file["labels"] = labels
    report = fastmix.mix_store(source, tmp_path / "out.h5", spec=SPEC, key=key, window=200,
                               progress=False)
    assert report.io_path == "raw-chunks/raw-chunks"
    mixed = read_images(tmp_path / "out.h5")
    assert np.array_equal(mixed, fastmix.mix_array(noise, labels, SPEC, key, window=200))
    fastmix.unmix_store(tmp_path / "out.h5", tmp_path / "back.h5", key=key, progress=False)
    assert np.array_equal(read_images(tmp_path / "back.h5"), noise)


def test_images_in_groups_of_two_are_warned_about(tmp_path, key):
    # Two labels of two images each: whatever the group size, each label is a pair.
    images = np.random.default_rng(4).integers(0, 256, (26, 16, 16, 3), dtype=np.uint8)
    labels = np.r_[np.zeros(22, int), [1, 1, 2, 2]]
    source = write_store(tmp_path / "in.h5", images, labels, chunks=(26,))
    spec = fastmix.MixSpec(block=(8, 8), donors=10, prob=1.0)
    with pytest.warns(fastmix.FastmixWarning, match="4 image\\(s\\) are in permute groups of two"):
        fastmix.mix_store(source, tmp_path / "out.h5", spec=spec, key=key, progress=False)
    with pytest.raises(fastmix.BadInputError, match=r"groups of two.*strict refuses"):
        fastmix.mix_store(source, tmp_path / "strict.h5", spec=spec, key=key, progress=False,
                          strict=True)
    assert not (tmp_path / "strict.h5").exists()


@pytest.mark.parametrize("chunks", [(16, 8, 8, 3), (16, 4, 8, 3)], ids=["whole", "split"])
def test_stored_chunks_are_copied_as_stored(tmp_path, chunks):
    """The one-file cluster layout's copy: the stored bytes move, nothing is decoded.

    The source's chunks are not LZ4 at all (a decoder would fail on them) and one carries a
    filter mask; the copy holds the very same bytes and masks, shifted by whole chunks.
    """
    from fastmix.store.hdf5.lowlevel import copy_stored_chunks

    lz4 = dict(hdf5plugin.LZ4())
    with h5py.File(tmp_path / "f.h5", "w") as file:
        part = file.create_dataset("part", shape=(40, 8, 8, 3), dtype=np.uint8, chunks=chunks,
                                   **lz4)
        output = file.create_dataset("out", shape=(72, 8, 8, 3), dtype=np.uint8,
                                     chunks=chunks, **lz4)
        rng = np.random.default_rng(3)
        offsets = [(first, top, 0, 0) for first in range(0, 40, 16)
                   for top in range(0, 8, chunks[1])]
        stored = {offset: rng.bytes(int(rng.integers(1, 500))) for offset in offsets}
        for index, (offset, data) in enumerate(stored.items()):
            part.id.write_direct_chunk(offset, data, 1 if index == 1 else 0)
        buffer = bytearray(8)
        copied = copy_stored_chunks(part, output, 32, buffer, length=40)
        assert copied == sum(len(data) for data in stored.values())
        for index, (offset, data) in enumerate(stored.items()):
            mask, read = output.id.read_direct_chunk((offset[0] + 32, *offset[1:]))
            assert (mask, bytes(read)) == (1 if index == 1 else 0, data)
        with pytest.raises(ValueError):  # not a whole number of chunks further
            copy_stored_chunks(part, output, 8, length=40)
        other = file.create_dataset("gzip", shape=(72, 8, 8, 3), dtype=np.uint8,
                                    chunks=chunks, compression="gzip")
        with pytest.raises(ValueError):  # another filter pipeline
            copy_stored_chunks(part, other, 0, length=40)
        # Another dtype, another image shape, another length, or past the end: refused.
        wide = file.create_dataset("wide", shape=(72, 8, 8, 3), dtype=np.uint16,
                                   chunks=chunks, **lz4)
        narrow = file.create_dataset("narrow", shape=(72, 8, 4, 3), dtype=np.uint8,
                                     chunks=(16, 8, 4, 3), **lz4)
        for target, shift, length in [(wide, 0, 40), (narrow, 0, 40), (output, 0, 48),
                                      (output, 48, 40)]:
            with pytest.raises(ValueError, match="cannot copy"):
                copy_stored_chunks(part, target, shift, length=length)
            assert target.id.get_num_chunks() == (len(stored) if target is output else 0)
