"""Temporal payloads encrypted before they leave the process: the Temporal server (its
database, its UI, anyone who can read either) holds only ciphertext of task messages, tool
inputs and outputs.

AES-256-GCM under a key derived from the secret key (`BATON_SECRET_KEY` or the data dir's
key file). Each payload names the key that sealed it (`encryption-key-id`), so after a key
change the previous keys (`BATON_PREVIOUS_SECRET_KEYS`, or the key file's older lines that
`baton admin rotate-key` keeps) still open histories written under them. Each payload also
names the workflow it belongs to (`baton-workflow-id`, from the SDK's serialization context);
both are bound into the authentication tag, so the codec server can decide who may read a
payload from its metadata, and a payload whose metadata was changed fails to open.

Payloads are inputs, results, signals, updates, queries, heartbeats, summaries, and (with
the failure converter baton/temporal.py sets) failure messages and stack traces. Search
attributes, workflow ids, types, activity names and task queues are not: Temporal keeps them
in clear, and Baton puts only ids, kinds and statuses there."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Self

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec, SerializationContext, WithSerializationContext

ENCODING = b"binary/encrypted"
KEY_ID = "encryption-key-id"
WORKFLOW_ID = "baton-workflow-id"
NONCE_BYTES = 12
_KEY_INFO = b"baton temporal payloads"
_AAD_VERSION = b"baton-payload-v1"


class PayloadDecryptionError(ValueError):
    """A payload that says it is ours and does not open: its key is unknown, or it (or its
    metadata) was altered."""


@dataclass(frozen=True)
class PayloadKey:
    key_id: str
    cipher: AESGCM

    @classmethod
    def derive(cls, secret_key: str) -> PayloadKey:
        key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_KEY_INFO).derive(
            secret_key.encode()
        )
        # A fingerprint of the derived key: names it without revealing it.
        key_id = hashlib.sha256(b"baton payload key id\0" + key).hexdigest()[:16]
        return cls(key_id=key_id, cipher=AESGCM(key))


class PayloadKeys:
    """The current key (which seals) and every known key by id (which open)."""

    def __init__(self, secret_key: str, previous_secret_keys: Sequence[str] = ()) -> None:
        self.current = PayloadKey.derive(secret_key)
        self._by_id = {self.current.key_id: self.current}
        for old in previous_secret_keys:
            key = PayloadKey.derive(old)
            self._by_id.setdefault(key.key_id, key)

    def get(self, key_id: str) -> PayloadKey | None:
        return self._by_id.get(key_id)


def is_encrypted(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


def workflow_id_of(payload: Payload) -> str | None:
    """The workflow an encrypted payload says it belongs to (authenticated when it opens)."""
    raw = payload.metadata.get(WORKFLOW_ID)
    return raw.decode(errors="replace") if raw is not None else None


def _associated_data(key_id: bytes, workflow_id: bytes) -> bytes:
    return b"\0".join((_AAD_VERSION, key_id, workflow_id))


def seal(payload: Payload, key: PayloadKey, *, workflow_id: str | None) -> Payload:
    metadata = {"encoding": ENCODING, KEY_ID: key.key_id.encode()}
    if workflow_id is not None:
        metadata[WORKFLOW_ID] = workflow_id.encode()
    nonce = os.urandom(NONCE_BYTES)
    sealed = key.cipher.encrypt(
        nonce,
        payload.SerializeToString(),
        _associated_data(metadata[KEY_ID], metadata.get(WORKFLOW_ID, b"")),
    )
    return Payload(metadata=metadata, data=nonce + sealed)


def open_payload(payload: Payload, keys: PayloadKeys) -> Payload:
    """The plaintext payload inside an encrypted one; any other payload is returned as it is
    (one written before payloads were encrypted, or a search attribute)."""
    if not is_encrypted(payload):
        return payload
    key_id = payload.metadata.get(KEY_ID, b"")
    key = keys.get(key_id.decode(errors="replace"))
    if key is None:
        raise PayloadDecryptionError(
            f"a payload is encrypted under key {key_id.decode(errors='replace')!r}, which this "
            "installation does not know: add the secret key it was written under to "
            "BATON_PREVIOUS_SECRET_KEYS"
        )
    data = payload.data
    try:
        plain = key.cipher.decrypt(
            data[:NONCE_BYTES],
            data[NONCE_BYTES:],
            _associated_data(key_id, payload.metadata.get(WORKFLOW_ID, b"")),
        )
        return Payload.FromString(plain)
    except (InvalidTag, ValueError) as exc:
        # ValueError: too short to hold a nonce and a tag, or not a payload once opened.
        raise PayloadDecryptionError(
            "a payload failed authentication: it, or its metadata, was altered"
        ) from exc


class EncryptionCodec(PayloadCodec, WithSerializationContext):
    """The codec of every Baton client and worker. With a serialization context (the SDK gives
    one for each workflow, activity and child workflow payload) it records the workflow id."""

    def __init__(self, keys: PayloadKeys, *, workflow_id: str | None = None) -> None:
        self._keys = keys
        self._workflow_id = workflow_id

    def with_context(self, context: SerializationContext) -> Self:
        workflow_id = getattr(context, "workflow_id", None)
        if not isinstance(workflow_id, str):
            workflow_id = None  # a context of no workflow (Nexus): the payload names none
        if workflow_id == self._workflow_id:
            return self
        return type(self)(self._keys, workflow_id=workflow_id)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [seal(p, self._keys.current, workflow_id=self._workflow_id) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [open_payload(p, self._keys) for p in payloads]
