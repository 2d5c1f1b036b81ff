"""The optional dependencies of the audit, imported on demand with a clear message."""

from __future__ import annotations

from types import ModuleType

from fastmix import _optional


def require(module_name: str) -> ModuleType:
    """Import ``module_name`` or raise :class:`BadInputError` telling how to install it."""
    return _optional.require(module_name, "audit", needed_by="the audit",
                             advice="install the audit extra with {install}")
