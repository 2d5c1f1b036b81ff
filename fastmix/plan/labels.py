"""Validation of labels and their encoding as small integer codes.

Labels are never coerced: a label that does not convert exactly to an integer (a NaN, an
infinity, a fraction, a float beyond int64) or a mix of text and numbers (``[1, "1"]``) is
refused, since coercing it would silently merge or move classes.
"""

from __future__ import annotations

import numbers

import numpy as np

from fastmix.errors import BadInputError, BadInputTypeError

#: Floats in [-2**63, 2**63) that are whole numbers convert to int64 exactly.
_INT64_LIMIT = float(2**63)


def validate_labels(labels: object, count: int) -> np.ndarray:
    """Return ``labels`` as a 1-D array of integers, strings or bytes.

    Float labels are accepted when every one is a whole number within int64 (they become
    int64); a Python sequence or an object array must hold text only or numbers only.

    Raises
    ------
    BadInputError
        For a length mismatch, or a label that does not convert exactly: NaN, infinity, a
        fraction, a number beyond 64 bits, None, or text mixed with numbers.
    BadInputTypeError
        For labels of another type (complex numbers, dates, other objects).
    """
    # np.asarray([1, "1"]) would make both "1": a sequence is judged item by item
    array = np.asarray(labels, dtype=object) if isinstance(labels, list | tuple) \
        else np.asarray(labels)
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
        return _float_labels(array)
    if kind == "O":
        return _object_labels(array)
    if kind not in "biuUS":
        raise BadInputTypeError(
            f"labels must be integers or strings, got dtype {array.dtype}"
        )
    return array


def _float_labels(array: np.ndarray, offset: int = 0) -> np.ndarray:
    """Float labels as int64, refused unless every one converts exactly.

    ``offset`` is the index of ``array[0]`` among all the labels (for the message).
    """
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise BadInputError(
            f"labels contain {bad.size} NaN or infinite values (first at index {offset + bad[0]}: "
            f"{array[bad[0]]}); give every image a label"
        )
    bad = np.flatnonzero(array != np.round(array))
    if bad.size:
        raise BadInputError(
            f"labels are floats with fractions ({bad.size} of them, first {array[bad[0]]} at "
            f"index {offset + bad[0]}); labels must be integers or strings"
        )
    bad = np.flatnonzero((array < -_INT64_LIMIT) | (array >= _INT64_LIMIT))
    if bad.size:
        raise BadInputError(
            f"labels are floats beyond the int64 range ({bad.size} of them, first "
            f"{array[bad[0]]} at index {offset + bad[0]}), which do not convert to integers "
            "exactly; store the labels as integers or strings"
        )
    return array.astype(np.int64)


def _object_labels(array: np.ndarray) -> np.ndarray:
    """Labels held as Python objects: all text, all bytes, or all exact integers."""
    values = array.tolist()
    kinds = set()
    for index, item in enumerate(values):
        if isinstance(item, str | bytes):
            kinds.add(type(item).__name__)
        elif isinstance(item, numbers.Integral):
            kinds.add("integer")
        elif isinstance(item, numbers.Real) and item == item:
            _float_labels(np.asarray([item], dtype=np.float64), index)
            kinds.add("float")
        elif item is None or isinstance(item, numbers.Real):
            raise BadInputError(f"labels contain None or NaN ({item} at index {index}); give "
                                "every image a label")
        else:
            raise BadInputTypeError(f"labels must be integers or strings, found "
                                    f"{type(item).__name__} {_short(item)} at index {index}")
        if len(kinds) > 1 and kinds & {"str", "bytes"}:
            raise BadInputError(
                f"labels mix {' and '.join(sorted(kinds))} (at index {index}: {_short(item)}), "
                "which could merge classes (1 and '1' read alike); give labels of one type: all "
                "integers or all strings"
            )
    if not values or kinds == {"str"}:
        return array.astype(str)
    if kinds == {"bytes"}:
        return np.asarray(values, dtype=bytes)
    return _integers([int(value) for value in values])


def _integers(values: list[int]) -> np.ndarray:
    """Integers as int64 (or uint64 when none is negative); refused beyond 64 bits."""
    for dtype in (np.int64, np.uint64):
        try:
            return np.asarray(values, dtype=dtype)
        except OverflowError:
            continue
    largest = max(values, key=abs)
    raise BadInputError(
        f"labels hold integers beyond 64 bits (such as {_short(largest)}); give labels that "
        "fit in int64, or strings"
    )


def _short(item: object) -> str:
    text = repr(item)
    return text if len(text) <= 40 else text[:37] + "..."


def encode_labels(labels: np.ndarray) -> np.ndarray:
    """Codes ``0..L-1`` in sorted label order, as int64 (one window's labels)."""
    _, codes = np.unique(labels, return_inverse=True)
    return codes.astype(np.int64).reshape(-1)
