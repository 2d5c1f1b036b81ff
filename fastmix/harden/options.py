"""Privacy presets, their description and the combinations that leak.

The measured reasons (hardening issue, LFW faces 5x5 against an adaptive attack): groups
under 11 are restored by boundary matching even with hardening; a block left in place
(``prob < 1``) anchors the attack and the face; paper mode re-identifies about half the
faces because each image keeps a mosaic of a few donors.
"""

from __future__ import annotations

from fastmix.spec import PRESETS, MixSpec

# The preset used when none is named. See docs/hardening.md for the measurements.
DEFAULT_PRESET = "balanced"
MIN_SAFE_GROUP = 11


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
    """Warnings for a hardened ``spec`` combined with a setting that leaks (measured)."""
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
    """The preset names, fastest first."""
    return PRESETS
