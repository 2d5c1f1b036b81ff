"""The ``fastmix`` commands through the real process: mix, unmix, info, verify, bench."""

from __future__ import annotations

import json
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor

import h5py
import numpy as np
import pytest
from test_cli_support import BLOCK, photo_subset, read_images, run_cli, snapshot, write_store

import fastmix

COMMANDS = ("mix", "unmix", "info", "verify", "bench")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("cli")


@pytest.fixture(scope="module")
def original(folder, photo_tiles):
    images, labels = photo_subset(photo_tiles)
    return write_store(folder / "original.h5", images, labels,
                       class_names=["astronaut", "coffee", "chelsea", "rocket"])


@pytest.fixture(scope="module")
def permute_run(folder, original):
    """``fastmix mix --new-key`` in permute mode, run once for the module."""
    result = run_cli("mix", original.name, "mixed.h5", "--key-file", "secret.key", "--new-key",
                     "--privacy", "fast", "--block", BLOCK, "--donors", "3", "--window", "32",
                     cwd=folder)
    assert result.returncode == 0, result.stderr
    return result, folder / "mixed.h5", folder / "secret.key"


@pytest.fixture(scope="module")
def paper_run(folder, original, permute_run):
    _, _, key_path = permute_run
    result = run_cli("mix", original.name, "paper.h5", "--key-file", key_path.name,
                     "--privacy", "fast", "--mode", "paper", "--grid", "4x4", "--donors", "5",
                     "--prob", "0.75", "--window", "32", "--quiet", cwd=folder)
    assert result.returncode == 0, result.stderr
    return result, folder / "paper.h5"


def test_help_lists_every_command(tmp_path):
    result = run_cli("--help", cwd=tmp_path)
    assert result.returncode == 0
    for command in COMMANDS:
        assert f"    {command} " in result.stdout, result.stdout
    mix_help = run_cli("mix", "--help", cwd=tmp_path)
    assert mix_help.returncode == 0
    for flag in ("--key-file", "--new-key", "--mode", "--block", "--grid", "--donors", "--prob",
                 "--rounds", "--memory", "--window", "--images", "--labels", "--strict",
                 "--quiet", "--in-place", "--resume", "--force", "--overwrite"):
        assert flag in mix_help.stdout


def test_mix_with_new_key(permute_run):
    result, mixed, key_path = permute_run
    secret = key_path.read_text().strip()
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    key = fastmix.Key.load(key_path)
    summary = result.stdout.splitlines()
    assert summary[0] == ("privacy fast with overrides: permute, block 8x8, groups of 4, prob "
                          "0.5, no hardening, reversible with the key")
    assert summary[1].startswith("mixed 64 images in 2 window(s) of 32")
    assert key.check_value in summary[2]
    for text in (result.stdout, result.stderr):
        assert secret not in text
    stored = mixed.read_bytes()
    assert bytes.fromhex(secret) not in stored
    assert secret.encode() not in stored


def test_mix_changes_the_images_and_keeps_the_rest(permute_run, original):
    _, mixed, _ = permute_run
    before, after = read_images(original), read_images(mixed)
    assert before.shape == after.shape and before.dtype == after.dtype
    assert not np.array_equal(before, after)
    with h5py.File(original) as source, h5py.File(mixed) as target:
        assert np.array_equal(source["labels"][()], target["labels"][()])
        assert np.array_equal(source["meta/ids"][()], target["meta/ids"][()])
        assert target.attrs["source"] == "test"
        assert target["images"].compression == "gzip"
        assert target["images"].chunks == source["images"].chunks


def test_unmix_restores_bit_for_bit(folder, permute_run, original):
    _, mixed, key_path = permute_run
    result = run_cli("unmix", mixed.name, "restored.h5", "--key-file", key_path.name,
                     cwd=folder)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("unmixed 64 images")
    restored = folder / "restored.h5"
    assert np.array_equal(read_images(restored), read_images(original))
    with h5py.File(restored) as file:
        assert not [name for name in file["images"].attrs if name.startswith("fastmix_")]
        assert np.array_equal(file["meta/ids"][()], np.arange(64))


