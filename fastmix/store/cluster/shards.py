"""The sharded layout of a cluster run: one HDF5 file per window, and a virtual store.

Each task writes its window into its own HDF5 file in ``DST.shards/`` (under a temporary
name, renamed when complete). The destination then holds an HDF5 virtual dataset mapping the
shards into one images dataset, the labels and the ``fastmix_*`` record. ``resume=True``
keeps the completed shards of the same run.

Shard binding
-------------
A sharded store and its shards are bound by a *run id*: 32 lowercase hex characters from
``secrets`` (random, not derived from the key), new for every run that is not a resume.

``DST`` (the store)
    The images dataset carries ``fastmix_shard_run`` = the run id (a string attribute; a
    mixed store's record MAC covers it with every other ``fastmix_*`` attribute, an unmixed
    sharded output carries it alone). Its virtual dataset maps window ``i`` = images
    ``[start, stop)`` to dataset ``images`` of ``DST.shards/window-{i:06d}.h5``, named
    relative to the store's folder with every ``%`` doubled (HDF5 expands ``%b`` in a
    mapped file name and reads ``%%`` as one ``%``).
``DST.shards/window-{i:06d}.h5`` (a shard)
    Its ``images`` dataset carries ``fastmix_shard``, a JSON object (sorted keys) with
    ``run`` (the run id), ``window`` (``i``), ``start`` and ``stop`` (the window's images),
    ``operation`` (``"mix"`` or ``"unmix"``) and ``mac``: 64 hex characters,
    ``Key.mac("shard", run, window, start, stop, operation, shape, dtype)``
    (:meth:`fastmix.keys.Key.mac`) where ``run`` and ``operation`` are text, ``window``,
    ``start`` and ``stop`` integers, ``shape`` the shard's images shape as comma-separated
    decimals (``"32,32,32,3"``) and ``dtype`` their NumPy dtype string (``"|u1"``). The MAC
    binds a shard to its run, its place and the key; it does not cover the pixels.
``DST.shards/fastmix-run.json`` (the run record)
    A JSON object (sorted keys): ``run``; ``token`` (the digest of the run's public
    parameters and of the source fingerprint,
    :func:`~fastmix.store.cluster.client.run_token`); ``operation``;
    ``windows`` (their number); ``source`` (the source fingerprint,
    :func:`source_fingerprint`); ``published`` (``false`` until the store is complete, set
    to ``true`` just before the store is renamed into place); and
    ``mac``: ``Key.mac("shard-run", text)`` where ``text`` is the record without ``mac`` as
    JSON with sorted keys. Written atomically (temporary file, fsync, rename).

Every reader of a store whose images dataset names a run
(:func:`fastmix.store.hdf5.access.open_store`) refuses it, one line, exit status 2, unless
every mapped shard's record names that run, the window of its place (mappings in order of
their first image) and that place's images; ``unmix`` also verifies each shard's MAC under
its key (:func:`fastmix.store.hdf5.shard_binding.check_shard_binding`). A new sharded run
into ``DST.shards/`` discards the shards found there only when no store can read them:
their run never published, or it made ``DST`` itself (which ``overwrite`` replaces);
otherwise (a store renamed away from its shards, or shards without a run record) it refuses
and leaves them.
``resume=True`` continues only an unpublished run whose record verifies under the key, with
the same ``token`` and an unchanged source fingerprint, and refuses a shard file that is
not that run's (run id, window, images, operation and MAC).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os

import numpy as np

from fastmix.errors import BadInputError, hint
from fastmix.keys import Key
from fastmix.spec import MixSpec
from fastmix.store.cluster.tasks import Job, add_stages, ordered_results
from fastmix.store.durable.fsync import fsync_folder_of
from fastmix.store.hdf5.lowlevel import stored_chunks
from fastmix.store.hdf5.record import PREFIX, seal_record, write_mix_attributes
from fastmix.store.hdf5.shard_binding import (
    RUN_ATTRIBUTE,
    mapped_file,
    mapping_file_name,
    new_run_id,
    read_shard_record,
    shard_name,
    store_run,
    verify_shard,
)
from fastmix.store.newfile.output import (
    copy_attributes,
    copy_userblock,
    create_output,
    replace_dataset,
)
from fastmix.store.prepare import count_unpartnered

SHARDS_SUFFIX = ".shards"
#: The run record of a sharded run, in its shard folder (JSON; see the module docstring).
RUN_FILE = "fastmix-run.json"


def shard_folder(destination: str) -> str:
    """Return the folder of a sharded destination's shard files."""
    return os.path.abspath(destination) + SHARDS_SUFFIX


