"""Keys: 32 secret random bytes from which every random choice derives (SPEC section 3)."""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from fastmix.errors import BadInputError, WrongKeyError

KEY_BYTES = 32
_WINDOW_DOMAIN = b"fastmix/window-seed/v1\x00"
_CHECK_DOMAIN = b"fastmix/key-check/v1"


class Key:
    """A secret mixing key.

    The key bytes are never shown: not in ``repr``, ``str``, logs or stores. What may be
    shown is the :attr:`check_value`, a one-way fingerprint stored with mixed data so that
    unmixing with the wrong key fails clearly.

    Examples
    --------
    >>> key = Key.generate()
    >>> key.save("my.key")            # doctest: +SKIP
    >>> key = Key.load("my.key")      # doctest: +SKIP
    """

    __slots__ = ("_secret",)

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, bytes | bytearray) or len(secret) != KEY_BYTES:
            raise BadInputError(f"a key is exactly {KEY_BYTES} bytes")
        self._secret = bytes(secret)

    @classmethod
    def generate(cls) -> Key:
        """A new key from the operating system's secure random source."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_hex(cls, text: str) -> Key:
        """A key from its 64 hexadecimal characters."""
        text = text.strip()
        if len(text) != 2 * KEY_BYTES:
            raise BadInputError(
                f"a key is {2 * KEY_BYTES} hexadecimal characters, found {len(text)}; "
                "use a file written by 'fastmix mix --new-key' or Key.save"
            )
        try:
            return cls(bytes.fromhex(text))
        except ValueError:
            raise BadInputError(
                "the key holds characters that are not hexadecimal; use a file written by "
                "'fastmix mix --new-key' or Key.save"
            ) from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Key:
        """Read a key file written by :meth:`save`."""
        path = Path(path)
        try:
            text = path.read_text(encoding="ascii")
        except FileNotFoundError:
            raise BadInputError(
                f"key file {str(path)!r} does not exist; create one with --new-key"
            ) from None
        except IsADirectoryError:
            raise BadInputError(f"key file {str(path)!r} is a directory, not a key file") from None
        except (UnicodeDecodeError, ValueError):
            raise BadInputError(f"key file {str(path)!r} is not a fastmix key file") from None
        except PermissionError:
            raise BadInputError(
                f"key file {str(path)!r} cannot be read: permission denied"
            ) from None
        try:
            return cls.from_hex(text)
        except BadInputError as error:
            raise BadInputError(f"key file {str(path)!r} is malformed: {error}") from None

    def save(self, path: str | os.PathLike) -> None:
        """Write the key as 64 hex characters to a new file with mode 0600.

        An existing file is never overwritten.
        """
        path = Path(path)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise BadInputError(
                f"key file {str(path)!r} already exists; fastmix never overwrites a key. "
                "Use it with --key-file, or choose another path"
            ) from None
        except (FileNotFoundError, NotADirectoryError):
            raise BadInputError(
                f"cannot create key file {str(path)!r}: its folder does not exist"
            ) from None
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(self._secret.hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())

    @property
    def check_value(self) -> str:
        """First 8 bytes of HMAC-SHA256(key, check string), as 16 hex characters."""
        return hmac.new(self._secret, _CHECK_DOMAIN, hashlib.sha256).digest()[:8].hex()

    def verify(self, check_value: str) -> None:
        """Raise :class:`WrongKeyError` unless this key produced ``check_value``."""
        if not hmac.compare_digest(self.check_value, str(check_value)):
            raise WrongKeyError(
                "wrong key: its check value does not match the one stored with the data; "
                "use the key file the data was mixed with"
            )

    def window_seed(self, canonical_spec: str, window_index: int) -> int:
        """The 64-bit seed of one window: HMAC-SHA256(key, domain + spec + window index)."""
        message = _WINDOW_DOMAIN + canonical_spec.encode() + int(window_index).to_bytes(8, "little")
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "little")

    def hex(self) -> str:
        """The secret as 64 hex characters. Handle with care: this is the key itself."""
        return self._secret.hex()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Key) and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        return hash(self.check_value)

    def __repr__(self) -> str:
        return f"<fastmix.Key check={self.check_value}>"

    __str__ = __repr__

    def __reduce__(self):
        # Pickling is needed to ship a key to worker processes (Dask); it is explicit.
        return (Key, (self._secret,))
