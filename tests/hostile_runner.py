"""Run hostile-input cases through ``fastmix.cli.main`` in this one child process.

``python tests/hostile_runner.py CASES.json`` reads a list of cases, runs each in its folder
and prints one JSON line per case: exit status, stderr, files changed outside the case's
outputs, outputs left behind by a failure, the case's peak resident memory, whether it hung,
and what its content checks found. The test (``test_hostile_corpus.py``) starts this process
under a memory limit and judges the results; running many cases in one process keeps the
corpus fast.

A case holds ``argv`` (a command line) or ``api`` (a Python call, see :func:`run_api`),
``outputs`` (names it may write), ``then`` (command lines run after it when it exits 0,
each of which must exit 0 too) and ``checks`` (content checks, see :data:`CHECKS`), which
read the outputs with h5py and compare them with reference arrays saved by the test.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import signal
import sys
import time
import traceback

#: Seconds a case may take before it counts as a hang.
CASE_SECONDS = 60
#: Datasets larger than this are not read whole by the content checks.
READ_LIMIT = 64 << 20
#: Files an exported folder holds per image.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class Hang(BaseException):
    """The case ran past :data:`CASE_SECONDS`."""


def _alarm(_signum, _frame):
    raise Hang()


def snapshot(folder: str) -> dict[str, str]:
    """Regular files under ``folder`` (relative name -> SHA-256); other entries by kind."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [entry for entry in dirs if os.path.islink(os.path.join(root, entry))]:
            path = os.path.join(root, name)
            relative = os.path.relpath(path, folder)
            if os.path.islink(path) or not os.path.isfile(path):
                found[relative] = "special"
                continue
            with open(path, "rb") as handle:
                found[relative] = hashlib.sha256(handle.read()).hexdigest()
    return found


def _reset_peak() -> None:
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def _peak_bytes() -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _under(name: str, outputs: list[str]) -> bool:
    """Whether ``name`` is one of ``outputs``, inside one, or matches one ending in ``*``."""
    return any(name.startswith(output[:-1]) if output.endswith("*")
               else name == output or name.startswith(output.rstrip("/") + "/")
               for output in outputs)


# ---------------------------------------------------------------------------------------------
# Content checks, run in the case folder after the case. Each returns what went wrong.


def _read(path: str, dataset: str | None):
    import h5py
    import hdf5plugin  # noqa: F401 - registers the filters
    import numpy as np

    if path.endswith(".npy"):
        return np.load(path, allow_pickle=True)
    with h5py.File(path, "r") as file:
        return file[dataset][()]


