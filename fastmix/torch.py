"""Training-time mixing of PyTorch batches, on the GPU where the batch already is.

PyTorch is imported by the caller, never here: a tensor's own methods do the work.

>>> for step, (images, labels) in enumerate(loader):            # doctest: +SKIP
...     images = images.cuda(non_blocking=True)
...     images = fastmix.torch.mix_batch(images, labels, spec, key, step)
...     loss = model(images.float() / 255)
"""

from __future__ import annotations

from typing import Any

from fastmix.errors import BadInputError, BadInputTypeError, check_flag, check_integer
from fastmix.keys import Key
from fastmix.mixing import MAX_WINDOW_INDEX, PlanCache, mix_cached
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
