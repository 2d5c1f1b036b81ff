"""Checks of command-line values made before any work starts.

The store engine validates stores, destinations and keys itself; what is checked here is
what the command line must decide before it calls the engine: the flags' text, and, for
``--new-key``, that the key file can be created and the source store is usable, so that no
key is made for a run that cannot start. Each check raises a
:class:`~fastmix.errors.BadInputError` whose one line says what was found and what to do.
"""

from __future__ import annotations

import os

from fastmix.errors import BadInputError
from fastmix.units import (  # re-exported: they moved to fastmix.units
    parse_positive_int as parse_positive_int,
)
from fastmix.units import (
    parse_probability as parse_probability,
)


def register_filters() -> None:
    """Make the hdf5plugin filters (LZ4, Zstd, Blosc, Blosc2, Bitshuffle) readable by h5py.

    Importing hdf5plugin registers them with HDF5 for this process; without it, a store that
    uses one of them cannot be read through h5py.
    """
    import hdf5plugin  # noqa: F401


def check_new_key_path(path: str | os.PathLike) -> None:
    """Refuse ``--new-key`` over an existing file or into a folder that does not exist."""
    text = os.fspath(path)
    if os.path.lexists(text):
        raise BadInputError(
            f"key file {text!r} already exists; fastmix never overwrites a key. Drop --new-key "
            "to use it, or choose another path"
        )
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise BadInputError(f"cannot create key file {text!r}: folder {folder!r} does not exist")


def load_key(path: str | os.PathLike, command: str, strict: bool = False):
    """Load the key of ``--key-file``; a missing file gets the hint that suits ``command``.

    Only ``mix`` can make a key (``--new-key``); every other command needs the key the store
    was mixed with, and is never told to make one. ``strict`` is :meth:`Key.load`'s.
    """
    from fastmix.keys import Key

    text = os.fspath(path)
    if not os.path.lexists(text):
        if command == "mix":
            raise BadInputError(f"key file {text!r} does not exist; check the path, or add "
                                "--new-key to make a new key there")
        raise BadInputError(f"key file {text!r} does not exist; {command} needs the key file "
                            "the store was mixed with: check the path")
    return Key.load(text, strict=strict)


def check_source(path: str | os.PathLike, images: str, labels: str | None) -> None:
    """Open the store read-only, validate its images and labels, and close it.

    Raises :class:`BadInputError` for a missing, non-HDF5, truncated or damaged file, a
    missing dataset, images of the wrong rank, labels of the wrong length or with NaN.
    """
    from fastmix.store.hdf5.access import open_store

    open_store(path, images=images, labels=labels).close()
