"""What the API shows of an enrichment job."""

from __future__ import annotations

from api.schemas.knowledge import JobPublic
from baton.db.tables import KnowledgeJob


class EnrichmentPublic(JobPublic):
    """`done` counts rows with their outputs set, `failed` rows with an error recorded (rows
    enriched before the job count too, without running the tool again); `total` the rows of
    the set when the job was created."""

    workflow_id: str | None
    temporal_ui_url: str | None

    @classmethod
    def of(cls, job: KnowledgeJob, temporal_ui_url: str | None) -> EnrichmentPublic:
        public = JobPublic.model_validate(job)
        return cls(
            **public.model_dump(), workflow_id=job.workflow_id, temporal_ui_url=temporal_ui_url
        )
