"""The options that say how a command reads a store.

``--images`` and ``--labels`` name its datasets; ``--trust-unsealed`` lets the commands that
trust a mixed store's record (``unmix``, ``verify``) use one that carries no MAC. Commands that
read the labels' name from a store's fastmix record (``info``, ``verify``, ``audit``) add their
own ``--labels``, with no default.
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


def add_trust_unsealed_argument(group) -> None:
    """Add ``--trust-unsealed``: use a record that carries no MAC (an older fastmix's)."""
    group.add_argument("--trust-unsealed", action="store_true",
                       help="accept a mixed store whose record carries no MAC (mixed by "
                            "fastmix 0.2 or older), with a warning; an edit of such a record "
                            "cannot be detected")
