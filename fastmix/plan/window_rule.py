"""The window rule: images are mixed in consecutive windows of one fixed length.

Window ``k`` holds images ``[k * length, min((k + 1) * length, count))``; its index ``k``
seeds its plan. Every place that walks a store or an array window by window (both store
engines, ``mix_array``, verify, the audit) cuts its windows here.
"""

from __future__ import annotations


def fixed_windows(count: int, length: int) -> list[tuple[int, int]]:
    """Split ``count`` images into consecutive windows of ``length`` images.

    Parameters
    ----------
    count : int
        Images in all.
    length : int
        Images per window (the last window may be shorter); at least 1.

    Returns
    -------
    list of (int, int)
        Half-open ranges ``(start, stop)`` covering ``0 .. count`` in order; the position of
        a range in the list is its window index.
    """
    count, length = int(count), int(length)
    if count <= 0:
        return []
    if length < 1:
        raise ValueError(f"window length must be at least 1, got {length}")
    return [(start, min(start + length, count)) for start in range(0, count, length)]


def unpartnered_message(count: int) -> str:
    """Return the warning about images that no other image of their label shares a window with."""
    return (f"{count} image(s) have no other image of their label in their window and were "
            "left unmixed")


def unpartnered_refusal(count: int, window_options: str = "") -> str:
    """Return the ``strict`` refusal of such images (``window_options``: what sets it)."""
    return (f"{count} image(s) have no other image of their label in their window; use a "
            f"larger window{window_options} or drop those images")
