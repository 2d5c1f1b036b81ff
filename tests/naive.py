"""The slow, obvious reference implementation of fastmix's mixing: the oracle.

Written from the algorithm text in ``fastmix/plan/random.py`` and
``fastmix/plan/planner.py`` with Python integers, lists and NumPy slicing, and no Numba, so
that every backend can be compared with it bit for bit.
"""

from __future__ import annotations

import numpy as np

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
ROUND_STRIDE = 8
SHUFFLE, PERMUTE, DONORS, BLOCKS = 0, 1, 2, 3


def mix64(z: int) -> int:
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def derive(seed: int, value: int) -> int:
    return mix64((seed + (value + 1) * GOLDEN) & MASK)


def bounded(x: int, n: int) -> int:
    return ((x >> 32) * n) >> 32


def heads(x: int, prob: float) -> bool:
    return (x >> 11) < round(prob * 2**53)


def block_slices(height, width, block):
    """Block regions in row-major order."""
    block_height, block_width = block
    return [
        (slice(top, min(top + block_height, height)), slice(left, min(left + block_width, width)))
        for top in range(0, height, block_height)
        for left in range(0, width, block_width)
    ]


def label_codes(labels):
    ordered = sorted(set(labels.tolist()))
    return [ordered.index(label) for label in labels.tolist()]


def derangement(block_seed: int, size: int) -> list[int]:
    draw = 1
    while True:
        sigma = list(range(size))
        accepted = True
        for j in range(size - 1, 0, -1):
            pick = bounded(derive(block_seed, draw), j + 1)
            draw += 1
            sigma[j], sigma[pick] = sigma[pick], sigma[j]
            if sigma[j] == j:
                accepted = False
                break
        if accepted and sigma[0] != 0:
            return sigma


def permute_round(codes, block_count, prob, group_size, window_seed, stream):
    count = len(codes)
    shuffle_seed = derive(window_seed, stream + SHUFFLE)
    permute_seed = derive(window_seed, stream + PERMUTE)
    order = sorted(range(count), key=lambda i: (codes[i], derive(shuffle_seed, i), i))
    groups = []
    for code in sorted(set(codes)):
        run = [i for i in order if codes[i] == code]
        cut = [run[k:k + group_size] for k in range(0, len(run), group_size)]
        if len(cut) > 1 and len(cut[-1]) == 1:
            cut[-2].extend(cut.pop())
        groups.extend(cut)
    source = [[i] * block_count for i in range(count)]
    for members in groups:
        if len(members) < 2:
            continue
        group_seed = derive(permute_seed, members[0])
        for b in range(block_count):
            block_seed = derive(group_seed, b)
            if not heads(derive(block_seed, 0), prob):
                continue
            sigma = derangement(block_seed, len(members))
            for j, member in enumerate(members):
                source[member][b] = members[sigma[j]]
    return source


def paper_round(codes, block_count, prob, donors, window_seed, stream):
    count = len(codes)
    donor_seed = derive(window_seed, stream + DONORS)
    blocks_seed = derive(window_seed, stream + BLOCKS)
    source = [[i] * block_count for i in range(count)]
    for i in range(count):
        candidates = [j for j in range(count) if codes[j] == codes[i] and j != i]
        chosen = min(donors, len(candidates))
        if chosen == 0:
            continue
        item_seed = derive(donor_seed, i)
        picked: list[int] = []
        for t, j in enumerate(range(len(candidates) - chosen, len(candidates))):
            value = bounded(derive(item_seed, t), j + 1)
            picked.append(j if value in picked else value)
        donor_list = [candidates[number] for number in sorted(picked)]
        image_seed = derive(blocks_seed, i)
        for b in range(block_count):
            block_seed = derive(image_seed, b)
            if heads(derive(block_seed, 0), prob):
                source[i][b] = donor_list[bounded(derive(block_seed, 1), chosen)]
    return source


def plan(labels, block_count, spec, key, window_index):
    """Source map of one window, as a list of lists."""
    codes = label_codes(np.asarray(labels))
    window_seed = key.window_seed(spec.canonical(), window_index)
    total = None
    for round_number in range(spec.rounds):
        stream = ROUND_STRIDE * round_number
        if spec.mode == "permute":
            source = permute_round(codes, block_count, spec.prob, spec.group_size(len(codes)),
                                   window_seed,
                                   stream)
        else:
            source = paper_round(codes, block_count, spec.prob, spec.donors, window_seed, stream)
        if total is None:
            total = source
        else:
            total = [[total[source[i][b]][b] for b in range(block_count)]
                     for i in range(len(codes))]
    return total


def mix(images, labels, spec, key, window=None, inverse=False):
    """Mix (or unmix) ``images`` window by window with plain NumPy slicing."""
    images = np.asarray(images)
    labels = np.asarray(labels)
    count, height, width = images.shape[:3]
    block = spec.block_shape(height, width)
    regions = block_slices(height, width, block)
    out = np.empty_like(images)
    window = window or count
    for window_index, start in enumerate(range(0, count, window)):
        stop = min(start + window, count)
        source = plan(labels[start:stop], len(regions), spec, key, window_index)
        for i in range(stop - start):
            for b, (rows, cols) in enumerate(regions):
                if inverse:
                    out[start + source[i][b], rows, cols] = images[start + i, rows, cols]
                else:
                    out[start + i, rows, cols] = images[start + source[i][b], rows, cols]
    return out
