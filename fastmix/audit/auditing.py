"""The audit of arrays and stores.

Ground truth, the leak without an attack, the restoration attack, metrics and verdict.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from pathlib import Path

import numpy as np

from fastmix.audit import metrics
from fastmix.audit._deps import require
from fastmix.audit.attack import null_attack
from fastmix.audit.edges import EdgeScorer
from fastmix.audit.geometry import BlockGrid
from fastmix.audit.groundtruth import GroundTruth, content_classes, locate_blocks
from fastmix.audit.report import (
    DECIDING,
    MISLEADING_SSIM,
    OPEN_POOLS_LIMIT,
    WEAK_REIDENTIFIED,
    AuditReport,
    decide,
    rating_range,
    reasons,
    verdict_sentence,
)
from fastmix.audit.strong import (
    ATTACK_MEMORY,
    ATTACK_SECONDS,
    ATTACKS,
    advantage_of,
    attack_sample,
    strongest_attack,
)
from fastmix.errors import BadInputError, BadInputTypeError, FastmixWarning, hint
from fastmix.plan.window_rule import fixed_windows
from fastmix.progress import Progress
from fastmix.spec import MixSpec
from fastmix.store.hdf5.record import PREFIX, STATE_ATTRIBUTE, attribute_text
from fastmix.units import format_bytes

BOOTSTRAP_REPEATS = 1000
NEEDS_KEY = ("the mixed data is hardened (orientation, jitter or seam blur): hashing cannot "
             "find where its blocks went, so nothing can be measured without the key; give the "
             "key it was mixed with (--key-file KEY): the audit uses it for the ground truth "
             "only, never in the attack")


def _check(original, mixed, labels, spec, window):
    from fastmix.mixing import check_images
    from fastmix.plan.labels import validate_labels

    original = check_images(original)
    mixed = check_images(mixed)
    if original.shape != mixed.shape or original.dtype != mixed.dtype:
        raise BadInputError(
            f"original {original.shape} {original.dtype} and mixed {mixed.shape} {mixed.dtype} "
            "differ: audit a mixed set against the data it was made from"
        )
    labels = validate_labels(labels, len(original))
    if not isinstance(spec, MixSpec):
        raise BadInputTypeError(f"spec must be a fastmix.MixSpec, got {type(spec).__name__}")
    if window is not None and (isinstance(window, bool) or int(window) < 1):
        raise BadInputError(f"window must be a positive number of images, got {window!r}")
    return original, mixed, labels


def _pool_keys(labels: np.ndarray, window: int | None) -> np.ndarray:
    """One code per (window, label): blocks only move inside such a pool."""
    _, codes = np.unique(labels, return_inverse=True)
    codes = codes.astype(np.int64).ravel()
    if window is None:
        return codes
    return (np.arange(codes.size) // window) * (codes.max() + 1) + codes


def planner_truth(labels: np.ndarray, spec: MixSpec, key, grid: BlockGrid,
                  window: int | None) -> GroundTruth:
    """Return the ground truth from the key: the planner's own source map."""
    from fastmix.plan import encode_labels, plan_window

    count = len(labels)
    window = window or max(count, 1)
    source = np.empty((count, grid.count), dtype=np.int64)
    for index, (start, stop) in enumerate(fixed_windows(count, window)):
        plan = plan_window(encode_labels(labels[start:stop]), (grid.row_edges, grid.col_edges),
                           spec, key, index)
        source[start:stop] = plan.source + start
    return GroundTruth(source=source, exact=np.ones_like(source, dtype=bool))


def _largest_share(source: np.ndarray) -> np.ndarray:
    """Per original, the largest share of its blocks held by one mixed image (sparse)."""
    count, blocks = source.shape
    pairs = np.repeat(np.arange(count, dtype=np.int64), blocks) * count + source.ravel()
    unique, held = np.unique(pairs, return_counts=True)
    best = np.zeros(count, dtype=np.int64)
    np.maximum.at(best, unique % count, held)
    return best / blocks


