"""Starting (or nudging) a set's embedding after its rows changed."""

from __future__ import annotations

from temporalio.client import Client

from baton import temporal
from workflows.knowledge import EmbedSetInput, EmbedSetWorkflow, embed_workflow_id


async def embed_pending(client: Client, *, project_id: str, set_id: str, task_queue: str) -> None:
    """Makes sure the set's rows without a vector get one: starts the set's embedding run, or
    tells the running one to look again. Signal-with-start does both in one call and cannot
    race with a run that is just finishing."""
    await client.start_workflow(
        EmbedSetWorkflow.run,
        EmbedSetInput(project_id=project_id, set_id=set_id),
        id=embed_workflow_id(set_id),
        task_queue=task_queue,
        start_signal="rows_changed",
        search_attributes=temporal.run_search_attributes(
            project_id=project_id, kind="knowledge-embed", status="running"
        ),
        static_summary=f"embed knowledge set {set_id}",
    )
