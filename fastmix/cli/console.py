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
        print(f"fastmix {command}: warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield
