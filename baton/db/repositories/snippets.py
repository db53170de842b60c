"""Snippets: a project's named texts. Runs pin the values they read when they start."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Paged, PageRequest, fetch_page
from baton.db.tables import Snippet, utcnow
from baton.errors import NotFound


async def put_snippet(
    *, session: AsyncSession, project_id: str, name: str, text: str
) -> tuple[Snippet, bool]:
    """Creates or replaces the snippet; says whether it was created."""
    row = await _find(session, project_id, name)
    created = row is None
    if row is None:
        row = Snippet(project_id=project_id, name=name, text=text)
        session.add(row)
    else:
        row.text = text
        row.updated_at = utcnow()
    await session.flush()
    return row, created


async def get_snippet(*, session: AsyncSession, project_id: str, name: str) -> Snippet:
    row = await _find(session, project_id, name)
    if row is None:
        raise NotFound(f"snippet {name!r} not found")
    return row


async def list_snippets(
    *, session: AsyncSession, project_id: str, page: PageRequest = ALL
) -> Paged[Snippet]:
    query = select(Snippet).where(Snippet.project_id == project_id)
    return await fetch_page(session=session, query=query, order=(Snippet.name,), page=page)


async def delete_snippet(*, session: AsyncSession, project_id: str, name: str) -> None:
    await session.delete(await get_snippet(session=session, project_id=project_id, name=name))


async def snippet_names(*, session: AsyncSession, project_id: str) -> set[str]:
    query = select(Snippet.name).where(Snippet.project_id == project_id)
    return set((await session.scalars(query)).all())


async def snippet_values(
    *, session: AsyncSession, project_id: str, names: set[str]
) -> dict[str, str]:
    """The texts of `names` (those that exist), to pin into a run's input."""
    if not names:
        return {}
    query = select(Snippet.name, Snippet.text).where(
        Snippet.project_id == project_id, Snippet.name.in_(sorted(names))
    )
    return {name: text for name, text in (await session.execute(query)).all()}


async def _find(session: AsyncSession, project_id: str, name: str) -> Snippet | None:
    query = select(Snippet).where(Snippet.project_id == project_id, Snippet.name == name)
    return (await session.scalars(query)).one_or_none()
