"""The audit verdict and report (text and JSON)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

ATTACK_NAME = "strongest of the fastmix restoration attacks"
#: Appended to every verdict: what fastmix's own frontier measured (docs/frontier.md;
#: ``python bench/bench_frontier.py --axes preset geometry --keys 1 2 3 --table``).
NOTHING_GOOD_ON_PHOTOS = (
    "At 192x192 no fastmix setting measured (presets, blocks down to 8 pixels) is good "
    "against this attack on photographs: the default preset is weak on photo crops, and "
    "the most private, strong, moderate on colour ones (docs/frontier.md).")
MISLEADING_SSIM = (
    "mixed-vs-original SSIM is misleading: it can be near 0 while the attack restores the "
    "image almost perfectly (LFW, 5x5 blocks, donors 4, prob 1: 0.13, while the attack "
    "restores 95% of the displaced blocks)"
)


#: The figures that get a 95% bootstrap interval (:attr:`AuditReport.intervals`).
INTERVAL_FIGURES = ("restored_fraction", "chance_fraction", "advantage",
                    "restored_90_fraction", "reidentified_fraction")


def interval_key(figure: str) -> str:
    """Return the JSON key of ``figure``'s interval (``restored_interval`` and so on)."""
    return figure.removesuffix("_fraction") + "_interval"


#: The verdicts, worst first.
VERDICTS = ("weak", "moderate", "good")
#: The verdict when the two ends of the intervals give different ratings.
UNCERTAIN = "uncertain"
#: At or above any of these, a store is weak: the advantage A, the share re-identified and
#: the share of images restored to 90% or more.
WEAK_ADVANTAGE, WEAK_REIDENTIFIED, WEAK_RESTORED_90 = 0.5, 0.5, 0.1
#: A store that is not weak is good under both of these (A and the share re-identified).
GOOD_ADVANTAGE, GOOD_REIDENTIFIED = 0.15, 0.2
#: The figures that decide the verdict: (report attribute, name, weak threshold, good
#: threshold). Restored >= 90% has no moderate band: its good threshold is its weak one.
DECIDING = (
    ("advantage", "advantage A", WEAK_ADVANTAGE, GOOD_ADVANTAGE),
    ("reidentified_fraction", "re-identified", WEAK_REIDENTIFIED, GOOD_REIDENTIFIED),
    ("restored_90_fraction", "images restored >= 90%", WEAK_RESTORED_90, WEAK_RESTORED_90),
)

#: Above this share of the attacked images' displaced blocks coming from images outside the
#: sample (mixing groups larger than the sample), the attack saw only part of each original:
#: its figures are a lower bound, and the verdict's worse end is weak.
OPEN_POOLS_LIMIT = 0.05

#: The verdict rule, word for word as README.md and docs/privacy.md state it
#: (``tests/test_audit.py`` checks both); :func:`rating_range` and :func:`decide` apply it.
VERDICT_RULE = (
    "A rating is weak when A >= 0.5, or re-identified >= 0.5, or at least 10% of the images "
    "are restored to 90% or more; otherwise moderate when A >= 0.15 or re-identified >= 0.2; "
    "otherwise good. The verdict rates both ends of the 95% bootstrap interval of each of "
    "these figures: when the low ends and the high ends give the same rating, that is the "
    "verdict; when they differ, the verdict is uncertain (between those two ratings: too few "
    "images to decide, audit more), and --require counts it as the worse one. When more than "
    "5% of the attacked images' displaced blocks come from images outside the sample (mixing "
    "groups larger than the sample), the figures are a lower bound and the worse end is weak."
)


def verdict(advantage: float, reidentified: float, restored_90: float) -> str:
    """Rate one set of figures ``"weak"``, ``"moderate"`` or ``"good"`` (:data:`VERDICT_RULE`).

    * weak: ``advantage >= 0.5``, or ``reidentified >= 0.5``, or at least 10% of images
      restored to 90% or more;
    * moderate: otherwise, ``advantage >= 0.15`` or ``reidentified >= 0.2``;
    * good: otherwise.

    A NaN figure reaches no threshold. The audit's verdict applies this to both ends of the
    figures' intervals (:func:`rating_range`).
    """
    if (_at_least(advantage, WEAK_ADVANTAGE) or _at_least(reidentified, WEAK_REIDENTIFIED)
            or _at_least(restored_90, WEAK_RESTORED_90)):
        return "weak"
    if _at_least(reidentified, GOOD_REIDENTIFIED):
        return "moderate"
    if _at_least(advantage, GOOD_ADVANTAGE):
        return "moderate"
    return "good"


