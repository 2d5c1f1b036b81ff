"""``fastmix COMMAND --help``: examples, exit status, grouped options, "did you mean"."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from fastmix.cli import build_parser, main

COMMANDS = ["audit", "bench", "demo", "export", "info", "ingest", "mix", "preview", "unmix",
            "utility", "verify"]


def help_text(command: str, capsys) -> str:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_examples_and_exit_status(command, capsys):
    text = help_text(command, capsys)
    examples = text.split("examples:\n", 1)[1].split("\n\n", 1)[0]
    lines = examples.splitlines()
    assert lines and all(line.startswith(f"  fastmix {command}") for line in lines), examples
    flat = " ".join(text.split())
    assert re.search(r"exit status: 0 \w+", flat) and " 2 bad input" in flat


def test_every_command_is_covered():
    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command")
    assert sorted(commands.choices) == COMMANDS


def test_mix_options_are_grouped(capsys):
    text = help_text("mix", capsys)
    titles = [line[:-1] for line in text.splitlines() if line and not line.startswith(" ")
              and line.endswith(":")]
    groups = ["input and output", "key", "mixing scheme", "privacy preset and hardening",
              "resources", "cluster"]
    assert [title for title in titles if title in groups] == groups  # in this order
    assert titles[-1] == "examples"
    key_section = text.split("\nkey:\n", 1)[1].split("\n\n", 1)[0]
    assert "--key-file" in key_section and "--new-key" in key_section
    resources = text.split("\nresources:\n", 1)[1].split("\n\n", 1)[0]
    assert "--memory" in resources and "--window" in resources


def test_misspelt_flag_gets_did_you_mean(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fastmix.cli", "export", "a.h5",
                             str(tmp_path / "out"), "--overwirte", "--formt=png"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "--overwirte (did you mean --overwrite?)" in lines[0]
    assert "--formt=png (did you mean --format?)" in lines[0]
    assert not (tmp_path / "out").exists()


def test_readme_and_make_tell_how_to_run_fastmix_after_make_demo():
    root = Path(__file__).resolve().parents[1]
    makefile = (root / "Makefile").read_text()
    demo_recipe = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "source .venv/bin/activate" in demo_recipe and ".venv/bin/fastmix" in demo_recipe
    quickstart = (root / "README.md").read_text().split("## Quickstart", 1)[1].split("\n## ")[0]
    assert "source .venv/bin/activate" in quickstart and "pip install -e ." in quickstart
