"""Issue 21, items 7 and 8: other names for the images, and lossy filters.

A new-file output must hold no original pixel under any path (hard and soft links, external
links, object and region references, dimension scales, virtual datasets), and must hold its
images without a lossy filter so that unmix gives back exactly what fastmix read. In place,
images behind an external link and lossy filters are refused before anything is written.
"""

from __future__ import annotations

import hashlib
import os
import warnings

import h5py
import hdf5plugin
import numpy as np
import pytest

import fastmix
from fastmix.cli import main
from fastmix.errors import FastmixWarning
from fastmix.store import mix_store, read_mix_record, unmix_store

KEY = fastmix.Key(bytes(range(32)))
#: Every block moves (prob 1, permute groups of 4) and 16 blocks make each image: no original
#: image survives whole in the mixed output.
SPEC = fastmix.MixSpec(block=(2, 2), donors=3, prob=1.0)
COUNT, SIDE = 32, 8


def originals(dtype=np.uint8) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(21)
    if np.dtype(dtype).kind == "f":
        images = rng.random((COUNT, SIDE, SIDE, 3)).astype(dtype)
    else:
        images = rng.integers(0, 256, (COUNT, SIDE, SIDE, 3), dtype=dtype)
    return images, np.repeat(np.arange(4), COUNT // 4)


def write_source(path, images=None, labels=None, **options) -> h5py.File:
    """Open a new store holding ``images`` and ``labels``; the caller adds the other names."""
    if images is None:
        images, labels = originals()
    file = h5py.File(path, "w")
    file.create_dataset("images", data=images, chunks=(8, SIDE, SIDE, 3), **options)
    file["labels"] = labels
    return file


def mix(source, destination, **options):
    options = {"spec": SPEC, "key": KEY, "progress": False, **options}
    return mix_store(source, destination, **options)


def arrays_reachable(path):
    """Yield (where, array) for every value h5py can reach in ``path``.

    Every link h5py follows (hard, soft, external), every attribute, and every object a
    reference in a dataset or attribute points at.
    """
    seen: set = set()
    pending: list = []

    def visit_references(holder, value):
        flat = np.asarray(value, dtype=object).reshape(-1)
        for reference in flat:
            if isinstance(reference, h5py.Reference) and reference:
                try:
                    pending.append(holder.file[reference])
                except Exception:  # a dangling reference reaches nothing
                    pass

    def walk(item):
        identity = (item.file.filename, h5py.h5o.get_info(item.id).addr)
        if identity in seen:
            return
        seen.add(identity)
        for name in item.attrs:
            value = item.attrs[name]
            yield f"{item.name}@{name}", np.asarray(value)
            if h5py.check_ref_dtype(item.attrs.get_id(name).dtype) is not None:
                visit_references(item, value)
        if isinstance(item, h5py.Dataset):
            value = item[()]
            yield item.name, np.asarray(value)
            if h5py.check_ref_dtype(item.dtype) is not None:
                visit_references(item, value)
        elif isinstance(item, h5py.Group):
            for name in item:
                try:
                    child = item[name]
                except (KeyError, OSError):  # a dangling soft or external link
                    continue
                yield from walk(child)

    with h5py.File(path, "r") as file:
        pending.append(file)
        while pending:
            yield from walk(pending.pop())


def assert_no_original(path, images: np.ndarray) -> int:
    """Assert that no array reachable in ``path`` holds any original image; count arrays."""
    wanted = [image.tobytes() for image in images]
    count = 0
    for where, array in arrays_reachable(path):
        if array.dtype.kind not in "biuf":
            continue
        data = np.ascontiguousarray(array).tobytes()
        count += 1
        for index, image in enumerate(wanted):
            assert image not in data, f"original image {index} is readable at {where}"
    return count


def filter_codes(dataset) -> list[int]:
    plist = dataset.id.get_create_plist()
    return [plist.get_filter(index)[0] for index in range(plist.get_nfilters())]


#: The lossy filters of the tests: scale-offset (6) and ZFP (32013).
LOSSY_CODES = {6, 32013}


def address(item) -> int:
    return h5py.h5o.get_info(item.id).addr


def digest(path) -> str:
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


def cli(capsys, *arguments: str) -> tuple[int, str]:
    status = main(list(arguments))
    return status, capsys.readouterr().err


def cli_mix(capsys, source, *extra: str, key_file) -> tuple[int, str]:
    return cli(capsys, "mix", str(source), *extra, "--key-file", str(key_file),
               "--privacy", "fast", "--block", "2x2", "--donors", "3", "--prob", "1",
               "--quiet")


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "secret.key"
    KEY.save(path)
    return path


# -- item 7: other names for the images ------------------------------------------------------


def test_hard_links_to_the_images_become_links_to_the_mixed_images(tmp_path):
    images, labels = originals()
    with write_source(tmp_path / "s.h5", images, labels) as file:
        file["alias"] = file["images"]
        file.create_group("meta/deeper")["copy"] = file["images"]
        file["meta"].attrs["note"] = "a group that does not hold the images path"
    with warnings.catch_warnings():
        warnings.simplefilter("error", FastmixWarning)  # nothing is left out
        mix(tmp_path / "s.h5", tmp_path / "m.h5")
    assert assert_no_original(tmp_path / "m.h5", images) >= 2
    with h5py.File(tmp_path / "m.h5", "r") as out:
        mixed = address(out["images"])
        assert address(out["alias"]) == mixed
        assert address(out["meta/deeper/copy"]) == mixed
        assert out["meta"].attrs["note"] == "a group that does not hold the images path"
    unmix_store(tmp_path / "m.h5", tmp_path / "u.h5", key=KEY, progress=False)
    with h5py.File(tmp_path / "u.h5", "r") as restored:
        np.testing.assert_array_equal(restored["alias"][()], images)


def test_the_images_named_through_a_hard_link_mix_every_name(tmp_path):
    images, labels = originals()
    with write_source(tmp_path / "s.h5", images, labels) as file:
        file.create_group("data")["pixels"] = file["images"]
    mix(tmp_path / "s.h5", tmp_path / "m.h5", images="data/pixels")
    assert_no_original(tmp_path / "m.h5", images)
    with h5py.File(tmp_path / "m.h5", "r") as out:
        assert address(out["images"]) == address(out["data/pixels"])
        assert read_mix_record(out["images"]) is not None


def test_soft_links_references_and_dimension_scales_reach_the_mixed_objects(tmp_path):
    images, labels = originals()
    with write_source(tmp_path / "s.h5", images, labels) as file:
        file["soft"] = h5py.SoftLink("/images")
        file["refs"] = np.array([file["images"].ref, file["labels"].ref, h5py.Reference()],
                                dtype=h5py.ref_dtype)
        file["regions"] = np.array([file["images"].regionref[2:5, :4]],
                                   dtype=h5py.regionref_dtype)
        file.attrs["pixels"] = file["images"].ref
        file["labels"].attrs.create("images", file["images"].ref, dtype=h5py.ref_dtype)
        index = file.create_dataset("index", data=np.arange(COUNT) * 10)
        index.make_scale("image index")
        file["images"].dims[0].attach_scale(index)
        side = file.create_dataset("rows", data=np.arange(SIDE))
        side.make_scale("row")
        file["images"].dims[1].attach_scale(side)
    mix(tmp_path / "s.h5", tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as out:
        mixed, labels_address = address(out["images"]), address(out["labels"])
        assert address(out["soft"]) == mixed
        refs = out["refs"][()]
        assert address(out[refs[0]]) == mixed
        assert address(out[refs[1]]) == labels_address
        assert not refs[2]
        assert address(out[out.attrs["pixels"]]) == mixed
        assert address(out[out["labels"].attrs["images"]]) == mixed
        region = out["regions"][0]
        assert address(out[region]) == mixed
        np.testing.assert_array_equal(out["images"][region], out["images"][2:5, :4])
        (scale,) = out["images"].dims[0].values()
        assert address(scale) == address(out["index"])
        np.testing.assert_array_equal(scale[()], np.arange(COUNT) * 10)
        assert out["images"].dims[0].label == "" and list(out["images"].dims[0].keys()) == \
            ["image index"]
        assert address(out["images"].dims[1][0]) == address(out["rows"])
    assert_no_original(tmp_path / "m.h5", images)


def test_an_external_link_named_as_images_is_refused(tmp_path, capsys, key_file):
    """The reported case: the mix overwrote the unrelated ``images`` and left the link."""
    images, labels = originals()
    with h5py.File(tmp_path / "originals.h5", "w") as other:
        other["images"] = images
    with write_source(tmp_path / "s.h5", np.zeros_like(images), labels) as file:
        file["ext"] = h5py.ExternalLink("originals.h5", "/images")
    before = digest(tmp_path / "originals.h5"), digest(tmp_path / "s.h5")
    status, err = cli_mix(capsys, tmp_path / "s.h5", str(tmp_path / "m.h5"), "--images", "ext",
                          key_file=key_file)
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1 and "external link" in err, err
    assert not os.path.exists(tmp_path / "m.h5")
    status, err = cli_mix(capsys, tmp_path / "s.h5", "--in-place", "--images", "ext",
                          key_file=key_file)
    assert status == 2, err
    assert "external link" in err and "originals.h5" in err, err
    assert (digest(tmp_path / "originals.h5"), digest(tmp_path / "s.h5")) == before


def test_external_labels_are_refused(tmp_path, capsys, key_file):
    images, labels = originals()
    with h5py.File(tmp_path / "labels.h5", "w") as other:
        other["labels"] = labels
    with h5py.File(tmp_path / "s.h5", "w") as file:
        file.create_dataset("images", data=images, chunks=(8, SIDE, SIDE, 3))
        file["labels"] = h5py.ExternalLink("labels.h5", "/labels")
    status, err = cli_mix(capsys, tmp_path / "s.h5", str(tmp_path / "m.h5"), key_file=key_file)
    assert status == 2 and "labels" in err and "external link" in err, err
    assert not os.path.exists(tmp_path / "m.h5")


def test_external_links_elsewhere_are_dropped_with_a_warning(tmp_path):
    images, labels = originals()
    with write_source(tmp_path / "backup.h5", images, labels):
        pass
    with write_source(tmp_path / "s.h5", images, labels) as file:
        file["backup"] = h5py.ExternalLink("backup.h5", "/images")
        file.create_group("g")["self"] = h5py.ExternalLink("s.h5", "/images")
    with pytest.warns(FastmixWarning, match="external link to backup.h5:/images"):
        mix(tmp_path / "s.h5", tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as out:
        assert "backup" not in out and "self" not in out["g"]
    assert_no_original(tmp_path / "m.h5", images)


def test_virtual_datasets_that_read_the_images_are_dropped(tmp_path):
    images, labels = originals()
    with write_source(tmp_path / "s.h5", images, labels) as file:
        layout = h5py.VirtualLayout(shape=images.shape, dtype=images.dtype)
        layout[:] = h5py.VirtualSource(".", "/images", shape=images.shape)
        file.create_virtual_dataset("view", layout)
        named = h5py.VirtualLayout(shape=(4, *images.shape[1:]), dtype=images.dtype)
        named[:] = h5py.VirtualSource("s.h5", "/images", shape=images.shape)[:4]
        file.create_virtual_dataset("named", named)
        table = file.create_dataset("table", data=np.arange(6, dtype=np.int16))
        kept = h5py.VirtualLayout(shape=(6,), dtype=np.int16)
        kept[:] = h5py.VirtualSource(table)
        file.create_virtual_dataset("table_view", kept)
    with pytest.warns(FastmixWarning, match="may read the images"):
        mix(tmp_path / "s.h5", tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as out:
        assert "view" not in out and "named" not in out
        np.testing.assert_array_equal(out["table_view"][()], np.arange(6))
    assert_no_original(tmp_path / "m.h5", images)


def test_compound_references_cycles_and_named_types(tmp_path):
    images, labels = originals()
    with write_source(tmp_path / "s.h5", images, labels) as file:
        row = np.dtype([("name", "S8"), ("target", h5py.ref_dtype)])
        file["table"] = np.array([(b"pixels", file["images"].ref),
                                  (b"labels", file["labels"].ref)], dtype=row)
        lists = file.create_dataset("lists", shape=(2,), dtype=h5py.vlen_dtype(h5py.ref_dtype))
        lists[0] = np.array([file["labels"].ref, file["images"].ref], dtype=h5py.ref_dtype)
        lists[1] = np.array([file["images"].ref], dtype=h5py.ref_dtype)
        loop = file.create_group("loop")
        loop["again"] = loop  # a cycle of hard links
        loop["pixels"] = file["images"]
        file["kind"] = np.dtype("<u2")  # a named datatype
    mix(tmp_path / "s.h5", tmp_path / "m.h5")
    assert_no_original(tmp_path / "m.h5", images)
    with h5py.File(tmp_path / "m.h5", "r") as out:
        table = out["table"][()]
        assert table["name"].tolist() == [b"pixels", b"labels"]
        assert address(out[table["target"][0]]) == address(out["images"])
        assert address(out[table["target"][1]]) == address(out["labels"])
        lists = out["lists"][()]
        assert [address(out[item]) for item in lists[0]] == [address(out["labels"]),
                                                             address(out["images"])]
        assert address(out[lists[1][0]]) == address(out["images"])
        assert address(out["loop/again"]) == address(out["loop"])
        assert address(out["loop/again/again/pixels"]) == address(out["images"])
        assert out["kind"].dtype == np.dtype("<u2")


def test_external_raw_storage_over_the_source_file_is_dropped(tmp_path):
    """A dataset whose external raw file is the store itself, at the images' offset."""
    images, labels = originals()
    path = tmp_path / "s.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=images)  # contiguous: one offset
        file["labels"] = labels
        offset = file["images"].id.get_offset()
    with h5py.File(path, "a") as file:
        file.create_dataset("sneaky", shape=images.shape, dtype=images.dtype,
                            external=[(str(path), offset, images.nbytes)])
        file["refs"] = np.array([file["sneaky"].ref], dtype=h5py.ref_dtype)
    with h5py.File(path, "r") as file:
        np.testing.assert_array_equal(file["sneaky"][()], images)  # it reads the originals
    with pytest.warns(FastmixWarning, match="sneaky"):
        mix(path, tmp_path / "m.h5")
    assert_no_original(tmp_path / "m.h5", images)
    with h5py.File(tmp_path / "m.h5", "r") as out:
        assert "sneaky" not in out and not out["refs"][0]  # a null reference now


# -- item 8: lossy filters -------------------------------------------------------------------

def lossy_source(path, name: str) -> np.ndarray:
    """Write a store whose images dataset has the lossy filter ``name``; return the originals.

    The integer case holds chunks spanning the full 0-255 range with a fill value, which a
    3-bit scale factor cannot keep (HDF5 reads back wrong values after the file is closed).
    """
    if name == "scaleoffset-int-3-bits":
        images, labels = originals()
        images[::2] = 255
        images[1::4] = 0
        options = {"scaleoffset": 3, "fillvalue": 7}
    else:
        images, labels = originals(np.float32)
        options = LOSSY[name]
    with write_source(path, images, labels, **options):
        pass
    return images


LOSSY = {
    "scaleoffset-float": {"scaleoffset": 2},
    "scaleoffset-int-3-bits": None,
    "zfp-rate": dict(hdf5plugin.Zfp(rate=8)),
}


@pytest.mark.parametrize("name", sorted(LOSSY))
def test_lossy_images_are_stored_without_the_filter_and_unmix_exactly(tmp_path, name,
                                                                     capsys, key_file):
    images = lossy_source(tmp_path / "s.h5", name)
    with h5py.File(tmp_path / "s.h5", "r") as file:
        source = file["images"][()]  # the values fastmix reads, after the filter
        assert set(filter_codes(file["images"])) & LOSSY_CODES
    assert not np.array_equal(source, images)  # the filter is lossy indeed
    with pytest.warns(FastmixWarning, match="lossy filter"):
        mix(tmp_path / "s.h5", tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as out:
        assert not set(filter_codes(out["images"])) & LOSSY_CODES
    unmix_store(tmp_path / "m.h5", tmp_path / "u.h5", key=KEY, progress=False)
    with h5py.File(tmp_path / "u.h5", "r") as restored:
        np.testing.assert_array_equal(restored["images"][()], source)
    status, err = cli(capsys, "verify", str(tmp_path / "s.h5"), str(tmp_path / "m.h5"),
                      "--key-file", str(key_file))
    assert status == 0, err


@pytest.mark.parametrize("name", sorted(LOSSY))
def test_lossy_filters_are_refused_in_place(tmp_path, name, capsys, key_file):
    lossy_source(tmp_path / "s.h5", name)
    before = digest(tmp_path / "s.h5")
    status, err = cli_mix(capsys, tmp_path / "s.h5", "--in-place", key_file=key_file)
    assert status == 2, err
    assert len(err.strip().splitlines()) == 1 and "lossy filter" in err, err
    assert digest(tmp_path / "s.h5") == before
    assert not os.path.exists(f"{tmp_path / 's.h5'}.fastmix-journal")


@pytest.mark.parametrize("bits", [0, 8])
def test_integer_scale_offset_at_factor_0_or_full_width_is_kept(tmp_path, bits):
    """Scale factor 0 (HDF5 computes the bits) or 8 on uint8 keeps every value: kept."""
    images, labels = originals()
    images[::2] = 255
    images[1::4] = 0
    with write_source(tmp_path / "s.h5", images, labels, scaleoffset=bits, fillvalue=7):
        pass
    with h5py.File(tmp_path / "s.h5", "r") as file:  # reopened: no chunk cache
        np.testing.assert_array_equal(file["images"][()], images)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FastmixWarning)
        mix(tmp_path / "s.h5", tmp_path / "m.h5")
    with h5py.File(tmp_path / "m.h5", "r") as out:
        assert filter_codes(out["images"]) == [6]
    mix_store(tmp_path / "s.h5", in_place=True, spec=SPEC, key=KEY, progress=False)
    unmix_store(tmp_path / "s.h5", in_place=True, key=KEY, progress=False)
    with h5py.File(tmp_path / "s.h5", "r") as file:
        np.testing.assert_array_equal(file["images"][()], images)


def stored_filter(tmp_path, **options):
    from fastmix.store.hdf5.lowlevel import dataset_filters

    with h5py.File(tmp_path / "f.h5", "a") as file:
        name = str(len(file))
        dataset = file.create_dataset(name, data=np.zeros((4, 16, 16), np.float32),
                                      chunks=(2, 16, 16), **options)
        return dataset_filters(dataset)[-1]


def test_the_lossy_filter_rule(tmp_path):
    from fastmix.store.hdf5.lowlevel import dataset_filters, lossy_filter

    lossy = {"ZFP rate": dict(hdf5plugin.Zfp(rate=8)),
             "ZFP reversible": dict(hdf5plugin.Zfp(reversible=True)),
             "SZ": dict(hdf5plugin.SZ(absolute=0.1)),
             "SZ3": dict(hdf5plugin.SZ3(absolute=0.1)),
             "Blosc2 TRUNC_PREC": dict(hdf5plugin.Blosc2(filters=hdf5plugin.Blosc2.TRUNC_PREC)),
             "scaleoffset float": {"scaleoffset": 3}}
    # (the integer scale-offset cases are measured by the tests above)
    lossless = {"gzip": {"compression": "gzip"}, "lzf": {"compression": "lzf"},
                "shuffle": {"shuffle": True}, "fletcher32": {"fletcher32": True},
                "LZ4": dict(hdf5plugin.LZ4()), "Zstd": dict(hdf5plugin.Zstd()),
                "Blosc": dict(hdf5plugin.Blosc()), "Blosc2": dict(hdf5plugin.Blosc2()),
                "Bitshuffle": dict(hdf5plugin.Bitshuffle()), "BZip2": dict(hdf5plugin.BZip2())}
    for name, options in lossy.items():
        assert lossy_filter(stored_filter(tmp_path, **options)) is not None, name
    for name, options in lossless.items():
        assert lossy_filter(stored_filter(tmp_path, **options)) is None, name
    with h5py.File(tmp_path / "f.h5", "a") as file:
        for bits, lossy in ((0, False), (5, True), (15, True), (16, False)):
            integer = file.create_dataset(f"int{bits}", data=np.zeros((4, 16), np.int16),
                                          chunks=(2, 16), scaleoffset=bits)
            assert (lossy_filter(dataset_filters(integer)[0]) is not None) == lossy, bits
