"""New output files: where fastmix may write one, and how it appears whole or not at all.

:func:`check_output_path` is the one rule for the path of every file fastmix writes (a new
store, an export, a preview): never onto a key file or an input of the run, never onto a
folder or a special file, onto an existing file only with ``overwrite``.
:func:`check_destination` adds the new-file run's own (never its source).
:func:`atomic_output` writes under a hidden temporary name beside the destination, fsyncs it,
renames it into place and fsyncs the folder; on any failure the temporary is removed and the
destination is left as it was.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

from fastmix.errors import BadInputError, check_regular_file, hint
from fastmix.keys import is_key_file
from fastmix.store.durable.fsync import fsync_folder_of, fsync_path

TEMPORARY_MARK = ".fastmix-tmp-"


def temporary_path(destination: str) -> str:
    """Return the hidden temporary name beside ``destination`` used while it is written."""
    folder, name = os.path.split(os.path.abspath(destination))
    return os.path.join(folder, f".{name}{TEMPORARY_MARK}{os.getpid()}")


def _remove_stale_temporaries(destination: str) -> None:
    """Delete temporaries of ``destination`` left by processes that no longer run."""
    folder, name = os.path.split(os.path.abspath(destination))
    prefix = f".{name}{TEMPORARY_MARK}"
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        pid_text = entry[len(prefix):]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, entry))
        except PermissionError:
            pass


def check_output_path(destination: str | os.PathLike[str], overwrite: bool, *,
                      protected: tuple = (), role: str = "destination") -> str:
    """Validate the path of a new output file and return it as a path string.

    The one rule for every file fastmix writes: never onto a fastmix key file (judged by
    content, whatever ``overwrite`` says), never onto one of the ``protected`` paths (the
    run's source stores and key file), never onto a folder or a special file, and onto an
    existing file only with ``overwrite``.
    """
    destination = os.fspath(destination)
    if os.path.basename(destination) in ("", ".", ".."):
        raise BadInputError(
            f"{role} {destination!r} names a folder, not a file; give a file path "
            f"such as {os.path.join(destination, 'mixed.h5')!r}"
        )
    for path in protected:
        if path is not None and same_path(os.fspath(path), destination):
            raise BadInputError(
                f"{role} {destination!r} is also an input of this run ({os.fspath(path)!r}); "
                "give another path for the output"
            )
    if os.path.lexists(destination):
        if os.path.isdir(destination):
            raise BadInputError(
                f"{role} {destination!r} is a folder (a directory); give a file path"
            )
        if is_key_file(destination):
            raise BadInputError(
                f"{role} {destination!r} is a fastmix key file; fastmix never writes over a "
                "key, even when told to overwrite. Choose another path"
            )
        if os.path.exists(destination):
            check_regular_file(destination, role)
        if not overwrite:
            raise BadInputError(
                f"{role} {destination!r} already exists; choose another path or "
                f"{hint('overwrite')} to replace it"
            )
    folder = os.path.dirname(os.path.abspath(destination))
    if not os.path.isdir(folder):
        raise BadInputError(
            f"the folder of {role} {destination!r} does not exist; create it first"
        )
    if not os.access(folder, os.W_OK):
        raise BadInputError(f"cannot write in {folder!r}: permission denied")
    return destination


def same_path(first: str, second: str) -> bool:
    """Whether two paths name one file (by identity where both exist, else by path)."""
    try:
        return os.path.samefile(first, second)
    except OSError:
        return os.path.abspath(first) == os.path.abspath(second)


def check_destination(source: str, destination: str | os.PathLike[str] | None, overwrite: bool,
                      key_file: object = None) -> str:
    """Validate the destination of a new-file run and return it as a path string."""
    if destination is None:
        raise BadInputError(
            f"give a destination file for the output, or {hint('in_place')} to rewrite the "
            "source store"
        )
    destination = os.fspath(destination)
    if os.path.exists(destination) and same_path(source, destination):
        raise BadInputError(
            f"destination {destination!r} is the source store; give another file, or "
            f"{hint('in_place')} to rewrite it"
        )
    return check_output_path(destination, overwrite, protected=(source, key_file))


@contextlib.contextmanager
def atomic_output(destination: str, overwrite: bool) -> Iterator[str]:
    """Yield a temporary path; on success it is fsynced and renamed to ``destination``.

    On any failure, ``KeyboardInterrupt`` included, the temporary file is removed and the
    destination is left as it was.
    """
    _remove_stale_temporaries(destination)
    temporary = temporary_path(destination)
    with contextlib.suppress(FileNotFoundError):
        os.remove(temporary)
    finished = False
    try:
        yield temporary
        fsync_path(temporary)
        if os.path.lexists(destination) and (not overwrite or is_key_file(destination)):
            raise BadInputError(
                f"destination {destination!r} appeared while fastmix was writing; it was left "
                "alone. Choose another path" + ("" if overwrite else f" or {hint('overwrite')}")
            )
        os.replace(temporary, destination)
        finished = True
        fsync_folder_of(destination)
    finally:
        if not finished:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
