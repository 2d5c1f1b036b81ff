"""The audit verdict on the command line: a weak or moderate verdict's warning, and ``--require``.

``fastmix mix`` and ``fastmix audit`` share both.
"""

from __future__ import annotations

import argparse
import sys

#: The levels ``--require`` accepts, best first.
LEVELS = ("good", "moderate")
#: Where the docs explain the verdicts and what the settings measured.
PRIVACY_DOC = "docs/privacy.md"


def add_require_argument(group, command: str) -> None:
    """Add ``--require good|moderate`` to ``group`` (a parser or an argument group)."""
    audits = (" (implies --audit)" if command == "mix" else "")
    group.add_argument("--require", choices=LEVELS, default=None, metavar="good|moderate",
                       help=f"exit with status 3 when the audit verdict is worse than this"
                            f"{audits}; the mixed store is kept either way")


def warning_lines(report, command: str) -> list[str]:
    """Return the lines a weak or moderate verdict prints on stderr; none for a good one.

    The first line gives the verdict and the figures it rests on beside what "good" needs;
    the second what to change, worded from the settings the audit measured.
    """
    from fastmix.audit.report import needs

    if report.verdict not in ("weak", "moderate"):
        return []
    figures = []
    if report.attack:
        figures.append(f"advantage A {_figure(report.advantage)}")
    figures.append(f"{_share(report.reidentified_fraction)} re-identified")
    if report.attack:
        figures.append(f"{_share(report.restored_90_fraction)} of images restored >= 90%")
    warning = (f"fastmix {command}: WARNING: privacy audit verdict {report.verdict.upper()}: "
               f"{', '.join(figures)} (good needs {needs('good')}); see {PRIVACY_DOC}")
    return [warning, f"fastmix {command}: {_advice(report.settings, command)}"]


def _advice(settings: dict, command: str) -> str:
    """Return what to change, from the settings the store was mixed with."""
    from fastmix.presets import preset_names

    block = settings.get("block")
    changes = ["smaller blocks (--block" + (f"; these were {block[0]}x{block[1]})"
                                              if block else ")")]
    hardened = (settings.get("orient", "none") != "none" or settings.get("jitter") is not None
                or (settings.get("seam_blur") or 0) > 0)
    # Whole-label groups were measured with hardening only, so they are offered with it.
    if settings.get("mode") == "paper" or not hardened:
        changes.append(f"a hardened preset (--privacy {preset_names()[-1]}, and --group window "
                       "for groups of the whole label in a window)")
    elif settings.get("group") != "window":
        changes.append("groups of the whole label in a window (--group window)")
    again = "mix again" if command == "mix" else "run fastmix mix again"
    return (f"to protect more, {again} with {_joined(changes)}, and audit again; each lowered "
            f"A and re-identification where {PRIVACY_DOC} measured it")


def print_warning(report, command: str) -> None:
    """Print :func:`warning_lines` on stderr."""
    for line in warning_lines(report, command):
        print(line, file=sys.stderr)


def requirement_met(report, required: str | None) -> bool | None:
    """Whether the verdict of ``report`` meets ``required``; ``None`` when nothing is required."""
    return None if required is None else report.meets(required)


def enforce(report, args: argparse.Namespace, command: str, kept: str | None = None) -> int:
    """Return the exit status of ``--require``: 0, or 3 with one line on stderr.

    ``kept`` names the mixed store a failed requirement leaves in place (``fastmix mix``).
    """
    from fastmix.cli import EXIT_OK, EXIT_REQUIREMENT

    if requirement_met(report, args.require) is not False:
        return EXIT_OK
    where = (f"; the mixed store {kept!r} is kept (it is complete and valid: the requirement "
             "is a policy; delete it or mix again)" if kept else "")
    print(f"fastmix {command}: requirement not met: --require {args.require}, but the audit "
          f"verdict is {report.verdict.upper()}{where} (exit status {EXIT_REQUIREMENT})",
          file=sys.stderr)
    return EXIT_REQUIREMENT


def _figure(value: float) -> str:
    return "n/a" if value is None or value != value else f"{value:.2f}"


def _share(value: float) -> str:
    return "n/a" if value is None or value != value else f"{value:.0%}"


def _joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"
