"""Posts to Slack as a Slack integration's bot: the `slack_post` step of a tool run. The
integration is read and its token decrypted here, at call time, from the name the step holds;
Slack's refusals (`ok: false`) fail the step naming Slack's error, at once unless Slack says
it is rate limited or failing."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from activities.steps import render_string, render_value
from baton import activity_names
from baton.db.repositories import integrations as integration_repo
from baton.domain.egress import EgressPolicy
from baton.domain.integrations import SlackApp
from baton.domain.tool_runs import StepCall, StepOutcome
from baton.domain.tools import SlackPostStep
from baton.errors import BatonError, NotFound
from baton.integrations import slack
from baton.scrubbing import SecretScrubber
from baton.security import SecretBox
from baton.settings import Settings


class SlackActivities:
    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        self._sessions = session_factory
        self._box = SecretBox.from_settings(settings)
        self._egress = EgressPolicy.from_settings(settings)

    @activity.defn(name=activity_names.STEP_SLACK_POST)
    async def post_step(self, call: StepCall) -> StepOutcome:
        step = call.step
        assert isinstance(step, SlackPostStep)
        channel = render_string(step.channel, call.context).strip()
        text = render_string(step.text, call.context)
        thread_ts = _optional(render_value(step.thread_ts, call.context))
        app = await self.app(call.project_id, step.integration)
        posted = await post(app, channel=channel, text=text, thread_ts=thread_ts)
        return StepOutcome(output=posted)

    async def app(self, project_id: str, integration: str) -> SlackApp:
        """The project's Slack integration, by name or id, its secrets decrypted."""
        try:
            async with self._sessions() as session:
                row = await integration_repo.get_integration(
                    session=session, project_id=project_id, ref=integration
                )
                return integration_repo.reveal_slack_app(
                    box=self._box, row=row, egress=self._egress
                )
        except NotFound:
            raise ApplicationError(
                f"no Slack integration {integration!r} in this project",
                type="not_found",
                non_retryable=True,
            ) from None
        except BatonError as exc:
            raise as_application_error(exc) from None


def _optional(rendered: Any) -> str | None:
    """A thread that renders to nothing (an unset param) is no thread."""
    if rendered is None:
        return None
    return str(rendered).strip() or None


async def post(app: SlackApp, *, channel: str, text: str, thread_ts: str | None) -> dict[str, str]:
    """chat.postMessage; a failure is an ApplicationError, retryable only when Slack's answer
    may change, and never carrying the token."""
    scrubber = SecretScrubber({"bot_token": app.bot_token.get_secret_value()})
    if not channel or not text.strip():
        raise ApplicationError(
            "a Slack post needs a channel and a text; one rendered empty",
            type="invalid_input",
            non_retryable=True,
        )
    try:
        return await slack.post_message(app, channel=channel, text=text, thread_ts=thread_ts)
    except slack.SlackError as exc:
        raise scrubber.error(
            ApplicationError(exc.message, type=exc.code, non_retryable=not exc.retryable)
        ) from None
    except BatonError as exc:
        raise scrubber.error(as_application_error(exc)) from None
