"""The utility check: whether a classifier trained on mixed images still works on real ones.

Each of ``folds`` stratified splits trains scikit-learn models on the training part three
times: as it is, mixed with the spec, and mixed with 1x1-pixel blocks (the control). All
are tested on the untouched originals of the held-out part. The training part is mixed on
its own, with a fresh key, so no held-out pixel leaks into training.

The control tells whether the task is too easy to say anything: if classifiers still work on
images whose pixels are shuffled one by one between same-label images (about 91% on sklearn
digits), keeping accuracy under block mixing proves little.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np

from fastmix.audit._deps import require
from fastmix.errors import BadInputError
from fastmix.spec import MixSpec

MODELS = ("logistic", "mlp", "svm")
MAINTAINED_POINTS = 0.02
CONTROL_MARGIN = 0.05


def _model(name: str, seed: int):
    linear_model = require("sklearn.linear_model")
    neural_network = require("sklearn.neural_network")
    pipeline = require("sklearn.pipeline")
    preprocessing = require("sklearn.preprocessing")
    svm = require("sklearn.svm")
    if name == "logistic":
        estimator = linear_model.LogisticRegression(max_iter=2000)
    elif name == "mlp":
        estimator = neural_network.MLPClassifier(hidden_layer_sizes=(64,), max_iter=500,
                                                 random_state=seed)
    elif name == "svm":
        estimator = svm.SVC(kernel="rbf", gamma="scale")
    else:
        raise BadInputError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return pipeline.make_pipeline(preprocessing.StandardScaler(), estimator)


def _features(images: np.ndarray, max_side: int) -> np.ndarray:
    """Flattened images, downscaled (area average) so that no side exceeds ``max_side``."""
    images = images.astype(np.float32)
    height, width = images.shape[1:3]
    factor = max(1, -(-max(height, width) // max_side))
    if factor > 1:
        rows, cols = height // factor * factor, width // factor * factor
        trimmed = images[:, :rows, :cols]
        shape = (len(images), rows // factor, factor, cols // factor, factor, *images.shape[3:])
        images = trimmed.reshape(shape).mean(axis=(2, 4))
    return images.reshape(len(images), -1)


def _fold_key(seed: int, fold: int):
    from fastmix.keys import Key

    digest = hashlib.sha256(f"fastmix-utility-{seed}-{fold}".encode()).hexdigest()
    return Key.from_hex(digest)


#: The 1x1-pixel control: every pixel moves to another image of the same label (permute mode,
#: prob 1, one group of the whole label in a window), whatever specs are measured beside it.
#: It copies nothing from them: a control with the measured spec's prob 0.5 would shuffle only
#: half the pixels and say less.
CONTROL_SPEC = MixSpec(block=(1, 1), mode="permute", prob=1.0, group="window")
#: What the intervals are, as the results state it.
INTERVAL = ("95% Wilson score interval over the pooled test predictions of all folds (every "
            "image is tested once); changes: Newcombe's score interval for paired proportions")
_Z95 = 1.959963984540054


def control_spec() -> MixSpec:
    """Return the 1x1-pixel control (:data:`CONTROL_SPEC`)."""
    return CONTROL_SPEC


def wilson_interval(hits: int, count: int) -> list[float]:
    """95% Wilson score interval of a proportion ``hits / count``; always inside [0, 1].

    Valid for any count (it does not assume a normal mean over a few folds), and never empty
    or outside the range a proportion can take.
    """
    if count <= 0:
        return [0.0, 1.0]
    share = hits / count
    z2 = _Z95 * _Z95
    centre = (share + z2 / (2 * count)) / (1 + z2 / count)
    half = (_Z95 / (1 + z2 / count)) * np.sqrt(share * (1 - share) / count
                                               + z2 / (4 * count * count))
    low = 0.0 if hits == 0 else max(0.0, centre - half)  # exact ends: no rounding past them
    high = 1.0 if hits == count else min(1.0, centre + half)
    return [float(low), float(high)]


def paired_change_interval(new: np.ndarray, old: np.ndarray) -> list[float]:
    """95% interval of ``mean(new) - mean(old)`` for paired hits (Newcombe 1998, method 10).

    ``new[i]`` and ``old[i]`` say whether two classifiers got test image ``i`` right. The
    interval combines each accuracy's Wilson interval with the correlation of the pairs
    (phi), so it always lies inside [-1, 1] and contains the observed change.
    """
    new, old = np.asarray(new, dtype=bool), np.asarray(old, dtype=bool)
    count = new.size
    if count == 0:
        return [-1.0, 1.0]
    both = int(np.sum(new & old))
    only_new = int(np.sum(new & ~old))
    only_old = int(np.sum(~new & old))
    neither = count - both - only_new - only_old
    p_new, p_old = (both + only_new) / count, (both + only_old) / count
    low_new, high_new = wilson_interval(both + only_new, count)
    low_old, high_old = wilson_interval(both + only_old, count)
    margins = ((both + only_new) * (only_old + neither) * (both + only_old)
               * (only_new + neither))
    phi = 0.0 if margins == 0 else (both * neither - only_new * only_old) / np.sqrt(margins)
    below = np.sqrt(max(0.0, (p_new - low_new) ** 2 - 2 * phi * (p_new - low_new)
                        * (high_old - p_old) + (high_old - p_old) ** 2))
    above = np.sqrt(max(0.0, (high_new - p_new) ** 2 - 2 * phi * (high_new - p_new)
                        * (p_old - low_old) + (p_old - low_old) ** 2))
    change = p_new - p_old
    return [float(max(-1.0, change - below)), float(min(1.0, change + above))]


def utility_check(images: np.ndarray, labels: np.ndarray, spec: MixSpec, *, folds: int = 5,
                  seed: int = 0, models: tuple[str, ...] = MODELS, max_side: int = 32,
                  sample: int = 1000) -> dict:
    """Accuracy of classifiers trained on mixed vs original images, tested on originals.

    Parameters
    ----------
    images : ndarray, shape (n, H, W) or (n, H, W, C)
        The original images.
    labels : array-like, shape (n,)
        Their labels.
    spec : MixSpec
        The mixing to evaluate.
    folds : int
        Stratified splits (k-fold).
    seed : int
        Seed of the splits, the models and the mixing keys.
    models : tuple of str
        Any of ``"logistic"``, ``"mlp"``, ``"svm"``.
    max_side : int
        Images are area-downscaled so that no side exceeds this before training.
    sample : int
        At most this many images per label are used.

    Returns
    -------
    dict
        ``models``: per model the accuracy of ``original``, ``mixed`` and ``control`` training
        over the pooled test predictions of all folds, ``change`` (mixed - original, paired
        by image), its 95% interval, ``control_change`` and a ``verdict``; ``verdict``
        overall; ``folds``; ``images``; ``interval`` (what the intervals are).
    """
    from fastmix.mixing import check_images, mix_array
    from fastmix.plan.labels import validate_labels

    model_selection = require("sklearn.model_selection")
    images = check_images(images)
    labels = validate_labels(labels, len(images))
    rng = np.random.default_rng(seed)
    keep = np.concatenate([
        rng.permutation(np.flatnonzero(labels == label))[:sample] for label in np.unique(labels)
    ])
    keep.sort()
    images, labels = images[keep], labels[keep]
    smallest = np.unique(labels, return_counts=True)[1].min()
    if folds < 2 or smallest < folds:
        raise BadInputError(
            f"the utility check needs at least {folds} images of every label for {folds} folds "
            f"(smallest label has {smallest}); lower the number of folds")
    height, width = images.shape[1:3]
    spec.block_shape(height, width)
    splitter = model_selection.StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    variant_names = ("original", "mixed", "control")
    hits = {name: {variant: np.zeros(len(labels), dtype=bool) for variant in variant_names}
            for name in models}
    test_features_cache = {}
    for fold, (train, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        key = _fold_key(seed, fold)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            variants = {
                "original": images[train],
                "mixed": mix_array(images[train], labels[train], spec, key),
                "control": mix_array(images[train], labels[train], CONTROL_SPEC, key),
            }
        test_features_cache[fold] = _features(images[test], max_side)
        for variant, train_images in variants.items():
            features = _features(train_images, max_side)
            for name in models:
                model = _model(name, seed)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    model.fit(features, labels[train])
                hits[name][variant][test] = (model.predict(test_features_cache[fold])
                                             == labels[test])
    result: dict = {"folds": folds, "images": len(labels), "max_side": max_side,
                    "interval": INTERVAL, "models": {}}
    verdicts = []
    for name in models:
        original, mixed, control = (hits[name][variant] for variant in variant_names)
        change = float(mixed.mean() - original.mean())
        control_change = float(control.mean() - original.mean())
        verdict = utility_verdict(change, control_change)
        verdicts.append(verdict)
        result["models"][name] = {
            "original": float(original.mean()), "mixed": float(mixed.mean()),
            "control": float(control.mean()), "change": change,
            "change_interval": paired_change_interval(mixed, original),
            "control_change": control_change,
            "control_change_interval": paired_change_interval(control, original),
            "verdict": verdict,
        }
    if all(v == "maintained" for v in verdicts):
        overall = "maintained"
    elif any(v == "reduced" for v in verdicts):
        overall = "reduced"
    else:
        overall = "inconclusive"
    result["verdict"] = overall
    return result


def utility_verdict(change: float, control_change: float) -> str:
    """``maintained``, ``reduced`` or ``inconclusive`` from mean accuracy changes.

    Maintained only when mixing costs under 2 points and the 1x1-pixel control is clearly
    worse (at least 5 points below the mixed training); reduced when mixing costs 2 points or
    more; inconclusive when the control does about as well (the task is too easy to tell).
    """
    if change <= -MAINTAINED_POINTS:
        return "reduced"
    if control_change <= change - CONTROL_MARGIN:
        return "maintained"
    return "inconclusive"
