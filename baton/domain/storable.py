"""Text a database can store. A NUL character or an unpaired surrogate is valid in JSON and in
a Python string, but no database column stores it (PostgreSQL refuses NUL in text and JSON;
UTF-8 has no surrogates), so input carrying one is refused with its place named instead of
failing deep inside a database driver."""

from __future__ import annotations

from typing import Any

UNSTORABLE_TEXT = "text may not contain NUL characters or unpaired surrogates"


def storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def first_unstorable(value: Any) -> list[str | int] | None:
    """The location of the first string (or key) that cannot be stored, walked without
    recursion so a deeply nested value cannot exhaust the stack."""
    pending: list[tuple[Any, list[str | int]]] = [(value, [])]
    while pending:
        node, path = pending.pop()
        if isinstance(node, str) and not storable(node):
            return path
        if isinstance(node, dict):
            for key, item in reversed(node.items()):
                if not storable(key):
                    return [*path, key]
                pending.append((item, [*path, key]))
        elif isinstance(node, list):
            pending.extend((item, [*path, i]) for i, item in reversed(list(enumerate(node))))
    return None
