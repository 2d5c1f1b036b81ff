r"""The ``fastmix_*`` attributes recorded on a mixed images dataset.

docs/format.md sections 3 and 5 specify them for other readers.

They hold the mixing parameters, the window length and the key check value. Never the key.

The record MAC
--------------
``fastmix_record_mac`` binds the record to the mixing key, to the labels and to the images'
shape and dtype, so that an edited record or relabelled images are refused before anything
is written instead of unmixing into wrong images. It is 64 lowercase hex characters:
``Key.mac("record", *parts)`` (:meth:`fastmix.keys.Key.mac`), that is HMAC-SHA256 with the
32-byte key over::

    b"fastmix/mac/v1\x00" + b"record" + b"\x00" + part_1 + part_2 + ...

where every part is framed as ``len(data)`` (8 bytes, little-endian) followed by ``data``,
and ``data`` is ``b"i"`` + a 16-byte little-endian signed integer, ``b"s"`` + UTF-8 text,
or ``b"b"`` + bytes. The parts, in order:

1. ``A``, the number of sealed attributes (integer). The sealed attributes are every
   attribute of the images dataset whose name starts with ``fastmix_``, except
   ``fastmix_record_mac`` itself and the in-place run's transient ``fastmix_state`` and
   ``fastmix_run``. So an attribute a later writer adds (a shard run id, say) is covered
   without a change here, provided it is written before the MAC.
2. For each sealed attribute, sorted by name (Unicode code points): its name (text), then
   its value's encoding (bytes), exact in type:

   - a variable-length string (h5py reads ``str``): ``b"u"`` + its UTF-8 bytes;
   - a fixed-length string (h5py reads ``bytes``): ``b"b"`` + its bytes (as h5py returns
     them, trailing NULs dropped);
   - a number, a boolean or an array of them (h5py reads a NumPy scalar or array):
     ``b"n"`` + the dtype in little-endian NumPy notation (``"<i8"``, ``"<f8"``, ``"|b1"``,
     ``"|u1"``) + ``b":"`` + the shape as comma-separated decimals (empty for a scalar) +
     ``b":"`` + the values' little-endian bytes in C order;
   - an array of variable-length items (h5py reads an ``object`` array): ``b"o"`` + the
     shape as above + ``b":"``, then for each item in C order its encoding, framed by its
     8-byte little-endian length.
3. The labels digest (bytes): SHA-256 of the labels dataset named by ``fastmix_labels``
   (default ``"labels"``), as the store holds it (raw, before fastmix decodes it): ``TAG``
   + ``b":"`` + its shape as above + ``b":"`` + its values, where for numbers, booleans
   and fixed-length strings ``TAG`` is the little-endian dtype (``"<i8"``, ``"|S5"``) and the
   values are their little-endian bytes in C order, and for variable-length strings
   ``TAG`` is ``vlen`` and each value is its bytes (UTF-8 for text) framed by its 8-byte
   little-endian length.
4. The images' rank (integer), then each dimension of their shape (integers).
5. The images' dtype in NumPy notation as h5py reports it (text: ``"|u1"``, ``"<u2"``,
   ``">f4"``).

:func:`write_mix_attributes` writes the MAC last; :func:`seal_record` writes it again
after a writer adds attributes of its own. :func:`check_record_mac` verifies it. A record
without a MAC (written before fastmix had one, or whose MAC was deleted) cannot be verified:
``unmix`` and ``verify`` refuse it unless the caller trusts it explicitly
(``trust_unsealed=True``, ``--trust-unsealed``), and then use it with a
:class:`~fastmix.errors.FastmixWarning`.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass

import numpy as np

from fastmix.errors import BadInputError, FastmixWarning, WrongKeyError, hint
from fastmix.keys import Key
from fastmix.spec import MixSpec

#: 2 adds ``fastmix_plan_rule`` (a store without it was planned with rule 1, by 0.1.0); a
#: reader of format 1 would unmix a rule-2 store wrongly, so it must refuse it.
FORMAT_VERSION = 2
PREFIX = "fastmix_"
#: State of the images dataset during and after an in-place run (:mod:`fastmix.store.inplace`).
STATE_ATTRIBUTE = "fastmix_state"
#: The identifier of the in-place run under way, matched against its journal's header.
RUN_ATTRIBUTE = "fastmix_run"
IN_PROGRESS = "in-progress"
COMPLETE = "complete"
#: The MAC that binds the record to the key, the labels and the images' shape and dtype.
RECORD_MAC_ATTRIBUTE = "fastmix_record_mac"
#: ``fastmix_*`` attributes the MAC leaves out: itself and the in-place run's transient state.
UNSEALED = frozenset({RECORD_MAC_ATTRIBUTE, STATE_ATTRIBUTE, RUN_ATTRIBUTE})
#: Labels read at a time for the labels digest (memory stays bounded whatever their number).
_DIGEST_BYTES = 16 << 20


@dataclass(frozen=True)
class MixRecord:
    """What a mixed store says about how it was mixed.

    Attributes
    ----------
    format_version : int
    spec : MixSpec
    window : int
        Window length in images.
    key_check : str
        The key's check value (:attr:`fastmix.Key.check_value`).
    labels : str
        Name of the labels dataset used.
    reversible : bool
    unpartnered : int
    """

    format_version: int
    spec: MixSpec
    window: int
    key_check: str
    labels: str
    reversible: bool
    unpartnered: int


def write_mix_attributes(dataset, spec: MixSpec, *, window: int, key_check: str,
                         labels: str, unpartnered: int, key: Key) -> None:
    """Record the mixing parameters on ``dataset`` (replacing older ``fastmix_*`` ones).

    The labels dataset ``labels`` must already be in ``dataset``'s file, as it will stay:
    the record is sealed last by its MAC under ``key`` (:func:`seal_record`), which covers
    the labels.
    """
    remove_mix_attributes(dataset)
    attrs = dataset.attrs
    attrs["fastmix_format_version"] = np.int64(FORMAT_VERSION)
    attrs["fastmix_mode"] = spec.mode
    attrs["fastmix_spec"] = spec.canonical()
    attrs["fastmix_plan_rule"] = np.int64(spec.plan_rule)
    if spec.computes_values and spec.hardening_format != 1:
        # Only where it changes bytes: stores of format 1 (and every reversible one) keep
        # the record they had.
        attrs["fastmix_hardening_format"] = np.int64(spec.hardening_format)
    if spec.block is not None:
        attrs["fastmix_block"] = np.asarray(spec.block, dtype=np.int64)
    else:
        attrs["fastmix_grid"] = np.asarray(spec.grid, dtype=np.int64)
    attrs["fastmix_donors"] = np.int64(spec.donors)
    attrs["fastmix_prob"] = np.float64(spec.prob)
    attrs["fastmix_rounds"] = np.int64(spec.rounds)
    attrs["fastmix_window"] = np.int64(window)
    attrs["fastmix_key_check"] = str(key_check)
    attrs["fastmix_labels"] = str(labels)
    attrs["fastmix_reversible"] = np.bool_(spec.reversible)
    attrs["fastmix_unpartnered"] = np.int64(unpartnered)
    seal_record(dataset, key)


def remove_mix_attributes(dataset) -> None:
    """Delete every ``fastmix_*`` attribute of ``dataset``."""
    for name in [name for name in dataset.attrs if name.startswith(PREFIX)]:
        del dataset.attrs[name]


def read_state(dataset) -> str | None:
    """Return the dataset's ``fastmix_state`` (``"in-progress"`` while an in-place run waits)."""
    state = dataset.attrs.get(STATE_ATTRIBUTE)
    return None if state is None else attribute_text(state)


