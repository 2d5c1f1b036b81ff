"""Kernels that execute a source map on pixels. Only kernels live here.

:mod:`fastmix.kernels.bodies` holds the allocation-free bodies every backend compiles, through
the one mechanism of :mod:`fastmix.kernels.compile`; one package per backend runs them:
:mod:`fastmix.kernels.cpu` (Numba's parallel loops) and :mod:`fastmix.kernels.cuda`
(numba.cuda), each with a ``backend`` module implementing :mod:`fastmix.backends`' protocol.
:mod:`fastmix.kernels.steps` holds the per-run constants a backend reads (``Steps``).
"""
