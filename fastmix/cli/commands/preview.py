"""``fastmix preview``: a PNG grid of a few images per class, originals beside mixed."""

from __future__ import annotations

import argparse

NAME = "preview"
HELP = "draw a PNG grid of a few images per class (original beside mixed with --original)"
ORDER = 45
#: Shown under "examples" in ``fastmix preview --help``.
EXAMPLES = """\
fastmix preview train-mixed.h5 --original train.h5 -o preview.png
"""


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``fastmix preview``."""
    from fastmix.cli.dataset_options import add_images_argument, add_labels_argument

    parser.add_argument("store", metavar="STORE", help="the (mixed) store to show")
    parser.add_argument("--original", metavar="ORIGINAL",
                        help="the store STORE was mixed from; shown on the left of each pair")
    parser.add_argument("-o", "--output", required=True, metavar="PNG",
                        help="the picture to write, e.g. grid.png (.jpg and .webp work too)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing picture")
    parser.add_argument("--count", default="4", metavar="N", help="images per class; default 4")
    parser.add_argument("--seed", default="0", metavar="N",
                        help="seed of the random choice of images; default 0")
    add_images_argument(parser)
    add_labels_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Draw the grid and print where it went."""
    from fastmix.images.preview import preview_grid
    from fastmix.units import parse_integer

    layout = preview_grid(args.store, args.output, original=args.original,
                          count=parse_integer(args.count, "--count", 1),
                          seed=parse_integer(args.seed, "--seed", 0),
                          images=args.images, labels=args.labels, overwrite=args.overwrite)
    width, height = layout.size
    print(f"preview of {layout.rows} class(es) x {layout.count} image(s), {width}x{height} "
          f"pixels -> {args.output}")
    return 0
