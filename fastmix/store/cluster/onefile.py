"""The one-file layout of a cluster run: the client gathers every window into one file.

Each task writes its window into a *part* file of its own in a hidden folder beside the
destination (:func:`parts_folder`), named and stamped with the run's token and window, with
the chunking and filters of the output. The client copies the part's stored chunks, as
stored, into a hidden partial file beside the destination (:func:`partial_path`) with direct
chunk reads and writes: it never decodes or encodes a pixel, and no chunk goes through
Dask's connections (the client reads the parts from the shared folder; the copy took 8 to 10
us of CPU per 10.5 kB LZ4 image in ``bench/bench_dask.py``, where shipping the chunks over
Dask made the run 1.8x the single process, and the copy 1.07x). It copies the windows in
window order; after each it flushes the file, appends the window to a done log and removes
the part; at the end it records the ``fastmix_*`` attributes, fsyncs the file and renames it
into place. The images dataset equals the single-process run's byte for byte (the same
encoder and filters, chunks copied as stored). A killed client is finished by
``resume=True`` from the done log: the windows not marked done are mixed again, each task
rewriting its part, and the parts folder is removed when the run ends (finished or failed).
The client copies only the part at
the name it expects (:func:`~fastmix.store.cluster.tasks.part_name`: this run's token and the
window), and refuses one not stamped for both: a task of another run, which a killed client
left running (Dask cannot stop a running task), writes a part of another name.

Where the workers do not share the destination's folder with the client, or the windows do
not fall on chunk boundaries (an unmix of a rechunked store) or the output is not chunked,
the tasks return their encoded chunks to the client instead, which writes them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from concurrent.futures import ThreadPoolExecutor

from fastmix.errors import BadInputError
from fastmix.keys import Key
from fastmix.store.cluster.tasks import (
    PART_STAMP,
    Job,
    add_stages,
    ordered_results,
    part_name,
    part_stamp,
)
from fastmix.store.durable.fsync import fsync_folder_of, fsync_path
from fastmix.store.hdf5.chunkio import WindowWriter
from fastmix.store.hdf5.chunks import chunk_bytes
from fastmix.store.hdf5.crashrepair import clear_open_flag
from fastmix.store.hdf5.lowlevel import copy_stored_chunks, stored_chunks
from fastmix.store.hdf5.record import PREFIX, write_mix_attributes
from fastmix.store.newfile.output import copy_userblock, create_output

PARTIAL_MARK = ".fastmix-partial"
PARTS_SUFFIX = ".parts"


def partial_path(destination: str) -> str:
    """Return the hidden file a one-file cluster run writes, then renames to ``destination``."""
    folder, name = os.path.split(os.path.abspath(destination))
    return os.path.join(folder, f".{name}{PARTIAL_MARK}")


def parts_folder(destination: str) -> str:
    """Return the hidden folder where the workers of a one-file run write their part files."""
    return partial_path(destination) + PARTS_SUFFIX


def parts_fit(dataset, windows) -> bool:
    """Whether windows of ``dataset`` can go through part files: chunked, windows aligned."""
    if dataset.chunks is None:
        return False
    step = int(dataset.chunks[0])
    return all(start % step == 0 for start, _ in windows)


#: The files this code names in a parts folder: parts (:func:`part_name`, and the names of
#: earlier versions, without a token) and their temporaries.
_PART_FILE = re.compile(r"\.?part-(?:[0-9a-f]{16}-)?[0-9]{6,}\.h5(?:\.tmp-[0-9]+-[0-9a-f]+)?")


def remove_parts(folder: str | None) -> None:
    """Remove the part files (of any run) and their temporaries from ``folder``, then ``folder``.

    Only files of the names this code writes are removed; the folder stays when anything
    else is in it. A symbolic link is never followed: one at ``folder`` is left alone, and
    one inside it is not a file this code wrote.
    """
    if folder is None:
        return
    try:
        if not stat.S_ISDIR(os.lstat(folder).st_mode):
            return
        with os.scandir(folder) as entries:
            names = [entry.name for entry in entries
                     if entry.is_file(follow_symlinks=False) and _PART_FILE.fullmatch(entry.name)]
    except OSError:
        return
    for name in names:
        with contextlib.suppress(FileNotFoundError):
            os.remove(os.path.join(folder, name))
    with contextlib.suppress(OSError):
        os.rmdir(folder)


class _DoneLog:
    """The done marks of a one-file run: a header line, then one line per written window."""

    def __init__(self, path: str):
        self.path = path

    def read(self, header: dict) -> dict[int, int]:
        """``{window index: unpartnered}`` of a log whose header equals ``header``."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                lines = handle.read().splitlines()
        except FileNotFoundError:
            return {}
        if not lines or lines[0] != json.dumps(header, sort_keys=True):
            return {}
        done = {}
        for line in lines[1:]:
            parts = line.split()
            if len(parts) == 2 and all(part.isdigit() for part in parts):
                done[int(parts[0])] = int(parts[1])
        return done

    def start(self, header: dict) -> None:
        with open(self.path, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(header, sort_keys=True) + "\n")

    def mark(self, index: int, unpartnered: int) -> None:
        with open(self.path, "a", encoding="utf-8") as handle:
            handle.write(f"{index} {unpartnered}\n")

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.path)


