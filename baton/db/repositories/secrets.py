"""Project secrets, encrypted at rest. Only activities read the plain values."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from baton.db.paging import ALL, Paged, PageRequest, fetch_page
from baton.db.tables import ProjectSecret, utcnow
from baton.errors import NotFound
from baton.security import SecretBox


async def put_secret(
    *, session: AsyncSession, box: SecretBox, project_id: str, name: str, value: str
) -> ProjectSecret:
    row = (
        await session.scalars(
            select(ProjectSecret).where(
                ProjectSecret.project_id == project_id, ProjectSecret.name == name
            )
        )
    ).one_or_none()
    if row is None:
        row = ProjectSecret(project_id=project_id, name=name, ciphertext=box.encrypt(value))
        session.add(row)
    else:
        row.ciphertext = box.encrypt(value)
        row.updated_at = utcnow()
    await session.flush()
    return row


async def list_secrets(
    *, session: AsyncSession, project_id: str, page: PageRequest = ALL
) -> Paged[ProjectSecret]:
    query = select(ProjectSecret).where(ProjectSecret.project_id == project_id)
    order = (ProjectSecret.name,)
    return await fetch_page(session=session, query=query, order=order, page=page)


async def delete_secret(*, session: AsyncSession, project_id: str, name: str) -> None:
    row = (
        await session.scalars(
            select(ProjectSecret).where(
                ProjectSecret.project_id == project_id, ProjectSecret.name == name
            )
        )
    ).one_or_none()
    if row is None:
        raise NotFound(f"secret {name!r} not found")
    await session.delete(row)


async def reveal_secrets(
    *, session: AsyncSession, box: SecretBox, project_id: str
) -> dict[str, str]:
    return {
        row.name: box.decrypt(row.ciphertext)
        for row in (await list_secrets(session=session, project_id=project_id)).items
    }


async def reencrypt_secrets(*, session: AsyncSession, box: SecretBox) -> int:
    """Every project's secrets re-encrypted under the box's current key (a key rotation)."""
    rows = (await session.scalars(select(ProjectSecret))).all()
    for row in rows:
        row.ciphertext = box.rotate(row.ciphertext)
    return len(rows)
