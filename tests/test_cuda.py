"""The cuda backend without a GPU.

numba.cuda's simulator (conftest sets NUMBA_ENABLE_CUDASIM=1), a PTX compile of every kernel
through the NVVM wheels, and the error a machine without a GPU gives.

The oracle and invariant tests parametrized over ``available_backends()`` run on ``cuda``
too; the cases here cover what only this backend has: CUDA arrays of a foreign library,
streams, word widths and the compiler. The simulator runs each CUDA thread as a Python
thread, so every case is small.
"""

import os
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
from test_cli_support import read_images, write_store

import fastmix
from fastmix.errors import BadInputError

cuda_kernels = pytest.importorskip("fastmix.kernels.cuda")
pytest.importorskip("numba.cuda")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
pytestmark = [pytest.mark.filterwarnings("ignore::fastmix.FastmixWarning")]
needs_simulator = pytest.mark.skipif(not cuda_kernels.simulated(),
                                     reason="runs the numba.cuda simulator")


class StandIn:
    """A CUDA array of a pretend library, as the simulator sees one.

    Its device memory is host memory, so ``__cuda_array_interface__`` points at a NumPy
    buffer.
    """

    def __init__(self, array: np.ndarray):
        self.array = array

    @property
    def __cuda_array_interface__(self) -> dict:
        array = self.array
        return {"shape": array.shape, "typestr": array.dtype.str,
                "data": (array.ctypes.data, False), "version": 3,
                "strides": None if array.flags.c_contiguous else array.strides}

    def __getitem__(self, index):
        return StandIn(self.array[index])

    def __len__(self) -> int:
        return len(self.array)


def empty_like(array: StandIn) -> StandIn:
    """Return the pretend library's allocator, which the backend must use for results."""
    return StandIn(np.empty_like(array.array))


def _run_python(code: str, **env) -> subprocess.CompletedProcess:
    """Run the script ``code`` (indented as it stands in the test) in a fresh interpreter."""
    environment = dict(os.environ, PYTHONPATH=ROOT, **env)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, env=environment, timeout=900, check=False)


def _images(shape, dtype, seed=0):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind == "f":
        return rng.random(shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, size=shape, endpoint=True, dtype=dtype)


# (image shape, dtype, block): word widths 1, 2, 4 and 8, edge blocks, grey and colour.
WORD_CASES = [
    ((9, 10, 3), np.uint8, (4, 3)),      # 1-byte words, edge blocks both ways
    ((5, 6), np.int16, (5, 5)),          # 2-byte words
    ((8, 8), np.float32, (3, 3)),        # 4-byte words, grey
    ((6, 8, 3), np.uint8, (4, 8)),       # 8-byte words (24-byte segments)
    ((4, 4, 2), np.float64, (3, 2)),     # 8-byte words, float64
]


@needs_simulator
@pytest.mark.parametrize("shape, dtype, block", WORD_CASES)
def test_every_word_width_equals_cpu(key, shape, dtype, block):
    images = _images((6, *shape), dtype)
    labels = np.array([0, 1, 0, 1, 0, 0])
    spec = fastmix.MixSpec(block=block, donors=2)
    mixed = fastmix.mix_array(images, labels, spec, key, backend="cuda")
    assert isinstance(mixed, np.ndarray)
    np.testing.assert_array_equal(mixed, fastmix.mix_array(images, labels, spec, key))
    np.testing.assert_array_equal(
        fastmix.unmix_array(mixed, labels, spec, key, backend="cuda"), images)


@needs_simulator
@pytest.mark.parametrize("spec", [
    pytest.param(fastmix.MixSpec(block=(4, 4), donors=1), id="plain"),
    pytest.param(fastmix.MixSpec(block=(4, 4), donors=1, orient="d4"), id="d4"),
    pytest.param(fastmix.MixSpec.preset("balanced", block=(4, 3), donors=3), id="balanced"),
])
def test_cuda_arrays_stay_on_the_device(key, spec):
    """A foreign library's CUDA array is mixed in place of a host copy.

    The result is that library's array, allocated by it; the input is unchanged.
    """
    images = _images((8, 8, 9, 3), np.uint8, seed=1)
    labels = np.arange(8) % 2
    expected = fastmix.mix_array(images, labels, spec, key, window=4, first_window=2)
    device = StandIn(images.copy())
    mixed = fastmix.mix_array(device, StandIn(labels.copy()), spec, key, window=4,
                              backend="cuda", first_window=2)
    assert isinstance(mixed, StandIn)
    np.testing.assert_array_equal(mixed.array, expected)
    np.testing.assert_array_equal(device.array, images)
    if spec.reversible:
        restored = fastmix.unmix_array(mixed, labels, spec, key, window=4, backend="cuda",
                                       first_window=2)
        np.testing.assert_array_equal(restored.array, images)


