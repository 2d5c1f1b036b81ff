"""The slow, obvious reference implementation of fastmix's mixing: the oracle.

Written from the algorithm text in ``fastmix/plan/random.py``, ``fastmix/plan/planner.py``,
``fastmix/plan/groups.py``, ``fastmix/plan/hardening.py``, ``fastmix/kernels/steps.py`` (the
per-run constants) and ``fastmix/pipeline.py`` (the steps' definitions) with Python integers
and floats, lists and NumPy slicing, and no Numba or fastmix kernels, so that every backend
can be compared with it bit for bit. :func:`mix` covers plain and hardened specs alike.
"""

from __future__ import annotations

import functools
import math
import operator

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


def cut_groups(run, group_size, rule):
    """Cut one label's ordered images into groups (docs/format.md section 2, plan rules 1 and 2)."""
    if rule == 1:
        cut = [run[k:k + group_size] for k in range(0, len(run), group_size)]
        if len(cut) > 1 and len(cut[-1]) == 1:
            cut[-2].extend(cut.pop())
        return cut
    groups = max(1, len(run) // group_size)
    cut = []
    start = 0
    for g in range(groups):
        size = len(run) // groups + (1 if g < len(run) % groups else 0)
        cut.append(run[start:start + size])
        start += size
    return cut


def permute_round(codes, block_count, prob, group_size, window_seed, stream, rule=2):
    count = len(codes)
    shuffle_seed = derive(window_seed, stream + SHUFFLE)
    permute_seed = derive(window_seed, stream + PERMUTE)
    order = sorted(range(count), key=lambda i: (codes[i], derive(shuffle_seed, i), i))
    groups = []
    for code in sorted(set(codes)):
        run = [i for i in order if codes[i] == code]
        groups.extend(cut_groups(run, group_size, rule))
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
                                   window_seed, stream, spec.plan_rule)
        else:
            source = paper_round(codes, block_count, spec.prob, spec.donors, window_seed, stream)
        if total is None:
            total = source
        else:
            total = [[total[source[i][b]][b] for b in range(block_count)]
                     for i in range(len(codes))]
    return total


# --- hardening (fastmix/plan/hardening.py, fastmix/kernels/steps.py, fastmix/pipeline.py) ------

STREAM_ORIENT = 1000
STREAM_JITTER = 1001


def exact_exp(z: float) -> float:
    """``exp`` from ``+ * /``: Taylor terms of ``z / 16`` summed in order, squared 4 times."""
    terms = [1.0]
    for power in range(1, 18):
        terms.append(terms[-1] * (z / 16.0) / float(power))
    total = functools.reduce(operator.add, terms)
    for _ in range(4):
        total = total * total
    return total


def orient_block(block: np.ndarray, code: int) -> np.ndarray:
    """Mirror the source rows/columns, then transpose: the code's definition."""
    if code & 2:
        block = block[::-1]
    if code & 1:
        block = block[:, ::-1]
    if code & 4:
        block = block.swapaxes(0, 1)
    return block


def unorient_block(block: np.ndarray, code: int) -> np.ndarray:
    """Return the inverse of :func:`orient_block`: transpose back, then undo the mirrors."""
    if code & 4:
        block = block.swapaxes(0, 1)
    if code & 1:
        block = block[:, ::-1]
    if code & 2:
        block = block[::-1]
    return block


def codes_and_jitter(spec, key, window_index, count, regions):
    window_seed = key.window_seed(spec.canonical(), window_index)
    orient_seed = derive(window_seed, STREAM_ORIENT)
    jitter_seed = derive(window_seed, STREAM_JITTER)
    codes, jitter = [], []
    for i in range(count):
        image_codes, image_jitter = [], []
        for b, (rows, cols) in enumerate(regions):
            square = rows.stop - rows.start == cols.stop - cols.start
            choices = {"none": 1, "flip": 4, "d4": 8 if square else 4}[spec.orient]
            draw = derive(derive(derive(orient_seed, i), b), 0)
            image_codes.append(bounded(draw, choices) if choices > 1 else 0)
            if spec.jitter is not None:
                draw = derive(derive(jitter_seed, i), b)
                if spec.plan_rule == 1:  # 0.1.0: three 52-bit draws
                    uniform = [(derive(draw, t) >> 11) * 2.0**-52 - 1.0 for t in range(3)]
                elif spec.hardening_format == 1:
                    # three 8-bit fields of one draw, each a midpoint of 256 steps
                    fields = [(draw >> shift) & 255 for shift in (56, 48, 40)]
                    uniform = [(2 * field + 1) / 256 - 1.0 for field in fields]
                else:  # format 2: the fields' top 4 bits, each a midpoint of 16 steps
                    fields = [(draw >> shift) & 15 for shift in (60, 52, 44)]
                    uniform = [(2 * field + 1) / 16 - 1.0 for field in fields]
                image_jitter.append((uniform[0] * spec.jitter[0],
                                     exact_exp(uniform[1] * spec.jitter[1]),
                                     exact_exp(uniform[2] * spec.jitter[2])))
        codes.append(image_codes)
        jitter.append(image_jitter)
    return codes, jitter


