"""Timeouts and retry policies, in one place so they can be read and tuned together."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# Projection writes are small and local; retry them briskly and for a long time, since a
# database restart must not fail a task.
DB_WRITE_TIMEOUT = timedelta(seconds=30)
DB_WRITE_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
)

LLM_CALL_TIMEOUT = timedelta(minutes=5)
LLM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=60),
    maximum_attempts=8,
)
# An LLM call heartbeats every few seconds however long the model thinks, so a call lost
# with its worker is retried after this long, not after LLM_CALL_TIMEOUT.
LLM_HEARTBEAT_TIMEOUT = timedelta(seconds=20)

# An agent's MCP tools: a call (its own bound inside is 60 s) and the listing of every
# attached server when a task begins (20 s each). A server that is down fails a call after
# three attempts (the model is told) and leaves its tools out of a listing.
MCP_CALL_TIMEOUT = timedelta(seconds=75)
MCP_LIST_TIMEOUT = timedelta(minutes=8)
MCP_HEARTBEAT_TIMEOUT = timedelta(seconds=20)
MCP_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=10),
    maximum_attempts=3,
)

# A knowledge source's sync: a batch of documents, each fetch bounded at 30 s, heartbeating
# throughout, so a batch lost with its worker resumes elsewhere within the heartbeat timeout.
SOURCE_BATCH_TIMEOUT = timedelta(minutes=30)
SOURCE_HEARTBEAT_TIMEOUT = timedelta(seconds=20)
SOURCE_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
    maximum_attempts=5,
)

# The batch activities of an enrichment and of a bulk task run: a batch heartbeats before
# each row (a row takes milliseconds to start), so one lost with its worker is retried after
# this long. A row's failure is recorded on the row and never fails its batch; what does is
# the database or Temporal being down, so a batch is retried until it goes through (or its
# set or agent is gone, which is refused as not found).
BATCH_HEARTBEAT_TIMEOUT = timedelta(seconds=10)
ENRICHMENT_BATCH_TIMEOUT = timedelta(hours=2)
BULK_BATCH_TIMEOUT = timedelta(hours=1)
BATCH_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(seconds=30),
)
