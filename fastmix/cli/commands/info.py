"""``fastmix info``: what a store holds and, if it is mixed, how it was mixed."""

from __future__ import annotations

import argparse
import json

NAME = "info"
HELP = "describe a store: images, chunks, filters, labels and the fastmix record"
ORDER = 30
#: Shown under "examples" in ``fastmix info --help``.
EXAMPLES = """\
fastmix info train-mixed.h5
fastmix info train-mixed.h5 --json
"""

#: Classes listed by the human output; ``--json`` lists all of them.
SHOWN_CLASSES = 20

_FILTER_NAMES = {1: "gzip", 2: "shuffle", 3: "fletcher32", 4: "szip", 5: "nbit",
                 6: "scaleoffset", 32000: "lzf", 32001: "Blosc", 32004: "LZ4",
                 32008: "Bitshuffle", 32015: "Zstd", 32026: "Blosc2"}
_BLOSC_CODECS = {0: "blosclz", 1: "lz4", 2: "lz4hc", 3: "snappy", 4: "zlib", 5: "zstd"}
_BLOSC_SHUFFLES = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}
_BITSHUFFLE_CODECS = {0: "none", 2: "lz4", 3: "zstd"}


def register(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of ``fastmix info``."""
    from fastmix.cli.dataset_options import add_images_argument

    parser.add_argument("store", metavar="STORE", help="the HDF5 store")
    parser.add_argument("--json", action="store_true",
                        help="print one JSON object (an error too, as {\"error\": ...})")
    add_images_argument(parser)
    parser.add_argument("--labels", metavar="NAME",
                        help="labels dataset; default: the recorded name, else 'labels'")


def describe_filter(code: int, values: tuple[int, ...], name: str) -> dict:
    """One filter of a pipeline as ``{"id", "name", "options"}`` with its known options."""
    options: dict = {}
    if code == 1 and values:
        options["level"] = values[0]
    elif code == 32015 and values:
        options["level"] = values[0]
    elif code in (32001, 32026) and len(values) >= 7:
        options = {"level": values[4], "shuffle": _BLOSC_SHUFFLES.get(values[5], values[5]),
                   "codec": _BLOSC_CODECS.get(values[6], values[6])}
    elif code == 32008 and len(values) >= 5:
        options = {"codec": _BITSHUFFLE_CODECS.get(values[4], values[4])}
        if len(values) >= 6 and values[4] == 3:
            options["level"] = values[5]
    elif code == 6 and len(values) >= 2:
        options = {"scale_type": values[0], "scale_factor": values[1]}
    return {"id": code, "name": _FILTER_NAMES.get(code, name or f"filter {code}"),
            "options": options}


def describe_filters(dataset) -> list[dict]:
    """Return the filter pipeline of an h5py dataset, in order."""
    from fastmix.store.hdf5.lowlevel import dataset_filters

    return [describe_filter(stored.code, stored.values, stored.name)
            for stored in dataset_filters(dataset)]


def _filter_text(item: dict) -> str:
    if not item["options"]:
        return item["name"]
    options = ", ".join(f"{name}={value}" for name, value in item["options"].items())
    return f"{item['name']}({options})"


def _plain(value: object) -> object:
    import numpy as np

    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_plain(item) for item in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def describe_labels(file, name: str, count: int, path: str) -> dict:
    """Classes and counts of the labels dataset, with ``class_names`` when present."""
    import numpy as np

    from fastmix.store.hdf5.access import read_labels
    from fastmix.store.hdf5.lowlevel import class_names_of

    labels = read_labels(file, name, count, path)
    values, counts = np.unique(labels, return_counts=True)
    class_names = class_names_of(file, name)
    classes = []
    for value, number in zip(values.tolist(), counts.tolist()):
        entry: dict = {"label": value, "count": number}
        if class_names is not None and isinstance(value, int) and 0 <= value < len(class_names):
            entry["name"] = class_names[value]
        classes.append(entry)
    return {"name": name, "dtype": str(file[name].dtype), "classes": classes,
            "class_names": class_names}


def describe_record(record) -> dict | None:
    """Return the fastmix record as plain values (never a key: the store holds none)."""
    from fastmix.presets import describe

    if record is None:
        return None
    spec = record.spec
    data = {"format_version": record.format_version, "mode": spec.mode,
            "block": list(spec.block) if spec.block is not None else None,
            "grid": list(spec.grid) if spec.grid is not None else None,
            "donors": spec.donors, "prob": spec.prob, "rounds": spec.rounds,
            "orient": spec.orient, "jitter": list(spec.jitter) if spec.jitter else None,
            "seam_blur": spec.seam_blur, "group": spec.group, "hardened": spec.hardened,
            "description": describe(spec).removeprefix("mixing: "), "window": record.window,
            "reversible": record.reversible, "plan_rule": spec.plan_rule,
            # the arithmetic of the jitter and seam blur: it decides bytes only where they run
            "hardening_format": spec.hardening_format if spec.computes_values else None,
            "unpartnered": record.unpartnered, "labels": record.labels,
            "key_check": record.key_check}
    return data


def describe_store(path: str, images: str = "images", labels: str | None = None) -> dict:
    """Everything ``fastmix info`` shows, as plain JSON-compatible values."""
    import os

    import h5py

    from fastmix.store.hdf5.access import open_store
    from fastmix.store.hdf5.chunks import template_dataset
    from fastmix.store.hdf5.record import RECORD_MAC_ATTRIBUTE, read_mix_record

    with open_store(path, images=images, labels=None, interrupted=True) as store, \
            template_dataset(store.images) as template:  # a sharded store: its first shard
        dataset = store.images
        record = read_mix_record(dataset)
        labels_name = labels or (record.labels if record is not None else None) or "labels"
        labels_info = None
        if labels is not None or isinstance(store.file.get(labels_name), h5py.Dataset):
            labels_info = describe_labels(store.file, labels_name, store.count, path)
        others = []
        store.file.visititems(lambda name, item: others.append(
            {"name": name, "shape": list(item.shape), "dtype": str(item.dtype)})
            if isinstance(item, h5py.Dataset) and name not in (images.strip("/"), labels_name)
            else None)
        return {
            "path": path,
            "file_bytes": os.path.getsize(path),
            "images": {"name": images, "count": store.count, "shape": list(dataset.shape),
                       "dtype": str(dataset.dtype),
                       "chunks": list(template.chunks) if template.chunks else None,
                       "filters": describe_filters(template),
                       "pixel_bytes": store.count * store.image_bytes,
                       "virtual_sources": sorted({source.file_name for source in
                                                  dataset.virtual_sources()})
                       if dataset.is_virtual else None},
            "labels": labels_info,
            "fastmix": describe_record(record),
            "record_mac": record is not None and RECORD_MAC_ATTRIBUTE in dataset.attrs,
            "in_place_state": _plain(dataset.attrs.get("fastmix_state")),
            "other_datasets": others,
        }


def _human(info: dict) -> list[str]:
    import os

    from fastmix.units import format_bytes

    images = info["images"]
    shape = images["shape"]
    filters = ", ".join(_filter_text(item) for item in images["filters"]) or "none"
    chunks = "x".join(map(str, images["chunks"])) if images["chunks"] else "contiguous"
    if images.get("virtual_sources"):
        sources = images["virtual_sources"]
        folders = sorted({os.path.dirname(name) or "." for name in sources})
        chunks = f"{chunks} in {len(sources):,} shard file(s) in {', '.join(folders)}"
    lines = [
        f"store: {info['path']} ({format_bytes(info['file_bytes'])} on disk)",
        f"images {images['name']!r}: {shape[0]:,} x {'x'.join(map(str, shape[1:]))} "
        f"{images['dtype']} ({format_bytes(images['pixel_bytes'])}), chunks {chunks}, "
        f"filters: {filters}",
    ]
    labels = info["labels"]
    if labels is None:
        lines.append("labels: none found (name them with --labels NAME)")
    else:
        classes = labels["classes"]
        shown = ", ".join(
            f"{item['label']}" + (f" ({item['name']})" if "name" in item else "")
            + f": {item['count']:,}" for item in classes[:SHOWN_CLASSES])
        more = f", ... ({len(classes) - SHOWN_CLASSES} more)" if len(classes) > SHOWN_CLASSES \
            else ""
        lines.append(f"labels {labels['name']!r} ({labels['dtype']}): {len(classes):,} "
                     f"classes: {shown}{more}")
    record = info["fastmix"]
    if record is None:
        lines.append("fastmix: not mixed")
    else:
        lines.append(
            f"fastmix: mixed: {record['description']}; window {record['window']:,}, "
            f"unpartnered {record['unpartnered']:,}, key check {record['key_check']}, format "
            f"version {record['format_version']}, plan rule {record['plan_rule']}"
            + (f", hardening format {record['hardening_format']}"
               if record["hardening_format"] is not None else "") + "; "
            + ("record sealed by a MAC (unmix and verify check it with the key)"
               if info.get("record_mac") else
               "no record MAC (an older fastmix): edits to the record cannot be detected"))
    if info["in_place_state"] == "in-progress":
        lines.append("fastmix: an in-place run was interrupted on this store, which is half "
                     "rewritten (other commands refuse it); finish it with --in-place --resume")
    for item in info["other_datasets"]:
        lines.append(f"dataset {item['name']!r}: shape {tuple(item['shape'])}, {item['dtype']}")
    return lines


def run(args: argparse.Namespace) -> int:
    """Print the description of STORE."""
    from fastmix.cli.storecheck import register_filters

    register_filters()
    info = describe_store(args.store, args.images, args.labels)
    if args.json:
        print(json.dumps(info, default=_plain))
    else:
        print("\n".join(_human(info)))
    return 0
