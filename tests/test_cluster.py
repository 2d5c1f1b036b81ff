"""Mixing on a Dask cluster: a real LocalCluster of two worker processes, over loopback.

One cluster serves the whole module (starting one costs seconds on this machine). Tests
that kill something wait on progress (done marks, shard files), never on wall time.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import distributed
import h5py
import hdf5plugin
import numpy as np
import pytest

import fastmix
from fastmix.cli import build_parser
from fastmix.cli.commands.info import describe_store
from fastmix.cli.hardening_options import spec_from_arguments
from fastmix.store.cluster.client import in_flight_limit
from fastmix.store.cluster.onefile import _copy_part, partial_path, parts_folder
from fastmix.store.cluster.shards import shard_folder
from fastmix.store.cluster.tasks import Job, part_name, task_name, window_task

pytestmark = [pytest.mark.slow,
              pytest.mark.filterwarnings("ignore::fastmix.FastmixWarning")]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = fastmix.MixSpec(block=(8, 8), donors=3, prob=0.5)
HARDENED = fastmix.MixSpec.preset("balanced", block=(8, 8))  # orientation, jitter, seam blur
FILTERS = {"raw": {}, "lz4": dict(hdf5plugin.LZ4()),
           "gzip": {"compression": "gzip", "compression_opts": 1},
           "lzf": {"compression": "lzf"}}  # lzf: HDF5 encodes (no raw-chunk path)
#: A hang guard for the waits below (they end on progress long before).
PATIENCE = 300


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"}) \
            as cluster, distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def photos():
    """512 real 32x32 photo tiles of 4 labels."""
    data = pytest.importorskip("skimage.data")
    tiles, labels = [], []
    for label, name in enumerate(("astronaut", "coffee", "chelsea", "rocket")):
        photo = data.__getattribute__(name)()[:256, :256, :3]
        for variant in (photo, photo[::-1]):
            for top in range(0, 256, 32):
                for left in range(0, 256, 32):
                    tiles.append(variant[top:top + 32, left:left + 32])
                    labels.append(label)
    order = np.random.default_rng(1).permutation(len(tiles))
    return np.ascontiguousarray(np.stack(tiles)[order]), np.asarray(labels)[order]


def write_store(path, images, labels, chunk=32, **options):
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=images, chunks=(chunk, *images.shape[1:]),
                            **options)
        file["images"].attrs["source"] = "scikit-image samples"
        file["labels"] = labels
        file["labels"].attrs["class_names"] = ["astronaut", "coffee", "chelsea", "rocket"]
        file.create_group("meta").attrs["version"] = np.int64(3)
    return str(path)


def assert_same_images_dataset(expected_path, actual_path):
    """Pixels, attributes and every stored chunk's bytes are equal."""
    with h5py.File(expected_path, "r") as expected, h5py.File(actual_path, "r") as actual:
        a, b = expected["images"], actual["images"]
        assert np.array_equal(a[()], b[()])
        assert sorted(a.attrs) == sorted(b.attrs)
        for name in a.attrs:
            assert np.array_equal(a.attrs[name], b.attrs[name]), name
        assert a.dtype == b.dtype and a.chunks == b.chunks
        assert a.id.get_create_plist().get_nfilters() == b.id.get_create_plist().get_nfilters()
        offsets = []
        a.id.chunk_iter(lambda info: offsets.append(info.chunk_offset))
        for offset in offsets:
            assert a.id.read_direct_chunk(offset) == b.id.read_direct_chunk(offset)
        assert np.array_equal(expected["labels"][()], actual["labels"][()])
        assert actual["meta"].attrs["version"] == 3


def read_images(path):
    with h5py.File(path, "r") as file:
        return file["images"][()]


@pytest.mark.parametrize("store_filter, spec", [("raw", SPEC), ("lz4", SPEC), ("gzip", SPEC),
                                                ("lzf", SPEC), ("lz4", HARDENED)],
                         ids=["raw", "lz4", "gzip", "lzf", "lz4-hardened"])
