"""The embedded Temporal dev server the benchmarks run on: a SQLite file with the WAL pragmas
and Baton's search attributes, as `baton up` runs it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

from baton import temporal
from baton.secret_key import ensure_key_file
from baton.settings import Settings


async def start_dev_server(data: Path) -> WorkflowEnvironment:
    """A dev server keeping its history in `data`/temporal.db; shut it down when done. Its
    client encrypts payloads with the key file `baton up` would make in `data` (the
    benchmarks' settings use `data` as their data dir, so their workers read the same key)."""
    ensure_key_file(data)
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=shutil.which("temporal")
        or str(Path(sys.executable).parent / "temporal"),
        search_attributes=temporal.SEARCH_ATTRIBUTES,
        data_converter=temporal.data_converter(Settings(data_dir=data)),
        dev_server_database_filename=str(data / "temporal.db"),
        dev_server_extra_args=list(temporal.DEV_SERVER_SQLITE_ARGS),
    )
