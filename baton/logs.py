"""How Baton's processes log: one setup for the worker and the `baton` commands."""

from __future__ import annotations

import logging

# Every HTTP client library here logs each request's full URL at INFO (a provider's base URL,
# a query string that may carry a key) and response headers at DEBUG: httpx for http steps
# and URL imports, httpx2 for the OpenAI and Anthropic SDKs, httpcore and httpcore2 beneath.
QUIET_LOGGERS = ("httpx", "httpcore", "httpx2", "httpcore2")


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    quiet_http_clients()


def quiet_http_clients() -> None:
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