def _sample(truth: GroundTruth, labels: np.ndarray, sample: int,
            rng: np.random.Generator) -> np.ndarray:
    """Return at most ``sample`` images per label, in whole permute groups where possible.

    Images are taken as whole sets of images that exchanged blocks, so that the attack sees
    complete groups.
    """
    graph = require("scipy.sparse")
    csgraph = require("scipy.sparse.csgraph")
    count, blocks = truth.source.shape
    rows = np.repeat(np.arange(count), blocks)
    links = graph.coo_matrix((np.ones(rows.size), (rows, truth.source.ravel())),
                             shape=(count, count))
    _, component = csgraph.connected_components(links, directed=False)
    chosen = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        if members.size <= sample:
            chosen.append(members)
            continue
        taken: list[np.ndarray] = []
        room = sample
        for part in rng.permutation(np.unique(component[members])):
            part_members = members[component[members] == part]
            if part_members.size <= room:
                taken.append(part_members)
                room -= part_members.size
            elif not taken:
                # one pool larger than the sample (paper mode): a consecutive run of it
                start = int(rng.integers(0, part_members.size - room + 1))
                taken.append(part_members[start:start + room])
                room = 0
            if room == 0:
                break
        chosen.append(np.concatenate(taken))
    return np.sort(np.concatenate(chosen))


def _unreadable(path, error: Exception) -> BadInputError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return BadInputError(f"{path}: cannot be read as a store ({type(error).__name__}: "
                         f"{first}); it may be truncated or damaged")