def rating_range(bounds: dict) -> tuple[str, str]:
    """Return ``(best, worst)``: the ratings of the low ends and of the high ends.

    ``bounds`` maps each attribute of :data:`DECIDING` to its ``(low, high)`` interval.

    Examples
    --------
    >>> rating_range({"advantage": (0.02, 0.09), "reidentified_fraction": (0.15, 0.31),
    ...                "restored_90_fraction": (0.0, 0.0)})
    ('good', 'moderate')
    """
    lows = [bounds[name][0] for name, *_ in DECIDING]
    highs = [bounds[name][1] for name, *_ in DECIDING]
    return verdict(*lows), verdict(*highs)


def decide(best: str, worst: str) -> str:
    """Return the verdict of a :func:`rating_range`: the rating both ends share, or uncertain."""
    return best if best == worst else UNCERTAIN


def reasons(report) -> list[str]:
    """Return the figures that made the verdict of ``report``, each with its threshold.

    Weak: every figure whose interval lies at or above its weak threshold; moderate: those at
    or above their good threshold; uncertain: those whose interval holds a threshold. Each as
    ``"re-identified 0.640 [0.540, 0.730] >= 0.5"``; none for a good verdict. An uncertain
    verdict whose sample held only part of its mixing groups (:data:`OPEN_POOLS_LIMIT`) says so.
    """
    found = []
    for name, label, weak, good in DECIDING:
        value = getattr(report, name)
        low, high = report.bounds(name)
        if _missing(low) or (name != "reidentified_fraction" and not report.attack):
            continue
        shown = f"{label} {_fmt(value, report.intervals.get(name, []))}"
        if report.verdict == "weak" and _at_least(low, weak):
            found.append(f"{shown} >= {weak:g}")
        elif report.verdict == "moderate" and _at_least(low, good):
            found.append(f"{shown} >= {good:g}")
        elif report.verdict == UNCERTAIN:
            held = [threshold for threshold in dict.fromkeys((good, weak))
                    if low < threshold <= high]
            if held:
                found.append(f"{shown} holds {' and '.join(f'{t:g}' for t in held)}")
    if report.verdict == UNCERTAIN and report.attack and report.open_pools > OPEN_POOLS_LIMIT:
        found.append(
            f"{report.open_pools:.0%} of the attacked images' displaced blocks come from images "
            f"outside the sample (> {OPEN_POOLS_LIMIT:.0%}), so the figures are a lower bound; "
            "raise --time and --memory to attack whole labels")
    return found


def meets(rating: str, required: str) -> bool:
    """Whether the verdict ``rating`` is ``required`` or better (``"unknown"`` meets nothing).

    Examples
    --------
    >>> meets("good", "moderate"), meets("moderate", "good"), meets("weak", "moderate")
    (True, False, False)
    """
    if required not in VERDICTS:
        from fastmix.errors import BadInputError

        raise BadInputError(f"a required verdict is one of {', '.join(VERDICTS)}, got "
                            f"{required!r}")
    return rating in VERDICTS and VERDICTS.index(rating) >= VERDICTS.index(required)


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def needs(rating: str) -> str:
    """Return what a store needs to be rated ``rating`` (``"moderate"`` or ``"good"``).

    Examples
    --------
    >>> needs("good")
    'A < 0.15, under 20% re-identified and under 10% of images restored >= 90%'
    """
    advantage, reidentified = {
        "moderate": (WEAK_ADVANTAGE, WEAK_REIDENTIFIED),
        "good": (GOOD_ADVANTAGE, GOOD_REIDENTIFIED),
    }[rating]
    return (f"A < {advantage:g}, under {reidentified:.0%} re-identified and under "
            f"{WEAK_RESTORED_90:.0%} of images restored >= 90%")


def _at_least(value: float, threshold: float) -> bool:
    return value is not None and not math.isnan(value) and value >= threshold


