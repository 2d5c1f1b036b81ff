"""The classes of the hostile corpus added for issue 21, and the corpus they are added to.

:class:`Corpus` lays out each case in its own folder (files, a setup function) and records
what the case must do: its exit statuses, the outputs it may write, follow-up commands that
must succeed after it (``then``) and content checks that :mod:`hostile_runner` runs on the
outputs. Each ``add_*`` function adds one class. The expectations come from the issue and
docs/format.md sections 3 and 5, not from what the code does today:

- links: no original image is reachable in a mixed output, by any path (checked by content);
- lossy: a lossy filter under a reversible spec is refused or round-trips exactly; in place
  it is always refused;
- mac: an edited record (or relabelled images) makes ``unmix`` refuse, changing nothing;
- names: names HDF5 might interpret work exactly or are refused;
- disk: a full disk gives exit 1 or 2 with one line, the input unchanged and nothing at the
  destination; an in-place run on a full disk stays readable and recoverable;
- labels: labels that do not convert exactly are refused, never merged;
- channels: a channels-first store gets a warning line;
- big-endian, empty, class-names: those stores work or are refused, with no exit 1.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np

import fastmix

KEY = "k.key"
OTHER_KEY = "other.key"
KEY_HEX = "5a" * 32
OTHER_HEX = "a5" * 32
#: A reversible spec with the record's usual fields (blocks of 8x8, half of them moved).
REVERSIBLE = ("--privacy", "fast", "--block", "8x8", "--donors", "3")
#: A reversible spec that moves every block of every image: no original image survives it.
EVERY_BLOCK = ("--privacy", "fast", "--block", "4x4", "--donors", "3", "--prob", "1")
#: Statuses a case may end with when it may also fail for its environment (a full disk).
ENVIRONMENT = (0, 1, 2)


def images_and_labels(count: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Return the corpus's images (random, half smooth) and labels (four classes)."""
    rng = np.random.default_rng(9)
    images = rng.integers(0, 256, (count, 16, 16, 3), dtype=np.uint8)
    images[:, :8] //= 16  # half smooth, so that the filters compress something
    return images, np.arange(count) % 4


def check(kind: str, when: str = "ok", **args) -> dict:
    """Return a content check for :mod:`hostile_runner`.

    ``when`` is "ok" (after exit 0), "then" (after exit 0 and every follow-up command),
    "fail" (after a failure) or "always".
    """
    return {"kind": kind, "when": when, "args": args}


