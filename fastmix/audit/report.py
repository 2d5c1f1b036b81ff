"""The audit verdict and report (text and JSON)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

ATTACK_NAME = "strongest of the fastmix restoration attacks"
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
#: At or above any of these, a store is weak: the advantage A, the share re-identified and
#: the share of images restored to 90% or more.
WEAK_ADVANTAGE, WEAK_REIDENTIFIED, WEAK_RESTORED_90 = 0.5, 0.5, 0.1
#: A store that is not weak is good under both of these (A and the share re-identified).
GOOD_ADVANTAGE, GOOD_REIDENTIFIED = 0.15, 0.2


def verdict(advantage: float, reidentified: float, restored_90: float) -> str:
    """``"weak"``, ``"moderate"`` or ``"good"`` protection against the named attack.

    * weak: ``advantage >= 0.5``, or ``reidentified >= 0.5``, or at least 10% of images
      restored to 90% or more;
    * moderate: ``0.15 <= advantage < 0.5`` and ``reidentified < 0.2``;
    * good: otherwise. A re-identification rate between 0.2 and 0.5 is never called good:
      such a run is rated moderate whatever the advantage.
    """
    if (_at_least(advantage, WEAK_ADVANTAGE) or _at_least(reidentified, WEAK_REIDENTIFIED)
            or _at_least(restored_90, WEAK_RESTORED_90)):
        return "weak"
    if _at_least(reidentified, GOOD_REIDENTIFIED):
        return "moderate"
    if _at_least(advantage, GOOD_ADVANTAGE):
        return "moderate"
    return "good"


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


def verdict_sentence(rating: str) -> str:
    """Return the verdict worded as a lower bound on leakage, never as a guarantee."""
    meaning = {
        "weak": "the attack restores or re-identifies a large share of the images",
        "moderate": "the attack restores clearly more than chance",
        "good": "the attack does little better than chance",
    }[rating]
    return (f"protection against the {ATTACK_NAME}: {rating.upper()} ({meaning}). This is a "
            "lower bound on what leaks: a stronger attack can restore more. It is not a "
            "privacy guarantee.")


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
    #: The advantage A of every attack run (:data:`fastmix.audit.strong.ATTACKS`); the
    #: figures above and the verdict are the strongest one's.
    attacks: dict = field(default_factory=dict)
    #: How many pools (groups) the attack solved separately.
    attacked_pools: int | None = None
    verdict: str = "weak"
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
        return _clean(data)

    def to_json(self) -> str:
        """Return the report as one JSON object."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    def meets(self, required: str) -> bool:
        """Whether the verdict is ``required`` (``"moderate"`` or ``"good"``) or better.

        The Python form of ``--require``: ``if not report.meets("good"): ...``.
        """
        return meets(self.verdict, required)

    def verdict_line(self) -> str:
        """Return the verdict and its main figures on one line."""
        figures = []
        if self.attack:
            figures.append(f"advantage A {_fmt(self.advantage, [])}")
        figures.append(f"re-identified {_fmt(self.reidentified_fraction, [])}")
        return (f"audit of {self.sampled} images ({', '.join(figures)}): "
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
