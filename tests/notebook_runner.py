"""Run a notebook of ``notebooks/`` under this very interpreter and return its outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run_notebook(name: str, tmp_path: Path, monkeypatch, timeout: int) -> list[dict]:
    """Execute ``notebooks/name`` with ``FASTMIX_NOTEBOOK_SMALL=1``; return every output."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    # A kernel spec of our own that runs this very interpreter, so the notebook sees the
    # fastmix under test whatever 'python3' kernels the machine has installed.
    kernel = "fastmix-test"
    spec_folder = tmp_path / "jupyter" / "kernels" / kernel
    spec_folder.mkdir(parents=True)
    (spec_folder / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "fastmix test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    monkeypatch.setenv("FASTMIX_NOTEBOOK_SMALL", "1")
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = nbclient.NotebookClient(notebook, kernel_name=kernel, timeout=timeout,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    return [output for cell in notebook.cells if cell.cell_type == "code"
            for output in cell.get("outputs", [])]
