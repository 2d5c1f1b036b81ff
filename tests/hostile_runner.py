"""Run hostile-input cases through ``fastmix.cli.main`` in this one child process.

``python tests/hostile_runner.py CASES.json`` reads a list of cases (``name``, ``folder``,
``argv``, ``output``), runs each in its folder and prints one JSON line per case: exit
status, stderr, files changed outside the output, the case's peak resident memory and
whether it hung. The test (``test_hostile_corpus.py``) starts this process under a memory
limit and judges the results; running many cases in one process keeps the corpus fast.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import sys
import time
import traceback

#: Seconds a case may take before it counts as a hang.
CASE_SECONDS = 60


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


def run_case(case: dict) -> dict:
    from fastmix.cli import main

    folder = case["folder"]
    os.chdir(folder)
    before = snapshot(folder)
    stderr, stdout = io.StringIO(), io.StringIO()
    status, problem = None, None
    _reset_peak()
    started = time.monotonic()
    signal.alarm(CASE_SECONDS)
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
            status = main(case["argv"])
    except Hang:
        problem = "hang"
    except SystemExit as stop:
        status = stop.code if isinstance(stop.code, int) else 2
    except BaseException:  # reported, judged by the test
        problem = "traceback: " + traceback.format_exc(limit=3)
    finally:
        signal.alarm(0)
    peak = _peak_bytes()
    after = snapshot(folder)
    output = case.get("output")
    changed = sorted(name for name in set(before) | set(after)
                     if before.get(name) != after.get(name)
                     and not (output and (name == output or name.startswith(output + "/"))))
    return {"name": case["name"], "status": status, "problem": problem,
            "stderr": stderr.getvalue(), "changed": changed, "peak": peak,
            "seconds": round(time.monotonic() - started, 2)}


def main() -> None:
    signal.signal(signal.SIGALRM, _alarm)
    with open(sys.argv[1]) as handle:
        cases = json.load(handle)
    out = sys.stdout
    for case in cases:
        result = run_case(case)
        print(json.dumps(result), file=out, flush=True)
        if result["status"] in (129, 130, 143):  # this runner was told to stop
            break


if __name__ == "__main__":
    main()
