"""The optional dependencies of the audit, imported on demand with a clear message."""

from __future__ import annotations

import importlib
from types import ModuleType

from fastmix.errors import BadInputError

_INSTALL = "pip install 'fastmix[audit]'"


def require(module_name: str) -> ModuleType:
    """Import ``module_name`` or raise :class:`BadInputError` telling how to install it."""
    try:
        return importlib.import_module(module_name)
    except ImportError:
        package = module_name.split(".")[0]
        raise BadInputError(
            f"the audit needs {package}, which is not installed; install the audit extra with "
            f"{_INSTALL}"
        ) from None
