"""The privacy/utility frontier at the default image size, 192x192 (issue 13, part 3).

    python bench/bench_frontier.py                     # the sweep: audit and CNN, cached
    python bench/bench_frontier.py --no-utility        # the audit side only
    python bench/bench_frontier.py --quick             # a few points, fewer images and epochs
    python bench/bench_frontier.py --plot docs/frontier.png --table   # from the JSON only

For every setting it measures, on the face task and the photo task of :mod:`fastmix.samples`
(``face_task``: LFW faces against non-faces, grown to 192x192; ``photo_task``: crops of ten
photographs, labelled by photograph, where a 1x1-pixel shuffle fails):

* the audit, exactly as ``fastmix mix --audit`` runs it with the key: the restoration attack
  adapted to the hardening, given the true groups
  (:func:`fastmix.audit.adaptive.audit_options`), at most ``--audit-sample`` images per
  label; its advantage A, re-identification and verdict;
* the CNN accuracy change (:func:`fastmix.utility`, model ``cnn``, tested on untouched
  held-out originals) against the original, beside the 1x1 control. The photo task gets the
  CNN for every setting; the face task for the presets only (``--face-utility all`` for
  every setting).

The sweep goes one axis at a time around the candidates: block size (48 to 8 pixels, 1/4 to
1/24 of the side, and the 96x24 default grid), group size (11, 25, the whole label of the
window), each hardening option alone, and the presets. Every point is cached in the JSON
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
from fastmix.errors import FastmixWarning
from fastmix.keys import Key
from fastmix.mixing import mix_array
from fastmix.spec import DEFAULT_PRESET, PRESETS, MixSpec, describe

SIZE = 192
DEFAULT_OUT = Path("/tmp/fastmix-frontier.json")
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


def sweep_points(quick: bool = False) -> list[Point]:
    """Return the settings measured: the presets, then one axis at a time."""
    points = [Point(f"preset {name}", "preset", name) for name in PRESETS]
    sides = (48, 24, 12) if quick else (48, 32, 24, 16, 12, 8)
    for side in sides:
        points.append(Point(f"hardened g11 {side}px", "block size",
                            overrides={**HARDENED, "donors": 10, **_block(side)}))
    window_sides = (24,) if quick else (48, 32, 24, 16, 12)
    for side in window_sides:
        points.append(Point(f"hardened window {side}px", "group size",
                            overrides={**HARDENED, "group": "window", **_block(side)}))
    if not quick:
        points.append(Point("hardened window 96x24", "group size",
                            overrides={**HARDENED, "group": "window"}))
        points.append(Point("hardened g25 24px", "group size",
                            overrides={**HARDENED, "donors": 24, **_block(24)}))
        plain = {"mode": "permute", "prob": 1.0, "group": "window", **_block(24)}
        points += [
            Point("window 24px, no hardening", "hardening", overrides=plain),
            Point("window 24px + d4", "hardening", overrides={**plain, "orient": "d4"}),
            Point("window 24px + jitter", "hardening", overrides={**plain, "jitter": True}),
            Point("window 24px + seam blur 1", "hardening",
                  overrides={**plain, "seam_blur": 1.0}),
        ]
    return points


# ---------------------------------------------------------------- data


def load_task(name: str, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the images and labels of the ``faces`` or ``photos`` task at 192x192."""
    if name == "faces":
        return samples.face_task(size=SIZE)
    return samples.photo_task(size=SIZE, per_class=per_class, seed=seed)


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
                  seed: int) -> dict:
    """Mix with a fixed key and audit as ``fastmix mix --audit`` does with the key."""
    key = Key.from_hex(f"{seed:064x}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FastmixWarning)
        mixed = mix_array(images, labels, spec, key)
    height, width = images.shape[1:3]
    started = time.perf_counter()
    report = audit_arrays(images, mixed, labels, spec, key=key, sample=sample, seed=seed,
                          **audit_options(spec, height, width, key_given=True))
    return {"advantage": report.advantage, "advantage_interval": report.advantage_interval,
            "reidentified": report.reidentified_fraction,
            "reidentified_interval": report.reidentified_interval,
            "restored_90": report.restored_90_fraction, "verdict": report.verdict,
            "sampled": report.sampled, "seconds": round(time.perf_counter() - started, 1)}


def measure_utility(images: np.ndarray, labels: np.ndarray, specs: dict, settings: dict,
                    seed: int) -> dict:
    """Return :func:`fastmix.utility`'s ``sets`` for ``specs`` (with original and control)."""
    import fastmix

    result = fastmix.utility(images, labels, specs=specs, seed=seed, **settings)
    return result["sets"]


# ---------------------------------------------------------------- the sweep


class Results:
    """The JSON of all points, written after every measurement (a rerun skips done ones)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict = {"points": {}, "baselines": {}}
        if path.exists():
            self.data = json.loads(path.read_text())

    def save(self) -> None:
        """Write the JSON atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial")
        partial.write_text(json.dumps(self.data, indent=1, sort_keys=True))
        os.replace(partial, self.path)


def run_sweep(args: argparse.Namespace) -> Results:
    """Measure every point not already in the JSON."""
    results = Results(args.out)
    points = sweep_points(args.quick)
    utility_settings = {"model": "cnn", "epochs": args.epochs, "folds": args.folds,
                        "augment": False, "device": "cpu", "batch_size": 64,
                        "workers": args.workers}
    results.data["meta"] = {
        "command": "python bench/bench_frontier.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "default_preset": DEFAULT_PRESET, "utility": utility_settings,
        "audit_sample": args.audit_sample, "per_class": args.per_class, "seed": args.seed,
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    for data_name in args.data:
        images, labels = load_task(data_name, args.per_class, args.seed)
        data_id = fingerprint(images, labels)
        print(f"{data_name}: {len(images)} images {images.shape[1:]}, "
              f"{len(np.unique(labels))} labels, data {data_id}", flush=True)
        todo_utility = {}
        for point in points:
            spec = point.spec()
            entry_id = f"{data_name}:{point.name}"
            entry = results.data["points"].setdefault(entry_id, {})
            entry.update(data=data_name, name=point.name, axis=point.axis, preset=point.preset,
                         spec=spec.to_dict(), describe=describe(spec, point.preset),
                         block=list(spec.block_shape(SIZE, SIZE)))
            audit_id = cache_key(data_id, spec.canonical(), args.audit_sample, args.seed)
            if not args.no_audit and entry.get("audit_key") != audit_id:
                load = os.getloadavg()[0]
                entry["audit"] = measure_audit(images, labels, spec, sample=args.audit_sample,
                                               seed=args.seed)
                entry["audit"]["load"] = round(load, 1)
                entry["audit_key"] = audit_id
                results.save()
            if "audit" in entry:
                audit = entry["audit"]
                print(f"  {point.name:<32} A {audit['advantage']:.3f} re-identified "
                      f"{audit['reidentified']:.3f} {audit['verdict']:<8} "
                      f"({audit['seconds']} s)", flush=True)
            wants_utility = (data_name == "photos" or args.face_utility == "all"
                             or point.axis == "preset" or point.name in args.face_points)
            utility_id = cache_key(data_id, spec.canonical(), utility_settings, args.seed)
            if (not args.no_utility and wants_utility
                    and entry.get("utility_key") != utility_id):
                todo_utility[entry_id] = (spec, utility_id)
        if todo_utility:
            run_utility(results, data_name, images, labels, data_id, todo_utility,
                        utility_settings, args)
    return results


def run_utility(results: Results, data_name: str, images: np.ndarray, labels: np.ndarray,
                data_id: str, todo: dict, settings: dict, args: argparse.Namespace) -> None:
    """Train the CNN on the points of ``todo``, a few per call, caching each call's results."""
    baseline_id = cache_key(data_id, settings, args.seed)
    entries = list(todo.items())
    for start in range(0, len(entries), args.utility_chunk):
        chunk = dict(entries[start:start + args.utility_chunk])
        specs = {entry_id.split(":", 1)[1]: spec for entry_id, (spec, _) in chunk.items()}
        started = time.perf_counter()
        load = os.getloadavg()[0]
        sets = measure_utility(images, labels, specs, settings, args.seed)
        seconds = round(time.perf_counter() - started, 1)
        baseline = results.data["baselines"].get(data_name, {})
        if baseline.get("key") != baseline_id:
            results.data["baselines"][data_name] = {
                "key": baseline_id, "original": sets["original"], "control": sets["control"]}
        for entry_id, (_, utility_id) in chunk.items():
            entry = results.data["points"][entry_id]
            entry["utility"] = dict(sets[entry_id.split(":", 1)[1]], seconds=seconds,
                                    load=round(load, 1))
            entry["utility_key"] = utility_id
            print(f"  {entry['name']:<32} CNN accuracy {entry['utility']['accuracy']:.3f} "
                  f"change {entry['utility']['change']:+.3f} ({seconds} s for "
                  f"{len(chunk)} settings)", flush=True)
        results.save()


# ---------------------------------------------------------------- outputs


def good(audit: dict) -> bool:
    """Whether an audit is in the good region (A < 0.15 and re-identification < 0.2)."""
    return audit["verdict"] == "good"


def table(results: Results) -> str:
    """Return the Markdown table of the presets and the 1x1 control on both tasks."""
    data = results.data
    lines = ["| data | setting | blocks | A | re-identified | verdict | CNN accuracy | change |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for data_name in ("faces", "photos"):
        baseline = data["baselines"].get(data_name)
        if baseline:
            original = baseline["original"]
            lines.append(f"| {data_name} | original | | | | | "
                         f"{_accuracy(original)} | 0 |")
        for entry in data["points"].values():
            if entry["data"] != data_name or entry["axis"] != "preset":
                continue
            audit = entry.get("audit", {})
            utility = entry.get("utility")
            lines.append(
                f"| {data_name} | {entry['name']} | {entry['block'][0]}x{entry['block'][1]} | "
                f"{audit.get('advantage', float('nan')):.2f} | "
                f"{audit.get('reidentified', float('nan')):.2f} | {audit.get('verdict', '')} | "
                f"{_accuracy(utility) if utility else ''} | "
                f"{_change(utility) if utility else ''} |")
        if baseline:
            control = baseline["control"]
            lines.append(f"| {data_name} | 1x1 control | 1x1 | | | | {_accuracy(control)} | "
                         f"{_change(control)} |")
    return "\n".join(lines)


def points_table(results: Results) -> str:
    """Return every point, one row each (the frontier's data)."""
    lines = ["| data | axis | setting | blocks | A | re-identified | verdict | CNN change |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for entry in results.data["points"].values():
        audit = entry.get("audit")
        if not audit:
            continue
        utility = entry.get("utility")
        lines.append(
            f"| {entry['data']} | {entry['axis']} | {entry['name']} | "
            f"{entry['block'][0]}x{entry['block'][1]} | {audit['advantage']:.2f} | "
            f"{audit['reidentified']:.2f} | {audit['verdict']} | "
            f"{_change(utility) if utility else ''} |")
    return "\n".join(lines)


def _accuracy(row: dict) -> str:
    low, high = row.get("interval") or (None, None)
    text = f"{100 * row['accuracy']:.1f}%"
    return text + (f" [{100 * low:.1f}, {100 * high:.1f}]" if low is not None else "")


def _change(row: dict) -> str:
    return f"{100 * row['change']:+.1f} pt"


def plot(results: Results, path: Path) -> None:
    """Draw advantage and re-identification against the photo task's CNN accuracy change."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = results.data["points"]
    by_name: dict = {}
    for entry in points.values():
        by_name.setdefault(entry["name"], {})[entry["data"]] = entry
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.6), dpi=90)
    control = results.data["baselines"].get("photos", {}).get("control")
    colours = {"preset": "tab:red", "block size": "tab:blue", "group size": "tab:green",
               "hardening": "tab:purple"}
    for axis, (metric, limit, title) in zip(
            axes, (("advantage", 0.15, "advantage A"), ("reidentified", 0.2, "re-identified"))):
        axis.axhspan(0, limit, xmin=0, xmax=1, color="tab:green", alpha=0.0)
        axis.fill_between([-2, 0.5], 0, limit, color="tab:green", alpha=0.15,
                          label="good, within 2 points")
        for name, per_data in by_name.items():
            photo = per_data.get("photos", {})
            if "utility" not in photo:
                continue
            change = 100 * photo["utility"]["change"]
            values = [per_data[data]["audit"][metric] for data in ("faces", "photos")
                      if "audit" in per_data.get(data, {})]
            colour = colours.get(photo["axis"], "grey")
            if len(values) == 2:
                axis.plot([change, change], values, color=colour, alpha=0.4, linewidth=1)
            if "audit" in per_data.get("faces", {}):
                axis.scatter(change, per_data["faces"]["audit"][metric], facecolors="none",
                             edgecolors=colour, s=36)
            if "audit" in photo:
                axis.scatter(change, photo["audit"][metric], color=colour, s=36)
                axis.annotate(_short(name), (change, photo["audit"][metric]), fontsize=6,
                              xytext=(3, 2), textcoords="offset points")
        if control:
            axis.axvline(100 * control["change"], color="black", linestyle=":", linewidth=1,
                         label="1x1 control")
        axis.axhline(limit, color="tab:green", linewidth=0.8)
        axis.set_xlabel("CNN accuracy change on the photo task (points)")
        axis.set_ylabel(f"{title} (filled: photos, hollow: faces)")
        axis.set_ylim(bottom=0)
        axis.grid(alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colour, label=label)
               for label, colour in colours.items()]
    axes[0].legend(handles=handles + axes[0].get_legend_handles_labels()[0], fontsize=7,
                   loc="upper left")
    figure.suptitle("fastmix privacy/utility frontier, 192x192 images "
                    "(python bench/bench_frontier.py)", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    print(f"wrote {path} ({path.stat().st_size // 1024} KiB)")


def _short(name: str) -> str:
    return name.replace("hardened ", "").replace("preset ", "").replace(", no hardening",
                                                                        " plain")


def main(argv: list[str] | None = None) -> int:
    """Run the sweep (skipping cached points), then print the tables and draw the picture."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the JSON of all points")
    parser.add_argument("--data", nargs="+", choices=("faces", "photos"),
                        default=["faces", "photos"])
    parser.add_argument("--quick", action="store_true",
                        help="a few points, 2 folds of 3 epochs")
    parser.add_argument("--no-audit", action="store_true")
    parser.add_argument("--no-utility", action="store_true")
    parser.add_argument("--only-outputs", action="store_true",
                        help="measure nothing: tables and picture from the JSON")
    parser.add_argument("--face-utility", choices=("presets", "all"), default="presets")
    parser.add_argument("--face-points", nargs="*", default=[],
                        help="more settings to train the CNN on for the face task")
    parser.add_argument("--per-class", type=int, default=30, help="photo task crops per photo")
    parser.add_argument("--audit-sample", type=int, default=200,
                        help="images per label attacked (fastmix mix --audit-sample)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--folds", type=int, default=None)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--utility-chunk", type=int, default=4,
                        help="settings trained per fastmix.utility call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot", type=Path, help="draw the frontier here (PNG)")
    parser.add_argument("--table", action="store_true", help="print the Markdown tables")
    args = parser.parse_args(argv)
    args.epochs = args.epochs or (3 if args.quick else 8)
    args.folds = args.folds or (2 if args.quick else 3)
    if args.only_outputs:
        results = Results(args.out)
    else:
        results = run_sweep(args)
        print(f"wrote {args.out}")
    if args.table:
        print(table(results))
        print()
        print(points_table(results))
    if args.plot:
        plot(results, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
