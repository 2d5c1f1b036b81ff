"""Dask benchmark: mix_store on a local 2-worker cluster against the single-process engine.

    python bench/bench_dask.py                       # 40,000 x 64x64x3 LZ4, window 2,560
    python bench/bench_dask.py --images 10000 --repeats 3 --window 1280

Both layouts (one file, ``--shards``) and the single-process engine mix the same store with
the same window, alternately, ``--repeats`` times each; the table gives medians and the
ratio cluster time / single-process time (on 2 cores no speed-up is possible: the ratio is
the cluster's overhead). The per-window split (read, mix, encode on the workers; write at
the single writer) then feeds a paper projection for N workers: the one-file layout is
capped by its single writer, ``--shards`` by the shared filesystem.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

import fastmix
from fastmix.benchmark.store import write_photo_store

SPEC = fastmix.MixSpec(block=(8, 8))


def timed_runs(source: str, folder: str, client, window: int, repeats: int) -> dict:
    """Alternate the three configurations ``repeats`` times; seconds and the last reports."""
    key = fastmix.Key.generate()
    configs = {"single process": {}, "dask one file": {"client": client},
               "dask --shards": {"client": client, "shards": True}}
    seconds = {name: [] for name in configs}
    reports = {}
    for repeat in range(repeats + 1):  # the first round warms caches and JIT, untimed
        for name, options in configs.items():
            target = os.path.join(folder, "out.h5")
            started = time.perf_counter()
            report = fastmix.mix_store(source, target, spec=SPEC, key=key, window=window,
                                       progress=False, overwrite=True, **options)
            elapsed = time.perf_counter() - started
            if repeat:
                seconds[name].append(elapsed)
                reports[name] = report
            os.remove(target)
            shutil.rmtree(target + ".shards", ignore_errors=True)
    return {"seconds": seconds, "reports": reports}


def projection(split: dict, sharded: dict, images: int, network_bytes: float,
               image_bytes: int) -> list[str]:
    """Paper projection for N workers from the measured per-image costs."""
    work = (split["read"] + split["mix"] + split["encode"]) / images  # worker-seconds/image
    write = split["write"] / images  # writer-seconds/image
    shard_work = sum(sharded.values()) / images  # read+mix+encode+write, on the worker
    writer_cap = 1 / write if write > 0 else float("inf")
    network_cap = network_bytes / image_bytes
    lines = [f"per image: {work * 1e6:.1f} us of worker time (read+mix+encode), "
             f"{write * 1e6:.1f} us at the single writer; the writer also receives "
             f"{image_bytes / 1e3:.1f} kB per image over the network "
             f"(cap {network_cap:,.0f} images/s at {network_bytes / 1e9:.2f} GB/s); "
             f"--shards: {shard_work * 1e6:.1f} us of worker time per image, shard write "
             "included",
             "",
             "| workers (1 thread, as measured) | one file, images/s | --shards, images/s |",
             "| ---: | ---: | ---: |"]
    for count in (1, 2, 4, 8, 16, 32, 64, 128):
        scaled = count / work
        one_file = min(scaled, writer_cap, network_cap)
        flag = " (writer-bound)" if one_file < scaled else ""
        lines.append(f"| {count} | {one_file:,.0f}{flag} | {count / shard_work:,.0f} |")
    saturation = min(writer_cap, network_cap) * work
    lines.append("")
    lines.append(f"the single writer saturates at about {saturation:.0f} workers "
                 f"({min(writer_cap, network_cap):,.0f} images/s); --shards keeps scaling "
                 "with the workers until the shared filesystem's write bandwidth (not "
                 "measured here) caps it")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40_000)
    parser.add_argument("--window", type=int, default=2560,
                        help="images per window (a multiple of the 256-image chunks)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--network-gbps", type=float, default=1.25,
                        help="GB/s into the writer assumed by the projection (10 GbE)")
    parser.add_argument("--dir", default=None, help="folder for the temporary stores")
    args = parser.parse_args()

    import distributed

    folder = tempfile.mkdtemp(prefix="fastmix-dask-", dir=args.dir)
    try:
        source = os.path.join(folder, "in.h5")
        write_photo_store(source, args.images, "lz4")
        threads = max(1, len(os.sched_getaffinity(0)) // args.workers)
        with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                      processes=True, dashboard_address=None,
                                      env={"NUMBA_NUM_THREADS": str(threads)}) as cluster, \
                distributed.Client(cluster, set_as_default=False) as client:
            result = timed_runs(source, folder, client, args.window, args.repeats)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    seconds, reports = result["seconds"], result["reports"]
    base = statistics.median(seconds["single process"])
    report = reports["single process"]
    print(f"{args.images:,} x 64x64x3 uint8, LZ4, window {report.window:,} "
          f"({report.windows} windows), {args.workers} local workers x 1 thread, "
          f"{len(os.sched_getaffinity(0))} CPUs, median of {args.repeats}")
    print()
    print("| run | seconds (median) | images/s | time / single process |")
    print("| --- | ---: | ---: | ---: |")
    for name, values in seconds.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {args.images / median:,.0f} | {median / base:.2f}x |")
    print()
    print("per-window split (ms per window; read, mix, encode summed over the workers):")
    print()
    print("| layout | read | mix | encode | write |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name in ("dask one file", "dask --shards"):
        stages = reports[name].extra["stages"]
        windows = reports[name].windows
        cells = " | ".join(f"{1e3 * stages.get(stage, 0.0) / windows:.1f}"
                           for stage in ("read", "mix", "encode", "write"))
        print(f"| {name} | {cells} |")
    print("(--shards: 'write' is each worker writing its own shard file)")
    print()
    image_bytes = 64 * 64 * 3
    for line in projection(reports["dask one file"].extra["stages"],
                           reports["dask --shards"].extra["stages"], args.images,
                           args.network_gbps * 1e9, image_bytes):
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
