"""The mixing parameters (docs/format.md section 1) and the parsers the command line shares."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace

from fastmix.errors import BadInputError, BadInputTypeError

MODES = ("permute", "paper")
DEFAULT_GRID = (2, 8)
ORIENTS = ("none", "flip", "d4")
DEFAULT_JITTER = (0.10, 0.20, 0.20)
MAX_SEAM_BLUR = 16.0
#: Most mixing rounds: each costs a plan per window, and a store's record is untrusted
#: input (a tampered ``rounds`` of a billion must be refused, not run).
MAX_ROUNDS = 64
PRESETS = ("fast", "balanced", "strong")
_HARDENED = {"mode": "permute", "prob": 1.0, "orient": "d4", "jitter": DEFAULT_JITTER,
             "seam_blur": 1.0}
#: Each preset's parameters. The geometry is part of the privacy (issue 13): on the default
#: 2x8 grid (96x24 blocks on 192x192) the hardened groups of 11 were weak on faces and
#: photographs, so ``balanced`` and ``strong`` cut blocks relative to the image side and mix
#: whole labels. Measured with ``python bench/bench_frontier.py`` (docs/privacy.md, "How private is
#: it?"). ``fast`` stays the paper's parameters on the default grid.
PRESET_PARAMETERS: dict[str, dict] = {
    "fast": {"mode": "permute", "donors": 10, "prob": 0.5},
    "balanced": {**_HARDENED, "grid": (12, 12), "group": "window"},
    "strong": {**_HARDENED, "grid": (16, 16), "group": "window"},
}
#: The preset used when none is named (the command line). See docs/hardening.md.
DEFAULT_PRESET = "balanced"
#: Under this group size the restoration attack undoes most of the mixing even with hardening.
MIN_SAFE_GROUP = 11
#: How permute mode cuts a label's images into groups (docs/format.md section 2). Rule 1
#: (0.1.0): groups of ``donors + 1`` with a last group of one merged, which left pairs. Rule
#: 2: ``k = max(1, n // (donors + 1))`` groups of sizes that differ by at most one. Stores
#: record their rule.
PLAN_RULES = (1, 2)
PLAN_RULE = 2


def _positive_pair(value: object, name: str) -> tuple[int, int]:
    if isinstance(value, str):
        value = parse_pair(value, name)
    try:
        first, second = value  # type: ignore[misc]
    except (TypeError, ValueError):
        raise BadInputTypeError(
            f"{name} must be a pair of positive integers such as (96, 24), got {value!r}"
        ) from None
    pair = []
    for item in (first, second):
        if isinstance(item, bool) or not isinstance(item, int | _numpy_integer()):
            raise BadInputTypeError(
                f"{name} must be a pair of positive integers such as (96, 24), got {value!r}"
            )
        if int(item) < 1:
            raise BadInputError(f"{name} must be a pair of positive integers, got {value!r}")
        pair.append(int(item))
    return pair[0], pair[1]


def _numpy_integer() -> type:
    import numpy as np

    return np.integer


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
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | _numpy_integer()):
                raise BadInputTypeError(f"{name} must be a positive integer, got {value!r}")
            if int(value) < 1:
                raise BadInputError(f"{name} must be a positive integer, got {value!r}")
            object.__setattr__(self, name, int(value))
        if self.rounds > MAX_ROUNDS:
            raise BadInputError(f"rounds must be at most {MAX_ROUNDS}, got {self.rounds}")
        prob = self.prob
        if isinstance(prob, bool) or not isinstance(prob, int | float | _numpy_floating()):
            raise BadInputTypeError(f"prob must be a number in [0, 1], got {prob!r}")
        prob = float(prob)
        if not (0.0 <= prob <= 1.0) or math.isnan(prob):
            raise BadInputError(f"prob must be in [0, 1], got {self.prob!r}")
        object.__setattr__(self, "prob", prob)
        if self.mode not in MODES:
            raise BadInputError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        self._validate_hardening()
        if isinstance(self.plan_rule, bool) or self.plan_rule not in PLAN_RULES:
            raise BadInputError(
                f"plan_rule must be one of {', '.join(map(str, PLAN_RULES))}, got "
                f"{self.plan_rule!r}; this store may come from a newer fastmix"
            )
        object.__setattr__(self, "plan_rule", int(self.plan_rule))

    def with_plan_rule(self, rule: int) -> MixSpec:
        """Return the same spec planned with group rule ``rule`` (see :data:`PLAN_RULES`)."""
        return replace(self, plan_rule=rule)

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
        if isinstance(group, bool) or not isinstance(group, int | _numpy_integer()):
            raise BadInputTypeError(
                f"group must be an integer of at least 2 or 'window', got {group!r}"
            )
        if int(group) < 2:
            raise BadInputError(f"group must be at least 2 images or 'window', got {group!r}")
        object.__setattr__(self, "group", int(group))

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
        blur of 1 pixel; one-way. ``strong``: the same with blocks of a sixteenth of the side
        (grid 16x16: 12x12 on 192x192). See :data:`PRESET_PARAMETERS` and docs/hardening.md.

        ``block`` or ``grid`` among ``overrides`` replaces the preset's geometry; ``donors``
        without ``group`` replaces its groups (groups of ``donors + 1``), and so does paper
        mode (which has no groups).
        """
        if name not in PRESETS:
            raise BadInputError(
                f"privacy preset must be one of {', '.join(PRESETS)}, got {name!r}"
            )
        parameters = dict(PRESET_PARAMETERS[name])
        if "block" in overrides or "grid" in overrides:
            parameters.pop("block", None)
            parameters.pop("grid", None)
        if "group" not in overrides and ("donors" in overrides
                                         or overrides.get("mode", "permute") != "permute"):
            parameters.pop("group", None)
        parameters.update(overrides)
        return cls(**parameters)

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
        return data

    @classmethod
    def from_dict(cls, data: dict) -> MixSpec:
        """Rebuild a spec from :meth:`to_dict` output."""
        known = {"block", "grid", "donors", "prob", "rounds", "mode", "orient", "jitter",
                 "seam_blur", "group", "plan_rule"}
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
        return json.dumps(data, sort_keys=True, separators=(",", ":"))


