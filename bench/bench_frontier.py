"""The privacy/utility frontier at 192x192, the default image size, or at ``--size``.

    python bench/bench_frontier.py                     # the sweep: audit and CNN, cached
    python bench/bench_frontier.py --no-utility        # the audit side only
    python bench/bench_frontier.py --quick             # a few points, fewer images and epochs
    python bench/bench_frontier.py --only-outputs --plot docs/frontier.png --table  # JSON only
    python bench/bench_frontier.py --no-utility --axes preset geometry --keys 1 2 3  # issue 22
    OMP_NUM_THREADS=1 python bench/bench_frontier.py --no-audit --axes preset geometry
                                                       # its CNN side, alongside the audits

Two runs side by side on a 2-core machine: give each one thread (``OMP_NUM_THREADS=1``,
``NUMBA_NUM_THREADS=1``). Torch's two threads beside a busy audit took 0.67 s per batch of
32 grey 192x192 images where one thread took 0.26 s.

For every setting it measures, on the face task, the photo task and the colour task of
:mod:`fastmix.samples`, under each of ``--keys`` (the keys are public numbers, so a rerun
mixes the same bytes):

(``face_task``: LFW faces against non-faces, grown to 192x192; ``photo_task``: crops of ten
photographs, labelled by photograph, where a 1x1-pixel shuffle fails; ``colour_task``: colour
crops of four photographs, the data of issue 22's independent attack):

* the audit, exactly as ``fastmix mix --audit`` runs it with the key: the adapted and the
  strong attack, given the true groups (:func:`fastmix.audit.adaptive.audit_options`), the
  figures of the strongest, on at most ``--audit-sample`` images per label within
  ``--audit-time`` seconds and ``--audit-memory`` bytes (default: the time for whole labels;
  the memory, 1 GiB, holds whole labels down to 12-pixel blocks, and 8-pixel blocks need
  2.4 GiB for 40 images per label and 13.4 GiB for the 100 faces per label, so give more
  there or the figures are a lower bound); its advantage A, re-identification and verdict,
  per key. Tables give the worst key;
* the CNN accuracy change (:func:`fastmix.utility`, model ``cnn``, 3 folds, tested on
  untouched held-out originals) against the original, beside the 1x1 control, under the
  training recipe ``--recipe`` (default ``matched+remix``: issue 22's best measured
  practice). The CNN gets more images than the attack: ``--utility-per-class`` crops a
  photograph (default 300: 3,000 photo crops, so 2,000 training images a fold; 1,200
  colour crops), the 200 faces as they are. By default (``--cnn geometry``) every task
  gets the CNN for the presets and the ``balanced`` geometries.

The sweep goes one axis at a time around the candidates: the ``balanced`` preset's geometry
(grids of 4x4 to 24x24 blocks: 48 to 8 pixels), block size in groups of 11, group size (11,
25, the whole label of the window), each hardening option alone, and the presets. With
``--table`` it also applies issue 22's rule for the default (:func:`chosen_default`): the
largest ``balanced`` blocks that are good with margin (A <= 0.10 and re-identified <= 0.15)
on every task and key measured. Every point is cached in the JSON
(``--out``) under a key of the data, the spec and the settings, so a rerun skips what is
done; ``--plot`` draws the frontier (needs the ``bench`` extra: matplotlib).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from fastmix import samples
from fastmix.audit import audit_arrays
from fastmix.audit.adaptive import audit_options
from fastmix.audit.deep import RECIPES
from fastmix.audit.strong import ATTACK_MEMORY
from fastmix.audit.utility import CONTROL_SPEC
from fastmix.errors import FastmixWarning
from fastmix.keys import Key
from fastmix.mixing import mix_array
from fastmix.presets import PRESET_PARAMETERS
from fastmix.spec import DEFAULT_PRESET, PRESETS, MixSpec, describe

SIZE = 192
#: Issue 22's margin for the default preset: on every task and key, at most these.
MARGIN_ADVANTAGE, MARGIN_REIDENTIFIED = 0.10, 0.15
#: The balanced preset's grids on the geometry axis, coarsest first (48 to 8 pixel blocks).
GEOMETRY_GRIDS = ((4, 4), (6, 6), (8, 8), (12, 12), (16, 16), (24, 24))
DEFAULT_OUT = Path("/tmp/fastmix-frontier.json")
#: The JSON's sections: the points (name, axis, spec), and the measurements they refer to,
#: cached by data, spec and settings, so that two points with one spec are measured once.
SECTIONS = ("points", "audits", "utilities", "baselines")
#: The hardening of the balanced preset before issue 13 (d4, default jitter, seam blur 1).
HARDENED = {"mode": "permute", "prob": 1.0, "orient": "d4", "jitter": True, "seam_blur": 1.0}


@dataclass(frozen=True)
class Point:
    """One setting of the sweep: a name, the axis it varies, and how to build its spec."""

    name: str
    axis: str
    preset: str | None = None
    overrides: dict = field(default_factory=dict)

    def spec(self) -> MixSpec:
        """Return the spec of this point."""
        if self.preset is not None:
            return MixSpec.preset(self.preset, **self.overrides)
        return MixSpec(**self.overrides)


def _block(side: int) -> dict:
    return {"block": (side, side)}


def sweep_points(quick: bool = False, size: int = SIZE) -> list[Point]:
    """Return the settings measured, most wanted first: presets, then one axis at a time."""
    points = [Point(f"preset {name}", "preset", name)
              for name in (DEFAULT_PRESET, *(name for name in PRESETS
                                            if name != DEFAULT_PRESET))]
    # The default preset in hardening format 1, the default before fastmix 0.4 (issue 24):
    # format 2's privacy must stay within its noise (at most +0.02 A, +0.03 re-identified).
    points.append(Point(f"preset {DEFAULT_PRESET}, hardening format 1", "format",
                        DEFAULT_PRESET, {"hardening_format": 1}))
    # The presets as fastmix 0.1.0 defined them, on the default grid: where users started.
    for grid in GEOMETRY_GRIDS:
        if grid != PRESET_PARAMETERS[DEFAULT_PRESET].get("grid"):
            points.append(Point(f"{DEFAULT_PRESET} grid {grid[0]}x{grid[1]} "
                                f"({size // grid[0]}px)", "geometry", DEFAULT_PRESET,
                                {"grid": grid}))
    points += [Point("0.1.0 balanced (groups of 11, 96x24)", "preset before",
                     overrides={**HARDENED, "donors": 10}),
               Point("0.1.0 strong (groups of 25, 96x24)", "preset before",
                     overrides={**HARDENED, "donors": 24})]
    window_sides = (32, 24) if quick else (48, 32, 24, 16, 12)
    for side in window_sides:
        points.append(Point(f"hardened window {side}px", "group size",
                            overrides={**HARDENED, "group": "window", **_block(side)}))
    sides = (48, 24, 12) if quick else (48, 32, 24, 16, 12, 8)
    for side in sides:
        points.append(Point(f"hardened g11 {side}px", "block size",
                            overrides={**HARDENED, "donors": 10, **_block(side)}))
    if quick:
        return points
    # The 32 and 24 pixel blocks again as grids (another key: the spec seeds the plan).
    for grid in ((6, 6), (8, 8)):
        points.append(Point(f"hardened window grid {grid[0]}x{grid[1]}", "group size",
                            overrides={**HARDENED, "group": "window", "grid": grid}))
    points.append(Point("hardened window 96x24", "group size",
                        overrides={**HARDENED, "group": "window"}))
    points.append(Point("hardened g25 24px", "group size",
                        overrides={**HARDENED, "donors": 24, **_block(24)}))
    plain = {"mode": "permute", "prob": 1.0, "group": "window", **_block(24)}
    points += [
        Point("window 24px, no hardening", "hardening", overrides=plain),
        Point("window 24px + d4", "hardening", overrides={**plain, "orient": "d4"}),
        Point("window 24px + jitter", "hardening", overrides={**plain, "jitter": True}),
        Point("window 24px + seam blur 1", "hardening", overrides={**plain, "seam_blur": 1.0}),
    ]
    return points


#: Settings that get the CNN under ``--cnn candidates`` besides the presets.
CANDIDATES = ("0.1.0 balanced (groups of 11, 96x24)", "hardened window 48px",
              "hardened window 16px", "hardened g11 24px", "window 24px, no hardening")


#: What ``--cnn`` and ``--face-cnn`` may name (see :func:`wants_cnn`).
LEVELS = ("presets", "geometry", "candidates", "all")


def wants_cnn(point: Point, level: str) -> bool:
    """Whether ``point`` gets the CNN at ``level``.

    ``presets``: the presets only; ``geometry``: also the ``balanced`` preset's other grids
    (issue 22's frontier); ``candidates``: the presets and :data:`CANDIDATES`; ``all``.
    """
    if point.axis == "preset" or level == "all":
        return True
    if level == "geometry":
        return point.axis == "geometry"
    return level == "candidates" and point.name in CANDIDATES


# ---------------------------------------------------------------- data


TASKS = ("faces", "photos", "colour")


def load_task(name: str, per_class: int, seed: int,
              size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Return the images and labels of the ``faces``, ``photos`` or ``colour`` task."""
    if name == "faces":
        return samples.face_task(size=size)
    if name == "colour":
        return samples.colour_task(size=size, per_class=per_class, seed=seed)
    return samples.photo_task(size=size, per_class=per_class, seed=seed)


def fingerprint(images: np.ndarray, labels: np.ndarray) -> str:
    """Return a short hash of the data (a cached point is reused only on the same bytes)."""
    digest = hashlib.sha256(np.ascontiguousarray(images).tobytes())
    digest.update(np.ascontiguousarray(labels).astype(np.int64).tobytes())
    return digest.hexdigest()[:16]


def cache_key(*parts: object) -> str:
    """Return the cache key of a measurement from everything it depends on."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


# ---------------------------------------------------------------- measurements


def measure_audit(images: np.ndarray, labels: np.ndarray, spec: MixSpec, *, sample: int,
                  seed: int, key_number: int, seconds: float,
                  memory: int = ATTACK_MEMORY) -> dict:
    """Mix with key number ``key_number`` and audit as ``fastmix mix --audit`` does with it."""
    key = Key.from_hex(f"{key_number:064x}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FastmixWarning)
        mixed = mix_array(images, labels, spec, key)
    height, width = images.shape[1:3]
    started = time.perf_counter()
    report = audit_arrays(images, mixed, labels, spec, key=key, sample=sample, seed=seed,
                          seconds=seconds, memory=memory,
                          **audit_options(spec, height, width, key_given=True))
    return {"advantage": report.advantage,
            "advantage_interval": report.intervals.get("advantage", []),
            "reidentified": report.reidentified_fraction,
            "reidentified_interval": report.intervals.get("reidentified_fraction", []),
            "restored": report.restored_fraction,
            "restored_90": report.restored_90_fraction, "verdict": report.verdict,
            "attacks": report.attacks, "open_pools": report.open_pools,
            "sampled": report.sampled, "key": key_number,
            "seconds": round(time.perf_counter() - started, 1)}


def measure_utility(images: np.ndarray, labels: np.ndarray, specs: dict, settings: dict,
                    seed: int) -> dict:
    """Return :func:`fastmix.utility`'s ``sets`` for ``specs`` (with original and control)."""
    import fastmix

    result = fastmix.utility(images, labels, specs=specs, seed=seed,
                             progress=lambda line: print(f"    {line}", flush=True), **settings)
    return result["sets"]


# ---------------------------------------------------------------- the sweep


class Results:
    """The JSON of all points, saved after every measurement (a rerun skips done ones).

    An audit run and a CNN run may share the file: each save re-reads it under a lock and
    writes back only the fields this process measured.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict = {section: {} for section in SECTIONS}
        self.changed: dict = {}
        if path.exists():
            self.data = json.loads(path.read_text())

    def update(self, section: str, entry_id: str, **fields: object) -> dict:
        """Set ``fields`` of one point (or baseline) and remember them for :meth:`save`."""
        entry = self.data.setdefault(section, {}).setdefault(entry_id, {})
        entry.update(fields)
        self.changed.setdefault((section, entry_id), {}).update(fields)
        return entry

    def save(self) -> None:
        """Merge what this process measured into the JSON on disk, atomically."""
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = json.loads(self.path.read_text()) if self.path.exists() else {}
            for section in SECTIONS:
                data.setdefault(section, {})
            data["meta"] = self.data.get("meta", data.get("meta", {}))
            for (section, name), fields in self.changed.items():
                data[section].setdefault(name, {}).update(fields)
            partial = self.path.with_suffix(".partial")
            partial.write_text(json.dumps(data, indent=1, sort_keys=True))
            os.replace(partial, self.path)
            self.data = data


def run_sweep(args: argparse.Namespace) -> Results:
    """Measure every point not already in the JSON."""
    results = Results(args.out)
    # points are named by task and setting, not size: one JSON holds one image size
    recorded = results.data.get("meta", {}).get("size", SIZE)
    if results.data["points"] and recorded != args.size:
        print(f"bench_frontier: {args.out} holds points at {recorded}x{recorded}, not "
              f"{args.size}x{args.size}; give this size its own --out", file=sys.stderr)
        raise SystemExit(2)
    points = sweep_points(args.quick, args.size)
    utility_settings = {"model": "cnn", "epochs": args.epochs, "folds": args.folds,
                        "augment": False, "device": "cpu", "batch_size": args.batch_size,
                        "workers": args.workers}
    if args.recipe != "none":  # joins the cache key only when asked: older caches stay valid
        utility_settings.update(recipe=args.recipe, views=args.views)
    results.data["meta"] = {
        "command": "python bench/bench_frontier.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "default_preset": DEFAULT_PRESET, "utility": utility_settings,
        "audit_sample": args.audit_sample, "audit_time": args.audit_time,
        "audit_memory": args.audit_memory, "keys": args.keys, "per_class": args.per_class,
        "utility_per_class": args.utility_per_class, "seed": args.seed, "size": args.size,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    for data_name in args.data:
        images, labels = load_task(data_name, args.per_class, args.seed, args.size)
        data_id = fingerprint(images, labels)
        print(f"{data_name}: {len(images)} images {images.shape[1:]}, "
              f"{len(np.unique(labels))} labels, data {data_id}", flush=True)
        # the CNN needs more images than the attack (issue 22: >= 2,000 training images);
        # the faces task has its 200 only
        if data_name == "faces" or args.utility_per_class == args.per_class:
            utility_images, utility_labels, utility_data_id = images, labels, data_id
        else:
            utility_images, utility_labels = load_task(data_name, args.utility_per_class,
                                                       args.seed, args.size)
            utility_data_id = fingerprint(utility_images, utility_labels)
            print(f"{data_name} for the CNN: {len(utility_images)} images, "
                  f"data {utility_data_id}", flush=True)
        baseline_id = cache_key(utility_data_id, utility_settings, args.seed)
        todo_utility = {}
        for point in points:
            if (args.axes and point.axis not in args.axes) or \
                    (args.only and point.name not in args.only):
                continue
            spec = point.spec()
            # to_dict, not canonical(): it carries the hardening format of every spec that
            # computes values (seeds nothing, decides bytes), so a cache written when format 1
            # was the default (and left it out) never answers for format 2
            # the memory joins the key only when not the default, so older caches stay valid
            memory = [] if args.audit_memory == ATTACK_MEMORY else [args.audit_memory]
            audit_ids = [cache_key(data_id, spec.to_dict(), args.audit_sample,
                                   args.audit_time, args.seed, key_number, *memory)
                         for key_number in args.keys]
            utility_id = cache_key(utility_data_id, spec.to_dict(), utility_settings, args.seed)
            level = args.face_cnn if data_name == "faces" else args.cnn
            if data_name == "faces" and point.name in args.face_extra:
                level = "all"
            results.update(
                "points", f"{data_name}:{point.name}", data=data_name, name=point.name,
                axis=point.axis, preset=point.preset, spec=spec.to_dict(),
                describe=describe(spec, point.preset),
                block=list(spec.block_shape(args.size, args.size)),
                audit_ids=audit_ids, utility_id=utility_id, baseline_id=baseline_id)
            for key_number, audit_id in zip(args.keys, audit_ids):
                if not args.no_audit and audit_id not in results.data["audits"]:
                    load = os.getloadavg()[0]
                    audit = measure_audit(images, labels, spec, sample=args.audit_sample,
                                          seed=args.seed, key_number=key_number,
                                          seconds=args.audit_time, memory=args.audit_memory)
                    results.update("audits", audit_id, **audit, load=round(load, 1))
                    results.save()
                audit = results.data["audits"].get(audit_id)
                if audit:
                    print(f"  {point.name:<40} key {key_number} A {audit['advantage']:.3f} "
                          f"re-identified {audit['reidentified']:.3f} {audit['verdict']:<9} "
                          f"restored {audit.get('restored', float('nan')):.3f}, "
                          f"{audit.get('sampled', '?')} images attacked, open pools "
                          f"{audit.get('open_pools', float('nan')):.2f} "
                          f"({audit['seconds']} s)", flush=True)
            if (not args.no_utility and wants_cnn(point, level)
                    and utility_id not in results.data["utilities"]):
                todo_utility.setdefault(utility_id, spec)
        results.save()
        if todo_utility:
            run_utility(results, utility_images, utility_labels, baseline_id, todo_utility,
                        utility_settings, args)
    return results


def run_utility(results: Results, images: np.ndarray, labels: np.ndarray, baseline_id: str,
                todo: dict, settings: dict, args: argparse.Namespace) -> None:
    """Train the CNN on the specs of ``todo``, a few per call, caching each call's results."""
    entries = list(todo.items())
    for start in range(0, len(entries), args.utility_chunk):
        chunk = dict(entries[start:start + args.utility_chunk])
        started = time.perf_counter()
        load = os.getloadavg()[0]
        sets = measure_utility(images, labels, chunk, settings, args.seed)
        seconds = round(time.perf_counter() - started, 1)
        results.update("baselines", baseline_id, original=sets["original"],
                       control=sets["control"],
                       control_spec=CONTROL_SPEC.to_dict())
        for utility_id in chunk:
            row = dict(sets[utility_id], seconds=seconds, load=round(load, 1))
            results.update("utilities", utility_id, **row)
            print(f"  {describe(chunk[utility_id])}: CNN accuracy {row['accuracy']:.3f} "
                  f"change {row['change']:+.3f} ({seconds} s for {len(chunk)} settings)",
                  flush=True)
        results.save()


def joined(results: Results) -> list[dict]:
    """Return every point with its ``audit``, ``utility`` and ``baseline`` (None if missing).

    ``audit`` is the worst key's figures (the largest A and re-identified, over the keys
    measured) with ``keys``, ``advantages``, ``reidentified_each`` and ``verdicts`` per key.
    """
    data = results.data
    rows = []
    for entry in data["points"].values():
        ids = entry.get("audit_ids") or [entry.get("audit_id")]
        audits = [data["audits"][audit_id] for audit_id in ids if audit_id in data["audits"]]
        rows.append(dict(entry, audit=worst_key(audits),
                         utility=data["utilities"].get(entry.get("utility_id") or ""),
                         baseline=data["baselines"].get(entry.get("baseline_id"))))
    return rows


def worst_key(audits: list[dict]) -> dict | None:
    """Return the worst of one point's per-key audits, with every key's figures beside it."""
    if not audits:
        return None
    worst = dict(max(audits, key=lambda audit: audit["advantage"]))
    worst.update(advantage=max(audit["advantage"] for audit in audits),
                 reidentified=max(audit["reidentified"] for audit in audits),
                 keys=[audit.get("key") for audit in audits],
                 advantages=[audit["advantage"] for audit in audits],
                 reidentified_each=[audit["reidentified"] for audit in audits],
                 verdicts=[audit["verdict"] for audit in audits])
    return worst


def chosen_default(results: Results) -> tuple[str | None, list[str]]:
    """Apply issue 22's rule: the largest ``balanced`` blocks good with margin everywhere.

    A geometry qualifies when, on every task measured and under every key, A <= 0.10 and
    re-identified <= 0.15, and no audit's figures are a lower bound (open pools). Returns
    the chosen point's name (None when no geometry qualifies) and one line per geometry.
    """
    rows = [row for row in joined(results) if row["audit"]
            and row["axis"] in ("geometry", "preset") and row.get("preset") == DEFAULT_PRESET]
    by_name: dict = {}
    for row in rows:
        by_name.setdefault(row["name"], []).append(row)
    lines, best = [], None
    for name, per_task in sorted(by_name.items(), key=lambda item: -item[1][0]["block"][0]):
        worst_a = max(row["audit"]["advantage"] for row in per_task)
        worst_r = max(row["audit"]["reidentified"] for row in per_task)
        lower_bound = any(row["audit"].get("open_pools") for row in per_task)
        good = worst_a <= MARGIN_ADVANTAGE and worst_r <= MARGIN_REIDENTIFIED and not lower_bound
        tasks = ", ".join(sorted(row["data"] for row in per_task))
        lines.append(f"{name}: worst A {worst_a:.2f}, worst re-identified {worst_r:.2f} over "
                     f"{tasks}{' (a lower bound)' if lower_bound else ''}: "
                     f"{'good with margin' if good else 'not good with margin'}")
        if good and best is None:
            best = name
    return best, lines


# ---------------------------------------------------------------- outputs


def table(results: Results) -> str:
    """Return the Markdown table of the presets, the original and the 1x1 control."""
    lines = ["| data | setting | blocks | A | re-identified | verdict | CNN accuracy | change |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    rows = joined(results)
    for data_name in TASKS:
        chosen = [row for row in rows if row["data"] == data_name
                  and row["axis"] in ("preset", "preset before")]
        baseline = next((row["baseline"] for row in chosen if row["baseline"]), None)
        if baseline:
            lines.append(f"| {data_name} | original | | | | | "
                         f"{_accuracy(baseline['original'])} | 0 |")
        for row in chosen:
            lines.append(_row(row, with_axis=False))
        if baseline:
            lines.append(f"| {data_name} | 1x1 control | 1x1 | | | | "
                         f"{_accuracy(baseline['control'])} | {_change(baseline['control'])} |")
    return "\n".join(lines)


def points_table(results: Results) -> str:
    """Return every point, one row each (the frontier's data)."""
    lines = ["| data | axis | setting | blocks | A | re-identified | verdict | CNN accuracy | "
             "change |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    lines += [_row(row, with_axis=True) for row in joined(results) if row["audit"]]
    return "\n".join(lines)


def _row(row: dict, *, with_axis: bool) -> str:
    audit, utility = row["audit"] or {}, row["utility"]
    cells = [row["data"], *([row["axis"]] if with_axis else []), row["name"],
             f"{row['block'][0]}x{row['block'][1]}",
             _per_key(audit, "advantages", "advantage"),
             _per_key(audit, "reidentified_each", "reidentified"),
             " / ".join(audit.get("verdicts", [])) if audit else "",
             _accuracy(utility) if utility else "", _change(utility) if utility else ""]
    return "| " + " | ".join(cells) + " |"


def format_table(results: Results) -> str:
    """Return the default preset in hardening formats 1 and 2, key by key (issue 24 part 2)."""
    lines = ["| data | key | A format 1 | A format 2 | change | re-identified format 1 | "
             "format 2 | change |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    data = results.data
    for data_name in TASKS:
        pair = [data["points"].get(f"{data_name}:preset {DEFAULT_PRESET}{suffix}")
                for suffix in (", hardening format 1", "")]  # format 2 is the default
        if not all(pair):
            continue
        for ids in zip(*(point["audit_ids"] for point in pair)):
            one, two = (data["audits"].get(audit_id) for audit_id in ids)
            if not (one and two):
                continue
            lines.append(
                f"| {data_name} | {one['key']} | {one['advantage']:.3f} | {two['advantage']:.3f} | "
                f"{two['advantage'] - one['advantage']:+.3f} | {one['reidentified']:.3f} | "
                f"{two['reidentified']:.3f} | {two['reidentified'] - one['reidentified']:+.3f} |")
    return "\n".join(lines)


def _per_key(audit: dict, each: str, worst: str) -> str:
    """Return the worst key's figure, with the range over keys when there are several."""
    if not audit:
        return ""
    values = audit.get(each) or [audit[worst]]
    spread = f" ({min(values):.2f}-{max(values):.2f})" if len(values) > 1 else ""
    return f"{audit[worst]:.2f}{spread}"


def _accuracy(row: dict) -> str:
    folds = ", ".join(f"{100 * value:.0f}" for value in row.get("fold_accuracy", []))
    return f"{100 * row['accuracy']:.1f}%" + (f" (folds {folds})" if folds else "")


def _change(row: dict) -> str:
    return f"{100 * row['change']:+.1f} pt"


def plot(results: Results, path: Path) -> None:
    """Draw advantage and re-identification against the CNN accuracy change, task by task.

    One marker per setting and task that has both the audit (the worst key) and the CNN:
    its own task's accuracy change against the original (under the recipe measured) across,
    the audit's figure up. Circles: photos; triangles: colour; hollow squares: faces. The
    same setting's markers are joined by a line; issue 22's margin (A <= 0.10,
    re-identified <= 0.15, at most 5 points lost) is shaded.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_name: dict = {}
    for row in joined(results):
        if row["audit"] and row["utility"]:
            by_name.setdefault(row["name"], {})[row["data"]] = row
    colours = {"preset": "tab:red", "preset before": "tab:orange", "block size": "tab:blue",
               "geometry": "tab:brown", "format": "tab:pink",
               "group size": "tab:green", "hardening": "tab:purple"}
    markers = {"photos": ("o", True), "colour": ("^", True), "faces": ("s", False)}
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.8), dpi=80)
    for axis, (metric, limit, title) in zip(
            axes, (("advantage", MARGIN_ADVANTAGE, "advantage A"),
                   ("reidentified", MARGIN_REIDENTIFIED, "re-identified"))):
        axis.fill_between([-5, 0.5], 0, limit, color="tab:green", alpha=0.15,
                          label="issue 22's margin, at most 5 points lost")
        for name, per_data in sorted(by_name.items()):
            xs, ys = [], []
            for data_name, row in sorted(per_data.items()):
                change = 100 * row["utility"]["change"]
                value = row["audit"][metric]
                colour = colours.get(row["axis"], "grey")
                marker, filled = markers.get(data_name, ("x", True))
                axis.scatter(change, value, marker=marker, s=32,
                             facecolors=colour if filled else "none", edgecolors=colour)
                xs.append(change)
                ys.append(value)
                if data_name == "photos":
                    axis.annotate(_short(name), (change, value), fontsize=6, xytext=(3, 2),
                                  textcoords="offset points")
            axis.plot(xs, ys, color=colours.get(next(iter(per_data.values()))["axis"], "grey"),
                      alpha=0.3, linewidth=1)
        axis.axhline(limit, color="tab:green", linewidth=0.8)
        axis.set_xlabel("CNN accuracy change on the task's originals (points)")
        axis.set_ylabel(f"{title}, worst key")
        axis.set_ylim(0, 1.02)
        axis.grid(alpha=0.3)
    handles = [plt.Line2D([], [], marker=marker, linestyle="", color="black",
                          markerfacecolor="black" if filled else "none", label=data_name)
               for data_name, (marker, filled) in markers.items()]
    handles += [plt.Line2D([], [], marker="o", linestyle="", color=colour, label=label)
                for label, colour in colours.items()
                if any(row["axis"] == label for rows in by_name.values()
                       for row in rows.values())]
    axes[0].legend(handles=handles + axes[0].get_legend_handles_labels()[0], fontsize=7,
                   loc="upper left")
    meta = results.data.get("meta", {})
    recipe, size = meta.get("utility", {}).get("recipe", "none"), meta.get("size", SIZE)
    figure.suptitle(f"fastmix privacy/utility frontier on {size}x{size} images, strongest attack, "
                    f"CNN recipe {recipe} (python bench/bench_frontier.py)", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def _short(name: str) -> str:
    for long, short in (("hardened ", ""), ("preset ", ""), (", no hardening", " plain"),
                        (" (groups of 11, 96x24)", ""), (" (groups of 25, 96x24)", "")):
        name = name.replace(long, short)
    return name


def main(argv: list[str] | None = None) -> int:
    """Run the sweep (skipping cached points), then print the tables and draw the picture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON of all points")
    parser.add_argument("--data", nargs="+", choices=TASKS, default=list(TASKS))
    parser.add_argument("--size", type=int, default=SIZE,
                        help="image side in pixels (default 192); each size needs its own "
                             "--out")
    parser.add_argument("--keys", type=int, nargs="+", default=[1, 2, 3],
                        help="key numbers (the key is the number as 64 hex digits)")
    parser.add_argument("--quick", action="store_true",
                        help="a few points, CNN of 3 epochs on 2 folds")
    parser.add_argument("--no-audit", action="store_true")
    parser.add_argument("--no-utility", action="store_true")
    parser.add_argument("--only-outputs", action="store_true",
                        help="measure nothing: tables and picture from the JSON")
    parser.add_argument("--cnn", choices=LEVELS, default="geometry",
                        help="photo and colour task settings that get the CNN")
    parser.add_argument("--face-cnn", choices=LEVELS, default="geometry",
                        help="face task settings that get the CNN")
    parser.add_argument("--face-extra", nargs="*", default=["0.1.0 balanced (groups of 11, "
                                                             "96x24)"],
                        help="more face task settings that get the CNN")
    parser.add_argument("--axes", nargs="*", default=None,
                        help="measure only these axes (preset, format, geometry, 'preset before', "
                             "block size, group size, hardening)")
    parser.add_argument("--only", nargs="*", default=None,
                        help="measure only the settings of these names (as the tables print them)")
    parser.add_argument("--per-class", type=int, default=40,
                        help="photo and colour task crops per photo, for the audit (issue 22's "
                             "attack: 40 a label)")
    parser.add_argument("--utility-per-class", type=int, default=300,
                        help="photo and colour task crops per photo for the CNN (300: 3,000 "
                             "photo crops, 2,000 training images a fold of 3)")
    parser.add_argument("--recipe", choices=RECIPES, default="matched+remix",
                        help="the training recipe of the mixed sets (fastmix utility --recipe)")
    parser.add_argument("--views", type=int, default=4, help="matched views per test image")
    parser.add_argument("--audit-sample", type=int, default=200,
                        help="images per label attacked (fastmix mix --audit-sample)")
    parser.add_argument("--audit-time", type=float, default=3600,
                        help="seconds the audit's attacks may take (fastmix mix --audit-time); "
                             "the default attacks whole labels")
    parser.add_argument("--audit-memory", type=float, default=ATTACK_MEMORY / 2 ** 30,
                        metavar="GIB", help="GiB the audit's attack may hold (the default: "
                        "fastmix.audit's 1 GiB); 8-pixel blocks need more for whole labels")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--folds", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=0,
                        help="DataLoader workers (0: read in the training process)")
    parser.add_argument("--utility-chunk", type=int, default=4,
                        help="settings trained per fastmix.utility call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, help="draw the frontier here (PNG)")
    parser.add_argument("--table", action="store_true", help="print the Markdown tables")
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (3 if args.quick else 8)
    args.folds = args.folds or (2 if args.quick else 3)
    args.audit_memory = int(args.audit_memory * 2 ** 30)
    if args.only_outputs:
        results = Results(args.out)
    else:
        results = run_sweep(args)
        print(f"wrote {args.out}")
    if args.table:
        print(table(results))
        print()
        print(points_table(results))
        print()
        print(format_table(results))
        chosen, lines = chosen_default(results)
        print()
        print("\n".join(lines))
        print(f"issue 22's rule chooses: {chosen or 'no geometry (none is good with margin)'}")
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