def test_info_json_holds_the_record_and_no_key(folder, permute_run):
    _, mixed, key_path = permute_run
    result = run_cli("info", mixed.name, "--json", cwd=folder)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    record = info["fastmix"]
    assert record["mode"] == "permute"
    assert record["block"] == [8, 8] and record["grid"] is None
    assert (record["donors"], record["prob"], record["rounds"]) == (3, 0.5, 1)
    assert record["window"] == 32 and record["reversible"] is True
    assert record["key_check"] == fastmix.Key.load(key_path).check_value
    assert info["images"]["shape"] == [64, 32, 32, 3]
    assert info["images"]["chunks"] == [16, 32, 32, 3]
    assert info["images"]["filters"] == [{"id": 1, "name": "gzip", "options": {"level": 4}}]
    classes = info["labels"]["classes"]
    assert sum(item["count"] for item in classes) == 64
    assert {item["name"] for item in classes} == {"astronaut", "coffee", "chelsea", "rocket"}
    assert [item["name"] for item in info["other_datasets"]] == ["meta/ids"]
    assert key_path.read_text().strip() not in result.stdout


def test_info_human_of_a_plain_and_a_mixed_store(folder, permute_run, original):
    _, mixed, _ = permute_run
    plain = run_cli("info", original.name, cwd=folder)
    assert plain.returncode == 0, plain.stderr
    assert "64 x 32x32x3 uint8" in plain.stdout
    assert "filters: gzip(level=4)" in plain.stdout
    assert "fastmix: not mixed" in plain.stdout
    assert "(astronaut)" in plain.stdout
    described = run_cli("info", mixed.name, cwd=folder)
    assert "fastmix: mixed: permute, block 8x8, groups of 4, prob 0.5" in described.stdout


def test_verify_passes_on_the_mixed_pair(folder, permute_run, original):
    _, mixed, key_path = permute_run
    before = snapshot(folder)
    with ThreadPoolExecutor(max_workers=2) as pool:
        plain, keyed = pool.map(lambda extra: run_cli("verify", original.name, mixed.name,
                                                      *extra, cwd=folder),
                                [(), ("--key-file", key_path.name)])
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.startswith("verified: 64 images in 2 window(s), permute mode")
    assert "restores" not in plain.stdout
    assert keyed.returncode == 0, keyed.stderr
    assert "unmix with the key restores the original bit for bit" in keyed.stdout
    assert snapshot(folder) == before


def _tampered_copy(source, target, change):
    shutil.copyfile(source, target)
    with h5py.File(target, "r+") as file:
        images = file["images"][()]
        change(images, file["labels"][()])
        file["images"][...] = images
    return target


def _darken_block(images, labels):
    images[5, 8:16, 0:8] //= 2


def _swap_within_label(images, labels):
    first, second = np.flatnonzero(labels[:32] == labels[0])[:2]
    images[[first, second], 16:24, 16:24] = images[[second, first], 16:24, 16:24]


def _block_from_elsewhere(images, labels):
    images[3, 0:8, 0:8] = images[3, 24:32, 24:32]


TAMPERS = {
    # name: (change, verify without key fails, expected message part); more kinds of
    # tampering are checked in-process in test_cli_verify.py
    "darkened block": (_darken_block, True, "of image 5 is not the block"),
    "blocks swapped within a label": (_swap_within_label, False,
                                      "unmixing with the key does not restore the original"),
}


@pytest.mark.parametrize("name", list(TAMPERS))
def test_verify_fails_on_a_tampered_store(folder, permute_run, original, name):
    _, mixed, key_path = permute_run
    change, fails_without_key, message = TAMPERS[name]
    tampered = _tampered_copy(mixed, folder / f"tampered-{name.replace(' ', '-')}.h5", change)
    with ThreadPoolExecutor(max_workers=2) as pool:
        plain, keyed = pool.map(lambda extra: run_cli("verify", original.name, tampered.name,
                                                      *extra, cwd=folder),
                                [(), ("--key-file", key_path.name)])
    assert keyed.returncode == 1, keyed.stdout + keyed.stderr
    assert keyed.stderr.startswith("fastmix verify: verification failed: ")
    assert len(keyed.stderr.strip().splitlines()) == 1
    assert "Traceback" not in keyed.stderr
    assert message in keyed.stderr
    if fails_without_key:
        assert plain.returncode == 1
        assert message in plain.stderr
    else:
        assert plain.returncode == 0, plain.stderr


