"""Training-time mixing of PyTorch batches, on the GPU where the batch already is.

PyTorch is imported by the caller, never here: a tensor's own methods do the work.

:func:`mix_batch` mixes one batch, keyed by its step. The training recipe (docs/utility.md,
"A training recipe") adds test-time matching (:class:`MatchHardening`,
:func:`predict_matched`) and per-epoch re-mixing (:class:`LabelGroupedBatches`,
:class:`RemixEachEpoch`).

>>> for step, (images, labels) in enumerate(loader):            # doctest: +SKIP
...     images = images.cuda(non_blocking=True)
...     images = fastmix.torch.mix_batch(images, labels, spec, key, step)
...     loss = model(images.float() / 255)
"""

from __future__ import annotations

from typing import Any

from fastmix.errors import BadInputError, BadInputTypeError, check_flag, check_integer
from fastmix.keys import Key
from fastmix.mixing import MAX_WINDOW_INDEX, PlanCache, mix_array, mix_cached
from fastmix.spec import MixSpec

#: The pipelines and plans of recent batches (:class:`fastmix.mixing.PlanCache`): a batch of
#: a shape already seen reuses its run's constants and device tables, and a batch with the
#: labels and step of a recent one is not planned again.
_BATCHES = PlanCache()


def mix_batch(images, labels, spec: MixSpec | None, key: Key, step: int, *,
              backend: str | None = None, stream: object = None, strict: bool = False):
    """Mix one training batch, keyed by its step, where it lives.

    Parameters
    ----------
    images : torch.Tensor, shape (N, C, H, W) or (N, H, W)
        The batch, on a CUDA device (mixed there with no host copy) or on the CPU. Any
        memory format: a ``channels_last`` batch is mixed without a transposing copy.
    labels : torch.Tensor or array-like, shape (N,)
        Integer labels (a CUDA tensor is copied to the host: N integers).
    spec : MixSpec or None
        Mixing parameters; ``None`` means ``MixSpec()``. The batch is one window.
    key : Key
        The secret key.
    step : int
        The batch's index in training, from 0 to ``2**64 - 1`` (for example
        ``epoch * batches_per_epoch + i``). With the key it seeds the batch's plan, so each
        step mixes differently and a run with the same key, spec, batches and steps gives
        the same bytes on every backend: the result
        equals ``mix_array(nhwc_batch, labels, spec, key, first_window=step)``.
    backend : str, optional
        ``"cuda"`` for CUDA tensors and ``"cpu"`` for CPU tensors by default.
    stream : optional
        The stream to queue the work on; default PyTorch's current stream.
    strict : bool
        Raise instead of warning about images without a same-label partner.

    Returns
    -------
    torch.Tensor
        The mixed batch, shape (N, C, H, W) like ``images``, in the ``channels_last``
        memory format (the layout the kernels use), on the same device.

    Notes
    -----
    The batch's plan is made on the host (the labels of a CUDA tensor are copied there) and
    kept with its run's constants (:class:`fastmix.mixing.PlanCache`), so a call with the
    labels and step of a recent one plans nothing and copies nothing to the device but the
    work. On a GPU the batch is one window: one launch of the gather (two more for the seam
    blur), queued on the caller's stream without waiting for it.
    """
    if not hasattr(images, "permute") or not hasattr(images, "is_cuda"):
        raise BadInputTypeError(
            f"images must be a torch.Tensor (N, C, H, W), got {type(images).__name__}; for "
            "NumPy or CuPy arrays (N, H, W, C) use fastmix.mix_array")
    step = check_integer(step, "step (the batch index)", maximum=MAX_WINDOW_INDEX)
    strict = check_flag(strict, "strict")
    if images.dim() not in (3, 4):
        raise BadInputError(f"images must have shape (N, C, H, W) or (N, H, W), got "
                            f"{tuple(images.shape)}")
    if backend is None:
        backend = "cuda" if images.is_cuda else "cpu"
    if hasattr(labels, "is_cuda") and labels.is_cuda:
        labels = labels.cpu()
    if hasattr(labels, "numpy"):
        labels = labels.numpy()
    channels_first = images.dim() == 4
    pixels = images.permute(0, 2, 3, 1) if channels_first else images
    pixels = pixels.contiguous()  # no copy for a channels_last batch
    mixed: Any  # a torch.Tensor: mix_array returns a CUDA array as the library it came from
    if images.is_cuda:
        mixed = mix_cached(pixels, labels, spec, key, _BATCHES, backend=backend,
                           stream=stream, strict=strict, first_window=step)
    else:
        import torch  # the caller's own library, already imported

        mixed = torch.from_numpy(mix_cached(pixels.numpy(), labels, spec, key, _BATCHES,
                                            backend=backend, strict=strict,
                                            first_window=step))
    return mixed.permute(0, 3, 1, 2) if channels_first else mixed


