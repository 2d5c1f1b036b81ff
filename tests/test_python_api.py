"""What a Python user sees of the package itself."""

from __future__ import annotations

import subprocess
import sys


def test_dir_lists_the_lazy_names_and_no_stray_modules():
    # a fresh interpreter: nothing else has imported the lazy modules yet
    script = ("import fastmix, sys; names = dir(fastmix); "
              "print(sorted(set(fastmix.__all__) - set(names)), 'importlib' in names, "
              "'fastmix.dataset' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.split() == ["[]", "False", "False"]


def test_lazy_names_resolve():
    import fastmix

    for name in ("mix_store", "ingest_folder", "H5ImageDataset", "ChunkShuffleSampler"):
        assert name in dir(fastmix) and getattr(fastmix, name) is not None
