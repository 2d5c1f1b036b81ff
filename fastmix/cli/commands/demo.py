"""``fastmix demo``: the whole path on real sample images, from nothing."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "build a small labelled store from bundled sample images, mix it, preview and unmix it"
ORDER = 1
#: Shown under "examples" in ``fastmix demo --help``.
EXAMPLES = """\
fastmix demo --out demo
"""


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``fastmix demo``."""
    parser.add_argument("--out", default="demo", metavar="DIR",
                        help="folder for everything the demo writes; default ./demo")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Run the demo and print what it did."""
    from fastmix.demo import run_demo

    run_demo(args.out, progress=not args.quiet)
    return 0
