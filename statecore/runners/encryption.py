"""Task results encrypted at rest (AES-256-GCM), switched on by the environment.

Set ``STATECORE_ENCRYPTION_KEY`` to a base64 key of 32 bytes (``python -m
statecore.runners.encryption`` prints a new one) and every task result a run stores
(and each Cached state's inputs) is written as a sealed value: AES-GCM with a fresh
96-bit nonce per value and, as associated data, where the value belongs (run id, task
key, map index, attempt, state). Whoever reads the log with the key (replay, resume,
``show``, ``export``, ``timeline``, the UI) gets the values back; without it they read as
:class:`Encrypted` placeholders (``<encrypted>``) and everything else still shows. A
body is never handed a placeholder: running a task whose input cannot be decrypted is
:class:`~statecore.errors.EncryptionError` naming the task and why (no key, a key other
than the one that wrote it, or a value altered).

The switch is the environment, not an argument: the key is needed wherever the log is
read (other processes, the command line), so it lives where secrets live, and a run
written without it reads as before. Not encrypted: messages, log lines, notes,
parameters, the graph and task names (see the README's
limits); secrets are scrubbed from all of those anyway.

Sealed value layout (the content of extension code :data:`CODE`)::

    b"\\x01" | key id (8: SHA-256 of the key) | nonce (12) | len(ad) (2, big-endian) | ad
    | ciphertext and tag (AES-GCM of the value's msgpack bytes, ``ad`` authenticated)

``ad`` is the msgpack of ``[run_id, task, index, attempt, state]``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from dataclasses import dataclass
from typing import Any

from statecore.errors import StatecoreError
from statecore.serialization import SEALED_CODE, note_opened, packb, register_sealed, unpackb

__all__ = [
    "CODE",
    "ENV_KEY",
    "Encrypted",
    "EncryptionError",
    "Sealed",
    "check_inputs",
    "find_encrypted",
    "current_key",
    "new_key",
    "seal",
    "unseal",
]

#: the environment variable holding the key (base64 of 32 bytes)
ENV_KEY = "STATECORE_ENCRYPTION_KEY"
#: the msgpack extension code of a sealed value (one of statecore's own codes)
CODE = SEALED_CODE
_VERSION = 1
_HEADER = 1 + 8 + 12 + 2


class EncryptionError(StatecoreError):
    """An encrypted value cannot be used: no key, another key, or altered bytes."""


def new_key() -> str:
    """A new random key, as ``STATECORE_ENCRYPTION_KEY`` takes it (base64 of 32 bytes)."""
    return base64.b64encode(os.urandom(32)).decode()


def _parse_key(text: str) -> bytes:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise EncryptionError(
            f"{ENV_KEY} must be the base64 of 32 random bytes (AES-256); make one with "
            "`python -m statecore.runners.encryption`"
        )
    return key


_parsed: dict[str, bytes] = {}


def current_key() -> bytes | None:
    """The key in ``STATECORE_ENCRYPTION_KEY`` (None when unset or empty).

    Raises:
        EncryptionError: the variable is set but is not base64 of 32 bytes, or the
            ``cryptography`` package is not installed.
    """
    text = os.environ.get(ENV_KEY)
    if not text:
        return None
    key = _parsed.get(text)
    if key is None:
        key = _parse_key(text)
        _aead(key)  # cryptography missing: say so now, not at the first result
        _parsed[text] = key
    return key


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:8]


@dataclass(frozen=True, slots=True)
class Sealed:
    """A value written encrypted: the recorder wraps a result in it before encoding."""

    blob: bytes


@dataclass(frozen=True, slots=True)
class Encrypted(Sealed):
    """A value the log holds encrypted that this process could not decrypt.

    Written again it is the same sealed bytes (a subclass of :class:`Sealed`).

    Attributes:
        blob: the sealed bytes.
        origin: ``(run_id, task, index, attempt, state)`` the value was written for, as
            the sealed bytes say (authenticated only once decrypted).
        reason: why it could not be decrypted.
    """

    origin: tuple[Any, ...]
    reason: str

    def __new__(cls, *args: Any, **kwargs: Any) -> Encrypted:
        # every placeholder is made here (decoded, copied or unpickled alike): until one
        # is, no input can hold one and check_inputs has nothing to look for
        _placeholders_made[0] = True
        return object.__new__(cls)

    def __repr__(self) -> str:
        return "<encrypted>"

    def error(self) -> EncryptionError:
        """The error to raise where the value is needed."""
        fields = [*self.origin, None, None, None, None][:4]
        run_id, task, index, attempt = fields
        where = task if index is None else f"{task}[{index}]"
        return EncryptionError(
            f"the result of task {where} (run {run_id!r}, attempt {attempt}) is encrypted "
            f"and cannot be read: {self.reason}"
        )


_ciphers: dict[bytes, Any] = {}
#: whether this process has made an :class:`Encrypted` placeholder yet
_placeholders_made = [False]


def _aead(key: bytes) -> Any:
    """The AES-GCM cipher of ``key``, made once (making one costs more than a seal)."""
    cipher = _ciphers.get(key)
    if cipher is None:
        try:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError as exc:
            raise EncryptionError(
                f"{ENV_KEY} is set but the cryptography package is not installed: "
                "pip install 'statecore[encryption]'"
            ) from exc
        cipher = _ciphers[key] = AESGCM(key)
    return cipher


def seal(value: Any, key: bytes, origin: tuple[Any, ...]) -> Sealed:
    """``value`` encrypted with ``key`` for ``origin`` (run id, task, index, attempt, state).

    Raises:
        SerializationError: ``value`` cannot be encoded (as it could not be unencrypted).
    """
    ad = packb(list(origin))
    nonce = os.urandom(12)
    body = _aead(key).encrypt(nonce, packb(value), ad)
    head = bytes([_VERSION]) + _key_id(key) + nonce + len(ad).to_bytes(2, "big")
    return Sealed(head + ad + body)


def unseal(blob: bytes, key: bytes | None) -> Any:
    """The value sealed in ``blob``, or an :class:`Encrypted` placeholder saying why not.

    Raises:
        ValueError: ``blob`` is not a sealed value at all (the fold reports it corrupt).
    """
    if len(blob) < _HEADER or blob[0] != _VERSION:
        raise ValueError("not a statecore sealed value (unknown version or truncated)")
    key_id, nonce = blob[1:9], blob[9:21]
    n_ad = int.from_bytes(blob[21:23], "big")
    ad, body = blob[_HEADER : _HEADER + n_ad], blob[_HEADER + n_ad :]
    if len(ad) != n_ad or len(body) < 16:
        raise ValueError("a sealed value is truncated")
    origin = unpackb(ad)
    if not isinstance(origin, list):
        raise ValueError("a sealed value's associated data is not a list")
    where = tuple(origin)
    if key is None:
        return Encrypted(blob, where, f"{ENV_KEY} is not set")
    if _key_id(key) != key_id:
        return Encrypted(
            blob,
            where,
            f"it was encrypted with another key (key id {key_id.hex()}; "
            f"{ENV_KEY} holds key id {_key_id(key).hex()})",
        )
    from cryptography.exceptions import InvalidTag

    try:
        plain = _aead(key).decrypt(nonce, body, ad)
    except InvalidTag:
        return Encrypted(blob, where, "its bytes were altered (the authentication tag fails)")
    # the origin is authenticated now; the reader checks it names the event it sits in
    note_opened(where)
    return unpackb(plain)


def _encode(value: Sealed) -> bytes:
    return value.blob


def _decode(blob: bytes) -> Any:
    try:
        key = current_key()
    except EncryptionError as exc:  # a malformed key reads as no key, saying so
        placeholder = unseal(blob, None)
        return Encrypted(blob, placeholder.origin, str(exc))
    return unseal(blob, key)


def find_encrypted(value: Any, depth: int = 0) -> Encrypted | None:
    """The first placeholder in ``value`` (looked for in lists, tuples and dict values,
    a few levels deep: where a mapped or reducing task's inputs carry results)."""
    if isinstance(value, Encrypted):
        return value
    if depth >= 4:
        return None
    items: Any = ()
    if isinstance(value, list | tuple):
        items = value
    elif isinstance(value, dict):
        items = value.values()
    for item in items:
        found = find_encrypted(item, depth + 1)
        if found is not None:
            return found
    return None


def placeholders_made() -> bool:
    """Whether any :class:`Encrypted` placeholder exists in this process yet (none can be
    in a task's inputs before one does)."""
    return _placeholders_made[0]


def check_inputs(task: str, inputs: dict[str, Any]) -> None:
    """Refuse to run ``task`` with an input the log holds encrypted but this process
    could not decrypt (a body must never get a placeholder for its data).

    Raises:
        EncryptionError: naming the input, where it came from and why.
    """
    for name, value in inputs.items():
        found = find_encrypted(value)
        if found is not None:
            raise EncryptionError(
                f"task {task} cannot run: its input {name!r} is unreadable: {found.error()}"
            )


if __name__ == "__main__":  # run as a command, the package's own copy is registered
    print(new_key())  # the module's command: a key for the environment
else:
    register_sealed(Sealed, _encode, _decode)
