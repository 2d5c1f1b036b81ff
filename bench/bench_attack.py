"""Compare the audit's attacks on the default preset: the adapted attack and the strong one.

    python bench/bench_attack.py                        # photo_task, 4 labels x 40, keys 1 2
    python bench/bench_attack.py --task colour --keys 1 2 3
    python bench/bench_attack.py --preset fast --size 192 --per-class 40
    python bench/bench_attack.py --task colour --grid 8x8 --keys 1 2 3   # 24-pixel blocks
    python bench/bench_attack.py --task colour --attacks strong   # the strong attack only

Data: :func:`fastmix.samples.photo_task` (grey, histogram-equalised crops of scikit-image
pictures) or ``--task colour``: :func:`fastmix.samples.colour_task`, colour crops of the four
pictures of :data:`fastmix.samples.PHOTOS` cut the same way, without turning them grey or
equalising them (the kind of data issue 22's independent attack was measured on). Each key
mixes the set with the preset (whole-label groups for ``balanced``); both attacks then restore
the same mixed set knowing only the public spec, the labels and the mixed pixels (they take no
key; the key gives the ground truth only). Printed per key and attack: the share of displaced
blocks restored to the right image, the advantage A over a random assignment, the shares of
images restored to 50% and to 90% or more, and the seconds the attack took.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from fastmix import samples
from fastmix.audit.adaptive import attack_donors, scorer_for
from fastmix.audit.attack import restoration_attack
from fastmix.audit.auditing import planner_truth
from fastmix.audit.geometry import BlockGrid
from fastmix.audit.groundtruth import content_classes
from fastmix.audit.metrics import score_restoration
from fastmix.audit.strong import advantage_of, strong_attack
from fastmix.errors import FastmixWarning
from fastmix.keys import Key
from fastmix.mixing import mix_array
from fastmix.spec import MixSpec, describe

#: The photo_task pictures used by default (4 labels): astronaut, chelsea, coffee, rocket.
PHOTO_LABELS = (0, 3, 4, 9)


def load(task: str, size: int, per_class: int) -> tuple[np.ndarray, np.ndarray]:
    """Return the images and labels of ``task`` ("photo" or "colour")."""
    if task == "colour":
        return samples.colour_task(size, per_class)
    images, labels = samples.photo_task(size=size, per_class=per_class, seed=0)
    keep = np.isin(labels, PHOTO_LABELS)
    return images[keep], labels[keep]


def measure(images: np.ndarray, labels: np.ndarray, spec: MixSpec, key_number: int,
            names: tuple[str, ...] = ("adapted", "strong")) -> list:
    """Mix with key ``key_number`` and run the attacks ``names``; one row per attack."""
    key = Key.from_hex(f"{key_number:064x}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FastmixWarning)
        mixed = mix_array(images, labels, spec, key)
    height, width = images.shape[1:3]
    block = spec.block_shape(height, width)
    grid = BlockGrid.of(height, width, block)
    source = planner_truth(labels, spec, key, grid, None).source
    classes = content_classes(images, labels, grid)
    attacks = {
        "adapted": lambda: restoration_attack(
            mixed, labels, block, spec.mode, attack_donors(spec, len(mixed)),
            scorer=scorer_for(spec, height, width), rule=spec.plan_rule),
        "strong": lambda: strong_attack(mixed, labels, spec),
    }
    rows = []
    for name in names:
        run = attacks[name]
        started = time.perf_counter()
        restoration = run()
        seconds = time.perf_counter() - started
        scored = score_restoration(restoration.placement, source, labels, grid, classes)
        rows.append({
            "key": key_number, "attack": name,
            "restored": scored.restored.sum() / max(scored.displaced.sum(), 1),
            "advantage": advantage_of(restoration, source, labels, grid, classes, seed=1),
            "half": float((scored.share >= 0.5).mean()),
            "ninety": float((scored.share >= 0.9).mean()), "seconds": seconds})
    return rows


def table(rows: list) -> str:
    """Return the Markdown table of ``rows``."""
    lines = ["| key | attack | blocks restored | A | images >= 50% | images >= 90% | seconds |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for row in rows:
        lines.append(f"| {row['key']} | {row['attack']} | {row['restored']:.3f} | "
                     f"{row['advantage']:.3f} | {row['half']:.3f} | {row['ninety']:.3f} | "
                     f"{row['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print its table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=("photo", "colour"), default="photo")
    parser.add_argument("--preset", default="balanced")
    parser.add_argument("--grid", help="the preset on another grid, ROWSxCOLUMNS (e.g. 8x8)")
    parser.add_argument("--hardening-format", type=int, choices=(1, 2), default=None)
    parser.add_argument("--size", type=int, default=192)
    parser.add_argument("--per-class", type=int, default=40)
    parser.add_argument("--keys", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--attacks", nargs="+", choices=("adapted", "strong"),
                        default=["adapted", "strong"])
    args = parser.parse_args(argv)
    images, labels = load(args.task, args.size, args.per_class)
    overrides: dict = {}
    if args.grid:
        overrides["grid"] = tuple(int(side) for side in args.grid.split("x"))
    if args.hardening_format:
        overrides["hardening_format"] = args.hardening_format
    spec = MixSpec.preset(args.preset, **overrides)
    rows = []
    for key_number in args.keys:
        rows += measure(images, labels, spec, key_number, tuple(args.attacks))
        print(table(rows[-len(args.attacks):]), flush=True)
    print(f"\n{args.task} task, {len(images)} images of {args.size}x{args.size}, "
          f"{len(np.unique(labels))} labels, {describe(spec, args.preset)}:")
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