def test_paper_mode_verifies_with_and_without_the_key(folder, paper_run, original, permute_run):
    result, paper = paper_run
    _, _, key_path = permute_run
    assert result.stdout == "" and result.stderr == ""
    with ThreadPoolExecutor(max_workers=3) as pool:
        plain, keyed, info = pool.map(
            lambda arguments: run_cli(*arguments, cwd=folder),
            [("verify", original.name, paper.name),
             ("verify", original.name, paper.name, "--key-file", key_path.name),
             ("info", paper.name, "--json")])
    assert plain.returncode == 0 and "paper mode" in plain.stdout, plain.stderr
    assert keyed.returncode == 0, keyed.stderr
    assert "mixing the original with the key reproduces it bit for bit" in keyed.stdout
    record = json.loads(info.stdout)["fastmix"]
    assert record["mode"] == "paper" and record["reversible"] is False
    assert record["grid"] == [4, 4] and record["prob"] == 0.75 and record["donors"] == 5
    tampered = _tampered_copy(paper, folder / "paper-tampered.h5", _block_from_elsewhere)
    failed = run_cli("verify", original.name, tampered.name, cwd=folder)
    assert failed.returncode == 1
    assert "of image 3 is not the block" in failed.stderr


def test_custom_names_string_labels_quiet_and_overwrite(tmp_path, photo_tiles, key):
    images, labels = photo_subset(photo_tiles, count=48, seed=3)
    names = np.array(["cat", "dog", "owl", "fox"])[labels]
    write_store(tmp_path / "named.h5", images, names.astype("S"), images_name="data/pixels",
                labels_name="y", chunk=8, compression=None)
    key.save(tmp_path / "k.key")
    (tmp_path / "out.h5").write_text("to be replaced")
    mixed = run_cli("mix", "named.h5", "out.h5", "--key-file", "k.key", "--images",
                    "data/pixels", "--labels", "y", "--grid", "2x2", "--group", "window",
                    "--privacy", "fast", "--quiet", "--overwrite", cwd=tmp_path)
    assert mixed.returncode == 0, mixed.stderr
    assert mixed.stdout == "" and mixed.stderr == ""
    assert not np.array_equal(read_images(tmp_path / "out.h5", "data/pixels"), images)
    restored = run_cli("unmix", "out.h5", "back.h5", "--key-file", "k.key", "--images",
                       "data/pixels", cwd=tmp_path)
    assert restored.returncode == 0, restored.stderr
    assert np.array_equal(read_images(tmp_path / "back.h5", "data/pixels"), images)
    info = json.loads(run_cli("info", "out.h5", "--json", "--images", "data/pixels",
                              cwd=tmp_path).stdout)
    assert info["labels"]["name"] == "y"
    assert {item["label"] for item in info["labels"]["classes"]} == {"cat", "dog", "owl", "fox"}


