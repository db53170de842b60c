"""What tests share, by idea: `tenants` (organisations and their tokens), `client` (the app
in process and how its answers are checked), `workers` (real workers on a test's queue),
`polling` (the one `eventually()`), `factories` (agents, tools, tasks and runs made through
the API, and the readers that wait for them), `temporal` (the dev server binary and
histories) and `xdist` (what each parallel worker gets of its own). Fixtures stay in
tests/conftest.py; import helpers from here (or from the module that holds them)."""

from tests.support.client import api_client, assert_error, create_token, cursor_of, items_of
from tests.support.polling import eventually
from tests.support.temporal import decoded, histories_of, payloads_in, venv_binary
from tests.support.tenants import Tenant, auth, new_tenant
from tests.support.workers import worker_on

__all__ = [
    "Tenant",
    "api_client",
    "assert_error",
    "auth",
    "create_token",
    "cursor_of",
    "decoded",
    "eventually",
    "histories_of",
    "items_of",
    "new_tenant",
    "payloads_in",
    "venv_binary",
    "worker_on",
]