@needs_simulator
def test_cuda_out_and_stream(key):
    from numba import cuda

    images = _images((6, 8, 8), np.uint16, seed=2)
    labels = np.array([0, 0, 0, 1, 1, 1])
    spec = fastmix.MixSpec(block=(4, 4), donors=2)
    out = StandIn(np.zeros_like(images))
    result = fastmix.mix_array(StandIn(images), labels, spec, key, backend="cuda", out=out,
                               stream=cuda.stream())
    assert result is out
    np.testing.assert_array_equal(out.array, fastmix.mix_array(images, labels, spec, key))


@needs_simulator
def test_first_window_keys_each_batch(key):
    images = _images((8, 8, 8, 3), np.uint8, seed=3)
    labels = np.arange(8) % 2
    spec = fastmix.MixSpec(block=(4, 4), donors=3)
    first = fastmix.mix_array(images, labels, spec, key, backend="cuda", first_window=1)
    second = fastmix.mix_array(images, labels, spec, key, backend="cuda", first_window=2)
    assert not np.array_equal(first, second)
    np.testing.assert_array_equal(first, fastmix.mix_array(images, labels, spec, key,
                                                           first_window=1))


@needs_simulator
def test_bad_cuda_arrays(key):
    images = StandIn(_images((4, 8, 8), np.uint8))
    labels = [0, 0, 1, 1]
    spec = fastmix.MixSpec(block=(4, 4))
    with pytest.raises(BadInputError, match="backend='cuda'"):
        fastmix.mix_array(images, labels, spec, key)
    with pytest.raises(BadInputError, match="C-contiguous"):
        fastmix.mix_array(StandIn(_images((4, 8, 8), np.uint8)[:, ::2]), labels, spec, key,
                          backend="cuda")
    with pytest.raises(BadInputError, match="out must"):
        fastmix.mix_array(images, labels, spec, key, backend="cuda", out=np.empty((4, 8, 8)))
    with pytest.raises(BadInputError, match="overlap"):
        fastmix.mix_array(images, labels, spec, key, backend="cuda", out=images)
    with pytest.raises(BadInputError, match="stream="):
        fastmix.mix_array(images.array, labels, spec, key, stream=1)
    with pytest.raises(BadInputError, match="stream must be"):
        fastmix.mix_array(images, labels, spec, key, backend="cuda", stream="fast")


@needs_simulator
def test_store_on_cuda_equals_cpu(key, tmp_path):
    images = _images((24, 8, 8, 3), np.uint8, seed=4)
    labels = np.arange(24) % 3
    source = write_store(tmp_path / "source.h5", images, labels, chunk=8, compression=None)
    spec = fastmix.MixSpec.preset("balanced", block=(4, 4), donors=3)
    for backend in ("cpu", "cuda"):
        fastmix.mix_store(source, tmp_path / f"{backend}.h5", spec=spec, key=key, window=8,
                          backend=backend, progress=False)
    np.testing.assert_array_equal(read_images(tmp_path / "cuda.h5"),
                                  read_images(tmp_path / "cpu.h5"))


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
    result = _run_python("""
        import sys, fastmix
        from fastmix.backends import registered_backends
        fastmix.mix_array
        print(registered_backends())
        assert 'numba.cuda' not in sys.modules, 'numba.cuda imported'
        """)
    assert result.returncode == 0, result.stderr
    assert "cuda" in result.stdout


def test_compile_ptx_without_gpu():
    """NVVM compiles every kernel for every argument type it is launched with, without FMA.

    A kernel the simulator accepts can still fail here; no float arithmetic is fused.
    """
    result = _run_python("""
        from fastmix.kernels import cuda
        listing = cuda.compile_ptx()
        assert len(listing) > 10 and all('.entry' in ptx for ptx in listing.values())
        fused = [name for name, ptx in listing.items() if 'fma.' in ptx]
        assert not fused, fused
        assert 'mul.rn.f64' in ''.join(listing.values())
        """, NUMBA_ENABLE_CUDASIM="0")
    assert result.returncode == 0, result.stderr[-3000:]


