"""``notebooks/privacy.ipynb`` runs from top to bottom on a small input."""

import json

import pytest
from notebook_runner import run_notebook


def test_privacy_notebook_runs(tmp_path, monkeypatch):
    for module in ("scipy", "skimage", "sklearn"):
        pytest.importorskip(module)
    results = tmp_path / "results.json"
    monkeypatch.setenv("FASTMIX_PRIVACY_RESULTS", str(results))
    outputs = run_notebook("privacy.ipynb", tmp_path, monkeypatch, timeout=300)
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
        assert 0 <= row["R"] <= 1 and row["verdict"] in ("weak", "moderate", "good", "uncertain")
    assert all(row["control"] is not None for row in figures["utility"])
