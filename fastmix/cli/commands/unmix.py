"""``fastmix unmix``: restore a permute-mode store with its key, bit for bit."""

from __future__ import annotations

import argparse

NAME = "unmix"
HELP = ("restore a store mixed in permute mode, with its key (into a new file or in place; in "
        "place it also undoes an interrupted in-place mix)")
ORDER = 20
#: Shown under "examples" in ``fastmix unmix --help``.
EXAMPLES = """\
fastmix unmix train-mixed.h5 restored.h5 --key-file secret.key
fastmix unmix train.h5 --in-place --key-file secret.key
"""


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``fastmix unmix``."""
    from fastmix.cli.commands.mix import (
        add_cluster_options,
        add_resource_options,
        add_store_options,
    )
    from fastmix.cli.dataset_options import add_trust_unsealed_argument

    parser.add_argument("source", metavar="SRC", help="the mixed HDF5 store")
    parser.add_argument("destination", metavar="DST", nargs="?",
                        help="the restored store (omit with --in-place)")
    parser.add_argument("--key-file", metavar="KEY", required=True,
                        help="the key file the store was mixed with")
    add_store_options(parser)
    add_trust_unsealed_argument(parser)
    add_resource_options(parser, window=False)
    add_cluster_options(parser)


def run(args: argparse.Namespace) -> int:
    """Unmix SRC into DST (or in place) and print the summary line."""
    from fastmix.cli.commands.mix import check_targets, cluster_client
    from fastmix.cli.console import print_warnings
    from fastmix.cli.storecheck import load_key, register_filters
    from fastmix.store import unmix_store
    from fastmix.units import parse_memory

    register_filters()
    memory = parse_memory(args.memory)
    check_targets(args)
    with print_warnings(NAME):
        key = load_key(args.key_file, NAME)
    with print_warnings(NAME), cluster_client(args) as client:
        report = unmix_store(
            args.source, None if args.in_place else args.destination, key=key, memory=memory,
            images=args.images, progress=not args.quiet, in_place=args.in_place,
            resume=args.resume, overwrite=args.overwrite, client=client, shards=args.shards,
            backend=args.backend, trust_unsealed=args.trust_unsealed)
    if not args.quiet:
        print(report.summary())
    return 0
