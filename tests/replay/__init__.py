"""Recorded workflow histories (one JSON file per scenario, the SDK's `WorkflowHistory.to_json`)
that tests/test_replay.py replays on today's workflow code. `make record-histories`
(tests/replay/record.py) records them again.

Their payloads are encrypted, as every Baton history's are, with the fixed key below. It is a
TEST-ONLY key, public in this repository: it protects nothing and must never be a deployment's
`BATON_SECRET_KEY`. The recorded scenarios are small, so no payload reaches the 64 KB
claim-check threshold (baton/db/payload_store.py) and every payload is in the history itself."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from baton.settings import Settings

HISTORIES = Path(__file__).parent

REPLAY_SECRET_KEY = "replay-histories-test-key-not-a-secret-do-not-deploy"

# Every scenario recorded; each is HISTORIES / f"{name}.json".
SCENARIOS = (
    "agent_task_approval_and_follow_up",
    "tool_run_foreach_if_template",
    "agent_task_continued_as_new",
    "enrichment",
    "knowledge_embedding",
    "agent_task_from_schedule",
    # Recorded since the flat path (workflow.patched("flat-turns")); the agent task histories
    # above are of the path before it, which runs recorded then still take: record those
    # again only on code that still takes that path.
    "agent_task_flat_approval_and_follow_up",
    "agent_task_flat_continued_as_new",
    "agent_task_results_while_approving",
    "workforce_condition_handover_tool_follow_up",
    "workforce_task_from_schedule_with_delegation",
    "agent_task_mcp_tools",
    "agent_task_same_delegation",
    "agent_task_out_of_credits_resumed",
    "agent_task_budget_approval",
    # Since workflow.patched("queue-for-capacity"): a task that waited for a slot.
    "agent_task_queued_for_capacity",
    # Recorded since tool runs have their plan's time limit ("tool-run-time-limit").
    "tool_run_within_its_time_limit",
    "bulk_tasks",
)


def replay_settings(**overrides: object) -> Settings:
    """Production settings (tool runs outside the sandbox, as production runs them) but for
    the test-only key, and for what the recorder overrides."""
    fields: dict[str, object] = {
        "secret_key": SecretStr(REPLAY_SECRET_KEY),
        "previous_secret_keys": [],
        "sandbox_all_workflows": False,
        **overrides,
    }
    return Settings(**fields)  # type: ignore[arg-type]
