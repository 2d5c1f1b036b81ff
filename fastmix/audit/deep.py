"""The deep-learning utility check: whether a network trained on mixed images works on real ones.

Each of ``folds`` stratified splits trains a network from scratch, in PyTorch, on the training
part as it is (``original``), mixed with each spec, and mixed with 1x1-pixel blocks (the
``control``), and tests every network on the untouched originals of the held-out part. Each
fold's training part is mixed on its own with a fresh key, written to a temporary HDF5 store
and read back through :class:`fastmix.H5ImageDataset` and a ``torch.utils.data.DataLoader``
with worker processes, as a user trains.

Within a fold every training set starts from the same initial weights and sees its images in
the same order, so the change against the original is a paired difference. Every image is
tested once (in the fold that holds it out), so the figures pool the predictions of all folds:
accuracies with Wilson intervals, changes paired by image with Newcombe's interval (both always
within the range a share can take, however few the folds).

torch is an optional dependency (``pip install 'fastmix[torch]'``), imported on first use.
"""

from __future__ import annotations

import os
import sys
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from fastmix._optional import require
from fastmix.audit.utility import (
    CONTROL_SPEC,
    INTERVAL,
    _fold_key,
    paired_change_interval,
    wilson_interval,
)
from fastmix.errors import BadInputError, FastmixWarning, check_integer
from fastmix.presets import PRESETS
from fastmix.progress import Progress
from fastmix.spec import MixSpec
from fastmix.units import format_bytes, parse_memory

MODELS = ("cnn", "resnet18")
#: The training recipes (issue 22). ``none``: each mixed set is trained on as stored and
#: tested on the untouched originals. ``matched``: the same networks, each mixed set's tested
#: on its spec's hardening matched to every test image alone (:class:`fastmix.torch.
#: MatchHardening`), the softmax averaged over ``views`` draws. ``matched+remix``: as
#: ``matched``, and each mixed set is mixed afresh every epoch, batch by batch
#: (:class:`fastmix.torch.RemixEachEpoch` over :class:`fastmix.torch.LabelGroupedBatches`)
#: instead of once into a store.
RECIPES = ("none", "matched", "matched+remix")
#: Images of a label dealt together into a batch under ``matched+remix``: the group that
#: ``mix_batch`` mixes them in (4 keeps 8 labels in a batch of 32).
REMIX_PER_LABEL = 4


def require_torch():
    """Import torch, or raise :class:`BadInputError` naming the extra that installs it."""
    return require("torch", "torch", needed_by="the deep-learning utility check",
                   package="PyTorch")


#: Widths of the ``cnn`` model's 3x3 stride-2 convolutions. Five halvings give a receptive
#: field of 63 pixels; on the 192x192 photo task (fold 0, 8 epochs) this scored 0.77 where four
#: (16-32-64-128) scored 0.72, at about the same cost.
CNN_WIDTHS = (16, 32, 64, 128, 128)


def _cnn(nn, channels: int, classes: int):
    """Build a small CNN: five 3x3 stride-2 convolutions, batchnorm, global average pool."""
    layers = []
    for width_in, width_out in zip((channels, *CNN_WIDTHS[:-1]), CNN_WIDTHS):
        layers += [nn.Conv2d(width_in, width_out, 3, stride=2, padding=1, bias=False),
                   nn.BatchNorm2d(width_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(CNN_WIDTHS[-1], classes))


def _resnet18(nn, channels: int, classes: int):
    """Build ResNet-18 (He et al. 2016): the ImageNet stem and four stages of two basic blocks."""

    class BasicBlock(nn.Module):
        def __init__(self, width_in: int, width: int, stride: int):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(width_in, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.Conv2d(width, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width))
            self.shortcut = nn.Identity()
            if stride != 1 or width_in != width:
                self.shortcut = nn.Sequential(nn.Conv2d(width_in, width, 1, stride, bias=False),
                                              nn.BatchNorm2d(width))
            self.relu = nn.ReLU(inplace=True)

        def forward(self, x):
            return self.relu(self.body(x) + self.shortcut(x))

    layers = [nn.Conv2d(channels, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64),
              nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1)]
    width_in = 64
    for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(width_in, width, stride), BasicBlock(width, width, 1)]
        width_in = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(512, classes))