def attribute_text(value) -> str:
    """Return an HDF5 attribute value (bytes, str or a 0-d array) as ``str``."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray) and value.shape == ():
        return attribute_text(value[()])
    return str(value)


def already_mixed_message(source: str, record: MixRecord) -> str:
    """Why a store that is already mixed is refused, and what can be done."""
    if record.reversible:
        how = "unmix it first with its key"
    else:
        how = ("it is one-way and cannot be unmixed, so mix the original store instead")
    return (f"store {source!r} is already mixed by fastmix; {how}, or {hint('force')} to mix "
            "it again")


def read_mix_record(dataset) -> MixRecord | None:
    """Return the record of a mixed dataset, or ``None`` when it carries no ``fastmix_*`` record.

    Raises
    ------
    BadInputError
        A record from a newer format, or one that is damaged.
    """
    attrs = dataset.attrs
    if "fastmix_format_version" not in attrs:
        return None
    where = f"images dataset {dataset.name!r}"
    try:
        version = _integer(attrs["fastmix_format_version"], "format_version", 1)
        if version > FORMAT_VERSION:
            raise BadInputError(
                f"{where} was mixed by a newer fastmix (store format {version}, this one "
                f"reads up to {FORMAT_VERSION}); upgrade fastmix"
            )
        spec_text = attribute_text(attrs["fastmix_spec"])
        if len(spec_text) > MAX_TEXT:
            raise ValueError(f"spec of {len(spec_text)} characters")
        data = json.loads(spec_text)
        if not isinstance(data, dict):
            raise ValueError("spec is not a JSON object")
        spec = MixSpec.from_dict(data)
        # Stores of format 1 (fastmix 0.1.0) carry no rule: they were planned with rule 1.
        spec = spec.with_plan_rule(_integer(attrs.get("fastmix_plan_rule", 1), "plan_rule", 1))
        # Stores without it (fastmix 0.3 and before) jittered and blurred with format 1.
        spec = spec.with_hardening_format(
            _integer(attrs.get("fastmix_hardening_format", 1), "hardening_format", 1))
        count = int(dataset.shape[0])
        window = _integer(attrs["fastmix_window"], "window", 1, max(count, 1))
        key_check = attribute_text(attrs["fastmix_key_check"])
        if len(key_check) != 16 or any(char not in "0123456789abcdef" for char in key_check):
            raise ValueError("key_check is not 16 hex digits")
        labels = attribute_text(attrs.get("fastmix_labels", "labels"))
        if not labels or len(labels) > MAX_TEXT:
            raise ValueError("labels name is empty or too long")
        reversible = attrs.get("fastmix_reversible", spec.reversible)
        if not isinstance(reversible, bool | np.bool_):
            raise ValueError(f"reversible is {reversible!r}")
        return MixRecord(
            format_version=version,
            spec=spec,
            window=window,
            key_check=key_check,
            labels=labels,
            reversible=bool(reversible),
            unpartnered=_integer(attrs.get("fastmix_unpartnered", 0), "unpartnered", 0, count),
        )
    except BadInputError as error:
        if "newer fastmix" in str(error):
            raise
        raise BadInputError(
            f"{where} has a damaged fastmix record ({error}); it cannot be unmixed"
        ) from None
    except (KeyError, ValueError, TypeError, OverflowError, UnicodeDecodeError) as error:
        raise BadInputError(
            f"{where} has a damaged fastmix record ({error}); it cannot be unmixed"
        ) from None


#: Longest text a record field may hold.
MAX_TEXT = 4096


def _integer(value, name: str, low: int, high: int | None = None) -> int:
    """Return a recorded integer; refuse it unless it is a whole number in ``[low, high]``."""
    array = np.asarray(value)
    if array.shape != () or array.dtype.kind not in "iu":
        raise ValueError(f"{name} is {value!r}, not an integer")
    number = int(array)
    if number < low or (high is not None and number > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} is {number}, outside {bound}")
    return number


# -- the record MAC ---------------------------------------------------------------------------


class _Unsealable(ValueError):
    """The record's MAC cannot be computed (no labels dataset, an unreadable value)."""


