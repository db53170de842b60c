"""The pages a visitor opens without a token: share links (`/share/<token>`), their embed
form and the chat widget (`/embed/...`), and the user-group dashboard (`/dashboard`).
`install(app)` mounts them; none is in the OpenAPI schema."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.sharing import dashboard, pages
from api.sharing.views import HERE


def install(app: FastAPI) -> None:
    app.include_router(pages.router)
    app.include_router(dashboard.router)
    app.mount("/sharing-static", StaticFiles(directory=HERE / "static"), name="sharing-static")
