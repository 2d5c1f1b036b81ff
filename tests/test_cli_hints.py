"""Hints that fit the command and the language of the caller, and JSON errors for parsers."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import numpy as np
import pytest

import fastmix
from fastmix.errors import BadInputError, command_line_message, hint


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fastmix.cli", *args], capture_output=True,
                          text=True, timeout=300)


def one_line_error(result: subprocess.CompletedProcess, status: int = 2) -> str:
    assert result.returncode == status, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def store(tmp_path):
    rng = np.random.default_rng(5)
    path = tmp_path / "store.h5"
    with h5py.File(path, "w") as file:
        file["images"] = rng.integers(0, 256, (48, 32, 32, 3), dtype=np.uint8)
        file["labels"] = np.arange(48) % 4
    return path


def test_hints_read_as_keywords_in_python_and_as_flags_on_the_command_line():
    error = BadInputError(f"destination 'x.h5' already exists; {hint('overwrite')}")
    assert str(error) == "destination 'x.h5' already exists; pass overwrite=True"
    assert command_line_message(error) == "destination 'x.h5' already exists; pass --overwrite"
    assert command_line_message(ValueError("plain")) == "plain"


def test_existing_destination_names_the_flag_on_the_cli_and_the_keyword_in_python(tmp_path,
                                                                                  store, key):
    target = tmp_path / "taken.h5"
    target.write_bytes(b"taken")
    key.save(tmp_path / "key")
    line = one_line_error(cli("mix", str(store), str(target), "--key-file",
                              str(tmp_path / "key"), "--quiet"))
    assert "--overwrite" in line and "overwrite=True" not in line and "=True" not in line
    with pytest.raises(BadInputError) as raised:
        fastmix.mix_store(store, target, key=key, progress=False)
    assert "overwrite=True" in str(raised.value) and "--overwrite" not in str(raised.value)


def test_unmix_with_a_missing_key_file_never_suggests_new_key(tmp_path, store):
    line = one_line_error(cli("unmix", str(store), str(tmp_path / "out.h5"), "--key-file",
                              str(tmp_path / "missing.key")))
    assert "does not exist" in line and "--new-key" not in line and "mixed with" in line
    line = one_line_error(cli("mix", str(store), str(tmp_path / "out.h5"), "--key-file",
                              str(tmp_path / "missing.key")))
    assert "--new-key" in line  # mix is the command that can make one
    with pytest.raises(BadInputError, match=r"Key.generate") as raised:
        fastmix.Key.load(tmp_path / "missing.key")
    assert "--" not in str(raised.value)


def test_one_way_store_mixed_again_is_not_told_to_unmix(tmp_path, store):
    mixed = tmp_path / "mixed.h5"
    result = cli("mix", str(store), str(mixed), "--key-file", str(tmp_path / "key"),
                 "--new-key", "--privacy", "balanced", "--group", "4")
    assert result.returncode == 0, result.stderr
    assert "unmixing needs it" not in result.stdout
    assert "one-way" in result.stdout and "audit" in result.stdout
    line = one_line_error(cli("mix", str(mixed), str(tmp_path / "again.h5"), "--key-file",
                              str(tmp_path / "key"), "--quiet"))
    assert "unmix it first" not in line and "one-way" in line and "--force" in line


def test_reversible_store_mixed_again_is_told_to_unmix(tmp_path, store):
    mixed = tmp_path / "mixed.h5"
    result = cli("mix", str(store), str(mixed), "--key-file", str(tmp_path / "key"),
                 "--new-key", "--privacy", "fast", "--donors", "3")
    assert result.returncode == 0, result.stderr
    assert "unmixing needs it" in result.stdout
    with pytest.raises(BadInputError, match=r"unmix it first.*force=True"):
        fastmix.mix_store(mixed, tmp_path / "again.h5", key=fastmix.Key.load(tmp_path / "key"),
                          progress=False)


@pytest.mark.parametrize("command", ["info", "audit"])
def test_json_errors_are_json_on_stdout_with_exit_2(tmp_path, store, command):
    missing = str(tmp_path / "missing.h5")
    arguments = [missing] if command == "info" else [str(store), missing]
    result = cli(command, *arguments, "--json")
    line = one_line_error(result)
    error = json.loads(result.stdout)
    assert error["exit_status"] == 2 and error["command"] == command
    assert error["error"] in line and "missing.h5" in error["error"]