def test_unpartnered_images_warn_in_one_line(tmp_path, photo_tiles, key):
    images, labels = photo_subset(photo_tiles, count=32)
    labels = labels.copy()
    labels[0] = 99
    write_store(tmp_path / "lonely.h5", images, labels)
    key.save(tmp_path / "k.key")
    result = run_cli("mix", "lonely.h5", "out.h5", "--key-file", "k.key", "--block", BLOCK,
                     "--privacy", "fast", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip().splitlines() == [
        "fastmix mix: warning: 1 image(s) have no other image of their label in their window "
        "and were left unmixed"]
    assert "1 image(s) left unmixed" in result.stdout


def test_bench_prints_the_table(tmp_path):
    result = run_cli("bench", "--images", "256", "--repeats", "1", "--filters", "none,lz4",
                     "--quiet", "--dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "| filter | images | plain h5py copy | mix_store | ratio |"
    assert lines[2].startswith("| none | 256 | ") and lines[3].startswith("| lz4 | 256 | ")
    assert len(lines) == 4
    assert list(tmp_path.iterdir()) == []


def test_in_place_mix_equals_new_file_and_unmixes(folder, permute_run, original):
    _, mixed, key_path = permute_run
    work = folder / "in-place.h5"
    shutil.copyfile(original, work)
    result = run_cli("mix", work.name, "--in-place", "--key-file", key_path.name, "--block",
                     BLOCK, "--privacy", "fast", "--donors", "3", "--window", "32", cwd=folder)
    assert result.returncode == 0, result.stderr
    assert np.array_equal(read_images(work), read_images(mixed))
    again = run_cli("mix", work.name, "--in-place", "--key-file", key_path.name, cwd=folder)
    assert again.returncode == 2
    assert "--force" in again.stderr and len(again.stderr.strip().splitlines()) == 1
    verified = run_cli("verify", original.name, work.name, "--key-file", key_path.name,
                       cwd=folder)
    assert verified.returncode == 0, verified.stderr
    restored = run_cli("unmix", work.name, "--in-place", "--key-file", key_path.name,
                       "--quiet", cwd=folder)
    assert restored.returncode == 0, restored.stderr
    assert np.array_equal(read_images(work), read_images(original))
    assert sorted(path.name for path in folder.iterdir() if path.name.startswith(work.name)) \
        == [work.name]  # no journal or lock left


@pytest.mark.parametrize("filter_name", ["LZ4", "Bitshuffle"])
def test_plugin_filtered_store_mixes_verifies_and_is_described(tmp_path, photo_tiles, key,
                                                               filter_name):
    """Stores compressed by hdf5plugin filters work through the command line.

    The command line must register the filters: h5py alone cannot read them.
    """
    import hdf5plugin

    images, labels = photo_subset(photo_tiles, count=32)
    with h5py.File(tmp_path / "plugin.h5", "w") as file:
        file.create_dataset("images", data=images, chunks=(8, 32, 32, 3),
                            **getattr(hdf5plugin, filter_name)())
        file["labels"] = labels
    key.save(tmp_path / "k.key")
    mixed = run_cli("mix", "plugin.h5", "out.h5", "--key-file", "k.key", "--block", BLOCK,
                    "--privacy", "fast", "--quiet", cwd=tmp_path)
    assert mixed.returncode == 0, mixed.stderr
    with ThreadPoolExecutor(max_workers=2) as pool:
        verified, info = pool.map(lambda arguments: run_cli(*arguments, cwd=tmp_path),
                                  [("verify", "plugin.h5", "out.h5", "--key-file", "k.key"),
                                   ("info", "out.h5")])
    assert verified.returncode == 0, verified.stderr
    assert info.returncode == 0, info.stderr
    assert f"filters: {filter_name}" in info.stdout


def test_hardened_store_is_checked_through_the_key(folder, original, permute_run):
    _, _, key_path = permute_run
    fastmix.mix_store(original, folder / "hardened.h5", key=fastmix.Key.load(key_path),
                      spec=fastmix.MixSpec.preset("balanced", block=(8, 8)), progress=False)
    tampered = _tampered_copy(folder / "hardened.h5", folder / "hardened-tampered.h5",
                              _darken_block)
    with ThreadPoolExecutor(max_workers=4) as pool:
        info, unmixed, plain, keyed, broken = pool.map(
            lambda arguments: run_cli(*arguments, cwd=folder),
            [("info", "hardened.h5", "--json"),
             ("unmix", "hardened.h5", "back.h5", "--key-file", key_path.name),
             ("verify", original.name, "hardened.h5"),
             ("verify", original.name, "hardened.h5", "--key-file", key_path.name),
             ("verify", original.name, tampered.name, "--key-file", key_path.name)])
    record = json.loads(info.stdout)["fastmix"]
    assert record["hardened"] is True and record["reversible"] is False
    assert record["orient"] == "d4" and record["seam_blur"] == 1.0 and record["prob"] == 1.0
    assert "one-way" in record["description"]
    assert record["hardening_format"] == 2 and record["plan_rule"] == 2  # the defaults
    human = run_cli("info", "hardened.h5", cwd=folder)
    assert "plan rule 2, hardening format 2" in human.stdout, human.stdout
    assert unmixed.returncode == 2 and "not reversible" in unmixed.stderr
    assert not (folder / "back.h5").exists()
    assert plain.returncode == 2 and "--key-file" in plain.stderr
    assert keyed.returncode == 0, keyed.stderr
    assert "mixing the original with the key reproduces it bit for bit" in keyed.stdout
    assert broken.returncode == 1
    assert "mixing the original with the key does not reproduce it" in broken.stderr


def test_orientation_alone_stays_reversible(folder, original, permute_run):
    _, _, key_path = permute_run
    fastmix.mix_store(original, folder / "oriented.h5", key=fastmix.Key.load(key_path),
                      spec=fastmix.MixSpec(block=(8, 8), orient="d4"), progress=False)
    with ThreadPoolExecutor(max_workers=2) as pool:
        unmixed, keyed = pool.map(
            lambda arguments: run_cli(*arguments, cwd=folder),
            [("unmix", "oriented.h5", "oriented-back.h5", "--key-file", key_path.name),
             ("verify", original.name, "oriented.h5", "--key-file", key_path.name)])
    assert unmixed.returncode == 0, unmixed.stderr
    assert np.array_equal(read_images(folder / "oriented-back.h5"), read_images(original))
    assert keyed.returncode == 0, keyed.stderr
    assert "unmix with the key restores the original bit for bit" in keyed.stdout