def test_one_file_output_equals_the_single_process_run(client, photos, key, tmp_path,
                                                       store_filter, spec):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels, **FILTERS[store_filter])
    single = fastmix.mix_store(source, tmp_path / "single.h5", spec=spec, key=key, window=128,
                               progress=False)
    with distributed.get_task_stream(client) as stream:
        report = fastmix.mix_store(source, tmp_path / "cluster.h5", spec=spec, key=key,
                                   window=128, progress=False, client=client)
    assert_same_images_dataset(tmp_path / "single.h5", tmp_path / "cluster.h5")
    assert report.unpartnered == single.unpartnered and report.windows == 4
    assert set(report.extra["stages"]) == {"read", "mix", "encode", "write", "ship", "gather"}
    assert set(report.extra["cpu"]) == {"read", "mix", "write", "gather"}
    # The workers wrote part files, which the client copied and removed.
    assert report.extra["parts"] is True
    assert sorted(os.listdir(tmp_path)) == ["cluster.h5", "in.h5", "single.h5"]
    # Task names are deterministic and hold no key material.
    names = {str(task["key"]) for task in stream.data}
    assert names and all(name.startswith("fastmix-mix-") for name in names)
    secret = "0f" * 32
    assert not any(secret in name for name in names)
    assert not any(secret in line for logs in client.get_worker_logs().values()
                   for _, line in logs)
    assert sorted(os.listdir(tmp_path)) == ["cluster.h5", "in.h5", "single.h5"]


@pytest.mark.parametrize("store_filter", ["lz4", "lzf"])
def test_a_partial_last_chunk_is_copied_exactly(client, photos, key, tmp_path, store_filter):
    """500 images in chunks of 32: the last window's part ends in an edge chunk."""
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images[:500], labels[:500],
                         **FILTERS[store_filter])
    fastmix.mix_store(source, tmp_path / "single.h5", spec=SPEC, key=key, window=128,
                      progress=False)
    report = fastmix.mix_store(source, tmp_path / "cluster.h5", spec=SPEC, key=key,
                               window=128, progress=False, client=client)
    assert report.extra["parts"] is True
    assert_same_images_dataset(tmp_path / "single.h5", tmp_path / "cluster.h5")


def test_a_contiguous_store_is_shipped_to_the_client(client, photos, key, tmp_path):
    """No chunks to copy: the tasks return their images, which the client writes."""
    images, labels = photos
    source = str(tmp_path / "in.h5")
    with h5py.File(source, "w") as file:
        file["images"] = images[:128]
        file["labels"] = labels[:128]
    fastmix.mix_store(source, tmp_path / "single.h5", spec=SPEC, key=key, window=32,
                      progress=False)
    report = fastmix.mix_store(source, tmp_path / "cluster.h5", spec=SPEC, key=key, window=32,
                               progress=False, client=client)
    assert report.extra["parts"] is False
    assert np.array_equal(read_images(tmp_path / "cluster.h5"),
                          read_images(tmp_path / "single.h5"))
    assert sorted(os.listdir(tmp_path)) == ["cluster.h5", "in.h5", "single.h5"]


def test_task_names_are_deterministic_and_keyless(key):
    name = task_name("mix", "0123456789abcdef", 7)
    assert name == task_name("mix", "0123456789abcdef", 7) == "fastmix-mix-0123456789abcdef-000007"
    assert key.check_value not in name


def test_windows_in_flight_fit_the_memory_budget():
    window = 2560 * 64 * 64 * 3
    assert in_flight_limit("1GiB", window, 2) == 4  # two per worker thread
    assert in_flight_limit("100MiB", window, 8) == 3  # what the budget holds at the writer
    assert in_flight_limit("1MiB", window, 8) == 1


