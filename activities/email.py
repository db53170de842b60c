"""The `email_send` step of a tool run: one mail through the project's SMTP integration. The
integration is read and its password decrypted here, at send time, from the name the step
holds; what cannot improve on retry (a refused login, sender or recipient, a refused
address, a recipient that is not an address) fails at once, naming it."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from activities.heartbeats import with_heartbeats
from activities.integrations import project_integration
from activities.steps import render_string
from baton.db.repositories import integrations as integration_repo
from baton.domain.egress import EgressPolicy
from baton.domain.integrations import SmtpServer
from baton.domain.mail import email_address
from baton.domain.tool_runs import StepCall, StepOutcome
from baton.domain.tools import EmailSendStep
from baton.errors import BatonError
from baton.integrations import smtp
from baton.scrubbing import SecretScrubber
from baton.security import SecretBox
from baton.settings import Settings

# Of a step's timeout, the share the sending may take: the rest is for the activity to
# report why it failed before Temporal times it out.
_SEND_SHARE = 0.9
# Names the Message-IDs this step makes, so a mail can be recognised as Baton's.
_MESSAGE_ID_NAMESPACE = uuid.UUID("5d0b6c1e-3f7a-4f57-9a57-0c9e2f9d6b1a")


class EmailActivities:
    def __init__(
        self, session_factory: async_sessionmaker[AsyncSession], settings: Settings
    ) -> None:
        self._sessions = session_factory
        self._box = SecretBox.from_settings(settings)
        self._egress = EgressPolicy.from_settings(settings)

    @activity.defn(name="baton.step.email_send")
    async def send(self, call: StepCall) -> StepOutcome:
        """The mail's Message-ID comes from the workflow and activity ids: a retry after a
        crash sends the same id, which a receiver may use to drop the copy."""
        step = call.step
        assert isinstance(step, EmailSendStep)
        server = await self._server(call.project_id, step.integration)
        info = activity.info()
        mail = smtp.Mail(
            to=[_recipient(render_string(r, call.context), i) for i, r in enumerate(step.to)],
            subject=" ".join(render_string(step.subject, call.context).splitlines()),
            text=render_string(step.text, call.context),
            html=render_string(step.html, call.context) if step.html is not None else None,
            message_id=_message_id(f"{info.workflow_id}:{info.activity_id}", server),
        )
        scrubber = SecretScrubber(
            {"api_key": server.password.get_secret_value()} if server.password else {}
        )
        timeout = step.timeout_seconds * _SEND_SHARE
        try:
            sent = await with_heartbeats(smtp.send(server, mail, timeout=timeout))
        except BatonError as exc:
            raise scrubber.error(as_application_error(exc)) from None
        return StepOutcome(output={"message_id": sent.message_id, "accepted": sent.accepted})

    async def _server(self, project_id: str, integration: str) -> SmtpServer:
        return await project_integration(
            self._sessions,
            project_id=project_id,
            ref=integration,
            kind="SMTP",
            reveal=lambda row: integration_repo.reveal_smtp_server(
                box=self._box, row=row, egress=self._egress
            ),
        )


def _recipient(rendered: str, index: int) -> str:
    try:
        return email_address(rendered)
    except ValueError as exc:
        raise ApplicationError(
            f"to[{index}]: {exc}", type="invalid_input", non_retryable=True
        ) from None


def _message_id(idempotency_key: str, server: SmtpServer) -> str:
    domain = server.from_address.rpartition("@")[2]
    return f"<{uuid.uuid5(_MESSAGE_ID_NAMESPACE, idempotency_key).hex}@{domain}>"
