"""fastmix: label-based pixel block mixing for privacy-preserving image training sets."""

from fastmix.errors import (
    BadInputError,
    BadInputTypeError,
    DamagedChunkError,
    FastmixError,
    FastmixWarning,
    InPlaceRunStopped,
    JournalDamaged,
    JournalError,
    UnreadableImageError,
    UnsupportedFilterError,
    WorkerError,
    WrongKeyError,
)
from fastmix.keys import Key
from fastmix.mixing import mix_array, unmix_array
from fastmix.spec import MixSpec

__version__ = "0.1.0"

# Imported on first use: these pull in h5py, imageio or Pillow.
_LAZY_EXPORTS = {
    "mix_store": "fastmix.store.engine",
    "unmix_store": "fastmix.store.engine",
    "StoreReport": "fastmix.store.report",
    "H5ImageDataset": "fastmix.dataset",
    "ChunkShuffleSampler": "fastmix.dataset",
    "ingest_folder": "fastmix.images.ingest",
    "export_store": "fastmix.images.export",
    "preview_grid": "fastmix.images.preview",
    "verify_stores": "fastmix.verify",
    "VerifyResult": "fastmix.verify",
    "utility": "fastmix.audit.deep",
}

__all__ = [
    "BadInputError",
    "BadInputTypeError",
    "DamagedChunkError",
    "FastmixError",
    "FastmixWarning",
    "InPlaceRunStopped",
    "JournalDamaged",
    "JournalError",
    "Key",
    "MixSpec",
    "UnreadableImageError",
    "UnsupportedFilterError",
    "WorkerError",
    "WrongKeyError",
    "__version__",
    "mix_array",
    "unmix_array",
    *_LAZY_EXPORTS,
]


def __getattr__(name: str):
    if name in _LAZY_EXPORTS:
        from importlib import import_module

        return getattr(import_module(_LAZY_EXPORTS[name]), name)
    raise AttributeError(f"module 'fastmix' has no attribute {name!r}")


def __dir__() -> list[str]:
    # the lazy names too, which tab completion and dir() would otherwise miss
    return sorted({*globals(), *_LAZY_EXPORTS})
