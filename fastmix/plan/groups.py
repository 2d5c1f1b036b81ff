"""How permute mode cuts the images of one label in a window into groups: the one rule.

The planner, the group-of-two warning and the audit's group inference all call
:func:`group_sizes`; ``tests/naive.py`` restates it independently.

Rule 2 (the current one, docs/format.md section 2)
    ``n`` images in groups of (at most) ``size`` form ``k = max(1, n // size)`` groups; with
    ``q, r = divmod(n, k)``, the first ``r`` groups hold ``q + 1`` images and the others
    ``q``. Every group has at least ``size`` images unless the label has fewer.
Rule 1 (0.1.0, kept to unmix the stores it made)
    Groups of exactly ``size``; a last group of one joins the previous group, so a last
    group of two stays a pair.
"""

from __future__ import annotations

import numpy as np

from fastmix.spec import MixSpec


def group_sizes(count: int, size: int, rule: int) -> list[int]:
    """Sizes of the groups, in order, that ``count`` same-label images are cut into."""
    if count <= 0:
        return []
    if rule == 1:
        sizes = [size] * (count // size) + ([count % size] if count % size else [])
        if len(sizes) > 1 and sizes[-1] == 1:
            sizes.pop()
            sizes[-1] += 1  # a last group of one joins the previous group
        return sizes
    groups = max(1, count // size)
    base, larger = divmod(count, groups)
    return [base + 1] * larger + [base] * (groups - larger)


def group_starts(sorted_codes: np.ndarray, size: int, rule: int) -> np.ndarray:
    """Boundaries of the groups cut from each label run of ``sorted_codes`` (and the end)."""
    count = sorted_codes.size
    run_starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]]) \
        if count else np.zeros(0, dtype=np.int64)
    run_lengths = np.diff(np.r_[run_starts, count])
    starts: list[int] = []
    for run_start, length in zip(run_starts.tolist(), run_lengths.tolist()):
        position = run_start
        for group in group_sizes(length, size, rule):
            starts.append(position)
            position += group
    starts.append(count)
    return np.asarray(starts, dtype=np.int64)


def images_in_pairs(label_counts: np.ndarray, spec: MixSpec) -> int:
    """Images that permute mode puts in groups of exactly two, given one window's label counts.

    Two images that form a group receive every mixed block from each other: at ``prob=1``
    each mixed image is the other original, whole. Under rule 2 this happens only to a label
    with two images in the window (or when groups of two are asked for), so callers warn and
    ``strict`` refuses.
    """
    if spec.mode != "permute":
        return 0
    size = spec.group_size(int(np.sum(label_counts)))
    return sum(2 * group_sizes(count, size, spec.plan_rule).count(2)
               for count in np.asarray(label_counts).tolist())


def pairs_warning(pairs: int) -> str:
    """Return the warning about images in permute groups of two (see :func:`images_in_pairs`)."""
    return (f"{pairs} image(s) are in permute groups of two: each takes every mixed block from "
            "one other image, so at prob 1 it shows that other original whole; use a larger "
            "window or group='window', or drop those images")
