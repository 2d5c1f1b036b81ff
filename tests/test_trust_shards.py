"""Sharded stores and Dask runs that must never give wrong images with exit status 0 (issue 21).

A sharded store is bound to its shards by a run id and a keyed MAC per shard; a `%` in a
destination name is escaped in the virtual dataset's mapping; a single process unmixes a
sharded store; a worker killed during a run's broadcasts does not fail the run.

Most tests run on an in-process Dask cluster (threads: it starts in a fraction of a second);
the worker-kill test needs worker processes, and is marked slow.
"""

import json
import os
import shutil
import signal
import threading
import time

import distributed
import h5py
import hdf5plugin
import numpy as np
import pytest

import fastmix
from fastmix.cli import main
from fastmix.store.cluster.shards import shard_folder

pytestmark = pytest.mark.filterwarnings("ignore::fastmix.FastmixWarning")

SPEC = fastmix.MixSpec(block=(8, 8), donors=3, prob=0.5)
LZ4 = dict(hdf5plugin.LZ4())
#: A hang guard for the waits below (they end on progress long before).
PATIENCE = 120


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, processes=False, threads_per_worker=1,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture
def tiles(photo_tiles):
    """256 real 32x32 photo tiles of 4 labels, shuffled so that every window mixes."""
    images, labels = photo_tiles
    order = np.random.default_rng(7).permutation(len(images))
    return np.ascontiguousarray(images[order]), labels[order]


def write_store(path, images, labels, chunk=16, **options):
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=images, chunks=(chunk, *images.shape[1:]), **options)
        file["labels"] = labels
    return str(path)


def read_images(path):
    with h5py.File(path, "r") as file:
        return file["images"][()]


def cli(capsys, *arguments):
    """Run the command line in this process; return (exit status, stderr lines)."""
    capsys.readouterr()
    status = main([str(argument) for argument in arguments])
    return status, capsys.readouterr().err.strip().splitlines()


def mix_sharded(client, source, destination, key, window=64, **options):
    return fastmix.mix_store(source, destination, spec=SPEC, key=key, window=window,
                             progress=False, client=client, shards=True, **options)


# -- item 9.1: a shard is bound to its store -----------------------------------------------


def test_a_renamed_sharded_store_is_never_taken_over(client, tiles, key, tmp_path, capsys):
    images, labels = tiles
    source = write_store(tmp_path / "in.h5", images, labels, **LZ4)
    mix_sharded(client, source, tmp_path / "a.h5", key)
    expected = read_images(tmp_path / "a.h5")
    os.rename(tmp_path / "a.h5", tmp_path / "b.h5")  # b.h5 still reads a.h5.shards/
    other = fastmix.Key.from_hex("1e" * 32)
    other.save(tmp_path / "other.key")
    again = ["mix", source, tmp_path / "a.h5", "--key-file", tmp_path / "other.key",
             "--block", "8x8", "--window", "64", "--shards", "--quiet",
             "--scheduler", client.scheduler.address]
    for extra, reason in (([], "shards of another store"), (["--resume"], "cannot resume"),
                          (["--overwrite"], "shards of another store")):
        status, errors = cli(capsys, *again, *extra)
        assert status == 2 and len(errors) == 1 and reason in errors[0], errors
    assert not os.path.exists(tmp_path / "a.h5")
    assert np.array_equal(read_images(tmp_path / "b.h5"), expected)
    key.save(tmp_path / "k.key")
    status, errors = cli(capsys, "unmix", tmp_path / "b.h5", tmp_path / "back.h5",
                         "--key-file", tmp_path / "k.key", "--quiet")
    assert status == 0, errors
    assert np.array_equal(read_images(tmp_path / "back.h5"), images)
    # A store made again over itself (overwrite) replaces its own shards.
    mix_sharded(client, source, tmp_path / "d.h5", other)
    mix_sharded(client, source, tmp_path / "d.h5", key, overwrite=True)
    assert np.array_equal(read_images(tmp_path / "d.h5"), expected)


