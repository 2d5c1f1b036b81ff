"""``fastmix export``: an HDF5 image store -> one PNG per image, one folder per class."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "write every image of a store as DIR/CLASS/000123.png (index kept in the name)"
ORDER = 50
#: Shown under "examples" in ``fastmix export --help``.
EXAMPLES = """\
fastmix export train-mixed.h5 train-mixed/
fastmix export train-mixed.h5 train-mixed/ --format jpeg --quality 90
"""


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``fastmix export``."""
    from fastmix.cli.dataset_options import add_images_argument, add_labels_argument

    parser.add_argument("store", metavar="STORE", help="the HDF5 store to export")
    parser.add_argument("directory", metavar="DIR", help="the folder to create")
    add_images_argument(parser)
    add_labels_argument(parser)
    parser.add_argument("--format", default="png", choices=("png", "jpeg"),
                        help="png (lossless, default) or jpeg (lossy, smaller, faster)")
    parser.add_argument("--quality", default="95", metavar="Q",
                        help="JPEG quality 1-95; default 95")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace DIR if it holds an earlier export (never other files)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar and no summary line")


def run(args: argparse.Namespace) -> int:
    """Export STORE into DIR and print the summary line."""
    from fastmix.errors import BadInputError
    from fastmix.images.export import export_store

    if not args.quality.isdigit() or not 1 <= int(args.quality) <= 95:
        raise BadInputError(f"--quality must be an integer from 1 to 95, got {args.quality!r}")
    report = export_store(args.store, args.directory, images=args.images, labels=args.labels,
                          overwrite=args.overwrite, progress=not args.quiet,
                          image_format=args.format, quality=int(args.quality))
    if not args.quiet:
        print(report.summary())
    return 0