def run_sharded(client, job: Job, store, windows, key: Key, done: dict[int, int], limit: int,
                bar, stages: dict, cpu: dict) -> int:
    """Run the windows whose shards are not ``done``; return the unpartnered images.

    Adds the workers' seconds per stage to ``stages`` and their CPU seconds to ``cpu``.
    """
    for index in done:
        start, stop = windows[index]
        bar.update(stop - start)
    todo = [index for index in range(len(windows)) if index not in done]
    unpartnered = 0
    for result in ordered_results(client, job, windows, todo, store.labels, key, limit):
        add_stages(stages, result.seconds)
        add_stages(cpu, result.cpu)
        unpartnered += result.unpartnered
        bar.update(result.stop - result.start)
    if done:
        # Unpartnered counts of shards finished before: the labels tell them.
        unpartnered += count_unpartnered(store.labels, [windows[index] for index in done])
    return unpartnered


def claim_shard_folder(folder: str, destination: str, store, token: str, operation: str,
                       windows, key: Key, resume: bool,
                       fingerprint: dict) -> tuple[str, dict[int, int]]:
    """Return the run id of a sharded run into ``folder`` and its windows already done.

    A new run gets a new id and a fresh run record. It discards the shards of an earlier
    run only when no store can be reading them: that run never finished, or it made
    ``destination`` itself (which ``overwrite`` lets this run replace). ``resume`` continues
    the unfinished run of the folder's record when the record verifies under ``key``, names
    the same options (``token``) and the source is unchanged (``fingerprint``, its
    :func:`source_fingerprint`, which the token holds too); its shards that verify are done.

    Raises
    ------
    BadInputError
        The folder holds shards this run may not take over, or cannot resume.
    """
    record = _read_run_file(folder)
    present = _shard_files(folder)
    if resume and (record is not None or present):
        _check_resumable(folder, record, token, fingerprint, key)
        assert record is not None  # _check_resumable refuses a folder without one
        return record["run"], _completed_shards(folder, record["run"], windows, key, operation)
    if record is not None or present:
        unfinished = record is not None and record.get("published") is False
        replaced = record is not None and \
            _destination_run(destination, store.images.name) == record.get("run")
        if not (unfinished or replaced):
            raise BadInputError(
                f"shard folder {folder!r} holds the shards of another store (one that was "
                "renamed or moved, or that fastmix did not record), which would read this "
                "run's images instead of its own; fastmix never takes them over. Choose "
                "another destination, or delete that folder if no store uses it"
            )
        _remove_shards(folder)
    run = new_run_id()
    _write_run_file(folder, {"run": run, "token": token, "operation": operation,
                             "windows": len(windows), "source": fingerprint,
                             "published": False}, key)
    return run, {}


def _check_resumable(folder: str, record: dict | None, token: str, fingerprint: dict,
                     key: Key) -> None:
    cannot = f"cannot resume into shard folder {folder!r}"
    if record is None or not key.verify_mac(str(record.get("mac")), RUN_PURPOSE,
                                            _run_text(record)):
        raise BadInputError(
            f"{cannot}: its shards have no run record that verifies under this key (written "
            "with another key, by another program, or edited); use the original key, or "
            f"{hint('drop_resume')} to start again"
        )
    if record.get("published") is not False:
        raise BadInputError(
            f"{cannot}: the run that wrote it finished, and its store may still read these "
            f"shards, so there is nothing to resume; {hint('drop_resume')}, into another "
            "destination"
        )
    # The source first: the token holds its fingerprint too, and "the source changed" says
    # more than "other options".
    changed = _fingerprint_change(record.get("source"), fingerprint)
    if changed:
        raise BadInputError(
            f"cannot resume: the source changed since the interrupted run began ({changed}), "
            f"so its shards no longer match it; {hint('drop_resume')} to start again"
        )
    if record.get("token") != token:
        raise BadInputError(
            f"{cannot}: its run used other options (spec, window, key, images or "
            f"destination) or an older fastmix; resume with the original options, or "
            f"{hint('drop_resume')} to start again"
        )