def test_sharded_store_reads_back_and_unmixes_in_both_layouts(client, photos, key, tmp_path):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels, **FILTERS["lz4"])
    fastmix.mix_store(source, tmp_path / "single.h5", spec=SPEC, key=key, window=128,
                      progress=False)
    fastmix.mix_store(source, tmp_path / "sharded.h5", spec=SPEC, key=key, window=128,
                      progress=False, client=client, shards=True)
    expected = read_images(tmp_path / "single.h5")
    assert sorted(os.listdir(shard_folder(tmp_path / "sharded.h5"))) == \
        ["fastmix-run.json"] + [f"window-{index:06d}.h5" for index in range(4)]
    # Plain h5py and dask.array, in a process without fastmix, from another folder.
    script = (
        "import sys, h5py, hdf5plugin, numpy, dask.array as da\n"
        "assert not any(m.startswith('fastmix') for m in sys.modules)\n"
        "f = h5py.File(sys.argv[1], 'r'); d = f['images']\n"
        "assert d.is_virtual\n"
        "numpy.save(sys.argv[2], d[()])\n"
        "assert (da.from_array(d, chunks=(100, 32, 32, 3)).sum().compute() == d[()].sum())\n"
        "print(dict(d.attrs)['fastmix_mode'])\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "sharded.h5"),
                           str(tmp_path / "plain.npy")], cwd="/", capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": ""}, timeout=PATIENCE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "permute"
    assert np.array_equal(np.load(tmp_path / "plain.npy"), expected)
    with fastmix.H5ImageDataset(tmp_path / "sharded.h5") as dataset:
        image, label = dataset[5]
        assert np.array_equal(image, expected[5]) and label == labels[5]
    assert fastmix.verify_stores(source, tmp_path / "sharded.h5", key=key).ok
    described = describe_store(str(tmp_path / "sharded.h5"))["images"]
    assert len(described["virtual_sources"]) == 4 and described["chunks"] == [32, 32, 32, 3]

    # unmix: sharded -> one file on the cluster, one file -> sharded, sharded in one process.
    fastmix.unmix_store(tmp_path / "sharded.h5", tmp_path / "back1.h5", key=key,
                        progress=False, client=client)
    fastmix.unmix_store(tmp_path / "single.h5", tmp_path / "back2.h5", key=key,
                        progress=False, client=client, shards=True)
    fastmix.unmix_store(tmp_path / "sharded.h5", tmp_path / "back3.h5", key=key,
                        progress=False)
    for name in ("back1.h5", "back2.h5", "back3.h5"):
        assert np.array_equal(read_images(tmp_path / name), images), name
        with h5py.File(tmp_path / name, "r") as file:
            # A sharded output names only the run of its shards.
            assert [attr for attr in file["images"].attrs if attr.startswith("fastmix_")] == \
                (["fastmix_shard_run"] if name == "back2.h5" else [])
    with h5py.File(tmp_path / "back1.h5", "r") as file:
        assert not file["images"].is_virtual and file["images"].chunks == (32, 32, 32, 3)


def test_a_missing_shard_is_named(photos, key, tmp_path, client):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images[:128], labels[:128])
    fastmix.mix_store(source, tmp_path / "sharded.h5", spec=SPEC, key=key, window=64,
                      progress=False, client=client, shards=True)
    os.remove(os.path.join(shard_folder(tmp_path / "sharded.h5"), "window-000000.h5"))
    with pytest.raises(fastmix.BadInputError, match=r"window-000000.h5"):
        fastmix.unmix_store(tmp_path / "sharded.h5", tmp_path / "back.h5", key=key,
                            progress=False)
    assert not os.path.exists(tmp_path / "back.h5")


def many_windows(tmp_path, photos, store_filter="lz4"):
    """Return a store of 1,024 images in 64 windows of 16: runs long enough to be interrupted."""
    images, labels = photos
    images, labels = np.concatenate([images, images[::-1]]), np.concatenate([labels,
                                                                             labels[::-1]])
    return write_store(tmp_path / "in.h5", images, labels, chunk=16,
                       **FILTERS[store_filter]), images


