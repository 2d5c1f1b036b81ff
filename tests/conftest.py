import os

# The cuda backend's tests run in numba.cuda's simulator unless NUMBA_ENABLE_CUDASIM=0 is
# set (on a machine with a GPU). It must be set before numba.cuda is first imported.
os.environ.setdefault("NUMBA_ENABLE_CUDASIM", "1")

import re

import pytest

import fastmix

#: Modules whose tests take more than a few seconds each on the 2-core machine (measured with
#: ``pytest --durations=0``): CNN training, notebooks, the preset verdicts' audits, the
#: in-place torture loops, clusters, the CUDA simulator. ``make check`` (``-m "not slow"``)
#: leaves them out; ``make test`` runs them. A single slow test elsewhere carries
#: ``@pytest.mark.slow`` itself.
SLOW_MODULES = frozenset({
    "test_cluster", "test_cuda", "test_demo", "test_harden_audit", "test_hostile_corpus",
    "test_inplace_torture", "test_notebook_privacy", "test_notebook_quickstart",
    "test_preset_verdicts", "test_store_kill", "test_utility_deep",
})
#: Single tests elsewhere that took over 5 s each there (by function name, all their cases).
SLOW_TESTS = frozenset({
    "test_audit_command_gates_and_reports_the_requirement_in_json", "test_dtypes_equal_oracle",
    "test_each_cpu_lookup_kernel_equals_oracle", "test_hardened_mix_equals_oracle",
    "test_hardened_store_is_checked_through_the_key", "test_mix_array_equals_oracle",
    "test_require_moderate_on_a_well_protected_store_exits_0",
})
#: Tests parametrized over the cuda backend run in numba.cuda's simulator: slow on a CPU.
_CUDA_CASE = re.compile(r"[\[-]cuda[\]-]")


def pytest_collection_modifyitems(items):
    for item in items:
        if (item.path.stem in SLOW_MODULES or item.originalname in SLOW_TESTS
                or _CUDA_CASE.search(item.name)):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def key():
    return fastmix.Key.from_hex("0f" * 32)


@pytest.fixture(scope="session")
def photo_tiles():
    """Real photographs (scikit-image samples) cut into 32x32 RGB tiles, labelled by photo."""
    pytest.importorskip("skimage.data")
    from fastmix.samples import photo_tiles as tiles

    return tiles()