def _completed_shards(folder: str, run: str, windows, key: Key,
                      operation: str) -> dict[int, int]:
    """``{window index: 0}`` of the shards of run ``run``; refuse any other shard file."""
    import h5py

    done = {}
    for name in _shard_files(folder):
        path = os.path.join(folder, name)
        try:
            with h5py.File(path, "r") as shard:
                images = shard["images"]
                record = read_shard_record(images)
                shape, dtype = tuple(images.shape), images.dtype
        except Exception:  # a damaged shard is judged below
            record = None
        index = record["window"] if record is not None else -1
        if record is None or record["run"] != run or not 0 <= index < len(windows) or \
                name != shard_name(index) or \
                (record["start"], record["stop"]) != tuple(windows[index]) or \
                record["operation"] != operation or not verify_shard(record, key, shape, dtype):
            raise BadInputError(
                f"cannot resume: shard {path!r} was not written by the interrupted run (another "
                f"run's, another window's, or edited); delete it to have it written again, or "
                f"{hint('drop_resume')} to start again"
            )
        done[index] = 0
    return done


def _shard_files(folder: str) -> list[str]:
    """Names of the finished shard files (``window-*.h5``) in ``folder``, sorted."""
    return sorted(entry for entry in os.listdir(folder)
                  if entry.startswith("window-") and entry.endswith(".h5") and
                  os.path.isfile(os.path.join(folder, entry)))


def _destination_run(destination: str, images: str) -> str | None:
    """Return the shard run id ``destination``'s images name, or ``None``."""
    import h5py

    if not os.path.isfile(destination):
        return None
    try:
        with h5py.File(destination, "r") as file:
            return store_run(file[images])
    except Exception:  # not a store of ours: it names no run
        return None


RUN_PURPOSE = "shard-run"


def _run_text(record: dict) -> str:
    """Return the canonical text of a run record without its MAC (what the MAC covers)."""
    return json.dumps({name: value for name, value in record.items() if name != "mac"},
                      sort_keys=True)


def _write_run_file(folder: str, record: dict, key: Key) -> None:
    """Write ``record`` with its MAC as the folder's run record, atomically and durably."""
    record = {**record, "mac": key.mac(RUN_PURPOSE, _run_text(record))}
    path = os.path.join(folder, RUN_FILE)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(record, sort_keys=True) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    fsync_folder_of(path)


def _read_run_file(folder: str) -> dict | None:
    try:
        with open(os.path.join(folder, RUN_FILE), encoding="utf-8") as handle:
            record = json.loads(handle.read(1 << 20))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("run"), str) else None


def _publish_run(folder: str, key: Key) -> None:
    """Mark the folder's run finished: from now on a store may read its shards."""
    record = _read_run_file(folder)
    if record is not None:
        record.pop("mac", None)
        _write_run_file(folder, {**record, "published": True}, key)