class _Pixels:
    """The original and mixed images of an audit, read whole or only where sampled.

    ``original`` and ``mixed`` are arrays or HDF5 datasets (open in the files ``where``
    names) of at least ``count`` images; :meth:`take` reads only the images asked for, so an
    audit with the key (whose ground truth needs no pixels) holds only its sample.
    """

    def __init__(self, original, mixed, count: int, where: str = "") -> None:
        self.original, self.mixed, self.count, self.where = original, mixed, count, where
        self.shape = (count, *original.shape[1:])
        self.dtype = original.dtype

    def whole(self) -> tuple[np.ndarray, np.ndarray]:
        """Return every image of both sets."""
        return np.asarray(self.original[:self.count]), np.asarray(self.mixed[:self.count])

    def take(self, chosen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the images at the increasing indices ``chosen`` of both sets."""
        if isinstance(self.original, np.ndarray):
            return self.original[chosen], self.mixed[chosen]
        indices = chosen.tolist()
        try:
            return np.asarray(self.original[indices]), np.asarray(self.mixed[indices])
        except Exception as error:
            raise _unreadable(self.where, error) from None


def audit_arrays(original: np.ndarray, mixed: np.ndarray, labels: np.ndarray, spec: MixSpec, *,
                 window: int | None = None, sample: int = 1000, seed: int = 0,
                 attack: bool = True, key=None, scorer: EdgeScorer | None = None,
                 groups_known: bool = False, keep_images: bool = False,
                 progress: bool = False, memory: int = ATTACK_MEMORY,
                 seconds: float = ATTACK_SECONDS) -> AuditReport:
    """Measure what a mixed set leaks about the original images.

    Parameters
    ----------
    original, mixed : ndarray, shape (n, H, W) or (n, H, W, C)
        The images before and after mixing, in the same order.
    labels : array-like, shape (n,)
        The labels.
    spec : MixSpec
        The mixing parameters (the attacker knows them, not the key).
    window : int, optional
        The window the data was mixed with (default: one window).
    sample : int
        At most this many images per label are attacked.
    seed : int
        Seed of the sampling, the attack and the bootstrap.
    attack : bool
        Run the restoration attack (else only the ground truth and the leak without attack).
    key : Key, optional
        The key the data was mixed with: the ground truth (where every block went) comes
        from its plan instead of from hashing the pixels. Required for hardened data, whose
        oriented, jittered or blurred blocks hashing cannot find. The attack never sees it.
    scorer : EdgeScorer, optional
        Edge score and orientation variants of the adapted attack. Default: adapted to the
        spec's hardening (:func:`fastmix.audit.adaptive.scorer_for`), as an attacker who
        knows the scheme would adapt. The strong attack (:mod:`fastmix.audit.strong`) runs
        too; the figures and the verdict are the strongest attack's (each attack's
        advantage is in ``report.attacks``).
    groups_known : bool
        Give the attack the true permute groups instead of inferring them (an upper bound).
    keep_images : bool
        Keep the sample's indices and restored images on the report (for display).
    progress : bool
        Show a progress bar of the attacked images on a terminal.
    memory : int
        Bytes the attack may hold (its sample's images and one pool's edge scores).
    seconds : float
        Seconds both attacks may take, as :func:`fastmix.audit.strong.attack_seconds`
        estimates them (a model, the same on every machine, so the sample and the figures
        are too); ``report.attack_seconds`` gives the time they took.

    Within ``memory`` and ``seconds`` (:func:`fastmix.audit.strong.attack_sample`) fewer
    images per label are attacked, with a warning.

    Returns
    -------
    AuditReport
    """
    original, mixed, labels = _check(original, mixed, labels, spec, window)
    for value, name in ((memory, "memory"), (seconds, "seconds")):
        if isinstance(value, bool) or not isinstance(value, int | float | np.number) or \
                not value > 0:
            raise BadInputError(f"{name} must be a positive number, got {value!r}")
    return _audit(_Pixels(original, mixed, len(original)), labels, spec, window=window,
                  sample=sample, seed=seed, attack=attack, key=key, scorer=scorer,
                  groups_known=groups_known, keep_images=keep_images, progress=progress,
                  memory=int(memory), seconds=float(seconds))


def _audit(pixels: _Pixels, labels: np.ndarray, spec: MixSpec, *, window, sample, seed,
           attack, key, scorer, groups_known, keep_images, progress, memory,
           seconds) -> AuditReport:
    """:func:`audit_arrays` on checked input; the pixels are read only where needed."""
    import time

    from fastmix.audit.adaptive import scorer_for

    if isinstance(sample, bool) or int(sample) < 2:
        raise BadInputError(f"sample must be at least 2 images per label, got {sample!r}")
    if spec.hardened and key is None:
        raise BadInputError(NEEDS_KEY)
    count = pixels.count
    height, width = pixels.shape[1:3]
    channels = pixels.shape[3] if len(pixels.shape) == 4 else 1
    scorer = scorer or scorer_for(spec, height, width)
    grid = BlockGrid.of(height, width, spec.block_shape(height, width))
    pools = _pool_keys(labels, window)
    truth = (planner_truth(labels, spec, key, grid, window) if key is not None
             else locate_blocks(*pixels.whole(), pools, grid))
    copies = truth.copies()
    largest = _largest_share(truth.source)
    settings = dict(spec.to_dict(), block=list(grid_block(spec, height, width)),
                    window=window, sample=int(sample), seed=int(seed), memory=int(memory),
                    seconds=float(seconds),
                    provenance="key" if key is not None else "hashing",
                    attack_knows=_attack_knowledge(scorer, groups_known))
    report = AuditReport(
        settings=settings, images=count, sampled=count,
        displaced_fraction=truth.displaced_fraction(),
        largest_share_mean=float(largest.mean()), largest_share_max=float(largest.max()),
        inexact_blocks=int((~truth.exact).sum()), attack=bool(attack),
    )
    if spec.mode == "paper":
        report.lost_fraction = float((copies == 0).mean())
        report.duplicated_blocks = int(np.maximum(copies - 1, 0).sum())
    rng = np.random.default_rng(seed)
    asked = int(sample)
    if attack:  # within the attack's memory and time budget
        image_bytes = int(np.prod(pixels.shape[1:], dtype=np.int64)) * pixels.dtype.itemsize
        sample = attack_sample(sample, np.bincount(np.unique(pools, return_inverse=True)[1]),
                               grid, scorer.variants, memory=memory, seconds=seconds,
                               image_bytes=image_bytes, pixels=height * width,
                               channels=channels)
    chosen = _sample(truth, pools, int(sample), rng)
    report.sampled = int(chosen.size)
    local = np.full(count, -1, dtype=np.int64)
    local[chosen] = np.arange(chosen.size)
    source = local[truth.source[chosen]]
    sample_original, sample_mixed = pixels.take(chosen)
    sample_pools = pools[chosen]
    classes = content_classes(sample_original, sample_pools, grid)
    weights = metrics.bootstrap_weights(chosen.size, BOOTSTRAP_REPEATS, seed)
    mixed_found = metrics.reidentified(sample_mixed, sample_original, sample_pools)
    data_range = float(sample_original.max() - sample_original.min()) or 1.0
    report.mixed_ssim_mean = float(np.nanmean(
        metrics.ssim_each(sample_mixed, sample_original, data_range)))
    report.mixed_reidentified_fraction = float(mixed_found.mean())
    report.warnings.append(MISLEADING_SSIM)
    if report.inexact_blocks:
        report.warnings.append(
            f"{report.inexact_blocks} mixed blocks matched no original exactly and were "
            "assigned to the nearest original block (lossy copies?)")
    if chosen.size < count:
        budget = (f" (the budget of {format_bytes(memory)} and {seconds:g} s allows {sample}"
                  f" of the {asked} asked for)" if sample < asked else "")
        report.warnings.append(
            f"the attack ran on {chosen.size} of {count} images (at most {sample} per label"
            f"{budget}, whole groups where possible): a smaller pool can make group "
            "inference easier")
        open_pools = report.open_pools = _open_pools(truth.source, chosen)
        if open_pools:
            report.warnings.append(
                f"{open_pools:.0%} of the blocks displaced into the attacked images come from "
                "images outside the sample (groups larger than the sample): the attack sees "
                "only part of each original, so its figures understate what an attack on "
                "whole groups restores")
    found = mixed_found
    if attack:
        true_groups = None
        if groups_known:
            true_groups = _components(source)
        started = time.perf_counter()
        every: dict = {}
        with Progress(len(ATTACKS) * chosen.size, sample_mixed[0].nbytes, "audit",
                      enabled=progress) as bar:
            name, restoration, scorer, report.attacks = strongest_attack(
                sample_mixed, sample_pools, spec, window=window or count, groups=true_groups,
                scorer=scorer, seed=seed, progress=bar, every=every,
                judge=lambda found: advantage_of(found, source, sample_pools, grid, classes,
                                                 seed=seed + 1))
        report.attack_seconds = round(time.perf_counter() - started, 1)
        report.settings["attack_knows"] = _attack_knowledge(scorer, groups_known)
        report.settings["attack"] = name
        chance = null_attack(restoration.pools, grid.count, chosen.size, seed=seed + 1)
        scored = metrics.score_restoration(restoration.placement, source, sample_pools, grid,
                                           classes)
        null = metrics.score_restoration(chance.placement, source, sample_pools, grid, classes)
        restored_images = restoration.images(sample_mixed, grid, scorer)[scored.match]
        if keep_images:
            report.sample_indices = chosen
            report.restored_images = restored_images
        restored_found = metrics.reidentified(restored_images, sample_original, sample_pools)
        # The figures and the verdict are the strongest attack's (highest A), but an image
        # counts as re-identified when any attack's restoration re-identifies it: a stronger
        # attack by A can re-identify fewer images than a weaker one.
        for other_name, (other, other_scorer) in every.items():
            if other_name != name:
                matched = metrics.score_restoration(other.placement, source, sample_pools,
                                                    grid, classes).match
                restored_found = restored_found | metrics.reidentified(
                    other.images(sample_mixed, grid, other_scorer)[matched], sample_original,
                    sample_pools)
        found = mixed_found | restored_found
        attack_samples = metrics.ratio(weights, scored.restored, scored.displaced)
        chance_samples = metrics.ratio(weights, null.restored, null.displaced)
        with np.errstate(invalid="ignore", divide="ignore"):
            advantage_samples = (attack_samples - chance_samples) / (1 - chance_samples)
        displaced_total = scored.displaced.sum()
        restored_value = scored.restored.sum() / displaced_total if displaced_total else np.nan
        chance_value = null.restored.sum() / displaced_total if displaced_total else np.nan
        edge_total = len(grid.edges()) * chosen.size or 1
        ssim = metrics.ssim_each(restored_images, sample_original, data_range)
        report.restored_fraction = float(restored_value)
        report.intervals["restored_fraction"] = metrics.interval(attack_samples)
        report.chance_fraction = float(chance_value)
        report.intervals["chance_fraction"] = metrics.interval(chance_samples)
        report.advantage = float((restored_value - chance_value) / (1 - chance_value)) \
            if chance_value < 1 else float("nan")
        report.intervals["advantage"] = metrics.interval(advantage_samples)
        report.neighbour_fraction = float(scored.neighbours.sum() / edge_total)
        report.chance_neighbour_fraction = float(null.neighbours.sum() / edge_total)
        report.mixed_neighbour_fraction = float(
            metrics.adjacent_same(source, grid).sum() / edge_total)
        report.restored_90_fraction = float((scored.share >= 0.9).mean())
        report.intervals["restored_90_fraction"] = metrics.interval(
            weights @ (scored.share >= 0.9) / chosen.size)
        report.perfect_fraction = float((scored.share >= 1.0).mean())
        report.ssim_mean = float(np.nanmean(ssim)) if np.isfinite(ssim).any() else float("nan")
        report.ssim_max = float(np.nanmax(ssim)) if np.isfinite(ssim).any() else float("nan")
        report.restored_reidentified_fraction = float(restored_found.mean())
        report.attacked_pools = len(restoration.pools)
        if spec.mode == "permute" and not groups_known:
            report.group_purity = _purity(restoration.pools, source)
    report.reidentified_fraction = float(found.mean())
    report.intervals["reidentified_fraction"] = metrics.interval(weights @ found / chosen.size)
    set_verdict(report)
    return report


def set_verdict(report: AuditReport) -> None:
    """Rate ``report`` by :data:`fastmix.audit.report.VERDICT_RULE`, from its intervals.

    Without the attack, only re-identification is measured: weak when its interval lies at
    or above 0.5, else ``"unknown"``.
    """
    if report.attack:
        best, worst = rating_range({name: report.bounds(name) for name, *_ in DECIDING})
        if report.open_pools > OPEN_POOLS_LIMIT:
            worst = "weak"  # a lower bound only: an attack on whole groups may restore more
        report.verdict_range = [best, worst]
        report.verdict = decide(best, worst)
        report.verdict_text = verdict_sentence(report.verdict, (best, worst), reasons(report))
        return
    low = report.bounds("reidentified_fraction")[0]
    report.verdict = "weak" if low >= WEAK_REIDENTIFIED else "unknown"
    if report.verdict == "weak":
        report.verdict_range = ["weak", "weak"]
        report.verdict_text = verdict_sentence("weak", because=reasons(report))
    else:
        report.verdict_text = "no attack was run: only the leak without attack was measured"


def _open_pools(source: np.ndarray, chosen: np.ndarray) -> float:
    """Share of the sampled mixed images' displaced blocks whose original is not sampled."""
    held = source[chosen]
    displaced = held != chosen[:, None]
    if not displaced.any():
        return 0.0
    inside = np.isin(held, chosen)
    return float((displaced & ~inside).sum() / displaced.sum())


