"""``fastmix audit``: measure what a mixed store leaks, with a restoration attack."""

from __future__ import annotations

import argparse

from fastmix.cli import EXIT_STATUS_REQUIRE as EXIT_STATUS  # noqa: F401 - read by --help

NAME = "audit"
HELP = ("measure what a mixed store leaks about its original (restoration attack; the key, "
        "if given, only locates the blocks)")
ORDER = 45
#: Shown under "examples" in ``fastmix audit --help``.
EXAMPLES = """\
fastmix audit train.h5 train-mixed.h5 --key-file secret.key
fastmix audit train.h5 train-mixed.h5 --key-file secret.key --json > audit.json
fastmix audit train.h5 train-mixed.h5 --key-file secret.key --require good
"""


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``fastmix audit``."""
    from fastmix.cli.dataset_options import add_images_argument
    from fastmix.cli.verdict import add_require_argument, add_time_argument

    parser.add_argument("original", metavar="ORIGINAL", help="the store before mixing")
    parser.add_argument("mixed", metavar="MIXED", help="the mixed store")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (an error too, as {\"error\": ...}); "
                             "with --require it has 'required' and 'requirement_met'")
    add_require_argument(parser, NAME)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument("--key-file", metavar="KEY",
                        help="the key MIXED was made with: block provenance comes from its "
                             "plan, the attack is given the true groups; needed for a "
                             "hardened store (the attack itself never sees the key)")
    parser.add_argument("--sample", type=int, default=1000, metavar="N",
                        help="attack at most N images per label; default 1000")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of sampling, attack and bootstrap; default 0")
    parser.add_argument("--utility", action="store_true",
                        help="also train classifiers on mixed vs original images")
    parser.add_argument("--folds", type=int, default=5, metavar="K",
                        help="stratified splits of the utility check; default 5")
    parser.add_argument("--no-attack", action="store_true",
                        help="only the ground truth and the leak that needs no attack")
    add_images_argument(parser)
    parser.add_argument("--labels", metavar="NAME",
                        help="labels dataset; default: the name recorded with MIXED, or 'labels'")
    parser.add_argument("--memory", default="2GiB", metavar="SIZE",
                        help="memory the audit holds (images read and the attack); fewer "
                             "images are audited when the sample does not fit; default 2GiB")
    add_time_argument(parser, "--time")
    geometry = parser.add_argument_group(
        "mixing parameters", "only for a mixed store without fastmix_* attributes")
    shape = geometry.add_mutually_exclusive_group()
    shape.add_argument("--block", metavar="HxW", help="block size, e.g. 96x24")
    shape.add_argument("--grid", metavar="RxC", help="block grid, e.g. 2x8")
    geometry.add_argument("--mode", choices=("permute", "paper"), help="mixing mode")
    geometry.add_argument("--donors", type=int, help="donors as mixed")
    geometry.add_argument("--prob", type=float, help="prob as mixed")
    geometry.add_argument("--window", type=int, metavar="N", help="window as mixed")


def run(args: argparse.Namespace) -> int:
    """Audit and print the summary (or JSON); exit 0, or 3 when ``--require`` is not met."""
    from fastmix.audit._deps import require
    from fastmix.cli.storecheck import load_key
    from fastmix.errors import BadInputError
    from fastmix.spec import MixSpec
    from fastmix.units import parse_pair

    for module in ("scipy", "skimage", "sklearn"):
        require(module)
    from fastmix.audit import audit_stores

    if args.sample < 2:
        raise BadInputError(f"--sample must be at least 2, got {args.sample}")
    if args.require is not None and args.no_attack:
        raise BadInputError("--require needs the verdict of the restoration attack, which "
                            "--no-attack skips; drop one of them")
    spec = None
    given = {"donors": args.donors, "prob": args.prob, "mode": args.mode}
    if args.block or args.grid:
        given["block"] = parse_pair(args.block, "--block") if args.block else None
        given["grid"] = parse_pair(args.grid, "--grid") if args.grid else None
        spec = MixSpec(**{name: value for name, value in given.items() if value is not None})
    elif any(value is not None for value in given.values()):
        raise BadInputError("--mode, --donors and --prob need --block or --grid as well")
    from fastmix.cli.verdict import time_budget

    seconds = time_budget(args.time, "--time")
    key = load_key(args.key_file, NAME) if args.key_file else None
    report = audit_stores(args.original, args.mixed, images=args.images, labels=args.labels,
                          spec=spec, window=args.window, sample=args.sample, seed=args.seed,
                          attack=not args.no_attack, utility=args.utility,
                          utility_folds=args.folds, key=key, progress=not args.quiet,
                          memory=args.memory, seconds=seconds)
    from fastmix.cli.verdict import enforce, print_warning, requirement_met

    if args.json:
        import json

        data = report.to_dict()
        if args.require is not None:
            data["required"] = args.require
            data["requirement_met"] = requirement_met(report, args.require)
        print(json.dumps(data, indent=2), flush=True)
    else:
        print(report.summary(), flush=True)
    print_warning(report, NAME)
    return enforce(report, args, NAME)
