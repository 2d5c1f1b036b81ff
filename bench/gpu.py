"""The cuda backend on a GPU, as one Markdown table.

Kernel bandwidth against a device copy, bit-equality with the CPU backend, training-batch
mixing and the store path's split.

    python bench/gpu.py                   # the device check (NVIDIA GPU, PyTorch)
    python bench/gpu.py --out gpu.md      # also write the table to a file
    NUMBA_ENABLE_CUDASIM=1 python bench/gpu.py --tiny   # the script itself, in the simulator

Every bandwidth counts the bytes read and written (2 x the images' bytes), as the copy
baseline does, and is the median of ``--repeats`` timed runs after one warm-up. Kernel
figures exclude the host's planning and the plan's copy to the device, shown apart.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import traceback
import warnings

import numpy as np

if not hasattr(np, "row_stack"):
    # numba-cuda 0.30.x refers to np.row_stack, which NumPy 2.5 removed. fastmix's cuda
    # extras pin numpy<2.5; a machine image with NumPy 2.5 gets this alias for the check.
    setattr(np, "row_stack", np.vstack)  # noqa: B010

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import fastmix  # noqa: E402
from fastmix.pipeline import Pipeline  # noqa: E402
from fastmix.units import format_bytes  # noqa: E402

KEY = fastmix.Key.from_hex("5a" * 32)
CLASSES = 10


class Device:
    """The arrays the caller holds: PyTorch on a GPU, or NumPy under the simulator."""

    def __init__(self):
        from numba import cuda

        self.cuda = cuda
        self.simulated = os.environ.get("NUMBA_ENABLE_CUDASIM", "0") not in ("", "0")
        self.torch = None
        if not self.simulated:
            import torch

            self.torch = torch

    def random_images(self, shape: tuple[int, ...], seed: int):
        if self.torch is None:
            return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
        generator = self.torch.Generator(device="cuda").manual_seed(seed)
        return self.torch.randint(0, 256, shape, dtype=self.torch.uint8, device="cuda",
                                  generator=generator)

    def empty(self, shape: tuple[int, ...]):
        if self.torch is None:
            return np.empty(shape, dtype=np.uint8)
        return self.torch.empty(shape, dtype=self.torch.uint8, device="cuda")

    def empty_like(self, images):
        return np.empty_like(images) if self.torch is None else self.torch.empty_like(images)

    def host(self, images) -> np.ndarray:
        return np.asarray(images) if self.torch is None else images.cpu().numpy()

    def copy(self, source, target) -> None:
        if self.torch is None:
            np.copyto(target, source)
        else:
            target.copy_(source)

    def synchronize(self) -> None:
        if self.torch is not None:
            self.torch.cuda.synchronize()
        else:
            self.cuda.synchronize()

    def name(self) -> str:
        if self.simulated:
            return "numba.cuda simulator"
        return self.torch.cuda.get_device_name()


def timed(function, device: Device, repeats: int) -> float:
    """Median seconds of ``function()`` after one warm-up, synchronised."""
    function()
    device.synchronize()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        device.synchronize()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def kernel_resources(device: Device, steps, count: int) -> tuple[str, str]:
    """Return the kernel the backend launched for ``steps``, and its notes.

    The notes: the words it moved, its theoretical occupancy (registers and shared memory
    a block, on this GPU's limits) and the bytes it reads and writes in device memory.
    """
    from fastmix.kernels.cuda import backend, kernels

    tiles = [entry[1] for entry in backend._buffers.tiles.values() if entry[0] is steps]
    layout = steps.layout
    image_bytes = layout.height * layout.units * layout.unit_dtype.itemsize
    if not tiles or tiles[-1] is None:
        name = "hardened_gather" if steps.hardened else "gather"
        moved, words, dtype = 2 * count * image_bytes, "word a thread", None
    else:
        geometry = tiles[-1].geometry
        name = "tile_harden" if steps.hardened else "tile_gather"
        moved = geometry.moved_bytes(count)
        words = (f"{geometry.load_width}-byte loads, {geometry.store_width}-byte stores, "
                 f"{geometry.group} blocks x {int(np.diff(geometry.pieces[:, :2]).max())} rows a "
                 "unit")
        dtype = np.dtype(steps.values.dtype) if steps.hardened else \
            kernels.word_dtype(geometry.value_size)
    blur = steps.blur
    if blur is not None:
        row_bytes = image_bytes // layout.height
        pixel_bytes = row_bytes // int(steps.grid.col_edges[-1])
        moved += 2 * count * (np.asarray(blur.band_rows).size * row_bytes
                              + layout.height * np.asarray(blur.band_cols).size * pixel_bytes)
    occupancy = "occupancy n/a (simulator)"
    if not device.simulated:
        kernel = kernels.compiled_kernels()[name]
        registers = kernel.get_regs_per_thread()
        shared = kernel.get_shared_mem_per_block()
        # Keyed by argument types (a tuple, or a signature's .args): the first is the values.
        signature = next((sig for sig in registers if dtype is None or
                          str(getattr(sig, "args", sig)[0].dtype) == dtype.name), None)
        if signature is not None:
            threads = kernels.TILE_THREADS if name.startswith("tile") else \
                kernels.THREADS_PER_BLOCK
            value = kernels.occupancy(threads, registers[signature], shared[signature],
                                      kernels.device_limits())
            occupancy = (f"occupancy {value:.0%} ({registers[signature]} registers, "
                         f"{shared[signature]:,} B shared a block)")
    return name, f"{name}: {words}; {occupancy}; moves {format_bytes(moved)} a run"


def kernel_rows(device: Device, cases, repeats: int) -> list[str]:
    """One row a target: the kernels' bandwidth against a device copy of the same bytes."""
    rows = []
    copies: dict = {}
    for label, count, shape, spec in cases:
        images = device.random_images((count, *shape), seed=count)
        out = device.empty_like(images)
        nbytes = count * int(np.prod(shape))
        labels = np.random.default_rng(1).integers(0, CLASSES, count)
        if (count, shape) not in copies:
            copies[(count, shape)] = timed(lambda images=images, out=out:
                                           device.copy(images, out), device, repeats)
        copy_rate = 2 * nbytes / copies[(count, shape)] / 1e9
        pipeline = Pipeline(shape, np.uint8, spec, KEY, backend="cuda")
        started = time.perf_counter()
        plan = pipeline.plan(labels, 0)
        plan_seconds = time.perf_counter() - started
        started = time.perf_counter()
        window = pipeline.load(images, plan)
        device.synchronize()
        load_seconds = time.perf_counter() - started
        seconds = timed(lambda window=window, out=out, pipeline=pipeline, count=count:
                        pipeline.mix_piece(window, 0, count, out), device, repeats)
        rate = 2 * nbytes / seconds / 1e9
        block = "x".join(map(str, spec.block_shape(*shape[:2])))
        _, notes = kernel_resources(device, pipeline.steps, count)
        rows.append(
            f"| {label}, {count:,} x {'x'.join(map(str, shape))}, {block} blocks | "
            f"{rate:.1f} GB/s | {copy_rate:.1f} GB/s | {rate / copy_rate:.2f}x | {notes}; "
            f"plan {plan_seconds * 1e3:.0f} ms + to device {load_seconds * 1e3:.0f} ms |")
        print(rows[-1], flush=True)
        del images, out
    return rows


def equality_rows(device: Device, cases, sample: int) -> list[str]:
    rows = []
    for count, shape, block in cases:
        count = min(count, sample)
        images = device.random_images((count, *shape), seed=7)
        host = device.host(images)
        labels = np.random.default_rng(2).integers(0, CLASSES, count)
        for name, spec in (("plain", fastmix.MixSpec(block=block, donors=10)),
                           ("balanced", fastmix.MixSpec.preset("balanced", block=block))):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", fastmix.FastmixWarning)
                expected = fastmix.mix_array(host, labels, spec, KEY, window=count // 2)
                mixed = fastmix.mix_array(images, labels, spec, KEY, window=count // 2,
                                          backend="cuda")
            same = np.array_equal(device.host(mixed), expected)
            rows.append(f"| bit-equal to the CPU backend: {count} x "
                        f"{'x'.join(map(str, shape))}, {name} | {'yes' if same else 'NO'} | | | |")
            print(rows[-1], flush=True)
    return rows


def batch_rows(device: Device, batch: tuple[int, ...], repeats: int) -> list[str]:
    """``mix_batch`` on a training batch already on the GPU, planning included.

    Each timed call takes a new step, so it plans; a second figure repeats one step (the
    plan kept). In the simulator (no CUDA tensors) the same path runs on NumPy arrays
    through ``fastmix.mixing.mix_cached``, which ``mix_batch`` calls.
    """
    from fastmix.mixing import mix_cached
    from fastmix.torch import _BATCHES, mix_batch

    rows = []
    count = batch[0]
    images = device.random_images(batch, seed=3)
    labels_host = np.random.default_rng(6).integers(0, CLASSES, count)
    if device.torch is not None:
        labels = device.torch.tensor(labels_host, device="cuda")

        def run(spec, step):
            return mix_batch(images, labels, spec, KEY, step)

        def host(mixed):
            return mixed.permute(0, 2, 3, 1).cpu().numpy()

        nhwc = images.permute(0, 2, 3, 1).contiguous().cpu().numpy()
    else:
        nhwc = np.ascontiguousarray(np.moveaxis(images, 1, -1))

        def run(spec, step):
            return mix_cached(nhwc, labels_host, spec, KEY, _BATCHES, backend="cuda",
                              first_window=step)

        def host(mixed):
            return np.asarray(mixed)

    hw = batch[-2:]
    for name, spec in (("default preset (balanced)", fastmix.MixSpec.preset("balanced")),
                       ("plain", fastmix.MixSpec(donors=10))):
        steps = iter(range(1, 10**9))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", fastmix.FastmixWarning)
            planned = timed(lambda spec=spec, steps=steps: run(spec, next(steps)), device,
                            repeats)
            kept = timed(lambda spec=spec: run(spec, 0), device, repeats)
            same = np.array_equal(host(run(spec, 5)), fastmix.mix_array(
                nhwc, labels_host, spec, KEY, first_window=5))
        block = "x".join(map(str, spec.block_shape(*hw)))
        rows.append(f"| mix_batch {'x'.join(map(str, batch))} uint8, {name}, {block} blocks, "
                    f"planning included | {count / planned:,.0f} images/s | | | plan kept "
                    f"(same step): {count / kept:,.0f} images/s; bit-equal to CPU: "
                    f"{'yes' if same else 'NO'} |")
        print(rows[-1], flush=True)
    return rows


def store_rows(device: Device, count: int, shape: tuple[int, ...], block: tuple[int, int],
               repeats: int) -> list[str]:
    """Return the store path: h5py I/O, transfers and kernel time apart, then whole runs."""
    import h5py

    rows = []
    spec = fastmix.MixSpec.preset("balanced", block=block)
    host = np.random.default_rng(4).integers(0, 256, (count, *shape), dtype=np.uint8)
    labels = np.random.default_rng(5).integers(0, CLASSES, count)
    nbytes = host.nbytes
    chunk = min(count, max(1, (4 << 20) // host[0].nbytes))
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as folder:
        source = os.path.join(folder, "source.h5")
        with h5py.File(source, "w") as file:
            file.create_dataset("images", data=host, chunks=(chunk, *shape))
            file.create_dataset("labels", data=labels)

        def h5py_copy():
            target = os.path.join(folder, "copy.h5")
            with h5py.File(source, "r") as reader, h5py.File(target, "w") as writer:
                data = reader["images"]
                written = writer.create_dataset("images", shape=data.shape, dtype=data.dtype,
                                                chunks=data.chunks)
                for start in range(0, len(data), chunk):
                    written[start:start + chunk] = data[start:start + chunk]
            os.remove(target)

        io_seconds = timed(h5py_copy, device, repeats)

        cuda = device.cuda
        pinned = cuda.pinned_array(host.shape, dtype=np.uint8)
        np.copyto(pinned, host)
        on_device = cuda.device_array(host.shape, dtype=np.uint8)

        def transfers():
            on_device.copy_to_device(pinned)
            on_device.copy_to_host(pinned)

        transfer_seconds = timed(transfers, device, repeats)
        pipeline = Pipeline(shape, np.uint8, spec, KEY, backend="cuda")
        plan = pipeline.plan(labels, 0)
        window = pipeline.load(host, plan)
        out_device = device.empty(host.shape)
        kernel_seconds = timed(lambda: pipeline.mix_piece(window, 0, count, out_device),
                               device, repeats)

        def store(backend: str) -> str:
            target = os.path.join(folder, f"mixed-{backend}.h5")
            if os.path.exists(target):
                os.remove(target)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", fastmix.FastmixWarning)
                fastmix.mix_store(source, target, spec=spec, key=KEY, backend=backend,
                                  progress=False, memory="512MiB")
            return target

        cuda_seconds = timed(lambda: store("cuda"), device, max(1, repeats // 2))
        cpu_seconds = timed(lambda: store("cpu"), device, max(1, repeats // 2))
        with h5py.File(store("cuda"), "r") as first, h5py.File(store("cpu"), "r") as second:
            same = np.array_equal(first["images"][...], second["images"][...])
    size = f"{count:,} x {'x'.join(map(str, shape))} raw, balanced {block[0]}x{block[1]}"
    rows.append(f"| store {size}: fastmix mix --backend cuda | {nbytes / cuda_seconds / 1e9:.2f}"
                f" GB/s | cpu backend {nbytes / cpu_seconds / 1e9:.2f} GB/s | "
                f"{cpu_seconds / cuda_seconds:.2f}x cpu | bit-equal to CPU: "
                f"{'yes' if same else 'NO'} |")
    rows.append(f"| store split, seconds for {nbytes / 1e9:.2f} GB | h5py chunk copy (I/O) "
                f"{io_seconds:.2f} s | host<->device transfers {transfer_seconds:.2f} s | "
                f"kernel {kernel_seconds:.3f} s | whole cuda run {cuda_seconds:.2f} s |")
    for row in rows:
        print(row, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (simulator check)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="also write the table here")
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["kernel", "equality", "batch", "store"])
    args = parser.parse_args(argv)
    device = Device()
    def plain(block):
        return fastmix.MixSpec(block=block, donors=10)

    balanced = fastmix.MixSpec.preset("balanced")
    if args.tiny:
        big, small = (8, (32, 32, 3)), (16, (16, 16, 3))
        cases = [(12, (12, 12, 3), (6, 3)), (16, (8, 8, 3), (4, 4))]
        targets = [("plain gather", *big, plain((16, 16))),
                   ("plain gather (the 96x24 target's words)", *big, plain((16, 8))),
                   ("plain gather (the 8x8 target)", *small, plain((8, 8))),
                   ("default preset (balanced)", *big, balanced),
                   ("default preset without seam blur", *big,
                    fastmix.MixSpec.preset("balanced", seam_blur=0.0))]
        batch, store_size, sample = (8, 3, 16, 16), (16, (8, 8, 3), (4, 4)), 12
    else:
        big, small = (3000, (192, 192, 3)), (100_000, (64, 64, 3))
        cases = [(3000, (192, 192, 3), (96, 24)), (100_000, (64, 64, 3), (8, 8))]
        targets = [("plain gather", *big, plain((16, 16))),
                   ("plain gather", *big, plain((96, 24))),
                   ("plain gather", *small, plain((8, 8))),
                   ("default preset (balanced)", *big, balanced),
                   ("default preset without seam blur", *big,
                    fastmix.MixSpec.preset("balanced", seam_blur=0.0))]
        batch, store_size, sample = (256, 3, 224, 224), (40_000, (64, 64, 3), (16, 16)), 400
    import numba
    import numba_cuda

    print(f"device: {device.name()}; numba {numba.__version__}, numba-cuda "
          f"{getattr(numba_cuda, '__version__', '?')}, numpy {np.__version__}", flush=True)
    lines = ["| case | fastmix cuda | device copy | ratio | notes |",
             "| --- | --- | --- | --- | --- |"]
    sections = {"equality": lambda: equality_rows(device, cases, sample),
                "kernel": lambda: kernel_rows(device, targets, args.repeats),
                "batch": lambda: batch_rows(device, batch, args.repeats),
                "store": lambda: store_rows(device, *store_size,
                                            repeats=max(1, args.repeats // 2))}
    for name, section in sections.items():
        if name in args.skip:
            continue
        try:
            lines += section()
        except Exception as error:  # keep the other sections' figures
            traceback.print_exc()
            lines.append(f"| {name}: failed ({type(error).__name__}: {error}) | | | | |")
        if args.out:
            with open(args.out, "w") as handle:
                handle.write("\n".join(lines) + "\n")
    table = "\n".join([f"GPU: {device.name()}", "", *lines])
    print(table)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
