"""Window planning: consecutive, chunk-aligned ranges of images sized from a memory budget."""

from __future__ import annotations

import numpy as np

from fastmix.errors import BadInputError, check_integer
from fastmix.plan.window_rule import fixed_windows
from fastmix.spec import format_bytes, parse_memory
from fastmix.store.hdf5.chunks import chunk_bytes, chunk_length

#: Window-sized buffers alive at once: the window being mixed and the next one being read
#: ahead, the window being mixed into and the previous one being written.
WINDOW_BUFFERS = 4

#: Bytes per image outside the pixel buffers: the source maps and inverses of two windows
#: (the one being mixed and the one planned ahead, int32 per block), order and labels.
PLAN_BYTES_PER_BLOCK = 16
PLAN_BYTES_PER_IMAGE = 64


def window_length_for(dataset, memory: int | str, *, block_count: int = 64,
                      staging_bytes: int = 0, buffers: int = WINDOW_BUFFERS,
                      plan_bytes_per_block: int = PLAN_BYTES_PER_BLOCK) -> int:
    """Return the longest chunk-aligned window whose buffers fit in ``memory``.

    Parameters
    ----------
    dataset : h5py.Dataset
        The images dataset.
    memory : int or str
        The budget (``"1GiB"``).
    block_count : int
        Blocks per image (sizes the source map).
    staging_bytes : int
        Memory the I/O needs besides the window buffers (per-thread chunk buffers).
    buffers : int
        Window-sized pixel buffers alive at once.
    plan_bytes_per_block : int
        Plan bytes per image and block of the windows alive at once (hardening draws
        included).

    Raises
    ------
    BadInputError
        When not even one chunk fits; the message names the fix.
    """
    budget = parse_memory(memory)
    count = int(dataset.shape[0])
    image_bytes = int(np.prod(dataset.shape[1:], dtype=np.int64)) * dataset.dtype.itemsize
    per_image = buffers * image_bytes + plan_bytes_per_block * block_count + PLAN_BYTES_PER_IMAGE
    step = chunk_length(dataset)
    fitting = (budget - staging_bytes) // per_image if budget > staging_bytes else 0
    length = fitting // step * step
    if length < 1:
        needed = staging_bytes + per_image * step
        if dataset.chunks is None:
            raise BadInputError(
                f"memory {format_bytes(budget)} cannot hold even one image "
                f"({format_bytes(image_bytes)}, {buffers} buffers); raise --memory to at "
                f"least {format_bytes(needed)}"
            )
        staging_per_image = staging_bytes / max(chunk_bytes(dataset), 1) * image_bytes
        smaller = int(budget // (per_image + staging_per_image))
        if smaller < 1:
            raise BadInputError(
                f"one image with its buffers ({format_bytes(needed / step)}) does not fit in "
                f"memory {format_bytes(budget)}; raise --memory to at least "
                f"{format_bytes(needed)}"
            )
        layout = "x".join(str(size) for size in (smaller, *dataset.shape[1:]))
        raise BadInputError(
            f"one chunk of the images dataset ({step} images, "
            f"{format_bytes(chunk_bytes(dataset))}) does not fit in memory "
            f"{format_bytes(budget)}: it needs {format_bytes(needed)} with its buffers. Raise "
            f"--memory to at least {format_bytes(needed)}, or rechunk the store with fewer "
            f"images per chunk (for example: h5repack -l {dataset.name.lstrip('/')}:CHUNK="
            f"{layout} IN OUT)"
        )
    return max(1, min(length, count))


def check_window(dataset, window: object) -> int:
    """Validate an explicit window length: positive and a multiple of the chunk length."""
    window = check_integer(window, "window", minimum=1, wording="a positive number of images")
    step = chunk_length(dataset)
    count = int(dataset.shape[0])
    if window % step and window < count:
        suggestion = max(step, window // step * step)
        raise BadInputError(
            f"window {window} does not fall on chunk boundaries: the images dataset is chunked "
            f"by {step} images; use a multiple of {step} (for example {suggestion})"
        )
    return window


def plan_windows(dataset, memory: int | str = "1GiB", window: int | None = None, *,
                 block_count: int = 64, staging_bytes: int = 0,
                 buffers: int = WINDOW_BUFFERS, aligned: bool = True,
                 plan_bytes_per_block: int = PLAN_BYTES_PER_BLOCK) -> list[tuple[int, int]]:
    """Split the dataset's images into windows ``[(start, stop), ...]``.

    Parameters
    ----------
    dataset : h5py.Dataset
        The images dataset.
    memory : int or str
        Memory budget; sets the window length when ``window`` is not given.
    window : int, optional
        Fixed window length (a multiple of the chunk length when ``aligned``).
    block_count, staging_bytes, buffers, plan_bytes_per_block
        See :func:`window_length_for`.
    aligned : bool
        Require an explicit ``window`` to fall on chunk boundaries (unmix of a store that was
        rechunked after mixing passes ``False``).

    Returns
    -------
    list of (int, int)
        Half-open ranges covering ``0..N`` in order.
    """
    if window is None:
        length = window_length_for(dataset, memory, block_count=block_count,
                                   staging_bytes=staging_bytes, buffers=buffers,
                                   plan_bytes_per_block=plan_bytes_per_block)
    elif aligned:
        length = check_window(dataset, window)
    else:
        length = max(1, int(window))
        _require_window_fits(dataset, length, memory, buffers)
    return fixed_windows(int(dataset.shape[0]), length)


def _require_window_fits(dataset, length: int, memory: int | str, buffers: int) -> None:
    """Refuse a recorded window whose buffers exceed the memory budget.

    The window an unmix uses comes from the store's record, which is untrusted input:
    its buffers are checked against the budget before anything is allocated.
    """
    budget = parse_memory(memory)
    image_bytes = int(np.prod(dataset.shape[1:], dtype=np.int64)) * dataset.dtype.itemsize
    needed = min(length, max(int(dataset.shape[0]), 1)) * image_bytes * buffers
    if needed > budget:
        raise BadInputError(
            f"the store records windows of {length} images, whose buffers need "
            f"{format_bytes(needed)}, more than memory {format_bytes(budget)}; raise --memory "
            f"to at least {format_bytes(needed)}"
        )
