"""The secret key file: where `baton up` keeps the key that encrypts stored secrets when the
operator sets no BATON_SECRET_KEY.

One key a line, the current key first and the keys it replaced after it: a key rotation
re-encrypts every stored secret under the new key, but values encrypted before it (and
Temporal payloads in histories) must still decrypt. The file is created with mode 0600 and
replaced atomically, so a crash never leaves half a key behind."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

KEY_FILE_NAME = "secret.key"


def key_file(data_dir: Path) -> Path:
    return data_dir / KEY_FILE_NAME


def new_key() -> str:
    return secrets.token_urlsafe(48)


def read_keys(path: Path) -> list[str]:
    """The keys in the file, current first; [] when there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if line.strip()]


def write_keys(path: Path, keys: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write("\n".join(keys) + "\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)


def ensure_key_file(data_dir: Path) -> bool:
    """Creates the data dir's key file with a random key unless it exists; True if created."""
    path = key_file(data_dir)
    if read_keys(path):
        return False
    write_keys(path, [new_key()])
    return True
