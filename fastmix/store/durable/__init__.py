"""Writing safely: files that reach the disk, appear whole, and runs that survive a kill.

- :mod:`~fastmix.store.durable.fsync`: fsync of a file and of a folder entry;
- :mod:`~fastmix.store.durable.writeback`: a growing output queued for writeback early;
- :mod:`~fastmix.store.durable.atomic`: new output files (the rules for their path, and a
  hidden temporary fsynced and renamed into place);
- :mod:`~fastmix.store.durable.journal`: the undo journal of an in-place run, beside the
  store;
- :mod:`~fastmix.store.durable.lock`: the lock of an in-place run, one run per store.

Nothing here reads HDF5: the HDF5 wing (:mod:`fastmix.store.hdf5`) sits above it.
"""
