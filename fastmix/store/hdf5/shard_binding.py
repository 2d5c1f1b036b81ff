"""The binding of a sharded store to its shard files (see :mod:`fastmix.store.cluster.shards`).

A sharded store (``fastmix mix --shards``) is an HDF5 virtual dataset whose data lives in
``DST.shards/window-NNNNNN.h5``. This module holds what binds the two, so that a shard folder
taken over by a later run, a shard swapped for another window's, or a store renamed away
from its shards is refused instead of read as wrong images:

- the run id, on the store (:data:`RUN_ATTRIBUTE`) and in every shard
  (:data:`SHARD_RECORD`), with each shard's window, images and MAC;
- the escaping of shard file names in the virtual dataset's mapping (HDF5 reads ``%`` in a
  source file name as a printf-style pattern);
- the check a reader runs on every mapping (:func:`check_shard_binding`).

It sits below :mod:`fastmix.store.hdf5.access`, :mod:`fastmix.store.hdf5.chunks`,
:mod:`fastmix.store.newfile.output` and :mod:`fastmix.store.cluster`, and imports none of
them.
"""

from __future__ import annotations

import json
import os
import secrets

import numpy as np

from fastmix.errors import BadInputError
from fastmix.keys import Key

#: Attribute of a sharded store's images dataset: the run id its shards carry.
RUN_ATTRIBUTE = "fastmix_shard_run"
#: Attribute of a shard's ``images`` dataset: its record (JSON, see :func:`shard_record`).
SHARD_RECORD = "fastmix_shard"
#: Purpose string of the shard MAC (:meth:`fastmix.keys.Key.mac`).
SHARD_PURPOSE = "shard"
#: Longest shard record read (a record is about 200 characters).
_RECORD_LIMIT = 4096


def new_run_id() -> str:
    """Return a new run id: 32 random hex characters (not derived from the key)."""
    return secrets.token_hex(16)


def shard_name(index: int) -> str:
    """Return the file name of window ``index``'s shard."""
    return f"window-{index:06d}.h5"


def mapping_file_name(path: str) -> str:
    """Return ``path`` as a virtual dataset mapping names it: each ``%`` doubled.

    HDF5 expands ``%b`` in a mapped file name (and refuses other ``%`` sequences); ``%%``
    stands for one ``%``.
    """
    return path.replace("%", "%%")


def mapped_file(name: str) -> str | None:
    """Return the file a mapping's source name stands for, or ``None`` for a pattern.

    The inverse of :func:`mapping_file_name`: ``%%`` is one ``%``; a name with any other
    ``%`` sequence (``%b``) names many files, and is left to HDF5.
    """
    if "%" not in name:
        return name
    if name.replace("%%", "").count("%"):
        return None
    return name.replace("%%", "%")


def shard_mac(key: Key, run: str, index: int, start: int, stop: int, operation: str,
              shape: tuple[int, ...], dtype) -> str:
    """Return the MAC of one shard: ``Key.mac("shard", ...)`` over its binding.

    The parts, in order: the run id (text), the window index, its first image and the
    image after its last (integers), the operation (``"mix"`` or ``"unmix"``), the shard's
    images shape as comma-separated decimals and their dtype in NumPy notation
    (``"|u1"``, ``"<u2"``).
    """
    return key.mac(SHARD_PURPOSE, str(run), int(index), int(start), int(stop), str(operation),
                   ",".join(str(int(size)) for size in shape), np.dtype(dtype).str)


def shard_record(key: Key, run: str, index: int, start: int, stop: int, operation: str,
                 shape: tuple[int, ...], dtype) -> str:
    """Return the JSON text of a shard's :data:`SHARD_RECORD` attribute."""
    return json.dumps({"run": run, "window": int(index), "start": int(start),
                       "stop": int(stop), "operation": operation,
                       "mac": shard_mac(key, run, index, start, stop, operation, shape, dtype)},
                      sort_keys=True)