def run_one_file(client, job: Job, store, windows, key: Key, destination: str, resume: bool,
                 overwrite: bool, limit: int, bar, stages: dict, cpu: dict) -> int:
    """Write the windows the done log lacks into the partial file, then rename it into place.

    With ``job.part_folder`` the tasks write part files there, which the client copies as
    stored; without it they return their encoded chunks. Adds the seconds per stage to
    ``stages`` and the CPU seconds to ``cpu`` (the workers', and the client thread's for
    ``gather``). Returns the number of unpartnered images.
    """
    import h5py

    partial = partial_path(destination)
    log = _DoneLog(partial + ".done")
    header = {"token": job.token, "windows": len(windows)}
    done = log.read(header) if resume and os.path.exists(partial) else {}
    target = None
    if done:
        try:
            clear_open_flag(partial)  # a killed writer leaves it set in newer file formats
            target = h5py.File(partial, "r+")
            output = target[job.images]
            if not _windows_written(output, windows, done):
                raise OSError("done windows without their chunks")
        except (OSError, KeyError):
            if target is not None:
                target.close()
            target, done = None, {}
    if target is None:
        log.remove()
        with contextlib.suppress(FileNotFoundError):
            os.remove(partial)
        target = h5py.File(partial, "w", libver=store.file.libver,
                           userblock_size=store.file.userblock_size,
                           rdcc_nbytes=max(1 << 20, 2 * chunk_bytes(store.images)))
        output = create_output(store.file, target, store.images.name, skip_prefix=PREFIX,
                               early_allocation=job.raw)
        target.flush()
        log.start(header)
    finished = False
    try:
        with ThreadPoolExecutor(1) as pool:
            writer = WindowWriter(output, pool, threads=1, raw=job.raw)
            if job.raw:
                writer.write_in_place(partial)
            try:
                for index in done:
                    start, stop = windows[index]
                    bar.update(stop - start)
                todo = [index for index in range(len(windows)) if index not in done]
                buffer = bytearray()
                for result in ordered_results(client, job, windows, todo, store.labels, key,
                                              limit):
                    received = time.time()
                    clock, used = time.perf_counter(), time.thread_time()
                    part = None
                    if job.part_folder is not None:
                        # The part this run names, never the one the result names.
                        part = os.path.join(job.part_folder, part_name(job.token, result.index))
                        _copy_part(part, output, job.token, result.index,
                                   windows[result.index], buffer)
                    else:
                        assert result.items is not None  # a result without a part has them
                        writer.store_piece(result.items)
                    target.flush()
                    stages["gather"] += time.perf_counter() - clock
                    cpu["gather"] = cpu.get("gather", 0.0) + time.thread_time() - used
                    stages["ship"] += max(0.0, received - result.finished)
                    add_stages(stages, result.seconds)
                    add_stages(cpu, result.cpu)
                    log.mark(result.index, result.unpartnered)
                    done[result.index] = result.unpartnered
                    if part is not None:
                        with contextlib.suppress(FileNotFoundError):
                            os.remove(part)
                    bar.update(result.stop - result.start)
            finally:
                writer.close()
        unpartnered = sum(done.values())
        if not job.inverse:
            write_mix_attributes(output, job.spec, window=max(b - a for a, b in windows),
                                 key_check=key.check_value, labels=store.labels_name,
                                 unpartnered=unpartnered, key=key)
        target.close()
        target = None
        copy_userblock(store.path, partial, store.file.userblock_size)
        fsync_path(partial)
        if os.path.exists(destination) and not overwrite:
            raise BadInputError(
                f"destination {destination!r} appeared while fastmix was writing; it was left "
                "alone. Choose another path or pass --overwrite"
            )
        os.replace(partial, destination)
        finished = True
        log.remove()
        fsync_folder_of(destination)
    finally:
        if target is not None:
            target.close()
        remove_parts(job.part_folder)
        if not finished and not _resumable(partial, log):
            with contextlib.suppress(FileNotFoundError):
                os.remove(partial)
            log.remove()
    return unpartnered


def _copy_part(path: str, output, token: str, index: int, window: tuple[int, int],
               buffer: bytearray) -> None:
    """Copy the stored chunks of the part file ``path`` into ``output`` at the window's start.

    Raises
    ------
    BadInputError
        The part is not stamped for the run of ``token`` and this window, or its images
        do not fit the window (dtype, image shape, length, chunks or filters).
    """
    import h5py

    start, stop = window
    with h5py.File(path, "r") as part:
        images = part["images"]
        stamp = images.attrs.get(PART_STAMP)
        if isinstance(stamp, bytes):
            stamp = stamp.decode(errors="replace")
        expected = part_stamp(token, index, start, stop)
        if stamp != expected:
            raise BadInputError(
                f"part file {path!r} holds {stamp or 'no stamp'}, not window {index} of this "
                "run; another fastmix run may be writing the same destination. Stop it, then "
                "run this command again with --resume")
        try:
            copy_stored_chunks(images, output, start, buffer, length=stop - start)
        except ValueError as error:
            raise BadInputError(f"part file {path!r} does not fit window {index}: {error}; "
                                "run this command again with --resume") from None


def _resumable(partial: str, log: _DoneLog) -> bool:
    # Keep a partial file that has windows marked done: resume=True finishes it.
    try:
        with open(log.path, encoding="utf-8") as handle:
            return os.path.exists(partial) and len(handle.read().splitlines()) > 1
    except FileNotFoundError:
        return False


def _windows_written(output, windows, done: dict[int, int]) -> bool:
    """Whether every chunk of the windows in ``done`` is in ``output``'s chunk index."""
    if output.chunks is None:
        return True
    step = int(output.chunks[0])
    present = {chunk.first for chunk in stored_chunks(output)}
    for index in done:
        start, stop = windows[index]
        if any(chunk not in present for chunk in range(start - start % step, stop, step)):
            return False
    return True
