"""``fastmix verify``: check a mixed store against its original."""

from __future__ import annotations

import argparse
import sys

NAME = "verify"
HELP = "check that a mixed store keeps the invariants of its mode (and, with the key, unmixes)"
ORDER = 40
#: Shown under "examples" in ``fastmix verify --help``.
EXAMPLES = """\
fastmix verify train.h5 train-mixed.h5 --key-file secret.key
"""
#: Shown under "exit status" in ``fastmix verify --help``.
EXIT_STATUS = ("0 verified; 1 verification failed, or another failure; 2 bad input or usage "
               "(one line on stderr)")


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``fastmix verify``."""
    from fastmix.cli.dataset_options import add_images_argument, add_trust_unsealed_argument

    parser.add_argument("original", metavar="ORIGINAL", help="the store before mixing")
    parser.add_argument("mixed", metavar="MIXED", help="the mixed store")
    parser.add_argument("--key-file", metavar="KEY",
                        help="also check that the key reproduces the mixed store exactly")
    add_images_argument(parser)
    parser.add_argument("--labels", metavar="NAME",
                        help="labels dataset; default: the name recorded with MIXED")
    add_trust_unsealed_argument(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    """Verify; print ``verified: ...`` and exit 0, or ``verification failed: ...`` and exit 1."""
    from fastmix.cli.storecheck import load_key
    from fastmix.verify import verify_stores

    key = load_key(args.key_file, NAME) if args.key_file is not None else None
    result = verify_stores(args.original, args.mixed, key, images=args.images,
                           labels=args.labels, progress=not args.quiet,
                           trust_unsealed=args.trust_unsealed)
    if result.ok:
        print(result.message)
        return 0
    print(f"fastmix {NAME}: {result.message}", file=sys.stderr)
    return 1
