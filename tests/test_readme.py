"""README's snippets run as written: every fenced ``python`` and ``sh`` block, in order.

The blocks run in one temporary folder, as a user would type them, after this test has made
the ``photos/`` folder README shows (one sub-folder per class, PNG files of photographs that a
dependency ships). Shell blocks run under ``bash -euo pipefail`` with the environment's
``fastmix`` first on ``PATH``; Python blocks run in a fresh interpreter each. A block that an
HTML comment ``<!-- not run: REASON -->`` stands right before is skipped, and the reasons are
checked to be few and stated.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import pytest

from fastmix.samples import photo_tiles

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(
    r"(?:<!-- not run: (?P<reason>[^>]*) -->\n)?```(?P<lang>[a-z]*)\n(?P<code>.*?)```", re.DOTALL)
#: Blocks README may leave out, and why: each is run elsewhere.
ALLOWED_SKIPS = 1


def readme_blocks() -> list[tuple[str, str, str | None]]:
    """(language, code, reason not run) of every fenced block, in order."""
    return [(match["lang"], match["code"], match["reason"])
            for match in BLOCK.finditer(README.read_text(encoding="utf-8"))]


def make_photos(folder: Path) -> None:
    images, labels = photo_tiles(size=64, crop=256)  # 16 tiles of each of 4 photographs
    for index, (image, label) in enumerate(zip(images, labels)):
        target = folder / f"class{label}"
        target.mkdir(parents=True, exist_ok=True)
        iio.imwrite(target / f"{index:04d}.png", image)


def test_the_readme_is_short_and_its_blocks_are_known():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 300
    blocks = readme_blocks()
    runnable = [block for block in blocks if block[0] in ("python", "sh") and not block[2]]
    assert len(runnable) >= 4
    skipped = [block for block in blocks if block[2]]
    assert len(skipped) <= ALLOWED_SKIPS and all(len(reason) > 20 for _, _, reason in skipped)
    assert "PRIVACY-SENTENCE" not in "\n".join(lines) and "RELIABILITY-TABLE" not in lines


@pytest.mark.slow
def test_every_readme_snippet_runs_as_written(tmp_path):
    runnable = [block for block in readme_blocks()
                if block[0] in ("python", "sh") and not block[2]]
    make_photos(tmp_path / "photos")
    environment = dict(os.environ)
    environment["PATH"] = os.path.dirname(sys.executable) + os.pathsep + environment["PATH"]
    for number, (language, code, _) in enumerate(runnable):
        command = ([sys.executable, "-c", code] if language == "python"
                   else ["bash", "-euo", "pipefail", "-c", code])
        done = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True,
                              text=True, timeout=900, stdin=subprocess.DEVNULL)
        assert done.returncode == 0, (
            f"README runnable block {number} ({language}) exited {done.returncode}:\n{code}\n"
            f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}")
    assert (tmp_path / "restored.h5").exists() and (tmp_path / "preview.png").exists()
