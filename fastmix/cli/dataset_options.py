"""The ``--images`` and ``--labels`` options: which datasets of a store a command reads.

Commands that read the labels' name from a store's fastmix record (``info``, ``verify``,
``audit``) add their own ``--labels``, with no default.
"""

from __future__ import annotations


def add_images_argument(group) -> None:
    """Add ``--images NAME`` (default ``images``) to ``group`` (a parser or an argument group)."""
    group.add_argument("--images", default="images", metavar="NAME",
                       help="images dataset; default 'images'")


def add_labels_argument(group) -> None:
    """Add ``--labels NAME`` (default ``labels``) to ``group`` (a parser or an argument group)."""
    group.add_argument("--labels", default="labels", metavar="NAME",
                       help="labels dataset; default 'labels'")