# --- A training recipe (issue 22): test-time matching and per-epoch re-mixing ----------------

#: Window indices between the views of :class:`MatchHardening`: view ``v`` of the image at
#: position ``i`` is hardened as window ``v * VIEW_STRIDE + i`` (``2**40`` images a view).
VIEW_STRIDE = 2**40
#: Most views :class:`MatchHardening` draws per image (window indices stop at ``2**64 - 1``).
MAX_VIEWS = 2**23
_MATCH_DOMAIN = b"fastmix/test-time-matching/v1\x00"


def _spec_of(source: object, images: str) -> MixSpec:
    """Return the spec to match: given, a record's, or read from a store's record."""
    import os

    from fastmix.store.hdf5.record import MixRecord, read_mix_record

    if isinstance(source, MixSpec):
        return source
    if isinstance(source, MixRecord):
        return source.spec
    if isinstance(source, str | os.PathLike):
        from fastmix.store.hdf5.access import open_store

        path = os.fspath(source)
        with open_store(path, images=images, labels=None) as store:
            record = read_mix_record(store.images)
        if record is None:
            raise BadInputError(
                f"{path!r} carries no fastmix record on its images {images!r}: it was not mixed "
                "by fastmix, so there is no hardening to match; build the matching from the "
                "spec that mixed it, MatchHardening(MixSpec.preset('balanced'))")
        return record.spec
    raise BadInputTypeError(
        "MatchHardening takes a MixSpec, a MixRecord (fastmix.store.read_mix_record) or the path "
        f"of a mixed store, got {type(source).__name__}")


def _key_of(key: Key | None, seed: object) -> Key:
    import hashlib

    if key is not None and seed is not None:
        raise BadInputError("give key= or seed= to MatchHardening, not both")
    if key is not None:
        if not isinstance(key, Key):
            raise BadInputTypeError(f"key must be a fastmix.Key, got {type(key).__name__}")
        return key
    if seed is None:
        return Key.generate()
    seed = check_integer(seed, "seed", wording="an integer >= 0")
    return Key(hashlib.sha256(_MATCH_DOMAIN + str(seed).encode()).digest())


def _check_tensor(images: object, what: str) -> None:
    if not hasattr(images, "permute") or not hasattr(images, "is_cuda"):
        raise BadInputTypeError(
            f"{what} must be a torch.Tensor (N, C, H, W), got {type(images).__name__}")
    if images.dim() not in (3, 4):  # type: ignore[attr-defined]  # a torch.Tensor
        raise BadInputError(f"{what} must have shape (N, C, H, W) or (N, H, W), got "
                            f"{tuple(images.shape)}")  # type: ignore[attr-defined]


