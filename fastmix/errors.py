"""Exceptions that fastmix raises, and the checks of a caller's parameters.

Every error caused by what the user gave (a bad file, a bad parameter, a wrong key) is a
:class:`BadInputError`. The command line turns it into one line on stderr and exit status 2;
any other error is a failure, exit status 1. Every fastmix error is a :class:`FastmixError`,
so that a caller can catch them all; each keeps the built-in base it always had::

    FastmixError
        BadInputError (ValueError)         what the user gave is wrong; the message says what to do
            BadInputTypeError (TypeError)  ... and has the wrong type
            WrongKeyError                  the key does not match the data's key check value
            JournalDamaged                 an interrupted run's journal cannot be proven intact
        InPlaceRunStopped                  an in-place run stopped part-way; resume finishes it
        JournalError (OSError)             writing the journal failed; the store was not touched
        DamagedChunkError (ValueError)     a stored chunk does not decode to the chunk's size
        UnsupportedFilterError             a filter of a dataset cannot be reproduced outside HDF5
        UnreadableImageError               a file could not be decoded as an image
        WorkerError (RuntimeError)         an image worker process failed or exited
    FastmixWarning (UserWarning)           a condition to know about, such as images left unmixed

The modules that raise them import them from here (and re-export them under their old names:
``fastmix.store.journal.JournalDamaged`` is this module's).
"""

from __future__ import annotations

import os
import stat

#: What the user is told to do, in the language of each place an error is read: a Python
#: caller passes keyword arguments, a command-line user gives flags. A message names a hint
#: with :func:`hint`; ``str(error)`` reads the Python phrase, and the command line prints
#: :func:`command_line_message`. One table, so that the two never drift apart.
HINTS: dict[str, tuple[str, str]] = {
    "overwrite": ("pass overwrite=True", "pass --overwrite"),
    "force": ("pass force=True", "pass --force"),
    "in_place": ("use in_place=True", "use --in-place"),
    "resume": ("finish it with resume=True", "finish it with --resume"),
    "resume_again": ("run again with resume=True", "run again with --resume"),
    "drop_resume": ("run without resume=True", "run without --resume"),
    "finish_in_place": ("finish it with in_place=True, resume=True",
                        "finish it with --in-place --resume"),
    "not_strict": ("pass strict=False", "drop --strict"),
    "follow_symlinks": ("pass follow_symlinks=True", "pass --follow-symlinks"),
    "one_way": ("pass one_way=True", "pass --one-way"),
    "trust_unsealed": ("pass trust_unsealed=True", "pass --trust-unsealed"),
    "reversible_preset": ("spec=MixSpec.preset('fast')", "--privacy fast"),
    "new_key": ("make one with Key.generate() and Key.save(path)",
                "make one with fastmix mix --new-key"),
    "images_name": ("name it with images=NAME", "name it with --images NAME"),
    "labels_name": ("name it with labels=NAME", "name it with --labels NAME"),
    "audit_order": ("give the original store first: audit_stores(original, mixed)",
                    "give the original store first: fastmix audit ORIGINAL MIXED"),
}

_MARK = "\x1f"


def hint(name: str) -> str:
    """Return a placeholder for the hint ``name`` of :data:`HINTS`, to put in an error message."""
    if name not in HINTS:
        raise KeyError(f"unknown hint {name!r}")
    return f"{_MARK}{name}{_MARK}"


def _render(text: str, language: int) -> str:
    if _MARK not in text:
        return text
    parts = text.split(_MARK)
    # odd parts are hint names (a stray mark is left as it was)
    return "".join(HINTS[part][language] if index % 2 and part in HINTS else part
                   for index, part in enumerate(parts))


class FastmixError(Exception):
    """Base class of every fastmix error.

    A message may hold :func:`hint` placeholders: the error reads in Python terms
    (``overwrite=True``); :func:`command_line_message` gives the same message in flags.
    """

    def __init__(self, *args: object) -> None:
        self.template = args[0] if args and isinstance(args[0], str) else None
        if self.template is not None:
            args = (_render(self.template, 0), *args[1:])
        super().__init__(*args)


def command_line_message(error: BaseException) -> str:
    """Return the message of ``error`` with its hints phrased as command-line flags."""
    template = getattr(error, "template", None)
    return _render(template, 1) if isinstance(template, str) else str(error)


class BadInputError(FastmixError, ValueError):
    """The input is wrong: the message says what was found and what to do."""


class BadInputTypeError(BadInputError, TypeError):
    """The input has the wrong type: the message says what was found and what to do."""


class WrongKeyError(BadInputError):
    """The key does not match the key check value stored with the data."""


class JournalDamaged(BadInputError):
    """The journal of an interrupted run cannot be proven intact; nothing was changed."""

    def __init__(self, path: str, what: str):
        super().__init__(
            f"journal {path!r} is damaged ({what}), so --resume cannot prove which windows "
            "hold their input; nothing was changed. Restore the store from a copy (or put "
            "back the journal's own copy) and run again"
        )


