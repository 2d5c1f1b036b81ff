"""The ``--privacy`` preset and the hardening flags of ``fastmix mix``.

Wiring (in a command's ``register``, after its other arguments)::

    add_hardening_arguments(parser)

and in its ``run``::

    spec, lines, warnings = spec_from_arguments(args)

:func:`add_hardening_arguments` makes ``--mode``, ``--donors``, ``--prob`` and ``--rounds``
default to ``None`` so that the preset fills what the user did not give.
"""

from __future__ import annotations

import argparse

_MIXING_DESTINATIONS = ("mode", "donors", "prob", "rounds")
#: The flags that set a parameter of the spec, given to :meth:`MixSpec.from_text` as typed.
_SPEC_DESTINATIONS = ("block", "grid", *_MIXING_DESTINATIONS, "orient", "jitter", "seam_blur",
                      "group")


def add_scheme_arguments(parser: argparse.ArgumentParser):
    """Add ``--mode``, ``--block`` or ``--grid``, ``--donors``, ``--prob`` and ``--rounds``.

    Returns the argument group, for a command to add its own flags to it.
    """
    scheme = parser.add_argument_group("mixing scheme",
                                       "each defaults to the --privacy preset's value")
    scheme.add_argument("--mode", metavar="permute|paper",
                        help="permute (bijective; reversible without one-way hardening) or "
                             "paper (substitution, one-way)")
    from fastmix.presets import PRESET_PARAMETERS
    from fastmix.spec import DEFAULT_GRID

    grids = ", ".join(f"{name} {'x'.join(map(str, values.get('grid', DEFAULT_GRID)))}"
                      for name, values in PRESET_PARAMETERS.items())
    geometry = scheme.add_mutually_exclusive_group()
    geometry.add_argument("--block", metavar="HxW", help="block size in pixels, e.g. 96x24")
    geometry.add_argument("--grid", metavar="ROWSxCOLS",
                          help=f"block grid, e.g. 2x8; default the preset's ({grids})")
    scheme.add_argument("--donors", metavar="N",
                        help="donor images per image (permute: groups of N+1)")
    scheme.add_argument("--prob", metavar="P",
                        help="probability that a block position is mixed")
    scheme.add_argument("--rounds", metavar="N", help="mixing rounds; default 1")
    return scheme


def add_hardening_arguments(parser: argparse.ArgumentParser, several: bool = False) -> None:
    """Add ``--privacy``, ``--orient``, ``--jitter``, ``--seam-blur`` and ``--group``.

    With ``several``, ``--privacy`` takes a comma-separated list of presets (read it with
    :func:`specs_from_arguments`).
    """
    from fastmix.presets import DEFAULT_PRESET, preset_names

    group = parser.add_argument_group(
        "privacy preset and hardening",
        "a preset sets every mixing parameter, the block geometry included; any flag given "
        "beside it overrides that parameter (--block or --grid the geometry). fast: the "
        "paper's parameters (grid 2x8, donors 10, prob 0.5), no hardening, reversible. "
        "balanced: permute, prob 1, grid 12x12 (16x16 blocks on 192x192), groups of the "
        "whole label in a window, keyed d4 orientation, jitter and a 1-pixel seam blur; "
        "one-way. strong: the same on a 24x24 grid (8x8 blocks on 192x192).")
    if several:
        group.add_argument("--privacy", metavar=",".join(preset_names()), default=None,
                           help=f"privacy presets, comma-separated; default {DEFAULT_PRESET}")
    else:
        group.add_argument("--privacy", choices=preset_names(), default=None,
                           help=f"privacy preset; default {DEFAULT_PRESET}")
    group.add_argument("--orient", choices=("none", "flip", "d4"), default=None,
                       help="keyed per-block orientation (d4 falls back to flip on "
                            "non-square blocks); keeps permute reversible")
    group.add_argument("--jitter", metavar="none|default|B,C,G", default=None,
                       help="keyed per-block brightness, log-contrast and log-gamma "
                            "amplitudes on a [0, 1] scale; default means 0.1,0.2,0.2; one-way")
    group.add_argument("--seam-blur", metavar="SIGMA", default=None,
                       help="Gaussian sigma in pixels of the blur across block seams; 0 for "
                            "none; one-way")
    group.add_argument("--group", metavar="N|window", default=None,
                       help="permute: images per group (default donors + 1), or 'window' for "
                            "all same-label images of a window")
    present = {action.dest for action in parser._actions}
    parser.set_defaults(**{name: None for name in _MIXING_DESTINATIONS if name in present})


def spec_from_arguments(args: argparse.Namespace):
    """Return the spec, the parameter line to print, and the leak warnings of the parsed flags.

    Returns
    -------
    tuple of (MixSpec, str, list of str)
        The spec; one line naming the preset and its parameters (print it unless
        ``--quiet``); the warnings for hardened specs that leak (print each one).
    """
    from fastmix.presets import DEFAULT_PRESET, describe, leaks
    from fastmix.spec import MixSpec

    preset = getattr(args, "privacy", None) or DEFAULT_PRESET
    texts = {name: getattr(args, name) for name in _SPEC_DESTINATIONS
             if getattr(args, name, None) is not None}
    spec = MixSpec.from_text(preset, texts, {name: "--" + name.replace("_", "-")
                                             for name in texts})
    shown = preset + (" with overrides" if texts.keys() - {"block", "grid"} else "")
    return spec, describe(spec, shown), leaks(spec)


def specs_from_arguments(args: argparse.Namespace) -> dict:
    """Return ``{preset name: spec}`` for a comma-separated ``--privacy``, each with the flags.

    Every other mixing flag given overrides its parameter in each preset, as
    :func:`spec_from_arguments` does for one.
    """
    from fastmix.errors import BadInputError
    from fastmix.presets import DEFAULT_PRESET, preset_names

    text = getattr(args, "privacy", None) or DEFAULT_PRESET
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in preset_names()]
    if not names or unknown:
        raise BadInputError(f"--privacy must list presets from {', '.join(preset_names())} "
                            f"separated by commas, got {text!r}")
    specs = {}
    for name in dict.fromkeys(names):
        one = argparse.Namespace(**{**vars(args), "privacy": name})
        specs[name] = spec_from_arguments(one)[0]
    return specs
