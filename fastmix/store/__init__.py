"""HDF5 image stores: mixing and unmixing them into a new file, in place, or on a cluster.

Public entry points are :func:`mix_store`, :func:`unmix_store` and :class:`StoreReport`.
The wings: :mod:`~fastmix.store.hdf5` (the store format and its I/O),
:mod:`~fastmix.store.durable` (fsync, atomic output files, the in-place journal and lock),
and the engines :mod:`~fastmix.store.newfile`, :mod:`~fastmix.store.inplace` and
:mod:`~fastmix.store.cluster`, below :mod:`~fastmix.store.engine`. How they fit together,
module by module, and the building blocks both engines share: ``docs/architecture.md``.
"""

from fastmix.store.engine import mix_store, unmix_store
from fastmix.store.hdf5.access import Store, open_store
from fastmix.store.hdf5.record import MixRecord, read_mix_record, write_mix_attributes
from fastmix.store.report import StoreReport
from fastmix.store.stream import stream_windows
from fastmix.store.window_sizing import plan_windows

__all__ = ["MixRecord", "Store", "StoreReport", "mix_store", "open_store", "plan_windows",
           "read_mix_record", "stream_windows", "unmix_store",
           "write_mix_attributes"]