def read_shard_record(dataset) -> dict | None:
    """Return the record of a shard's images dataset, or ``None`` when it has none or a bad one."""
    value = dataset.attrs.get(SHARD_RECORD)
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str) or len(value) > _RECORD_LIMIT:
        return None
    try:
        record = json.loads(value)
    except ValueError:
        return None
    fields = {"run": str, "window": int, "start": int, "stop": int, "operation": str,
              "mac": str}
    if not isinstance(record, dict) or any(not isinstance(record.get(name), kind)
                                           for name, kind in fields.items()):
        return None
    return record


def verify_shard(record: dict, key: Key, shape: tuple[int, ...], dtype) -> bool:
    """Whether a shard record's MAC verifies under ``key`` for a shard of this shape."""
    return key.verify_mac(record["mac"], SHARD_PURPOSE, record["run"], record["window"],
                          record["start"], record["stop"], record["operation"],
                          ",".join(str(int(size)) for size in shape), np.dtype(dtype).str)


def store_run(dataset) -> str | None:
    """Return the run id a sharded store's images dataset names, or ``None``."""
    value = dataset.attrs.get(RUN_ATTRIBUTE)
    if value is None:
        return None
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def check_shard_binding(dataset, path: str, key: Key | None = None) -> None:
    """Refuse a sharded store whose shards are not the ones its run wrote.

    For a virtual images dataset that names a run (:data:`RUN_ATTRIBUTE`): every mapped
    shard must carry that run id, the window index of its place in the mapping (mappings in
    order of their first image) and that place's images. With ``key``, each shard's MAC must
    verify too. A virtual dataset without a run id (not written by fastmix, or by a fastmix
    before run ids) is not checked.

    Raises
    ------
    BadInputError
        A shard of another run, of another window, or whose record does not verify.
    """
    import h5py

    run = store_run(dataset) if dataset.is_virtual else None
    if run is None:
        return
    folder = os.path.dirname(os.path.abspath(dataset.file.filename))
    mappings = []
    for mapping in dataset.virtual_sources():
        low, high = mapping.vspace.get_select_bounds()
        mappings.append((int(low[0]), int(high[0]) + 1, mapping.file_name, mapping.dset_name))
    mappings.sort()
    where = f"sharded store {path!r}"
    for index, (start, stop, name, dataset_name) in enumerate(mappings):
        file_name = mapped_file(name)
        if file_name is None or file_name == ".":
            raise BadInputError(f"{where} maps images {start}-{stop - 1} to {name!r}, not to a "
                                "shard file; it was not written by fastmix --shards")
        full = file_name if os.path.isabs(file_name) else os.path.join(folder, file_name)
        try:
            with h5py.File(full, "r") as shard:
                source = shard[dataset_name]
                record = read_shard_record(source)
                shape, dtype = tuple(source.shape), source.dtype
        except Exception as error:  # h5py raises several types for damaged files
            detail = str(error).strip().splitlines()
            raise BadInputError(
                f"{where}: shard {full!r} cannot be read "
                f"({detail[0] if detail else type(error).__name__}); restore the store's "
                "shard folder") from None
        if record is None or record["run"] != run:
            raise BadInputError(
                f"{where}: shard {full!r} was not written by the run that made this store "
                "(its run id differs): the shard folder was taken over by a later run or its "
                "files were replaced, and it would read as wrong images; restore the shard "
                "folder that belongs to this store")
        if (record["window"], record["start"], record["stop"]) != (index, start, stop) or \
                shape[:1] != (stop - start,):
            raise BadInputError(
                f"{where}: shard {full!r} holds window {record['window']} (images "
                f"{record['start']}-{record['stop'] - 1}) where the store maps window {index} "
                f"(images {start}-{stop - 1}): shard files were swapped or renamed; restore "
                "them")
        if key is not None and not verify_shard(record, key, shape, dtype):
            raise BadInputError(
                f"{where}: shard {full!r} does not verify under this key: its record was "
                "edited or the shard was not written with this key; restore the shard folder, "
                "or use the key file the store was mixed with")