def build_model(name: str, channels: int, classes: int):
    """Return a fresh, randomly initialised ``cnn`` or ``resnet18`` (torch's global RNG).

    Parameters
    ----------
    name : str
        ``"cnn"`` or ``"resnet18"``.
    channels : int
        Input channels.
    classes : int
        Outputs.
    """
    torch = require_torch()
    if name == "cnn":
        return _cnn(torch.nn, channels, classes)
    if name == "resnet18":
        return _resnet18(torch.nn, channels, classes)
    raise BadInputError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")


def _named_specs(specs) -> dict[str, MixSpec]:
    if isinstance(specs, str | MixSpec):
        specs = (specs,)
    if isinstance(specs, Mapping):
        named = dict(specs)
    else:
        named = {}
        for item in specs:
            if isinstance(item, MixSpec):
                name = item.canonical()
                if name in named and named[name].identity() != item.identity():
                    name = item.identity()  # the same draws, other bytes (plan rule, format)
                named[name] = item
            elif isinstance(item, str) and item in PRESETS:
                named[item] = MixSpec.preset(item)
            else:
                raise BadInputError(f"specs: {item!r} is neither a privacy preset "
                                    f"({', '.join(PRESETS)}) nor a MixSpec")
    for name, spec in named.items():
        if not isinstance(spec, MixSpec):
            raise BadInputError(f"specs: {name!r} must map to a MixSpec, got "
                                f"{type(spec).__name__}")
        if name in ("original", "control"):
            raise BadInputError(f"specs: {name!r} is the name of a reference set; rename it")
    if not named:
        raise BadInputError("specs: give at least one preset name or MixSpec")
    return named


def _load(source, labels, memory: int) -> tuple[np.ndarray, np.ndarray]:
    from fastmix.mixing import check_images
    from fastmix.plan.labels import validate_labels

    if isinstance(source, str | os.PathLike):
        if labels is not None:
            raise BadInputError("labels are read from the store; give labels only with an "
                                "image array")
        from fastmix.store.hdf5.access import open_store

        with open_store(source) as store:
            needed = store.count * store.image_bytes
            if needed > memory:
                raise BadInputError(
                    f"{os.fspath(source)}: its {store.count} images take "
                    f"{format_bytes(needed)}, more than memory {format_bytes(memory)}; the "
                    "utility check holds them in memory: raise memory or check a sample")
            images, labels = np.asarray(store.images[()]), store.labels
        source = images
    elif labels is None:
        raise BadInputError("labels are required with an image array (one per image)")
    images = check_images(source)
    labels = validate_labels(labels, len(images))
    if labels.dtype.kind not in "iu":
        labels = np.unique(labels, return_inverse=True)[1]
    if images.dtype != np.uint8:
        raise BadInputError(f"the utility check trains on uint8 images, got {images.dtype}; "
                            "convert them (0-255) first")
    return images, np.unique(labels, return_inverse=True)[1].astype(np.int64)


def _stratified_folds(labels: np.ndarray, folds: int, seed: int) -> list[np.ndarray]:
    """Fold of every image: each label's images, shuffled, dealt to the folds in turn."""
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold_of[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)  # the next label's remainders go to other folds first
    return [np.flatnonzero(fold_of == fold) for fold in range(folds)]


def _write_store(path: str, images: np.ndarray, labels: np.ndarray) -> None:
    import h5py

    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=images, chunks=(1, *images.shape[1:]))
        file.create_dataset("labels", data=labels)


