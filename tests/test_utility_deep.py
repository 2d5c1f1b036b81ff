"""``fastmix.utility`` and ``fastmix utility``: networks trained in PyTorch on mixed stores.

Real torch, a real DataLoader with worker processes, real HDF5 stores, real photographs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import pytest
from test_cli_support import run_cli, terminal_output

import fastmix

torch = pytest.importorskip("torch", reason="torch is in the test extra: pip install -e '.[test]'")
pytest.importorskip("skimage.data")

from fastmix.audit.utility import CONTROL_SPEC  # noqa: E402
from fastmix.samples import face_task, photo_task  # noqa: E402

SET_KEYS = {"accuracy", "interval", "change", "change_interval", "fold_accuracy",
            "train_accuracy"}


def _write(path, images, labels):
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=images, chunks=(8, *images.shape[1:]))
        file.create_dataset("labels", data=labels)
    return path


@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    images, labels = photo_task(size=32, per_class=6, seed=1)
    return _write(tmp_path_factory.mktemp("utility") / "tiny.h5", images, labels)


def test_the_control_is_clearly_worse_than_the_original():
    """On the photo task the 1x1-pixel control loses what the blocks keep.

    Measured with these arguments and seeds 0, 1, 2 (data and check alike): original 0.540,
    0.567, 0.583; control 0.267, 0.227, 0.337 (chance 0.1); so the control is 0.25-0.34 below.
    With the batch-norm statistics recomputed after training, seed 0: original 0.537, control
    0.267.
    """
    images, labels = photo_task(size=64, per_class=30, seed=0)
    result = fastmix.utility(images, labels, specs=("fast",), epochs=8, folds=2, seed=0,
                             batch_size=16, workers=2, progress=False)
    sets = result["sets"]
    assert set(sets) == {"original", "fast", "control"}
    assert sets["original"]["accuracy"] > 0.4
    assert sets["control"]["accuracy"] < sets["original"]["accuracy"] - 0.15
    assert sets["control"]["change"] < -0.15
    assert sets["original"]["change"] == 0 and sets["original"]["change_interval"] == [0, 0]
    for row in sets.values():
        assert set(row) == SET_KEYS
        low, high = row["interval"]
        assert 0 <= low <= row["accuracy"] <= high <= 1  # 2 folds: a t interval left [0, 1]
        low, high = row["change_interval"]
        assert -1 <= low <= row["change"] <= high <= 1
        assert len(row["fold_accuracy"]) == 2


def test_a_short_run_is_tested_with_its_own_batch_statistics():
    """The face task's originals train to well above chance on held-out originals.

    Before the batch-norm statistics were recomputed after training, the running averages
    of 8 short epochs put the model trained on the originals at chance (0.50-0.525 at
    192x192) while it fitted its training set (0.995).
    """
    images, labels = face_task(size=48)
    result = fastmix.utility(images, labels, specs=("fast",), epochs=8, folds=2, seed=0,
                             batch_size=32, workers=0, progress=False)
    assert result["sets"]["original"]["train_accuracy"] > 0.9
    assert result["sets"]["original"]["accuracy"] > 0.75


def test_same_arguments_same_result_whatever_the_workers_and_global_rng_untouched():
    images, labels = photo_task(size=32, per_class=6, seed=2)
    state = torch.random.get_rng_state()
    arguments = {"specs": {"grid4": fastmix.MixSpec(grid=(4, 4), donors=2)}, "epochs": 2,
                 "folds": 2, "seed": 5, "batch_size": 8, "progress": False}
    first = fastmix.utility(images, labels, workers=2, **arguments)
    second = fastmix.utility(images, labels, workers=0, **arguments)
    assert first == second
    assert torch.equal(torch.random.get_rng_state(), state)
    # The control shuffles every pixel among its label, whatever the first spec's prob and
    # donors (grid4 has prob 0.5 and groups of 3).
    assert first["specs"]["control"] == CONTROL_SPEC.to_dict()
    assert first["specs"]["control"]["block"] == [1, 1]
    control = first["specs"]["control"]
    assert control["prob"] == 1.0 and control["group"] == "window"
    assert first["specs"]["grid4"]["grid"] == [4, 4]


def test_a_store_and_progress_lines(tiny_store):
    lines = []
    result = fastmix.utility(tiny_store, specs=("balanced",), epochs=1, folds=2,
                             batch_size=16, augment=True, progress=lines.append)
    assert result["images"] == 60 and result["augment"] and result["model"] == "cnn"
    assert len(lines) == 2 * 3 and lines[0].startswith("utility: fold 1/2 original: accuracy")


def test_progress_bar_and_lines_on_a_terminal(tiny_store):
    text = terminal_output(
        "import sys, fastmix\n"
        "fastmix.utility(sys.argv[1], epochs=2, folds=2, batch_size=8, workers=0)\n",
        str(tiny_store), size=(24, 100))
    assert "utility: fold 2/2 control: accuracy" in text
    assert "utility: 100%" in text  # dropped partial batches are not counted in the total


def test_resnet18_is_resnet18():
    from fastmix.audit.deep import build_model

    model = build_model("resnet18", 3, 1000)
    # torchvision's resnet18() has exactly this many parameters
    assert sum(parameter.numel() for parameter in model.parameters()) == 11_689_512
    grey = build_model("resnet18", 1, 7).eval()
    with torch.no_grad():
        assert tuple(grey(torch.zeros(2, 1, 64, 64)).shape) == (2, 7)


@pytest.mark.parametrize(("arguments", "message"), [
    ({"model": "vgg"}, "unknown model"),
    ({"folds": 1}, "folds must be"),
    ({"folds": 7}, "at least 7 images of every label"),
    ({"specs": ("fastest",)}, "neither a privacy preset"),
    ({"specs": {"control": fastmix.MixSpec()}}, "reference set"),
    ({"device": "tpu"}, "device must be"),
    ({"recipe": "tta"}, "unknown recipe 'tta'; choose from none, matched, matched\\+remix"),
    ({"recipe": "matched", "views": 0}, "views must be an integer >= 1"),
])
def test_bad_arguments(tiny_store, arguments, message):
    with pytest.raises(fastmix.BadInputError, match=message):
        fastmix.utility(tiny_store, **{"epochs": 1, "progress": False, **arguments})


def test_an_array_needs_its_labels_of_two_kinds_at_least():
    images, labels = photo_task(size=16, per_class=2)
    with pytest.raises(fastmix.BadInputError, match="labels are required"):
        fastmix.utility(images)
    with pytest.raises(fastmix.BadInputError, match="at least two labels"):
        fastmix.utility(images, labels * 0)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_is_bad_input(tiny_store):
    with pytest.raises(fastmix.BadInputError, match="no CUDA GPU"):
        fastmix.utility(tiny_store, device="cuda", progress=False)
    result = run_cli("utility", str(tiny_store), "--device", "cuda", cwd=tiny_store.parent)
    assert result.returncode == 2 and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and "no CUDA GPU" in result.stderr


def test_cli_json(tiny_store):
    result = run_cli("utility", tiny_store.name, "--privacy", "fast,balanced", "--block", "8x8",
                     "--epochs", "1", "--folds", "2", "--batch-size", "16", "--json",
                     cwd=tiny_store.parent)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert list(report["sets"]) == ["original", "fast", "balanced", "control"]
    assert report["specs"]["balanced"]["block"] == [8, 8]
    assert report["specs"]["fast"]["prob"] == 0.5
    assert report["folds"] == 2 and report["epochs"] == 1 and report["model"] == "cnn"
    for row in report["sets"].values():
        assert set(row) == SET_KEYS
    assert sorted(path.name for path in tiny_store.parent.iterdir()) == ["tiny.h5"]


def test_cli_table(tiny_store):
    result = run_cli("utility", tiny_store.name, "--epochs", "1", "--folds", "2",
                     "--workers", "0", cwd=tiny_store.parent)
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    assert rows[0].startswith("utility: cnn, 1 epochs, 2 folds, 60 images")
    assert [row.split()[0] for row in rows[2:]] == ["original", "balanced", "control"]


@pytest.mark.parametrize(("arguments", "message"), [
    (("missing.h5",), "missing.h5"),
    (("tiny.h5", "--privacy", "fast,bogus"), "--privacy must list presets"),
    (("tiny.h5", "--folds", "1"), "--folds must be an integer >= 2"),
    (("tiny.h5", "--model", "vgg"), "unknown model"),
    (("tiny.h5", "--block", "64x64"), "block"),
])
def test_cli_bad_input(tiny_store, arguments, message):
    result = run_cli("utility", *arguments, "--json", cwd=tiny_store.parent)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert json.loads(result.stdout)["exit_status"] == 2


def test_cli_without_torch_names_the_extra(tiny_store):
    script = ("import sys; sys.modules['torch'] = None\n"  # import torch now fails
              "from fastmix.cli import main\n"
              f"sys.exit(main(['utility', {str(tiny_store)!r}]))")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "fastmix utility: error: the deep-learning utility check needs PyTorch, which is not "
        "installed; install it with pip install 'fastmix[torch]'")


MATCHING_KEYS = {"unmatched_accuracy", "matching_change", "matching_change_interval"}


def test_the_matched_recipe_tests_the_same_networks_on_matched_views(tiny_store):
    """``matched`` changes only how the mixed sets' networks are tested.

    The original and the control are untouched, and the unmatched figure is recipe ``none``'s,
    image for image.
    """
    arguments = {"specs": ("balanced",), "epochs": 1, "folds": 2, "batch_size": 16,
                 "workers": 0, "progress": False}
    none = fastmix.utility(tiny_store, **arguments)
    matched = fastmix.utility(tiny_store, recipe="matched", views=2, **arguments)
    assert (none["recipe"], none["views"]) == ("none", 1)
    assert (matched["recipe"], matched["views"]) == ("matched", 2)
    assert matched["sets"]["original"] == none["sets"]["original"]
    assert matched["sets"]["control"] == none["sets"]["control"]
    row, plain = matched["sets"]["balanced"], none["sets"]["balanced"]
    assert set(row) == SET_KEYS | MATCHING_KEYS and set(plain) == SET_KEYS
    assert row["unmatched_accuracy"] == plain["accuracy"]
    assert row["train_accuracy"] == plain["train_accuracy"]
    assert row["matching_change"] == pytest.approx(row["accuracy"] - plain["accuracy"])
    low, high = row["matching_change_interval"]
    assert -1 <= low <= row["matching_change"] <= high <= 1


def test_cli_recipe_matched_and_remix_in_json_and_table(tiny_store):
    common = ("utility", tiny_store.name, "--epochs", "1", "--folds", "2", "--batch-size", "16",
              "--workers", "0", "--views", "2")
    result = run_cli(*common, "--recipe", "matched+remix", "--json", cwd=tiny_store.parent)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["recipe"] == "matched+remix" and report["views"] == 2
    assert list(report["sets"]) == ["original", "balanced", "control"]
    assert set(report["sets"]["balanced"]) == SET_KEYS | MATCHING_KEYS
    assert set(report["sets"]["control"]) == SET_KEYS
    assert 0 < report["sets"]["balanced"]["train_accuracy"] <= 1
    table = run_cli(*common, "--recipe", "matched", cwd=tiny_store.parent)
    assert table.returncode == 0, table.stderr
    rows = table.stdout.splitlines()
    assert "60 images, recipe matched (2 views);" in rows[0]
    assert [row.split()[0] for row in rows[2:5]] == ["original", "balanced", "control"]
    assert rows[5].startswith("balanced: unmatched ") and rows[5].endswith("(paired by image)")
    plain = run_cli(*common[:-2], cwd=tiny_store.parent)
    assert "60 images, recipe none;" in plain.stdout.splitlines()[0]
    assert sorted(path.name for path in tiny_store.parent.iterdir()) == ["tiny.h5"]


@pytest.mark.parametrize(("arguments", "message"), [
    (("--recipe", "remix"), "--recipe must be one of none, matched, matched+remix, got 'remix'"),
    (("--recipe", "matched", "--views", "0"), "--views must be an integer >= 1"),
])
def test_cli_recipe_is_checked(tiny_store, arguments, message):
    result = run_cli("utility", tiny_store.name, *arguments, "--json", cwd=tiny_store.parent)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr
    assert json.loads(result.stdout)["exit_status"] == 2


def test_two_specs_that_differ_only_in_their_bytes_keep_two_names():
    from fastmix.audit.deep import _named_specs

    newer = fastmix.MixSpec.preset("balanced")
    older = newer.with_hardening_format(1)
    named = _named_specs([older, newer])
    assert len(named) == 2
    assert [spec.hardening_format for spec in named.values()] == [1, 2]
    assert list(_named_specs([newer, newer])) == [newer.canonical()]
