"""pytest-benchmark suite of the core kernel: ``pytest bench --benchmark-enable``.

Compare the groups' medians: mix_array against a copy of the same bytes and against NumPy
fancy indexing (see ``bench/run.py`` for the ratio table).
"""

import numpy as np
import pytest

import fastmix
from fastmix.benchmark.core import numpy_gather

CASES = [("192", (96, 24), 0.5), ("64", (8, 8), 1.0)]


@pytest.mark.parametrize(("workload", "block", "prob"), CASES)
@pytest.mark.parametrize("mode", ["permute", "paper"])
def test_mix_array(warm_benchmark, request, key, workload, block, prob, mode):
    images, labels = request.getfixturevalue(f"workload_{workload}")
    spec = fastmix.MixSpec(block=block, prob=prob, mode=mode)
    warm_benchmark(fastmix.mix_array, images, labels, spec, key)


@pytest.mark.parametrize(("workload", "block", "prob"), CASES)
@pytest.mark.parametrize("mode", ["permute", "paper"])
def test_mix_array_into_buffer(warm_benchmark, request, key, workload, block, prob, mode):
    images, labels = request.getfixturevalue(f"workload_{workload}")
    spec = fastmix.MixSpec(block=block, prob=prob, mode=mode)
    warm_benchmark(fastmix.mix_array, images, labels, spec, key, out=np.empty_like(images))


@pytest.mark.parametrize("workload", ["192", "64"])
def test_copy_baseline(warm_benchmark, request, workload):
    images, _ = request.getfixturevalue(f"workload_{workload}")
    warm_benchmark(images.copy)


@pytest.mark.parametrize("workload", ["192", "64"])
def test_copyto_baseline(warm_benchmark, request, workload):
    images, _ = request.getfixturevalue(f"workload_{workload}")
    warm_benchmark(np.copyto, np.empty_like(images), images)


@pytest.mark.parametrize(("workload", "block", "prob"), CASES)
def test_numpy_fancy_index_baseline(warm_benchmark, request, key, workload, block, prob):
    images, labels = request.getfixturevalue(f"workload_{workload}")
    spec = fastmix.MixSpec(block=block, prob=prob)
    warm_benchmark(numpy_gather, images, labels, spec, key)