def verdict_sentence(rating: str, between: tuple[str, str] | None = None,
                     because: list[str] | tuple = ()) -> str:
    """Return the verdict worded as a lower bound on leakage, never as a guarantee.

    ``between``: the ``(best, worst)`` ratings of an ``uncertain`` verdict; ``because``: the
    figures that made it (:func:`reasons`), named after its meaning.
    """
    if rating == UNCERTAIN:
        best, worst = between or ("good", "weak")
        meaning = f"{worst} or {best}, too few images to decide"
    else:
        meaning = {
            "weak": "the attack restores or re-identifies a large share of the images",
            "moderate": "the attack restores or re-identifies clearly more than chance",
            "good": "the attack does little better than chance",
        }[rating]
    if because:
        meaning += f": {'; '.join(because)}"
    return (f"protection against the {ATTACK_NAME}: {rating.upper()} ({meaning}). This is a "
            "lower bound on what leaks: a stronger attack can restore more. It is not a "
            f"privacy guarantee. {NOTHING_GOOD_ON_PHOTOS}")


@dataclass
class AuditReport:
    """Everything one audit measured. ``to_dict()`` gives the JSON object.

    The fractions are shares in [0, 1]. ``intervals`` holds the 95% bootstrap intervals over
    the sampled images of the figures in :data:`INTERVAL_FIGURES`, by figure name; the JSON
    gives each right after its figure, as ``restored_interval``, ``chance_interval``,
    ``advantage_interval``, ``restored_90_interval`` and ``reidentified_interval``.
    """

    settings: dict
    images: int
    sampled: int
    displaced_fraction: float
    largest_share_mean: float
    largest_share_max: float
    lost_fraction: float | None = None
    duplicated_blocks: int | None = None
    inexact_blocks: int = 0
    attack: bool = True
    restored_fraction: float = float("nan")
    chance_fraction: float = float("nan")
    advantage: float = float("nan")
    neighbour_fraction: float = float("nan")
    mixed_neighbour_fraction: float = float("nan")
    chance_neighbour_fraction: float = float("nan")
    restored_90_fraction: float = float("nan")
    perfect_fraction: float = float("nan")
    ssim_mean: float = float("nan")
    ssim_max: float = float("nan")
    mixed_ssim_mean: float = float("nan")
    reidentified_fraction: float = float("nan")
    restored_reidentified_fraction: float = float("nan")
    mixed_reidentified_fraction: float = float("nan")
    group_purity: float | None = None
    #: Share of the attacked images' displaced blocks whose original is outside the sample.
    open_pools: float = 0.0
    #: The advantage A of every attack run (:data:`fastmix.audit.strong.ATTACKS`); the
    #: figures above and the verdict are the strongest one's.
    attacks: dict = field(default_factory=dict)
    #: How many pools (groups) the attack solved separately.
    attacked_pools: int | None = None
    #: Seconds both attacks took (the budget, ``settings["seconds"]``, bounds their estimate).
    attack_seconds: float | None = None
    verdict: str = "weak"
    #: ``[best, worst]``: the ratings of the intervals' low and high ends (equal unless the
    #: verdict is ``uncertain``).
    verdict_range: list = field(default_factory=list)
    verdict_text: str = ""
    warnings: list = field(default_factory=list)
    #: ``[low, high]`` by figure name (:data:`INTERVAL_FIGURES`); none before it is measured.
    intervals: dict = field(default_factory=dict)
    utility: dict | None = None
    #: With ``keep_images=True``: indices of the sampled images and, per sampled original,
    #: the attack's restored image matched to it (never in the JSON).
    sample_indices: object = field(default=None, repr=False)
    restored_images: object = field(default=None, repr=False)

    def to_dict(self) -> dict:
        """Return a JSON-compatible dict (NaN becomes ``None``)."""
        data = {}
        for name, value in asdict(self).items():
            if name in ("intervals", "sample_indices", "restored_images"):
                continue
            data[name] = value
            if name in INTERVAL_FIGURES:
                data[interval_key(name)] = list(self.intervals.get(name, []))
            if name == "verdict_text":
                data["verdict_rule"] = VERDICT_RULE
        return _clean(data)

    def bounds(self, name: str) -> tuple[float, float]:
        """Return figure ``name``'s interval, or the figure itself at both ends without one."""
        interval = self.intervals.get(name)
        if interval and not any(_missing(bound) for bound in interval):
            return float(interval[0]), float(interval[1])
        value = getattr(self, name)
        return value, value

    def to_json(self) -> str:
        """Return the report as one JSON object."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def meets(self, required: str) -> bool:
        """Whether the verdict is ``required`` (``"moderate"`` or ``"good"``) or better.

        The Python form of ``--require``: ``if not report.meets("good"): ...``. An
        ``uncertain`` verdict counts as the worse of its two ratings.
        """
        if self.verdict == UNCERTAIN and self.verdict_range:
            return meets(self.verdict_range[1], required)
        return meets(self.verdict, required)

    def verdict_line(self) -> str:
        """Return the verdict and its main figures on one line."""
        figures = []
        if self.attack:
            figures.append(f"advantage A {self._with_interval('advantage')}")
        figures.append(f"re-identified {self._with_interval('reidentified_fraction')}")
        if self.attack:
            figures.append(f"restored >= 90% {self._with_interval('restored_90_fraction')}")
        return (f"audit of {self.sampled} images ({', '.join(figures)}; 95% intervals): "
                f"{self.verdict_text}")

    def _with_interval(self, name: str) -> str:
        """Return figure ``name`` with its interval, as the summary prints them."""
        return _fmt(getattr(self, name), self.intervals.get(name, []))

    def summary(self) -> str:
        """Return a human-readable multi-line summary."""
        s = self.settings
        lines = [
            f"fastmix audit: {self.sampled} of {self.images} images sampled; mode {s.get('mode')},"
            f" block {s.get('block')}, donors {s.get('donors')}, prob {s.get('prob')}",
            f"  block provenance:                from the "
            f"{'key' if s.get('provenance') == 'key' else 'pixels (hashing)'}",
            f"  displaced blocks:                {self.displaced_fraction:.3f}",
            f"  largest share of one original in one mixed image: mean "
            f"{self.largest_share_mean:.3f}, max {self.largest_share_max:.3f} (no attack needed)",
        ]
        if self.lost_fraction is not None:
            lines.append(f"  paper mode: original blocks lost {self.lost_fraction:.3f}, "
                         f"duplicated blocks {self.duplicated_blocks}")
        if self.inexact_blocks:
            lines.append(f"  blocks matched by nearest content (lossy copies): "
                         f"{self.inexact_blocks}")
        if self.attack:
            restored = self._with_interval("restored_fraction")
            chance = self._with_interval("chance_fraction")
            advantage = self._with_interval("advantage")
            restored_90 = self._with_interval("restored_90_fraction")
            lines += [
                f"  attack: {ATTACK_NAME} ({s.get('attack', 'adapted')}"
                + (f"; it {'; '.join(s['attack_knows'])}" if s.get("attack_knows") else "")
                + ")",
                "  advantage of each attack:        " + ", ".join(
                    f"{name} {_fmt(value, [])}" for name, value in self.attacks.items()),
                f"  restored displaced blocks R:     {restored}",
                f"  chance R0 (random assignment):   {chance}",
                f"  advantage A = (R-R0)/(1-R0):     {advantage}",
                f"  same-original neighbours:        restored {self.neighbour_fraction:.3f}, "
                f"mixed {self.mixed_neighbour_fraction:.3f}, chance "
                f"{self.chance_neighbour_fraction:.3f}",
                f"  images restored >= 90%:          {restored_90}",
                f"  images restored perfectly:       {self.perfect_fraction:.3f}",
                f"  SSIM restored vs original:       mean {self.ssim_mean:.3f}, max "
                f"{self.ssim_max:.3f}",
            ]
            if self.group_purity is not None:
                lines.append(f"  inferred groups purity:          {self.group_purity:.3f}")
            if self.attack_seconds is not None:
                lines.append(f"  attack time:                     {self.attack_seconds:g} s "
                             f"(budget {s.get('seconds', 0):g} s, estimated)")
        lines += [
            f"  re-identified (mixed or restored): "
            f"{self._with_interval('reidentified_fraction')}",
            f"  SSIM mixed vs original:          {self.mixed_ssim_mean:.3f} (misleading, see "
            "warning)",
        ]
        if self.utility:
            lines.append("  utility (accuracy on untouched originals, mean over folds):")
            for model, row in self.utility["models"].items():
                lines.append(
                    f"    {model:<20} original {row['original']:.3f}  mixed {row['mixed']:.3f}"
                    f"  control {row['control']:.3f}  change {row['change']:+.3f}")
            lines.append(f"    utility: {self.utility['verdict']}")
        lines.append(f"verdict: {self.verdict_text}")
        lines += [f"warning: {warning}" for warning in self.warnings]
        return "\n".join(lines)


def _fmt(value: float, bounds: list) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if bounds and all(b is not None and not math.isnan(b) for b in bounds):
        return f"{value:.3f} [{bounds[0]:.3f}, {bounds[1]:.3f}]"
    return f"{value:.3f}"


def _clean(value):
    if isinstance(value, float):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {key: _clean(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(item) for item in value]
    if hasattr(value, "item"):
        return _clean(value.item())
    return value
