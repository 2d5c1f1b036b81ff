"""Worker processes for decoding and encoding image files, an alternative to threads.

Pillow releases the GIL while it decodes and encodes, but imageio's and Pillow's per-file
Python work holds it, so threads contend for it a little; worker processes do not, at the
price of an interpreter start (about 0.2 s of CPU each) and a pipe copy of every image, which
made them slower than threads on two cores (``bench/bench_ingest.py``). Each worker is a
fresh interpreter (see ``_WORKER_MAIN``) that speaks a small protocol on its standard input
and output: one JSON header line, then the raw bytes it announces. Fresh interpreters avoid
the hazards of ``multiprocessing``: no fork of a process that runs Numba, HDF5 or tqdm
threads, and no re-import of the user's main script. Each thread of a thread pool owns one
worker process, so jobs spread over the workers and pipe I/O overlaps (it releases the
GIL).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import numpy as np

from fastmix.errors import WorkerError  # re-exported

# The worker imports fastmix.images without running fastmix/__init__.py, which loads Numba
# and the kernels (about 0.6 s per worker) that decoding and encoding never use.
_WORKER_MAIN = """
import sys, types
package = types.ModuleType("fastmix")
package.__path__ = [sys.argv[1] + "/fastmix"]
sys.modules["fastmix"] = package
from fastmix.images.workers import _serve
_serve()
"""


def use_processes(images: int, workers: int, processes: bool | None) -> bool:
    """Whether a job of ``images`` images on ``workers`` workers runs in worker processes.

    The default is threads: on the shared two-core machine where fastmix is measured, worker
    processes were slower than threads for ingest and export (``bench/bench_ingest.py``).
    """
    if processes is not None:
        return bool(processes) and images > 0
    return False


def _read_exactly(stream, size: int) -> bytes:
    data = stream.read(size) if size else b""
    if len(data) != size:
        raise WorkerError("an image worker process exited unexpectedly")
    return data


def _byte_view(array: np.ndarray) -> memoryview:
    """Return the bytes of a C-contiguous array, without a copy (empty arrays included)."""
    return memoryview(array.reshape(-1).view(np.uint8))


def _read_into(stream, buffer: memoryview) -> None:
    done = 0
    while done < len(buffer):
        count = stream.readinto(buffer[done:])
        if not count:
            raise WorkerError("an image worker process exited unexpectedly")
        done += count


class WorkerProcesses:
    """Worker processes, one per calling thread, started on first use."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        self._started: list[subprocess.Popen] = []
        self._closed = False

    def _worker(self) -> subprocess.Popen:
        worker = getattr(self._local, "worker", None)
        if worker is None:
            package_root = os.path.dirname(os.path.dirname(os.path.dirname(
                os.path.abspath(__file__))))
            environment = dict(os.environ)
            environment["PYTHONPATH"] = os.pathsep.join(
                [package_root, *filter(None, [environment.get("PYTHONPATH")])])
            worker = subprocess.Popen([sys.executable, "-c", _WORKER_MAIN, package_root],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      env=environment)
            with self._lock:
                if self._closed:
                    worker.kill()
                    raise WorkerError("the worker pool is closed")
                self._started.append(worker)
            self._local.worker = worker
        return worker

    def call(self, request: dict, payload: bytes | memoryview = b"",
             into: np.ndarray | None = None) -> tuple[dict, bytes]:
        """Send one job to this thread's worker and wait for its reply.

        The reply's bytes are returned, or read straight into ``into`` (a C-contiguous array
        large enough for them), in which case ``b""`` is returned.
        """
        worker = self._worker()
        requests, replies = worker.stdin, worker.stdout
        assert requests is not None and replies is not None  # every worker has both pipes
        header = json.dumps({**request, "bytes": len(payload)}).encode() + b"\n"
        try:
            requests.write(header)
            requests.write(payload)
            requests.flush()
        except (BrokenPipeError, OSError):
            raise WorkerError("an image worker process exited unexpectedly") from None
        line = replies.readline()
        if not line:
            raise WorkerError("an image worker process exited unexpectedly")
        reply = json.loads(line)
        size = int(reply.get("bytes", 0))
        if into is not None and "error" not in reply:
            _read_into(replies, _byte_view(into)[:size])
            return reply, b""
        data = _read_exactly(replies, size)
        if "error" in reply:
            raise WorkerError(reply["error"])
        return reply, data

    def decode(self, paths: list[str], size: tuple[int, int], channels: int,
               out: np.ndarray | None = None) -> tuple[np.ndarray, list[int], list[str]]:
        """:func:`fastmix.images.decode.decode_batch` in this thread's worker process."""
        if out is None:
            out = np.empty((len(paths), size[0], size[1], channels), dtype=np.uint8)
        reply, _ = self.call({"op": "decode", "paths": paths, "size": list(size),
                              "channels": channels}, into=out)
        return out[: len(reply["ok"])], reply["ok"], reply["failures"]

    def write(self, images: np.ndarray, paths: list[str], options: dict) -> int:
        """:func:`fastmix.images.encode.write_images` in this thread's worker process."""
        images = np.ascontiguousarray(images)
        reply, _ = self.call({"op": "write", "paths": paths, "shape": list(images.shape),
                              "dtype": images.dtype.str, "options": options},
                             _byte_view(images))
        return int(reply["done"])

    def close(self) -> None:
        """Stop every worker (they exit when their input closes)."""
        with self._lock:
            self._closed = True
            started, self._started = self._started, []
        for worker in started:
            try:
                if worker.stdin is not None:
                    worker.stdin.close()
            except OSError:
                pass
        for worker in started:
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
            if worker.stdout is not None:
                worker.stdout.close()

    def __enter__(self) -> WorkerProcesses:
        """Return the pool itself; leaving the block stops the workers."""
        return self

    def __exit__(self, *exc_info) -> None:
        """Stop every worker."""
        self.close()


def _serve() -> None:
    """Run the worker's loop: read a job, do it, reply; exit at the end of the input."""
    import signal
    import warnings

    from fastmix.images.decode import decode_batch
    from fastmix.images.encode import write_images

    # Ctrl-C is the parent's to handle: it stops feeding jobs and closes our input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    warnings.simplefilter("ignore")
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints from libraries must not corrupt the protocol
    requests = sys.stdin.buffer
    decoded = None  # reused between jobs: fresh memory costs page faults
    while True:
        line = requests.readline()
        if not line:
            return
        request = json.loads(line)
        payload = _read_exactly(requests, int(request.get("bytes", 0)))
        body: bytes | memoryview = b""
        try:
            if request["op"] == "decode":
                shape = (len(request["paths"]), *request["size"], int(request["channels"]))
                if decoded is None or decoded.shape[1:] != shape[1:] or \
                        len(decoded) < shape[0]:
                    decoded = np.empty(shape, dtype=np.uint8)
                images, ok, failures = decode_batch(request["paths"], tuple(request["size"]),
                                                    int(request["channels"]), out=decoded)
                body = _byte_view(images)
                reply = {"ok": ok, "failures": failures}
            elif request["op"] == "write":
                images = np.frombuffer(payload, dtype=np.dtype(request["dtype"])).reshape(
                    request["shape"])
                reply = {"done": write_images(images, request["paths"], request["options"])}
            else:
                reply = {"error": f"unknown operation {request['op']!r}"}
        except Exception as error:  # reported to the parent, which raises
            reply = {"error": f"{type(error).__name__}: {error}"}
            body = b""
        replies.write(json.dumps({**reply, "bytes": len(body)}).encode() + b"\n")
        replies.write(body)
        replies.flush()
