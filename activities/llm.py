"""LLM calls."""

from __future__ import annotations

from temporalio import activity

from activities.errors import as_application_error
from baton.domain.tasks import LlmRequest, LlmResponse
from baton.errors import BatonError
from baton.integrations import llm


class LlmActivities:
    @activity.defn(name="baton.llm.complete")
    async def complete(self, request: LlmRequest) -> LlmResponse:
        try:
            return await llm.complete(request)
        except BatonError as exc:
            raise as_application_error(exc) from exc