def test_no_gpu_is_a_clear_error(tmp_path):
    images = _images((4, 8, 8, 3), np.uint8)
    source = write_store(tmp_path / "source.h5", images, np.array([0, 0, 1, 1]), chunk=4,
                         compression=None)
    probe = _run_python("from numba import cuda; raise SystemExit(3 * cuda.is_available())",
                        NUMBA_ENABLE_CUDASIM="0")
    if probe.returncode == 3:
        pytest.skip("this machine has a GPU")
    result = _run_python("""
        import numpy as np, fastmix
        try:
            fastmix.mix_array(np.zeros((2, 4, 4), np.uint8), [0, 0],
                              fastmix.MixSpec(block=(2, 2)),
                              fastmix.Key.from_hex('0f' * 32), backend='cuda')
        except fastmix.BadInputError as error:
            print(error)
        """, NUMBA_ENABLE_CUDASIM="0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "backend 'cuda' is not available" in result.stdout
    assert "no NVIDIA GPU" in result.stdout
    key_file = tmp_path / "key"
    command = subprocess.run(
        [sys.executable, "-m", "fastmix.cli", "mix", str(source), str(tmp_path / "out.h5"),
         "--key-file", str(key_file), "--new-key", "--backend", "cuda", "--block", "4x4"],
        capture_output=True, text=True, timeout=600, check=False,
        env=dict(os.environ, PYTHONPATH=ROOT, NUMBA_ENABLE_CUDASIM="0"))
    assert command.returncode == 2, command.stderr
    assert len(command.stderr.strip().splitlines()) == 1
    assert "cuda" in command.stderr
    assert not (tmp_path / "out.h5").exists() and not key_file.exists()


def test_mix_batch_needs_a_tensor(key):
    from fastmix.torch import mix_batch

    with pytest.raises(TypeError, match=r"torch\.Tensor"):
        mix_batch(np.zeros((2, 3, 8, 8), np.uint8), [0, 0], None, key, 0)


# --- the tile kernel ------------------------------------------------------------------------

def _tiles_used():
    """Return the tile geometries of the last run (``None`` where it fell back)."""
    from fastmix.kernels.cuda import backend

    return [entry[1].geometry if entry[1] is not None else None
            for entry in backend._buffers.tiles.values()]


def _tiny_images(shape, dtype, seed=0):
    if np.dtype(dtype).kind == "f":
        return np.random.default_rng(seed).uniform(-0.05, 1.05, shape).astype(dtype)
    return _images(shape, dtype, seed)


TILE_LABELS = np.array([0, 1, 0, 1, 0, 0])
# (id, spec): every hardening option, with edge blocks both ways on the images below.
TILE_SPECS = [
    pytest.param(fastmix.MixSpec(block=(4, 3), donors=2), id="plain"),
    pytest.param(fastmix.MixSpec(block=(4, 3), orient="flip", prob=1.0), id="flip"),
    pytest.param(fastmix.MixSpec(block=(3, 3), orient="d4", prob=1.0, donors=3), id="d4"),
    pytest.param(fastmix.MixSpec(block=(4, 4), jitter=(0.3, 0.5, 0.7), prob=1.0), id="jitter"),
    pytest.param(fastmix.MixSpec(block=(4, 3), seam_blur=1.0, prob=1.0), id="seam-blur"),
    pytest.param(fastmix.MixSpec(block=(4, 4), orient="d4", jitter=True, seam_blur=0.5,
                                 prob=1.0, mode="paper", donors=2), id="all-paper"),
]


@needs_simulator
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
@pytest.mark.parametrize("spec", TILE_SPECS)
def test_tile_kernel_equals_oracle(key, spec, dtype):
    """The tile kernel (not the word kernels' fallback) gives the oracle's bytes."""
    import naive

    images = _tiny_images((6, 9, 10, 3), dtype, seed=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.FastmixWarning)
        mixed = fastmix.mix_array(images, TILE_LABELS, spec, key, backend="cuda")
    assert _tiles_used() and all(geometry is not None for geometry in _tiles_used())
    np.testing.assert_array_equal(mixed.view(np.uint8),
                                  naive.mix(images, TILE_LABELS, spec, key).view(np.uint8))


@needs_simulator
def test_tile_kernel_level_tables_in_shared_memory(key):
    """8-bit blocks with more values than levels look their jitter up in a shared table."""
    images = _images((4, 12, 20, 3), np.uint8, seed=6)  # 10x10x3 blocks: 300 values
    labels = np.array([0, 0, 1, 1])
    spec = fastmix.MixSpec(block=(10, 10), orient="d4", jitter=True, prob=1.0)
    mixed = fastmix.mix_array(images, labels, spec, key, backend="cuda")
    np.testing.assert_array_equal(mixed, fastmix.mix_array(images, labels, spec, key))
    geometry, = _tiles_used()
    assert geometry is not None and geometry.group <= cuda_kernels.kernels.TABLE_BLOCKS


# Word widths through the pointers' alignment: 16-byte rows (16 RGB pixels of uint8),
# segments of 48 bytes; the images and the output start `offset` bytes into a buffer.
@needs_simulator
@pytest.mark.parametrize("offset, width", [(1, 1), (2, 2), (4, 4), (8, 8), (0, 16)])
@pytest.mark.parametrize("spec", [
    pytest.param(fastmix.MixSpec(block=(4, 16), donors=2), id="plain"),
    pytest.param(fastmix.MixSpec(block=(4, 16), orient="flip", jitter=True, prob=1.0),
                 id="hardened"),
])
def test_tile_words_follow_the_alignment(key, spec, offset, width):
    shape = (4, 8, 32, 3)
    images = _images(shape, np.uint8, seed=7)
    nbytes = images.nbytes
    buffer = np.zeros(2 * nbytes + 64, dtype=np.uint8)
    start = -buffer.ctypes.data % 16 + offset  # aligned to 16, then `offset` bytes on
    source = buffer[start:start + nbytes].reshape(shape)
    source[...] = images
    target = buffer[start + nbytes + 16:start + 2 * nbytes + 16].reshape(shape)
    labels = np.array([0, 1, 0, 1])
    fastmix.mix_array(StandIn(source), labels, spec, key, backend="cuda", out=StandIn(target))
    geometry, = _tiles_used()
    assert geometry.load_width == width and geometry.store_width == width
    np.testing.assert_array_equal(target, fastmix.mix_array(images, labels, spec, key))


@needs_simulator
@pytest.mark.parametrize("spec", [
    pytest.param(fastmix.MixSpec(block=(7, 5), donors=2), id="plain"),
    pytest.param(fastmix.MixSpec(block=(7, 5), orient="flip", jitter=True, prob=1.0),
                 id="flip-jitter"),
    pytest.param(fastmix.MixSpec(block=(5, 5), orient="d4", prob=1.0), id="d4-falls-back"),
])
def test_tile_pieces_of_tall_blocks(key, spec, monkeypatch):
    """Blocks taller than a tile go in row pieces (mirrored rows included), or fall back."""
    from fastmix.kernels.cuda import backend

    monkeypatch.setattr(backend, "TILE_BUDGET", 64)  # 64-byte tiles: a few rows each
    images = _images((4, 12, 11, 3), np.uint8, seed=8)
    labels = np.array([0, 1, 0, 1])
    mixed = fastmix.mix_array(images, labels, spec, key, backend="cuda")
    np.testing.assert_array_equal(mixed, fastmix.mix_array(images, labels, spec, key))
    geometry, = _tiles_used()
    if spec.orient == "d4":
        assert geometry is None  # a 5x5 block does not fit: the word kernels ran
    else:
        assert geometry.pieces.shape[0] > 2 and geometry.group < 3


def test_tile_geometry_of_the_targets():
    """The bench's geometries take the tile kernel with 8- or 16-byte words."""
    from fastmix.kernels.steps import block_edges

    tile_geometry = cuda_kernels.kernels.tile_geometry

    def geometry(height, width, block, **options):
        rows, cols = block_edges(height, width, block)
        return tile_geometry(rows, cols, 3, 1, **options)

    plain = {"plain": True, "transposes": False, "tabled": False}
    hardened = {"plain": False, "transposes": True, "tabled": True}
    first = geometry(192, 192, (16, 16), **plain)
    assert (first.load_width, first.store_width, first.direct, first.group) == (16, 16, True, 12)
    tall = geometry(192, 192, (96, 24), **plain)
    assert (tall.load_width, tall.store_width, tall.direct) == (8, 16, True)
    assert tall.pieces.shape[0] > 2  # 96-row blocks in pieces of whole image rows
    small = geometry(64, 64, (8, 8), **plain)
    assert small.load_width == 8 and small.pieces.shape[0] < 8  # block rows share units
    balanced = geometry(192, 192, (16, 16), **hardened)
    assert (balanced.load_width, balanced.store_width, balanced.group) == (16, 16, 12)
    ragged = geometry(224, 224, (19, 19), **hardened)  # 57-byte segments: aligned spans
    assert ragged.load_width == 16 and not ragged.direct
    assert geometry(192, 192, (96, 96), **hardened) is None  # 27 KiB blocks: word kernels
    assert tile_geometry(*block_edges(8, 32, (4, 16)), 3, 1, source_pointer=4,
                         **plain).load_width == 4


def test_occupancy():
    occupancy = cuda_kernels.kernels.occupancy
    assert occupancy(256, 32, 0) == 1.0
    assert occupancy(256, 64, 46080) == 0.5
    assert occupancy(256, 80, 46080) == 0.375
    assert occupancy(256, 32, 100_000) == 0.25  # two blocks' shared memory


@needs_simulator
def test_mix_cached_reuses_the_plan_on_the_device(key):
    """A batch with the labels and step of a recent one is neither planned nor copied again."""
    from fastmix.kernels.cuda import backend
    from fastmix.mixing import PlanCache, mix_cached

    cache = PlanCache()
    images = _images((6, 8, 8, 3), np.uint8, seed=9)
    spec = fastmix.MixSpec.preset("balanced", block=(4, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.FastmixWarning)
        first = mix_cached(StandIn(images), TILE_LABELS, spec, key, cache, backend="cuda",
                           first_window=3)
        kept = dict(backend._buffers.plans)
        again = mix_cached(StandIn(images), TILE_LABELS.copy(), spec, key, cache,
                           backend="cuda", first_window=3)
        other = mix_cached(StandIn(images), TILE_LABELS, spec, key, cache, backend="cuda",
                           first_window=4)
    expected = fastmix.mix_array(images, TILE_LABELS, spec, key, first_window=3)
    np.testing.assert_array_equal(first.array, expected)
    np.testing.assert_array_equal(again.array, expected)
    assert not np.array_equal(other.array, expected)
    assert len(cache._plans) == 2 and len(cache._pipelines) == 1
    assert all(backend._buffers.plans.get(name) is entry for name, entry in kept.items())


def test_mix_batch_keeps_plans(key):
    torch = pytest.importorskip("torch")
    from fastmix.torch import _BATCHES, mix_batch

    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8)
    labels = torch.tensor(TILE_LABELS)
    spec = fastmix.MixSpec(block=(4, 4), orient="d4", donors=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fastmix.FastmixWarning)
        first = mix_batch(images, labels, spec, key, 11)
        plans = len(_BATCHES._plans)
        again = mix_batch(images, labels, spec, key, 11)
        nhwc = images.permute(0, 2, 3, 1).contiguous().numpy()
        expected = fastmix.mix_array(nhwc, TILE_LABELS, spec, key, first_window=11)
    assert torch.equal(first, again) and len(_BATCHES._plans) == plans
    np.testing.assert_array_equal(first.permute(0, 2, 3, 1).numpy(), expected)


def test_tile_kernels_load_and_store_wide_words_through_shared_memory():
    """The gathers' hot loads are 16-byte vector loads into shared memory (PTX, no GPU).

    A regression to a word a thread (the old kernels: one ``ld.global.u64`` and no shared
    memory) fails here on a CPU. Also: ptxas keeps the plain gather's occupancy at half an
    sm_90 multiprocessor or more.
    """
    result = _run_python("""
        import re
        from fastmix.kernels.cuda import kernels
        listing = kernels.compile_ptx(kernels=('tile_gather', 'tile_harden'),
                                      values=('uint8', 'uint64'))
        assert {name.split()[0] for name in listing} == {'tile_gather', 'tile_harden'}
        for name, ptx in listing.items():
            assert re.search(r'ld\\.global(\\.nc)?\\.v[24]\\.', ptx), name
            assert re.search(r'st\\.global\\.v[24]\\.', ptx), name
            assert re.search(r'st\\.shared\\.v[24]\\.', ptx), name
            assert '.shared' in ptx and 'bar.sync' in ptx, name
            assert 'fma.' not in ptx, name
        plain = [ptx for name, ptx in listing.items() if name.startswith('tile_gather')]
        for ptx in plain:
            used = kernels.ptx_registers(ptx)
            shared = kernels.ptx_shared_bytes(ptx)
            assert kernels.occupancy(kernels.TILE_THREADS, used['registers'], shared) >= 0.5
        """, NUMBA_ENABLE_CUDASIM="0")
    assert result.returncode == 0, result.stderr[-3000:]


def test_bench_runs_in_the_simulator(tmp_path):
    """``bench/gpu.py --tiny`` runs in the simulator and prints every target's row."""
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "gpu.py"), "--tiny", "--repeats", "1",
         "--skip", "store", "--out", str(tmp_path / "gpu.md")],
        capture_output=True, text=True, timeout=900, check=False,
        env=dict(os.environ, PYTHONPATH=ROOT, NUMBA_ENABLE_CUDASIM="1"))
    assert result.returncode == 0, result.stderr[-3000:]
    table = (tmp_path / "gpu.md").read_text()
    assert "failed" not in table and "| NO" not in table
    for row in ("plain gather", "96x24", "8x8", "balanced", "mix_batch", "device copy"):
        assert row in table, row
    assert "occupancy" in table and "moves" in table
