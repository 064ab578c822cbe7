"""Sandbox env values sealed at rest: AES-256-GCM under a key file beside the store.

A sandbox's ``env`` is mostly secrets (``OPENAI_API_KEY``), yet the store must keep it: a
gateway restarted after a crash re-adopts the sandbox, and a later ``restart`` of it sets the
env again in the fresh kernel. So the store keeps only :meth:`EnvSealer.seal`'s token, and the
key lives in its own file (``<store>.key``, mode 0600), created by the first gateway that opens
the store. Someone who gets the store file (a backup, a copied bug report, ``grep``) without
the key reads nothing; the sandbox id is the AEAD's associated data, so a token moved to
another row does not open either.

Example::

    sealer = EnvSealer.from_key_file(Path("/tmp/s.sqlite3.key"))
    token = sealer.seal({"OPENAI_API_KEY": "sk-..."}, "sbx_0123456789abcdef")
    assert sealer.open(token, "sbx_0123456789abcdef") == {"OPENAI_API_KEY": "sk-..."}
"""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .config import ConfigError

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12  # GCM's standard nonce; random per seal, 2**32 seals per key are safe
PREFIX = "aesgcm1:"  # names the scheme, so a later one can be told apart


class StoreKeyError(ConfigError):
    """The store's key file cannot be used safely (readable by others, wrong size, ...)."""


class UnsealError(ValueError):
    """A sealed value does not open with this key (another key, or it was tampered with)."""


def key_path_for(store_path: Path) -> Path:
    """The key file beside ``store_path``: ``history.sqlite3`` -> ``history.sqlite3.key``."""
    return store_path.with_name(store_path.name + ".key")


class EnvSealer:
    """Seals a sandbox's env into a text token and opens it again; see the module docstring.

    >>> sealer = EnvSealer(bytes(32))
    >>> token = sealer.seal({"K": "sk-secret"}, "sbx_1")
    >>> token.startswith("aesgcm1:") and "sk-secret" not in token
    True
    >>> sealer.open(token, "sbx_1")
    {'K': 'sk-secret'}
    >>> sealer.open(token, "sbx_2")
    Traceback (most recent call last):
    ...
    sandcell_gateway.sealing.UnsealError: the sealed env of sandbox 'sbx_2' does not open with this store's key
    """

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def from_key_file(cls, path: Path) -> EnvSealer:
        """Read the key at ``path``, creating it (mode 0600) if there is none yet."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except FileExistsError:
            return cls(_read_key(path))
        key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        with os.fdopen(fd, "wb") as file:
            file.write(key)
            file.flush()
            os.fsync(file.fileno())  # a crash right after must not leave a store with no key
        return cls(key)

    def seal(self, env: dict[str, str], sandbox_id: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, json.dumps(env).encode(), sandbox_id.encode())
        return PREFIX + base64.b64encode(nonce + sealed).decode()

    def open(self, token: str, sandbox_id: str) -> dict[str, str]:
        if not token.startswith(PREFIX):
            raise UnsealError(f"the env of sandbox {sandbox_id!r} is not sealed")
        raw = base64.b64decode(token[len(PREFIX):])
        try:
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], sandbox_id.encode())
        except InvalidTag:
            raise UnsealError(f"the sealed env of sandbox {sandbox_id!r} does not open with "
                              "this store's key") from None
        env: dict[str, str] = json.loads(plain)
        return env


def _read_key(path: Path) -> bytes:
    """The key, after refusing a file others could read or replace."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise StoreKeyError(f"cannot read the store key file {path}: {exc.strerror} "
                            "(it must be a regular file, not a symlink)") from exc
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        _check_key_file(path, info)
        key = file.read(KEY_BYTES + 1)
    if len(key) != KEY_BYTES:
        raise StoreKeyError(f"the store key file {path} holds {len(key)} bytes, not {KEY_BYTES}; "
                            "restore the right file, or remove it and the store together")
    return key


def _check_key_file(path: Path, info: os.stat_result) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise StoreKeyError(f"the store key file {path} is not a regular file")
    if info.st_uid != os.getuid():
        raise StoreKeyError(f"the store key file {path} belongs to uid {info.st_uid}, not to "
                            f"this gateway's uid {os.getuid()}; chown it")
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o077:
        raise StoreKeyError(f"the store key file {path} has mode {mode:04o}, so other users may "
                            f"read it; it must be readable by its owner only: chmod 600 {path}")
