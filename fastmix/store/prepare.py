"""What both store engines check and size before a run, with the messages they give.

The new-file engine (:mod:`fastmix.store.newfile`) and the in-place engine
(:mod:`fastmix.store.inplace`) import this module; :func:`fastmix.store.engine.mix_store`
and :func:`~fastmix.store.engine.unmix_store` sit above both. Keeping the checks here means
that both modes refuse the same inputs with the same words, and cut the same windows from
the same memory budget.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

import numpy as np

from fastmix.errors import (
    BadInputError,
    BadInputTypeError,
    FastmixWarning,
    check_flag,
    check_integer,
    check_path,
)
from fastmix.kernels.steps import native_values, steps_for
from fastmix.keys import Key
from fastmix.plan import Plan, images_in_pairs, pairs_warning
from fastmix.plan.window_rule import unpartnered_message, unpartnered_refusal
from fastmix.spec import MixSpec, parse_memory
from fastmix.store.hdf5.access import refuse_interrupted
from fastmix.store.hdf5.chunkio import PIECE_BYTES, piece_length
from fastmix.store.hdf5.chunks import chunk_bytes
from fastmix.store.hdf5.codecs import pipeline_for
from fastmix.store.hdf5.record import already_mixed_message, check_key_and_record, read_mix_record
from fastmix.store.stream import STREAM_BUFFERS, ring_slots
from fastmix.store.window_sizing import plan_windows

# -- arguments ------------------------------------------------------------------------------


def check_key(key: object) -> Key:
    """``key`` itself when it is a :class:`~fastmix.keys.Key`; a one-line error otherwise."""
    if not isinstance(key, Key):
        raise BadInputTypeError(
            f"key must be a fastmix.Key (Key.generate() or Key.load(path)), got "
            f"{type(key).__name__}"
        )
    return key


def check_spec(spec: object) -> MixSpec | None:
    """``spec`` itself when it is a :class:`~fastmix.spec.MixSpec` or ``None``."""
    if spec is not None and not isinstance(spec, MixSpec):
        raise BadInputTypeError(f"spec must be a fastmix.MixSpec, got {type(spec).__name__}")
    return spec


#: Codec threads a run may be given at most.
MAX_THREADS = 4096


def check_run_arguments(*, src: object, dst: object, images: object, labels: object = "labels",
                        window: object = None, threads: object = None,
                        **flags: object) -> None:
    """Refuse arguments of the wrong type or out of range, before any file is opened.

    The arguments of :func:`~fastmix.store.engine.mix_store` and
    :func:`~fastmix.store.engine.unmix_store`; ``flags`` are the keyword arguments that
    must be ``True`` or ``False``.
    """
    check_path(src, "src")
    if dst is not None:
        check_path(dst, "dst")
    for name, value in (("images", images), ("labels", labels)):
        if not isinstance(value, str) or not value:
            raise BadInputTypeError(f"{name} must be the name of a dataset in the store (a "
                                    f"non-empty str), got {value!r}")
    if window is not None:
        check_integer(window, "window", minimum=1)
    if threads is not None:
        check_integer(threads, "threads", minimum=1, maximum=MAX_THREADS)
    for name, value in flags.items():
        check_flag(value, name)


# -- the store's state ----------------------------------------------------------------------


def require_not_interrupted(dataset, path: str) -> None:
    """Refuse a store that an interrupted in-place run left half rewritten.

    The same refusal as every reader's (:func:`fastmix.store.hdf5.access.refuse_interrupted`),
    for a store opened with ``interrupted=True`` or for writing.

    Raises
    ------
    BadInputError
        Naming ``--in-place --resume``, which finishes the interrupted run.
    """
    refuse_interrupted(dataset, path)


def require_unmixed(dataset, path: str, force: bool) -> None:
    """Refuse to mix a store that already carries a fastmix record, unless ``force``."""
    record = read_mix_record(dataset)
    if record is not None and not force:
        raise BadInputError(already_mixed_message(path, record))


def require_unmixable(dataset, path: str, key: Key, *, trust_unsealed: bool = False):
    """Return the dataset's :class:`~fastmix.store.hdf5.record.MixRecord`, checked for unmixing.

    Raises
    ------
    BadInputError
        For an unmixed, paper-mode or one-way hardened store, and before anything is
        written, for a record whose MAC does not verify under ``key`` (the record was
        edited or the labels changed since mixing, see
        :func:`~fastmix.store.hdf5.record.check_record_mac`). A record without a MAC (an older
        fastmix) is refused unless ``trust_unsealed``, then accepted with a
        :class:`~fastmix.errors.FastmixWarning`.
    WrongKeyError
        For the wrong key.
    """
    record = read_mix_record(dataset)
    if record is None:
        raise BadInputError(
            f"store {path!r} carries no fastmix record on {dataset.name!r}: it was not mixed by "
            "fastmix, so there is nothing to unmix"
        )
    if record.spec.mode != "permute":
        raise BadInputError(
            f"store {path!r} was mixed in {record.spec.mode!r} mode, which is not reversible; "
            "only permute-mode stores can be unmixed"
        )
    if not record.reversible or not record.spec.reversible:
        raise BadInputError(
            f"store {path!r} was mixed with one-way hardening (jitter or seam blur), which is "
            "not reversible; it cannot be unmixed"
        )
    check_key_and_record(dataset, path, key, record.key_check, trust_unsealed=trust_unsealed,
                         stacklevel=3)
    return record


# -- labels in windows ----------------------------------------------------------------------


def count_unpartnered(labels: np.ndarray, windows: Iterable[tuple[int, int]]) -> int:
    """Images whose label occurs only once in their window (they pass through unmixed)."""
    total = 0
    for start, stop in windows:
        _, counts = np.unique(labels[start:stop], return_counts=True)
        total += int(np.count_nonzero(counts == 1))
    return total


def count_paired(labels: np.ndarray, windows: Iterable[tuple[int, int]], spec: MixSpec) -> int:
    """Images that permute mode puts in groups of two (see ``images_in_pairs``)."""
    return sum(images_in_pairs(np.unique(labels[start:stop], return_counts=True)[1], spec)
               for start, stop in windows)


def require_partners(unpartnered: int, strict: bool) -> None:
    """With ``strict``, refuse (before anything is written) images left without a partner."""
    if unpartnered and strict:
        raise BadInputError(unpartnered_refusal(unpartnered, " (--window/--memory)"))


def require_no_pairs(paired: int, strict: bool) -> None:
    """With ``strict``, refuse (before anything is written) images in permute groups of two."""
    if paired and strict:
        raise BadInputError(pairs_warning(paired) + " (strict refuses them)")


def warn_after_mix(unpartnered: int, paired: int, stacklevel: int) -> None:
    """Warn about images left unmixed and images in permute groups of two."""
    if unpartnered:
        warnings.warn(unpartnered_message(unpartnered), FastmixWarning,
                      stacklevel=stacklevel + 1)
    if paired:
        warnings.warn(pairs_warning(paired), FastmixWarning, stacklevel=stacklevel + 1)


# -- memory ---------------------------------------------------------------------------------


def piece_images(store, memory: int | str, threads: int) -> int:
    """Images per output piece: about 2 MiB, less when the ring would crowd the budget.

    Parameters
    ----------
    store : Store
        The open store (:func:`~fastmix.store.hdf5.access.open_store`).
    memory : int or str
        The memory budget.
    threads : int
        Codec threads (the ring holds ``threads + 2`` pieces).

    Returns
    -------
    int
        Whole chunks' worth of images.
    """
    target = min(PIECE_BYTES, parse_memory(memory) // (8 * ring_slots(threads)))
    return piece_length(store.images, target)


def streaming_staging_bytes(store, threads: int, raw: bool, piece: int) -> int:
    """Memory of the streaming loop besides its window buffers: the output ring and I/O.

    Parameters
    ----------
    store : Store
        The open store.
    threads : int
        Codec threads.
    raw : bool
        Whether the raw-chunk I/O path is used.
    piece : int
        Images per output piece (:func:`piece_images`).

    Returns
    -------
    int
        Bytes, to pass to :func:`~fastmix.store.window_sizing.plan_windows` as ``staging_bytes``.
    """
    ring = ring_slots(threads) * piece * store.image_bytes
    pipeline = pipeline_for(store.images) if raw else None
    if pipeline is not None and pipeline.filters:
        ring *= 2  # each piece's encoded chunks wait beside it until they are written
    return ring + chunk_io_staging_bytes(store, threads, raw)


def chunk_io_staging_bytes(store, threads: int, raw: bool) -> int:
    """Memory the chunk I/O needs besides the window buffers (codec buffers), in bytes."""
    size = chunk_bytes(store.images)
    pipeline = pipeline_for(store.images) if raw else None
    if pipeline is not None and pipeline.filters:
        # Reading: each codec thread holds a stored and a decoded chunk. Writing: encodes in
        # flight (threads + 1) plus the codec's temporary copy of each.
        return (2 * threads + 2 * (threads + 1) + 1) * size
    if pipeline is not None:
        return size  # the padded copy of a partial last chunk
    return 2 * size + (1 << 20)  # HDF5's chunk cache and filter buffer


def mix_windows(store, spec: MixSpec, memory: int | str, window: int | None, *,
                threads: int, raw: bool, piece: int) -> list[tuple[int, int]]:
    """Return the windows a mix cuts from ``memory``: the same for new-file and in-place mode.

    Parameters
    ----------
    store : Store
        The open store.
    spec : MixSpec
        The mixing parameters (they set the blocks per image).
    memory : int or str
        The memory budget; sets the window length unless ``window`` is given.
    window : int, optional
        An explicit window length (chunk-aligned).
    threads, raw, piece
        As for :func:`streaming_staging_bytes`.

    Returns
    -------
    list of (int, int)
    """
    images = store.images
    if store.count == 0:
        raise BadInputError(
            f"store {store.path!r} holds no images (images dataset {images.name!r} has shape "
            f"{images.shape}); there is nothing to mix: give a store with images"
        )
    steps = steps_for(tuple(images.shape[1:]), images.dtype, spec)
    # a window of another byte order is converted into one more buffer
    converted = native_values(images.dtype, spec) is not None
    return plan_windows(images, memory, window, block_count=steps.layout.block_count,
                        staging_bytes=streaming_staging_bytes(store, threads, raw, piece),
                        buffers=STREAM_BUFFERS + converted,
                        plan_bytes_per_block=2 * Plan.bytes_per_block(spec))
