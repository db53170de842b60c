"""Share links and dashboard sessions: what an editor sends and what they get back. A link's
token is in `url` once, on creation; lists never show it (only its hash is kept)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

from baton.domain.accounts import UserGroupEnvironment

# A year: a link meant to live longer is one without an expiry.
MAX_EXPIRY_SECONDS = 366 * 24 * 3600


class ShareCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    expires_in_seconds: int | None = Field(default=None, ge=60, le=MAX_EXPIRY_SECONDS)
    expires_at: datetime | None = Field(default=None, description="Instead of expires_in_seconds")
    user_group: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Share with this user group (its provided_id) on its dashboard instead of "
        "on a public page",
    )
    user_group_environment: UserGroupEnvironment = UserGroupEnvironment.customer

    @model_validator(mode="after")
    def one_expiry(self) -> ShareCreate:
        if self.expires_in_seconds is not None and self.expires_at is not None:
            raise ValueError("give expires_in_seconds or expires_at, not both")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at needs a time zone (e.g. 2030-01-01T00:00:00Z)")
        return self


class ShareCreated(BaseModel):
    id: str
    url: str | None = Field(
        description="The public page (its token is shown this once); none for a link shared "
        "with a user group, which its dashboard shows"
    )
    expires_at: datetime | None
    user_group_id: str | None = None


class SharePublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    agent_id: str | None
    tool_id: str | None
    user_group_id: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class DashboardSession(BaseModel):
    url: str = Field(description="Open once, in an iframe, before expires_at")
    expires_at: datetime
