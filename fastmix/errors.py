"""Exceptions that fastmix raises.

Every error caused by what the user gave (a bad file, a bad parameter, a wrong key) is a
:class:`BadInputError`. The command line turns it into one line on stderr and exit status 2.
"""

from __future__ import annotations

import os
import stat


class FastmixError(Exception):
    """Base class of every fastmix error."""


class BadInputError(FastmixError, ValueError):
    """The input is wrong: the message says what was found and what to do."""


class BadInputTypeError(BadInputError, TypeError):
    """The input has the wrong type: the message says what was found and what to do."""


class WrongKeyError(BadInputError):
    """The key does not match the key check value stored with the data."""


class FastmixWarning(UserWarning):
    """A condition the user should know about, such as images left unmixed."""


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"))


def check_regular_file(path: str | os.PathLike, role: str) -> os.stat_result:
    """Stat ``path`` and raise :class:`BadInputError` unless it is a regular file.

    Checked before any file is opened: opening a FIFO waits for a writer, and reading a
    device such as ``/dev/zero`` never ends. ``role`` names the file in the message
    ("store", "key file", ...).
    """
    text = os.fspath(path)
    try:
        status = os.stat(text)
    except FileNotFoundError:
        raise BadInputError(f"{role} {text!r} does not exist; check the path") from None
    except PermissionError:
        raise BadInputError(f"{role} {text!r} cannot be read: permission denied") from None
    except OSError as error:
        raise BadInputError(f"{role} {text!r} cannot be read ({error.strerror})") from None
    for test, kind in _KINDS:
        if test(status.st_mode):
            raise BadInputError(f"{role} {text!r} is {kind}, not a regular file; give a file")
    return status