class MatchHardening:
    """Test-time matching: a mixed store's hardening applied to each inference image alone.

    A network trained on a hardened store (``orient``, ``jitter``, ``seam_blur``: the
    ``balanced`` and ``strong`` presets) learns the hardening's cues: rotated and mirrored
    blocks, tone steps, blurred seams. Untouched test images lack them. Matching gives each
    test image the same kind of hardening, with no block moved between images: every image is
    its own window (``mix_array(..., window=1)``), so it has no partner and only its own
    blocks are oriented, jittered and blurred. ``view`` draws another hardening of the same
    image; :func:`predict_matched` averages a model's softmax over several.

    Parameters
    ----------
    source : MixSpec, MixRecord, str or PathLike
        The spec that mixed the training data, its store's record
        (:func:`fastmix.store.read_mix_record`), or the path of the mixed store (its record is
        read; a store without one is a :class:`BadInputError`). No key is needed: nothing is
        unmixed, and the matching draws its own hardening.
    key : Key, optional
        The key of the draws. Default: ``seed``'s, or a fresh random key when neither is given
        (draws that nobody can predict). It need not, and had better not, be the store's key.
    seed : int, optional
        A deterministic key: the same seed gives the same matched bytes.
    images : str
        The images dataset of a store ``source``.
    backend : str, optional
        ``"cuda"`` for CUDA tensors and ``"cpu"`` for CPU tensors by default.

    Notes
    -----
    View ``v`` of the image at position ``index + j`` of a call equals
    ``mix_array(image[None], [0], spec, key, first_window=v * VIEW_STRIDE + index + j)``
    on the (N, H, W, C) image, bit for bit: the result does not depend on how the images are
    batched. Float images are on the [0, 1] scale (as the kernels read them); match before
    normalising. A spec without hardening matches to the images themselves.

    >>> matching = MatchHardening("train_mixed.h5", seed=0)          # doctest: +SKIP
    >>> probabilities = predict_matched(model, test_images, matching, views=4)  # doctest: +SKIP
    """

    def __init__(self, source: object, *, key: Key | None = None, seed: int | None = None,
                 images: str = "images", backend: str | None = None) -> None:
        self.spec = _spec_of(source, images)
        self._key = _key_of(key, seed)
        self.backend = backend

    def __repr__(self) -> str:
        """Name the spec, never the key."""
        return f"MatchHardening({self.spec.canonical()})"  # never the key

    @property
    def hardened(self) -> bool:
        """Whether the spec hardens at all (otherwise matching returns the images as they are)."""
        return self.spec.hardened

    def __call__(self, images, *, view: int = 0, index: int = 0, stream: object = None):
        """Return view ``view`` of ``images`` matched; ``index`` is the first image's position.

        Parameters
        ----------
        images : torch.Tensor, shape (N, C, H, W) or (N, H, W)
            uint8 (or any integer type) or float in [0, 1], on the CPU or a CUDA device
            (matched there, with no host copy).
        view : int
            Which draw of the hardening, from 0 to ``MAX_VIEWS - 1``.
        index : int
            The position of the first image in the whole set (its later images follow), so
            that an image gets the same view whatever batch it comes in.
        stream : optional
            For CUDA tensors: the stream to queue the work on.

        Returns
        -------
        torch.Tensor
            The matched images, same shape, dtype and device as ``images``.
        """
        import warnings

        import numpy as np

        from fastmix.errors import FastmixWarning

        _check_tensor(images, "images")
        view = check_integer(view, "view", maximum=MAX_VIEWS - 1)
        index = check_integer(index, "index", maximum=VIEW_STRIDE - 1)
        if index + len(images) > VIEW_STRIDE:
            raise BadInputError(f"index {index:,} + {len(images):,} images pass the "
                                f"{VIEW_STRIDE:,} positions a view holds")
        if len(images) == 0:
            return images.clone()
        channels_first = images.dim() == 4
        pixels = images.detach()
        pixels = (pixels.permute(0, 2, 3, 1) if channels_first else pixels).contiguous()
        labels = np.zeros(len(images), dtype=np.int64)  # one per window: nothing moves
        backend = self.backend or ("cuda" if images.is_cuda else "cpu")
        with warnings.catch_warnings():
            # every image is alone in its window, on purpose: not the "unpartnered" warning
            warnings.simplefilter("ignore", FastmixWarning)
            mixed: Any
            if images.is_cuda:
                mixed = mix_array(pixels, labels, self.spec, self._key, window=1,
                                  backend=backend, stream=stream,
                                  first_window=view * VIEW_STRIDE + index)
            else:
                import torch  # the caller's own library, already imported

                mixed = torch.from_numpy(mix_array(
                    pixels.numpy(), labels, self.spec, self._key, window=1, backend=backend,
                    first_window=view * VIEW_STRIDE + index))
        mixed = mixed.permute(0, 3, 1, 2) if channels_first else mixed
        return mixed.contiguous(memory_format=_memory_format(images))


def _memory_format(images):
    import torch

    if images.dim() == 4 and images.is_contiguous(memory_format=torch.channels_last) and \
            not images.is_contiguous():
        return torch.channels_last
    return torch.contiguous_format


