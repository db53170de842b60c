"""The names api/routes/knowledge_enrichment.py calls, kept while another change rewrites the
routes: enrichment jobs are written in knowledge_jobs, the rows they cover read in
knowledge_rows. Remove this module once the routes import those two."""

from __future__ import annotations

from baton.db.repositories.knowledge_jobs import active_enrichment_job as active_job
from baton.db.repositories.knowledge_jobs import create_enrichment_job as create_job
from baton.db.repositories.knowledge_jobs import finish_enrichment_job as finish_job
from baton.db.repositories.knowledge_jobs import get_enrichment_job as get_job
from baton.db.repositories.knowledge_jobs import list_enrichment_jobs as list_jobs
from baton.db.repositories.knowledge_rows import row_span

__all__ = ["active_job", "create_job", "finish_job", "get_job", "list_jobs", "row_span"]
