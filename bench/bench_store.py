"""Store benchmark: mix_store against a plain h5py chunk-by-chunk copy, in the same run.

    python bench/bench_store.py                          # 40,000 images, none / lz4 / gzip-1
    python bench/bench_store.py --images 10000 --repeats 3
    python bench/bench_store.py --scale 10000,100000,1000000 --memory 1GiB --dir /big/disk
    python bench/bench_store.py --scale 100000 --preset balanced   # the default preset

The default mode prints the README table: medians of alternating runs on the same warm
file, and their ratio (mix_store throughput / plain copy throughput). ``--scale`` instead
mixes stores of the given sizes (LZ4, chunks of 256) once each in a fresh subprocess and
prints images/s, time per image and peak RSS (VmHWM of that subprocess).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from fastmix.benchmark.store import FILTERS, format_store_table, run_store_benchmark

_SCALE_CHILD = """
import json, sys, time
import fastmix
key = fastmix.Key.generate()
started = time.perf_counter()
spec = fastmix.MixSpec(block=(8, 8)) if sys.argv[4] == "plain" else \
    fastmix.MixSpec.preset(sys.argv[4])
report = fastmix.mix_store(sys.argv[1], sys.argv[2], key=key, memory=sys.argv[3],
                           spec=spec, progress=False)
seconds = time.perf_counter() - started
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "peak_rss": peak, "window": report.window,
                  "windows": report.windows, "io_path": report.io_path}))
"""


def scale_run(sizes: list[int], memory: str, filter_name: str, directory: str | None,
              preset: str = "plain") -> None:
    """Mix stores of each size once, in a subprocess, and print throughput and peak RSS.

    ``preset`` ``"plain"`` mixes with ``MixSpec(block=(8, 8))``; a preset name with that
    preset (``balanced`` is what ``fastmix mix`` uses by default).
    """
    from fastmix.benchmark.store import write_photo_store

    print("| images | store | filter | --memory | seconds | images/s | us/image | peak RSS |")
    print("| ---: | ---: | --- | --- | ---: | ---: | ---: | ---: |")
    for size in sizes:
        folder = tempfile.mkdtemp(prefix="fastmix-scale-", dir=directory)
        try:
            source, target = os.path.join(folder, "in.h5"), os.path.join(folder, "out.h5")
            write_photo_store(source, size, filter_name)
            result = subprocess.run([sys.executable, "-c", _SCALE_CHILD, source, target, memory,
                                     preset],
                                    capture_output=True, text=True, check=True)
            figures = json.loads(result.stdout.strip().splitlines()[-1])
            store_gb = os.path.getsize(source) / 1e9
            rate = size / figures["seconds"]
            print(f"| {size:,} | {store_gb:.2f} GB | {filter_name} | {memory} | "
                  f"{figures['seconds']:.1f} | {rate:,.0f} | {1e6 / rate:.1f} | "
                  f"{figures['peak_rss'] / 2**20:,.0f} MiB |", flush=True)
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40_000)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each (median)")
    parser.add_argument("--filters", default=",".join(FILTERS),
                        help="comma-separated: none, lz4, gzip-1, gzip, zstd, blosc2, lzf")
    parser.add_argument("--memory", default="1GiB", help="mix_store memory budget")
    parser.add_argument("--dir", default=None, help="folder for the temporary stores")
    parser.add_argument("--scale", default=None,
                        help="comma-separated store sizes for the scale run instead")
    parser.add_argument("--preset", default="plain",
                        help="scale run: plain (MixSpec(block=(8, 8))) or a preset name")
    parser.add_argument("--json", action="store_true", help="also print the raw rows as JSON")
    args = parser.parse_args()
    if args.scale:
        sizes = [int(text) for text in args.scale.split(",")]
        scale_run(sizes, args.memory, args.filters.split(",")[0], args.dir, args.preset)
        return
    started = time.perf_counter()
    rows = run_store_benchmark(images=args.images, filters=tuple(args.filters.split(",")),
                               repeats=args.repeats, memory=args.memory, directory=args.dir)
    print(format_store_table(rows))
    print(f"\n{args.repeats} alternating runs per filter, --memory {args.memory}, "
          f"{time.perf_counter() - started:.0f} s in all")
    if args.json:
        print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