def _references(value):
    """Every HDF5 object or region reference inside an attribute or dataset value."""
    import h5py
    import numpy as np

    if isinstance(value, h5py.Reference | h5py.RegionReference):
        yield value
    elif isinstance(value, np.ndarray | np.void) and value.dtype.names:
        for field in value.dtype.names:
            yield from _references(value[field])
    elif isinstance(value, np.ndarray) and value.dtype.kind == "O":
        for item in value.flat:
            yield from _references(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _references(item)


def check_no_original(path: str, reference: str) -> list[str]:
    """Check that no image of ``reference`` is reachable in ``path``, by any path.

    Walks every group, dataset and attribute, follows soft and external links as h5py does,
    dereferences object and region references (one that does not resolve is reported), and
    compares every array of image shape with the original images, by value.
    """
    import h5py
    import hdf5plugin  # noqa: F401
    import numpy as np

    original = np.load(reference)
    per_image = original.shape[1:]
    native = original.dtype.newbyteorder("=")
    known = {np.ascontiguousarray(image).tobytes() for image in original}
    problems: list[str] = []
    seen: set = set()

    def compare(where: str, value) -> None:
        array = np.asarray(value)
        if (array.dtype.kind != native.kind or array.dtype.itemsize != native.itemsize
                or array.dtype.names):
            return
        if array.shape == per_image:
            array = array[None]
        elif array.shape[1:] != per_image:
            return
        rows = np.ascontiguousarray(array.astype(native))
        found = sum(row.tobytes() in known for row in rows)
        if found:
            problems.append(f"{found} original image(s) at {where}")

    def follow(file, where: str, value) -> None:
        for reference_value in _references(value):
            if not reference_value:
                continue
            try:
                target = file[reference_value]
            except Exception:
                problems.append(f"dangling reference in {where}")
                continue
            visit(target, f"{where}->{target.name}", 0)

    def visit(item, where: str, depth: int) -> None:
        if depth > 32:
            return
        identity = (os.path.realpath(item.file.filename), item.name, type(item).__name__)
        if identity in seen:
            return
        seen.add(identity)
        for name in list(item.attrs):
            try:
                value = item.attrs[name]
            except Exception as error:
                problems.append(f"unreadable attribute {where}@{name} ({type(error).__name__})")
                continue
            compare(f"{where}@{name}", value)
            follow(item.file, f"{where}@{name}", value)
        if isinstance(item, h5py.Dataset):
            if (item.dtype.kind == "V" and not item.dtype.names) or item.size == 0:
                return
            if item.id.get_storage_size() > READ_LIMIT or item.nbytes > READ_LIMIT:
                return
            try:
                value = item[()]
            except Exception as error:
                problems.append(f"unreadable dataset {where} ({type(error).__name__})")
                return
            compare(where, value)
            follow(item.file, where, value)
        elif isinstance(item, h5py.Group):
            for name in item:
                link = item.get(name, getlink=True)
                try:
                    child = item[name]
                except Exception:
                    if not isinstance(link, h5py.SoftLink | h5py.ExternalLink):
                        problems.append(f"unreadable object {where.rstrip('/')}/{name}")
                    continue
                visit(child, f"{where.rstrip('/')}/{name}", depth + 1)

    with h5py.File(path, "r") as file:
        visit(file, "/", 0)
    return list(dict.fromkeys(problems))


def check_equal(path: str, dataset: str | None, reference: str) -> list[str]:
    """Check that ``path``'s images equal ``reference``, value for value (byte order aside)."""
    import numpy as np

    expected = np.load(reference)
    try:
        found = _read(path, dataset)
    except Exception as error:
        return [f"{path} unreadable ({type(error).__name__}: {error})"]
    if found.shape != expected.shape:
        return [f"{path} has shape {found.shape}, not {expected.shape}"]
    if (found.dtype.kind, found.dtype.itemsize) != (expected.dtype.kind, expected.dtype.itemsize):
        return [f"{path} has dtype {found.dtype}, not {expected.dtype}"]
    if not np.array_equal(found, expected, equal_nan=found.dtype.kind in "fc"):
        changed = int(np.sum(found != expected))
        return [f"WRONG BYTES: {changed} values of {path} differ from "
                f"{os.path.basename(reference).removesuffix('.npy')}"]
    return []


def class_keys(labels) -> list:
    """Return one hashable key per label: equal keys, equal classes (NaN equals NaN)."""
    import numpy as np

    labels = np.asarray(labels)
    if labels.ndim > 1:
        labels = labels.reshape(len(labels), -1)[:, 0] if labels.size == len(labels) \
            else labels.reshape(len(labels), -1)
    keys = []
    for value in labels.tolist():
        if isinstance(value, float) and value != value:
            value = ("nan",)
        elif isinstance(value, list):
            value = tuple(value)
        keys.append(value)
    return keys


def _partition(keys: list) -> list[int]:
    first: dict = {}
    return [first.setdefault(key, index) for index, key in enumerate(keys)]


def check_classes_kept(path: str, dataset: str | None, images: str, labels: str,
                       block: int) -> list[str]:
    """Check that every mixed block comes from an input image of the same exact label."""
    import numpy as np

    original = np.load(images)
    keys = class_keys(np.load(labels, allow_pickle=True))
    try:
        mixed = _read(path, dataset)
    except Exception as error:
        return [f"{path} unreadable ({type(error).__name__})"]
    if mixed.shape != original.shape:
        return [f"{path} has shape {mixed.shape}, not {original.shape}"]
    height, width = original.shape[1:3]
    sources: dict[bytes, set[int]] = {}
    for index, image in enumerate(original):
        for top in range(0, height, block):
            for left in range(0, width, block):
                piece = np.ascontiguousarray(image[top:top + block, left:left + block])
                sources.setdefault(bytes([top, left]) + piece.tobytes(), set()).add(index)
    merged, unknown = 0, 0
    for index, image in enumerate(mixed):
        for top in range(0, height, block):
            for left in range(0, width, block):
                piece = np.ascontiguousarray(image[top:top + block, left:left + block])
                found = sources.get(bytes([top, left]) + piece.tobytes())
                if not found:
                    unknown += 1
                elif all(keys[source] != keys[index] for source in found):
                    merged += 1
    problems = []
    if merged:
        problems.append(f"MERGED CLASSES: {merged} blocks moved between different labels")
    if unknown:
        problems.append(f"{unknown} blocks of the output come from no input image")
    return problems


def check_export(directory: str, count: int, labels: str | None) -> list[str]:
    """Check that ``directory`` holds ``count`` image files, one folder per exact label."""
    files = []
    for root, _dirs, names in os.walk(directory):
        files += [os.path.join(root, name) for name in names
                  if name.lower().endswith(IMAGE_SUFFIXES)]
    if len(files) != count:
        return [f"exported {len(files)} images, not {count}"]
    if labels is None:
        return []
    import numpy as np

    keys = class_keys(np.load(labels, allow_pickle=True))
    folder_of: dict[int, str] = {}
    for path in files:
        digits = re.sub(r"\D", "", os.path.splitext(os.path.basename(path))[0])
        if not digits or int(digits) >= count:
            return [f"exported file {os.path.relpath(path, directory)!r} names no index"]
        folder_of[int(digits)] = os.path.dirname(path)
    if len(folder_of) != count:
        return ["exported files do not name every index once"]
    folders = [folder_of[index] for index in range(count)]
    if _partition(folders) != _partition(keys):
        return [f"MERGED CLASSES: {len(set(folders))} class folders for "
                f"{len(set(keys))} distinct labels"]
    return []


def check_dataset_classes(result: str, labels: str) -> list[str]:
    """Check that the dataset's integer labels separate exactly the raw labels' classes."""
    import numpy as np

    with open(result) as handle:
        found = json.load(handle)
    keys = class_keys(np.load(labels, allow_pickle=True))
    if _partition(found["labels"]) != _partition(keys):
        return [f"MERGED CLASSES: the dataset has {len(set(found['labels']))} labels for "
                f"{len(set(keys))} distinct raw labels"]
    return []


def check_readable(path: str, dataset: str) -> list[str]:
    """Check that ``path`` opens with h5py and its ``dataset`` reads whole."""
    try:
        _read(path, dataset)
    except Exception as error:
        return [f"{path} no longer reads ({type(error).__name__}: {str(error)[:80]})"]
    return []


def check_count(path: str, dataset: str, count: int) -> list[str]:
    """Check that ``path``'s ``dataset`` holds ``count`` items."""
    try:
        found = len(_read(path, dataset))
    except Exception as error:
        return [f"{path} unreadable ({type(error).__name__})"]
    return [] if found == count else [f"{path} holds {found} items, not {count}"]


def check_stderr(pattern: str, present: bool, stderr: str) -> list[str]:
    """Check that a stderr line matches ``pattern`` (with ``present`` false: none does)."""
    found = any(re.search(pattern, line, re.IGNORECASE) for line in stderr.splitlines())
    if found == present:
        return []
    return ["no warning line (silence)" if present else "a warning line where none belongs"]


def check_kept_or_warned(path: str, items: list[str], stderr: str) -> list[str]:
    """Check that each ``item`` ("path" or "path@attribute") is kept, or a warning says why."""
    import h5py

    missing = []
    with h5py.File(path, "r") as file:
        for item in items:
            name, _, attribute = item.partition("@")
            if name not in file or (attribute and attribute not in file[name].attrs):
                missing.append(item)
    if missing and not stderr.strip():
        return [f"dropped {', '.join(missing)} without a warning"]
    return []


def _quiet(argv: list[str]) -> tuple[int | None, str]:
    """Run a command line; its status (``None`` for an exception) and last stderr line."""
    from fastmix.cli import main

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            status = main(argv)
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 2
    except Exception as error:
        return None, f"{type(error).__name__}: {error}"
    return status, (stderr.getvalue().strip().splitlines() or [""])[-1][:160]


def check_recovers(path: str, mount: str, key: str, spec: list[str], reference: str,
                   status: int) -> list[str]:
    """Check that after an in-place run on a full tmpfs, more space gets the images back.

    The tmpfs is grown. A finished run must unmix; a failed one must leave the original
    images (then a new run must work) or a state that ``--resume`` finishes.
    """
    import subprocess

    grown = subprocess.run(["mount", "-o", "remount,size=16m", os.path.abspath(mount)],
                           capture_output=True, text=True)
    if grown.returncode:
        return [f"could not grow the tmpfs: {grown.stderr.strip()}"]
    unmix = ["unmix", path, "--in-place", "--key-file", key]
    if status == 0:
        done, line = _quiet(unmix)
        if done != 0:
            return [f"after the run, unmix --in-place exits {done}: {line}"]
        return check_equal(path, "images", reference)
    if check_equal(path, "images", reference) == []:
        # Untouched pixels: nothing may be left that stops a new run (or it resumes).
        again, line = _quiet(["mix", path, "--in-place", "--key-file", key, *spec])
        if again != 0:
            again, line = _quiet(["mix", path, "--in-place", "--resume", "--key-file", key])
        if again != 0:
            return [f"STUCK: the images are intact but neither a new run nor --resume "
                    f"works ({again}: {line})"]
    else:
        resumed, line = _quiet(["mix", path, "--in-place", "--resume", "--key-file", key])
        if resumed != 0:
            return [f"LOST: the store changed and --resume exits {resumed}: {line}"]
    done, line = _quiet(unmix)
    if done != 0:
        return [f"after recovery, unmix --in-place exits {done}: {line}"]
    return check_equal(path, "images", reference)


CHECKS = {
    "no_original": check_no_original,
    "equal": check_equal,
    "classes_kept": check_classes_kept,
    "export": check_export,
    "dataset_classes": check_dataset_classes,
    "readable": check_readable,
    "count": check_count,
    "stderr": check_stderr,
    "kept_or_warned": check_kept_or_warned,
    "recovers": check_recovers,
}


# ---------------------------------------------------------------------------------------------


def run_api(call: dict) -> int:
    """Run a Python-API case; 2 for ``ValueError``/``TypeError`` (the documented refusals)."""
    import warnings

    import numpy as np

    import fastmix

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        status = _api_call(call, np, fastmix)
    for warning in caught:  # as the command line prints them: one line each
        print(f"fastmix (python): warning: {str(warning.message).splitlines()[0]}",
              file=sys.stderr)
    return status


def _api_call(call: dict, np, fastmix) -> int:
    try:
        if call["call"] == "mix_array":
            images = np.load(call["images"])
            labels = np.load(call["labels"], allow_pickle=True)
            spec = fastmix.MixSpec(block=(call["block"], call["block"]), donors=3, prob=1.0)
            mixed = fastmix.mix_array(images, labels, spec, fastmix.Key.from_hex(call["key"]))
            np.save(call["output"], mixed)
        elif call["call"] == "dataset":
            dataset = fastmix.H5ImageDataset(call["store"])
            if len(dataset):
                dataset[0]
            with open(call["output"], "w") as handle:
                json.dump({"labels": np.asarray(dataset.labels).tolist(),
                           "classes": len(dataset.classes)}, handle)
        else:
            raise AssertionError(f"unknown call {call['call']!r}")
    except (ValueError, TypeError) as error:
        print(f"fastmix (python): {type(error).__name__}: {error}".splitlines()[0],
              file=sys.stderr)
        return 2
    return 0


def _run_step(step, seconds: int = CASE_SECONDS) -> tuple[int | None, str | None, str]:
    from fastmix.cli import main

    stderr, stdout = io.StringIO(), io.StringIO()
    status, problem = None, None
    signal.alarm(seconds)
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            status = run_api(step) if isinstance(step, dict) else main(step)
    except Hang:
        problem = "hang"
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 2
    except BaseException:  # reported, judged by the test
        problem = "traceback: " + traceback.format_exc(limit=3)
    finally:
        signal.alarm(0)
    return status, problem, stderr.getvalue()


def run_case(case: dict) -> dict:
    folder = case["folder"]
    os.chdir(folder)
    outputs = case.get("outputs", [])
    before = snapshot(folder)
    _reset_peak()
    started = time.monotonic()
    status, problem, stderr = _run_step(case.get("api") or case["argv"],
                                        case.get("seconds") or CASE_SECONDS)
    wrong: list[str] = []
    then_failed = False
    if status == 0 and problem is None:
        for step in case.get("then", []):
            then_status, then_problem, then_stderr = _run_step(step)
            if then_problem or then_status != 0:
                last = (then_stderr.strip().splitlines() or [""])[-1][:160]
                wrong.append(f"then `{' '.join(step[:2])}`: "
                             f"{(then_problem and then_problem[:200]) or f'exit {then_status}'}"
                             f" {last}")
                then_failed = True
                break
    peak = _peak_bytes()
    after = snapshot(folder)
    changed = sorted(name for name in set(before) | set(after)
                     if before.get(name) != after.get(name) and not _under(name, outputs))
    if status != 0 and problem is None:
        for output in (output for output in outputs if not output.endswith("*")):
            was = [name for name in before if _under(name, [output])]
            now = [name for name in after if _under(name, [output])]
            if not was and now:
                wrong.append(f"left {output} behind after exit {status}")
            elif status == 2 and any(before.get(name) != after.get(name)
                                     for name in set(was) | set(now)):
                wrong.append(f"changed {output} although it refused")
    for check in case.get("checks", []):
        when = check.get("when", "ok")
        if problem or (when in ("ok", "then") and status != 0) \
                or (when == "then" and then_failed) or (when == "fail" and status == 0):
            continue
        arguments = dict(check["args"])
        if check["kind"] in ("stderr", "kept_or_warned"):
            arguments["stderr"] = stderr
        if check["kind"] == "recovers":
            arguments["status"] = status
        try:
            wrong += CHECKS[check["kind"]](**arguments)
        except Exception as error:
            wrong.append(f"check {check['kind']} failed: {type(error).__name__}: "
                         f"{str(error)[:120]}")
    return {"id": case["id"], "name": case["name"], "status": status, "problem": problem,
            "stderr": stderr, "changed": changed, "peak": peak, "wrong": wrong,
            "seconds": round(time.monotonic() - started, 2)}


def main() -> None:
    signal.signal(signal.SIGALRM, _alarm)
    with open(sys.argv[1]) as handle:
        cases = json.load(handle)
    out = sys.stdout
    for case in cases:
        # Say which case runs, so that a crash of this process (a segfault in a C filter) is
        # charged to it and the parent can go on with the next.
        print(json.dumps({"starting": case["id"]}), file=out, flush=True)
        result = run_case(case)
        print(json.dumps(result), file=out, flush=True)
        if result["status"] in (129, 130, 143):  # this runner was told to stop
            break


if __name__ == "__main__":
    main()
