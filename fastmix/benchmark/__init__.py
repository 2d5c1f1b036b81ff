"""Benchmarks that ``fastmix bench`` and ``bench/`` run, as ratios against same-run baselines."""
