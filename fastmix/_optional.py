"""Optional dependencies, imported on demand: :func:`require`.

A feature that needs a package fastmix does not install by default (an extra of
pyproject.toml: ``audit``, ``torch``, ``dask``, ``cuda12``/``cuda13``) imports it through
:func:`require`, so that its absence reads as one line naming the package and the extra.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from fastmix.errors import BadInputError


def install_command(extra: str) -> str:
    """Return the command that installs the extra ``extra``: ``pip install 'fastmix[extra]'``."""
    return f"pip install 'fastmix[{extra}]'"


def require(module: str, extra: str, *, needed_by: str, package: str | None = None,
            advice: str = "install it with {install}") -> ModuleType:
    """Import ``module``, or raise :class:`BadInputError` naming the package and the extra.

    The message reads ``"{needed_by} needs {package}, which is not installed; {advice}"``
    (``not importable (why)`` when the package is there but fails to import), where
    ``{install}`` in ``advice`` is :func:`install_command` of ``extra``. ``package`` is the
    name a user knows (``PyTorch``), by default the top-level module.
    """
    try:
        return importlib.import_module(module)
    except ImportError as error:
        missing = isinstance(error, ModuleNotFoundError) and (
            error.name is None or module == error.name or module.startswith(error.name + "."))
        state = "not installed" if missing else f"not importable ({error})"
        raise BadInputError(
            f"{needed_by} needs {package or module.split('.')[0]}, which is {state}; "
            + advice.format(install=install_command(extra))
        ) from None
