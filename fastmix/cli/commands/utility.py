"""``fastmix utility``: train a network on mixed vs original images and compare accuracies."""

from __future__ import annotations

import argparse
import json

NAME = "utility"
HELP = ("train a network from scratch on the original, on each mixed set and on the 1x1-pixel "
        "control, and test each on held-out originals (needs fastmix[torch])")
ORDER = 47
#: Shown under "examples" in ``fastmix utility --help``.
EXAMPLES = """\
fastmix utility train.h5 --privacy fast,balanced,strong
fastmix utility train.h5 --block 24x24 --group window --model resnet18 --device cuda --json
fastmix utility train.h5 --recipe matched --views 4
"""


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``fastmix utility``."""
    from fastmix.cli.hardening_options import add_hardening_arguments, add_scheme_arguments

    parser.add_argument("original", metavar="ORIGINAL",
                        help="the store before mixing (datasets 'images' and 'labels')")
    training = parser.add_argument_group("training")
    training.add_argument("--model", default="cnn", metavar="cnn|resnet18",
                          help="cnn: a small CNN (five 3x3 stride-2 convolutions), cheap on a "
                               "CPU; resnet18: ResNet-18; default cnn")
    training.add_argument("--epochs", default="8", metavar="N",
                          help="passes over each training set; default 8")
    training.add_argument("--augment", action="store_true",
                          help="random crops and horizontal flips of every training set")
    training.add_argument("--folds", default="3", metavar="K",
                          help="stratified splits (each trains every set once); default 3")
    training.add_argument("--device", default="cpu", metavar="cpu|cuda",
                          help="where the networks train; default cpu")
    training.add_argument("--workers", default="2", metavar="N",
                          help="DataLoader worker processes; 0 reads in the main process; "
                               "default 2")
    training.add_argument("--batch-size", default="32", metavar="N",
                          help="training batch size; default 32")
    training.add_argument("--seed", default="0", metavar="S",
                          help="seed of the splits, the fold keys, the weights and the batch "
                               "order; default 0")
    training.add_argument("--memory", default="2GiB", metavar="SIZE",
                          help="most memory the images of ORIGINAL may take; default 2GiB")
    training.add_argument("--recipe", default="none", metavar="none|matched|matched+remix",
                          help="none: train on each set as mixed, test on the originals; "
                               "matched: test on the originals each given the spec's "
                               "hardening alone (no block moved), softmax averaged over "
                               "--views draws; matched+remix: also mix the training set "
                               "afresh every epoch, batch by batch; default none")
    training.add_argument("--views", default="4", metavar="K",
                          help="matched views per test image under --recipe matched; "
                               "default 4")
    output = parser.add_argument_group("output")
    output.add_argument("--json", action="store_true",
                        help="print one JSON object (an error too, as {\"error\": ...})")
    output.add_argument("--quiet", action="store_true", help="no progress bar")
    add_scheme_arguments(parser)
    add_hardening_arguments(parser, several=True)


def summary(result: dict) -> str:
    """Return the readable table of a :func:`fastmix.audit.deep.utility` result."""
    recipe = result.get("recipe", "none")
    views = result.get("views", 1)
    recipe_text = f"recipe {recipe}" + (f" ({views} views)" if recipe != "none" else "")
    lines = [f"utility: {result['model']}, {result['epochs']} epochs"
             f"{' with augmentation' if result['augment'] else ''}, {result['folds']} folds, "
             f"{result['images']} images, {recipe_text}; tested on held-out originals "
             f"({result['interval']})",
             f"{'trained on':<14}{'accuracy':>9}  {'interval':<15}{'change':>8}  interval"]
    for name, row in result["sets"].items():
        low, high = row["interval"]
        line = f"{name:<14}{row['accuracy']:>9.3f}  [{low:.3f}, {high:.3f}] "
        if name != "original":
            low, high = row["change_interval"]
            line += f"{100 * row['change']:>+8.1f}  [{100 * low:+.1f}, {100 * high:+.1f}] points"
        lines.append(line.rstrip())
    for name, row in result["sets"].items():
        if "matching_change" in row:
            low, high = row["matching_change_interval"]
            lines.append(f"{name}: unmatched {row['unmatched_accuracy']:.3f}, matching "
                         f"{100 * row['matching_change']:+.1f} [{100 * low:+.1f}, "
                         f"{100 * high:+.1f}] points (paired by image)")
    return "\n".join(lines)


def _recipe(text: str) -> str:
    from fastmix.audit.deep import RECIPES
    from fastmix.errors import BadInputError

    if text not in RECIPES:
        raise BadInputError(f"--recipe must be one of {', '.join(RECIPES)}, got {text!r}")
    return text


def run(args: argparse.Namespace) -> int:
    """Run the check and print the table (or JSON); exit 0."""
    from fastmix.audit.deep import require_torch, utility
    from fastmix.cli.hardening_options import specs_from_arguments
    from fastmix.units import parse_integer

    require_torch()
    specs = specs_from_arguments(args)
    result = utility(args.original, specs=specs, model=args.model,
                     epochs=parse_integer(args.epochs, "--epochs", 1), augment=args.augment,
                     folds=parse_integer(args.folds, "--folds", 2), device=args.device,
                     seed=parse_integer(args.seed, "--seed", 0),
                     batch_size=parse_integer(args.batch_size, "--batch-size", 1),
                     workers=parse_integer(args.workers, "--workers", 0),
                     progress=False if args.quiet else None, memory=args.memory,
                     recipe=_recipe(args.recipe),
                     views=parse_integer(args.views, "--views", 1))
    print(json.dumps(result) if args.json else summary(result))
    return 0