def _attack_knowledge(scorer: EdgeScorer, groups_known: bool) -> list[str]:
    """Return what the attack was told or adapted to, beyond the mixed pixels and the spec."""
    knows = []
    if scorer.orientations != "none":
        knows.append(f"tries every {scorer.orientations} orientation")
    skip = getattr(scorer, "skip", 0)  # a scorer for seam-blurred blocks has it
    if skip:
        knows.append(f"scores edges outside the {skip}-pixel blurred band")
    if getattr(scorer, "offset_invariant", False):
        knows.append("adds mean-removed edge scores against jitter")
    if getattr(scorer, "blur", 0):
        knows.append("solves the seam blur's band back from its public weights")
    if getattr(scorer, "tone_invariant", False):
        knows.append("scores edges up to a per-block tone map against jitter")
    if groups_known:
        knows.append("is given the true groups from the key (the conservative upper bound "
                     "of this attack)")
    return knows


def grid_block(spec: MixSpec, height: int, width: int) -> tuple[int, int]:
    """Return the block size of ``spec`` on ``height`` x ``width`` images."""
    return spec.block_shape(height, width)


def _components(source: np.ndarray) -> list[np.ndarray]:
    csgraph = require("scipy.sparse.csgraph")
    graph = require("scipy.sparse")
    count, blocks = source.shape
    valid = source.ravel() >= 0
    rows = np.repeat(np.arange(count), blocks)[valid]
    links = graph.coo_matrix((np.ones(rows.size), (rows, source.ravel()[valid])),
                             shape=(count, count))
    parts, component = csgraph.connected_components(links, directed=False)
    return [np.flatnonzero(component == part) for part in range(parts)]


