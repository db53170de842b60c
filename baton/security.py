"""Tokens and secrets at rest.

API and user-group tokens carry 256 random bits, so a plain SHA-256 is a sound at-rest hash
(no password stretching needed) and lets a lookup be one indexed equality. Secrets that must be
read back (provider keys) are encrypted with a key derived from the settings' secret key."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

if TYPE_CHECKING:
    from baton.settings import Settings

API_TOKEN_PREFIX = "bt_"
USER_GROUP_TOKEN_PREFIX = "btug_"
# How much of a token is stored in clear so a person can tell their tokens apart.
VISIBLE_PREFIX_LENGTH = 10


def new_token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def visible_prefix(token: str) -> str:
    return token[:VISIBLE_PREFIX_LENGTH]


def tokens_match(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)


class SecretBox:
    """Encrypts small secrets with Fernet (AES-128-CBC + HMAC-SHA256) under the current key;
    decrypts what any of the previous keys encrypted too, so a key rotation loses nothing."""

    def __init__(self, secret_key: str, previous_keys: Sequence[str] = ()) -> None:
        self._fernet = MultiFernet([_fernet(key) for key in (secret_key, *previous_keys)])

    @classmethod
    def from_settings(cls, settings: Settings) -> SecretBox:
        return cls(settings.require_secret_key(), settings.previous_secret_key_values())

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def decrypt(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError(
                "a stored secret cannot be decrypted: BATON_SECRET_KEY changed since it was saved"
            ) from exc

    def rotate(self, ciphertext: str) -> str:
        """The same secret encrypted under the current key."""
        try:
            return self._fernet.rotate(ciphertext.encode()).decode()
        except InvalidToken as exc:
            raise ValueError(
                "a stored secret cannot be decrypted with the current or a previous key"
            ) from exc


def _fernet(secret_key: str) -> Fernet:
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"baton secret box"
    ).derive(secret_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))
