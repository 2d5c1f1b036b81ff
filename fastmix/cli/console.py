"""Warnings on the command line: one ``fastmix CMD: warning: ...`` line each."""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def print_warnings(command: str) -> Iterator[None]:
    """Print each warning raised inside the block as one ``fastmix CMD: warning: ...`` line."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"fastmix {command}: warning: {one_line(str(message))}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def one_line(text: str) -> str:
    """``text`` with its line breaks folded, so that a message stays one line."""
    return "; ".join(part.strip() for part in text.strip().splitlines() if part.strip())
