"""How a backend compiles the shared bodies of :mod:`fastmix.kernels.bodies` for its target.

One mechanism, in two steps, for every backend:

1. :func:`bodies_for` returns the bodies as the backend's kernels must call them, by name.
   On Numba's CPU target that is the registered bodies themselves: jitted code calls them and
   Numba compiles each inline where it is called (the CPU backend's choice). ``compile``
   compiles copies instead (the CUDA backend: ``numba.cuda.jit(device=True)``, every body;
   ``names`` limits it to some), whose calls to other bodies go to the compiled copies;
   ``replace`` swaps a body for the target's own version (the CUDA backend's ``product``, a
   multiplication NVVM cannot fuse into a multiply-add).
2. :func:`bind` returns a copy of a kernel function whose global names include those
   bodies; the backend compiles the copy (``numba.njit(parallel=True)``,
   ``numba.cuda.jit``).

Python code that calls a body outside a kernel (planning's generator, the tone curves, the
CUDA backend's jitter drawn on the host) wraps it in ``numba.njit``: jitted code on the CPU
target, calling the registered bodies as the CPU kernels do.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from fastmix.kernels import bodies


def bodies_for(compile: Callable[[Callable], Callable] | None = None, *,
               names: Iterable[str] | None = None,
               replace: Mapping[str, Callable] | None = None) -> dict[str, Callable]:
    """Return every shared body by name, as a target's kernels call it.

    Parameters
    ----------
    compile : callable, optional
        Compiles one Python function for the target (for example
        ``numba.cuda.jit(device=True)``). ``None``: Numba's CPU target, where the registered
        bodies are called as they are.
    names : iterable of str, optional
        Compile only these bodies with ``compile`` (default: every body); the others stay the
        registered bodies, which jitted code on Numba's CPU target calls as they are.
    replace : mapping of str to callable, optional
        With ``compile`` only: bodies to swap for the target's own version (compiled by
        ``compile`` too); the other bodies call the replacement.

    Returns
    -------
    dict of str to callable
        Every name of :data:`fastmix.kernels.bodies.BODIES`.
    """
    if compile is None:
        return dict(bodies.BODIES)
    # Each copy's globals are this namespace: a body calling a body calls its compiled copy.
    namespace = dict(vars(bodies))
    for name in bodies.BODIES if names is None else names:
        namespace[name] = compile(_copy(bodies.BODIES[name], namespace, name))
    for name, function in (replace or {}).items():
        namespace[name] = compile(function)
    return {name: namespace[name] for name in bodies.BODIES}


def bind(kernel: Callable[..., Any], bodies_by_name: Mapping[str, Callable], *,
         name: str | None = None, **names: object) -> types.FunctionType:
    """Return a copy of ``kernel`` whose global names include ``bodies_by_name`` and ``names``.

    The copy reads every other global of ``kernel``'s module as it was when bound. ``name``
    names the copy (its ``__name__`` and ``__qualname__``: Numba's on-disk cache tells
    kernels apart by it); by default the kernel's own.
    """
    kernel = cast(types.FunctionType, kernel)  # a plain Python function, not a compiled one
    namespace = dict(kernel.__globals__)
    namespace.update(bodies_by_name)
    namespace.update(names)
    name = name or kernel.__name__
    function = _copy(kernel, namespace, name)
    function.__qualname__ = name
    function.__doc__ = kernel.__doc__
    return function


def _copy(function: Callable[..., Any], namespace: dict, name: str) -> types.FunctionType:
    function = cast(types.FunctionType, function)
    return types.FunctionType(function.__code__, namespace, name, function.__defaults__,
                              function.__closure__)
