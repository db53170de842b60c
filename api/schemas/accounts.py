"""Projects, members and API tokens."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, EmailStr, Field

from baton.domain.accounts import Role


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ProjectCreate(Strict):
    name: str = Field(min_length=1, max_length=200)


class ProjectPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    org_id: int
    name: str
    created_at: datetime


class MemberCreate(Strict):
    email: EmailStr
    name: str = Field(default="", max_length=200)
    role: Role = Role.viewer


class MemberPublic(BaseModel):
    id: str
    user_id: str
    email: str
    name: str
    role: Role
    project_id: str | None
    created_at: datetime


class TokenCreate(Strict):
    name: str = Field(min_length=1, max_length=200)
    role: Role = Role.editor
    project_id: str | None = Field(
        default=None, description="Scope the token to one project; empty for the organisation"
    )
    expires_at: datetime | None = None


class TokenPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    role: Role
    project_id: str | None
    prefix: str = Field(description="The token's first characters, to tell tokens apart")
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class TokenCreated(TokenPublic):
    token: str = Field(description="The token itself: shown once, stored only as a hash")
