"""``fastmix demo``: the main job, end to end, on real images that the dependencies ship.

1. Write a small ImageFolder of real pictures: scikit-image's ``lfw_subset`` (100 face crops
   and 100 non-faces, 25x25 grey) and four of its sample photographs cut into 64x64 tiles,
   one class per photograph. Nothing is downloaded: these files are bundled with
   scikit-image.
2. ``ingest`` it into ``source.h5`` (64x64 RGB) and mix it twice: with the default privacy
   preset (:data:`fastmix.presets.DEFAULT_PRESET`, what ``fastmix mix`` runs; one-way) and
   reversibly (permute mode with the paper's parameters, no hardening).
3. Draw ``preview.png`` (original beside the default mix) and ``preview-reversible.png``,
   unmix the reversible store and check the round trip bit for bit, and export the default
   mix back to a folder of PNG files.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field

import numpy as np

from fastmix.errors import BadInputError, FastmixError
from fastmix.samples import PHOTOS, lfw_faces_uint8, photo_tiles

#: Side of the demo images and of the photograph tiles.
TILE = 64
#: Tiles are cut every STRIDE pixels (overlapping, for a few hundred images per photograph).
STRIDE = 32
MARKER = ".fastmix-demo"


@dataclass
class DemoResult:
    """The files the demo wrote, and its report lines."""

    folder: str
    images_folder: str
    source: str
    #: ``"default"``: the default preset's store (one-way); ``"reversible"``: the store that
    #: unmixes.
    mixed: dict[str, str]
    #: Spec of each store of :attr:`mixed`.
    specs: dict
    restored: str
    preview: str
    preview_reversible: str
    exported: str
    key_file: str
    lines: list[str] = field(default_factory=list)


def sample_classes() -> dict[str, list[np.ndarray]]:
    """Class name -> real uint8 images, from the sample data bundled with scikit-image."""
    grey, face_labels = lfw_faces_uint8()
    classes = {"face": list(grey[face_labels == 0]), "non-face": list(grey[face_labels == 1])}
    tiles, labels = photo_tiles(TILE, STRIDE, crop=None)
    for label, name in enumerate(PHOTOS):
        classes[name] = list(tiles[labels == label])
    return classes


def write_image_folder(folder: str, classes: dict[str, list[np.ndarray]]) -> int:
    """Write ``classes`` as ``folder/CLASS/00000.png``; returns the number of files."""
    import imageio.v3 as iio

    count = 0
    for name, images in classes.items():
        os.makedirs(os.path.join(folder, name), exist_ok=True)
        for index, image in enumerate(images):
            iio.imwrite(os.path.join(folder, name, f"{index:05d}.png"), image,
                        plugin="pillow", extension=".png", compress_level=1)
            count += 1
    with open(os.path.join(folder, MARKER), "w") as handle:
        handle.write("written by fastmix demo; safe to delete\n")
    return count


def _fresh_folder(path: str) -> None:
    if os.path.exists(path):
        if not os.path.exists(os.path.join(path, MARKER)):
            raise BadInputError(f"{path!r} exists and was not written by the demo; move it or "
                                "choose another --out")
        shutil.rmtree(path)


def _key(path: str):
    from fastmix.keys import Key

    if os.path.exists(path):
        return Key.load(path)
    key = Key.generate()
    key.save(path)
    return key


def run_demo(out: str | os.PathLike = "demo", progress: bool = True,
             echo: bool = True) -> DemoResult:
    """Run the demo into ``out`` and print (``echo``) what it did.

    Parameters
    ----------
    out : str or PathLike
        Folder for everything the demo writes (created if needed). Its files are replaced on
        each run; the key file is kept and reused.
    progress : bool
        Show progress bars on a terminal.
    echo : bool
        Print each step's report line.

    Returns
    -------
    DemoResult
    """
    from fastmix.images.export import export_store
    from fastmix.images.ingest import ingest_folder
    from fastmix.images.preview import preview_grid
    from fastmix.presets import DEFAULT_PRESET, describe
    from fastmix.spec import MixSpec
    from fastmix.store import mix_store, unmix_store

    folder = os.fspath(out)
    os.makedirs(folder, exist_ok=True)

    def path(name: str) -> str:
        return os.path.join(folder, name)

    result = DemoResult(folder=folder, images_folder=path("images"), source=path("source.h5"),
                        mixed={"default": path("mixed-default.h5"),
                               "reversible": path("mixed-reversible.h5")},
                        # The preset fastmix mix runs, and the paper's parameters in permute
                        # mode without hardening: the one setting here that unmixes.
                        specs={"default": MixSpec.preset(DEFAULT_PRESET),
                               "reversible": MixSpec(mode="permute")},
                        restored=path("restored.h5"), preview=path("preview.png"),
                        preview_reversible=path("preview-reversible.png"),
                        exported=path("mixed-images"), key_file=path("demo.key"))

    def say(line: str) -> None:
        result.lines.append(line)
        if echo:
            print(line, flush=True)

    started = time.perf_counter()
    classes = sample_classes()
    _fresh_folder(result.images_folder)
    files = write_image_folder(result.images_folder, classes)
    say(f"1. wrote {files:,} real sample images in {len(classes)} classes "
        f"({', '.join(classes)}) -> {result.images_folder}")

    ingested = ingest_folder(result.images_folder, result.source, size=(TILE, TILE),
                             progress=progress, overwrite=True)
    say(f"2. {ingested.summary()}")

    key = _key(result.key_file)
    audit_use = (", and so does auditing the default one (it is hardened)"
                 if result.specs["default"].hardened else "")
    say(f"3. key file {result.key_file} (check value {key.check_value}); unmixing the "
        f"reversible store needs it{audit_use}")
    titles = {"default": f"default preset {DEFAULT_PRESET} (what fastmix mix runs)",
              "reversible": "reversible (the paper's parameters in permute mode)"}
    for step, (name, destination) in enumerate(result.mixed.items(), start=4):
        spec = result.specs[name]
        report = mix_store(result.source, destination, spec=spec, key=key, progress=progress,
                           overwrite=True)
        settings = describe(spec).removeprefix("mixing: ")
        say(f"{step}. {titles[name]}: {settings}; {report.summary()}")

    preview_grid(result.mixed["default"], result.preview, original=result.source)
    preview_grid(result.mixed["reversible"], result.preview_reversible,
                 original=result.source)
    say(f"6. preview (original left, mixed right) -> {result.preview} (default preset) and "
        f"{result.preview_reversible} (reversible)")

    report = unmix_store(result.mixed["reversible"], result.restored, key=key,
                         progress=progress, overwrite=True)
    import h5py
    import hdf5plugin  # noqa: F401 - registers the LZ4/Zstd/Blosc filters with h5py

    with h5py.File(result.source, "r") as source, h5py.File(result.restored, "r") as restored:
        same = np.array_equal(source["images"][()], restored["images"][()])
    if not same:
        raise FastmixError(f"round trip failed: {result.restored} differs from {result.source}")
    default_note = ("it is one-way and cannot be unmixed" if not result.specs["default"]
                    .reversible else "it is reversible too, but only one round trip is shown")
    say(f"7. {report.summary()}; round trip of the reversible store: identical to "
        f"{result.source}, bit for bit (the default preset's store is not unmixed: "
        f"{default_note})")

    _fresh_folder(result.exported)
    exported = export_store(result.mixed["default"], result.exported, progress=progress)
    with open(os.path.join(result.exported, MARKER), "w") as handle:
        handle.write("written by fastmix demo; safe to delete\n")
    say(f"8. {exported.summary()}")
    say(f"done in {time.perf_counter() - started:.1f} s. Train on the default preset's store "
        f"with fastmix.H5ImageDataset({result.mixed['default']!r}); measure what it leaks "
        f"with fastmix audit {result.source} {result.mixed['default']} --key-file "
        f"{result.key_file}")
    return result
