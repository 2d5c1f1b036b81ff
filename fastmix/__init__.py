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
