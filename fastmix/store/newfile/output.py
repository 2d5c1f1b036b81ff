"""The output file of a new-file run: a copy of the source store but for the images' pixels.

Everything except the images dataset's pixels is copied (groups, datasets, named types,
links and attributes, with their exact types); the images dataset is created with the
source's own creation properties, so it keeps shape, maxshape, dtype, chunking, fill value
and every lossless filter. No original pixel is left under any name; the rules, by kind:

- **Hard links.** Objects are copied by identity (their header address), not by name:
  every name of one object is a hard link to one object in the output. A second name of
  the images dataset is therefore a name of the *mixed* images, and a group reached twice
  (or through a cycle) is copied once.
- **Soft links** are copied as they are. Paths are kept, so a soft link to the images
  resolves to the mixed images in the output.
- **External links** are left out, with a :class:`~fastmix.errors.FastmixWarning` naming
  them: the output never keeps a live link to another file, which could be the original.
  An images or labels dataset that is itself reached through an external link (stored in
  another file) is refused before anything is written
  (:func:`~fastmix.store.hdf5.lowlevel.require_stored_here`).
- **Object and region references**, in datasets and attributes (also inside compound and
  variable-length types), are re-made to the corresponding object of the output, so a
  reference to the images points at the mixed images. A reference to an object the output
  does not hold (dangling, or behind a link that was left out) becomes a null reference,
  and a value h5py cannot write back (variable-length references in an attribute other
  than a dimension scale's) is left out; a warning says so. None is copied as a raw
  address (HDF5's own copy would keep some that way, pointing at unrelated objects).
- **Dimension scales** are re-attached between the output's objects (HDF5's
  ``DIMENSION_LIST`` and ``REFERENCE_LIST`` hold raw references, which would dangle).
- **Datasets whose data lives in other files** (external raw files, virtual datasets):
  their creation properties name those files, and copying them would make every write to
  the output land there. Such a dataset is written into the output file as contiguous
  storage instead, and a warning says so; one that may read the images' pixels (a virtual
  dataset mapping the images, in this file or through others, or external raw storage in
  the source file or a shard of its images) is left out, with a warning.
- **Lossy filters** on the images dataset (:func:`~fastmix.store.hdf5.lowlevel.lossy_filter`:
  scale-offset on floating point or with an integer scale factor below the type's width,
  ZFP, SZ, SZ3, SPERR, fpzip, JPEG, Blosc2 with TRUNC_PREC, any filter fastmix does not
  know) are left out of the output's images, whatever the spec: the images are stored
  with the other filters, exactly as mixed (a larger file), and a warning names the
  filter. Writing through a lossy filter would change the mixed values, so unmix and
  ``verify`` could not give back what fastmix read. Integer scale-offset with factor 0
  (HDF5 computes the bits) or the full width is lossless and kept. Other datasets keep
  their filters (their stored chunks are copied, never re-encoded). In-place mode refuses
  a lossy filter (:func:`~fastmix.store.hdf5.lowlevel.require_in_place_safe`).
"""

from __future__ import annotations

import os
import warnings

import numpy as np

from fastmix.errors import BadInputError, FastmixWarning
from fastmix.store.durable.atomic import same_path
from fastmix.store.hdf5.chunks import first_shard, template_dataset
from fastmix.store.hdf5.lowlevel import (
    foreign_layout,
    lossy_filter,
    object_address,
    plist_filters,
    require_stored_here,
    same_file,
)

#: Bytes copied at a time when a dataset kept in other files is copied into the output.
_COPY_SLAB = 16 << 20
#: References re-made at a time (each is a Python object while it is mapped).
_REFERENCE_SLAB = 1 << 16


def copy_attributes(source, target, skip_prefix: str | None = None) -> None:
    """Copy every attribute of ``source`` onto ``target`` with its exact type.

    Attributes that hold object or region references are left out: their values are
    addresses in the source file, which would dangle in another file (a new-file copy
    re-creates them, see :func:`create_output`).
    """
    for name in source.attrs:
        if skip_prefix and name.startswith(skip_prefix):
            continue
        dtype = source.attrs.get_id(name).dtype
        if holds_references(dtype):
            continue
        target.attrs.create(name, source.attrs[name], dtype=dtype)


