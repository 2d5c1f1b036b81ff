"""Issue 21 ("Trust"): inputs that were coerced, believed or crashed on are refused or handled.

Labels that do not convert exactly, swapped audit arguments, big-endian images, a store of
no images, a destination naming a folder, large integer labels in the dataset, channels-first
stores, bad Python arguments and a closed standard output. Real HDF5 files, the real CLI.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import fastmix
from fastmix.cli import main
from fastmix.errors import BadInputError, BadInputTypeError, FastmixWarning
from fastmix.presets import DEFAULT_PRESET

SPEC = fastmix.MixSpec(grid=(2, 2), donors=3)


def write(path: Path, images: np.ndarray, labels: object, *, chunk: int | None = 8) -> Path:
    """Write a store of ``images`` and ``labels`` (chunked along axis 0, gzip)."""
    with h5py.File(path, "w") as file:
        options = {}
        if chunk and len(images):
            options = {"chunks": (min(chunk, len(images)), *images.shape[1:]),
                       "compression": "gzip"}
        file.create_dataset("images", data=images, **options)
        file.create_dataset("labels", data=labels)
    return path


def pixels(count: int = 16, size: int = 16, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random((count, size, size, 3)).astype(dtype)
    return rng.integers(0, np.iinfo(dtype).max, (count, size, size, 3), endpoint=True,
                        dtype=np.dtype(dtype).newbyteorder("="))


def labels_of(count: int = 16) -> np.ndarray:
    return np.arange(count) % 2


def cli(capsys, *arguments: object) -> tuple[int, str]:
    """Run ``fastmix ARGUMENTS`` in this process; return its status and stderr."""
    status = main([str(argument) for argument in arguments])
    return status, capsys.readouterr().err


def one_line(error: str) -> str:
    lines = error.strip().splitlines()
    assert len(lines) == 1, error
    assert "Traceback" not in error
    return lines[0]


def files_in(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}


# -- item 11: labels that do not convert exactly ------------------------------------------


@pytest.mark.parametrize("labels, found", [
    ([1e19] * 8 + [3e19] * 8, "beyond the int64 range"),
    ([1, "1"] * 8, "mix integer and str"),
    (np.array([1, "1"] * 8, dtype=object), "mix integer and str"),
    ([2**70, 1] * 8, "beyond 64 bits"),
    ([1.0, float("nan")] * 8, "nan"),
    ([b"a", "a"] * 8, "mix bytes and str"),
], ids=["floats-1e19", "list-1-and-text-1", "object-1-and-text-1", "int-2**70", "object-nan",
        "bytes-and-text"])
def test_labels_that_do_not_convert_exactly_are_refused(key, labels, found):
    with pytest.raises(BadInputError, match=found) as raised:
        fastmix.mix_array(pixels(), labels, SPEC, key)
    assert "\n" not in str(raised.value)


def test_whole_float_labels_mix_as_the_integers_they_are(key):
    images = pixels()
    expected = fastmix.mix_array(images, labels_of(), SPEC, key)
    np.testing.assert_array_equal(
        fastmix.mix_array(images, labels_of().astype(np.float32), SPEC, key), expected)
    np.testing.assert_array_equal(
        fastmix.mix_array(images, [float(v) for v in labels_of()], SPEC, key), expected)


def test_a_store_whose_float_labels_collide_in_int64_is_refused_by_mix(tmp_path, capsys, key):
    source = write(tmp_path / "floats.h5", pixels(), np.repeat([1e19, 3e19], 8))
    key.save(tmp_path / "k.key")
    before = files_in(tmp_path)
    status, error = cli(capsys, "mix", source, tmp_path / "out.h5", "--key-file",
                        tmp_path / "k.key", "--quiet")
    assert status == 2
    line = one_line(error)
    assert "labels" in line and "int64" in line and "1e+19" in line
    assert files_in(tmp_path) == before


# -- item 12: the audit with its arguments swapped ---------------------------------------


def test_audit_refuses_swapped_arguments(tmp_path, capsys, key):
    pytest.importorskip("sklearn")
    pytest.importorskip("skimage")
    original = write(tmp_path / "train.h5", pixels(32), labels_of(32))
    mixed = tmp_path / "train-mixed.h5"
    fastmix.mix_store(original, mixed, spec=SPEC, key=key, progress=False)
    for extra in ((), ("--grid", "2x2")):  # the second as its own hint suggested
        status, error = cli(capsys, "audit", mixed, original, "--quiet", *extra)
        assert status == 2
        line = one_line(error)
        assert "swapped" in line and "fastmix audit ORIGINAL MIXED" in line
    with pytest.raises(BadInputError, match=r"audit_stores\(original, mixed\)"):
        fastmix.audit.audit_stores(mixed, original, progress=False)


# -- big-endian images ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [">u2", ">f4"])
@pytest.mark.parametrize("spec", [fastmix.MixSpec.preset("balanced"),
                                  fastmix.MixSpec(grid=(4, 4), donors=3, seam_blur=1.0)],
                         ids=["default-preset", "seam-blur"])
def test_big_endian_images_mix_as_their_native_twins(key, dtype, spec):
    native = pixels(16, 48, np.dtype(dtype).newbyteorder("="))
    big = native.astype(dtype)
    mixed = fastmix.mix_array(big, labels_of(), spec, key)
    assert mixed.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(mixed, fastmix.mix_array(native, labels_of(), spec, key))
    np.testing.assert_array_equal(big, native)  # the input is not altered


def test_big_endian_images_on_the_cuda_backend(key):
    """The simulator here (tests/conftest.py); a GPU with ``NUMBA_ENABLE_CUDASIM=0``."""
    pytest.importorskip("numba.cuda")
    native = pixels(4, 8, np.uint16)[..., :1]
    spec = fastmix.MixSpec(grid=(2, 2), donors=1, seam_blur=1.0, jitter=(0.1, 0.1, 0.1))
    labels = np.array([0, 0, 1, 1])
    mixed = fastmix.mix_array(native.astype(">u2"), labels, spec, key, backend="cuda")
    assert mixed.dtype == np.dtype(">u2")
    np.testing.assert_array_equal(mixed, fastmix.mix_array(native, labels, spec, key))


def test_a_big_endian_store_mixes_with_the_default_preset_and_unmixes_bit_for_bit(
        tmp_path, capsys, key):
    native = pixels(16, 48, np.uint16)
    source = write(tmp_path / "big.h5", native.astype(">u2"), labels_of())
    before = source.read_bytes()
    key.save(tmp_path / "k.key")
    status, error = cli(capsys, "mix", source, tmp_path / "mixed.h5", "--key-file",
                        tmp_path / "k.key", "--quiet")
    assert status == 0, error
    with h5py.File(tmp_path / "mixed.h5") as file:
        mixed = file["images"][()]
        window = int(file["images"].attrs["fastmix_window"])
    assert mixed.dtype == np.dtype(">u2")
    expected = fastmix.mix_array(native, labels_of(), fastmix.MixSpec.preset(DEFAULT_PRESET),
                                 key, window=window)
    np.testing.assert_array_equal(mixed, expected)
    # in place: the same bytes as the new file
    in_place = tmp_path / "in-place.h5"
    in_place.write_bytes(before)
    status, error = cli(capsys, "mix", in_place, "--in-place", "--key-file",
                        tmp_path / "k.key", "--one-way", "--quiet")
    assert status == 0, error
    with h5py.File(in_place) as file:
        assert file["images"][()].tobytes() == mixed.tobytes()
    # a reversible mix of big-endian data comes back bit for bit
    status, error = cli(capsys, "mix", source, tmp_path / "fast.h5", "--key-file",
                        tmp_path / "k.key", "--privacy", "fast", "--quiet")
    assert status == 0, error
    status, error = cli(capsys, "unmix", tmp_path / "fast.h5", tmp_path / "back.h5",
                        "--key-file", tmp_path / "k.key", "--quiet")
    assert status == 0, error
    with h5py.File(tmp_path / "back.h5") as file, h5py.File(source) as original:
        assert file["images"].dtype == np.dtype(">u2")
        assert file["images"][()].tobytes() == original["images"][()].tobytes()
    assert source.read_bytes() == before


# -- a store of no images -------------------------------------------------------------------


def test_a_store_of_no_images_is_refused_by_mix_and_never_called_damaged(tmp_path, capsys,
                                                                        key):
    source = write(tmp_path / "empty.h5", np.zeros((0, 16, 16, 3), np.uint8),
                   np.zeros(0, np.int64), chunk=None)
    key.save(tmp_path / "k.key")
    before = files_in(tmp_path)
    status, error = cli(capsys, "mix", source, tmp_path / "mixed.h5", "--key-file",
                        tmp_path / "k.key", "--quiet")
    assert status == 2 and "holds no images" in one_line(error)
    status, error = cli(capsys, "mix", source, "--in-place", "--key-file", tmp_path / "k.key",
                        "--privacy", "fast", "--quiet")
    assert status == 2 and "holds no images" in one_line(error)
    assert files_in(tmp_path) == before  # no output, no journal, the store untouched
    for command in (("unmix", source, tmp_path / "back.h5"), ("verify", source, source)):
        status, error = cli(capsys, *command, "--key-file", tmp_path / "k.key")
        line = one_line(error)
        assert status == 2 and "damaged" not in line and "no fastmix record" in line
    assert files_in(tmp_path) == before


# -- a destination that names a folder ------------------------------------------------------


@pytest.mark.parametrize("destination", ["newdir/", "out.h5/", "."])
def test_a_destination_naming_a_folder_is_refused_before_any_work(tmp_path, capsys,
                                                                  destination):
    source = write(tmp_path / "s.h5", pixels(), labels_of())
    before = files_in(tmp_path)
    # a str: pathlib would drop the trailing separator
    status, error = cli(capsys, "mix", source, os.path.join(str(tmp_path), destination),
                        "--key-file", tmp_path / "new.key", "--new-key", "--quiet")
    assert status == 2 and "folder" in one_line(error)
    assert files_in(tmp_path) == before  # not even the new key was written
    assert not (tmp_path / "newdir").exists()


# -- H5ImageDataset -------------------------------------------------------------------------


def test_dataset_classes_are_the_distinct_labels(tmp_path):
    path = write(tmp_path / "ids.h5", pixels(), np.repeat([70000, 5], 8))
    with pytest.warns(FastmixWarning, match="position in dataset.classes"):
        dataset = fastmix.H5ImageDataset(path)
    assert dataset.classes == ["5", "70000"]
    assert dataset[0][1] == 1 and dataset[15][1] == 0
    assert dataset.class_to_idx == {"5": 0, "70000": 1}
    # small labels stay as they are
    dense = fastmix.H5ImageDataset(write(tmp_path / "dense.h5", pixels(), labels_of() * 3))
    assert dense.classes == ["0", "1", "2", "3"] and dense[1][1] == 3


def test_dataset_of_person_ids_stays_within_memory(tmp_path):
    path = write(tmp_path / "persons.h5", pixels(), np.repeat([987654321, 5], 8))
    script = (
        "import resource, sys, warnings\n"
        "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
        "warnings.simplefilter('ignore')\n"
        "from fastmix.dataset import H5ImageDataset\n"
        "print(H5ImageDataset(sys.argv[1]).classes)\n")
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-500:]
    assert result.stdout.strip() == "['5', '987654321']"


@pytest.mark.parametrize("role", ["images", "labels"])
def test_dataset_errors_speak_python(tmp_path, role):
    path = write(tmp_path / "s.h5", pixels(), labels_of())
    with pytest.raises(BadInputError) as raised:
        fastmix.H5ImageDataset(path, **{role: "nope"})
    assert f"{role}=NAME" in str(raised.value) and "--" not in str(raised.value)


# -- channels-first stores ------------------------------------------------------------------


def test_a_channels_first_store_warns(tmp_path, capsys):
    rng = np.random.default_rng(3)
    path = write(tmp_path / "nchw.h5", rng.integers(0, 256, (16, 3, 16, 16), np.uint8),
                 labels_of())
    with pytest.warns(FastmixWarning, match="channels-first"):
        fastmix.H5ImageDataset(path)
    status, error = cli(capsys, "info", path)
    assert status == 0
    shown = [line for line in error.splitlines() if "channels-first" in line]
    assert len(shown) == 1 and shown[0].startswith("fastmix info: warning: ")
    for shape in ((16, 16, 16, 3), (16, 16, 16, 8), (16, 3, 16, 4)):  # plausible channels
        other = write(tmp_path / "plain.h5", rng.integers(0, 256, shape, np.uint8),
                      labels_of())
        with warnings.catch_warnings():
            warnings.simplefilter("error", FastmixWarning)
            fastmix.H5ImageDataset(other)


# -- the Python API's promises ---------------------------------------------------------------


@pytest.mark.parametrize("first_window, error", [
    (-1, BadInputError), (2**64, BadInputError), (0.7, BadInputTypeError),
    (True, BadInputTypeError), ("1", BadInputTypeError), (None, BadInputTypeError),
])
@pytest.mark.parametrize("function", ["mix_array", "unmix_array"])
def test_first_window_out_of_range_or_not_an_integer_is_refused(key, function, first_window,
                                                                 error):
    with pytest.raises(error, match="first_window"):
        getattr(fastmix, function)(pixels(), labels_of(), SPEC, key, first_window=first_window)


def test_first_window_at_the_end_of_the_range(key):
    last = 2**64 - 1
    fastmix.mix_array(pixels(), labels_of(), SPEC, key, first_window=np.uint64(last))
    with pytest.raises(BadInputError, match="first_window"):  # a second window passes it
        fastmix.mix_array(pixels(), labels_of(), SPEC, key, window=8, first_window=last)


def test_read_only_out_is_refused(key):
    out = np.empty_like(pixels())
    out.flags.writeable = False
    with pytest.raises(BadInputError, match="read-only"):
        fastmix.mix_array(pixels(), labels_of(), SPEC, key, out=out)


@pytest.mark.parametrize("strict", ["no", None, 1])
def test_strict_must_be_a_bool(key, strict):
    with pytest.raises(BadInputTypeError, match="strict"):
        fastmix.mix_array(pixels(), labels_of(), SPEC, key, strict=strict)


def test_mix_window_index_is_checked(key):
    images = pixels()
    with pytest.raises(BadInputError, match="window_index"):
        fastmix.mixing.mix_window(images, labels_of(), SPEC, key, -1, np.empty_like(images))


@pytest.mark.parametrize("step, error", [(-1, BadInputError), (2**64, BadInputError),
                                         (0.7, BadInputTypeError)])
def test_mix_batch_step_is_checked(key, step, error):
    torch = pytest.importorskip("torch")
    import fastmix.torch as fastmix_torch

    batch = torch.from_numpy(pixels()).permute(0, 3, 1, 2)
    with pytest.raises(error, match="step"):
        fastmix_torch.mix_batch(batch, torch.from_numpy(labels_of()), SPEC, key, step)
    fastmix_torch.mix_batch(batch, labels_of(), SPEC, key, np.int64(3))  # a NumPy integer


@pytest.mark.parametrize("arguments, error, match", [
    ({"chunk_length": 1.5}, BadInputTypeError, "chunk_length"),  # was taken as 1
    ({"chunk_length": 0}, BadInputError, "chunk_length"),
    ({"seed": -1}, BadInputError, "seed"),  # NumPy's ValueError when iterated
    ({"seed": 0.5}, BadInputTypeError, "seed"),
    ({"dataset": 10.0}, BadInputTypeError, "dataset"),
])
def test_chunk_shuffle_sampler_checks_its_arguments(arguments, error, match):
    call = {"dataset": 10, "chunk_length": 2, **arguments}
    with pytest.raises(error, match=match):
        list(fastmix.ChunkShuffleSampler(call.pop("dataset"), **call))


@pytest.mark.parametrize("arguments, error, match", [
    ({"threads": -1}, BadInputError, "threads"),
    ({"threads": 1.5}, BadInputTypeError, "threads"),
    ({"threads": 2**64}, BadInputError, "threads"),
    ({"window": 0.7}, BadInputTypeError, "window"),
    ({"images": 5}, BadInputTypeError, "images"),
    ({"overwrite": "no"}, BadInputTypeError, "overwrite"),
    ({"dst": 5}, BadInputTypeError, "dst"),
    ({"src": 5}, BadInputTypeError, "src"),
])
def test_store_entry_points_check_their_arguments_first(tmp_path, key, arguments, error, match):
    source = write(tmp_path / "s.h5", pixels(), labels_of())
    call = {"src": source, "dst": tmp_path / "out.h5", "spec": SPEC, "key": key,
            "progress": False, **arguments}
    with pytest.raises(error, match=match):
        fastmix.mix_store(call.pop("src"), call.pop("dst"), **call)
    assert not (tmp_path / "out.h5").exists()


def test_mix_store_without_labels_is_refused(tmp_path):
    """``labels=None`` crashed the process (a kernel read past the empty labels)."""
    source = write(tmp_path / "s.h5", pixels(), labels_of())
    script = ("import sys, fastmix\n"
              "try:\n"
              "    fastmix.mix_store(sys.argv[1], sys.argv[2], key=fastmix.Key.generate(),\n"
              "                      labels=None, progress=False)\n"
              "except fastmix.errors.BadInputTypeError as error:\n"
              "    print('refused:', error)\n")
    result = subprocess.run([sys.executable, "-c", script, str(source),
                             str(tmp_path / "out.h5")], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0 and result.stdout.startswith("refused: labels"), \
        (result.returncode, result.stderr[-300:])


# -- a closed standard output ------------------------------------------------------------------


def test_a_closed_pipe_on_stdout_ends_quietly_with_141(tmp_path):
    source = write(tmp_path / "s.h5", pixels(), labels_of())
    reader, writer = os.pipe()
    os.close(reader)  # as `| head -1` does once it has its line: every write fails
    try:
        result = subprocess.run([sys.executable, "-m", "fastmix.cli", "info", str(source)],
                                stdout=writer, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(writer)
    assert result.returncode == 141
    assert result.stderr == ""
