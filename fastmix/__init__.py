"""fastmix: label-based pixel block mixing for privacy-preserving image training sets."""

from fastmix.errors import BadInputError, FastmixError, FastmixWarning, WrongKeyError
from fastmix.keys import Key
from fastmix.mixing import mix_array, unmix_array
from fastmix.spec import MixSpec

__version__ = "0.1.0"

__all__ = [
    "BadInputError",
    "FastmixError",
    "FastmixWarning",
    "Key",
    "MixSpec",
    "WrongKeyError",
    "__version__",
    "mix_array",
    "unmix_array",
]

# Store engine exports (lazy: importing them pulls in h5py).
_STORE_EXPORTS = {"mix_store": "fastmix.store.engine", "unmix_store": "fastmix.store.engine",
                  "StoreReport": "fastmix.store.report"}
__all__ += list(_STORE_EXPORTS)


def __getattr__(name: str):
    if name in _STORE_EXPORTS:
        import importlib

        return getattr(importlib.import_module(_STORE_EXPORTS[name]), name)
    raise AttributeError(f"module 'fastmix' has no attribute {name!r}")

# Image workflow exports (lazy: importing them pulls in h5py and imageio).
_IMAGE_EXPORTS = {"H5ImageDataset": "fastmix.dataset", "ingest_folder": "fastmix.images.ingest",
                  "export_store": "fastmix.images.export",
                  "preview_grid": "fastmix.images.preview"}
_STORE_EXPORTS.update(_IMAGE_EXPORTS)
__all__ += list(_IMAGE_EXPORTS)

# Store verification exports (lazy: importing them pulls in h5py).
_VERIFY_EXPORTS = {"verify_stores": "fastmix.verify", "VerifyResult": "fastmix.verify"}
_STORE_EXPORTS.update(_VERIFY_EXPORTS)
__all__ += list(_VERIFY_EXPORTS)
