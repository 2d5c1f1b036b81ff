"""The mixing parameters (docs/format.md section 1): :class:`MixSpec`, a validated value.

The presets live in :mod:`fastmix.presets` and the text forms of values in
:mod:`fastmix.units`; their public names stay importable from here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, cast

from fastmix.errors import BadInputError, BadInputTypeError, check_integer, check_number
from fastmix.presets import (  # those defined here before moved to presets.py; still importable
    DEFAULT_JITTER,
    DEFAULT_PRESET,
    MIN_SAFE_GROUP,
    PRESET_PARAMETERS,
    PRESETS,
    describe,
    leaks,
    preset_names,
    preset_parameters,
)
from fastmix.units import (  # parse_pair, parse_memory, format_bytes moved; still importable
    format_bytes,
    parse_memory,
    parse_pair,
    parse_positive_int,
    parse_probability,
)

MODES = ("permute", "paper")
DEFAULT_GRID = (2, 8)
ORIENTS = ("none", "flip", "d4")
MAX_SEAM_BLUR = 16.0
#: Most mixing rounds: each costs a plan per window, and a store's record is untrusted
#: input (a tampered ``rounds`` of a billion must be refused, not run).
MAX_ROUNDS = 64
#: How permute mode cuts a label's images into groups (docs/format.md section 2). Rule 1
#: (0.1.0): groups of ``donors + 1`` with a last group of one merged, which left pairs. Rule
#: 2: ``k = max(1, n // (donors + 1))`` groups of sizes that differ by at most one. Stores
#: record their rule.
PLAN_RULES = (1, 2)
PLAN_RULE = 2
#: The arithmetic of the jitter and seam blur (docs/format.md section 2). Format 1 (fastmix
#: 0.1.0 to 0.3): each jitter draw's three 8-bit fields pick among 256 levels, the seam blur
#: sums in float64. Format 2: the fields pick among 16 levels (their top 4 bits), so the
#: jitter of every 8-bit value is a lookup in one of 4,096 tables built once per run, and the
#: seam blur of integer images sums in fixed point. The draws (orientation codes, jitter
#: fields) are the same; only the arithmetic differs. Stores record theirs
#: (``fastmix_hardening_format``, absent: 1). Format 2 is the default since fastmix 0.4; plan
#: rule 1 specs (fastmix 0.1.0) only know format 1.
HARDENING_FORMATS = (1, 2)
HARDENING_FORMAT = 2

__all__ = [
    "DEFAULT_GRID",
    "DEFAULT_JITTER",
    "DEFAULT_PRESET",
    "HARDENING_FORMAT",
    "HARDENING_FORMATS",
    "MAX_ROUNDS",
    "MAX_SEAM_BLUR",
    "MIN_SAFE_GROUP",
    "MODES",
    "ORIENTS",
    "PLAN_RULE",
    "PLAN_RULES",
    "PRESETS",
    "PRESET_PARAMETERS",
    "MixSpec",
    "describe",
    "format_bytes",
    "leaks",
    "parse_memory",
    "parse_pair",
    "preset_names",
]


def _positive_pair(value: object, name: str) -> tuple[int, int]:
    if isinstance(value, str):
        value = parse_pair(value, name)
    message = f"{name} must be a pair of positive integers such as (96, 24), got {value!r}"
    first: object
    second: object
    try:
        first, second = value  # type: ignore[misc]  # any pair; anything else is refused
    except (TypeError, ValueError):
        raise BadInputTypeError(message) from None
    try:
        return check_integer(first, name, minimum=1), check_integer(second, name, minimum=1)
    except BadInputTypeError:
        raise BadInputTypeError(message) from None
    except BadInputError:
        raise BadInputError(f"{name} must be a pair of positive integers, got {value!r}") from None


@dataclass(frozen=True)
class MixSpec:
    """What to mix and how: block geometry, donors, probability, rounds and mode.

    Parameters
    ----------
    block : tuple of int, optional
        Block size ``(bh, bw)`` in pixels. Mutually exclusive with ``grid``.
    grid : tuple of int, optional
        Number of block ``(rows, cols)``; the block size is derived from the image shape.
        When neither ``block`` nor ``grid`` is given, ``grid=(2, 8)`` (the paper's 96x24 on
        192x192 images).
    donors : int
        Paper mode: how many other same-label images one image can receive blocks from.
        Permute mode: images are mixed in groups of ``donors + 1``.
    prob : float
        Probability that a block position is mixed, in [0, 1].
    rounds : int
        How many times mixing is applied; the rounds are composed into one gather.
    mode : {"permute", "paper"}
        ``permute`` is bijective and reversible with the key; ``paper`` is the published
        substitution scheme and is not reversible.
    orient : {"none", "flip", "d4"}
        Keyed per-block orientation (hardening). ``flip``: identity, mirror left-right,
        mirror top-bottom or 180 degrees. ``d4``: those and their four transposes (8
        orientations) where the block is square; non-square blocks (including a smaller last
        row or column of blocks) fall back to ``flip``. Keeps permute mode reversible.
    jitter : tuple of float, True or None
        Keyed per-block photometric jitter (hardening): amplitudes ``(brightness,
        log_contrast, log_gamma)`` on a [0, 1] intensity scale, each at most 1. ``True`` or
        ``"default"`` means ``(0.10, 0.20, 0.20)``. One-way: the data cannot be unmixed.
    seam_blur : float
        Gaussian sigma in pixels of the blur across every internal block seam after mixing
        (hardening); ``ceil(seam_blur)`` pixels on each side of a seam are smoothed. ``0``
        turns it off. One-way: the data cannot be unmixed.
    group : int, "window" or None
        Permute mode: the group size (at least 2), or ``"window"`` for all same-label
        images of a window. ``None`` means ``donors + 1``.
    plan_rule : int
        How permute mode cuts groups (:data:`PLAN_RULES`); the latest by default. Stores
        record theirs, and unmixing uses the recorded one. It is not part of
        :meth:`canonical` (it seeds nothing) and not compared.
    hardening_format : int
        The arithmetic of the jitter and seam blur (:data:`HARDENING_FORMATS`): 1 or 2 (see
        docs/format.md section 2). ``0``, the default, means :data:`HARDENING_FORMAT`, or 1
        under plan rule 1. It changes no keyed
        draw, only how a drawn jitter and the blur compute, so it is not part of
        :meth:`canonical` and not compared. Stores record theirs, and ``verify`` uses the
        recorded one. Format 2 needs plan rule 2.
    """

    block: tuple[int, int] | None = None
    grid: tuple[int, int] | None = None
    donors: int = 10
    prob: float = 0.5
    rounds: int = 1
    mode: str = "permute"
    orient: str = "none"
    jitter: tuple[float, float, float] | None = None
    seam_blur: float = 0.0
    group: int | str | None = None
    plan_rule: int = field(default=PLAN_RULE, compare=False)
    hardening_format: int = field(default=0, compare=False)

    def __post_init__(self) -> None:
        """Validate every parameter (one clear error per problem)."""
        if self.block is not None and self.grid is not None:
            raise BadInputError("give either block=(bh, bw) or grid=(rows, cols), not both")
        if self.block is not None:
            object.__setattr__(self, "block", _positive_pair(self.block, "block"))
        elif self.grid is not None:
            object.__setattr__(self, "grid", _positive_pair(self.grid, "grid"))
        else:
            object.__setattr__(self, "grid", DEFAULT_GRID)
        for name in ("donors", "rounds"):
            object.__setattr__(self, name, check_integer(getattr(self, name), name, minimum=1,
                                                         wording="a positive integer"))
        if self.rounds > MAX_ROUNDS:
            raise BadInputError(f"rounds must be at most {MAX_ROUNDS}, got {self.rounds}")
        object.__setattr__(self, "prob", check_number(
            self.prob, "prob", minimum=0.0, maximum=1.0,
            wording=("a number in [0, 1]", "in [0, 1]")))
        if self.mode not in MODES:
            raise BadInputError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        self._validate_hardening()
        if isinstance(self.plan_rule, bool) or self.plan_rule not in PLAN_RULES:
            raise BadInputError(
                f"plan_rule must be one of {', '.join(map(str, PLAN_RULES))}, got "
                f"{self.plan_rule!r}; this store may come from a newer fastmix"
            )
        object.__setattr__(self, "plan_rule", int(self.plan_rule))
        if not isinstance(self.hardening_format, bool) and self.hardening_format == 0:
            object.__setattr__(self, "hardening_format",
                               1 if self.plan_rule == 1 else HARDENING_FORMAT)
        if isinstance(self.hardening_format, bool) or \
                self.hardening_format not in HARDENING_FORMATS:
            raise BadInputError(
                f"hardening_format must be one of {', '.join(map(str, HARDENING_FORMATS))}, "
                f"got {self.hardening_format!r}; this store may come from a newer fastmix"
            )
        object.__setattr__(self, "hardening_format", int(self.hardening_format))
        if self.hardening_format != 1 and self.plan_rule == 1:
            raise BadInputError("hardening_format 2 needs plan_rule 2; plan rule 1 stores "
                                "(fastmix 0.1.0) use hardening format 1")

    def with_hardening_format(self, hardening_format: int) -> MixSpec:
        """Return the same spec with the jitter and seam blur of ``hardening_format``."""
        return replace(self, hardening_format=hardening_format)

    @property
    def computes_values(self) -> bool:
        """Whether a hardening step computes on pixel values (jitter or seam blur)."""
        return self.jitter is not None or self.seam_blur > 0

    def with_plan_rule(self, rule: int) -> MixSpec:
        """Return the same spec planned with group rule ``rule`` (see :data:`PLAN_RULES`).

        Rule 1 (fastmix 0.1.0) knew only hardening format 1, so it brings format 1 along.
        """
        return replace(self, plan_rule=rule,
                       hardening_format=1 if rule == 1 else self.hardening_format)

    def _validate_hardening(self) -> None:
        if self.orient not in ORIENTS:
            raise BadInputError(
                f"orient must be one of {', '.join(ORIENTS)}, got {self.orient!r}"
            )
        object.__setattr__(self, "jitter", _jitter_amplitudes(self.jitter))
        object.__setattr__(self, "seam_blur", _seam_blur(self.seam_blur))
        group = self.group
        if group is None:
            return
        if self.mode != "permute":
            raise BadInputError(
                f"group applies to permute mode only, got group={group!r} with mode "
                f"{self.mode!r}; drop group or use mode='permute'"
            )
        if group == "window":
            return
        object.__setattr__(self, "group", check_integer(
            group, "group", minimum=2,
            wording=("an integer of at least 2 or 'window'", "at least 2 images or 'window'")))

    @property
    def hardened(self) -> bool:
        """Whether any per-block hardening (orientation, jitter, seam blur) is on."""
        return self.orient != "none" or self.jitter is not None or self.seam_blur > 0

    def group_size(self, window_count: int) -> int:
        """Permute mode: images per group in a window of ``window_count`` images."""
        if self.group == "window":
            return max(int(window_count), 2)
        if self.group is not None:
            return int(self.group)
        return self.donors + 1

    @classmethod
    def preset(cls, name: str, **overrides: object) -> MixSpec:
        """Return a spec from a privacy preset, with any parameter overridden.

        ``fast``: the paper's parameters (donors 10, prob 0.5) on the default 2x8 grid, no
        hardening, reversible. ``balanced``: permute, prob 1, blocks of a twelfth of the
        image side (grid 12x12: 16x16 on 192x192), groups of the whole label in a window,
        keyed ``d4`` orientation (``flip`` on non-square blocks), default jitter and a seam
        blur of 1 pixel; one-way. ``strong``: the same with blocks of a twenty-fourth of the
        side (grid 24x24: 8x8 on 192x192). See :data:`PRESET_PARAMETERS` and docs/hardening.md.

        ``block`` or ``grid`` among ``overrides`` replaces the preset's geometry; ``donors``
        without ``group`` replaces its groups (groups of ``donors + 1``), and so does paper
        mode (which has no groups).
        """
        return cls(**preset_parameters(name, overrides))

    @classmethod
    def from_text(cls, preset: str, texts: Mapping[str, str],
                  names: Mapping[str, str] | None = None) -> MixSpec:
        """Return :meth:`preset` with parameters overridden by text, as the command line gives them.

        ``texts`` maps parameter names to their text: ``block`` and ``grid`` as ``96x24``,
        ``donors`` and ``rounds`` positive integers, ``prob`` a number in [0, 1], ``jitter``
        ``none``, ``default`` or three amplitudes ``B,C,G``, ``seam_blur`` a sigma in pixels,
        ``group`` a number of images or ``window``; ``mode`` and ``orient`` as they are. A
        text that does not parse is refused naming the parameter as ``names`` spells it (the
        command line's flag, such as ``--seam-blur``), by default as the parameter itself.
        """
        unknown = texts.keys() - _FROM_TEXT.keys()
        if unknown:
            raise BadInputError(f"unknown mixing parameters {sorted(unknown)}; give "
                                f"{', '.join(_FROM_TEXT)}")
        names = names or {}
        overrides = {name: parse(texts[name], names.get(name, name))
                     for name, parse in _FROM_TEXT.items() if name in texts}
        return cls.preset(preset, **overrides)

    @property
    def reversible(self) -> bool:
        """Whether :func:`fastmix.unmix_array` can restore data mixed with this spec."""
        return self.mode == "permute" and self.jitter is None and self.seam_blur == 0

    def block_shape(self, height: int, width: int) -> tuple[int, int]:
        """Block size ``(bh, bw)`` for images of ``height`` x ``width`` pixels."""
        if self.block is not None:
            block_height, block_width = self.block
        else:
            rows, cols = self.grid  # type: ignore[misc]
            if rows > height or cols > width:
                raise BadInputError(
                    f"grid {rows}x{cols} has more blocks than the {height}x{width} image has "
                    "pixels; choose a smaller grid"
                )
            block_height, block_width = -(-height // rows), -(-width // cols)
        if block_height > height or block_width > width:
            raise BadInputError(
                f"block {block_height}x{block_width} is larger than the {height}x{width} images; "
                "choose a smaller block"
            )
        return block_height, block_width

    def to_dict(self) -> dict:
        """Return the parameters as plain JSON-compatible values (geometry as given)."""
        data: dict = {"mode": self.mode, "donors": self.donors, "prob": self.prob,
                      "rounds": self.rounds}
        if self.block is not None:
            data["block"] = list(self.block)
        else:
            data["grid"] = list(self.grid)  # type: ignore[arg-type]
        # Hardening appears only when used, so unhardened specs (and their plans) never change.
        if self.orient != "none":
            data["orient"] = self.orient
        if self.jitter is not None:
            data["jitter"] = list(self.jitter)
        if self.seam_blur > 0:
            data["seam_blur"] = self.seam_blur
        if self.group is not None:
            data["group"] = self.group
        if self.plan_rule != PLAN_RULE:
            data["plan_rule"] = self.plan_rule  # never seeds anything: canonical() drops it
        if self.computes_values:
            # seeds nothing either, but decides the bytes: written out, so that the JSON of a
            # format-1 store and of a format-2 one never look the same
            data["hardening_format"] = self.hardening_format
        return data

    @classmethod
    def from_dict(cls, data: dict) -> MixSpec:
        """Rebuild a spec from :meth:`to_dict` output."""
        known = {"block", "grid", "donors", "prob", "rounds", "mode", "orient", "jitter",
                 "seam_blur", "group", "plan_rule", "hardening_format"}
        unknown = set(data) - known
        if unknown:
            raise BadInputError(
                f"unknown mixing parameters {sorted(unknown)}: this store was written by a newer "
                "fastmix; upgrade fastmix"
            )
        kwargs = dict(data)
        for name in ("block", "grid"):
            if kwargs.get(name) is not None:
                kwargs[name] = tuple(int(v) for v in kwargs[name])
        if isinstance(kwargs.get("jitter"), list):
            kwargs["jitter"] = tuple(kwargs["jitter"])
        return cls(**kwargs)

    def canonical(self) -> str:
        """Return the canonical text of the spec that seeds every random choice.

        See docs/format.md section 3.
        """
        data = self.to_dict()
        data.pop("plan_rule", None)
        data.pop("hardening_format", None)
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def identity(self) -> str:
        """Return the text of everything that decides the mixed bytes, not only the seeds.

        :meth:`canonical` with the plan rule and the hardening format, which seed nothing but
        change the bytes: two specs with the same identity mix the same bytes under one key.
        Caches and resumed runs compare this, never :meth:`canonical` or ``==`` alone. The
        format counts only where it changes bytes (:attr:`computes_values`).
        """
        return (f"{self.canonical()}|plan_rule={self.plan_rule}"
                f"|hardening_format={self.hardening_format if self.computes_values else 1}")


def _jitter_text(text: str, name: str) -> tuple[float, ...] | bool | None:
    """``none``, ``default`` or comma-separated amplitudes (their count is checked later)."""
    lowered = text.strip().lower()
    if lowered == "none":
        return None
    if lowered == "default":
        return True
    try:
        return tuple(float(part) for part in lowered.split(","))
    except ValueError:
        raise BadInputError(f"{name} must be none, default or three amplitudes such as "
                            f"0.1,0.2,0.2, got {text!r}") from None


def _seam_blur_text(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise BadInputError(f"{name} must be a sigma in pixels such as 1, got {text!r}") from None


def _group_text(text: str, name: str) -> int | str:
    if text.strip().lower() == "window":
        return "window"
    return parse_positive_int(text, name)


def _as_is(text: str, name: str) -> str:
    return text


#: How :meth:`MixSpec.from_text` reads each parameter, in the order their errors are found.
_FROM_TEXT: dict[str, Callable[[str, str], Any]] = {
    "block": parse_pair, "grid": parse_pair, "mode": _as_is, "donors": parse_positive_int,
    "prob": parse_probability, "rounds": parse_positive_int, "orient": _as_is,
    "jitter": _jitter_text, "seam_blur": _seam_blur_text, "group": _group_text,
}


def _jitter_amplitudes(value: object) -> tuple[float, float, float] | None:
    message = ("jitter must be None, True or three amplitudes (brightness, log_contrast, "
               f"log_gamma) each in [0, 1], got {value!r}")
    if isinstance(value, str):
        try:
            value = _jitter_text(value, "jitter")
        except BadInputError:
            raise BadInputError(message) from None
    if value is None or value is False:
        return None
    if value is True:
        return DEFAULT_JITTER
    try:
        amplitudes = tuple(cast("Iterable[object]", value))  # TypeError if not iterable
    except TypeError:
        raise BadInputTypeError(message) from None
    if len(amplitudes) != 3:
        raise BadInputTypeError(message)
    try:
        brightness, contrast, gamma = (check_number(item, "jitter", minimum=0.0, maximum=1.0)
                                       for item in amplitudes)
    except BadInputTypeError:
        raise BadInputTypeError(message) from None
    except BadInputError:
        raise BadInputError(message) from None
    if not (brightness or contrast or gamma):
        raise BadInputError("jitter amplitudes are all zero; give jitter=None for no jitter")
    return brightness, contrast, gamma


def _seam_blur(value: object) -> float:
    return check_number(value, "seam_blur", minimum=0.0, maximum=MAX_SEAM_BLUR, wording=(
        "a number of pixels (sigma)", f"a sigma in pixels between 0 and {MAX_SEAM_BLUR:g}"))
