"""Keys: 32 secret random bytes from which every random choice derives.

The key file, the window seeds, the key check value and the MACs: docs/format.md section 3.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
import warnings
from pathlib import Path

from fastmix.errors import BadInputError, FastmixWarning, WrongKeyError, check_regular_file, hint

KEY_BYTES = 32
#: A key file holds 64 hex characters and a newline; fastmix reads no more than this.
KEY_FILE_MAX_BYTES = 256
_WINDOW_DOMAIN = b"fastmix/window-seed/v1\x00"
_CHECK_DOMAIN = b"fastmix/key-check/v1"
_MAC_DOMAIN = b"fastmix/mac/v1\x00"


def read_small_file(path: str, limit: int) -> bytes | None:
    """Return the bytes of the regular file ``path``, or ``None`` when it holds more than ``limit``.

    Opened without blocking, so a FIFO that replaced the file cannot hang the read.
    """
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            return None
        data = os.read(descriptor, limit + 1)
    finally:
        os.close(descriptor)
    return None if len(data) > limit else data


def is_key_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a fastmix key file, judged by its content (64 hex characters).

    No command writes an output over such a file, whatever ``--overwrite`` says.
    """
    text = os.fspath(path)
    try:
        if not stat.S_ISREG(os.stat(text).st_mode):
            return False
        content = read_small_file(text, KEY_FILE_MAX_BYTES)
    except OSError:
        return False
    if content is None:
        return False
    stripped = content.strip()
    return len(stripped) == 2 * KEY_BYTES and all(
        chr(byte) in "0123456789abcdefABCDEF" for byte in stripped)


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
        """Return a new key from the operating system's secure random source."""
        return cls(secrets.token_bytes(KEY_BYTES))

    @classmethod
    def from_hex(cls, text: str) -> Key:
        """Return a key from its 64 hexadecimal characters."""
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
    def load(cls, path: str | os.PathLike, strict: bool = False) -> Key:
        """Read a key file written by :meth:`save`.

        At most :data:`KEY_FILE_MAX_BYTES` are read. A key file that group or others may
        read is used with a :class:`~fastmix.errors.FastmixWarning` (as ssh warns about
        private keys), or refused with ``strict=True``.
        """
        text = os.fspath(path)
        if not os.path.lexists(text):
            raise BadInputError(f"key file {text!r} does not exist; check the path, or "
                                f"{hint('new_key')}")
        status = check_regular_file(text, "key file")
        try:
            content = read_small_file(text, KEY_FILE_MAX_BYTES)
        except PermissionError:
            raise BadInputError(f"key file {text!r} cannot be read: permission denied") from None
        if content is None:
            raise BadInputError(
                f"key file {text!r} is larger than {KEY_FILE_MAX_BYTES} bytes, so it is not a "
                "fastmix key file (64 hex characters); check the path"
            )
        try:
            key = cls.from_hex(content.decode("ascii"))
        except UnicodeDecodeError:
            raise BadInputError(f"key file {text!r} is not a fastmix key file") from None
        except BadInputError as error:
            raise BadInputError(f"key file {text!r} is malformed: {error}") from None
        exposed = stat.S_IMODE(status.st_mode) & 0o077
        if exposed:
            how = (f"key file {text!r} can be read by group or others (mode "
                   f"{stat.S_IMODE(status.st_mode):04o}); make it private: chmod 600 {text}")
            if strict:
                raise BadInputError(how)
            warnings.warn(how, FastmixWarning, stacklevel=2)
        return key

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
        """Return the 64-bit seed of one window: HMAC-SHA256(key, domain + spec + window index)."""
        message = _WINDOW_DOMAIN + canonical_spec.encode() + int(window_index).to_bytes(8, "little")
        digest = hmac.new(self._secret, message, hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "little")

    def mac(self, purpose: str, *parts: bytes | str | int) -> str:
        """Return HMAC-SHA256(key, domain + purpose + parts) as 64 hex characters.

        Binds a record (a store's mixing record, a shard, a journal header) to this key, so
        that an edited record is detected. Each part is length-prefixed, so no two different
        part lists give the same message. ``purpose`` names what is bound (for example
        ``"record"`` or ``"shard"``), so a MAC made for one purpose never verifies another.
        """
        message = bytearray(_MAC_DOMAIN + purpose.encode() + b"\x00")
        for part in parts:
            if isinstance(part, int):
                data = b"i" + int(part).to_bytes(16, "little", signed=True)
            elif isinstance(part, str):
                data = b"s" + part.encode()
            else:
                data = b"b" + bytes(part)
            message += len(data).to_bytes(8, "little") + data
        return hmac.new(self._secret, bytes(message), hashlib.sha256).hexdigest()

    def verify_mac(self, mac: str, purpose: str, *parts: bytes | str | int) -> bool:
        """Whether ``mac`` is :meth:`mac` of these parts under this key (constant time)."""
        return hmac.compare_digest(self.mac(purpose, *parts), str(mac))

    def hex(self) -> str:
        """Return the secret as 64 hex characters. Handle with care: this is the key itself."""
        return self._secret.hex()

    def __eq__(self, other: object) -> bool:
        """Compare the secrets in constant time."""
        return isinstance(other, Key) and hmac.compare_digest(self._secret, other._secret)

    def __hash__(self) -> int:
        """Hash the check value, never the secret."""
        return hash(self.check_value)

    def __repr__(self) -> str:
        """Show the check value only, never the secret."""
        return f"<fastmix.Key check={self.check_value}>"

    __str__ = __repr__

    def __reduce__(self):
        """Pickle the key (explicitly: Dask ships it to its workers)."""
        # Pickling is needed to ship a key to worker processes (Dask); it is explicit.
        return (Key, (self._secret,))