class InPlaceRunStopped(FastmixError):
    """An in-place run stopped part-way; the store is consistent and ``resume`` finishes it."""


class JournalError(FastmixError, OSError):
    """Writing the journal failed (for example a full disk); the store was not touched."""


class DamagedChunkError(FastmixError, ValueError):
    """A stored chunk does not decode to exactly the chunk's size (damaged or crafted).

    Every decoder is bounded by the chunk's known decoded size: whatever a codec's header
    claims, no more than that is ever allocated.
    """


class UnsupportedFilterError(FastmixError):
    """A filter of the pipeline cannot be reproduced outside HDF5."""


class UnreadableImageError(FastmixError):
    """A file could not be decoded as an image (the message says why)."""


class WorkerError(FastmixError, RuntimeError):
    """A worker process failed or exited unexpectedly."""


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


def _refusal(name: str, value: object, wording: str | tuple[str, str], wrong_type: bool) -> str:
    phrase = wording if isinstance(wording, str) else wording[0 if wrong_type else 1]
    return f"{name} must be {phrase}, got {value!r}"


def _bound(minimum: float | None, maximum: float | None, form: str) -> str:
    if minimum is not None and maximum is not None:
        return f"from {minimum:{form}} to {maximum:{form}}"
    if minimum is not None:
        return f"at least {minimum:{form}}"
    return "" if maximum is None else f"at most {maximum:{form}}"


def check_integer(value: object, name: str, *, minimum: int | None = 0,
                  maximum: int | None = None,
                  wording: str | tuple[str, str] | None = None) -> int:
    """Return ``value`` as an ``int``, refusing anything but an integer in range.

    ``bool``, floats (``0.7`` is not taken as 0) and text are refused with
    :class:`BadInputTypeError`; an integer outside ``[minimum, maximum]`` (``None``: no
    bound) with :class:`BadInputError`. ``name`` is the parameter, as the caller wrote it.
    ``wording`` says what the value must be in the caller's own words, one phrase for both
    refusals or a pair (wrong type, out of range): the message is then
    ``"{name} must be {phrase}, got {value!r}"``.
    """
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if wording is not None:
            raise BadInputTypeError(_refusal(name, value, wording, True))
        raise BadInputTypeError(f"{name} must be an integer, got {type(value).__name__} "
                                f"{value!r}")
    number = int(value)
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        if wording is not None:
            raise BadInputError(_refusal(name, value, wording, False))
        raise BadInputError(f"{name} must be an integer {_bound(minimum, maximum, ',')}, "
                            f"got {number:,}")
    return number


def check_number(value: object, name: str, *, minimum: float | None = None,
                 maximum: float | None = None,
                 wording: str | tuple[str, str] | None = None) -> float:
    """Return ``value`` as a finite ``float`` in ``[minimum, maximum]``, refusing anything else.

    Any real number is taken (``int``, ``float``, NumPy scalars), but not ``bool`` or text
    (:class:`BadInputTypeError`); NaN, infinities and a number outside the bounds (``None``:
    no bound) are refused with :class:`BadInputError`. ``name`` and ``wording`` are as in
    :func:`check_integer`.
    """
    import math
    import numbers

    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        if wording is not None:
            raise BadInputTypeError(_refusal(name, value, wording, True))
        raise BadInputTypeError(f"{name} must be a number, got {type(value).__name__} "
                                f"{value!r}")
    try:
        number = float(value)
    except OverflowError:  # an integer beyond the float range
        number = math.inf
    if not (math.isfinite(number) and (minimum is None or number >= minimum)
            and (maximum is None or number <= maximum)):
        if wording is not None:
            raise BadInputError(_refusal(name, value, wording, False))
        bound = _bound(minimum, maximum, "g")
        expected = f"a finite number {bound}" if bound else "a finite number"
        raise BadInputError(f"{name} must be {expected}, got {value!r}")
    return number


def check_flag(value: object, name: str) -> bool:
    """Return ``value`` as a ``bool``, refusing anything but ``True`` and ``False``.

    A string such as ``"no"`` is true to Python; taking it as an answer would do the
    opposite of what was meant.
    """
    import numpy as np

    if isinstance(value, bool | np.bool_):
        return bool(value)
    raise BadInputTypeError(f"{name} must be True or False, got {type(value).__name__} "
                            f"{value!r}")


def check_path(value: object, name: str) -> str:
    """Return ``value`` (a ``str`` or ``os.PathLike``) as a path string."""
    try:
        if not isinstance(value, str | bytes | os.PathLike):
            raise TypeError
        path = os.fspath(value)
    except TypeError:  # also from an __fspath__ that returns neither str nor bytes
        raise BadInputTypeError(f"{name} must be a path (str or os.PathLike), got "
                                f"{type(value).__name__}") from None
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path or "\x00" in path:
        raise BadInputError(f"{name} must be a path, got {path!r}")
    return path