def _augment(torch, batch, generator):
    """Random crops (reflect-pad by an eighth of the side, crop back) and horizontal flips."""
    count, _, height, width = batch.shape
    pad_y, pad_x = max(1, height // 8), max(1, width // 8)
    padded = torch.nn.functional.pad(batch, (pad_x, pad_x, pad_y, pad_y), mode="reflect")
    tops = torch.randint(0, 2 * pad_y + 1, (count,), generator=generator).tolist()
    lefts = torch.randint(0, 2 * pad_x + 1, (count,), generator=generator).tolist()
    flips = (torch.rand(count, generator=generator) < 0.5).tolist()
    crops = []
    for image, top, left, flip in zip(padded, tops, lefts, flips):
        crop = image[:, top:top + height, left:left + width]
        crops.append(crop.flip(-1) if flip else crop)
    return torch.stack(crops)


def _images_per_epoch(count: int, batch_size: int, grouped: bool = False) -> int:
    """Images trained on per epoch: whole batches only, unless all fit in one.

    Label-grouped batches (``matched+remix``) keep every image.
    """
    if grouped:
        return count
    return count if count <= batch_size else count // batch_size * batch_size


def _match_key(seed: int, fold: int):
    """Return the key of a fold's test-time matching (not the fold's mixing key)."""
    import hashlib

    from fastmix.keys import Key

    return Key(hashlib.sha256(f"fastmix-utility-match-{seed}-{fold}".encode()).digest())


def _as_bytes(torch, batch):
    """Return a float batch in [0, 1] read by ``to_tensor`` as the uint8 pixels it came from."""
    return (batch * 255.0).round_().to(torch.uint8)


def _normalise(batch):
    return (batch - 0.5) / 0.25


def _train_and_test(torch, model_name: str, path: str, classes: int, test_images: np.ndarray,
                    test_labels: np.ndarray, *, epochs: int, augment: bool, seed: int,
                    batch_size: int, workers: int, device, advance: Callable[[int], None],
                    remix=None, matching=None, views: int = 1):
    """Train a fresh model on the store at ``path``.

    ``remix``: ``(spec, key)`` to mix every batch afresh (label-grouped batches) instead of
    training on the store's images as they are. ``matching``: a
    :class:`fastmix.torch.MatchHardening` to test with, over ``views`` views.

    Returns (whether each test image was classified right, accuracy on the training set
    during the last epoch, whether each was right without the matching or ``None``).
    """
    from fastmix.dataset import H5ImageDataset
    from fastmix.torch import LabelGroupedBatches, RemixEachEpoch

    channels = 1 if test_images.ndim == 3 else test_images.shape[3]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(model_name, channels, classes)
    model = model.to(device)
    dataset = H5ImageDataset(path, to_tensor=True)
    # Three generators: the DataLoader draws worker seeds from its own once per iterator
    # (every epoch without persistent workers, once with them), so the batch order and the
    # augmentation each get one that only they draw from, whatever the workers.
    order = torch.Generator().manual_seed(seed)
    generator = torch.Generator().manual_seed(seed + 1)
    batches = None
    if remix is None:
        sampler = torch.utils.data.RandomSampler(dataset, generator=order)
        loader = torch.utils.data.DataLoader(
            dataset, batch_size=batch_size, sampler=sampler,
            generator=torch.Generator().manual_seed(seed + 2), num_workers=workers,
            persistent_workers=workers > 0,
            drop_last=_images_per_epoch(len(dataset), batch_size) < len(dataset))
    else:
        batches = LabelGroupedBatches(dataset.labels, batch_size, REMIX_PER_LABEL, seed=seed)
        loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=batches, generator=torch.Generator().manual_seed(seed + 2),
            num_workers=workers, persistent_workers=workers > 0)
        remixing = RemixEachEpoch(remix[0], remix[1], len(loader))

    def prepared(images, targets, epoch: int, step: int):
        if batches is not None:  # the store holds the originals: mix this batch afresh
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FastmixWarning)  # a group of two now and then
                images = remixing(_as_bytes(torch, images), targets, epoch, step)
            images = images.contiguous().float() / 255.0
        return images

    steps = epochs * len(loader)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=steps)
    correct = seen = 0
    for epoch in range(epochs):
        model.train()
        correct = seen = 0
        if batches is not None:
            batches.set_epoch(epoch)
        for step, (images, targets) in enumerate(loader):
            images = prepared(images, targets, epoch, step)
            if augment:
                images = _augment(torch, images, generator)
            images, targets = images.to(device), targets.to(device)
            optimiser.zero_grad(set_to_none=True)
            outputs = model(_normalise(images))
            loss = torch.nn.functional.cross_entropy(outputs, targets)
            loss.backward()
            optimiser.step()
            schedule.step()
            if epoch == epochs - 1:
                correct += int((outputs.argmax(1) == targets).sum())
                seen += len(targets)
            advance(len(targets))
    if batches is not None:
        batches.set_epoch(epochs)  # the statistics pass sees another mixing still
    _recompute_batch_norm(torch, model, loader, device,
                          lambda images, targets, step: prepared(images, targets, epochs, step))
    del loader  # stops its workers
    dataset.close()
    model.eval()
    hits = np.zeros(len(test_images), dtype=bool)
    with torch.no_grad():
        for first in range(0, len(test_images), batch_size):
            chunk = test_images[first:first + batch_size]
            if chunk.ndim == 3:
                chunk = chunk[..., None]
            batch = torch.from_numpy(np.ascontiguousarray(chunk)).permute(0, 3, 1, 2)
            batch = batch.to(device).float() / 255.0
            predicted = model(_normalise(batch)).argmax(1).cpu().numpy()
            hits[first:first + batch_size] = predicted == test_labels[first:first + batch_size]
    if matching is None:
        return hits, correct / max(seen, 1), None
    from fastmix.torch import predict_matched

    pixels = test_images if test_images.ndim == 4 else test_images[..., None]
    tensor = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2)
    probabilities = predict_matched(
        model, tensor, matching, views=views, batch_size=batch_size,
        prepare=lambda matched: _normalise(matched.to(device).float() / 255.0))
    matched_hits = probabilities.argmax(1).cpu().numpy() == test_labels
    return matched_hits, correct / max(seen, 1), hits


