"""Encryption of secret values at rest: AES-256-GCM under a fresh data key per value, the data key wrapped by the
server's master key with AES key wrap (RFC 3394). docs/secrets.md.

    value ──AES-256-GCM(data key, random 96-bit nonce, aad)──▶ ciphertext + tag
    data key (32 random bytes) ──AES-KW(master key)──▶ wrapped key (40 bytes)

The store keeps `key_id` (which master key wrapped it), the wrapped key, the nonce and the ciphertext; never the
plaintext nor the data key. The `aad` binds a ciphertext to its row (organization, name, version): a ciphertext
copied onto another row fails its integrity check instead of decrypting there.

The master key (32 bytes) comes from `SANDBURG_MASTER_KEY` (base64 or hex), else from the file
`SANDBURG_MASTER_KEY_FILE` (default `<data dir>/master.key`: 32 raw bytes, or their base64/hex text). A missing
file is generated (0600, created with O_EXCL, linked into place atomically); a file readable or writable by group or
others, or of the wrong length, stops the server with a message saying what to fix.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

log = logging.getLogger("sandburg.server")

KEY_BYTES = 32  # AES-256
NONCE_BYTES = 12
ENV_KEY = "SANDBURG_MASTER_KEY"


class MasterKeyError(Exception):
    """The master key cannot be used: the server refuses to start (the message says what to fix)."""


class DecryptError(Exception):
    """A stored value cannot be decrypted: another master key wrapped it, or its bytes were altered."""


@dataclass(frozen=True)
class Sealed:
    """An encrypted value as stored: nothing here reveals the plaintext without the master key."""

    key_id: str  # the master key's fingerprint (key_fingerprint), to tell "wrong key" from "tampered"
    wrapped_key: bytes
    nonce: bytes
    ciphertext: bytes  # AES-GCM output: encrypted value + 16-byte tag


def key_fingerprint(key: bytes) -> str:
    """A short public id of a master key (an HMAC of a constant: it reveals nothing about the key)."""
    return hmac.new(key, b"sandburg master key id", hashlib.sha256).hexdigest()[:16]


class MasterKey:
    """Seals and opens values. Holds the only copy of the master key in the server process."""

    def __init__(self, key: bytes) -> None:
        if len(key) != KEY_BYTES:
            raise MasterKeyError(f"the master key must be {KEY_BYTES} bytes, got {len(key)}")
        self._key = key
        self.key_id = key_fingerprint(key)

    def __repr__(self) -> str:
        return f"MasterKey(key_id={self.key_id!r})"  # never the key

    def seal(self, plaintext: bytes, aad: bytes) -> Sealed:
        data_key = AESGCM.generate_key(bit_length=256)
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, aad)
        return Sealed(self.key_id, aes_key_wrap(self._key, data_key), nonce, ciphertext)

    def open(self, sealed: Sealed, aad: bytes) -> bytes:
        if sealed.key_id != self.key_id:
            raise DecryptError(
                f"encrypted under master key {sealed.key_id}, but the server's master key is {self.key_id}: "
                f"start the server with the master key that was used to store it"
            )
        try:
            data_key = aes_key_unwrap(self._key, sealed.wrapped_key)
        except InvalidUnwrap:
            raise DecryptError(
                "the wrapped data key failed its integrity check (altered in the store)"
            ) from None
        try:
            return AESGCM(data_key).decrypt(sealed.nonce, sealed.ciphertext, aad)
        except InvalidTag:
            raise DecryptError(
                "the ciphertext failed its integrity check (altered, or moved to another row)"
            ) from None


def decode_key(text: str | bytes, where: str) -> bytes:
    """A 32-byte key from 64 hex digits or base64 (standard or URL-safe, padding optional)."""
    raw = text.strip() if isinstance(text, str) else text.strip().decode("ascii", "replace")
    if len(raw) == 2 * KEY_BYTES and all(c in "0123456789abcdefABCDEF" for c in raw):
        return bytes.fromhex(raw)
    try:
        key = base64.b64decode(raw.replace("-", "+").replace("_", "/") + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != KEY_BYTES:
        raise MasterKeyError(
            f"{where}: expected a {KEY_BYTES}-byte key as 64 hex digits or base64 (e.g. `head -c 32 /dev/urandom"
            " | base64`)"
        )
    return key


def load_master_key(path: str, env: Mapping[str, str] | None = None) -> tuple[MasterKey, str]:
    """The server's master key and where it came from: `SANDBURG_MASTER_KEY` in `env` (default: the process's),
    else the file `path`, created when missing."""
    env = os.environ if env is None else env
    if env.get(ENV_KEY):
        return MasterKey(decode_key(env[ENV_KEY], ENV_KEY)), ENV_KEY
    try:
        return MasterKey(_read_key_file(path)), path
    except FileNotFoundError:
        pass
    key = _create_key_file(path)
    log.warning(
        "generated a new secrets master key in %s (0600): back it up; without it, secrets are lost", path
    )
    return MasterKey(key), path


def _read_key_file(path: str) -> bytes:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise MasterKeyError(f"{path}: cannot open the master key file: {exc.strerror}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise MasterKeyError(f"{path}: the master key file is not a regular file")
        if st.st_mode & 0o077:
            raise MasterKeyError(
                f"{path}: the master key file has mode {stat.S_IMODE(st.st_mode):04o}; group and others must have "
                f"no access: chmod 600 {path}"
            )
        if st.st_uid != os.geteuid():
            raise MasterKeyError(
                f"{path}: the master key file must be owned by the server's user (uid {os.geteuid()})"
            )
        data = os.read(fd, 4096)
    finally:
        os.close(fd)
    return data if len(data) == KEY_BYTES else decode_key(data, path)


def _create_key_file(path: str) -> bytes:
    key = os.urandom(KEY_BYTES)
    os.makedirs(os.path.dirname(path) or ".", mode=0o711, exist_ok=True)
    tmp = f"{path}.{os.urandom(4).hex()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask
        os.write(fd, key)
        os.fsync(fd)
        os.close(fd)
        fd = -1
        try:
            # a link never replaces: if another server won the race, its key is the one
            os.link(tmp, path)
        except FileExistsError:
            return _read_key_file(path)
    finally:
        if fd >= 0:
            os.close(fd)
        os.unlink(tmp)
    return key
