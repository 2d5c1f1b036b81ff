"""The privacy presets (docs/hardening.md): their parameters, and how a spec is described.

A preset is a plain set of :class:`~fastmix.MixSpec` parameters; :meth:`MixSpec.preset
<fastmix.MixSpec.preset>` builds the spec from :func:`preset_parameters`. This module sits
below ``spec.py`` (which imports it), so it holds parameters and text only, and reads a spec
through :class:`_Spec`, what :func:`describe` and :func:`leaks` use of one.
"""

from __future__ import annotations

from typing import Any, Protocol

from fastmix.errors import BadInputError

#: The jitter amplitudes ``(brightness, log_contrast, log_gamma)`` that ``jitter=True`` and
#: ``"default"`` mean, and the hardened presets use.
DEFAULT_JITTER = (0.10, 0.20, 0.20)
PRESETS = ("fast", "balanced", "strong")
_HARDENED = {"mode": "permute", "prob": 1.0, "orient": "d4", "jitter": DEFAULT_JITTER,
             "seam_blur": 1.0}
#: Each preset's parameters. The geometry is part of the privacy (issue 13): on the default
#: 2x8 grid (96x24 blocks on 192x192) the hardened groups of 11 were weak on faces and
#: photographs, so ``balanced`` and ``strong`` cut blocks relative to the image side and mix
#: whole labels. ``strong`` is the most private geometry the frontier against the strong
#: attack measured (issue 22, docs/frontier.md): grid 24x24 (8x8 on 192x192), worst A 0.09
#: over photos, faces and colour photos, where grid 16x16 (its earlier geometry) was 0.21,
#: for 5 points less on the photo task with the recipe. ``fast`` stays the paper's parameters
#: on the default grid.
PRESET_PARAMETERS: dict[str, dict] = {
    "fast": {"mode": "permute", "donors": 10, "prob": 0.5},
    "balanced": {**_HARDENED, "grid": (12, 12), "group": "window"},
    "strong": {**_HARDENED, "grid": (24, 24), "group": "window"},
}
#: The preset used when none is named (the command line). See docs/hardening.md.
DEFAULT_PRESET = "balanced"
#: Under this group size the restoration attack undoes most of the mixing even with hardening.
MIN_SAFE_GROUP = 11


def preset_names() -> tuple[str, ...]:
    """Return the preset names, fastest first."""
    return PRESETS


def preset_parameters(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """Return the parameters of preset ``name`` with ``overrides`` applied (see MixSpec.preset).

    ``block`` or ``grid`` among ``overrides`` replaces the preset's geometry; ``donors``
    without ``group`` replaces its groups, and so does paper mode (which has no groups).
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
    return parameters


class _Spec(Protocol):
    """What :func:`describe` and :func:`leaks` read of a :class:`~fastmix.MixSpec`."""

    @property
    def mode(self) -> str: ...
    @property
    def block(self) -> tuple[int, int] | None: ...
    @property
    def grid(self) -> tuple[int, int] | None: ...
    @property
    def donors(self) -> int: ...
    @property
    def prob(self) -> float: ...
    @property
    def rounds(self) -> int: ...
    @property
    def orient(self) -> str: ...
    @property
    def jitter(self) -> tuple[float, float, float] | None: ...
    @property
    def seam_blur(self) -> float: ...
    @property
    def group(self) -> int | str | None: ...
    @property
    def hardened(self) -> bool: ...
    @property
    def reversible(self) -> bool: ...
    def group_size(self, window_count: int) -> int: ...


def describe(spec: _Spec, preset: str | None = None) -> str:
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


def leaks(spec: _Spec) -> list[str]:
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
