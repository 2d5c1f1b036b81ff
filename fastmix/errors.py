"""Exceptions that fastmix raises.

Every error caused by what the user gave (a bad file, a bad parameter, a wrong key) is a
:class:`BadInputError`. The command line turns it into one line on stderr and exit status 2.
"""

from __future__ import annotations


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
