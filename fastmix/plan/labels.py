"""Validation of labels and their encoding as small integer codes."""

from __future__ import annotations

import numpy as np

from fastmix.errors import BadInputError, BadInputTypeError


def validate_labels(labels: object, count: int) -> np.ndarray:
    """Return ``labels`` as a 1-D array of integers, strings or bytes.

    Raises :class:`BadInputError` for a length mismatch, NaN or non-integral float labels.
    """
    array = np.asarray(labels)
    if array.ndim != 1:
        raise BadInputError(
            f"labels must be 1-D with one label per image, got shape {array.shape}"
        )
    if len(array) != count:
        raise BadInputError(
            f"labels has {len(array)} entries but there are {count} images; give one label "
            "per image"
        )
    kind = array.dtype.kind
    if kind == "f":
        bad = np.flatnonzero(~np.isfinite(array))
        if bad.size:
            raise BadInputError(
                f"labels contain {bad.size} NaN or infinite values (first at index {bad[0]}); "
                "give every image a label"
            )
        if not np.all(array == np.round(array)):
            raise BadInputError(
                "labels are floats with fractions; labels must be integers or strings"
            )
        return array.astype(np.int64)
    if kind == "O":
        if any(item is None or (isinstance(item, float) and item != item) for item in array):
            raise BadInputError("labels contain None or NaN; give every image a label")
        try:
            return array.astype(str)
        except (TypeError, ValueError):
            raise BadInputTypeError("labels must be integers or strings") from None
    if kind not in "biuUS":
        raise BadInputTypeError(
            f"labels must be integers or strings, got dtype {array.dtype}"
        )
    return array


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """Codes ``0..L-1`` in sorted label order, as int64 (one window's labels)."""
    _, codes = np.unique(labels, return_inverse=True)
    return codes.astype(np.int64).reshape(-1)
