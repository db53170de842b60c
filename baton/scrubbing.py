"""Secret values scrubbed from what a step gives back (its output and its errors) before
that is stored, returned, streamed or put in Temporal's history.

A server may send a secret back in another form than it received it: URL-encoded in the
final URL, base64 inside a token, JSON-escaped in a text body, repr'd in an error message,
lower-cased in a host name. Each secret is replaced, by a `[secret:<name>]` marker, in every
one of those forms. The forms are computed once per scrubber, and one scrubber serves a
whole activity call (or a whole enrichment batch)."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from temporalio.exceptions import ApplicationError

# Shorter values would replace ordinary text everywhere.
MIN_SECRET_LENGTH = 4
# A base64 fragment of a secret inside a longer base64 text: shorter ones could match by
# chance.
_MIN_FRAGMENT_LENGTH = 8
_PERCENT = re.compile(r"%[0-9A-F]{2}")
# What the WHATWG URL standard (and so httpx, and browsers) leaves as is in a query and a
# path: printable ASCII but for space, `"`, `#`, `<`, `>` (and in a path `?`, backtick,
# `{`, `}`).
_QUERY_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"#<>')
_PATH_SAFE = "".join(c for c in _QUERY_SAFE if c not in "?`{}")


def secret_forms(value: str) -> set[str]:
    """The texts `value` may come back as."""
    forms = {value, value.lower(), repr(value)[1:-1], repr(value.encode())[2:-1]}
    for ensure_ascii in (True, False):
        escaped = json.dumps(value, ensure_ascii=ensure_ascii)[1:-1]
        # Twice: a JSON body echoed inside a JSON answer, read as text.
        twice = json.dumps(escaped, ensure_ascii=ensure_ascii)[1:-1]
        forms |= {escaped, escaped.replace("/", "\\/"), twice}
    encoded = {
        quote(value),
        quote(value, safe=""),
        quote_plus(value),
        quote_plus(value, safe="/"),
        quote(value, safe=_QUERY_SAFE),
        quote(value, safe=_PATH_SAFE),
    }
    forms |= encoded | {_PERCENT.sub(lambda m: m.group().lower(), form) for form in encoded}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        forms |= _base64_forms(value.encode(), encode)
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def _base64_forms(raw: bytes, encode: Callable[[bytes], bytes]) -> set[str]:
    whole = encode(raw).decode()
    forms = {whole, whole.rstrip("=")}
    # Inside a longer base64 text (`user:secret` in a Basic header) the secret starts at
    # one of three offsets in a 3-byte group; the characters that encode its bits alone
    # are the same whatever comes before and after it.
    for offset in range(3):
        text = encode(b"\0" * offset + raw).decode()
        first = -(-8 * offset // 6)
        last = 8 * (offset + len(raw)) // 6
        if last - first >= _MIN_FRAGMENT_LENGTH:
            forms.add(text[first:last])
    return forms


class SecretScrubber:
    """Replaces every form of each secret in texts and in JSON-like values."""

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self._marker_of: dict[str, str] = {}
        for name, value in secrets.items():
            if len(value) >= MIN_SECRET_LENGTH:
                for form in secret_forms(value):
                    self._marker_of.setdefault(form, f"[secret:{name}]")
        forms = self._marker_of.keys()
        self._pattern = re.compile(_any_of(forms)) if forms else None
        self._shortest = min(map(len, forms), default=0)

    def text(self, text: str) -> str:
        if self._pattern is None or len(text) < self._shortest:
            return text
        return self._pattern.sub(self._marker, text)

    def _marker(self, match: re.Match[str]) -> str:
        return self._marker_of[match.group()]

    def value(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string in it (keys too) scrubbed."""
        if self._pattern is None:
            return value
        return self._value(value)

    def _value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self._value(key): self._value(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self._value(item) for item in value]
        return value

    def error(self, error: ApplicationError) -> ApplicationError:
        return ApplicationError(
            self.text(error.message),
            *self.value(list(error.details)),
            type=error.type,
            non_retryable=error.non_retryable,
            next_retry_delay=error.next_retry_delay,
        )


def _any_of(words: Iterable[str]) -> str:
    """A regular expression matching any of `words`, the longest where several start at the
    same place (so a form that holds a shorter one is replaced whole). Written as a trie:
    words that share a start are tried together, so a project with many secrets costs far
    less than one comparison per form at each place in a text."""
    trie: dict[str, Any] = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[_END] = {}
    return _trie_pattern(trie)


_END = ""


def _trie_pattern(node: dict[str, Any]) -> str:
    pattern = ""
    while len(node) == 1 and _END not in node:  # a run of single characters
        char, node = next(iter(node.items()))
        pattern += re.escape(char)
    branches = [re.escape(char) + _trie_pattern(child) for char, child in node.items() if char]
    if not branches:
        return pattern
    group = "(?:" + "|".join(branches) + ")"
    # Where a word may also end here, trying the longer ones first is what `?` does.
    return pattern + group + ("?" if _END in node else "")
