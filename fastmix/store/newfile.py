"""New-file mode: a copy of the source store, written under a temporary name and renamed.

Everything except the images dataset's pixels is copied unchanged (groups, datasets, links
and attributes). The images dataset is created with the source's own creation property
list, so it keeps shape, maxshape, dtype, chunking, fill value and every filter.

Datasets whose data lives in other files (external raw files, virtual datasets) are the
exception: their creation properties name those files, and copying them would make every
write to the output land there. Such a dataset is written into the output file as
contiguous storage instead, and a :class:`~fastmix.errors.FastmixWarning` says so.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator

from fastmix.errors import BadInputError, FastmixWarning, check_regular_file, hint
from fastmix.keys import is_key_file
from fastmix.store.durable import fsync_folder_of, fsync_path
from fastmix.store.hdf5 import foreign_layout, plist_filters

#: Bytes copied at a time when a dataset kept in other files is copied into the output.
_COPY_SLAB = 16 << 20

TEMPORARY_MARK = ".fastmix-tmp-"


def temporary_path(destination: str) -> str:
    """Return the hidden temporary name beside ``destination`` used while it is written."""
    folder, name = os.path.split(os.path.abspath(destination))
    return os.path.join(folder, f".{name}{TEMPORARY_MARK}{os.getpid()}")


def _remove_stale_temporaries(destination: str) -> None:
    """Delete temporaries of ``destination`` left by processes that no longer run."""
    folder, name = os.path.split(os.path.abspath(destination))
    prefix = f".{name}{TEMPORARY_MARK}"
    try:
        entries = os.listdir(folder)
    except OSError:
        return
    for entry in entries:
        if not entry.startswith(prefix):
            continue
        pid_text = entry[len(prefix):]
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(folder, entry))
        except PermissionError:
            pass


def check_output_path(destination: object, overwrite: bool, *,
                      protected: tuple = (), role: str = "destination") -> str:
    """Validate the path of a new output file and return it as a path string.

    The one rule for every file fastmix writes: never onto a fastmix key file (judged by
    content, whatever ``overwrite`` says), never onto one of the ``protected`` paths (the
    run's source stores and key file), never onto a folder or a special file, and onto an
    existing file only with ``overwrite``.
    """
    destination = os.fspath(destination)
    if os.path.basename(destination) in ("", ".", ".."):
        raise BadInputError(
            f"{role} {destination!r} names a folder, not a file; give a file path "
            f"such as {os.path.join(destination, 'mixed.h5')!r}"
        )
    for path in protected:
        if path is not None and _same_file(os.fspath(path), destination):
            raise BadInputError(
                f"{role} {destination!r} is also an input of this run ({os.fspath(path)!r}); "
                "give another path for the output"
            )
    if os.path.lexists(destination):
        if os.path.isdir(destination):
            raise BadInputError(
                f"{role} {destination!r} is a folder (a directory); give a file path"
            )
        if is_key_file(destination):
            raise BadInputError(
                f"{role} {destination!r} is a fastmix key file; fastmix never writes over a "
                "key, even when told to overwrite. Choose another path"
            )
        if os.path.exists(destination):
            check_regular_file(destination, role)
        if not overwrite:
            raise BadInputError(
                f"{role} {destination!r} already exists; choose another path or "
                f"{hint('overwrite')} to replace it"
            )
    folder = os.path.dirname(os.path.abspath(destination))
    if not os.path.isdir(folder):
        raise BadInputError(
            f"the folder of {role} {destination!r} does not exist; create it first"
        )
    if not os.access(folder, os.W_OK):
        raise BadInputError(f"cannot write in {folder!r}: permission denied")
    return destination


def _same_file(first: str, second: str) -> bool:
    try:
        return os.path.samefile(first, second)
    except OSError:
        return os.path.abspath(first) == os.path.abspath(second)


def check_destination(source: str, destination: object, overwrite: bool,
                      key_file: object = None) -> str:
    """Validate the destination of a new-file run and return it as a path string."""
    if destination is None:
        raise BadInputError(
            f"give a destination file for the output, or {hint('in_place')} to rewrite the "
            "source store"
        )
    destination = os.fspath(destination)
    if os.path.exists(destination) and _same_file(source, destination):
        raise BadInputError(
            f"destination {destination!r} is the source store; give another file, or "
            f"{hint('in_place')} to rewrite it"
        )
    return check_output_path(destination, overwrite, protected=(source, key_file))


def copy_attributes(source, target, skip_prefix: str | None = None) -> None:
    """Copy every attribute of ``source`` onto ``target`` with its exact type."""
    for name in source.attrs:
        if skip_prefix and name.startswith(skip_prefix):
            continue
        value = source.attrs[name]
        dtype = source.attrs.get_id(name).dtype
        target.attrs.create(name, value, dtype=dtype)


def _copy_tree(source_group, target_group, images, skip_prefix: str | None,
               early_allocation: bool = False):
    import h5py

    images_path = images.name
    copy_attributes(source_group, target_group)
    created = None
    for name in source_group:
        link = source_group.get(name, getlink=True)
        if isinstance(link, h5py.SoftLink | h5py.ExternalLink):
            target_group[name] = link
            continue
        if f"{source_group.name.rstrip('/')}/{name}" == images_path:
            # The open dataset itself: a second open could differ in its access properties.
            created = _create_like(images, target_group, name, skip_prefix, early_allocation)
            continue
        item = source_group[name]
        if isinstance(item, h5py.Group) and (images_path.startswith(item.name + "/")
                                             or _holds_foreign_layout(item)):
            found = _copy_tree(item, target_group.create_group(name), images, skip_prefix,
                               early_allocation)
            created = created or found
        elif isinstance(item, h5py.Dataset) and foreign_layout(item) is not None:
            _copy_inside(item, target_group, name)
        else:
            source_group.copy(item, target_group, name=name)
    return created


def _holds_foreign_layout(group) -> bool:
    import h5py

    found = []

    def visit(_name, item):
        if isinstance(item, h5py.Dataset) and foreign_layout(item) is not None:
            found.append(item.name)
            return True
        return None

    group.visititems(visit)
    return bool(found)


def _layout_warning(dataset, layout: str) -> None:
    warnings.warn(
        f"dataset {dataset.name!r} of the source is {layout}; the output holds its data as "
        "contiguous storage inside the output file (those files are read, never written)",
        FastmixWarning, stacklevel=2)


def _copy_inside(dataset, group, name: str) -> None:
    """Copy a dataset kept in other files into contiguous storage inside ``group``'s file."""
    _layout_warning(dataset, foreign_layout(dataset))
    copy = group.create_dataset(name, shape=dataset.shape, dtype=dataset.dtype)
    copy_attributes(dataset, copy)
    if dataset.shape is None or dataset.size == 0:
        return
    if dataset.ndim == 0:
        copy[()] = dataset[()]
        return
    row = max(1, dataset.dtype.itemsize * int(dataset.size // max(dataset.shape[0], 1)))
    step = max(1, _COPY_SLAB // row)
    for start in range(0, dataset.shape[0], step):
        stop = min(start + step, dataset.shape[0])
        copy[start:stop] = dataset[start:stop]


def _filters(plist) -> list[tuple[int, int, tuple[int, ...]]]:
    return [(stored.code, stored.flags, stored.values) for stored in plist_filters(plist)]


def allocates_early_cheaply(dataset) -> bool:
    """Whether a copy of ``dataset`` can have its chunks allocated at creation for free.

    True for chunked, unfiltered datasets of fixed shape without a user-defined fill
    value. Their copy gets early allocation and fill time "never": HDF5 reserves every chunk
    at creation without writing zeros into it, and the chunks are then written in place at
    their file offsets. Every chunk is written, and a fixed shape never grows new ones, so
    neither property changes what the dataset reads.
    """
    import h5py

    if dataset.chunks is None or tuple(dataset.maxshape) != tuple(dataset.shape):
        return False
    dcpl = dataset.id.get_create_plist()
    return not plist_filters(dcpl) and \
        dcpl.fill_value_defined() != h5py.h5d.FILL_VALUE_USER_DEFINED


@contextlib.contextmanager
def template_dataset(dataset) -> Iterator:
    """Return the dataset whose creation properties a copy of ``dataset`` takes.

    ``dataset`` itself, except for a sharded store (a virtual dataset whose first source is a
    chunked dataset in another file, as ``fastmix mix --shards`` writes): that source, so
    that the copy is one real dataset with the shards' chunking and filters.
    """
    import h5py

    path = _first_shard(dataset)
    if path is None:
        yield dataset
        return
    with h5py.File(path, "r") as shard:
        source = shard[dataset.virtual_sources()[0].dset_name]
        yield source if source.chunks is not None and not source.is_virtual else dataset


def _first_shard(dataset) -> str | None:
    if not dataset.is_virtual:
        return None
    path = dataset.virtual_sources()[0].file_name
    if path == ".":
        return None
    if not os.path.isabs(path):
        path = os.path.join(os.path.dirname(os.path.abspath(dataset.file.filename)), path)
    return path if os.path.isfile(path) else None


def create_dataset_like(dataset, group, name: str, *, shape: tuple[int, ...] | None = None,
                        skip_prefix: str | None = None, early_allocation: bool = False):
    """Create ``group[name]`` with the type, chunking, filters and attributes of ``dataset``.

    ``shape`` (default: the dataset's) gives another length along axis 0, for shard files;
    a length shorter than one chunk makes axis 0 extensible, as HDF5 requires. A sharded
    store gives a real dataset with its shards' chunking and filters.
    """
    with template_dataset(dataset) as template:
        if template is dataset:
            return _create_like(dataset, group, name, skip_prefix, early_allocation, shape)
        created = _create_like(template, group, name, skip_prefix, early_allocation,
                               tuple(dataset.shape) if shape is None else shape)
    for attribute in list(created.attrs):
        del created.attrs[attribute]
    copy_attributes(dataset, created, skip_prefix)
    return created


def _create_like(dataset, group, name: str, skip_prefix: str | None,
                 early_allocation: bool = False, shape: tuple[int, ...] | None = None):
    import h5py

    if _first_shard(dataset) is not None:
        with template_dataset(dataset) as template:
            sharded = template is not dataset
        if sharded:
            return create_dataset_like(dataset, group, name, shape=shape,
                                       skip_prefix=skip_prefix,
                                       early_allocation=early_allocation)
    layout = foreign_layout(dataset)
    if layout is not None:
        # Never the source's layout: it names files outside the output.
        _layout_warning(dataset, layout)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        dcpl.set_layout(h5py.h5d.CONTIGUOUS)
        identifier = h5py.h5d.create(group.id, name.encode(), dataset.id.get_type(),
                                     dataset.id.get_space(), dcpl=dcpl)
        created = h5py.Dataset(identifier)
        copy_attributes(dataset, created, skip_prefix)
        return created
    space = dataset.id.get_space()
    if shape is not None:
        chunks = dataset.chunks
        extensible = chunks is not None and shape[0] < chunks[0]
        maxshape = ((h5py.h5s.UNLIMITED if extensible else shape[0]), *shape[1:])
        space = h5py.h5s.create_simple(tuple(shape), maxshape)
    dcpl = dataset.id.get_create_plist()
    if early_allocation and allocates_early_cheaply(dataset):
        dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
        dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    wanted = _filters(dcpl)
    identifier = h5py.h5d.create(group.id, name.encode(), dataset.id.get_type(),
                                 space, dcpl=dcpl)
    got = _filters(identifier.get_create_plist())
    if got != wanted:
        # Some filters (Bitshuffle) prepend values in their set_local callback even when
        # they are already there; give them the values they started from.
        group.id.unlink(name.encode())
        dcpl = dataset.id.get_create_plist()
        dcpl.remove_filter(h5py.h5z.FILTER_ALL)
        for (code, flags, values), (_, _, added) in zip(wanted, got):
            extra = len(added) - len(values)
            if extra > 0 and tuple(added[extra:]) == tuple(values):
                values = values[extra:]
            dcpl.set_filter(code, flags, tuple(values))
        identifier = h5py.h5d.create(group.id, name.encode(), dataset.id.get_type(),
                                     space, dcpl=dcpl)
        if _filters(identifier.get_create_plist()) != wanted:
            raise BadInputError(
                f"cannot recreate the filters of {dataset.name!r} exactly ({wanted}); "
                "rewrite the store with standard filters (h5repack) and try again"
            )
    created = h5py.Dataset(identifier)
    copy_attributes(dataset, created, skip_prefix)
    return created


def create_output(source_file, target_file, images, skip_prefix: str | None = None,
                  early_allocation: bool = False):
    """Copy ``source_file`` into ``target_file`` except the pixels of ``images``.

    ``images`` is the open images dataset of ``source_file`` (or its path). Returns the
    new, empty images dataset. Attributes of the images dataset starting with
    ``skip_prefix`` are not copied. ``early_allocation`` reserves the chunks of the images
    dataset at creation where that writes nothing (:func:`allocates_early_cheaply`), so
    they can be written in place by file offset.
    """
    if isinstance(images, str):
        images = source_file[images]
    created = _copy_tree(source_file["/"], target_file["/"], images, skip_prefix,
                         early_allocation)
    if created is None:  # pragma: no cover - the images path was validated before
        raise BadInputError(f"images dataset {images.name!r} not found while copying")
    return created


def copy_userblock(source: str, target: str, size: int) -> None:
    """Copy the user block (bytes before the HDF5 superblock) of ``source`` to ``target``."""
    if not size:
        return
    with open(source, "rb") as reader, open(target, "r+b") as writer:
        writer.write(reader.read(size))


@contextlib.contextmanager
def atomic_output(destination: str, overwrite: bool) -> Iterator[str]:
    """Yield a temporary path; on success it is fsynced and renamed to ``destination``.

    On any failure, ``KeyboardInterrupt`` included, the temporary file is removed and the
    destination is left as it was.
    """
    _remove_stale_temporaries(destination)
    temporary = temporary_path(destination)
    with contextlib.suppress(FileNotFoundError):
        os.remove(temporary)
    finished = False
    try:
        yield temporary
        fsync_path(temporary)
        if os.path.lexists(destination) and (not overwrite or is_key_file(destination)):
            raise BadInputError(
                f"destination {destination!r} appeared while fastmix was writing; it was left "
                "alone. Choose another path" + ("" if overwrite else f" or {hint('overwrite')}")
            )
        os.replace(temporary, destination)
        finished = True
        fsync_folder_of(destination)
    finally:
        if not finished:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
