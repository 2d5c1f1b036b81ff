"""The HDF5 store: its format, and the I/O both engines share.

- :mod:`~fastmix.store.hdf5.lowlevel`: every low-level h5py call fastmix makes, in one place
  (filters and the one rule for lossy ones, chunk index, layout, object identity, metadata
  cache, ``class_names``), and the checks both modes make on them;
- :mod:`~fastmix.store.hdf5.access`: opening and validating a store (``open_store``);
- :mod:`~fastmix.store.hdf5.record`: the ``fastmix_*`` record of a mixed images dataset and
  its MAC;
- :mod:`~fastmix.store.hdf5.shard_binding`: what binds a sharded store to its shard files;
- :mod:`~fastmix.store.hdf5.chunks`: images and bytes per chunk (a sharded store's are its
  shards');
- :mod:`~fastmix.store.hdf5.codecs` and :mod:`~fastmix.store.hdf5.chunkio`: chunk codecs
  outside HDF5, and windows read and written through them or through h5py;
- :mod:`~fastmix.store.hdf5.crashrepair`: undoing what a killed writer leaves in the
  superblock.
"""
