"""Print fastmix's benchmark tables (ratios against baselines measured in the same run).

    python bench/run.py              # core kernel table (README "Performance")
    python bench/run.py --scale 0.1  # a quicker, smaller run

Other suites: bench/bench_gather.py (the plain gather vs np.copyto, 1 and all threads),
bench/bench_store.py, bench/bench_inplace.py, bench/bench_ingest.py.
"""

import argparse

from fastmix.benchmark.core import format_table, run_core_benchmark


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the workload size")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs per figure (median)")
    args = parser.parse_args()
    print(format_table(run_core_benchmark(scale=args.scale, repeats=args.repeats)))


if __name__ == "__main__":
    main()
