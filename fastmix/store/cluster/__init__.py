"""Mixing on a Dask cluster: one task per window.

Windows are independent (each is seeded by (key, window index)), so a cluster runs one task
per window, after STUMPY's ``stumped``: every task opens the source itself, read-only
(h5py objects cannot be pickled), plans its window from (key, window index), mixes it and
encodes its output chunks with the encoder of the single-process engine
(:meth:`~fastmix.store.hdf5.chunkio.WindowWriter.encode_piece`).

- :mod:`~fastmix.store.cluster.client`: connecting to a cluster (:func:`cluster_client`)
  and running a store job on it (:func:`run_on_cluster`);
- :mod:`~fastmix.store.cluster.tasks`: what a worker runs for a window, and how the client
  submits the tasks and takes their results in window order;
- two output layouts: one file (the default, :mod:`~fastmix.store.cluster.onefile`), whose
  images dataset equals the single-process run's byte for byte, and shards
  (:mod:`~fastmix.store.cluster.shards`), one HDF5 file per window that a virtual store
  maps, bound to it by a run id.

The key travels only inside task arguments, in memory: task names are a digest of the
run's public parameters (source, destination, spec, window, key check value) and the
window index, so they are deterministic and a rerun task writes the same bytes.

Dask is optional (``pip install 'fastmix[dask]'``): these modules import it only inside the
functions that talk to a cluster.
"""

from fastmix.store.cluster.client import check_cluster_options, cluster_client, run_on_cluster

__all__ = ["check_cluster_options", "cluster_client", "run_on_cluster"]
