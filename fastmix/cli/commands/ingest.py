"""``fastmix ingest``: a folder of labelled image files -> an HDF5 image store."""

from __future__ import annotations

import argparse

NAME = "ingest"
HELP = "decode a folder of labelled images (ImageFolder layout or CSV) into an HDF5 store"
ORDER = 5
#: Shown under "examples" in ``fastmix ingest --help``.
EXAMPLES = """\
fastmix ingest photos/ train.h5 --size 192x192 --compression lz4
fastmix ingest photos/ train.h5 --csv labels.csv
"""


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``fastmix ingest``."""
    parser.add_argument("image_dir", metavar="IMAGE_DIR",
                        help="one sub-folder of images per class (class names sorted, label = "
                             "index), or the folder the --csv paths are relative to")
    parser.add_argument("store", metavar="STORE", help="the HDF5 store to write")
    parser.add_argument("--size", default="192x192", metavar="HxW",
                        help="resize every image to H x W pixels (Lanczos); default 192x192")
    parser.add_argument("--channels", default="3", choices=("1", "3"),
                        help="3: RGB (grey is repeated, alpha dropped), 1: grey; default 3")
    parser.add_argument("--compression", default="none", choices=("none", "gzip", "lz4", "zstd"),
                        help="filter of the images dataset; default none")
    parser.add_argument("--csv", metavar="FILE",
                        help="read 'path,label' rows from FILE instead of class sub-folders")
    parser.add_argument("--strict", action="store_true",
                        help="fail (exit 2) on an unreadable image instead of skipping it")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing STORE")
    parser.add_argument("--follow-symlinks", action="store_true",
                        help="read symbolic links that lead out of IMAGE_DIR (ignored by "
                             "default)")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bar and no summary line")


def run(args: argparse.Namespace) -> int:
    """Ingest IMAGE_DIR into STORE and print the summary line."""
    from fastmix.cli.console import print_warnings
    from fastmix.images.ingest import ingest_folder
    from fastmix.units import parse_pair

    with print_warnings(NAME):  # the skipped files, as one warning line
        report = ingest_folder(args.image_dir, args.store,
                               size=parse_pair(args.size, "--size"),
                               channels=int(args.channels), compression=args.compression,
                               csv=args.csv, strict=args.strict, progress=not args.quiet,
                               overwrite=args.overwrite, follow_symlinks=args.follow_symlinks)
    if not args.quiet:
        print(report.summary())
    return 0
