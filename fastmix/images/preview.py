"""``preview``: a PNG grid a person can judge at a glance.

One row per class (the class name on the left), ``count`` images per row chosen at random
with ``seed``. With an original store, each mixed image is shown to the right of its original
(same index). Small images are enlarged by an integer factor (nearest neighbour) so that the
blocks stay visible.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from fastmix.errors import BadInputError, check_integer

#: Pixels between pairs and rows, and around the grid.
MARGIN = 8
#: Pixels between an original and its mixed image.
PAIR_GAP = 2
#: Images smaller than this (largest side) are enlarged by an integer factor.
MIN_CELL = 128
#: Height of the "original / mixed" caption line above a paired grid.
CAPTION = 14
#: Most class rows drawn.
MAX_CLASSES = 20
BACKGROUND = (40, 40, 40)
TEXT = (235, 235, 235)


@dataclass(frozen=True)
class PreviewLayout:
    """Geometry of a preview grid (all in pixels)."""

    rows: int
    count: int
    cell_height: int
    cell_width: int
    label_width: int
    paired: bool

    @property
    def pair_width(self) -> int:
        """Width of one column: an image, or an original, a gap and its mixed image."""
        return 2 * self.cell_width + PAIR_GAP if self.paired else self.cell_width

    @property
    def top(self) -> int:
        """Height above the first row: the caption line of a paired grid."""
        return CAPTION if self.paired else 0

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of the picture."""
        width = self.label_width + self.count * self.pair_width + (self.count + 1) * MARGIN
        height = self.top + self.rows * self.cell_height + (self.rows + 1) * MARGIN
        return width, height

    def cell_origin(self, row: int, column: int) -> tuple[int, int]:
        """Top-left ``(x, y)`` of column ``column`` of row ``row``."""
        x = self.label_width + MARGIN + column * (self.pair_width + MARGIN)
        y = self.top + MARGIN + row * (self.cell_height + MARGIN)
        return x, y