class Corpus:
    """The cases of one corpus run, each in its own folder under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.inputs = root / "inputs"
        self.inputs.mkdir(exist_ok=True)
        self.references = root / "references"
        self.references.mkdir(exist_ok=True)
        self.cases: list[dict] = []
        self.group = "unnamed"
        #: Classes left out on this machine, with the reason.
        self.skipped: dict[str, str] = {}
        self.mounts: list[Path] = []
        fastmix.Key.from_hex(KEY_HEX).save(self.inputs / KEY)
        fastmix.Key.from_hex(OTHER_HEX).save(self.inputs / OTHER_KEY)
        self.key_files = {KEY: self.inputs / KEY}

    def reference(self, name: str, array: np.ndarray) -> str:
        """Save ``array`` for the checks; return its absolute path."""
        path = self.references / f"{name}.npy"
        np.save(path, array, allow_pickle=array.dtype.kind == "O")
        return str(path)

    def case(self, name: str, argv: list[str] | None, files: dict[str, bytes | Path | None],
             output: str | None = None, expect: tuple[int, ...] = (0, 2),
             setup: Callable[[Path], None] | None = None, *, outputs: tuple[str, ...] = (),
             then: tuple = (), checks: tuple[dict, ...] = (), one_line: tuple[int, ...] = (2,),
             api: dict | None = None, seconds: int | None = None) -> None:
        """Add a case: ``argv`` (or ``api``) run in a folder holding ``files``."""
        number = len(self.cases) + 1
        folder = self.root / f"case{number:04d}"
        folder.mkdir()
        for target, content in files.items():
            (folder / target).parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copyfile(content, folder / target)
            elif content is not None:
                (folder / target).write_bytes(content)
        for key in (KEY, OTHER_KEY):
            if (folder / key).exists():
                os.chmod(folder / key, 0o600)
        if setup is not None:
            setup(folder)
        self.cases.append({
            "id": number, "group": self.group, "name": name, "folder": str(folder),
            "argv": argv, "api": api, "outputs": [output, *outputs] if output else list(outputs),
            "expect": list(expect), "then": [list(step) for step in then],
            "checks": list(checks), "one_line": list(one_line), "seconds": seconds})

    def mount(self, folder: Path, size: str) -> None:
        """Mount a tmpfs of ``size`` on ``folder`` (unmounted by :meth:`close`)."""
        folder.mkdir(exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                       check=True, capture_output=True, text=True)
        self.mounts.append(folder)

    def close(self) -> None:
        """Unmount every tmpfs this corpus mounted."""
        for folder in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        self.mounts.clear()


def write(path: Path, images: np.ndarray, labels, *, chunks=True, extra=None,
          labels_dtype=None, **filters) -> Path:
    """Write a store of ``images`` and ``labels`` (``extra(file)`` adds more); return it."""
    with h5py.File(path, "w") as file:
        file.create_dataset("images", data=images,
                            chunks=(8, *images.shape[1:]) if chunks and len(images) else None,
                            **filters)
        file.create_dataset("labels", data=labels, dtype=labels_dtype)
        if extra is not None:
            extra(file)
    return path


def unmix_step(store: str, output: str, *more: str, key: str = KEY) -> list[str]:
    """Return the command line that unmixes ``store`` into ``output``."""
    return ["unmix", store, output, "--key-file", key, *more]


# ----------------------------------------------------------------------------------- links


def add_links(corpus: Corpus) -> None:
    """Add other names for the images: hard, soft, external links, references, scales."""
    corpus.group = "links"
    images, labels = images_and_labels()
    originals = corpus.reference("links-originals", images)
    unrelated = np.random.default_rng(11).integers(0, 256, images.shape, dtype=np.uint8)
    unrelated_reference = corpus.reference("links-unrelated", unrelated)

    def store(extra: Callable, first=images) -> Callable[[Path], None]:
        def setup(folder: Path) -> None:
            with h5py.File(folder / "pixels.h5", "w") as other:
                other["images"] = images
            with h5py.File(folder / "notes.h5", "w") as other:
                other["notes"] = np.zeros(8)
            with h5py.File(folder / "store.h5", "w") as file:
                file.create_dataset("images", data=first, chunks=(8, 16, 16, 3),
                                    compression="gzip")
                file["labels"] = labels
                extra(file, folder)
        return setup

    def references(file, _folder):
        refs = file.create_dataset("refs", (2,), dtype=h5py.ref_dtype)
        refs[0], refs[1] = file["images"].ref, file["labels"].ref

    def regions(file, _folder):
        regions = file.create_dataset("regions", (2,), dtype=h5py.regionref_dtype)
        regions[0] = file["images"].regionref[0:4]
        regions[1] = file["images"].regionref[10, 2:5]

    def compound(file, _folder):
        kind = np.dtype([("ref", h5py.ref_dtype), ("n", "i8")])
        table = file.create_dataset("table", (1,), dtype=kind)
        table[0] = (file["images"].ref, 7)

    def group_reference(file, _folder):
        file["g/deep"] = file["images"]
        file.attrs["group"] = file["g"].ref

    def scale(file, _folder):
        file["ids"] = np.arange(len(images))
        file["ids"].make_scale("index")
        file["images"].dims[0].attach_scale(file["ids"])

    def scales(file, _folder):
        for axis, size in enumerate(images.shape):
            file[f"axis{axis}"] = np.arange(size)
            file[f"axis{axis}"].make_scale(f"axis {axis}")
            file["images"].dims[axis].attach_scale(file[f"axis{axis}"])

    def images_as_scale(file, _folder):
        file["other"] = np.zeros(len(images))
        file["images"].make_scale("pixels")
        file["other"].dims[0].attach_scale(file["images"])

    def everything(file, folder):
        file["copy"] = file["images"]
        file["soft"] = h5py.SoftLink("/images")
        file["alias"] = h5py.ExternalLink("store.h5", "/images")
        file["labels"].attrs["images_ref"] = file["images"].ref
        references(file, folder)
        scale(file, folder)

    def assign(name, value):
        return lambda file, _folder: file.__setitem__(name, value)

    def chain(file, _folder):
        file["soft"] = h5py.SoftLink("/images")
        file["g/soft2"] = h5py.SoftLink("/soft")

    def ext(file, _folder):
        file["ext"] = h5py.ExternalLink("pixels.h5", "/images")

    variants = {
        "hard link at the root": (lambda f, _: f.__setitem__("copy", f["images"]), ["copy"]),
        "hard link in a nested group": (lambda f, _: f.__setitem__("g/h/deep", f["images"]),
                                        ["g/h/deep"]),
        "soft link": (assign("soft", h5py.SoftLink("/images")), ["soft"]),
        "soft link to a soft link": (chain, ["soft", "g/soft2"]),
        "external link to the store itself": (
            assign("alias", h5py.ExternalLink("store.h5", "/images")), ["alias"]),
        "external link to the store by absolute path": (
            lambda f, folder: f.__setitem__("alias", h5py.ExternalLink(
                str(folder / "store.h5"), "/images")), ["alias"]),
        "external link to a second file of the originals": (ext, ["ext"]),
        "external link to an unrelated file": (
            assign("note", h5py.ExternalLink("notes.h5", "/notes")), []),
        "object references in a dataset": (references, ["refs"]),
        "region references in a dataset": (regions, ["regions"]),
        "reference field of a compound dataset": (compound, ["table"]),
        "reference attribute on the labels": (
            lambda f, _: f["labels"].attrs.__setitem__("images_ref", f["images"].ref),
            ["labels@images_ref"]),
        "reference attribute on the images": (
            lambda f, _: f["images"].attrs.__setitem__("self", f["images"].ref),
            ["images@self"]),
        "file attribute referencing a group with a hard link": (group_reference, ["/@group"]),
        "dimension scale on the image axis": (scale, ["images@DIMENSION_LIST",
                                                      "ids@REFERENCE_LIST"]),
        "dimension scales on every axis": (scales, ["images@DIMENSION_LIST"]),
        "images as a dimension scale of another dataset": (images_as_scale,
                                                           ["other@DIMENSION_LIST"]),
        "every kind at once": (everything, ["copy", "soft", "alias", "refs"]),
    }
    mix = ["mix", "store.h5", "out.h5", "--key-file", KEY, *EVERY_BLOCK]
    in_place = ["mix", "store.h5", "--in-place", "--key-file", KEY, *EVERY_BLOCK]
    for name, (extra, items) in variants.items():
        corpus.case(f"{name}: mix", mix, corpus.key_files, "out.h5", (0, 2), store(extra),
                    outputs=("r.h5",), then=(unmix_step("out.h5", "r.h5"),),
                    checks=(check("no_original", path="out.h5", reference=originals),
                            check("kept_or_warned", path="out.h5", items=items),
                            check("equal", "then", path="r.h5", dataset="images",
                                  reference=originals)))
        corpus.case(f"{name}: mix in place", in_place, corpus.key_files, "store.h5", (0, 2),
                    store(extra),
                    checks=(check("no_original", path="store.h5", reference=originals),))
    # The images named through another name with --images.
    for name, extra, images_name in (
            ("hard link named by --images",
             lambda f, _: f.__setitem__("copy", f["images"]), "copy"),
            ("soft link named by --images", assign("soft", h5py.SoftLink("/images")), "soft")):
        argv = [*mix, "--images", images_name]
        corpus.case(f"{name}: mix", argv, corpus.key_files, "out.h5", (0, 2), store(extra),
                    outputs=("r.h5",),
                    then=(unmix_step("out.h5", "r.h5", "--images", images_name),),
                    checks=(check("no_original", path="out.h5", reference=originals),
                            check("equal", "then", path="r.h5", dataset=images_name,
                                  reference=originals)))
        corpus.case(f"{name}: mix in place", [*in_place, "--images", images_name],
                    corpus.key_files, "store.h5", (0, 2), store(extra),
                    checks=(check("no_original", path="store.h5", reference=originals),))
    # --images names an external link; "images" is an unrelated dataset that must stay.
    corpus.case("external link named by --images: mix", [*mix, "--images", "ext"],
                corpus.key_files, "out.h5", (0, 2), store(ext, first=unrelated),
                outputs=("r.h5",), then=(unmix_step("out.h5", "r.h5", "--images", "ext"),),
                checks=(check("no_original", path="out.h5", reference=originals),
                        check("equal", path="out.h5", dataset="images",
                              reference=unrelated_reference),
                        check("equal", "then", path="r.h5", dataset="ext", reference=originals)))
    corpus.case("external link named by --images: mix in place",
                [*in_place, "--images", "ext"], corpus.key_files, "store.h5", (0, 2),
                store(ext, first=unrelated),
                checks=(check("no_original", path="store.h5", reference=originals),))


# ----------------------------------------------------------------------------------- lossy


def add_lossy(corpus: Corpus) -> None:
    """Add lossy filters under a reversible spec: refused, or an exact round trip."""
    corpus.group = "lossy"
    images, labels = images_and_labels()
    rng = np.random.default_rng(5)
    floats = (rng.random(images.shape) * 255).astype(np.float32)
    data = {"uint8": images, "uint16": images.astype(np.uint16) * 257,
            "int32": images.astype(np.int32) * 1000 - 7, "float32": floats,
            "float64": floats.astype(np.float64) / 3}
    # name: (dtype, filters, lossless by construction)
    variants = {
        "scaleoffset 0 on uint8": ("uint8", {"scaleoffset": 0}, True),
        "scaleoffset 0 on int32": ("int32", {"scaleoffset": 0}, True),
        "scaleoffset 2 bits on uint8": ("uint8", {"scaleoffset": 2}, False),
        "scaleoffset 4 bits on uint8": ("uint8", {"scaleoffset": 4}, False),
        "scaleoffset 6 bits on uint8": ("uint8", {"scaleoffset": 6}, False),
        "scaleoffset 4 bits and gzip on uint8": (
            "uint8", {"scaleoffset": 4, "compression": "gzip"}, False),
        "scaleoffset 8 bits on uint16": ("uint16", {"scaleoffset": 8}, False),
        "scaleoffset 1 digit on float32": ("float32", {"scaleoffset": 1}, False),
        "scaleoffset 3 digits on float32": ("float32", {"scaleoffset": 3}, False),
        "scaleoffset 2 digits on float64": ("float64", {"scaleoffset": 2}, False),
        "ZFP rate 4": ("float32", dict(hdf5plugin.Zfp(rate=4)), False),
        "ZFP rate 8": ("float32", dict(hdf5plugin.Zfp(rate=8)), False),
        "ZFP rate 16": ("float32", dict(hdf5plugin.Zfp(rate=16)), False),
        "ZFP precision 10": ("float32", dict(hdf5plugin.Zfp(precision=10)), False),
        "ZFP precision 20": ("float32", dict(hdf5plugin.Zfp(precision=20)), False),
        "ZFP accuracy 0.5": ("float32", dict(hdf5plugin.Zfp(accuracy=0.5)), False),
        "ZFP accuracy 0.01": ("float32", dict(hdf5plugin.Zfp(accuracy=0.01)), False),
        "ZFP rate 8 on int32": ("int32", dict(hdf5plugin.Zfp(rate=8)), False),
        "ZFP rate 16 on float64": ("float64", dict(hdf5plugin.Zfp(rate=16)), False),
        "ZFP reversible on float32": ("float32", dict(hdf5plugin.Zfp(reversible=True)), True),
        "ZFP reversible on int32": ("int32", dict(hdf5plugin.Zfp(reversible=True)), True),
        "SZ absolute 0.5": ("float32", dict(hdf5plugin.SZ(absolute=0.5)), False),
        "SZ relative 1e-3": ("float32", dict(hdf5plugin.SZ(relative=1e-3)), False),
        "SZ3 absolute 0.5": ("float32", dict(hdf5plugin.SZ3(absolute=0.5)), False),
        "SZ3 absolute 4 on uint8": ("uint8", dict(hdf5plugin.SZ3(absolute=4)), False),
        "SZ3 relative 1e-2": ("float32", dict(hdf5plugin.SZ3(relative=1e-2)), False),
    }
    mix = ["mix", "store.h5", "out.h5", "--key-file", KEY, *REVERSIBLE]
    in_place = ["mix", "store.h5", "--in-place", "--key-file", KEY, *REVERSIBLE]
    unavailable = []
    for number, (name, (dtype, filters, lossless)) in enumerate(variants.items()):
        path = corpus.inputs / f"lossy{number}.h5"
        try:
            write(path, data[dtype], labels, **filters)
            with h5py.File(path, "r") as file:
                as_read = file["images"][()]
        except Exception as error:  # a filter this build of hdf5plugin lacks
            unavailable.append(f"{name} ({type(error).__name__})")
            continue
        reference = corpus.reference(f"lossy{number}", as_read)
        files = {"store.h5": path, **corpus.key_files}
        corpus.case(f"{name}: mix, reversible", mix, files, "out.h5", (0, 2),
                    outputs=("r.h5",),
                    then=(unmix_step("out.h5", "r.h5"),
                          ["verify", "store.h5", "out.h5", "--key-file", KEY]),
                    checks=(check("equal", "then", path="r.h5", dataset="images",
                                  reference=reference),))
        corpus.case(f"{name}: mix in place, reversible", in_place, files,
                    "store.h5" if lossless else None, (0, 2) if lossless else (2,),
                    then=(["unmix", "store.h5", "--in-place", "--key-file", KEY],)
                    if lossless else (),
                    checks=(check("equal", "then", path="store.h5", dataset="images",
                                  reference=reference),) if lossless else ())
        corpus.case(f"{name}: mix in place, one-way", [*in_place, "--mode", "paper"], files,
                    "store.h5" if lossless else None, (0, 2) if lossless else (2,))
    if unavailable:
        corpus.skipped["lossy (some filters)"] = "not in this hdf5plugin: " + ", ".join(
            unavailable)


# ------------------------------------------------------------------------------------- mac


#: Record attributes of the fastmix this corpus was written against (commit 7db5b37).
KNOWN_ATTRIBUTES = {"fastmix_block", "fastmix_grid", "fastmix_donors", "fastmix_format_version",
                    "fastmix_key_check", "fastmix_labels", "fastmix_mode", "fastmix_plan_rule",
                    "fastmix_prob", "fastmix_reversible", "fastmix_rounds", "fastmix_spec",
                    "fastmix_unpartnered", "fastmix_window"}
#: Attributes that only repeat a field of ``fastmix_spec`` or report a count: deleting one
#: may be accepted when the bytes come out exact.
DISPLAY_ATTRIBUTES = {"fastmix_block", "fastmix_grid", "fastmix_donors", "fastmix_mode",
                      "fastmix_prob", "fastmix_rounds", "fastmix_unpartnered"}
#: Attributes whose absence means their value here (the default): deleting one may pass.
DEFAULTED_ATTRIBUTES = {"fastmix_labels", "fastmix_reversible"}


def add_record_edits(corpus: Corpus) -> None:
    """Add edits of a mixed store's record, and relabelled images: ``unmix`` refuses them."""
    corpus.group = "mac"
    images, labels = images_and_labels()
    reference = corpus.reference("mac-originals", images)
    other_labels = (np.arange(len(labels)) // 16) % 4

    def extra(file):
        file["labels_b"] = other_labels
        file["meta/ids"] = np.arange(len(labels))

    source = write(corpus.inputs / "mac-source.h5", images, labels, extra=extra,
                   compression="gzip")
    key = fastmix.Key.from_hex(KEY_HEX)
    mixed = corpus.inputs / "mac-mixed.h5"
    fastmix.mix_store(source, mixed, spec=fastmix.MixSpec(block=(8, 8), donors=3), key=key,
                      window=32, progress=False)
    other = corpus.inputs / "mac-other.h5"
    fastmix.mix_store(source, other, spec=fastmix.MixSpec(block=(4, 4), donors=2, prob=1.0),
                      key=key, window=16, progress=False)
    one_way = corpus.inputs / "mac-paper.h5"
    fastmix.mix_store(source, one_way, spec=fastmix.MixSpec(block=(8, 8), donors=3,
                                                            mode="paper"),
                      key=key, window=32, progress=False)
    with h5py.File(mixed, "r") as file:
        attributes = {name: value for name, value in file["images"].attrs.items()
                      if name.startswith("fastmix_")}
    with h5py.File(other, "r") as file:
        other_attributes = {name: value for name, value in file["images"].attrs.items()
                            if name.startswith("fastmix_")}

    def attribute(name, value):
        def change(file):
            file["images"].attrs[name] = value
        return change

    def delete(name):
        def change(file):
            del file["images"].attrs[name]
        return change

    def spec(**values):
        def change(file):
            data = json.loads(file["images"].attrs["fastmix_spec"])
            data.update(values)
            for name, value in values.items():
                if value is None:
                    del data[name]
            file["images"].attrs["fastmix_spec"] = json.dumps(data, sort_keys=True,
                                                              separators=(",", ":"))
        return change

    def together(*changes):
        def change(file):
            for each in changes:
                each(file)
        return change

    def relabel(change_labels):
        def change(file):
            values = file["labels"][()]
            change_labels(values)
            file["labels"][...] = values
        return change

    def swap(values):
        values[0], values[1] = values[1], values[0]

    def move_one(values):
        values[5] = (values[5] + 1) % 4

    def reformat(file):
        data = json.loads(file["images"].attrs["fastmix_spec"])
        file["images"].attrs["fastmix_spec"] = json.dumps(data, indent=2)

    def int32_labels(file):
        values = file["labels"][()]
        del file["labels"]
        file["labels"] = values.astype(np.int32)

    check_of_other = fastmix.Key.from_hex(OTHER_HEX).check_value
    # name: (store, change, key file, exact bytes may pass)
    edits = {
        "window 32 -> 16": (mixed, attribute("fastmix_window", np.int64(16)), KEY, False),
        "window 32 -> 64": (mixed, attribute("fastmix_window", np.int64(64)), KEY, False),
        "window 32 -> 8": (mixed, attribute("fastmix_window", np.int64(8)), KEY, False),
        "plan rule 2 -> 1": (mixed, attribute("fastmix_plan_rule", np.int64(1)), KEY, False),
        "format version -> 1": (mixed, attribute("fastmix_format_version", np.int64(1)),
                                KEY, False),
        "donors attribute 3 -> 2": (mixed, attribute("fastmix_donors", np.int64(2)), KEY,
                                    False),
        "donors attribute 3 -> 5": (mixed, attribute("fastmix_donors", np.int64(5)), KEY,
                                    False),
        "prob attribute 0.5 -> 0.25": (mixed, attribute("fastmix_prob", np.float64(0.25)),
                                       KEY, False),
        "prob attribute 0.5 -> 1": (mixed, attribute("fastmix_prob", np.float64(1.0)), KEY,
                                    False),
        "block attribute 8x8 -> 4x4": (mixed, attribute("fastmix_block", np.array([4, 4])),
                                       KEY, False),
        "block attribute 8x8 -> 16x8": (mixed, attribute("fastmix_block", np.array([16, 8])),
                                        KEY, False),
        "grid attribute 2x2 instead of block": (
            mixed, together(delete("fastmix_block"),
                            attribute("fastmix_grid", np.array([2, 2]))), KEY, False),
        "mode attribute -> paper": (mixed, attribute("fastmix_mode", "paper"), KEY, False),
        "rounds attribute 1 -> 2": (mixed, attribute("fastmix_rounds", np.int64(2)), KEY,
                                    False),
        "labels name -> labels_b": (mixed, attribute("fastmix_labels", "labels_b"), KEY,
                                    False),
        "labels name -> meta/ids": (mixed, attribute("fastmix_labels", "meta/ids"), KEY,
                                    False),
        "key check of another key": (mixed, attribute("fastmix_key_check", check_of_other),
                                     KEY, False),
        "key check of another key, unmixed with that key": (
            mixed, attribute("fastmix_key_check", check_of_other), OTHER_KEY, False),
        "reversible flag -> false": (mixed, attribute("fastmix_reversible", np.False_), KEY,
                                     False),
        "spec donors 3 -> 2": (mixed, spec(donors=2), KEY, False),
        "spec donors 3 -> 5": (mixed, spec(donors=5), KEY, False),
        "spec prob 0.5 -> 0.25": (mixed, spec(prob=0.25), KEY, False),
        "spec prob 0.5 -> 1": (mixed, spec(prob=1.0), KEY, False),
        "spec block 8x8 -> 4x4": (mixed, spec(block=[4, 4]), KEY, False),
        "spec block 8x8 -> grid 2x2": (mixed, spec(block=None, grid=[2, 2]), KEY, False),
        "spec rounds 1 -> 2": (mixed, spec(rounds=2), KEY, False),
        "spec orient none -> flip": (mixed, spec(orient="flip"), KEY, False),
        "spec group -> 8": (mixed, spec(group=8), KEY, False),
        "spec mode -> paper": (mixed, spec(mode="paper"), KEY, False),
        "spec and attribute donors 3 -> 2 together": (
            mixed, together(spec(donors=2), attribute("fastmix_donors", np.int64(2))), KEY,
            False),
        "spec and attributes block 8x8 -> 4x4 together": (
            mixed, together(spec(block=[4, 4]), attribute("fastmix_block", np.array([4, 4]))),
            KEY, False),
        "one image relabelled": (mixed, relabel(move_one), KEY, False),
        "labels of two classes swapped": (mixed, relabel(swap), KEY, False),
        "one-way store marked reversible": (
            one_way, attribute("fastmix_reversible", np.True_), KEY, False),
        "one-way store forged as permute": (
            one_way, together(spec(mode="permute"), attribute("fastmix_mode", "permute"),
                              attribute("fastmix_reversible", np.True_)), KEY, False),
        "spec text reformatted, same values": (mixed, reformat, KEY, True),
        "labels stored as int32, same values": (mixed, int32_labels, KEY, True),
        "class names renamed": (
            mixed, lambda file: file["labels"].attrs.__setitem__("class_names",
                                                                 ["w", "x", "y", "z"]),
            KEY, True),
    }
    for name in sorted(attributes):
        edits[f"{name} deleted"] = (mixed, delete(name), KEY,
                                    name in DISPLAY_ATTRIBUTES | DEFAULTED_ATTRIBUTES)
        if (name not in KNOWN_ATTRIBUTES and name in other_attributes
                and not np.array_equal(np.asarray(attributes[name]),
                                       np.asarray(other_attributes[name]))):
            # Fields this corpus does not know (the MAC, a labels digest): another store's.
            edits[f"{name} from another store of the same key"] = (
                mixed, attribute(name, other_attributes[name]), KEY, False)
    for name, (base, change, key_file, exact_passes) in edits.items():
        target = corpus.root / "edited.h5"
        shutil.copyfile(base, target)
        with h5py.File(target, "r+") as file:
            change(file)
        files = {"store.h5": target.read_bytes(), "original.h5": source,
                 **corpus.key_files, OTHER_KEY: corpus.inputs / OTHER_KEY}
        expect = (0, 2) if exact_passes else (2,)
        corpus.case(f"{name}: unmix", unmix_step("store.h5", "out.h5", key=key_file), files,
                    "out.h5", expect,
                    checks=(check("equal", path="out.h5", dataset="images",
                                  reference=reference),))
        corpus.case(f"{name}: unmix in place",
                    ["unmix", "store.h5", "--in-place", "--key-file", key_file], files,
                    "store.h5" if exact_passes else None, expect,
                    checks=(check("equal", path="store.h5", dataset="images",
                                  reference=reference),))
        corpus.case(f"{name}: verify", ["verify", "original.h5", "store.h5", "--key-file",
                                        key_file], files, None,
                    (0, 1, 2) if exact_passes else (1, 2), one_line=())


# ----------------------------------------------------------------------------------- names


#: File names with characters HDF5 (printf-style family and VDS names), the shell or
#: argparse might interpret.
NAMES = ["m%.h5", "m%b.h5", "m%%.h5", "m%d.h5", "m%s%s.h5", "m%05d.h5", "back\\slash.h5",
         "with space.h5", " leading space.h5", "ünïcødé.h5", "日本語.h5", "emoji😀.h5",
         "-dash.h5", "--dashes.h5", "%b%d%% mixed\\ é.h5"]


def add_names(corpus: Corpus) -> None:
    """Add destination names with ``%``, a backslash, spaces, unicode, a leading ``-``."""
    corpus.group = "names"
    images, labels = images_and_labels()
    originals = corpus.reference("names-originals", images)
    labels_reference = corpus.reference("names-labels", labels)
    source = write(corpus.inputs / "names-source.h5", images, labels, compression="gzip")
    mixed = corpus.inputs / "names-mixed.h5"
    fastmix.mix_store(source, mixed, spec=fastmix.MixSpec(block=(8, 8), donors=3),
                      key=fastmix.Key.from_hex(KEY_HEX), progress=False)
    files = {"store.h5": source, "mixed.h5": mixed, **corpus.key_files}
    pictures = picture_folder(corpus, 8)
    for name in NAMES:
        corpus.case(f"mix to {name!r}", ["mix", "store.h5", name, "--key-file", KEY,
                                         *REVERSIBLE], files, name, (0, 2), outputs=("r.h5",),
                    then=(unmix_step(name, "r.h5"),),
                    checks=(check("equal", "then", path="r.h5", dataset="images",
                                  reference=originals),))
        corpus.case(f"unmix to {name!r}", unmix_step("mixed.h5", name), files, name, (0, 2),
                    checks=(check("equal", path=name, dataset="images",
                                  reference=originals),))
        corpus.case(f"mix {name!r} in place", ["mix", name, "--in-place", "--key-file", KEY,
                                               *REVERSIBLE],
                    {name: source, **corpus.key_files}, name, (0, 2),
                    then=(["unmix", name, "--in-place", "--key-file", KEY],),
                    checks=(check("equal", "then", path=name, dataset="images",
                                  reference=originals),))
        folder = name.removesuffix(".h5")
        corpus.case(f"export to {folder!r}", ["export", "mixed.h5", folder], files, folder,
                    (0, 2), checks=(check("export", directory=folder, count=len(images),
                                          labels=labels_reference),))
        corpus.case(f"ingest to {name!r}", ["ingest", "pictures", name, "--size", "8x8"],
                    {}, name, (0, 2), setup=pictures,
                    checks=(check("count", path=name, dataset="images", count=8),))


def picture_folder(corpus: Corpus, count: int) -> Callable[[Path], None]:
    """Return a setup writing ``count`` small PNG files in two class folders, ``pictures``."""
    from PIL import Image

    rng = np.random.default_rng(3)
    template = corpus.inputs / "pictures"
    if not template.exists():
        for index in range(count):
            folder = template / ("cats" if index % 2 else "dogs")
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(
                folder / f"{index}.png")
    return lambda folder: shutil.copytree(template, folder / "pictures")


# ------------------------------------------------------------------------------------ disk


#: Sizes of the tmpfs that receives each output, from too small for anything to enough.
DISK_SIZES = ["4k", "8k", "16k", "24k", "32k", "48k", "56k", "60k", "64k", "96k", "128k",
              "256k", "1m"]
#: Free space beside the store for the in-place runs on a tmpfs, in KiB: fine steps where
#: the journal (about 112 KiB for this store in 7db5b37) and the store's marking need it.
IN_PLACE_SPARE = [0, 16, 32, 64, *range(96, 160, 4), *range(160, 232, 8), 256, 512]


def add_full_disk(corpus: Corpus) -> None:
    """Add outputs on a tmpfs at a series of sizes: clean failures, inputs unchanged."""
    corpus.group = "disk"
    probe = corpus.root / "probe"
    try:
        corpus.mount(probe, "4k")
    except (OSError, subprocess.CalledProcessError) as error:
        reason = getattr(error, "stderr", "") or str(error)
        corpus.skipped["disk"] = f"cannot mount a tmpfs here ({reason.strip()})"
        return
    images, labels = images_and_labels()
    originals = corpus.reference("disk-originals", images)
    labels_reference = corpus.reference("disk-labels", labels)
    source = write(corpus.inputs / "disk-source.h5", images, labels, compression="gzip")
    mixed = corpus.inputs / "disk-mixed.h5"
    fastmix.mix_store(source, mixed, spec=fastmix.MixSpec(block=(8, 8), donors=3),
                      key=fastmix.Key.from_hex(KEY_HEX), progress=False)
    files = {"store.h5": source, "mixed.h5": mixed, **corpus.key_files}
    pictures = picture_folder(corpus, 8)

    def tmpfs(size: str, *more: Callable[[Path], None]) -> Callable[[Path], None]:
        def setup(folder: Path) -> None:
            for each in more:
                each(folder)
            corpus.mount(folder / "out", size)
        return setup

    common = {"one_line": (1, 2)}
    for size in DISK_SIZES:
        corpus.case(f"mix onto {size}", ["mix", "store.h5", "out/m.h5", "--key-file", KEY,
                                         *REVERSIBLE], files, "out/m.h5", ENVIRONMENT,
                    tmpfs(size), outputs=("r.h5",), then=(unmix_step("out/m.h5", "r.h5"),),
                    checks=(check("equal", "then", path="r.h5", dataset="images",
                                  reference=originals),), **common)
        corpus.case(f"unmix onto {size}", unmix_step("mixed.h5", "out/r.h5"), files,
                    "out/r.h5", ENVIRONMENT, tmpfs(size),
                    checks=(check("equal", path="out/r.h5", dataset="images",
                                  reference=originals),), **common)
        corpus.case(f"export onto {size}", ["export", "mixed.h5", "out/x"], files, "out/x",
                    ENVIRONMENT, tmpfs(size),
                    checks=(check("export", directory="out/x", count=len(images),
                                  labels=labels_reference),), **common)
        corpus.case(f"ingest onto {size}", ["ingest", "pictures", "out/i.h5", "--size", "8x8"],
                    {}, "out/i.h5", ENVIRONMENT, tmpfs(size, pictures),
                    checks=(check("count", path="out/i.h5", dataset="images", count=8),),
                    **common)
    # In place on a tmpfs that holds the store and little more: whatever the outcome, the
    # store still opens, and either the run finished or it can be finished or undone.
    store_size = -(-source.stat().st_size // 4096) * 4
    for spare in IN_PLACE_SPARE:
        def setup(folder: Path, size=f"{store_size + spare}k") -> None:
            corpus.mount(folder / "out", size)
            shutil.copyfile(source, folder / "out" / "store.h5")

        corpus.case(f"mix in place with {spare} KiB spare", [
            "mix", "out/store.h5", "--in-place", "--key-file", KEY, *REVERSIBLE],
            corpus.key_files, "out/store.h5", ENVIRONMENT, setup,
            outputs=("out/store.h5.fastmix-*",),
            checks=(check("readable", "always", path="out/store.h5", dataset="images"),
                    check("recovers", "always", path="out/store.h5", mount="out",
                          key=KEY, spec=list(REVERSIBLE), reference=originals)),
            **common)


# ---------------------------------------------------------------------------------- labels


def add_labels(corpus: Corpus) -> None:
    """Add labels that do not convert exactly: refused, or classes kept apart exactly."""
    corpus.group = "labels"
    images, base = images_and_labels()
    images_reference = corpus.reference("labels-images", images)
    count = len(images)
    two = np.arange(count) % 2
    huge = np.iinfo(np.int64)
    variants = {
        "float 1e19 and 3e19": np.where(two, 1e19, 3e19),
        "float 1e19 and the next double": np.where(two, 1e19, np.nextafter(1e19, np.inf)),
        "float32 1e30 and 2e30": np.where(two, 1e30, 2e30).astype(np.float32),
        "fractions 0.5, 0.7, 1.2, 1.9": np.array([0.5, 0.7, 1.2, 1.9])[base],
        "whole floats 0.0 to 3.0": base.astype(np.float64),
        "NaN everywhere": np.full(count, np.nan),
        "NaN and 1.0": np.where(two, np.nan, 1.0),
        "inf and -inf": np.where(two, np.inf, -np.inf),
        "inf and 1e308": np.where(two, np.inf, 1e308),
        "-0.0 and 0.0": np.where(two, -0.0, 0.0),
        "uint64 2**64-1 and 2**64-2": np.where(two, np.uint64(2**64 - 1),
                                               np.uint64(2**64 - 2)).astype(np.uint64),
        "uint64 2**63 and 2**63+1": np.where(two, np.uint64(2**63),
                                             np.uint64(2**63 + 1)).astype(np.uint64),
        "int64 2**53 and 2**53+1": np.where(two, 2**53, 2**53 + 1).astype(np.int64),
        "int64 extremes": np.where(two, huge.min, huge.max).astype(np.int64),
        "person ids near 987654321": (987654321 + 1000 * base).astype(np.int64),
        "negative ints": -1 - base,
        "booleans": two.astype(bool),
        "complex 1 and 1+1j": np.where(two, 1 + 0j, 1 + 1j),
        "strings '1', '01', ' 1', '1 '": np.array(["1", "01", " 1", "1 "], dtype=object)[base],
        "labels of shape (N, 1)": base.reshape(-1, 1),
    }
    cheap_dataset = {"person ids near 987654321", "int64 extremes"}
    mix = ["mix", "store.h5", "out.h5", "--key-file", KEY, *EVERY_BLOCK]
    for number, (name, values) in enumerate(variants.items()):
        labels_reference = corpus.reference(f"labels{number}", values)
        dtype = h5py.string_dtype() if values.dtype.kind == "O" else None
        path = write(corpus.inputs / f"labels{number}.h5", images, values, labels_dtype=dtype)
        files = {"store.h5": path, **corpus.key_files}
        corpus.case(f"{name}: mix", mix, files, "out.h5", (0, 2),
                    checks=(check("classes_kept", path="out.h5", dataset="images",
                                  images=images_reference, labels=labels_reference,
                                  block=4),))
        corpus.case(f"{name}: export", ["export", "store.h5", "x"], files, "x", (0, 2),
                    checks=(check("export", directory="x", count=count,
                                  labels=labels_reference),))
        if name in cheap_dataset or values.dtype.kind not in "iu" or values.max() < 2**20:
            corpus.case(f"{name}: H5ImageDataset", None, files, "dataset.json", (0, 2),
                        api={"call": "dataset", "store": "store.h5",
                             "output": "dataset.json"}, seconds=20,
                        checks=(check("dataset_classes", result="dataset.json",
                                      labels=labels_reference),))
    # Object labels reach only the Python API.
    images_file = corpus.inputs / "labels-images.npy"
    np.save(images_file, images)
    objects = {
        "object labels 1 and '1'": [1, "1"],
        "object labels 'a' and b'a'": ["a", b"a"],
        "object labels 1 and None": [1, None],
        "object labels 1.5 and '1.5'": [1.5, "1.5"],
        "object labels 2**64 and 2**64+1": [2**64, 2**64 + 1],
        "object labels 0.5 and 0.7": [0.5, 0.7],
        "object labels 1e19 and 3e19": [1e19, 3e19],
    }
    for number, (name, pair) in enumerate(objects.items()):
        values = np.empty(count, dtype=object)
        for index in range(count):
            values[index] = pair[index % 2]
        labels_reference = corpus.reference(f"object-labels{number}", values)
        corpus.case(f"{name}: mix_array", None, {"images.npy": images_file}, "out.npy",
                    (0, 2), api={"call": "mix_array", "images": "images.npy",
                                 "labels": labels_reference, "key": KEY_HEX, "block": 4,
                                 "output": "out.npy"},
                    checks=(check("classes_kept", path="out.npy", dataset=None,
                                  images=images_reference, labels=labels_reference,
                                  block=4),))


# -------------------------------------------------------------------------------- channels


def add_channels_first(corpus: Corpus) -> None:
    """Add (N, C, H, W) stores, which get a warning line, and (N, H, W, C) ones, which do not."""
    corpus.group = "channels"
    rng = np.random.default_rng(4)
    labels = np.arange(64) % 4
    warning = r"warning.*(channel|axis|\(N,)"
    shapes = {
        "(N, 3, 16, 16) uint8": ((3, 16, 16), np.uint8, True),
        "(N, 3, 32, 32) uint8": ((3, 32, 32), np.uint8, True),
        "(N, 1, 16, 16) uint8": ((1, 16, 16), np.uint8, True),
        "(N, 4, 16, 16) uint8": ((4, 16, 16), np.uint8, True),
        "(N, 3, 16, 24) uint8": ((3, 16, 24), np.uint8, True),
        "(N, 3, 16, 16) uint16": ((3, 16, 16), np.uint16, True),
        "(N, 3, 16, 16) float32": ((3, 16, 16), np.float32, True),
        "(N, 16, 16, 3) uint8": ((16, 16, 3), np.uint8, False),
        "(N, 16, 16, 1) uint8": ((16, 16, 1), np.uint8, False),
        "(N, 16, 16) uint8": ((16, 16), np.uint8, False),
    }
    for number, (name, (shape, dtype, first)) in enumerate(shapes.items()):
        values = rng.integers(0, 256, (64, *shape)).astype(dtype)
        path = write(corpus.inputs / f"channels{number}.h5", values, labels)
        files = {"store.h5": path, **corpus.key_files}
        expect_warning = (check("stderr", pattern=warning, present=True),) if first else (
            check("stderr", pattern=r"channel", present=False),)
        # A grid, not a block size: the block fits whichever axes are taken as rows.
        corpus.case(f"{name}: mix", ["mix", "store.h5", "out.h5", "--key-file", KEY,
                                     "--privacy", "fast", "--grid", "1x2", "--donors", "3"],
                    files, "out.h5", (0, 2), checks=expect_warning)
        corpus.case(f"{name}: export", ["export", "store.h5", "x"], files, "x", (0, 2),
                    checks=expect_warning)
        corpus.case(f"{name}: preview", ["preview", "store.h5", "-o", "grid.png"], files,
                    "grid.png", (0, 2), checks=expect_warning)


# ----------------------------------------------------------------- big-endian, empty, names


def add_big_endian(corpus: Corpus) -> None:
    """Add big-endian images: mixed and restored exactly (or refused), never a TypingError."""
    corpus.group = "big-endian"
    images, labels = images_and_labels()
    for dtype in (">u2", ">i2", ">i4", ">u8", ">f4", ">f8"):
        values = (images.astype(np.int64) * 37 - 900).astype(dtype)
        reference = corpus.reference(f"big-endian-{dtype[1:]}", values)
        path = write(corpus.inputs / f"big-{dtype[1:]}.h5", values, labels, compression="gzip")
        files = {"store.h5": path, **corpus.key_files}
        corpus.case(f"{dtype}: mix, reversible", ["mix", "store.h5", "out.h5", "--key-file",
                                                  KEY, *REVERSIBLE], files, "out.h5", (0, 2),
                    outputs=("r.h5",), then=(unmix_step("out.h5", "r.h5"),),
                    checks=(check("equal", "then", path="r.h5", dataset="images",
                                  reference=reference),))
        corpus.case(f"{dtype}: export", ["export", "store.h5", "x"], files, "x", (0, 2))
        corpus.case(f"{dtype}: preview", ["preview", "store.h5", "-o", "grid.png"], files,
                    "grid.png", (0, 2))
        if dtype in (">u2", ">f4"):  # the hardening kernels: one compilation per dtype
            corpus.case(f"{dtype}: mix, default preset",
                        ["mix", "store.h5", "out.h5", "--key-file", KEY, "--block", "8x8"],
                        files, "out.h5", (0, 2))
            corpus.case(f"{dtype}: mix, seam blur",
                        ["mix", "store.h5", "out.h5", "--key-file", KEY, *REVERSIBLE,
                         "--seam-blur", "1"], files, "out.h5", (0, 2))


def add_empty(corpus: Corpus) -> None:
    """Add stores of 0 images: every command works or refuses, never exit 1."""
    corpus.group = "empty"
    variants = {
        "contiguous": ({}, np.int64),
        "chunked gzip": ({"chunks": (1, 16, 16, 3), "maxshape": (None, 16, 16, 3),
                          "compression": "gzip"}, np.int64),
        "string labels": ({}, h5py.string_dtype()),
    }
    for number, (name, (options, labels_dtype)) in enumerate(variants.items()):
        path = corpus.inputs / f"empty{number}.h5"
        with h5py.File(path, "w") as file:
            file.create_dataset("images", shape=(0, 16, 16, 3), dtype=np.uint8, **options)
            file.create_dataset("labels", shape=(0,), dtype=labels_dtype)
        files = {"store.h5": path, **corpus.key_files}
        label = f"0 images, {name}"
        corpus.case(f"{label}: mix", ["mix", "store.h5", "out.h5", "--key-file", KEY,
                                      *REVERSIBLE], files, "out.h5", (0, 2), outputs=("r.h5",),
                    then=(unmix_step("out.h5", "r.h5"),
                          ["verify", "store.h5", "out.h5", "--key-file", KEY]))
        corpus.case(f"{label}: mix in place", ["mix", "store.h5", "--in-place", "--key-file",
                                               KEY, *REVERSIBLE], files, "store.h5", (0, 2),
                    then=(["unmix", "store.h5", "--in-place", "--key-file", KEY],))
        corpus.case(f"{label}: export", ["export", "store.h5", "x"], files, "x", (0, 2),
                    checks=(check("export", directory="x", count=0, labels=None),))
        corpus.case(f"{label}: preview", ["preview", "store.h5", "-o", "grid.png"], files,
                    "grid.png", (0, 2))
        corpus.case(f"{label}: info", ["info", "store.h5", "--json"], files, None, (0, 2))
        corpus.case(f"{label}: H5ImageDataset", None, files, "dataset.json", (0, 2),
                    api={"call": "dataset", "store": "store.h5", "output": "dataset.json"})


def add_class_names(corpus: Corpus) -> None:
    """Add class names a file system cannot take as they are: exported, or refused cleanly."""
    corpus.group = "class-names"
    images, labels = images_and_labels()
    labels_reference = corpus.reference("class-names-labels", labels)
    long = "x" * 300
    named = {
        "a 255-byte name": ["a" * 255, "b", "c", "d"],
        "a 256-byte name": ["a" * 256, "b", "c", "d"],
        "a 300-byte name": [long, "b", "c", "d"],
        "a 1000-byte name": ["n" * 1000, "b", "c", "d"],
        "a 300-byte unicode name": ["é" * 150, "b", "c", "d"],
        "names that differ after byte 255": [long + "a", long + "b", long + "c", long + "d"],
        "names '.' and '..'": [".", "..", "c", "d"],
        "names with '/' and '../up'": ["a/b", "../up", "c", "d"],
        "an empty name": ["", "b", "c", "d"],
        "names that differ in case only": ["cat", "Cat", "CAT", "cAt"],
    }
    for number, (name, names) in enumerate(named.items()):
        def extra(file, names=names):
            file["labels"].attrs["class_names"] = names

        path = write(corpus.inputs / f"names{number}.h5", images, labels, extra=extra)
        corpus.case(f"{name}: export", ["export", "store.h5", "x"], {"store.h5": path}, "x",
                    (0, 2), checks=(check("export", directory="x", count=len(images),
                                          labels=labels_reference),))
    strings = {
        "string labels of 300 bytes": np.array([long + "a", "b", "c", "d"], dtype=object),
        "string labels that differ after byte 255": np.array(
            [long + "a", long + "b", long + "c", long + "d"], dtype=object),
        "string labels with '/'": np.array(["a/b", "a_b", "c", "d"], dtype=object),
    }
    for number, (name, values) in enumerate(strings.items()):
        reference = corpus.reference(f"class-strings{number}", values[labels])
        path = write(corpus.inputs / f"strings{number}.h5", images, values[labels],
                     labels_dtype=h5py.string_dtype())
        corpus.case(f"{name}: export", ["export", "store.h5", "x"], {"store.h5": path}, "x",
                    (0, 2), checks=(check("export", directory="x", count=len(images),
                                          labels=reference),))


#: Every class this module adds, in order.
BUILDERS = (add_links, add_lossy, add_record_edits, add_names, add_full_disk, add_labels,
            add_channels_first, add_big_endian, add_empty, add_class_names)
#: The names of the classes :data:`BUILDERS` add.
GROUPS = ("links", "lossy", "mac", "names", "disk", "labels", "channels", "big-endian",
          "empty", "class-names")
