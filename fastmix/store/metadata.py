"""The ``fastmix_*`` attributes recorded on a mixed images dataset (SPEC section 5).

They hold the mixing parameters, the window length and the key check value. Never the key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from fastmix.errors import BadInputError, hint
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
                         labels: str, unpartnered: int) -> None:
    """Record the mixing parameters on ``dataset`` (replacing older ``fastmix_*`` ones)."""
    remove_mix_attributes(dataset)
    attrs = dataset.attrs
    attrs["fastmix_format_version"] = np.int64(FORMAT_VERSION)
    attrs["fastmix_mode"] = spec.mode
    attrs["fastmix_spec"] = spec.canonical()
    attrs["fastmix_plan_rule"] = np.int64(spec.plan_rule)
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
