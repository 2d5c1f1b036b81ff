"""Dask benchmark: mix_store on a local 2-worker cluster against the single-process engine.

    python bench/bench_dask.py                       # 40,000 x 64x64x3 LZ4, window 2,560
    python bench/bench_dask.py --images 10000 --repeats 3 --window 1280
    python bench/bench_dask.py --spec block8         # the older MixSpec(block=(8, 8)) row

Both layouts (one file, ``--shards``) and the single-process engine mix the same store with
the same window and the default privacy preset (what ``fastmix mix`` uses), alternately,
``--repeats`` times each; the table gives medians and the ratio cluster time /
single-process time (on 2 cores no speed-up is possible: the ratio is the cluster's
overhead). The per-window split (read, mix, encode, write on the workers; ship and gather
at the client) and the scheduler's time per task then feed a paper projection for N
workers: the one-file layout is capped by its single writer (the client), ``--shards`` by
the shared filesystem.
"""

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time

# fastmix (and so numba) is imported inside the functions only: the spawned worker processes
# import this script as their __main__, before the nanny sets NUMBA_NUM_THREADS, and numba
# then refuses the first compile ("Cannot set NUMBA_NUM_THREADS to a different value").

#: ``--spec``: the default preset (the issue's row), or the spec of the earlier tables.
SPECS = ("default", "block8")


def make_spec(name: str):
    """Return the spec ``--spec`` names."""
    import fastmix
    from fastmix.presets import DEFAULT_PRESET

    if name == "block8":
        return fastmix.MixSpec(block=(8, 8))
    return fastmix.MixSpec.preset(DEFAULT_PRESET)


def load_average() -> str:
    """Return the 1-minute load average, as ``uptime`` shows it (the machine is shared)."""
    return f"{os.getloadavg()[0]:.2f}"


