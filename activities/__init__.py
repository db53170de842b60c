"""Side effects, as Temporal activities: thin classes over `baton.integrations` and
`baton.db`, their resources injected in `__init__` by `worker.py`."""
