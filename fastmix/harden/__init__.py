"""Keyed hardening of the mixed blocks: orientation, photometric jitter and seam blur.

:mod:`fastmix.harden.plan` draws the per-block choices from the key,
:mod:`fastmix.harden.apply` runs them through the kernels, and
:mod:`fastmix.harden.options` describes the privacy presets and their leaks.
"""