def enlargement(height: int, width: int) -> int:
    """Integer factor that brings the largest side to at least :data:`MIN_CELL` pixels."""
    return max(1, MIN_CELL // max(height, width))


def _check_previewable(dataset, path: str) -> None:
    """Refuse a store with no images, or with images no picture can show (one line)."""
    from fastmix.store.hdf5.access import channels_first_note

    if dataset.shape[0] == 0:
        raise BadInputError(f"store {path!r} holds no images, so there is nothing to preview")
    channels = dataset.shape[3] if dataset.ndim == 4 else 1
    if channels > 4:
        note = channels_first_note(dataset.shape)
        raise BadInputError(
            f"images in {path!r} have {channels} channels{f' (the store{note})' if note else ''}"
            "; preview shows grey, grey and alpha, RGB or RGBA images")


def _as_rgb(image: np.ndarray) -> np.ndarray:
    from fastmix.images.decode import to_channels, to_uint8

    return to_channels(to_uint8(np.asarray(image)), 3)


def _class_label(value: object, class_names: list[str] | None) -> str:
    if class_names is not None and isinstance(value, int) and 0 <= value < len(class_names):
        return class_names[value]
    return str(value)


def choose(labels: np.ndarray, count: int, seed: int, max_classes: int = MAX_CLASSES
           ) -> list[tuple[object, np.ndarray]]:
    """``(label, sorted indices)`` for up to ``max_classes`` classes, ``count`` each, at random."""
    generator = np.random.default_rng(seed)
    chosen = []
    for value in np.unique(labels).tolist()[:max_classes]:
        members = np.flatnonzero(labels == value)
        picked = generator.choice(members, size=min(count, len(members)), replace=False)
        chosen.append((value, np.sort(picked)))
    return chosen


def preview_grid(store: str | os.PathLike, output: str | os.PathLike, *,
                 original: str | os.PathLike | None = None, count: int = 4, seed: int = 0,
                 images: str = "images", labels: str = "labels",
                 overwrite: bool = False) -> PreviewLayout:
    """Draw a grid of a few images per class into a picture file.

    Parameters
    ----------
    store : str or PathLike
        The (mixed) store to show.
    output : str or PathLike
        The picture to write; its extension names the format (``.png``, ``.jpg``,
        ``.webp``, ...). An extension Pillow cannot write is refused.
    original : str or PathLike, optional
        The store ``store`` was made from; each image is then shown beside its original.
    count : int
        Images per class.
    seed : int
        Seed of the random choice of images (the same seed shows the same images).
    images, labels : str
        Dataset names (the same in both stores).
    overwrite : bool
        Replace an existing ``output`` (never a store of this run or a key file).

    Returns
    -------
    PreviewLayout
        The grid's geometry; ``layout.size`` is the picture's ``(width, height)``.
    """
    import hdf5plugin  # noqa: F401 - registers the LZ4/Zstd/Blosc filters with h5py
    from PIL import Image, ImageDraw, ImageFont

    from fastmix.store.hdf5.access import open_store
    from fastmix.store.hdf5.lowlevel import class_names_of

    count = check_integer(count, "count", minimum=1, wording="a positive number of images")
    from fastmix.store.durable.atomic import atomic_output, check_output_path

    output = check_output_path(output, overwrite, protected=(store, original), role="output")
    picture_format = picture_format_of(output)
    with open_store(store, images=images, labels=labels, warn_layout=False) as mixed:
        _check_previewable(mixed.images, os.fspath(store))
        class_names = class_names_of(mixed.file, mixed.labels_name)
        chosen = choose(mixed.labels, count, seed)
        shown = [(value, mixed.images[indices]) for value, indices in chosen]
        originals = None
        if original is not None:
            with open_store(original, images=images, labels=None, warn_layout=False) as source:
                if source.images.shape != mixed.images.shape:
                    raise BadInputError(
                        f"original {os.fspath(original)!r} has images of shape "
                        f"{source.images.shape} but {os.fspath(store)!r} has "
                        f"{mixed.images.shape}; give the store it was mixed from")
                originals = [source.images[indices] for _, indices in chosen]
        height, width = mixed.images.shape[1:3]

    scale = enlargement(height, width)
    font = ImageFont.load_default()
    names = [_class_label(value, class_names)[:24] for value, _ in chosen]
    text_width = max(int(np.ceil(font.getlength(name))) for name in names)
    layout = PreviewLayout(rows=len(chosen), count=count, cell_height=height * scale,
                           cell_width=width * scale, label_width=text_width + MARGIN,
                           paired=originals is not None)
    canvas = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)

    def paste(pixels: np.ndarray, x: int, y: int) -> None:
        tile = Image.fromarray(_as_rgb(pixels))
        if scale > 1:
            tile = tile.resize((layout.cell_width, layout.cell_height), Image.Resampling.NEAREST)
        canvas.paste(tile, (x, y))

    if layout.paired:
        for column in range(count):
            x, _ = layout.cell_origin(0, column)
            for offset, caption in ((0, "original"), (layout.cell_width + PAIR_GAP, "mixed")):
                draw.text((x + offset + layout.cell_width // 2, MARGIN + CAPTION // 2), caption,
                          fill=TEXT, font=font, anchor="mm")
    for row, (name, (_, pictures)) in enumerate(zip(names, shown)):
        _, top = layout.cell_origin(row, 0)
        draw.text((MARGIN, top + layout.cell_height // 2), name, fill=TEXT, font=font,
                  anchor="lm")
        for column, picture in enumerate(pictures):
            x, y = layout.cell_origin(row, column)
            if originals is not None:
                paste(originals[row][column], x, y)
                x += layout.cell_width + PAIR_GAP
            paste(picture, x, y)
    with atomic_output(output, overwrite) as temporary:
        canvas.save(temporary, format=picture_format)
    return layout


#: Picture formats ``preview`` writes, by extension (Pillow format names).
PICTURE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP",
                   ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}


def picture_format_of(output: str) -> str:
    """Return the Pillow format that ``output``'s extension names; refuse any other extension."""
    extension = os.path.splitext(output)[1].lower()
    if extension not in PICTURE_FORMATS:
        raise BadInputError(
            f"cannot write a picture named {output!r}: its extension {extension or '(none)'!r} "
            f"is not one of {', '.join(PICTURE_FORMATS)}"
        )
    return PICTURE_FORMATS[extension]
