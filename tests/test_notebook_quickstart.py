"""``notebooks/quickstart.ipynb`` runs from top to bottom on a small input."""

import pytest
from notebook_runner import run_notebook


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    pytest.importorskip("skimage", reason="the notebook's images come with scikit-image")
    outputs = run_notebook("quickstart.ipynb", tmp_path, monkeypatch, timeout=120)
    text = "".join(output.get("text", "") for output in outputs)
    assert "restored == original, bit for bit: True" in text
    assert "mixed" in text and "images/s" in text
    pictures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(pictures) == 2
    assert not any(output.get("output_type") == "error" for output in outputs)
