"""What tests share, by idea: `tenants` (organisations, their tokens and their plans),
`client` (the app in process and how its answers are checked), `workers` (real workers on a
test's queue, alone or with the app), `polling` (the one `eventually()`), `factories`
(agents, tools, tasks, runs and knowledge sets made through the API, and the readers that
wait for them), `database` (rows written straight to the database, for tests without the
API), `temporal` (the dev server binary and histories) and `xdist` (what each parallel
worker gets of its own). Fixtures stay in tests/conftest.py; import helpers from here (or
from the module that holds them)."""

from tests.support.client import (
    api_client,
    assert_error,
    body_of,
    create_token,
    cursor_of,
    items_of,
)
from tests.support.polling import eventually
from tests.support.temporal import decoded, histories_of, payloads_in, venv_binary
from tests.support.tenants import Tenant, auth, new_tenant, on_plan, with_plans
from tests.support.workers import app_with_worker, worker_on

__all__ = [
    "Tenant",
    "api_client",
    "app_with_worker",
    "assert_error",
    "auth",
    "body_of",
    "create_token",
    "cursor_of",
    "decoded",
    "eventually",
    "histories_of",
    "items_of",
    "new_tenant",
    "on_plan",
    "payloads_in",
    "venv_binary",
    "with_plans",
    "worker_on",
]
