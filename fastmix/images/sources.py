"""Find the labelled image files of an ImageFolder tree or a ``path,label`` CSV."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass

from fastmix.errors import BadInputError, check_regular_file, hint
from fastmix.images.decode import is_image_file


@dataclass(frozen=True)
class ImageList:
    """Image files with their integer labels and the class names the labels index."""

    paths: list[str]
    labels: list[int]
    class_names: list[str]


def is_inside(path: str, root: str) -> bool:
    """Whether ``path``, all links resolved, is ``root`` or lies below it."""
    real, top = os.path.realpath(path), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _usable(path: str, root: str, follow_symlinks: bool) -> bool:
    """Whether to read ``path``: not a link out of ``root`` (unless followed), and a file.

    A FIFO, device or socket with an image name is refused: reading it would wait forever.
    """
    if not follow_symlinks and os.path.islink(path) and not is_inside(path, root):
        return False
    if os.path.exists(path):  # a dangling link is reported as unreadable when decoded
        check_regular_file(path, "image")
    return True


def _walk_images(folder: str, root: str, follow_symlinks: bool) -> list[str]:
    found: list[str] = []
    for top, dirs, files in os.walk(folder, followlinks=follow_symlinks):
        dirs[:] = sorted(name for name in dirs if not name.startswith(".") and (
            follow_symlinks or is_inside(os.path.join(top, name), root)))
        found.extend(os.path.join(top, name) for name in sorted(files)
                     if not name.startswith(".") and is_image_file(name)
                     and _usable(os.path.join(top, name), root, follow_symlinks))
    return found


def _utf8_name(name: str, root: str) -> str:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
        raise BadInputError(
            f"class folder {shown!r} in {root!r} has a name that is not valid UTF-8; "
            "rename it (class names are stored as UTF-8 text)"
        ) from None
    return name


def image_folder(image_dir: str | os.PathLike, follow_symlinks: bool = False) -> ImageList:
    """List an ImageFolder tree: one sub-folder per class, class names sorted, label = index.

    Image files anywhere below a class folder belong to that class; files directly in
    ``image_dir`` and files without an image extension are ignored. Symbolic links that
    lead out of ``image_dir`` are ignored unless ``follow_symlinks``.
    """
    root = os.fspath(image_dir)
    if not os.path.isdir(root):
        raise BadInputError(f"image folder {root!r} does not exist or is not a folder")
    class_names = sorted(_utf8_name(entry.name, root) for entry in os.scandir(root)
                         if entry.is_dir() and not entry.name.startswith(".")
                         and (follow_symlinks or is_inside(entry.path, root)))
    if not class_names:
        raise BadInputError(
            f"{root!r} has no class sub-folders: put the images of each class in their own "
            "sub-folder (ImageFolder layout) or pass --csv with path,label rows"
        )
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(class_names):
        files = _walk_images(os.path.join(root, name), root, follow_symlinks)
        paths.extend(files)
        labels.extend([label] * len(files))
    if not paths:
        raise BadInputError(
            f"no image files (PNG, JPEG, BMP, TIFF, GIF) in the class folders of {root!r}"
        )
    return ImageList(paths, labels, class_names)


def _class_order(name: str) -> tuple:
    # integer-looking class names sort numerically ("2" before "10"), others by text
    stripped = name.strip()
    if stripped.lstrip("-").isdigit():
        return (0, int(stripped), "")
    return (1, 0, name)


def _check_row(path: str, image_dir: str, where: str, follow_symlinks: bool) -> str:
    """Return the file of a CSV row; refuse one outside ``image_dir``, as links out are."""
    relative = os.path.normpath(path)
    if os.path.isabs(path) or relative == os.pardir or relative.startswith(os.pardir + os.sep):
        raise BadInputError(
            f"{where}: image path {path!r} is outside the image folder {image_dir!r}; give "
            "paths relative to that folder, of files inside it")
    full = os.path.join(image_dir, relative)
    if not follow_symlinks and not is_inside(full, image_dir):
        raise BadInputError(
            f"{where}: image path {path!r} is a symbolic link that leads out of the image "
            f"folder {image_dir!r}; copy the file into it or {hint('follow_symlinks')}")
    return full


def csv_listing(csv_path: str | os.PathLike, image_dir: str | os.PathLike,
                follow_symlinks: bool = False) -> ImageList:
    """List images from a CSV of ``path,label`` rows (an optional header row is skipped).

    Paths are relative to ``image_dir``, and name files inside it: an absolute path or one
    that climbs out of it with ``..`` is refused, and so is a symbolic link that leads out
    of it unless ``follow_symlinks``. Labels are class names; the classes are sorted
    (numerically when every name is an integer) and label = index, so integer labels
    0..K-1 keep their values. Rows whose file has no image extension are ignored.
    """
    csv_path = os.fspath(csv_path)
    if not os.path.isfile(csv_path):
        raise BadInputError(f"CSV file {csv_path!r} does not exist")
    listed: list[tuple[str, str, str]] = []  # path, label, where
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        for line_number, row in enumerate(csv.reader(handle), start=1):
            if not row or all(not cell.strip() for cell in row):
                continue
            if len(row) < 2:
                raise BadInputError(
                    f"{csv_path}:{line_number}: expected 'path,label', got {','.join(row)!r}"
                )
            path, label = row[0].strip(), row[1].strip()
            if line_number == 1 and (path.lower(), label.lower()) in {("path", "label"),
                                                                      ("file", "label"),
                                                                      ("filename", "label")}:
                continue
            listed.append((path, label, f"{csv_path}:{line_number}"))
    image_dir = os.fspath(image_dir)
    rows = [(_check_row(path, image_dir, where, follow_symlinks), label)
            for path, label, where in listed if is_image_file(path)]
    if not rows:
        raise BadInputError(f"CSV file {csv_path!r} lists no image files")
    class_names = sorted({label for _, label in rows}, key=_class_order)
    index = {name: position for position, name in enumerate(class_names)}
    return ImageList([path for path, _ in rows], [index[label] for _, label in rows],
                     class_names)