def holds_references(dtype) -> bool:
    """Whether values of ``dtype`` hold HDF5 object or region references (at any depth)."""
    import h5py

    if h5py.check_ref_dtype(dtype) is not None:
        return True
    if dtype.fields:
        return any(holds_references(field[0]) for field in dtype.fields.values())
    if dtype.subdtype is not None:
        return holds_references(dtype.subdtype[0])
    inner = h5py.check_vlen_dtype(dtype)
    return inner is not None and inner not in (str, bytes) and holds_references(inner)


class _Unmappable(Exception):
    """A value holds references in a form fastmix does not re-create."""


class _TreeCopy:
    """One copy of a source file's objects into a new file, by the rules of the module doc.

    Objects are identified by their header address, so every name of one object (hard
    links, the images included) gives one object in the output, and references and
    dimension scales are re-made to the output's objects. Objects are held by path, not
    open, so that a file of many objects costs a path each.
    """

    def __init__(self, images, target_file, skip_prefix: str | None, early_allocation: bool):
        self.images = images
        self.source_file = images.file
        self.target_file = target_file
        self.images_address = object_address(images)
        self.skip_prefix = skip_prefix
        self.early_allocation = early_allocation
        self.copied: dict[int, str] = {}  # source object address -> its path in the output
        self.fixups: list[tuple[str, str]] = []  # (source, output) paths holding references
        self.created = None
        self.dropped: list[str] = []
        self.nulled = 0

    def keep(self, source, target) -> None:
        import h5py

        self.copied[object_address(source)] = target.name
        if any(holds_references(source.attrs.get_id(name).dtype) for name in source.attrs) \
                or (isinstance(source, h5py.Dataset) and holds_references(source.dtype)):
            self.fixups.append((source.name, target.name))

    def run(self, source_root, target_root):
        copy_attributes(source_root, target_root)
        self.keep(source_root, target_root)
        pending = [("/", "/")]  # groups still to copy, by path: any depth, bounded memory
        while pending:
            source_path, target_path = pending.pop()
            pending.extend(self.copy_group(self.source_file[source_path],
                                           self.target_file[target_path]))
        self.fix_references()
        self.warn()
        return self.created

    def copy_group(self, source_group, target_group) -> list[tuple[str, str]]:
        """Copy the links of one group; return the new groups whose links are to copy."""
        import h5py

        groups = []
        for name in source_group:
            path = f"{source_group.name.rstrip('/')}/{name}"
            try:
                link = source_group.get(name, getlink=True)
            except TypeError:  # a user-defined link type h5py cannot show
                self.dropped.append(f"{path} (a user-defined link)")
                continue
            if isinstance(link, h5py.SoftLink):
                # Paths are kept, so it resolves to the output's object at that path.
                target_group[name] = link
                continue
            if isinstance(link, h5py.ExternalLink):
                self.dropped.append(f"{path} (an external link to {link.filename}:{link.path})")
                continue
            item = source_group[name]
            target = self.copied.get(object_address(item))
            if target is not None:  # another name of an object already copied
                target_group[name] = self.target_file[target]
            elif object_address(item) == self.images_address and same_file(item, self.images):
                self.created = _create_like(self.images, target_group, name, self.skip_prefix,
                                            self.early_allocation)
                self.keep(self.images, self.created)
            elif isinstance(item, h5py.Group):
                group = h5py.Group(h5py.h5g.create(target_group.id, name.encode(),
                                                   gcpl=item.id.get_create_plist()))
                copy_attributes(item, group)
                self.keep(item, group)
                groups.append((item.name, group.name))
            elif isinstance(item, h5py.Dataset) and foreign_layout(item) is not None:
                if self.may_read_images(item):
                    self.dropped.append(f"{path} ({foreign_layout(item)} that may read the images)")
                else:
                    self.keep(item, _copy_inside(item, target_group, name))
            else:
                source_group.copy(item, target_group, name=name)
                self.keep(item, target_group[name])
        return groups

    def may_read_images(self, dataset) -> bool:
        """:meth:`reads_images`, and ``True`` where its layout cannot even be followed."""
        try:
            return self.reads_images(dataset)
        except Exception:  # a damaged or crafted mapping: never copied in
            return True

    def reads_images(self, dataset, depth: int = 4) -> bool:
        """Whether ``dataset`` (virtual or external) may read the images' pixels.

        Followed through virtual mappings up to ``depth`` levels; a mapping that cannot be
        followed (a printf-style file name, too deep) counts as reading them.
        """
        import h5py

        if same_file(dataset, self.images) and object_address(dataset) == self.images_address:
            return True
        dcpl = dataset.id.get_create_plist()
        holders = [self.source_file.filename, *_virtual_files(self.images)]
        for index in range(dcpl.get_external_count()):
            name = dcpl.get_external(index)[0].decode(errors="replace")
            if any(same_path(candidate, holder) for candidate in _candidates(dataset, name)
                   for holder in holders):
                return True
        if not dataset.is_virtual:
            return False
        if depth == 0:
            return True
        for mapping in dataset.virtual_sources():
            name = mapping.file_name
            if "%" in name:
                return True
            if name == ".":
                if self.maps_images(dataset.file, mapping.dset_name, depth):
                    return True
                continue
            for candidate in _candidates(dataset, name):
                if not os.path.isfile(candidate):
                    continue
                if any(same_path(candidate, shard) for shard in holders[1:]):
                    return True
                if same_path(candidate, self.source_file.filename):
                    if self.maps_images(self.source_file, mapping.dset_name, depth):
                        return True
                    continue
                try:
                    other = h5py.File(candidate, "r")
                except OSError:  # HDF5 cannot read it either: it reads as fill values
                    continue
                with other:
                    if self.maps_images(other, mapping.dset_name, depth):
                        return True
        return False

    def maps_images(self, file, name: str, depth: int) -> bool:
        """Whether the dataset ``name`` of ``file`` (a virtual source) may read the images."""
        import h5py

        try:
            inner = file.get(name)
        except Exception:  # a name HDF5 cannot resolve reads as fill values
            return False
        return isinstance(inner, h5py.Dataset) and self.reads_images(inner, depth - 1)

    # -- references and dimension scales, once every object is in the output

    def fix_references(self) -> None:
        import h5py

        scaled = []
        for source_path, target_path in self.fixups:
            source, target = self.source_file[source_path], self.target_file[target_path]
            images = object_address(source) == self.images_address
            for name in source.attrs:
                if self.skip_prefix and images and name.startswith(self.skip_prefix):
                    continue
                dtype = source.attrs.get_id(name).dtype
                if not holds_references(dtype):
                    continue
                if name in target.attrs:
                    del target.attrs[name]  # H5Ocopy copied the source's raw addresses
                if name == "DIMENSION_LIST":
                    scaled.append((source_path, target_path))
                if name in ("DIMENSION_LIST", "REFERENCE_LIST"):
                    continue  # re-made by attaching the scales below
                try:
                    target.attrs.create(name, self.mapped(source.attrs[name], dtype),
                                        dtype=dtype)
                except Exception:  # a form h5py cannot write back: left out
                    self.dropped.append(f"attribute {name!r} of {source.name} (references)")
            if isinstance(source, h5py.Dataset) and holds_references(source.dtype):
                self.map_dataset(source, target)
        for source_path, target_path in scaled:
            source, target = self.source_file[source_path], self.target_file[target_path]
            if isinstance(source, h5py.Dataset):
                self.attach_scales(source, target)

    def mapped(self, value, dtype):
        """``value`` with every reference replaced by one to the output's object."""
        import h5py

        kind = h5py.check_ref_dtype(dtype)
        if kind is not None:
            array = np.asarray(value, dtype=object)
            out = np.empty(array.shape, dtype=dtype)  # h5py's reference dtype
            for index, reference in enumerate(array.flat):
                out.flat[index] = self.reference(reference, kind)
            return out if np.ndim(value) else out[()]
        if dtype.fields:
            out = np.array(value, dtype=value.dtype, copy=True)
            for field, (field_dtype, *_) in dtype.fields.items():
                if holds_references(field_dtype):
                    out[field] = self.mapped(np.asarray(value[field]), field_dtype)
            return out
        inner = h5py.check_vlen_dtype(dtype)
        if inner is not None and inner not in (str, bytes) and np.ndim(value):
            array = np.asarray(value, dtype=object)
            out = np.empty(array.shape, dtype=object)
            for index, element in enumerate(array.flat):
                out.flat[index] = self.mapped(np.asarray(element), np.dtype(inner))
            return out
        raise _Unmappable(dtype)

    def reference(self, reference, kind):
        """Return the output's reference for a source reference (null where none is there)."""
        import h5py

        region = kind is h5py.RegionReference
        null = h5py.RegionReference() if region else h5py.Reference()
        if not reference:
            return null
        try:
            target = self.target_file[self.copied[object_address(
                h5py.h5r.dereference(reference, self.source_file.id))]]
            if not region:
                return target.ref
            space = h5py.h5r.get_region(reference, self.source_file.id)
            return h5py.h5r.create(target.id, b".", h5py.h5r.DATASET_REGION, space)
        except Exception:  # dangling, or to an object the output leaves out
            self.nulled += 1
            return null

    def map_dataset(self, source, target) -> None:
        import h5py

        if source.shape is None or source.size == 0:
            return
        try:
            inner = h5py.check_vlen_dtype(source.dtype)
            vlen = inner is not None
            if source.ndim == 0:
                target[()] = (self.mapped(np.asarray(source[()]), np.dtype(inner)) if vlen
                              else self.mapped(source[...], source.dtype))
                return
            row = max(1, int(source.size // max(source.shape[0], 1)))
            step = max(1, _REFERENCE_SLAB // row)
            for start in range(0, source.shape[0], step):
                stop = min(start + step, source.shape[0])
                slab = self.mapped(source[start:stop], source.dtype)
                if not vlen:
                    target[start:stop] = slab
                    continue
                for index in np.ndindex(slab.shape):  # h5py writes these one at a time
                    target[(start + index[0], *index[1:])] = slab[index]
        except Exception:  # a form fastmix or h5py cannot write back
            # HDF5's copy keeps some references as raw addresses: none is left to dangle.
            del self.target_file[target.name]
            self.dropped.append(f"{source.name} (references fastmix cannot re-make)")

    def attach_scales(self, source, target) -> None:
        import h5py

        for axis in range(source.ndim):
            found: list[int] = []
            try:
                if not h5py.h5ds.get_num_scales(source.id, axis):
                    continue
                h5py.h5ds.iterate(source.id, axis, _collector(found))
            except Exception:  # a damaged or crafted DIMENSION_LIST
                self.dropped.append(f"the dimension scales of {source.name} axis {axis}")
                continue
            for address in found:
                try:
                    scale = self.target_file[self.copied[address]]
                    h5py.h5ds.attach_scale(target.id, scale.id, axis)
                except Exception:
                    self.dropped.append(f"a dimension scale of {source.name} axis {axis}")

    def warn(self) -> None:
        if self.nulled:
            self.dropped.append(f"{self.nulled} object reference(s) to objects the output "
                                "does not hold (null references there)")
        if not self.dropped:
            return
        shown = "; ".join(self.dropped[:5])
        more = f"; and {len(self.dropped) - 5} more" if len(self.dropped) > 5 else ""
        warnings.warn(f"the output leaves out what it cannot copy safely (it would reach the "
                      f"source's pixels or another file, or dangle): {shown}{more}",
                      FastmixWarning, stacklevel=4)


def _collector(found: list[int]):
    def collect(scale) -> None:
        found.append(object_address(scale))

    return collect


def _virtual_files(dataset) -> list[str]:
    """Return the existing files a virtual dataset maps (none for a stored dataset)."""
    if not dataset.is_virtual:
        return []
    return [candidate for mapping in dataset.virtual_sources() if mapping.file_name != "."
            for candidate in _candidates(dataset, mapping.file_name)
            if os.path.isfile(candidate)]


def _candidates(dataset, name: str) -> list[str]:
    """Where HDF5 may look for a file a dataset names: as given, or beside its own file."""
    if os.path.isabs(name):
        return [name]
    return [name, os.path.join(os.path.dirname(os.path.abspath(dataset.file.filename)), name)]


def _layout_warning(dataset, layout: str) -> None:
    warnings.warn(
        f"dataset {dataset.name!r} of the source is {layout}; the output holds its data as "
        "contiguous storage inside the output file (those files are read, never written)",
        FastmixWarning, stacklevel=2)


def _copy_inside(dataset, group, name: str):
    """Copy a dataset kept in other files into contiguous storage inside ``group``'s file."""
    layout = foreign_layout(dataset)
    assert layout is not None  # only a dataset kept in other files is copied in
    _layout_warning(dataset, layout)
    copy = group.create_dataset(name, shape=dataset.shape, dtype=dataset.dtype)
    copy_attributes(dataset, copy)
    if dataset.shape is None or dataset.size == 0:
        return copy
    if dataset.ndim == 0:
        copy[()] = dataset[()]
        return copy
    row = max(1, dataset.dtype.itemsize * int(dataset.size // max(dataset.shape[0], 1)))
    step = max(1, _COPY_SLAB // row)
    for start in range(0, dataset.shape[0], step):
        stop = min(start + step, dataset.shape[0])
        copy[start:stop] = dataset[start:stop]
    return copy


def _filters(plist) -> list[tuple[int, int, tuple[int, ...]]]:
    return [(stored.code, stored.flags, stored.values) for stored in plist_filters(plist)]


def _lossless_plist(dataset, warn: bool = True):
    """Return the creation properties of ``dataset`` less its lossy filters, with a warning.

    Writing mixed pixels through a lossy filter would change them, and unmix could not give
    back the values fastmix read; the copy keeps every other filter.
    """
    dcpl = dataset.id.get_create_plist()
    for stored in plist_filters(dcpl):
        reason = lossy_filter(stored)
        if reason is None:
            continue
        dcpl.remove_filter(stored.code)
        if warn:
            warnings.warn(
                f"images dataset {dataset.name!r} of the source uses the lossy filter "
                f"{reason}; the output stores the images without it (exact values, a larger "
                "file), so that unmix gives back exactly the values fastmix read",
                FastmixWarning, stacklevel=4)
    return dcpl


def allocates_early_cheaply(dataset) -> bool:
    """Whether a copy of ``dataset`` can have its chunks allocated at creation for free.

    True for chunked datasets of fixed shape without a user-defined fill value whose copy
    is unfiltered (no filters, or only lossy ones, which the copy leaves out). Their copy
    gets early allocation and fill time "never": HDF5 reserves every chunk at creation
    without writing zeros into it, and the chunks are then written in place at their file
    offsets. Every chunk is written, and a fixed shape never grows new ones, so
    neither property changes what the dataset reads.
    """
    import h5py

    if dataset.chunks is None or tuple(dataset.maxshape) != tuple(dataset.shape):
        return False
    dcpl = dataset.id.get_create_plist()
    return all(lossy_filter(stored) for stored in plist_filters(dcpl)) and \
        dcpl.fill_value_defined() != h5py.h5d.FILL_VALUE_USER_DEFINED


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

    if first_shard(dataset) is not None:
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
    dcpl = _lossless_plist(dataset)
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
        dcpl = _lossless_plist(dataset, warn=False)
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
    require_stored_here(source_file.filename, source_file, "images", images)
    created = _TreeCopy(images, target_file, skip_prefix, early_allocation).run(
        source_file["/"], target_file["/"])
    if created is None:  # pragma: no cover - the images path was validated before
        raise BadInputError(f"images dataset {images.name!r} not found while copying")
    return created


def replace_dataset(dataset, path: str, make):
    """Replace ``dataset`` under every one of its names by the dataset ``make`` creates.

    ``make(parent, name)`` creates the new dataset at ``path`` (the images' own path in the
    source). Every other hard-link name of the old dataset (a copy of the source's other names
    for the images, :class:`_TreeCopy`) is made a name of the new one, so that no name is left
    on the old, empty object; soft links resolve by path and need nothing. Returns the new
    dataset.
    """
    import h5py

    file, address = dataset.file, object_address(dataset)
    names: list[str] = []

    def look(name: str, link) -> None:
        if isinstance(link, h5py.HardLink) and object_address(file[name]) == address:
            names.append("/" + name)

    file.visititems_links(look)
    for name in names:
        del file[name]
    parent_path, _, base = path.rpartition("/")
    created = make(file[parent_path or "/"], base)
    for name in names:
        if name != created.name:
            file[name] = created
    return created


def copy_userblock(source: str, target: str, size: int) -> None:
    """Copy the user block (bytes before the HDF5 superblock) of ``source`` to ``target``."""
    if not size:
        return
    with open(source, "rb") as reader, open(target, "r+b") as writer:
        writer.write(reader.read(size))
