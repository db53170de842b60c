"""The search attributes that make every run findable in the Temporal UI. A module of its own
so workflows can set them without importing the client factory (`baton.temporal`)."""

from __future__ import annotations

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

BATON_PROJECT = SearchAttributeKey.for_keyword("BatonProject")
BATON_AGENT = SearchAttributeKey.for_keyword("BatonAgent")
BATON_STATUS = SearchAttributeKey.for_keyword("BatonStatus")
BATON_USER_GROUP = SearchAttributeKey.for_keyword("BatonUserGroup")
BATON_KIND = SearchAttributeKey.for_keyword("BatonKind")
BATON_WORKFORCE = SearchAttributeKey.for_keyword("BatonWorkforce")

SEARCH_ATTRIBUTES: tuple[SearchAttributeKey[str], ...] = (
    BATON_PROJECT,
    BATON_AGENT,
    BATON_STATUS,
    BATON_USER_GROUP,
    BATON_KIND,
    BATON_WORKFORCE,
)


def run_search_attributes(
    *,
    project_id: str,
    kind: str,
    status: str,
    agent_id: str | None = None,
    workforce_id: str | None = None,
) -> TypedSearchAttributes:
    """The search attributes a Baton run starts with (its status is upserted as it goes)."""
    pairs = [
        SearchAttributePair(BATON_PROJECT, project_id),
        SearchAttributePair(BATON_KIND, kind),
        SearchAttributePair(BATON_STATUS, status),
    ]
    if agent_id is not None:
        pairs.append(SearchAttributePair(BATON_AGENT, agent_id))
    if workforce_id is not None:
        # A workforce task, and every run of its nodes: all found by the workforce.
        pairs.append(SearchAttributePair(BATON_WORKFORCE, workforce_id))
    return TypedSearchAttributes(pairs)
