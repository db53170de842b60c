"""The web console: server-rendered pages at `/` for a project's members, over the same
repositories and route handlers the JSON API uses (`install(app)` mounts it)."""

from __future__ import annotations

from api.console.routes import install

__all__ = ["install"]
