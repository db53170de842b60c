"""The search attributes that make every run findable in the Temporal UI. A module of its own
so workflows can set them without importing the client factory (`baton.temporal`)."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

BATON_PROJECT = SearchAttributeKey.for_keyword("BatonProject")
BATON_AGENT = SearchAttributeKey.for_keyword("BatonAgent")
BATON_STATUS = SearchAttributeKey.for_keyword("BatonStatus")
BATON_USER_GROUP = SearchAttributeKey.for_keyword("BatonUserGroup")
BATON_KIND = SearchAttributeKey.for_keyword("BatonKind")

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str], ...] = (
    BATON_PROJECT,
    BATON_AGENT,
    BATON_STATUS,
    BATON_USER_GROUP,
    BATON_KIND,
)