def test_shards_of_another_run_or_window_are_refused(client, tiles, key, tmp_path, capsys):
    images, labels = tiles
    source = write_store(tmp_path / "in.h5", images, labels)
    mix_sharded(client, source, tmp_path / "a.h5", key)
    other = fastmix.Key.from_hex("1e" * 32)
    mix_sharded(client, source, tmp_path / "c.h5", other)
    key.save(tmp_path / "k.key")
    folder, foreign = shard_folder(tmp_path / "a.h5"), shard_folder(tmp_path / "c.h5")
    keep = tmp_path / "keep.h5"  # the genuine window 1
    shutil.copy(os.path.join(folder, "window-000001.h5"), keep)

    def unmix():
        return cli(capsys, "unmix", tmp_path / "a.h5", tmp_path / "back.h5",
                   "--key-file", tmp_path / "k.key", "--quiet")

    # Another run's shard (another key: other bytes) in place of window 1.
    shutil.copy(os.path.join(foreign, "window-000001.h5"), os.path.join(folder,
                                                                        "window-000001.h5"))
    status, errors = unmix()
    assert status == 2 and len(errors) == 1 and "window-000001.h5" in errors[0], errors
    assert "run" in errors[0]
    # The same run's window 2 in place of window 1.
    shutil.copy(os.path.join(folder, "window-000002.h5"), os.path.join(folder,
                                                                       "window-000001.h5"))
    status, errors = unmix()
    assert status == 2 and len(errors) == 1 and "swapped" in errors[0], errors
    # Another run's shard whose record was edited to name this run: its MAC fails.
    shutil.copy(os.path.join(foreign, "window-000001.h5"), os.path.join(folder,
                                                                        "window-000001.h5"))
    with h5py.File(tmp_path / "a.h5", "r") as file:
        run = file["images"].attrs["fastmix_shard_run"]
    with h5py.File(os.path.join(folder, "window-000001.h5"), "r+") as file:
        record = json.loads(file["images"].attrs["fastmix_shard"])
        file["images"].attrs["fastmix_shard"] = json.dumps({**record, "run": run})
    status, errors = unmix()
    assert status == 2 and len(errors) == 1 and "does not verify" in errors[0], errors
    assert not os.path.exists(tmp_path / "back.h5")
    # Readers without the key still see the run and window mismatches.
    shutil.copy(os.path.join(folder, "window-000002.h5"), os.path.join(folder,
                                                                       "window-000001.h5"))
    with pytest.raises(fastmix.BadInputError, match="swapped"):
        fastmix.H5ImageDataset(tmp_path / "a.h5")
    shutil.copy(keep, os.path.join(folder, "window-000001.h5"))
    status, errors = unmix()
    assert status == 0, errors
    assert np.array_equal(read_images(tmp_path / "back.h5"), images)