def seal_record(dataset, key: Key) -> None:
    """Write ``fastmix_record_mac``: the MAC of ``dataset``'s record under ``key``.

    Call it after the last ``fastmix_*`` attribute of the record is written (and after the
    labels are final); :func:`write_mix_attributes` does.
    """
    if RECORD_MAC_ATTRIBUTE in dataset.attrs:
        del dataset.attrs[RECORD_MAC_ATTRIBUTE]
    dataset.attrs[RECORD_MAC_ATTRIBUTE] = key.mac("record", *record_parts(dataset))


def record_parts(dataset, replaced: dict[str, str] | None = None) -> list:
    """Return the parts the record MAC covers, in order (see the module docstring).

    ``replaced`` gives some attributes another (text) value, to test what the record held.

    Raises
    ------
    ValueError
        The labels dataset is missing or unreadable, or an attribute cannot be encoded.
    """
    attrs = dataset.attrs
    names = sorted(name for name in attrs if name.startswith(PREFIX) and name not in UNSEALED)
    parts: list = [len(names)]
    replaced = replaced or {}
    for name in names:
        parts += [name, encode_attribute(replaced.get(name, attrs[name]))]
    labels = attribute_text(attrs.get("fastmix_labels", "labels"))
    parts.append(labels_digest(dataset.file, labels))
    parts += [len(dataset.shape), *(int(size) for size in dataset.shape), dataset.dtype.str]
    return parts


