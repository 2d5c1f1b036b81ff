"""Backend registry: a backend executes a source map on pixels.

Backends are chosen by name, never by inspecting the caller, and imported lazily so that
importing fastmix never probes for a GPU. Every backend module exposes
``gather(source, out, source_map, row_bounds, col_bounds, order)`` with the meaning of
:func:`fastmix.kernels.cpu.gather`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from fastmix.errors import BadInputError

_BACKENDS = {"cpu": "fastmix.kernels.cpu"}


def available_backends() -> tuple[str, ...]:
    """Names accepted by ``backend=``."""
    return tuple(_BACKENDS)


def get_backend(name: str) -> ModuleType:
    """The kernel module of backend ``name``."""
    try:
        module_name = _BACKENDS[name]
    except (KeyError, TypeError):
        raise BadInputError(
            f"unknown backend {name!r}; choose one of {', '.join(_BACKENDS)}"
        ) from None
    return importlib.import_module(module_name)