def test_resume_refuses_a_source_that_changed(client, tiles, key, tmp_path):
    images, labels = tiles
    source = write_store(tmp_path / "in.h5", images, labels, **LZ4)
    pristine = tmp_path / "pristine.h5"
    shutil.copy2(source, pristine)
    destination = tmp_path / "out.h5"
    folder = shard_folder(destination)
    stamp = os.stat(source)
    with h5py.File(source, "r") as file:  # damage window 2's first chunk, in place
        offset, size = file["images"].id.get_chunk_info_by_coord((64, 0, 0, 0))[2:]
    with open(source, "r+b") as handle:
        handle.seek(offset)
        handle.write(b"\xff" * size)
    os.utime(source, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    with pytest.raises(fastmix.BadInputError, match="damaged"):
        mix_sharded(client, source, destination, key, window=32)
    deadline = time.monotonic() + PATIENCE
    while any(client.processing().values()):  # windows still in flight finish
        assert time.monotonic() < deadline, "the cluster does not settle"
        time.sleep(0.01)
    assert {"window-000000.h5", "window-000001.h5"} <= set(os.listdir(folder))
    assert not os.path.exists(destination)

    def put(path):  # a new file at the source's path (the old one may still be open)
        os.replace(path, source)

    def changed(edit):
        shutil.copy2(pristine, tmp_path / "edited.h5")
        with h5py.File(tmp_path / "edited.h5", "r+") as file:
            edit(file)
        os.utime(tmp_path / "edited.h5", ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
        put(tmp_path / "edited.h5")
        with pytest.raises(fastmix.BadInputError, match="source changed"):
            mix_sharded(client, source, destination, key, window=32, resume=True)
        assert not os.path.exists(destination)

    first, second = (int(np.flatnonzero(labels == label)[0]) for label in (0, 1))

    def relabel(file):
        file["labels"][first], file["labels"][second] = labels[second], labels[first]

    def repaint(file):
        file["images"][first] = images[second]

    changed(relabel)
    changed(repaint)
    shutil.copy2(pristine, tmp_path / "same.h5")  # the same bytes and modification time
    put(tmp_path / "same.h5")
    mix_sharded(client, source, destination, key, window=32, resume=True)
    single = fastmix.mix_store(source, tmp_path / "single.h5", spec=SPEC, key=key, window=32,
                               progress=False)
    assert single.windows == 8
    assert np.array_equal(read_images(destination), read_images(tmp_path / "single.h5"))


# -- item 9.2: a '%' in the destination name ------------------------------------------------


@pytest.mark.parametrize("name", ["50%.h5", "p%b.h5", "a%%b.h5"])
def test_a_percent_in_the_destination_name_reads_back_exactly(client, tiles, key, tmp_path,
                                                              capsys, name):
    images, labels = tiles
    source = write_store(tmp_path / "in.h5", images[:128], labels[:128])
    fastmix.mix_store(source, tmp_path / "single.h5", spec=SPEC, key=key, window=64,
                      progress=False)
    destination = tmp_path / name
    mix_sharded(client, source, destination, key)
    assert os.path.isdir(str(destination) + ".shards")
    assert read_images(destination).tobytes() == read_images(tmp_path / "single.h5").tobytes()
    key.save(tmp_path / "k.key")
    status, errors = cli(capsys, "unmix", destination, tmp_path / "back.h5",
                         "--key-file", tmp_path / "k.key", "--quiet")
    assert status == 0, errors
    assert read_images(tmp_path / "back.h5").tobytes() == images[:128].tobytes()


# -- item 9.3: a single process unmixes a sharded store -------------------------------------


@pytest.mark.parametrize("options", [{}, LZ4], ids=["raw", "lz4"])
def test_one_process_unmixes_a_sharded_store(client, tiles, key, tmp_path, capsys, options):
    images, labels = tiles
    source = write_store(tmp_path / "in.h5", images, labels, **options)
    mix_sharded(client, source, tmp_path / "sharded.h5", key)
    key.save(tmp_path / "k.key")
    # A small budget: output pieces shorter than the shards' chunks of 16 images.
    status, errors = cli(capsys, "unmix", tmp_path / "sharded.h5", tmp_path / "back.h5",
                         "--key-file", tmp_path / "k.key", "--memory", "1MiB", "--quiet")
    assert status == 0, errors
    assert read_images(tmp_path / "back.h5").tobytes() == images.tobytes()
    with h5py.File(tmp_path / "back.h5", "r") as file:
        assert not file["images"].is_virtual and file["images"].chunks == (16, 32, 32, 3)


# -- item 9.4: a worker killed during the run -----------------------------------------------


@pytest.mark.slow
def test_a_worker_killed_during_the_broadcast_does_not_fail_the_run(tiles, key, tmp_path):
    images, labels = tiles
    source = write_store(tmp_path / "in.h5", images, labels)
    fastmix.mix_store(source, tmp_path / "single.h5", spec=SPEC, key=key, window=16,
                      progress=False)
    destination = tmp_path / "out.h5"
    folder = shard_folder(destination)
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                  dashboard_address=None, env={"NUMBA_NUM_THREADS": "1"}) \
            as cluster, distributed.Client(cluster, set_as_default=False) as client:
        pids = client.run(os.getpid)
        errors = []

        def run():
            try:
                mix_sharded(client, source, destination, key, window=16)
            except BaseException as error:  # reported below
                errors.append(error)

        worker = threading.Thread(target=run)
        worker.start()
        # The run's first broadcast (which workers see the files) is under way while its
        # marker file exists. Stop a worker then, so that a broadcast waits on it, and kill it.
        deadline = time.monotonic() + PATIENCE
        while not (os.path.isdir(folder) and
                   any(name.startswith(".fastmix-mark-") for name in os.listdir(folder))):
            assert worker.is_alive() and time.monotonic() < deadline, "no broadcast seen"
            time.sleep(0.001)
        victim = pids[sorted(pids)[0]]
        os.kill(victim, signal.SIGSTOP)
        time.sleep(0.5)
        os.kill(victim, signal.SIGKILL)
        worker.join(PATIENCE)
        assert not errors, errors
    assert read_images(destination).tobytes() == read_images(tmp_path / "single.h5").tobytes()


# -- item 7 in a sharded output: other names of the images reach the mixed images -----------


def test_hard_links_to_the_images_reach_the_mixed_images_in_a_sharded_store(client, tiles, key,
                                                                           tmp_path):
    """Every hard-link name of the images names the mixed virtual dataset.

    The sharded writer replaces the copied images by a virtual dataset; no other name may be
    left on an orphaned dataset of fill values.
    """
    images, labels = tiles
    source = write_store(tmp_path / "in.h5", images[:128], labels[:128])
    with h5py.File(source, "r+") as file:
        file["copy"] = file["images"]
        file.create_group("more")["images"] = file["images"]
    destination = tmp_path / "out.h5"
    mix_sharded(client, source, destination, key)
    expected = fastmix.mix_array(images[:128], labels[:128], SPEC, key, window=64)
    with h5py.File(destination, "r") as file:
        for name in ("images", "copy", "more/images"):
            assert file[name].is_virtual, name
            assert file[name][()].tobytes() == expected.tobytes(), name