def _purity(pools: list, source: np.ndarray) -> float:
    """Share of images whose inferred pool's majority is their own true group."""
    component = np.empty(len(source), dtype=np.int64)
    for index, members in enumerate(_components(source)):
        component[members] = index
    pure = 0
    for pool in pools:
        _, counts = np.unique(component[pool], return_counts=True)
        pure += counts.max()
    return pure / max(len(source), 1)


# ---------------------------------------------------------------- stores


def read_store_spec(attributes, overrides: dict) -> tuple[MixSpec, int | None]:
    """Return the spec and window of a mixed store.

    The store's ``fastmix_spec`` attribute is read whole, hardening (``orient``, ``jitter``,
    ``seam_blur``, ``group``) included. ``overrides`` (a :meth:`MixSpec.to_dict` with
    ``block`` or ``grid``, plus ``window``) replaces the parameters it names; a store without
    that attribute needs it to name the geometry.
    """
    stored = attributes.get("fastmix_spec")
    window = attributes.get("fastmix_window")
    given = {name: value for name, value in overrides.items()
             if value is not None and name != "window"}
    data: dict = {}
    if stored is not None:
        try:
            data = json.loads(attribute_text(stored))
            MixSpec.from_dict(data)
        except BadInputError:
            raise
        except (ValueError, TypeError, AttributeError) as error:
            raise BadInputError(f"the mixed store's fastmix_spec attribute is damaged "
                                f"({error}); give --block/--grid, --mode, --donors, --prob") \
                from None
    elif "block" not in given and "grid" not in given:
        raise BadInputError(
            "the mixed store has no fastmix_spec attribute: give the block grid with "
            "--block 96x24 or --grid 2x8 (and --mode, --donors, --prob as mixed)")
    if "block" in given or "grid" in given:
        data.pop("block", None)
        data.pop("grid", None)
    spec = MixSpec.from_dict({**data, **given})
    if stored is not None:  # a store of fastmix 0.1.0 carries no rule: it used rule 1
        spec = spec.with_plan_rule(int(attributes.get("fastmix_plan_rule", 1)))
        spec = spec.with_hardening_format(int(attributes.get("fastmix_hardening_format", 1)))
    if overrides.get("window") is not None:
        window = overrides["window"]
    if window is not None:
        window = int(window)
        window = None if window <= 0 else window
    return spec, window