def wait_for(condition, still_running):
    """Poll until ``condition()``; fail if the run ends first (or the guard runs out)."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert still_running(), "the run ended before it could be interrupted"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.005)


def done_windows(destination):
    try:
        with open(partial_path(destination) + ".done") as handle:
            return len(handle.read().splitlines()) - 1
    except FileNotFoundError:
        return 0


def test_a_worker_killed_mid_run_changes_nothing(client, photos, key, tmp_path):
    source, _ = many_windows(tmp_path, photos)
    fastmix.mix_store(source, tmp_path / "single.h5", spec=SPEC, key=key, window=16,
                      progress=False)
    pids = client.run(os.getpid)
    destination = str(tmp_path / "cluster.h5")
    errors = []

    def run():
        try:
            fastmix.mix_store(source, destination, spec=SPEC, key=key, window=16,
                              progress=False, client=client)
        except BaseException as error:  # reported below
            errors.append(error)

    worker = threading.Thread(target=run)
    worker.start()
    wait_for(lambda: done_windows(destination) >= 1, worker.is_alive)
    busy = [address for address, keys in client.processing().items() if keys] or list(pids)
    os.kill(pids[busy[0]], signal.SIGKILL)
    assert worker.is_alive(), "the run ended before the worker was killed"
    worker.join(PATIENCE)
    assert not errors, errors
    assert_same_images_dataset(tmp_path / "single.h5", destination)
    client.wait_for_workers(2, timeout=PATIENCE)  # the nanny restarted it
    assert pids[busy[0]] not in client.run(os.getpid).values()


def only_client_left(dask_scheduler, own: str) -> bool:
    """Whether the scheduler has dropped every client but ``own``, and so their tasks."""
    return set(dask_scheduler.clients) <= {own, "fire-and-forget"} and \
        not any(worker.processing for worker in dask_scheduler.workers.values())


def running_tasks(dask_worker) -> int:
    """Tasks still running on a worker, counting those the scheduler has already released."""
    return len(dask_worker.state.all_running_tasks)


@pytest.mark.parametrize("shards, rewritten", [(False, False), (True, False), (False, True)],
                         ids=["one-file", "shards", "one-file-source-rewritten"])
def test_client_killed_then_resume_gives_identical_output(client, photos, key, tmp_path,
                                                          shards, rewritten):
    source, images = many_windows(tmp_path, photos)
    key_file = tmp_path / "k.key"
    key.save(key_file)
    destination = str(tmp_path / "cluster.h5")
    arguments = ["mix", source, destination, "--key-file", str(key_file), "--privacy", "fast",
                 "--block", "8x8", "--window", "16", "--quiet",
                 "--scheduler", client.scheduler.address] + (["--shards"] if shards else [])
    spec, _, _ = spec_from_arguments(build_parser().parse_args(arguments))
    fastmix.mix_store(source, tmp_path / "single.h5", spec=spec, key=key, window=16,
                      progress=False)
    command = [sys.executable, "-m", "fastmix.cli", *arguments]
    env = {**os.environ, "PYTHONPATH": ROOT}
    folder = shard_folder(destination)

    def progressed():
        if shards:
            return os.path.isdir(folder) and \
                sum(name.startswith("window-") for name in os.listdir(folder)) >= 2
        return done_windows(destination) >= 2

    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        wait_for(progressed, lambda: process.poll() is None)
        process.kill()
    finally:
        process.wait(PATIENCE)
    assert not os.path.exists(destination)
    if rewritten:
        # The source rewritten between the kill and the resume: the windows done from the
        # old images must not be kept (the run token holds the source's fingerprint), so
        # the resume equals a single-process run of the new source.
        assert done_windows(destination) >= 2
        deadline = time.monotonic() + PATIENCE
        # Tasks the killed client left still read the source: the scheduler hands them out
        # until it has dropped that client, and a worker finishes a running task (then
        # "cancelled") before it lets go of the file.
        while not client.run_on_scheduler(only_client_left, own=client.id):
            assert time.monotonic() < deadline, "the scheduler keeps the killed client"
            time.sleep(0.05)
        while any(client.run(running_tasks).values()):
            assert time.monotonic() < deadline, "the cluster does not settle"
            time.sleep(0.05)
        with h5py.File(source, "r+") as file:
            file["images"][0] = 255 - images[0]
        os.remove(tmp_path / "single.h5")
        fastmix.mix_store(source, tmp_path / "single.h5", spec=spec, key=key, window=16,
                          progress=False)
    if not shards:
        # Parts of another run (another token: its stragglers, which Dask cannot stop) are
        # never copied, and are removed with the folder when this run ends.
        parts = parts_folder(destination)
        os.makedirs(parts, exist_ok=True)
        for index in range(64):
            with h5py.File(os.path.join(parts, part_name("0" * 16, index)), "w") as part:
                part.create_dataset("images", data=np.zeros((16, 32, 32, 3), np.uint8),
                                    chunks=(16, 32, 32, 3), **FILTERS["lz4"])
    done = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True,
                          timeout=PATIENCE)
    assert done.returncode == 0, done.stderr
    if shards:
        with h5py.File(destination, "r") as file:
            assert file["images"].is_virtual
        assert np.array_equal(read_images(destination), read_images(tmp_path / "single.h5"))
        assert sorted(os.listdir(folder)) == \
            ["fastmix-run.json"] + [f"window-{index:06d}.h5" for index in range(64)]
        leftovers = {"cluster.h5", "cluster.h5.shards"}
    else:
        assert_same_images_dataset(tmp_path / "single.h5", destination)
        leftovers = {"cluster.h5"}
    assert set(os.listdir(tmp_path)) == {"in.h5", "k.key", "single.h5", *leftovers}


def test_a_worker_part_is_copied_only_for_its_own_run_and_window(client, photos, key,
                                                                 tmp_path):
    """A part a worker wrote for run A, found where run B expects its part, is refused."""
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images[:64], labels[:64], chunk=16,
                         **FILTERS["lz4"])
    parts = str(tmp_path / "parts")
    os.makedirs(parts)
    ours, theirs = "a" * 16, "b" * 16
    job = Job(source=source, images="/images", spec=SPEC, inverse=False, raw=True,
              backend="cpu", shard_folder=None, token=theirs, part_folder=parts)
    result = client.submit(window_task, job, 1, 16, 32, labels[16:32], key,
                           pure=False).result()
    assert result.part == os.path.join(parts, part_name(theirs, 1))
    with h5py.File(tmp_path / "out.h5", "w") as file:
        output = file.create_dataset("images", shape=(64, 32, 32, 3), dtype=np.uint8,
                                     chunks=(16, 32, 32, 3), **FILTERS["lz4"])
        _copy_part(result.part, output, theirs, 1, (16, 32), bytearray())  # its own run
        assert output.id.get_num_chunks() == 1
        expected = os.path.join(parts, part_name(ours, 2))
        os.replace(result.part, expected)
        for window in [(32, 48), (16, 32)]:  # another run's, and that run's window too
            with pytest.raises(fastmix.BadInputError, match="not window 2 of this run"):
                _copy_part(expected, output, ours, 2, window, bytearray())
        assert output.id.get_num_chunks() == 1


def test_an_unreachable_scheduler_is_bad_input(tmp_path, photos, key):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images[:64], labels[:64])
    key.save(tmp_path / "k.key")
    done = subprocess.run(
        [sys.executable, "-m", "fastmix.cli", "mix", source, str(tmp_path / "out.h5"),
         "--key-file", str(tmp_path / "k.key"), "--scheduler", "tcp://127.0.0.1:9"],
        env={**os.environ, "PYTHONPATH": ROOT}, capture_output=True, text=True,
        timeout=PATIENCE)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "tcp://127.0.0.1:9" in lines[0], done.stderr
    assert sorted(os.listdir(tmp_path)) == ["in.h5", "k.key"]


def test_a_source_the_workers_cannot_see_is_named(client, photos, key, tmp_path):
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images[:64], labels[:64])
    # /proc/self/fd/N names this process's open file; in a worker process it names nothing.
    descriptor = os.open(source, os.O_RDONLY)
    private = 1000
    os.dup2(descriptor, private)
    try:
        path = f"/proc/self/fd/{private}"
        with pytest.raises(fastmix.BadInputError, match=f"{path}.*worker"):
            fastmix.mix_store(path, tmp_path / "out.h5", spec=SPEC, key=key, progress=False,
                              client=client)
    finally:
        os.close(private)
        os.close(descriptor)
    assert sorted(os.listdir(tmp_path)) == ["in.h5"]


def test_workers_with_two_threads_under_the_workqueue_layer(photos, key, tmp_path):
    """Window tasks from two threads of one process, with Numba's workqueue layer.

    That layer aborts on concurrent parallel kernels: the kernel lock keeps them apart.
    """
    images, labels = photos
    source = write_store(tmp_path / "in.h5", images, labels, **FILTERS["lz4"])
    script = (
        "import sys, numba, numpy as np\n"
        "from concurrent.futures import ThreadPoolExecutor\n"
        "import fastmix, h5py\n"
        "from fastmix.store.cluster.tasks import Job, window_task\n"
        "source = sys.argv[1]\n"
        "labels = h5py.File(source, 'r')['labels'][()]\n"
        "spec = fastmix.MixSpec(block=(8, 8), donors=3, prob=0.5)\n"
        "key = fastmix.Key.from_hex('0f' * 32)\n"
        "job = Job(source, 'images', spec, False, True, 'cpu', None, 't')\n"
        "run = lambda i: window_task(job, i, 32 * i, 32 * i + 32, labels[32 * i:32 * i + 32],"
        " key)\n"
        "with ThreadPoolExecutor(2) as pool:\n"
        "    results = list(pool.map(run, list(range(16)) * 4))\n"
        "assert numba.threading_layer() == 'workqueue', numba.threading_layer()\n"
        "assert all(a.items == b.items for a, b in zip(results, results[16:]))\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script, source], capture_output=True,
                          text=True, timeout=PATIENCE,
                          env={**os.environ, "PYTHONPATH": ROOT,
                               "NUMBA_THREADING_LAYER": "workqueue", "NUMBA_NUM_THREADS": "2"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_import_fastmix_never_imports_dask():
    script = ("import sys, fastmix, fastmix.store, fastmix.cli\n"
              "fastmix.cli.build_parser()\n"
              "print([m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')])\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT}, timeout=PATIENCE)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
