"""Peak resident memory of mix_store stays within the budget, whatever the store size."""

import json
import subprocess
import sys
import textwrap

import h5py
import hdf5plugin
import numpy as np
import pytest

from fastmix.spec import DEFAULT_PRESET

pytestmark = pytest.mark.slow

BUDGET_MIB = 16
# Interpreter allocations during the run, thread stacks touched, HDF5's metadata cache and
# the plan's temporaries: independent of the store size.
OVERHEAD_MIB = 24

CHILD = textwrap.dedent("""
    import json, sys, warnings
    import numpy as np
    import fastmix

    def rss(field):
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field):
                    return int(line.split()[1]) * 1024

    source, target, budget, preset = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
    key = fastmix.Key.from_hex("ab" * 32)
    warnings.simplefilter("ignore", fastmix.FastmixWarning)
    if preset == "plain":
        spec = fastmix.MixSpec(block=(16, 16), donors=5)
    else:  # what `fastmix mix` uses without options
        spec = fastmix.MixSpec.preset(preset)
    # Warm up every code path (Numba, h5py, codecs) on a tiny store first.
    fastmix.mix_store(sys.argv[4], target + ".warm.h5", spec=spec, key=key, memory=budget,
                      progress=False)
    baseline = rss("VmRSS:")
    with open("/proc/self/clear_refs", "w") as clear:  # reset the peak (VmHWM) to now
        clear.write("5")
    report = fastmix.mix_store(source, target, spec=spec, key=key, memory=budget,
                               progress=False)
    print(json.dumps({"baseline": baseline, "peak": rss("VmHWM:"), "window": report.window,
                      "windows": report.windows, "path": report.io_path}))
""")


def _photo_store(path, count, options, chunk=16):
    from fastmix.benchmark.core import photographic_images

    with h5py.File(path, "w") as file:
        dataset = file.create_dataset("images", shape=(count, 64, 64, 3), dtype=np.uint8,
                                      chunks=(chunk, 64, 64, 3), **options)
        for start in range(0, count, 2048):
            stop = min(start + 2048, count)
            dataset[start:stop] = photographic_images(stop - start, (64, 64, 3), seed=start)
        file["labels"] = np.random.default_rng(0).integers(0, 10, count)
    return path


@pytest.mark.parametrize(("filter_name", "chunk", "preset"), [
    ("none", 16, "plain"), ("lz4", 16, "plain"),
    # The default preset streams like a plain mix (no window-sized output buffer), even
    # with chunks of 768 KiB (64 images) under 16 MiB: its plans hold no jitter parameters
    # (drawn per block in the kernel), so 121 blocks per 64x64 image cost 20 bytes each.
    ("lz4", 16, DEFAULT_PRESET), ("lz4", 64, DEFAULT_PRESET)])
def test_peak_rss_within_budget(tmp_path, filter_name, chunk, preset):
    options = {"none": {}, "lz4": dict(hdf5plugin.LZ4())}[filter_name]
    count = 12_288  # 151 MB of pixels: more than 9 times the budget
    source = _photo_store(tmp_path / "big.h5", count, options, chunk)
    small = _photo_store(tmp_path / "small.h5", 256, options, chunk)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(source), str(tmp_path / "out.h5"),
         f"{BUDGET_MIB}MiB", str(small), preset],
        capture_output=True, text=True, timeout=300, check=True)
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    grown = (figures["peak"] - figures["baseline"]) / 2**20
    assert figures["windows"] > 8
    assert figures["path"] in ("chunks/chunks", "raw-chunks/raw-chunks")
    assert grown <= BUDGET_MIB + OVERHEAD_MIB, figures
    with h5py.File(tmp_path / "out.h5") as file:
        assert file["images"].shape == (count, 64, 64, 3)
        assert file["images"].attrs["fastmix_window"] == figures["window"]