def _has_record(dataset) -> bool:
    """Whether ``dataset`` carries a fastmix mixing record (``fastmix_*`` attributes).

    ``fastmix_state`` alone marks an interrupted in-place run, which is refused elsewhere.
    """
    return any(name.startswith(PREFIX) and name != STATE_ATTRIBUTE for name in dataset.attrs)


def require_original_first(original, mixed, original_path, mixed_path) -> None:
    """Refuse an audit whose "original" carries a fastmix record while its "mixed" does not.

    Swapped arguments would audit the original as if it were the mixed set, and report
    that nothing leaks.
    """
    if _has_record(original) and not _has_record(mixed):
        raise BadInputError(
            f"{original_path} carries a fastmix mixing record and {mixed_path} does not: the "
            f"arguments look swapped (the mixed store was given as the original); "
            f"{hint('audit_order')}"
        )


def audit_stores(original_path: str | Path, mixed_path: str | Path, *,
                 images: str = "images", labels: str | None = None,
                 spec: MixSpec | None = None, window: int | None = None,
                 sample: int = 1000, seed: int = 0, attack: bool = True,
                 utility: bool = False, utility_folds: int = 5, key=None,
                 progress: bool = True, memory: int | str = "1GiB",
                 seconds: float = ATTACK_SECONDS) -> AuditReport:
    """Audit a mixed HDF5 store against the store it was made from.

    The spec and window come from the mixed store's ``fastmix_*`` attributes when present;
    ``spec`` and ``window`` override them. Whole windows are read from the start until every
    label has ``sample`` images or the store ends.

    With ``key`` (checked against the store's key check value) the ground truth comes from
    the key's plan, the attack adapts to the hardening and is given the true groups
    (:func:`fastmix.audit.adaptive.audit_options`), and only the sampled images are read. A
    hardened store needs the key. Without it, the blocks are located by hashing every image
    of those windows, which are read whole. ``progress`` shows a bar of the attacked images
    on a terminal. The audit holds at most ``memory``: the labels, the images read (half of
    it, without the key or with ``utility``) and the attack (the rest); fewer images are
    audited, with a warning, when the sample does not fit. ``seconds`` bounds the attack's
    estimated time. See :func:`audit_arrays` for the rest.
    """
    from fastmix.audit.adaptive import audit_options
    from fastmix.store.hdf5.access import open_hdf5, refuse_interrupted
    from fastmix.store.hdf5.record import check_key_and_record
    from fastmix.units import format_bytes, parse_memory

    require("h5py")
    budget = parse_memory(memory)
    original_path, mixed_path = Path(original_path), Path(mixed_path)
    reading = mixed_path
    with contextlib.ExitStack() as files:
        try:
            before = files.enter_context(open_hdf5(original_path))
            after = files.enter_context(open_hdf5(mixed_path))
            for name, handle, path in ((images, before, original_path),
                                       (images, after, mixed_path)):
                if name not in handle:
                    raise BadInputError(f"{path} has no dataset {name!r}: "
                                        f"{hint('images_name')}")
                refuse_interrupted(handle[name], str(path))
            require_original_first(before[images], after[images], original_path, mixed_path)
            attributes = dict(after[images].attrs)
            if labels is None:
                labels = attributes.get("fastmix_labels", "labels")
                labels = labels.decode() if isinstance(labels, bytes) else str(labels)
            overrides = {} if spec is None else spec.to_dict()
            overrides["window"] = window
            store_spec, store_window = read_store_spec(attributes, overrides)
            if key is not None and "fastmix_key_check" in attributes:
                check_key_and_record(after[images], str(mixed_path), key,
                                     attribute_text(attributes["fastmix_key_check"]))
            if store_spec.hardened and key is None:
                raise BadInputError(f"{mixed_path}: {NEEDS_KEY}")
            if labels not in before:
                raise BadInputError(f"{original_path} has no dataset {labels!r}: "
                                    f"{hint('labels_name')}")
            if before[images].shape != after[images].shape:
                raise BadInputError(
                    f"{original_path} holds images {before[images].shape} but {mixed_path} "
                    f"holds {after[images].shape}: audit a mixed store against its original")
            reading = original_path
            label_set = before[labels]
            label_bytes = label_set.size * max(label_set.dtype.itemsize, 8)
            if label_set.ndim != 1 or label_bytes > budget:
                raise BadInputError(
                    f"{original_path}: labels dataset {labels!r} of shape {label_set.shape} "
                    f"needs {format_bytes(label_bytes)}, more than memory "
                    f"{format_bytes(budget)}; it must be (N,): raise --memory if it is")
            label_values = decode_label_values(label_set[()], original_path)
            image_set = before[images]
            if image_set.dtype.kind not in "iuf":
                raise BadInputError(
                    f"{original_path}: images of dtype {image_set.dtype} cannot be audited; "
                    "the audit works on integer or floating-point pixels")
            if len(label_values) < 2:
                raise BadInputError(f"{original_path} holds {len(label_values)} image(s); "
                                    "an audit needs at least two")
            count = _images_to_read(label_values, store_window, sample)
            image_bytes = int(np.prod(image_set.shape[1:], dtype=np.int64)) * \
                image_set.dtype.itemsize
            if image_set.ndim not in (3, 4) or 0 in image_set.shape[1:]:
                raise BadInputError(
                    f"{original_path}: images of shape {image_set.shape} cannot be audited; "
                    "the audit needs (N, H, W) or (N, H, W, C)")
            budget -= label_bytes
            whole = key is None or utility  # hashing and the utility check need every image
            if whole:
                count = _images_that_fit(count, image_bytes, store_window, budget // 2)
                budget -= budget // 2
                pixels = _Pixels(np.asarray(image_set[:count]), None, count)
                reading = mixed_path
                pixels.mixed = np.asarray(after[images][:count])
            else:
                pixels = _Pixels(image_set, after[images], count,
                                 where=f"{original_path} or {mixed_path}")
            height, width = image_set.shape[1:3]
            options = audit_options(store_spec, height, width, key_given=key is not None)
        except BadInputError:
            raise
        except Exception as error:
            raise _unreadable(reading, error) from None
        report = _audit(pixels, label_values[:count], store_spec, window=store_window,
                        sample=sample, seed=seed, attack=attack, key=key, progress=progress,
                        memory=max(budget, 1), seconds=seconds, keep_images=False, **options)
    report.images = len(label_values)
    if utility:
        from fastmix.audit.utility import utility_check

        report.utility = utility_check(pixels.original, label_values[:count], store_spec,
                                       folds=utility_folds, seed=seed)
    return report


def _images_that_fit(count: int, image_bytes: int, window: int | None, budget: int) -> int:
    """At most ``count`` images, in whole windows, whose two copies fit in ``budget``.

    ``budget`` is the half of the audit's memory that holds the images read whole (the
    attack has the other half). Fewer than ``count`` are audited (with a warning) when they
    do not fit; none fitting, not even one window, is a refusal.
    """
    from fastmix.units import format_bytes

    fitting = budget // max(2 * image_bytes, 1)
    if fitting >= count:
        return count
    step = window if window is not None and window < count else 1
    fitting = fitting // step * step
    if fitting < 2:
        raise BadInputError(
            f"auditing needs two copies of at least {max(step, 2)} images of "
            f"{format_bytes(image_bytes)} ({format_bytes(2 * max(step, 2) * image_bytes)}), "
            f"more than the half of memory that holds them ({format_bytes(budget)}); raise "
            "--memory")
    warnings.warn(f"audited the first {fitting} of the {count} images the sample asks for: "
                  f"more do not fit in half of memory ({format_bytes(budget)}; the attack "
                  "has the other half): raise --memory", FastmixWarning, stacklevel=3)
    return fitting


def decode_label_values(raw, path) -> np.ndarray:
    """Labels as read by h5py, text as ``str``; a one-line refusal when not valid UTF-8."""
    from fastmix.store.hdf5.access import decode_labels

    try:
        values = decode_labels(raw)
    except BadInputError as error:
        raise BadInputError(f"{path}: {error}") from None
    if values.dtype.kind == "O":
        values = np.asarray([str(value) for value in values])
    return values


def _images_to_read(labels: np.ndarray, window: int | None, sample: int) -> int:
    count = len(labels)
    if window is None or window >= count:
        return count
    _, codes = np.unique(labels, return_inverse=True)
    seen = np.zeros(codes.max() + 1, dtype=np.int64)
    for start, stop in fixed_windows(count, window):
        seen += np.bincount(codes[start:stop], minlength=seen.size)
        if seen.min() >= sample:
            return stop
    return count
