"""The text forms of values: pairs (``96x24``), memory sizes (``1GiB``), counts and probabilities.

Each parser takes the text a user typed and the name to blame (a parameter, or a flag such as
``--donors``), and raises :class:`~fastmix.errors.BadInputError` naming it. The command line
and :meth:`fastmix.MixSpec.from_text` share them.
"""

from __future__ import annotations

import re

from fastmix.errors import BadInputError

_PAIR = re.compile(r"^\s*(\d+)\s*[xX*,]\s*(\d+)\s*$")


def parse_pair(text: str, name: str = "value") -> tuple[int, int]:
    """Parse ``"96x24"`` into ``(96, 24)``."""
    match = _PAIR.match(text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise BadInputError(f"{name} must look like 96x24 (two positive integers), got {text!r}")
    return int(match.group(1)), int(match.group(2))


def parse_positive_int(text: str, flag: str) -> int:
    """Parse a command-line integer that must be positive (``--donors``, ``--window``...)."""
    try:
        value = int(text, 10)
    except (TypeError, ValueError):
        raise BadInputError(f"{flag} must be a positive integer, got {text!r}") from None
    if value < 1:
        raise BadInputError(f"{flag} must be a positive integer, got {text!r}")
    return value


def parse_integer(text: str, flag: str, minimum: int) -> int:
    """Parse a command-line integer of at least ``minimum`` (``--folds``, ``--rows``...)."""
    try:
        value = int(text, 10)
    except (TypeError, ValueError):
        value = None
    if value is None or value < minimum:
        raise BadInputError(f"{flag} must be an integer >= {minimum}, got {text!r}")
    return value


def parse_probability(text: str, flag: str = "--prob") -> float:
    """Parse a probability in [0, 1] such as ``0.5``."""
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0.0 <= value <= 1.0:  # also false for NaN
        raise BadInputError(f"{flag} must be a number in [0, 1] such as 0.5, got {text!r}")
    return value


_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1000, "kib": 1024, "m": 1000**2, "mb": 1000**2,
          "mib": 1024**2, "g": 1000**3, "gb": 1000**3, "gib": 1024**3, "t": 1000**4,
          "tb": 1000**4, "tib": 1024**4}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory(text: str | int) -> int:
    """Parse a memory size such as ``"1GiB"``, ``"512MB"`` or ``1073741824`` into bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 1:
            raise BadInputError(f"memory must be positive, got {text!r}")
        return text
    match = _SIZE.match(str(text))
    unit = match.group(2).lower() if match else None
    if not match or unit not in _UNITS:
        raise BadInputError(
            f"memory must be a size such as 1GiB, 512MiB or 2GB, got {text!r}"
        )
    size = int(float(match.group(1)) * _UNITS[unit])
    if size < 1:
        raise BadInputError(f"memory must be positive, got {text!r}")
    return size


def format_bytes(size: float) -> str:
    """Human-readable size in binary units (``1.5 GiB``)."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
