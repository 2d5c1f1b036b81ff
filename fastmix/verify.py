"""Check that a mixed store keeps the invariants of its mode, window by window.

The modes and their invariants: docs/format.md section 2.

Without the key, the checks are what anyone holding both stores can confirm:

permute
    In every window, for every label and block position, the mixed store holds exactly the
    original's blocks (the same multiset), only moved between images.
paper
    Every block of the mixed store equals the block at the same position of some image of
    the same label in the same window of the original.

With the key, the mixed store's record must verify under it (its MAC,
:mod:`fastmix.store.hdf5.record`: an edited record or changed labels are refused), and the
mixed store must be exactly what the key produces: unmixing it restores the original bit for
bit (reversible specs), or mixing the original reproduces it (paper mode, one-way
hardening). Hardening (orientation, jitter, seam blur) changes the
pixels of the blocks, so a hardened store is checked through the key only.

Blocks are compared through 64-bit hashes of their bytes (one parallel pass over each
window), so memory stays at a few window buffers whatever the store size.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numba import njit, prange

from fastmix.errors import BadInputError, BadInputTypeError, WrongKeyError
from fastmix.kernels import bodies
from fastmix.keys import Key
from fastmix.mixing import layout_for, mix_window
from fastmix.plan.window_rule import fixed_windows

_GOLDEN = bodies.GOLDEN
#: An odd multiplier other than the golden ratio, so that block positions and labels salt
#: the hashes differently.
_POSITION_MULTIPLIER = np.uint64(0x94D049BB133111EB)


@dataclass(frozen=True)
class VerifyResult:
    """The outcome of :func:`verify_stores`.

    Attributes
    ----------
    ok : bool
        Whether every check passed.
    message : str
        One line: ``"verified: ..."`` or ``"verification failed: ..."``.
    mode : str
        The recorded mixing mode.
    images : int
        Images checked.
    windows : int
        Windows checked.
    key_checked : bool
        Whether the key check (exact reproduction) ran.
    """

    ok: bool
    message: str
    mode: str
    images: int
    windows: int
    key_checked: bool

    def __bool__(self) -> bool:
        """Return whether the verification passed."""
        return self.ok


class _Mismatch(Exception):
    """One invariant failed; the message says where."""


def verify_stores(original: str | os.PathLike, mixed: str | os.PathLike, key: Key | None = None,
                  *, images: str = "images", labels: str | None = None,
                  progress: bool = False, trust_unsealed: bool = False) -> VerifyResult:
    """Check that ``mixed`` is a valid mixing of ``original`` in its recorded mode.

    Parameters
    ----------
    original : str or PathLike
        The store before mixing.
    mixed : str or PathLike
        The mixed store (it carries the ``fastmix_*`` attributes).
    key : Key, optional
        The key it was mixed with: also check that the key reproduces it exactly.
    images : str
        Name of the images dataset in both stores.
    labels : str, optional
        Name of the labels dataset; default: the name recorded with the mixed store.
    progress : bool
        Show a progress bar on a terminal.
    trust_unsealed : bool
        With ``key``: accept a record without a MAC (an older fastmix), with a warning.

    Returns
    -------
    VerifyResult
        ``ok`` is False with a message naming the first failure when an invariant fails.

    Raises
    ------
    BadInputError
        A store cannot be opened or lacks its datasets, a store is half rewritten by an
        interrupted in-place run, ``mixed`` carries no fastmix record, its record does not
        verify under ``key`` (edited, or the labels changed since mixing), or
        (:class:`~fastmix.errors.WrongKeyError`) ``key`` is not the key it was mixed with.
    """
    import hdf5plugin  # noqa: F401 - registers the plugin filters the stores may use

    from fastmix.store.hdf5.access import open_store

    original, mixed = os.fspath(original), os.fspath(mixed)
    if key is not None and not isinstance(key, Key):
        raise BadInputTypeError(f"key must be a fastmix.Key, got {type(key).__name__}")
    with open_store(mixed, images=images, labels=None) as mixed_probe:
        record = _read_record(mixed_probe.images, mixed)
        if os.path.exists(original) and os.path.samefile(original, mixed):
            raise BadInputError(
                f"ORIGINAL and MIXED are the same file {mixed!r}; give the store as it was "
                "before mixing first: fastmix verify ORIGINAL MIXED"
            )
        if key is not None:
            _check_key(mixed_probe.images, record, key, mixed, trust_unsealed)
    labels = labels or record.labels or "labels"
    if key is None and record.spec.hardened:
        raise BadInputError(
            f"{mixed!r} was mixed with hardening (orientation, jitter or seam blur), which "
            "changes the pixels of the blocks, so only the key can check it; add --key-file KEY"
        )
    with open_store(original, images=images, labels=labels) as before, \
            open_store(mixed, images=images, labels=labels) as after:
        mode = record.spec.mode
        try:
            _check_alike(before, after)
            windows = _check_windows(before, after, record, key, progress)
        except _Mismatch as mismatch:
            return VerifyResult(False, f"verification failed: {mismatch}", mode, before.count,
                                0, key is not None)
    return VerifyResult(True, _success_line(before.count, windows, record.spec,
                                            key is not None),
                        mode, before.count, windows, key is not None)


def _success_line(count: int, windows: int, spec, key_checked: bool) -> str:
    if spec.hardened:
        what = "hardened blocks are checked through the key only"
    elif spec.mode == "permute":
        what = ("every original block appears exactly once, at its position, in an image of "
                "its label")
    else:
        what = ("every block comes from the same position of an image of the same label in "
                "its window")
    if not key_checked:
        keyed = ""
    elif spec.reversible:
        keyed = "; unmix with the key restores the original bit for bit"
    else:
        keyed = "; mixing the original with the key reproduces it bit for bit"
    mode = f"{spec.mode} mode" + (" with hardening" if spec.hardened else "")
    return f"verified: {count:,} images in {windows:,} window(s), {mode}: {what}{keyed}"


def _read_record(dataset, path: str):
    from fastmix.store.hdf5.record import read_mix_record

    # A store an interrupted in-place run left half rewritten is refused by open_store.
    record = read_mix_record(dataset)
    if record is None:
        raise BadInputError(
            f"{path!r} carries no fastmix record on its images: it is not a mixed store. Give "
            "the mixed store second: fastmix verify ORIGINAL MIXED"
        )
    return record


def _check_key(dataset, record, key: Key, path: str, trust_unsealed: bool) -> None:
    """Check the key's check value, then the record's MAC under the key."""
    from fastmix.store.hdf5.record import check_key_and_record

    wrong_key = WrongKeyError(
        f"wrong key for {path!r}: its check value {key.check_value} does not match the "
        f"store's {record.key_check}; use the key file the store was mixed with")
    check_key_and_record(dataset, path, key, record.key_check, wrong_key,
                         trust_unsealed=trust_unsealed, stacklevel=4)


def _check_alike(before, after) -> None:
    first, second = before.images, after.images
    if first.shape != second.shape:
        raise _Mismatch(f"the images have shape {second.shape} in the mixed store and "
                        f"{first.shape} in the original")
    if first.dtype != second.dtype:
        raise _Mismatch(f"the images have dtype {second.dtype} in the mixed store and "
                        f"{first.dtype} in the original")
    if before.labels.shape != after.labels.shape or \
            not np.array_equal(before.labels, after.labels):
        differing = np.flatnonzero(before.labels != after.labels)
        where = f" (first at image {differing[0]})" if differing.size else ""
        raise _Mismatch(f"the labels differ between the stores{where}")


def _check_windows(before, after, record, key: Key | None, progress: bool) -> int:
    from fastmix.progress import Progress
    from fastmix.store.hdf5.chunkio import WindowReader, codec_threads

    dataset_before, dataset_after = before.images, after.images
    count, image_shape = dataset_before.shape[0], dataset_before.shape[1:]
    spec = record.spec
    layout = layout_for(image_shape, dataset_before.dtype, spec)
    window = min(record.window, count) if record.window > 0 else count
    buffer_shape = (window, *image_shape)
    original = np.empty(buffer_shape, dtype=dataset_before.dtype)
    mixed = np.empty_like(original)
    expected = np.empty_like(original) if key is not None else None
    windows = 0
    with ThreadPoolExecutor(codec_threads(), thread_name_prefix="fastmix-verify") as pool, \
            Progress(count, original[0].nbytes, "verify", enabled=progress) as bar:
        readers = (WindowReader(dataset_before, pool), WindowReader(dataset_after, pool))
        try:
            for index, (start, stop) in enumerate(fixed_windows(count, window)):
                _check_window(readers[0].read(start, stop, original),
                              readers[1].read(start, stop, mixed), before.labels[start:stop],
                              index, start, spec, layout, key, expected)
                windows += 1
                bar.update(stop - start)
        finally:
            for reader in readers:
                reader.close()
    return windows


def _check_window(original: np.ndarray, mixed: np.ndarray, labels: np.ndarray, index: int,
                  start: int, spec, layout, key: Key | None, expected: np.ndarray | None) -> None:
    """Check one window: its block invariants, and with the key its exact reproduction."""
    where = f"window {index} (images {start}-{start + len(original) - 1})"
    if not spec.hardened:  # hardening changes block pixels: only the key can check them
        _check_blocks(original, mixed, labels, layout, spec.mode, start, where)
    if key is None or expected is None:  # expected comes with the key
        return
    expected = expected[:len(original)]
    if spec.reversible:
        mix_window(mixed, labels, spec, key, index, expected, inverse=True)
        _check_equal(expected, original, start,
                     "unmixing with the key does not restore the original")
    else:
        mix_window(original, labels, spec, key, index, expected)
        _check_equal(expected, mixed, start,
                     "mixing the original with the key does not reproduce it")


def _check_equal(produced: np.ndarray, stored: np.ndarray, start: int, what: str) -> None:
    produced_bytes = produced.view(np.uint8).reshape(len(produced), -1)
    stored_bytes = stored.view(np.uint8).reshape(len(stored), -1)
    differing = np.flatnonzero(np.any(produced_bytes != stored_bytes, axis=1))
    if differing.size:
        raise _Mismatch(f"{what}: {differing.size} image(s) differ, first image "
                        f"{start + differing[0]}")


def _check_blocks(original: np.ndarray, mixed: np.ndarray, labels: np.ndarray, layout,
                  mode: str, start: int, where: str) -> None:
    _, codes = np.unique(labels, return_inverse=True)
    label_salt = _mix64(codes.reshape(-1, 1).astype(np.uint64) * _GOLDEN + np.uint64(1))
    position_salt = _mix64(np.arange(layout.block_count, dtype=np.uint64) * _POSITION_MULTIPLIER
                           + _GOLDEN)
    # One key per (label, block position, block bytes): equal keys are equal blocks at the
    # same position in images of the same label.
    before = _mix64(_block_hashes(layout.view(original), layout.row_bounds, layout.col_bounds)
                    ^ label_salt ^ position_salt)
    after = _mix64(_block_hashes(layout.view(mixed), layout.row_bounds, layout.col_bounds)
                   ^ label_salt ^ position_salt)
    block_cols = len(layout.col_bounds) - 1
    sorted_before = np.sort(before, axis=None)
    sorted_after = np.sort(after, axis=None)
    if not _contained(sorted_after, sorted_before).all():
        image, position = np.argwhere(~_contained(after, sorted_before))[0]
        row, col = divmod(int(position), block_cols)
        raise _Mismatch(
            f"{where}: block (row {row}, col {col}) of image {start + int(image)} is not the "
            "block at that position of any original image with its label in its window"
        )
    if mode == "permute" and not np.array_equal(sorted_before, sorted_after):
        position = next(b for b in range(before.shape[1])
                        if not np.array_equal(np.sort(before[:, b]), np.sort(after[:, b])))
        row, col = divmod(position, block_cols)
        raise _Mismatch(
            f"{where}: at block (row {row}, col {col}) some original blocks are missing and "
            "others appear twice; permute mode moves every block exactly once"
        )


def _contained(values: np.ndarray, sorted_pool: np.ndarray) -> np.ndarray:
    """Whether each of ``values`` occurs in ``sorted_pool`` (fastest for sorted values)."""
    places = np.minimum(np.searchsorted(sorted_pool, values), sorted_pool.size - 1)
    return sorted_pool[places] == values


def _mix64(values: np.ndarray) -> np.ndarray:
    """Return the SplitMix64 finalizer, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        return bodies.mix64(values)  # the generator's body, run on arrays


_HASH_SEED = np.uint64(0xCBF29CE484222325)
_HASH_PRIME = np.uint64(0x100000001B3)
_HASH_SHIFT = np.uint64(29)


@njit(parallel=True, cache=True)
def _block_hashes(units, row_bounds, col_bounds):
    """Return a 64-bit hash of every block's pixels, shape (n, blocks).

    ``units`` is a kernel layout view (n, H, units) and the bounds are the layout's block
    edges in rows and units.
    """
    count = units.shape[0]
    block_rows = row_bounds.size - 1
    block_cols = col_bounds.size - 1
    hashes = np.empty((count, block_rows * block_cols), dtype=np.uint64)
    for image in prange(count):
        for row in range(block_rows):
            for col in range(block_cols):
                state = _HASH_SEED
                for y in range(row_bounds[row], row_bounds[row + 1]):
                    for x in range(col_bounds[col], col_bounds[col + 1]):
                        state = (state ^ np.uint64(units[image, y, x])) * _HASH_PRIME
                        state ^= state >> _HASH_SHIFT
                hashes[image, row * block_cols + col] = state
    return hashes
