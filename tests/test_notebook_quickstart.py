"""``notebooks/quickstart.ipynb`` runs from top to bottom on a small input."""

import pytest
from notebook_runner import run_notebook

from fastmix.spec import DEFAULT_PRESET, MixSpec


def test_quickstart_notebook_runs(tmp_path, monkeypatch):
    pytest.importorskip("skimage", reason="the notebook's images come with scikit-image")
    outputs = run_notebook("quickstart.ipynb", tmp_path, monkeypatch, timeout=120)
    text = "".join(output.get("text", "") for output in outputs)
    assert "restored == original, bit for bit: True" in text
    assert "mixed" in text and "images/s" in text
    # The default preset (what fastmix mix runs) is shown beside the reversible spec.
    default = next(line for line in text.splitlines()
                   if line.startswith(f"default preset {DEFAULT_PRESET!r}:"))
    assert ("one-way" in default) == (not MixSpec.preset(DEFAULT_PRESET).reversible)
    assert any(line.startswith("reversible:") and "reversible with the key" in line
               for line in text.splitlines())
    if not MixSpec.preset(DEFAULT_PRESET).reversible:
        assert "default preset, unmix refused:" in text
    assert "audit of" in text and "lower bound" in text
    pictures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(pictures) == 3  # the default and the reversible mix, and the round trip
    assert not any(output.get("output_type") == "error" for output in outputs)
