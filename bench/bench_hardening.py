"""Measure each privacy preset: attack advantage, re-identification and utility.

    python bench/bench_hardening.py --data lfw            # presets, with the utility check
    python bench/bench_hardening.py --data tiles --no-utility
    python bench/bench_hardening.py --data lfw --ablation  # one option at a time

Needs the ``audit`` extra; it prints the Markdown table of ``docs/hardening.md``. Its rows
``balanced`` and ``strong`` are fastmix 0.1.0's presets (groups of 11 and 25 on the blocks
given here); today's presets, which set their own geometry, are measured at 192x192 by
``bench/bench_frontier.py``. Data
(:mod:`fastmix.samples`): scikit-image's LFW subset (first 100 faces, last 100 non-faces,
5x5-pixel blocks on 25x25 images) and photo tiles (32x32 RGB tiles of four scikit-image
photos, labelled by photo, 8x8 blocks).

For every setting the restoration attack runs twice: adapted to the hardening (see
:mod:`fastmix.audit.adaptive`) with the true groups given (an upper bound, "A known"), and
adapted with the groups inferred from the pixels, as a real attacker must ("A inferred").
The plain attack that ignores the hardening is shown for comparison. Re-identification is
the largest of the adapted runs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fastmix.audit import audit_arrays, utility_check
from fastmix.audit.adaptive import scorer_for
from fastmix.audit.edges import EdgeScorer
from fastmix.keys import Key
from fastmix.mixing import mix_array
from fastmix.samples import lfw_faces, photo_tiles
from fastmix.spec import MixSpec

# fastmix 0.1.0's balanced and strong (they set no geometry then; docs/hardening.md's tables).
BALANCED_0_1 = {"prob": 1.0, "orient": "d4", "jitter": True, "seam_blur": 1.0, "donors": 10}
STRONG_0_1 = {**BALANCED_0_1, "donors": 24}

SETTINGS = (
    ("groups of 5, no hardening (prob 1)", None, {"donors": 4, "prob": 1.0}),
    ("fast (paper parameters)", "fast", {}),
    ("balanced", None, BALANCED_0_1),
    ("strong", None, STRONG_0_1),
    ("whole label + d4 + jitter", None, {"prob": 1.0, "group": "window", "orient": "d4",
                                         "jitter": True}),
)

# One hardening option at a time on groups of 11, prob 1: what each costs and buys.
ABLATION = (
    ("groups of 11, no hardening (prob 1)", None, {"donors": 10, "prob": 1.0}),
    ("groups of 11 + seam blur 1", None, {"donors": 10, "prob": 1.0, "seam_blur": 1.0}),
    ("groups of 11 + jitter", None, {"donors": 10, "prob": 1.0, "jitter": True}),
    ("groups of 11 + d4", None, {"donors": 10, "prob": 1.0, "orient": "d4"}),
    ("balanced without orientation", None, {**BALANCED_0_1, "orient": "none"}),
    ("balanced with flip instead of d4", None, {**BALANCED_0_1, "orient": "flip"}),
)


#: Data set name -> (loader of images and labels, block shape).
DATASETS = {"lfw": (lfw_faces, (5, 5)), "tiles": (photo_tiles, (8, 8))}


def spec_of(preset: str | None, overrides: dict, block: tuple[int, int]) -> MixSpec:
    """Return the spec of one row of :data:`SETTINGS` on blocks of ``block``."""
    if preset is not None:
        return MixSpec.preset(preset, block=block, **overrides)
    return MixSpec(block=block, **overrides)


def measure(images: np.ndarray, labels: np.ndarray, spec: MixSpec, *, seed: int = 0,
            utility: bool = True, folds: int = 5) -> dict:
    """Audit ``spec`` on the images: adapted (known and inferred groups) and plain attacks."""
    key = Key.from_hex(f"{seed:064x}")
    mixed = mix_array(images, labels, spec, key)
    height, width = images.shape[1:3]
    scorer = scorer_for(spec, height, width)
    row: dict = {}
    started = time.perf_counter()
    known = audit_arrays(images, mixed, labels, spec, key=key, scorer=scorer, seed=seed,
                         groups_known=True)
    inferred = audit_arrays(images, mixed, labels, spec, key=key, scorer=scorer, seed=seed)
    plain = audit_arrays(images, mixed, labels, spec, key=key, scorer=EdgeScorer(), seed=seed,
                         groups_known=True)
    row.update(advantage_known=known.advantage, advantage_inferred=inferred.advantage,
               advantage_plain=plain.advantage,
               reidentified=max(known.reidentified_fraction, inferred.reidentified_fraction),
               verdict=known.verdict, attack_seconds=time.perf_counter() - started)
    if utility:
        check = utility_check(images, labels, spec, folds=folds, seed=seed)
        changes = [model["change"] for model in check["models"].values()]
        controls = [model["control_change"] for model in check["models"].values()]
        row.update(utility_change=float(np.mean(changes)),
                   control_change=float(np.mean(controls)), utility=check["verdict"])
    return row


def table(dataset_names: tuple[str, ...], *, utility: bool = True, seed: int = 0,
          settings: tuple = SETTINGS) -> str:
    """Return the Markdown table of every setting on every dataset."""
    lines = ["| data | setting | A known groups | A inferred groups | A plain attack | "
             "re-identified | verdict | accuracy change | 1x1 control change |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name in dataset_names:
        load, block = DATASETS[name]
        images, labels = load()
        for title, preset, overrides in settings:
            row = measure(images, labels, spec_of(preset, overrides, block), seed=seed,
                          utility=utility)
            accuracy = (f"{100 * row['utility_change']:+.1f} pt" if utility else "")
            control = (f"{100 * row['control_change']:+.1f} pt" if utility else "")
            lines.append(
                f"| {name} {block[0]}x{block[1]} | {title} | {row['advantage_known']:.2f} | "
                f"{row['advantage_inferred']:.2f} | {row['advantage_plain']:.2f} | "
                f"{row['reidentified']:.2f} | {row['verdict']} | {accuracy} | {control} |")
            print(lines[-1], flush=True)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the table; ``--no-utility`` skips the classifiers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", choices=sorted(DATASETS), default=["lfw", "tiles"])
    parser.add_argument("--no-utility", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ablation", action="store_true",
                        help="one hardening option at a time instead of the presets")
    args = parser.parse_args(argv)
    print(table(tuple(args.data), utility=not args.no_utility, seed=args.seed,
                settings=ABLATION if args.ablation else SETTINGS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
