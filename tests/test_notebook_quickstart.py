"""``notebooks/quickstart.ipynb`` runs from top to bottom on a small input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"
KERNEL = "fastmix-test"


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("skimage", reason="the notebook's images come with scikit-image")
    # A kernel spec of our own that runs this very interpreter, so the notebook sees the
    # fastmix under test whatever 'python3' kernels the machine has installed.
    spec_folder = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_folder.mkdir(parents=True)
    (spec_folder / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fastmix test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("FASTMIX_NOTEBOOK_SMALL", "1")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, kernel_name=KERNEL, timeout=120,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", [])]
    text = "".join(output.get("text", "") for output in outputs)
    assert "restored == original, bit for bit: True" in text
    assert "mixed" in text and "images/s" in text
    pictures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(pictures) == 2
    assert not any(output.get("output_type") == "error" for output in outputs)