def encode_attribute(value) -> bytes:
    """Return the type-exact encoding of one attribute value (see the module docstring)."""
    if isinstance(value, str):
        return b"u" + value.encode("utf-8")
    if isinstance(value, bytes):
        return b"b" + bytes(value)
    array = np.asarray(value)
    shape = _shape_text(array.shape)
    if array.dtype.kind == "O":
        encoded = bytearray(b"o" + shape + b":")
        for item in array.reshape(-1).tolist():
            data = encode_attribute(item)
            encoded += len(data).to_bytes(8, "little") + data
        return bytes(encoded)
    if array.dtype.hasobject or array.dtype.kind not in "biufcSUV":
        raise _Unsealable(f"an attribute of dtype {array.dtype} cannot be sealed")
    array = _little_endian(array)
    return b"n" + array.dtype.str.encode() + b":" + shape + b":" + array.tobytes()


def labels_digest(file, name: str) -> bytes:
    """SHA-256 of the labels dataset ``name`` as ``file`` holds it (see the module docstring).

    Reads the labels a slice at a time, so memory stays bounded whatever their number.

    Raises
    ------
    ValueError
        There is no such dataset, or it cannot be read.
    """
    import h5py

    try:
        labels = file[name]
    except Exception as error:  # a missing or damaged object: h5py raises several types
        raise _Unsealable(f"labels dataset {name!r} cannot be opened ({error})") from None
    if not isinstance(labels, h5py.Dataset):
        raise _Unsealable(f"{name!r} is not a labels dataset")
    variable = labels.dtype.kind == "O"
    digest = hashlib.sha256((b"vlen" if variable else
                             _little_endian_dtype(labels.dtype).str.encode()) + b":"
                            + _shape_text(labels.shape) + b":")
    try:
        if labels.ndim == 0:
            _digest_values(digest, np.asarray(labels[()]), variable)
            return digest.digest()
        row = max(1, int(np.prod(labels.shape[1:], dtype=np.int64)) *
                  (64 if variable else labels.dtype.itemsize))
        step = max(1, _DIGEST_BYTES // row)
        for start in range(0, labels.shape[0], step):
            _digest_values(digest, labels[start:start + step], variable)
    except _Unsealable:
        raise
    except Exception as error:  # h5py raises several types for unreadable data
        raise _Unsealable(f"labels dataset {name!r} cannot be read ({error})") from None
    return digest.digest()


def _digest_values(digest, values: np.ndarray, variable: bool) -> None:
    if not variable:
        digest.update(_little_endian(np.asarray(values)).tobytes())
        return
    for item in np.asarray(values, dtype=object).reshape(-1).tolist():
        if isinstance(item, str):
            item = item.encode("utf-8")
        if not isinstance(item, bytes):
            raise _Unsealable(f"a label of type {type(item).__name__} cannot be digested")
        digest.update(len(item).to_bytes(8, "little") + item)


def _shape_text(shape: tuple) -> bytes:
    return ",".join(str(int(size)) for size in shape).encode()


def _little_endian_dtype(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("<") if dtype.byteorder in (">", "=") and \
        dtype.itemsize > 1 else dtype


def _little_endian(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=_little_endian_dtype(array.dtype))


def record_edited_message(path: str, detail: str | None = None) -> str:
    """Why a store whose record MAC does not verify is refused, and what to do."""
    because = f" ({detail})" if detail else ""
    return (f"store {path!r}: its fastmix record does not verify under this key{because}: the "
            "record was edited or the labels changed since mixing, and unmixing it would give "
            "wrong images; nothing was written. Restore the store from a copy, or use the "
            "key file it was mixed with")


def check_record_mac(dataset, path: str, key: Key, *, trust_unsealed: bool = False,
                     stacklevel: int = 1) -> None:
    """Refuse a record whose MAC does not verify under ``key``, or that has none.

    Call it after the key check value matched (a wrong key gets its own message first). A
    record without a MAC (mixed by fastmix 0.2 or older, or one whose MAC was deleted) cannot
    be told from an edited one, so it is refused unless ``trust_unsealed``; then it is used
    with a :class:`~fastmix.errors.FastmixWarning`, placed by ``stacklevel`` as
    :func:`warnings.warn` would from the caller.

    Raises
    ------
    BadInputError
        The record was edited or the labels changed since mixing (or the key is another
        one with the same check value), or it has no MAC and ``trust_unsealed`` is false.
    """
    if RECORD_MAC_ATTRIBUTE not in dataset.attrs:
        if not trust_unsealed:
            raise BadInputError(
                f"store {path!r} carries no record MAC, so an edit of its record or of its "
                "labels since mixing cannot be detected; a store mixed by fastmix 0.2 or older "
                f"has none: if this one was, and nobody could have edited it, "
                f"{hint('trust_unsealed')}")
        warnings.warn(
            f"store {path!r} carries no record MAC (it was mixed by an older fastmix): an "
            "edit of its record or of its labels since mixing cannot be detected",
            FastmixWarning, stacklevel=stacklevel + 1)
        return
    failure = _mac_failure(dataset, key)
    if failure is not None:
        raise BadInputError(record_edited_message(path, failure or None))


def check_key_and_record(dataset, path: str, key: Key, key_check: str,
                         wrong_key: WrongKeyError | None = None, *,
                         trust_unsealed: bool = False, stacklevel: int = 1) -> None:
    """Check ``key`` against the record's check value, then the record's MAC.

    A key whose check value differs is the wrong key (``wrong_key``, or the key's own
    message), unless the MAC verifies under it once the recorded check value is put back to
    the key's: then the key is right and the check value was edited, which is said so.

    Raises
    ------
    WrongKeyError
        The wrong key.
    BadInputError
        The record was edited or the labels changed since mixing.
    """
    try:
        key.verify(key_check)
    except WrongKeyError as error:
        if RECORD_MAC_ATTRIBUTE in dataset.attrs and _mac_failure(
                dataset, key, {"fastmix_key_check": key.check_value}) is None:
            raise BadInputError(record_edited_message(
                path, "its key check value was changed")) from None
        raise (wrong_key or error) from None
    check_record_mac(dataset, path, key, trust_unsealed=trust_unsealed,
                     stacklevel=stacklevel + 1)


def _mac_failure(dataset, key: Key, replaced: dict[str, str] | None = None) -> str | None:
    """``None`` when the record's MAC verifies under ``key``; else why not (``""``: it differs).

    ``replaced`` gives some attributes another text value (see :func:`record_parts`).
    """
    try:
        mac = attribute_text(dataset.attrs[RECORD_MAC_ATTRIBUTE])
        parts = record_parts(dataset, replaced)
    except (KeyError, ValueError, TypeError, UnicodeDecodeError) as error:
        return str(error)
    return None if key.verify_mac(mac, "record", *parts) else ""
