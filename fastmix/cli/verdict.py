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


def add_time_argument(group, flag: str) -> None:
    """Add the audit's time budget, ``flag`` (``--time`` or ``--audit-time``), to ``group``."""
    group.add_argument(flag, type=float, default=None, metavar="SECONDS",
                       help="the attack's time budget, as estimated from the sample's size "
                            "(the same on every machine, so the figures are): fewer images "
                            "are attacked to fit it; default 180")


def time_budget(value: float | None, flag: str) -> float:
    """Return the time budget ``flag`` gave, or the default (refusing one that is not > 0)."""
    from fastmix.audit.strong import ATTACK_SECONDS
    from fastmix.errors import BadInputError

    if value is None:
        return ATTACK_SECONDS
    if not 0 < value < float("inf"):
        raise BadInputError(f"{flag} must be a positive number of seconds, got {value:g}")
    return float(value)


def warning_lines(report, command: str) -> list[str]:
    """Return the lines a weak, moderate or uncertain verdict prints on stderr; none if good.

    The first line gives the verdict and the figures that made it, each with its interval
    and the threshold it reached (:func:`fastmix.audit.report.reasons`), beside what "good"
    needs; the second what to change, worded from the settings the audit measured, or, for
    an uncertain verdict, how to decide it.
    """
    from fastmix.audit.report import UNCERTAIN, needs, reasons

    if report.verdict not in ("weak", "moderate", UNCERTAIN):
        return []
    verdict = report.verdict.upper()
    if report.verdict == UNCERTAIN and report.verdict_range:
        best, worst = report.verdict_range
        verdict += f" ({worst} or {best})"
    because = "; ".join(reasons(report)) or "no figure reached a threshold"
    warning = (f"fastmix {command}: WARNING: privacy audit verdict {verdict}: {because} "
               f"(good needs {needs('good')}; 95% intervals); see {PRIVACY_DOC}")
    if report.verdict == UNCERTAIN:
        flags = "--audit-sample, --audit-time" if command == "mix" else "--sample, --time"
        advice = (f"fastmix {command}: too few images to decide: {report.sampled} were "
                  f"attacked; audit more of them ({flags}) to narrow the intervals, or count "
                  "the verdict as the worse rating (--require does)")
        return [warning, advice]
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


def print_sample_notes(report, command: str) -> None:
    """Print on stderr what the report says about its sample (``fastmix mix --audit``).

    ``fastmix audit`` prints them in its summary: how many images the budget let the attack
    take, and whether groups larger than the sample make its figures understate the leak.
    """
    from fastmix.audit.report import MISLEADING_SSIM

    for warning in report.warnings:
        if warning != MISLEADING_SSIM:
            print(f"fastmix {command}: note: {warning}", file=sys.stderr)


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
    verdict = report.verdict.upper()
    if report.verdict == "uncertain" and report.verdict_range:
        verdict += f" ({report.verdict_range[1]} or {report.verdict_range[0]}, counted as " \
                   f"{report.verdict_range[1]})"
    print(f"fastmix {command}: requirement not met: --require {args.require}, but the audit "
          f"verdict is {verdict}{where} (exit status {EXIT_REQUIREMENT})", file=sys.stderr)
    return EXIT_REQUIREMENT


def _joined(items: list[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"
