"""`POST /api/user`, shaped exactly as its documentation page shows."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field

from baton.domain.accounts import UserGroupEnvironment


class UserGroupRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    current_token: str | None = Field(
        default=None,
        description="Empty to create a user group; a group's current token to rotate it",
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    provided_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        validation_alias=AliasChoices("provided_id", "user_group_id"),
    )
    environment: UserGroupEnvironment = UserGroupEnvironment.customer


class UserGroupBody(BaseModel):
    team_id: int = Field(description="The organisation's id")
    token: str = Field(description="The user group token for the embedded dashboard")
    name: str
    provided_id: str
    environment: UserGroupEnvironment


class UserGroupResponse(BaseModel):
    success: Literal[1] = 1
    user_group: UserGroupBody


class UserGroupPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    provided_id: str
    environment: UserGroupEnvironment
    created_at: datetime
    rotated_at: datetime | None
