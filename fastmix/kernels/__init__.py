"""Kernels that execute a source map on pixels. Only kernels live here.

:mod:`fastmix.kernels.body` holds the per-block-row body shared by every backend;
:mod:`fastmix.kernels.cpu` wraps it in Numba's parallel loops. A numba.cuda module can sit
beside them and run the same source maps with the same body.
"""