def value_range(dtype):
    if dtype.kind in "ui":
        info = np.iinfo(dtype)
        return float(info.min), float(info.max), True
    return 0.0, 1.0, False


def jitter_block(block, brightness, contrast, tone):
    low, high, integer = value_range(block.dtype)
    values = block.astype(np.float64)
    if integer:
        level = (values - low) / (high - low)
    else:
        level = np.where(values < 0.0, 0.0, np.where(values > 1.0, 1.0, values))
    toned = level / (level + tone * (1.0 - level))
    result = (toned - 0.5) * contrast + 0.5 + brightness
    result = np.where(result < 0.0, 0.0, np.where(result > 1.0, 1.0, result))
    if integer:
        return (np.rint(result * (high - low)) + low).astype(block.dtype)
    return result.astype(block.dtype)


def band(edges, sigma):
    half = math.ceil(sigma)
    size = edges[-1]
    rows = set()
    for seam in edges[1:-1]:
        rows.update(range(max(seam - half, 0), min(seam + half, size)))
    return sorted(rows)


def blur_pass(image, lines, weights, axis):
    """Replace ``lines`` along ``axis`` by the weighted sum across that axis."""
    low, high, integer = value_range(image.dtype)
    radius = (len(weights) - 1) // 2
    size = image.shape[axis]
    values = image.astype(np.float64)
    out = image.copy()
    for line in lines:
        total = np.zeros_like(np.take(values, line, axis=axis))
        for k, weight in enumerate(weights):
            source = min(max(line + k - radius, 0), size - 1)
            total = total + weight * np.take(values, source, axis=axis)
        if integer:
            total = np.clip(np.rint(total), low, high)
        if axis == 0:
            out[line] = total.astype(image.dtype)
        else:
            out[:, line] = total.astype(image.dtype)
    return out


def blur_pass_fixed(image, lines, weights, axis):
    """Format 2, integer images: exact integer sums of integer weights, rounded half up."""
    radius = (len(weights) - 1) // 2
    size = image.shape[axis]
    values = image.astype(object)  # Python integers: exact
    out = image.copy()
    for line in lines:
        total = 0
        for k, weight in enumerate(weights):
            source = min(max(line + k - radius, 0), size - 1)
            total = total + weight * np.take(values, source, axis=axis)
        rounded = (total + 2**14) // 2**15
        if axis == 0:
            out[line] = rounded.astype(image.dtype)
        else:
            out[:, line] = rounded.astype(image.dtype)
    return out


def fixed_blur_weights(sigma):
    """Format 2: ``floor(g_k * 2**15 + 1/2)`` off the centre, the centre making the sum 2**15."""
    weights = [math.floor(value * 2**15 + 0.5) for value in blur_weights(sigma)]
    radius = (len(weights) - 1) // 2
    weights[radius] = 2**15 - (sum(weights) - weights[radius])
    return weights


def blur_weights(sigma):
    radius = math.ceil(3 * sigma)
    gaussian = [exact_exp(-(k * k) / (2.0 * sigma * sigma)) for k in range(-radius, radius + 1)]
    total = 0.0
    for value in gaussian:
        total = total + value
    return [value / total for value in gaussian]


def mix(images, labels, spec, key, window=None, inverse=False):
    """Mix (or unmix) ``images`` window by window with plain NumPy slicing, hardening included.

    Unmixing (permute mode, orientation at most) puts each block back where it came from,
    undoing its orientation.
    """
    images = np.asarray(images)
    labels = np.asarray(labels)
    count, height, width = images.shape[:3]
    block = spec.block_shape(height, width)
    regions = block_slices(height, width, block)
    row_edges = sorted({rows.start for rows, _ in regions} | {height})
    col_edges = sorted({cols.start for _, cols in regions} | {width})
    out = np.empty_like(images)
    window = window or count
    for window_index, start in enumerate(range(0, count, window)):
        stop = min(start + window, count)
        source = plan(labels[start:stop], len(regions), spec, key, window_index)
        codes, jitter = codes_and_jitter(spec, key, window_index, stop - start, regions)
        for i in range(stop - start):
            if inverse:
                for b, (rows, cols) in enumerate(regions):
                    restored = unorient_block(images[start + i, rows, cols], codes[i][b])
                    out[start + source[i][b], rows, cols] = restored
                continue
            image = np.empty_like(images[0])
            for b, (rows, cols) in enumerate(regions):
                block_pixels = orient_block(images[start + source[i][b], rows, cols],
                                            codes[i][b])
                if spec.jitter is not None:
                    block_pixels = jitter_block(block_pixels, *jitter[i][b])
                image[rows, cols] = block_pixels
            if spec.seam_blur > 0:
                if spec.hardening_format == 2 and image.dtype.kind in "ui":
                    weights, blur = fixed_blur_weights(spec.seam_blur), blur_pass_fixed
                else:
                    weights, blur = blur_weights(spec.seam_blur), blur_pass
                image = blur(image, band(row_edges, spec.seam_blur), weights, axis=0)
                image = blur(image, band(col_edges, spec.seam_blur), weights, axis=1)
            out[start + i] = image
    return out