def describe(spec: MixSpec, preset: str | None = None) -> str:
    """One line that states the mixing and hardening parameters of ``spec``."""
    parts = [spec.mode]
    if spec.block is not None:
        parts.append(f"block {spec.block[0]}x{spec.block[1]}")
    else:
        parts.append(f"grid {spec.grid[0]}x{spec.grid[1]}")  # type: ignore[index]
    if spec.mode == "permute":
        parts.append("groups of the whole label in a window" if spec.group == "window"
                     else f"groups of {spec.group_size(0)}")
    else:
        parts.append(f"donors {spec.donors}")
    parts.append(f"prob {spec.prob:g}")
    if spec.rounds != 1:
        parts.append(f"rounds {spec.rounds}")
    if spec.orient == "d4":
        parts.append("orientation d4 (flips only on non-square blocks)")
    elif spec.orient == "flip":
        parts.append("orientation flip")
    if spec.jitter is not None:
        brightness, contrast, gamma = spec.jitter
        parts.append(f"jitter brightness +-{brightness:g}, log-contrast +-{contrast:g}, "
                     f"log-gamma +-{gamma:g}")
    if spec.seam_blur > 0:
        parts.append(f"seam blur sigma {spec.seam_blur:g} px")
    if not spec.hardened:
        parts.append("no hardening")
    parts.append("reversible with the key" if spec.reversible else "one-way (cannot be unmixed)")
    prefix = f"privacy {preset}: " if preset else "mixing: "
    return prefix + ", ".join(parts)


def leaks(spec: MixSpec) -> list[str]:
    """Warnings for a hardened ``spec`` combined with a setting that leaks.

    The measured reasons (hardening issue, LFW faces 5x5 against an adaptive attack): groups
    under 11 are restored by boundary matching even with hardening; a block left in place
    (``prob < 1``) anchors the attack and the face; paper mode re-identifies about half the
    faces because each image keeps a mosaic of a few donors.
    """
    if not spec.hardened:
        return []
    found = []
    if spec.mode == "paper":
        found.append("paper mode with hardening still re-identifies about half the faces "
                     "(each image is a mosaic of a few donors); use --mode permute")
    else:
        if spec.group != "window" and spec.group_size(0) < MIN_SAFE_GROUP:
            found.append(f"groups of {spec.group_size(0)} are small: under {MIN_SAFE_GROUP} "
                         "the restoration attack undoes most of the mixing even with "
                         "hardening; use --group 11 or more (or --donors 10)")
    if spec.prob < 1.0:
        found.append(f"prob {spec.prob:g} leaves blocks in place, which anchor the "
                     "restoration attack; use --prob 1 with hardening")
    return found


def preset_names() -> tuple[str, ...]:
    """Return the preset names, fastest first."""
    return PRESETS


def _jitter_amplitudes(value: object) -> tuple[float, float, float] | None:
    if value is None or value is False or (isinstance(value, str) and value == "none"):
        return None
    if value is True or value == "default":
        return DEFAULT_JITTER
    message = ("jitter must be None, True or three amplitudes (brightness, log_contrast, "
               f"log_gamma) each in [0, 1], got {value!r}")
    if isinstance(value, str):
        try:
            value = [float(part) for part in value.split(",")]
        except ValueError:
            raise BadInputError(message) from None
    try:
        amplitudes = tuple(value)  # type: ignore[arg-type]
    except TypeError:
        raise BadInputTypeError(message) from None
    if len(amplitudes) != 3 or any(
            isinstance(item, bool) or not isinstance(item, int | float | _numpy_floating()
                                                     | _numpy_integer())
            for item in amplitudes):
        raise BadInputTypeError(message)
    amplitudes = tuple(float(item) for item in amplitudes)
    if not all(0.0 <= item <= 1.0 for item in amplitudes):
        raise BadInputError(message)
    if not any(amplitudes):
        raise BadInputError("jitter amplitudes are all zero; give jitter=None for no jitter")
    return amplitudes  # type: ignore[return-value]


def _seam_blur(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | _numpy_floating()
                                                 | _numpy_integer()):
        raise BadInputTypeError(f"seam_blur must be a number of pixels (sigma), got {value!r}")
    sigma = float(value)
    if math.isnan(sigma) or not 0.0 <= sigma <= MAX_SEAM_BLUR:
        raise BadInputError(
            f"seam_blur must be a sigma in pixels between 0 and {MAX_SEAM_BLUR:g}, got {value!r}"
        )
    return sigma


def _numpy_floating() -> type:
    import numpy as np

    return np.floating


_PAIR = re.compile(r"^\s*(\d+)\s*[xX*,]\s*(\d+)\s*$")


def parse_pair(text: str, name: str = "value") -> tuple[int, int]:
    """Parse ``"96x24"`` into ``(96, 24)``."""
    match = _PAIR.match(text)
    if not match or int(match.group(1)) < 1 or int(match.group(2)) < 1:
        raise BadInputError(f"{name} must look like 96x24 (two positive integers), got {text!r}")
    return int(match.group(1)), int(match.group(2))


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
