"""The cuda backend: simulator runs (conftest sets NUMBA_ENABLE_CUDASIM=1), a PTX compile of
every kernel through the NVVM wheels, and the error a machine without a GPU gives.

The simulator runs each CUDA thread as a Python thread, so the cases here are small.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import fastmix
from fastmix.errors import BadInputError

cuda_kernels = pytest.importorskip("fastmix.kernels.cuda")
pytest.importorskip("numba.cuda")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
needs_simulator = pytest.mark.skipif(not cuda_kernels.simulated(),
                                     reason="runs the numba.cuda simulator")
pytestmark = pytest.mark.filterwarnings("ignore::fastmix.FastmixWarning")


def _run_python(code: str, **env) -> subprocess.CompletedProcess:
    environment = dict(os.environ, PYTHONPATH=ROOT, **env)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=environment, timeout=600, check=False)


def _images(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


# (image shape, dtype, block): word widths 1, 2, 4 and 8, edge blocks, grey and colour.
CASES = [
    ((9, 10, 3), np.uint8, (4, 3)),      # 1-byte words, edge blocks both ways
    ((8, 8), np.float32, (3, 3)),        # 4-byte words, grey
    ((7, 5, 2), np.uint16, (2, 4)),      # 4-byte words from uint16 pairs
    ((6, 8, 3), np.uint8, (4, 8)),       # 8-byte words (segment 24 bytes)
    ((5, 6), np.int16, (5, 5)),          # 2-byte words
    ((4, 4, 2), np.float64, (3, 2)),     # 8-byte words, float64
]


@needs_simulator
@pytest.mark.parametrize("shape, dtype, block", CASES)
@pytest.mark.parametrize("mode", ["permute", "paper"])
def test_cuda_equals_cpu(key, shape, dtype, block, mode):
    images = _images((6, *shape), dtype)
    labels = np.array([0, 1, 0, 1, 0, 0])
    spec = fastmix.MixSpec(block=block, donors=2, mode=mode)
    expected = fastmix.mix_array(images, labels, spec, key)
    mixed = fastmix.mix_array(images, labels, spec, key, backend="cuda")
    assert isinstance(mixed, np.ndarray)
    np.testing.assert_array_equal(mixed, expected)
    assert not np.array_equal(mixed, images)
    if mode == "permute":
        restored = fastmix.unmix_array(mixed, labels, spec, key, backend="cuda")
        np.testing.assert_array_equal(restored, images)


@needs_simulator
def test_cuda_windows_and_out(key):
    images = _images((7, 6, 9, 3), np.uint8, seed=1)
    labels = np.array([0, 0, 1, 1, 0, 1, 1])
    spec = fastmix.MixSpec(block=(2, 3), donors=1)
    out = np.zeros_like(images)
    result = fastmix.mix_array(images, labels, spec, key, window=4, backend="cuda", out=out)
    assert result is out
    np.testing.assert_array_equal(out, fastmix.mix_array(images, labels, spec, key, window=4))


def test_word_size_divides_rows_segments_and_pointers():
    assert cuda_kernels.word_size(576, 72, 0, 256) == 8
    assert cuda_kernels.word_size(576, 72, 4) == 4
    assert cuda_kernels.word_size(30, 9) == 1
    assert cuda_kernels.word_size(24, 12, 2) == 2


def test_block_tables():
    rows, words = cuda_kernels.block_tables(np.array([0, 2, 3]), np.array([0, 2, 4, 5]))
    np.testing.assert_array_equal(rows, [0, 0, 3])
    np.testing.assert_array_equal(words, [0, 0, 1, 1, 2])
    assert rows.dtype == words.dtype == np.int32


def test_import_fastmix_does_not_import_numba_cuda():
    result = _run_python(
        "import sys, fastmix\n"
        "fastmix.backends = __import__('fastmix.backends').backends\n"
        "print(fastmix.backends.available_backends())\n"
        "assert 'numba.cuda' not in sys.modules, 'numba.cuda imported'\n")
    assert result.returncode == 0, result.stderr
    assert "cuda" in result.stdout


def test_compile_ptx_without_gpu():
    """NVVM compiles every kernel (a kernel the simulator accepts can still fail here)."""
    result = _run_python(
        "from fastmix.kernels import cuda\n"
        "listing = cuda.compile_ptx()\n"
        "assert listing and all('.entry' in ptx for ptx in listing.values())\n"
        "print(len(listing))\n", NUMBA_ENABLE_CUDASIM="0")
    assert result.returncode == 0, result.stderr[-2000:]


def test_no_gpu_is_a_clear_error():
    result = _run_python(
        "import numpy as np, fastmix\n"
        "from numba import cuda\n"
        "if cuda.is_available(): raise SystemExit(3)\n"
        "try:\n"
        "    fastmix.mix_array(np.zeros((2, 4, 4), np.uint8), [0, 0],\n"
        "                      fastmix.MixSpec(block=(2, 2)),\n"
        "                      fastmix.Key.from_hex('0f' * 32), backend='cuda')\n"
        "except fastmix.BadInputError as error:\n"
        "    print(error)\n", NUMBA_ENABLE_CUDASIM="0")
    if result.returncode == 3:
        pytest.skip("this machine has a GPU")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no usable CUDA GPU" in result.stdout
    assert "backend='cpu'" in result.stdout


def test_unknown_stream_type_is_bad_input():
    if not cuda_kernels.simulated():
        pytest.skip("simulator only")
    with pytest.raises(BadInputError, match="stream must be"):
        cuda_kernels.caller_stream(stream="fast")
