"""The new-file engine: a store's windows, mixed or unmixed, streamed into a new file.

- :mod:`~fastmix.store.newfile.run`: :func:`run_new_file`, the run;
- :mod:`~fastmix.store.newfile.output`: the output file, a copy of the source store but for
  the images' pixels (links, references, dimension scales, filters: the rules are in its
  notes).

The output is written under a temporary name and renamed once complete
(:func:`fastmix.store.durable.atomic.atomic_output`).
"""

from fastmix.store.newfile.run import run_new_file

__all__ = ["run_new_file"]
