"""Email inboxes: a secret URL (`/api/hooks/email/<token>`) of an agent or a workforce that a
mail relay (a provider's inbound route, a local MTA's pipe) posts each received message to,
raw (`Content-Type: message/rfc822`). The token is the credential, so that route takes no
Authorization header.

A message starts a task told who sent it, its subject, its text and its attachments' names
and sizes. A reply (In-Reply-To or References naming a message the inbox took) is posted to
the task of the message it answers, as a follow-up, while that task takes follow-ups; a
workforce's tasks take none, so there a reply starts a task of its own. The same Message-ID
again, a relay's retry or a copy delivered to another API replica, does nothing twice: the
database's unique key on (inbox, Message-ID) lets one delivery through and the others answer
200 with the task it went to."""

from __future__ import annotations

import asyncio
import uuid

from fastapi import APIRouter, Depends, Request, Response, status
from sqlalchemy.ext.asyncio import AsyncSession
from temporalio.client import Client

from api.deps import Editor, PageDep, SessionDep, SettingsDep, TemporalDep, Viewer, get_project
from api.routes.tasks import post_follow_up
from api.routes.triggers import (
    TargetOf,
    agent_target,
    workforce_target,
)
from api.schemas.paging import Page
from api.schemas.triggers import (
    MAX_MESSAGE_LENGTH,
    EmailAccepted,
    EmailInboxCreated,
    EmailInboxPublic,
)
from baton.db.repositories import email_inboxes as inbox_repo
from baton.db.repositories import triggers as trigger_repo
from baton.db.repositories.triggers import Target
from baton.db.tables import EmailInbox, Task
from baton.domain.mail import InboundMail, NotAnEmail, parse_message, task_message
from baton.domain.tasks import TaskStatus
from baton.errors import InvalidInput
from baton.security import new_token
from baton.services.triggers import start_target_task

EMAIL_TOKEN_PREFIX = "btml_"
RFC822 = "message/rfc822"


class UnsupportedMediaType(InvalidInput):
    code = "unsupported_media_type"
    status_code = 415


def inbox_routes(prefix: str, target_of: TargetOf) -> APIRouter:
    """Create, list and delete the email inboxes of the target `target_of` finds in the
    path."""
    router = APIRouter(
        prefix=f"/api/v1/projects/{{project_id}}/{prefix}/email",
        tags=["email"],
        dependencies=[Depends(get_project)],
    )

    @router.post("", status_code=status.HTTP_201_CREATED)
    async def create_inbox(
        _: Editor, session: SessionDep, settings: SettingsDep, target: Target = target_of
    ) -> EmailInboxCreated:
        token = new_token(EMAIL_TOKEN_PREFIX)
        inbox = await inbox_repo.create_inbox(session=session, target=target, token=token)
        return EmailInboxCreated(
            **EmailInboxPublic.of(inbox).model_dump(),
            url=f"{settings.public_api_url.rstrip('/')}{mail_hook.prefix}/{token}",
        )

    @router.get("")
    async def list_inboxes(
        _: Viewer, session: SessionDep, page: PageDep, target: Target = target_of
    ) -> Page[EmailInboxPublic]:
        rows = await trigger_repo.list_live(
            session=session, table=EmailInbox, target=target, page=page
        )
        return Page[EmailInboxPublic].of(rows, EmailInboxPublic.of)

    @router.delete("/{inbox_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_inbox(
        inbox_id: str, _: Editor, session: SessionDep, target: Target = target_of
    ) -> None:
        await trigger_repo.revoke(
            session=session, table=EmailInbox, target=target, trigger_id=inbox_id
        )

    return router


mail_hook = APIRouter(prefix="/api/hooks/email", tags=["email"])


