"""A project's integration as an activity needs it: looked up by name or id and its secrets
revealed, or the failure the run shows (a missing one fails it at once)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError

from activities.errors import as_application_error
from baton.db.repositories import integrations as integration_repo
from baton.db.tables import Integration
from baton.errors import BatonError, NotFound

Revealed = TypeVar("Revealed")


async def project_integration(
    sessions: async_sessionmaker[AsyncSession],
    *,
    project_id: str,
    ref: str,
    kind: str,
    reveal: Callable[[Integration], Revealed],
) -> Revealed:
    """The project's integration `ref`, made usable by `reveal`; `kind` names it in the
    error when the project has none by that name ("no Slack integration 'x' ...")."""
    try:
        async with sessions() as session:
            row = await integration_repo.get_integration(
                session=session, project_id=project_id, ref=ref
            )
            return reveal(row)
    except NotFound:
        raise ApplicationError(
            f"no {kind} integration {ref!r} in this project", type="not_found", non_retryable=True
        ) from None
    except BatonError as exc:
        raise as_application_error(exc) from None