def cpu_seconds() -> float:
    """Return the CPU time (user + system) this process has used."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cluster_cpu_seconds(client) -> float:
    """Return the CPU time of this process (the client, and here the scheduler) and the workers."""
    return cpu_seconds() + sum(client.run(cpu_seconds).values())


def timed_runs(source: str, folder: str, client, window: int, repeats: int, spec) -> dict:
    """Alternate the three configurations ``repeats`` times; seconds and the last reports.

    Also the CPU seconds of each run: this process's, plus the workers' for a cluster run
    (their nannies left out). Unlike the seconds they hardly depend on the other jobs of a
    shared machine, which slow the cluster more than the single process (fewer busy
    threads get fewer slices of the cores).
    """
    import fastmix

    key = fastmix.Key.generate()
    configs = {"single process": {}, "dask one file": {"client": client},
               "dask --shards": {"client": client, "shards": True}}
    seconds: dict[str, list[float]] = {name: [] for name in configs}
    cpu: dict[str, list[float]] = {name: [] for name in configs}
    reports = {}
    for repeat in range(repeats + 1):  # the first round warms caches and JIT, untimed
        for name, options in configs.items():
            target = os.path.join(folder, "out.h5")
            used = cluster_cpu_seconds(client) if options else cpu_seconds()
            started = time.perf_counter()
            report = fastmix.mix_store(source, target, spec=spec, key=key, window=window,
                                       progress=False, overwrite=True, **options)
            elapsed = time.perf_counter() - started
            used = (cluster_cpu_seconds(client) if options else cpu_seconds()) - used
            if repeat:
                seconds[name].append(elapsed)
                cpu[name].append(used)
                reports[name] = report
            os.remove(target)
            shutil.rmtree(target + ".shards", ignore_errors=True)
    return {"seconds": seconds, "cpu": cpu, "reports": reports}


def stage_costs(stages: dict, images: int, sharded: bool) -> dict:
    """Seconds per image of one layout's stages: at the workers, and at the writer (client).

    The one-file layout reports ``gather`` (the client's copy of the parts, or its writes of
    shipped chunks) apart from the workers' ``write`` (their parts); a one-file report
    without ``gather`` (the code before part files) counts its ``write`` as the client's.
    With ``--shards`` every stage is the workers'.
    """
    client_side = "gather" in stages or sharded
    worker = sum(stages.get(name, 0.0) for name in ("read", "mix", "encode")) + \
        (stages.get("write", 0.0) if client_side else 0.0)
    writer = stages.get("gather", 0.0) if client_side else stages.get("write", 0.0)
    return {"worker": worker / images, "writer": writer / images}


def scheduler_seconds(client, tasks: int = 400) -> tuple[float, float]:
    """Return seconds per no-op task: paced, and all at once.

    Paced: two per worker thread in flight, as a run keeps them (latency). All at once: the
    scheduler's throughput, what caps many workers.
    """
    from collections import deque

    threads = sum(client.nthreads().values())
    started = time.perf_counter()
    pending = deque(client.submit(int, index, pure=False) for index in range(2 * threads))
    submitted = len(pending)
    while pending:
        pending.popleft().result()
        if submitted < tasks:
            pending.append(client.submit(int, submitted, pure=False))
            submitted += 1
    paced = (time.perf_counter() - started) / submitted
    started = time.perf_counter()
    futures = client.map(int, range(tasks), pure=False)
    client.gather(futures)
    del futures
    return paced, (time.perf_counter() - started) / tasks


def projection(one_file: dict, sharded: dict, task_seconds: tuple[float, float], window: int,
               stored_bytes: float, network_bytes: float) -> list[str]:
    """Paper projection for N workers from the measured per-image costs."""
    work = one_file["worker"]  # worker-seconds per image: read, mix, encode, part write
    writer_cap = 1 / one_file["writer"] if one_file["writer"] > 0 else float("inf")
    # The client reads each part and writes the one file: twice the stored bytes through
    # its network link when the folder is on a network filesystem.
    network_cap = network_bytes / (2 * stored_bytes)
    scheduler_cap = window / task_seconds[1]
    shard_work = sharded["worker"]
    one_file_cap = min(writer_cap, network_cap, scheduler_cap)
    lines = [f"per image: {work * 1e6:.1f} us of worker time (read, mix, encode, part write) "
             f"and {one_file['writer'] * 1e6:.1f} us at the client (chunk copy, flush) in the "
             f"one-file layout; {shard_work * 1e6:.1f} us of worker time with --shards (shard "
             f"write and fsync included). {stored_bytes / 1e3:.1f} kB stored per image; the "
             f"scheduler turns a no-op task around in {task_seconds[0] * 1e3:.2f} ms with two per "
             f"worker thread in flight, and runs {1 / task_seconds[1]:,.0f} tasks/s when "
             f"all are submitted at once ({scheduler_cap:,.0f} images/s at {window:,} images "
             "per window)",
             "",
             "caps of the one file: its writer "
             f"{writer_cap:,.0f} images/s, the client's link {network_cap:,.0f} images/s "
             f"(parts in, one file out, at {network_bytes / 1e9:.2f} GB/s), the scheduler "
             f"{scheduler_cap:,.0f} images/s",
             "",
             "| workers (1 thread, as measured) | one file, images/s | --shards, images/s |",
             "| ---: | ---: | ---: |"]
    for count in (1, 2, 4, 8, 16, 32, 64, 128):
        scaled = count / work
        capped = min(scaled, one_file_cap)
        flag = ""
        if capped < scaled:
            flag = " (writer-bound)" if capped == writer_cap else \
                " (link-bound)" if capped == network_cap else " (scheduler-bound)"
        shards = min(count / shard_work, scheduler_cap)
        lines.append(f"| {count} | {capped:,.0f}{flag} | {shards:,.0f} |")
    lines.append("")
    lines.append(f"the one file saturates at about {one_file_cap * work:.0f} workers "
                 f"({one_file_cap:,.0f} images/s); --shards keeps scaling with the workers "
                 "until the shared filesystem's write bandwidth (not measured here) or the "
                 f"scheduler ({scheduler_cap:,.0f} images/s) caps it")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=40_000)
    parser.add_argument("--window", type=int, default=2560,
                        help="images per window (a multiple of the 256-image chunks)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--network-gbps", type=float, default=1.25,
                        help="GB/s of the client's link assumed by the projection (10 GbE)")
    parser.add_argument("--dir", default=None, help="folder for the temporary stores")
    parser.add_argument("--spec", choices=sorted(SPECS), default="default",
                        help="default: the default privacy preset, as fastmix mix; "
                             "block8: MixSpec(block=(8, 8)), the spec of earlier tables")
    args = parser.parse_args()

    import distributed

    from fastmix.benchmark.store import write_photo_store

    spec = make_spec(args.spec)
    loads = [load_average()]
    folder = tempfile.mkdtemp(prefix="fastmix-dask-", dir=args.dir)
    try:
        source = os.path.join(folder, "in.h5")
        write_photo_store(source, args.images, "lz4")
        stored_bytes = os.path.getsize(source) / args.images
        threads = max(1, len(os.sched_getaffinity(0)) // args.workers)
        with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                      processes=True, dashboard_address=None,
                                      env={"NUMBA_NUM_THREADS": str(threads)}) as cluster, \
                distributed.Client(cluster, set_as_default=False) as client:
            result = timed_runs(source, folder, client, args.window, args.repeats, spec)
            result["task_seconds"] = scheduler_seconds(client)
        loads.append(load_average())
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    seconds, reports = result["seconds"], result["reports"]
    base = statistics.median(seconds["single process"])
    report = reports["single process"]
    print(f"{args.images:,} x 64x64x3 uint8, LZ4, window {report.window:,} "
          f"({report.windows} windows), {args.workers} local workers x 1 thread, "
          f"{len(os.sched_getaffinity(0))} CPUs, median of {args.repeats}, spec {args.spec} "
          f"({spec}), load average {loads[0]} before / {loads[-1]} after")
    print()
    base_cpu = statistics.median(result["cpu"]["single process"])
    print("| run | seconds (median) | images/s | time / single process | each run's ratio | "
          "CPU seconds (median) | CPU / single process |")
    print("| --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for name, values in seconds.items():
        median = statistics.median(values)
        each = " ".join(f"{value / single:.2f}"
                        for value, single in zip(values, seconds["single process"]))
        used = statistics.median(result["cpu"][name])
        print(f"| {name} | {median:.2f} | {args.images / median:,.0f} | {median / base:.2f}x | "
              f"{each} | {used:.2f} | {used / base_cpu:.2f}x |")
    print()
    print("per-window split (ms per window, summed over the workers: read, mix, encode, "
          "write; at the client: ship = from a task's end until the client has its result, "
          "gather = the client copying or writing the window into the one file); wall "
          "seconds, then CPU seconds (the worker processes'; gather: the client thread's):")
    print()
    print("| layout | clock | read | mix | encode | write | ship | gather |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name in ("dask one file", "dask --shards"):
        windows = reports[name].windows
        for clock, stages in (("wall", reports[name].extra["stages"]),
                              ("CPU", reports[name].extra.get("cpu"))):
            if not stages:
                continue  # the code before CPU accounting
            cells = " | ".join(f"{1e3 * stages[stage] / windows:.1f}" if stage in stages
                               else "-" for stage in ("read", "mix", "encode", "write", "ship",
                                                      "gather"))
            print(f"| {name} | {clock} | {cells} |")
    parts = reports["dask one file"].extra.get("parts", False)
    print(f"(one file {'through part files' if parts else 'with chunks shipped to the client'}; "
          "write: each worker writing its part or shard file)")
    print()
    clock = "cpu" if reports["dask one file"].extra.get("cpu") else "stages"
    print(f"projection from the {'CPU' if clock == 'cpu' else 'wall'} seconds per stage:")
    print()
    for line in projection(stage_costs(reports["dask one file"].extra[clock], args.images,
                                       sharded=False),
                           stage_costs(reports["dask --shards"].extra[clock], args.images,
                                       sharded=True),
                           result["task_seconds"], report.window, stored_bytes,
                           args.network_gbps * 1e9):
        print(line)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
