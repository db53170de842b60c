"""Kept so that tests written against it still import: the helpers live in tests/support/."""

from tests.support.client import assert_error, create_token, cursor_of, items_of
from tests.support.polling import eventually
from tests.support.temporal import decoded, histories_of, payloads_in

__all__ = [
    "assert_error",
    "create_token",
    "cursor_of",
    "decoded",
    "eventually",
    "histories_of",
    "items_of",
    "payloads_in",
]
