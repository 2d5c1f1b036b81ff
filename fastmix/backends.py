"""The backend protocol and registry: a backend executes a window's plan on pixels.

A backend is ONE module. It runs the whole per-piece step of
:mod:`fastmix.pipeline` (the plain gather and every hardening step) for any range of output
images of a window, from the window's :class:`~fastmix.plan.Plan`. Everything random is
already in the plan (source map, orientation codes, jitter draws, all from the key), so a
backend only moves and transforms pixels, and every backend gives the same bytes.

Backends are chosen by name (``backend="cpu"``), never by inspecting the caller, and their
modules are imported only when asked for, so importing fastmix never probes for a GPU.

The protocol
------------
A backend module defines (see :class:`Backend`; :mod:`fastmix.kernels.cpu.backend` is
the reference implementation):

``NAME``
    Its registry name.
``LOCATION``
    Where :func:`load_window` puts the window: ``"host"`` (NumPy memory) or ``"device"``
    (an accelerator's memory).
``available() -> bool``
    Whether it can run here (a CUDA backend checks for a GPU *here*, when called, never at
    import). :func:`available_backends` lists the registered backends that say yes.
``unavailable_reason() -> str`` (optional)
    Why it cannot run here and what to do, for the error :func:`get_backend` raises.
``load_window(images, job) -> job``
    Put one window where the backend computes. ``images`` is the window's input, a
    C-contiguous host array ``(n, H, W[, C])``; ``job`` is a
    :class:`~fastmix.kernels.steps.WindowJob` holding the run's
    :class:`~fastmix.kernels.steps.Steps` and the window's plan (already inverted when
    unmixing). Return the job with its pixels (and whatever else the backend keeps per
    window, for instance the plan's arrays on the device) where it computes: the CPU backend
    returns ``job.with_pixels(images)``. Called once per window, before any piece.
``mix_piece(window, first, last, out, order=None)``
    Compute output images ``first..last`` (local to the window) into ``out``, an array of
    ``last - first`` images in the window's shape and dtype: gather with orientation, then
    jitter, then seam blur, exactly as :mod:`fastmix.kernels.bodies` defines them, or
    the plain gather when ``window.steps.hardened`` is false. ``out`` is host memory when
    the store engine calls; a device backend copies its result there before returning (it
    may also accept device arrays from :func:`fastmix.mix_array`). ``order`` is a
    permutation of ``range(last - first)``: the order in which to visit output images
    (cache locality only; it never changes a byte). The input window must not change until
    the next :func:`load_window`.
``streaming_threads()``
    A context manager for the backend's thread setting while a store streams (the engine's
    reader and writer threads run beside the kernels). The CPU backend runs Numba on one
    thread fewer; a device backend may do nothing.

The kernel bodies (:mod:`fastmix.kernels.bodies`) are plain Python functions that allocate
nothing (their scratch buffers are arguments), so every backend compiles the same bodies,
through :mod:`fastmix.kernels.compile`: called from ``numba.njit`` kernels on the CPU,
compiled by ``numba.cuda.jit(device=True)`` on a GPU.

Adding a backend: write the module, add its name to :data:`_BACKENDS`, and the tests that
run over :func:`available_backends` compare it with the oracle (``tests/naive.py``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

import numpy as np

from fastmix.errors import BadInputError
from fastmix.kernels.steps import WindowJob

#: Backend name -> module. Modules are imported on first use.
_BACKENDS = {"cpu": "fastmix.kernels.cpu.backend", "cuda": "fastmix.kernels.cuda.backend"}


class Backend(Protocol):
    """What a backend module provides (the module itself satisfies this protocol)."""

    NAME: str
    LOCATION: str
    available: Callable[[], bool]

    def load_window(self, images: np.ndarray, job: WindowJob) -> WindowJob:
        """Put one window where the backend computes."""

    def mix_piece(self, window: WindowJob, first: int, last: int, out: np.ndarray,
                  order: np.ndarray | None = None) -> None:
        """Compute output images ``first..last`` of ``window`` into ``out``."""

    def streaming_threads(self) -> AbstractContextManager[None]:
        """Return the backend's thread setting while a store streams."""


def registered_backends() -> tuple[str, ...]:
    """Every backend name fastmix knows, available here or not."""
    return tuple(_BACKENDS)


def available_backends() -> tuple[str, ...]:
    """Names accepted by ``backend=`` on this machine."""
    names = []
    for name in _BACKENDS:
        try:
            module = importlib.import_module(_BACKENDS[name])
        except ImportError:
            continue
        if module.available():
            names.append(name)
    return tuple(names)


def get_backend(name: str) -> Backend:
    """Return the backend module of ``name``.

    Raises
    ------
    BadInputError
        For an unknown name, or a backend that cannot run here.
    """
    try:
        module_name = _BACKENDS[name]
    except (KeyError, TypeError):
        raise BadInputError(
            f"unknown backend {name!r}; choose one of {', '.join(_BACKENDS)}"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BadInputError(f"backend {name!r} cannot be loaded here ({error})") from None
    if not module.available():
        why = getattr(module, "unavailable_reason", None)
        because = f" ({why()})" if why is not None else ""
        raise BadInputError(f"backend {name!r} is not available on this machine{because}; use "
                            f"one of {', '.join(available_backends())}")
    return module