def predict_matched(model, images, matching: MatchHardening, *, views: int = 4,
                    batch_size: int = 256, prepare=None):
    """Average a model's softmax over ``views`` matched views of each image.

    Parameters
    ----------
    model : torch.nn.Module
        Called on prepared batches, under ``torch.no_grad()``; put it in ``eval()`` mode and
        on the images' device first.
    images : torch.Tensor, shape (N, C, H, W) or (N, H, W)
        The inference images, as :meth:`MatchHardening.__call__` takes them (uint8, or float
        in [0, 1]).
    matching : MatchHardening
        The hardening to match.
    views : int
        Views per image (at least 1). A spec without hardening has one view (the image).
    batch_size : int
        Images per forward pass (each pass holds one view of them).
    prepare : callable, optional
        Turns a matched batch into the model's input (dtype, normalisation). Default: uint8
        becomes float32 in [0, 1]; float is kept.

    Returns
    -------
    torch.Tensor, shape (N, classes)
        The mean over the views of ``softmax(model(prepare(view)))``, float32. The same key
        (or seed), images and model give the same result whatever ``batch_size``, up to the
        model's own floating-point differences between batch sizes.
    """
    import torch

    if not isinstance(matching, MatchHardening):
        raise BadInputTypeError(f"matching must be a fastmix.torch.MatchHardening, got "
                                f"{type(matching).__name__}")
    _check_tensor(images, "images")
    views = check_integer(views, "views", minimum=1, maximum=MAX_VIEWS,
                          wording="an integer from 1")
    batch_size = check_integer(batch_size, "batch_size", minimum=1,
                               wording="an integer from 1")
    if prepare is None:
        def prepare(batch):
            return batch if batch.is_floating_point() else batch.float() / 255.0
    elif not callable(prepare):
        raise BadInputTypeError(f"prepare must be callable, got {type(prepare).__name__}")
    if not matching.hardened:
        views = 1
    parts = []
    with torch.no_grad():
        for first in range(0, len(images), batch_size):
            chunk = images[first:first + batch_size]
            total = None
            for view in range(views):
                batch = matching(chunk, view=view, index=first) if matching.hardened else chunk
                probabilities = torch.softmax(model(prepare(batch)).float(), dim=1)
                total = probabilities if total is None else total + probabilities
            assert total is not None  # views >= 1
            parts.append(total / views)
    if not parts:
        raise BadInputError("images is empty: nothing to predict")
    return torch.cat(parts)


