"""The HTTP edge: a FastAPI app over `baton`. Routes stay short; the work is in `baton.db`
repositories and in Temporal workflows."""
