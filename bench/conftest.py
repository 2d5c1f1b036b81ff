import numpy as np
import pytest

import fastmix
from fastmix.benchmark.core import photographic_images


@pytest.fixture
def warm_benchmark(benchmark):
    """Call the function once before timing, so JIT compilation is never measured."""

    def run(function, *args, **kwargs):
        function(*args, **kwargs)
        return benchmark.pedantic(function, args=args, kwargs=kwargs, rounds=5, iterations=1,
                                  warmup_rounds=1)

    return run


@pytest.fixture(scope="session")
def workload_192():
    images = photographic_images(3000, (192, 192, 3))
    return images, np.random.default_rng(1).integers(0, 10, len(images))


@pytest.fixture(scope="session")
def workload_64():
    images = photographic_images(30000, (64, 64, 3))
    return images, np.random.default_rng(1).integers(0, 10, len(images))


@pytest.fixture(scope="session")
def key():
    return fastmix.Key.from_hex("5a" * 32)