class LabelGroupedBatches:
    """A batch sampler whose batches hold several images of each of their labels.

    :func:`mix_batch` moves blocks only between images of one label within a batch; under a
    plain random order a batch of 32 among 10 labels holds about 3 of each, often 1. This
    sampler deals each label's images, shuffled, into runs of ``per_label`` (a last run of one
    joins the run before), shuffles the runs, and puts ``batch_size // per_label`` runs in
    each batch. Pass it to ``DataLoader(dataset, batch_sampler=...)`` and call
    :meth:`set_epoch` before each epoch (it is iterated in the calling process, also with
    worker processes).

    Parameters
    ----------
    labels : array-like, shape (N,)
        The dataset's labels, one per index.
    batch_size : int
        Images per batch (about: runs are whole).
    per_label : int
        Images of a label dealt together, at least 2.
    seed : int
        With the epoch, seeds the order (a local generator): the same seed, epoch and labels
        give the same batches.
    drop_last : bool
        Leave out the last batch when it holds fewer runs than the others.
    """

    def __init__(self, labels, batch_size: int, per_label: int = 4, *, seed: int = 0,
                 drop_last: bool = False) -> None:
        import numpy as np

        from fastmix.plan.labels import validate_labels

        if hasattr(labels, "is_cuda"):
            labels = labels.cpu().numpy()
        self.labels = validate_labels(labels, len(labels))
        self.batch_size = check_integer(batch_size, "batch_size", minimum=1,
                                        wording="an integer from 1")
        self.per_label = check_integer(per_label, "per_label", minimum=2,
                                       wording="an integer from 2")
        self.seed = check_integer(seed, "seed", wording="an integer >= 0")
        self.drop_last = check_flag(drop_last, "drop_last")
        self.epoch = 0
        self._members = [np.flatnonzero(self.labels == label)
                         for label in np.unique(self.labels)]
        self._runs = sum(self._run_count(len(members)) for members in self._members)
        self.runs_per_batch = max(1, self.batch_size // self.per_label)

    def _run_count(self, count: int) -> int:
        runs = -(-count // self.per_label)
        return runs - 1 if runs > 1 and count % self.per_label == 1 else runs

    def set_epoch(self, epoch: int) -> None:
        """Draw the next iteration's batches for ``epoch``."""
        self.epoch = check_integer(epoch, "epoch", wording="an integer >= 0")

    def batches(self, epoch: int) -> list[list[int]]:
        """Return the batches of ``epoch``: lists of dataset indices."""
        import numpy as np

        epoch = check_integer(epoch, "epoch", wording="an integer >= 0")
        rng = np.random.default_rng([self.seed, epoch])
        runs = []
        for members in self._members:
            shuffled = rng.permutation(members)
            count = self._run_count(len(shuffled))
            cuts = [run * self.per_label for run in range(1, count)]
            runs += np.split(shuffled, cuts)  # the last run takes a remainder of one
        order = rng.permutation(len(runs))
        batches = [np.concatenate([runs[run] for run in order[first:first + self.runs_per_batch]])
                   for first in range(0, len(runs), self.runs_per_batch)]
        if self.drop_last and len(runs) % self.runs_per_batch:
            batches.pop()
        return [[int(index) for index in batch] for batch in batches]

    def __iter__(self):
        """Iterate over the batches of the epoch set last (0 at first)."""
        return iter(self.batches(self.epoch))

    def __len__(self) -> int:
        """Return the number of batches per epoch (the same every epoch)."""
        full, partial = divmod(self._runs, self.runs_per_batch)
        return full + (1 if partial and not self.drop_last else 0)


class RemixEachEpoch:
    """Mix every training batch afresh, keyed by its epoch and step: per-epoch re-mixing.

    A store mixed once shows a network one mixture of each image for all its epochs; mixing
    each batch as it is drawn (from the originals, or from a mixed store again) shows it a new
    one every epoch. Batch ``step`` of epoch ``epoch`` is
    ``mix_batch(images, labels, spec, key, epoch * steps_per_epoch + step)``: the same key,
    spec, batch, epoch and step give the same bytes, on any backend. Batches should hold
    several images of each label (:class:`LabelGroupedBatches`), or few blocks move.

    Parameters
    ----------
    spec : MixSpec or None
        The mixing (``None``: ``MixSpec()``); a batch is one window.
    key : Key
        The secret key.
    steps_per_epoch : int
        Batches per epoch (``len(loader)``), so that no two steps share a key.
    backend : str, optional
        As for :func:`mix_batch`.

    >>> sampler = LabelGroupedBatches(dataset.labels, 64, per_label=8, seed=0)  # doctest: +SKIP
    >>> loader = DataLoader(dataset, batch_sampler=sampler, num_workers=2)     # doctest: +SKIP
    >>> remix = RemixEachEpoch(spec, key, len(loader))                           # doctest: +SKIP
    >>> for epoch in range(epochs):                                              # doctest: +SKIP
    ...     sampler.set_epoch(epoch)
    ...     for step, (images, labels) in enumerate(loader):
    ...         images = remix(images.cuda(), labels, epoch, step)
    """

    def __init__(self, spec: MixSpec | None, key: Key, steps_per_epoch: int, *,
                 backend: str | None = None) -> None:
        if spec is not None and not isinstance(spec, MixSpec):
            raise BadInputTypeError(f"spec must be a fastmix.MixSpec, got {type(spec).__name__}")
        if not isinstance(key, Key):
            raise BadInputTypeError(f"key must be a fastmix.Key, got {type(key).__name__}")
        self.spec = spec
        self._key = key
        self.steps_per_epoch = check_integer(steps_per_epoch, "steps_per_epoch", minimum=1,
                                             wording="an integer from 1")
        self.backend = backend

    def __repr__(self) -> str:
        """Name the spec, never the key."""
        spec = (self.spec or MixSpec()).canonical()
        return f"RemixEachEpoch({spec}, steps_per_epoch={self.steps_per_epoch})"  # no key

    def step_index(self, epoch: int, step: int) -> int:
        """Return the step that keys batch ``step`` of epoch ``epoch``."""
        epoch = check_integer(epoch, "epoch", wording="an integer >= 0")
        step = check_integer(step, "step", maximum=self.steps_per_epoch - 1,
                             wording=f"an integer from 0 to {self.steps_per_epoch - 1} "
                                     "(steps_per_epoch - 1)")
        index = epoch * self.steps_per_epoch + step
        if index > MAX_WINDOW_INDEX:
            raise BadInputError(f"epoch {epoch:,} is past the last step index {MAX_WINDOW_INDEX:,}")
        return index

    def __call__(self, images, labels, epoch: int, step: int, *, stream: object = None,
                 strict: bool = False):
        """Return the batch mixed for (``epoch``, ``step``), as :func:`mix_batch` returns it."""
        return mix_batch(images, labels, self.spec, self._key, self.step_index(epoch, step),
                         backend=self.backend, stream=stream, strict=strict)
