"""``notebooks/privacy.ipynb`` runs from top to bottom on a small input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "privacy.ipynb"
KERNEL = "fastmix-privacy-test"


def test_privacy_notebook_runs(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    for module in ("scipy", "skimage", "sklearn"):
        pytest.importorskip(module)
    # A kernel spec of our own that runs this very interpreter, so the notebook sees the
    # fastmix under test whatever 'python3' kernels the machine has installed.
    spec_folder = tmp_path / "jupyter" / "kernels" / KERNEL
    spec_folder.mkdir(parents=True)
    (spec_folder / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fastmix privacy test", "language": "python"}))
    results = tmp_path / "results.json"
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("FASTMIX_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("FASTMIX_PRIVACY_RESULTS", str(results))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, kernel_name=KERNEL, timeout=300,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", [])]
    assert not any(output.get("output_type") == "error" for output in outputs)
    text = "".join(output.get("text", "") for output in outputs)
    assert "small run" in text
    tables = [output["data"]["text/markdown"] for output in outputs
              if "text/markdown" in output.get("data", {})]
    assert len(tables) == 2 and "| dataset |" in tables[0]
    pictures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(pictures) == 1
    figures = json.loads(results.read_text())
    datasets = {row["dataset"] for row in figures["attack"]}
    assert datasets == {"LFW faces", "digits", "photo tiles"}
    assert {row["mode"] for row in figures["attack"]} == {"permute", "paper"}
    for row in figures["attack"]:
        assert 0 <= row["R"] <= 1 and row["verdict"] in ("weak", "moderate", "good")
    assert all(row["control"] is not None for row in figures["utility"])