def source_fingerprint(store) -> dict:
    """Return what a resumed sharded run checks to know its source is unchanged.

    All of it is metadata, read in milliseconds without a pixel: the file's size and
    modification time (nanoseconds), the images' shape and dtype, a digest of the chunk
    index (each chunk's first image, byte offset, stored size and filter mask; the data
    offset of a contiguous dataset; each mapped file's size and time for a virtual one) and
    a digest of the labels. A rewritten compressed chunk moves or changes size, so the chunk
    index changes even when the modification time is set back; a relabelled image changes
    the labels digest. An unfiltered chunk rewritten in place keeps the index and the size:
    only the modification time shows it (a copy that also set it back is not detected).
    """
    images = store.images
    status = os.stat(store.path)
    index = hashlib.sha256()
    try:
        for chunk in stored_chunks(images):
            index.update(f"{chunk.first},{chunk.offset},{chunk.size},{chunk.filter_mask};"
                         .encode())
    except Exception:  # HDF5 without H5Dchunk_iter: size and time remain
        index.update(b"no chunk index;")
    if images.is_virtual:
        folder = os.path.dirname(os.path.abspath(store.path))
        for mapping in images.virtual_sources():
            name = mapped_file(mapping.file_name) or mapping.file_name
            try:
                mapped = os.stat(os.path.join(folder, name))
                index.update(f"{name},{mapped.st_size},{mapped.st_mtime_ns};".encode())
            except OSError:
                index.update(f"{name},missing;".encode())
    elif images.chunks is None:
        index.update(f"contiguous,{images.id.get_offset()};".encode())
    labels = np.asarray(store.labels)
    digest = hashlib.sha256(f"{labels.dtype.str}:{labels.shape}:".encode())
    if labels.dtype.kind in "OU":
        for label in labels.tolist():
            text = repr(label).encode("utf-8", "backslashreplace")
            digest.update(len(text).to_bytes(8, "little") + text)
    else:
        digest.update(np.ascontiguousarray(labels).tobytes())
    return {"size": status.st_size, "mtime_ns": status.st_mtime_ns,
            "shape": [int(size) for size in images.shape], "dtype": images.dtype.str,
            "chunks": index.hexdigest(), "labels": digest.hexdigest()}


def _fingerprint_change(recorded, current: dict) -> str:
    """Return what differs between two source fingerprints, in words ("" when nothing)."""
    if not isinstance(recorded, dict):
        return "no fingerprint of it was recorded"
    for names, words in ((("shape", "dtype"), "its images' shape or dtype"),
                         (("labels",), "its labels"),
                         (("chunks",), "its stored chunks"),
                         (("size", "mtime_ns"), "its size or modification time")):
        if any(recorded.get(name) != current[name] for name in names):
            return words
    return ""


def _remove_shards(folder: str) -> None:
    for entry in os.listdir(folder):
        if (entry.startswith(("window-", ".window-")) and ".h5" in entry) or entry == RUN_FILE:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, entry))


def write_virtual_store(store, destination: str, folder: str, windows, spec: MixSpec,
                        key: Key, labels_name: str, unpartnered: int, operation: str,
                        overwrite: bool, run: str) -> None:
    """Write the store that maps the shards into one images dataset, and publish the run."""
    import h5py

    from fastmix.store.durable.atomic import atomic_output

    for entry in os.listdir(folder):  # temporaries of tasks that a dead worker left
        if entry.startswith(".window-"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(folder, entry))
    images = store.images
    shape = tuple(images.shape)
    layout = h5py.VirtualLayout(shape=shape, dtype=images.dtype)
    relative = os.path.basename(folder)
    for index, (start, stop) in enumerate(windows):
        layout[start:stop] = h5py.VirtualSource(
            mapping_file_name(f"{relative}/{shard_name(index)}"), "images",
            shape=(stop - start, *shape[1:]))
    with atomic_output(destination, overwrite) as temporary:
        with h5py.File(temporary, "w", libver=store.file.libver,
                       userblock_size=store.file.userblock_size) as target:
            output = create_output(store.file, target, images.name, skip_prefix=PREFIX)
            fill = images.fillvalue
            virtual = replace_dataset(
                output, images.name, lambda parent, name: parent.create_virtual_dataset(
                    name, layout, fillvalue=fill if fill is not None else 0))
            copy_attributes(images, virtual, skip_prefix=PREFIX)
            if operation == "mix":
                write_mix_attributes(virtual, spec, window=max(b - a for a, b in windows),
                                     key_check=key.check_value, labels=labels_name,
                                     unpartnered=unpartnered, key=key)
            virtual.attrs[RUN_ATTRIBUTE] = run
            if operation == "mix":
                seal_record(virtual, key)  # the run id is part of the record the MAC covers
        copy_userblock(store.path, temporary, store.file.userblock_size)
        # Before the store appears: a store never reads the shards of an unpublished run,
        # which a new run may discard.
        _publish_run(folder, key)
    fsync_folder_of(os.path.join(folder, shard_name(0)))