@mail_hook.post(
    "/{token}",
    status_code=status.HTTP_202_ACCEPTED,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {RFC822: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={200: {"description": "A Message-ID taken before: nothing new happened"}},
)
async def receive_email(
    token: str,
    request: Request,
    response: Response,
    session: SessionDep,
    temporal_client: TemporalDep,
    settings: SettingsDep,
) -> EmailAccepted:
    """One raw message, up to the server's body limit (BATON_MAX_BODY_BYTES). 202 when it
    started a task or joined one, 200 when its Message-ID was taken before."""
    inbox = await trigger_repo.find_by_token(session=session, table=EmailInbox, token=token)
    mail = await _parsed(await _read_message(request))
    if mail.message_id is not None:
        seen = await inbox_repo.task_of_message(
            session=session, inbox_id=inbox.id, message_id=mail.message_id
        )
        if seen is not None:
            return await _duplicate(session, response, seen)
    message = task_message(mail, max_length=MAX_MESSAGE_LENGTH)
    thread = await _open_thread(session, inbox, mail)
    if thread is not None:
        return await _reply(session, response, temporal_client, inbox, mail, thread, message)
    # Read before the start, whose rollback on a concurrent copy's start expires the inbox.
    inbox_id = inbox.id
    task_id = str(uuid.uuid5(uuid.UUID(inbox_id), mail.message_id)) if mail.message_id else None
    task = await start_target_task(
        session=session,
        temporal_client=temporal_client,
        settings=settings,
        target=Target.of(inbox),
        message=message,
        task_id=task_id,
        params={},
    )
    if mail.message_id is not None and not await inbox_repo.claim_message(
        session=session, inbox_id=inbox_id, message_id=mail.message_id, task_id=task.id
    ):
        return await _duplicate(session, response, task.id)
    return _accepted(task, "started")


async def _open_thread(session: AsyncSession, inbox: EmailInbox, mail: InboundMail) -> Task | None:
    """The task of an agent inbox a reply answers, while it takes follow-ups."""
    if inbox.agent_id is None or not mail.answers:
        return None
    task_id = await inbox_repo.task_answered(
        session=session, inbox_id=inbox.id, message_ids=mail.answers
    )
    task = await session.get(Task, task_id) if task_id is not None else None
    if task is None or TaskStatus(task.status).is_final:
        return None
    return task


async def _reply(
    session: AsyncSession,
    response: Response,
    temporal_client: Client,
    inbox: EmailInbox,
    mail: InboundMail,
    task: Task,
    message: str,
) -> EmailAccepted:
    """Posts the reply to its task. The claim of its Message-ID is written first and held
    (uncommitted) until the task took it: a copy arriving meanwhile waits on the unique key,
    then finds it taken; a failure to post (409: the task is ending, 503: its worker did not
    take it in time) rolls the claim back, so a later delivery may post or start a task."""
    if mail.message_id is not None and not await inbox_repo.claim_message(
        session=session, inbox_id=inbox.id, message_id=mail.message_id, task_id=task.id
    ):
        return await _duplicate(session, response, task.id)
    await post_follow_up(temporal_client, task, message)
    return _accepted(task, "threaded")


async def _duplicate(session: AsyncSession, response: Response, task_id: str) -> EmailAccepted:
    response.status_code = status.HTTP_200_OK
    task = await session.get(Task, task_id)
    assert task is not None  # an inbound email's task goes only with the email's row
    return _accepted(task, "duplicate")


def _accepted(task: Task, outcome: str) -> EmailAccepted:
    return EmailAccepted.model_validate(
        {
            "task_id": task.id,
            "workflow_id": task.workflow_id,
            "status": TaskStatus(task.status),
            "outcome": outcome,
        }
    )


async def _read_message(request: Request) -> bytes:
    """The raw message; its size is capped by the server's body limit (BodySizeLimit, 413)."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if media_type != RFC822:
        raise UnsupportedMediaType(
            f"the body must be a raw email, Content-Type: {RFC822} (not {media_type or 'none'})",
            details=[{"field": "content-type", "message": f"expected {RFC822}"}],
        )
    return await request.body()


async def _parsed(raw: bytes) -> InboundMail:
    """Parsed in a thread: a large message must not hold the event loop."""
    try:
        return await asyncio.to_thread(parse_message, raw)
    except NotAnEmail as exc:
        raise InvalidInput(str(exc), details=[{"field": "body", "message": str(exc)}]) from exc


router = APIRouter()
for _part in (
    inbox_routes("agents/{agent_id}", Depends(agent_target)),
    inbox_routes("workforces/{workforce_id}", Depends(workforce_target)),
    mail_hook,
):
    router.include_router(_part)
