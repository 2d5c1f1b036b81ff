"""``fastmix bench``: store throughput against a plain h5py copy, measured in the same run."""

from __future__ import annotations

import argparse

NAME = "bench"
HELP = "measure mix_store against a plain h5py copy of a generated store, per filter"
ORDER = 90
#: Shown under "examples" in ``fastmix bench --help``.
EXAMPLES = """\
fastmix bench
"""

DEFAULT_IMAGES = 4000
DEFAULT_FILTERS = "none,lz4,gzip-1"


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``fastmix bench``."""
    parser.add_argument("--images", default=str(DEFAULT_IMAGES), metavar="N",
                        help=f"images of 64x64x3 in the generated store; default "
                             f"{DEFAULT_IMAGES} (docs/performance.md uses 40000)")
    parser.add_argument("--filters", default=DEFAULT_FILTERS, metavar="LIST",
                        help="comma-separated filters: none, lz4, gzip-1, gzip, zstd, blosc2, "
                             f"lzf; default {DEFAULT_FILTERS}")
    parser.add_argument("--repeats", default="3", metavar="N",
                        help="timed runs of each (medians are compared); default 3")
    parser.add_argument("--memory", default="1GiB", metavar="SIZE",
                        help="mix_store memory budget; default 1GiB")
    parser.add_argument("--dir", metavar="FOLDER",
                        help="where the temporary stores go; default: the temporary folder")
    parser.add_argument("--quiet", action="store_true", help="print only the table")


def _filters(text: str) -> tuple[str, ...]:
    from fastmix.benchmark.store import filter_options
    from fastmix.errors import BadInputError

    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names:
        raise BadInputError(f"--filters must name at least one filter, got {text!r}")
    for name in names:
        try:
            filter_options(name)
        except ValueError as error:
            raise BadInputError(f"--filters: {error}") from None
    return names


def run(args: argparse.Namespace) -> int:
    """Generate the store, run the benchmark and print the table."""
    import os
    import sys

    from fastmix.benchmark.store import format_store_table, run_store_benchmark
    from fastmix.errors import BadInputError
    from fastmix.units import parse_memory, parse_positive_int

    images = parse_positive_int(args.images, "--images")
    repeats = parse_positive_int(args.repeats, "--repeats")
    filters = _filters(args.filters)
    parse_memory(args.memory)
    if args.dir is not None and not os.path.isdir(args.dir):
        raise BadInputError(f"--dir {args.dir!r} is not an existing folder")
    if not args.quiet:
        print(f"benchmarking mix_store on {images:,} images of 64x64x3 for filters "
              f"{', '.join(filters)} ({repeats} runs each; this takes a while)",
              file=sys.stderr, flush=True)
    rows = run_store_benchmark(images=images, filters=filters, repeats=repeats,
                               memory=args.memory, directory=args.dir)
    print(format_store_table(rows))
    if not args.quiet:
        print("ratio = mix_store throughput / plain h5py chunk-by-chunk copy with the same "
              "filters, medians of runs that alternate on the same warm file")
    return 0