def _recompute_batch_norm(torch, model, loader, device, prepared=None) -> None:
    """Set every batch-norm layer's statistics to their average over one pass of the training set.

    A short training run leaves the running averages (momentum 0.1) far from the trained
    weights' statistics: on the 200-image face task at 192x192, 8 epochs of 3 batches, the
    model trained on the originals scored 0.51 on held-out originals with them and 0.98
    after this recomputation (the training accuracy was 0.995 either way).
    """
    layers = [layer for layer in model.modules()
              if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm)]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over the batches of the pass
    model.train()
    with torch.no_grad():
        for step, (images, targets) in enumerate(loader):
            if prepared is not None:
                images = prepared(images, targets, step)
            model(_normalise(images.to(device)))


def _device(torch, device: str):
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise BadInputError(f"device must be cpu or cuda (or cuda:N), got {device!r}") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise BadInputError(f"device {device!r}: PyTorch sees no CUDA GPU on this machine; use "
                            "device cpu (--device cpu)")
    if chosen.type not in ("cpu", "cuda"):
        raise BadInputError(f"device must be cpu or cuda, got {device!r}")
    return chosen


def utility(source, labels=None, *, specs: Sequence | Mapping = ("balanced",),
            model: str = "cnn", epochs: int = 8, augment: bool = False, folds: int = 3,
            device: str = "cpu", seed: int = 0, batch_size: int = 32, workers: int = 2,
            progress: bool | Callable[[str], None] | None = None,
            memory: int | str = "2GiB", recipe: str = "none", views: int = 4) -> dict:
    """Accuracy of a network trained from scratch on mixed vs original images, on originals.

    For each of ``folds`` stratified splits the training part is used as it is
    (``original``), mixed with each spec, and mixed at 1x1-pixel blocks (``control``:
    every pixel moved to another image of its label,
    :data:`~fastmix.audit.utility.CONTROL_SPEC`, whatever the specs; what a network learns
    from pixel statistics alone). The training part is mixed with a fresh key per fold and
    read through :class:`fastmix.H5ImageDataset` and a ``DataLoader`` from a temporary HDF5
    store (deleted afterwards); every network is tested on the untouched held-out originals.

    Parameters
    ----------
    source : str, PathLike or ndarray
        A store (datasets ``images`` and ``labels``) or uint8 images (N, H, W[, C]).
    labels : array-like, optional
        One label per image; required with an array, refused with a store.
    specs : sequence or mapping
        Preset names and/or :class:`MixSpec` objects, or ``{name: MixSpec}``. A spec without
        ``block`` or ``grid`` uses the default grid (2x8).
    model : str
        ``"cnn"``: five 3x3 stride-2 convolutions (16-32-64-128-128) with batchnorm and
        global average pooling, cheap on a CPU at 192x192. ``"resnet18"``: ResNet-18 with the
        ImageNet stem.
    epochs : int
        Passes over each training set (AdamW, one-cycle learning rate peaking at 3e-3).
    augment : bool
        Random crops (reflect-pad by an eighth of the side, crop back) and horizontal flips
        of the training images, on every training set alike.
    folds : int
        Stratified splits; every label needs at least ``folds`` images.
    device : str
        ``"cpu"`` or ``"cuda"`` (``"cuda:N"``); a missing GPU is a :class:`BadInputError`.
    seed : int
        Seed of the splits, the keys, the initial weights and the batch order.
    batch_size : int
        Training batch size. With a few hundred images, 32 gives enough steps in 8 epochs
        (64 left the photo task's original at 0.30 accuracy where 32 reached 0.76).
    workers : int
        DataLoader worker processes (0 reads in the calling process).
    progress : bool, callable or None
        ``None`` or ``True``: a progress bar on a terminal (trained images), with one line per
        fold and set. ``False``: nothing. A callable is given those lines instead.
    memory : int or str
        Most bytes the images of a store may take in memory.
    recipe : {"none", "matched", "matched+remix"}
        How the networks of the mixed sets are trained and tested (:data:`RECIPES`).
        ``none``: trained on the set as mixed, tested on the originals. ``matched``: tested
        on the originals each hardened alone with the spec's hardening (a fresh key per fold,
        no block moved between images), the softmax averaged over ``views`` draws.
        ``matched+remix``: also trained on the training part mixed afresh every epoch, batch
        by batch, in label-grouped batches (:data:`REMIX_PER_LABEL` images of a label
        together). The original and the control are trained and tested as under ``none``.
    views : int
        Matched views per test image under ``matched`` recipes (at least 1).

    Returns
    -------
    dict
        ``model``, ``epochs``, ``augment``, ``folds``, ``images``, ``seed``, ``device``,
        ``interval`` (what the intervals are: Wilson over the pooled predictions; changes:
        Newcombe's paired interval), ``specs`` (each spec's parameters, the control's too)
        and ``sets``: for ``original``, each spec name and ``control``, ``accuracy`` (over
        the pooled test predictions of all folds), ``interval`` ``[lo, hi]`` within [0, 1],
        ``change`` (accuracy - original accuracy, paired by image; 0 for the original),
        ``change_interval`` within [-1, 1], ``fold_accuracy`` (per fold) and
        ``train_accuracy`` (mean over folds of the accuracy on the training set during the
        last epoch). ``recipe`` names the recipe and ``views`` its views (1 under ``none``).
        Under a ``matched`` recipe each spec's row adds ``unmatched_accuracy`` (the same
        networks tested on the plain originals) and ``matching_change`` with its
        ``matching_change_interval`` (matched - unmatched, paired by image, Newcombe).

    Notes
    -----
    The result depends only on the arguments: the weights start from a seeded generator
    (inside ``torch.random.fork_rng``, so the caller's global RNG is untouched), the batch
    order comes from a ``torch.Generator`` seeded with ``seed + fold``, and the workers draw
    nothing at random. On the CPU it is reproducible bit for bit for a given torch version
    and number of threads (``torch.get_num_threads()``); a GPU adds its own nondeterminism.
    """
    torch = require_torch()
    if model not in MODELS:
        raise BadInputError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    if not isinstance(recipe, str) or recipe not in RECIPES:
        raise BadInputError(f"unknown recipe {recipe!r}; choose from {', '.join(RECIPES)}")
    for name, value, least in (("epochs", epochs, 1), ("folds", folds, 2),
                               ("batch_size", batch_size, 1), ("workers", workers, 0),
                               ("views", views, 1)):
        check_integer(value, name, minimum=least, wording=f"an integer >= {least}")
    matched, remixed = recipe.startswith("matched"), recipe.endswith("+remix")
    views = views if matched else 1
    chosen_device = _device(torch, device)
    named = _named_specs(specs)
    images, labels = _load(source, labels, parse_memory(memory))
    classes = int(labels.max()) + 1
    if classes < 2:
        raise BadInputError("the utility check needs images of at least two labels, found one")
    smallest = int(np.bincount(labels).min())
    if smallest < folds:
        raise BadInputError(
            f"the utility check needs at least {folds} images of every label for {folds} folds "
            f"(smallest label has {smallest}); lower the number of folds")
    height, width = images.shape[1:3]
    for name, spec in named.items():
        try:
            spec.block_shape(height, width)
        except BadInputError as error:
            raise BadInputError(f"spec {name!r}: {error}") from None
    training_sets: dict[str, MixSpec | None] = {"original": None, **named,
                                                "control": CONTROL_SPEC}
    fold_parts = _stratified_folds(labels, folds, seed)
    total = epochs * sum(
        _images_per_epoch(len(labels) - len(part), batch_size,
                          remixed and name in named)
        for part in fold_parts for name in training_sets)
    hits = {name: np.zeros(len(labels), dtype=bool) for name in training_sets}
    unmatched = {name: np.zeros(len(labels), dtype=bool) for name in named} if matched else {}
    scores: dict[str, list[float]] = {name: [] for name in training_sets}
    trained: dict[str, list[float]] = {name: [] for name in training_sets}

    from fastmix.mixing import mix_array

    show_bar = progress is None or progress is True
    with Progress(total, images[0].nbytes, "utility", enabled=show_bar) as bar, \
            tempfile.TemporaryDirectory(prefix="fastmix-utility-") as scratch:

        def say(line: str) -> None:
            if callable(progress) and progress is not True:
                progress(line)
            elif bar.bar is not None:
                bar.bar.write(line, file=sys.stderr)  # above the bar, which is on stderr

        for fold, test in enumerate(fold_parts):
            train = np.setdiff1d(np.arange(len(labels)), test)
            key = _fold_key(seed, fold)
            for index, (name, mixed_by) in enumerate(training_sets.items()):
                recipe_set = matched and name in named
                remix = (mixed_by, key) if remixed and recipe_set else None
                train_images = images[train]
                if mixed_by is not None and remix is None:
                    train_images = mix_array(train_images, labels[train], mixed_by, key)
                path = os.path.join(scratch, f"fold{fold}-set{index}.h5")
                _write_store(path, train_images, labels[train])
                del train_images
                matching = None
                if recipe_set:
                    from fastmix.torch import MatchHardening

                    matching = MatchHardening(mixed_by, key=_match_key(seed, fold))
                fold_hits, train_accuracy, plain_hits = _train_and_test(
                    torch, model, path, classes, images[test], labels[test], epochs=epochs,
                    augment=augment, seed=seed + fold, batch_size=batch_size, workers=workers,
                    device=chosen_device, advance=bar.update, remix=remix, matching=matching,
                    views=views)
                os.remove(path)
                hits[name][test] = fold_hits
                if plain_hits is not None:
                    unmatched[name][test] = plain_hits
                accuracy = float(fold_hits.mean())
                scores[name].append(accuracy)
                trained[name].append(train_accuracy)
                say(f"utility: fold {fold + 1}/{folds} {name}: accuracy {accuracy:.3f} "
                    f"(train {train_accuracy:.3f})")

    original = hits["original"]
    sets = {}
    for name in training_sets:
        accuracy = float(hits[name].mean())
        sets[name] = {
            "accuracy": accuracy,
            "interval": wilson_interval(int(hits[name].sum()), len(labels)),
            "change": accuracy - float(original.mean()) if name != "original" else 0.0,
            "change_interval": ([0.0, 0.0] if name == "original"
                                else paired_change_interval(hits[name], original)),
            "fold_accuracy": scores[name],
            "train_accuracy": float(np.mean(trained[name])),
        }
        if name in unmatched:
            plain = unmatched[name]
            sets[name]["unmatched_accuracy"] = float(plain.mean())
            sets[name]["matching_change"] = accuracy - float(plain.mean())
            sets[name]["matching_change_interval"] = paired_change_interval(hits[name], plain)
    return {
        "model": model, "epochs": epochs, "augment": bool(augment), "folds": folds,
        "images": len(labels), "seed": seed, "device": str(chosen_device),
        "recipe": recipe, "views": views, "interval": INTERVAL,
        "specs": {name: spec.to_dict() for name, spec in training_sets.items()
                  if spec is not None},
        "sets": sets,
    }
