"""A SIGKILL during a new-file run leaves no file at the destination."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np

import fastmix

CHILD = textwrap.dedent("""
    import sys
    import fastmix
    key = fastmix.Key.from_hex("cd" * 32)
    fastmix.mix_store(sys.argv[1], sys.argv[2], key=key, spec=fastmix.MixSpec(block=(8, 8)),
                      memory="8MiB", progress=False)
""")


def test_sigkill_leaves_no_destination(tmp_path):
    from fastmix.benchmark.core import photographic_images

    count = 4096
    images = photographic_images(count, (64, 64, 3))
    labels = np.random.default_rng(0).integers(0, 8, count)
    source = tmp_path / "in.h5"
    with h5py.File(source, "w") as file:
        file.create_dataset("images", data=images, chunks=(16, 64, 64, 3), compression="gzip",
                            compression_opts=1)
        file["labels"] = labels
    before = source.read_bytes()
    destination = tmp_path / "out.h5"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(source), str(destination)])
    try:
        deadline = time.monotonic() + 120
        temporary = []
        while time.monotonic() < deadline and child.poll() is None:
            temporary = [name for name in os.listdir(tmp_path) if ".fastmix-tmp-" in name]
            if temporary and os.path.getsize(tmp_path / temporary[0]) > 4_000_000:
                break
            time.sleep(0.02)
        assert child.poll() is None, "the run finished before it could be killed"
        assert temporary, "the run never wrote its temporary file"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    assert not destination.exists()
    assert source.read_bytes() == before
    # A later run cleans the dead run's temporary file and produces the complete result.
    key = fastmix.Key.from_hex("cd" * 32)
    spec = fastmix.MixSpec(block=(8, 8))
    report = fastmix.mix_store(source, destination, key=key, spec=spec, memory="8MiB",
                               progress=False)
    assert sorted(os.listdir(tmp_path)) == ["in.h5", "out.h5"]
    with h5py.File(destination) as file:
        mixed = file["images"][()]
    assert np.array_equal(mixed, fastmix.mix_array(images, labels, spec, key,
                                                   window=report.window))
