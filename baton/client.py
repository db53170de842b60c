"""The HTTP client the terminal commands share: where the API is and who we are (the
environment, else what `baton login` saved), one-line errors from the API's error JSON, and
paging through `next_cursor`."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import typer

DEFAULT_API_URL = "http://127.0.0.1:8000"
PAGE_SIZE = 100


class ApiError(RuntimeError):
    """What went wrong, in one line a terminal can show."""


@dataclass(frozen=True)
class Credentials:
    api_url: str
    token: str
    project_id: str


def credentials_file() -> Path:
    """`~/.config/baton/credentials.json` on Linux (XDG_CONFIG_HOME is honoured)."""
    return Path(typer.get_app_dir("baton")) / "credentials.json"


def save_credentials(credentials: Credentials) -> Path:
    path = credentials_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(
        {
            "api_url": credentials.api_url,
            "token": credentials.token,
            "project_id": credentials.project_id,
        }
    )
    # Created 0600 before anything is written, so the token is never readable by others.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(data)
    path.chmod(0o600)
    return path


def saved_credentials() -> dict[str, str]:
    path = credentials_file()
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ApiError(f"cannot read {path}: {exc}; run `baton login` again") from exc
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)}


def load_credentials() -> Credentials:
    """The environment's BATON_API_URL, BATON_TOKEN and BATON_PROJECT_ID, each falling back to
    what `baton login` saved."""
    saved = saved_credentials()
    api_url = os.environ.get("BATON_API_URL") or saved.get("api_url") or DEFAULT_API_URL
    token = os.environ.get("BATON_TOKEN") or saved.get("token", "")
    project_id = os.environ.get("BATON_PROJECT_ID") or saved.get("project_id", "")
    if not token or not project_id:
        raise ApiError(
            "no token or project: set BATON_TOKEN and BATON_PROJECT_ID, or run `baton login`"
        )
    return Credentials(api_url=api_url.rstrip("/"), token=token, project_id=project_id)


def error_message(response: httpx.Response) -> str:
    """`404 not_found: no agent 'x'` from `{"error": {"code", "message", "details"}}`."""
    try:
        error = response.json().get("error", {})
    except (json.JSONDecodeError, AttributeError):
        error = {}
    if not isinstance(error, dict) or "message" not in error:
        lines = response.text.strip().splitlines()
        return f"{response.status_code}: {lines[0] if lines else response.reason_phrase}"
    message = f"{response.status_code} {error.get('code', 'error')}: {error['message']}"
    details = error.get("details")
    if isinstance(details, list):
        parts = []
        for detail in details[:3]:
            if not isinstance(detail, dict):
                continue
            text = str(detail.get("msg") or detail.get("message") or "")
            where = ".".join(str(x) for x in detail.get("loc", [])) or str(detail.get("field", ""))
            if text and text not in message:
                parts.append(f"{where}: {text}" if where else text)
        if parts:
            message += " (" + "; ".join(parts) + ")"
    return message


class Client:
    def __init__(self, credentials: Credentials, *, timeout: float = 30) -> None:
        self.credentials = credentials
        self.base = f"{credentials.api_url}/api/v1/projects/{credentials.project_id}"
        self._http = httpx.Client(
            headers={"Authorization": f"Token {credentials.token}"}, timeout=timeout
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, f"{self.base}{path}", **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(f"cannot reach {self.credentials.api_url}: {exc}") from exc
        if response.status_code >= 400:
            raise ApiError(error_message(response))
        return response

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params or None).json()

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body).json()

    def items(self, path: str, *, limit: int | None = None, **params: Any) -> Iterator[Any]:
        """Every item of a list, page after page, or the first `limit` of them."""
        cursor: str | None = None
        given = 0
        while True:
            query = {k: v for k, v in params.items() if v is not None}
            query["limit"] = min(PAGE_SIZE, limit - given) if limit else PAGE_SIZE
            if cursor:
                query["cursor"] = cursor
            page = self.request("GET", path, params=query).json()
            for item in page["items"]:
                yield item
                given += 1
                if limit and given >= limit:
                    return
            cursor = page.get("next_cursor")
            if not cursor:
                return

    def upload(
        self, path: str, file: Path, *, field: str = "file", advance: Callable[[int], None]
    ) -> Any:
        """A multipart upload of `file`, streamed in chunks; `advance` is told each one's size."""
        boundary = uuid.uuid4().hex
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; '
            f'filename="{file.name}"\r\nContent-Type: application/octet-stream\r\n\r\n'
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()

        def body() -> Iterator[bytes]:
            yield head
            with file.open("rb") as handle:
                while chunk := handle.read(256 * 1024):
                    advance(len(chunk))
                    yield chunk
            yield tail

        headers = {
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + file.stat().st_size + len(tail)),
        }
        return self.request("POST", path, content=body(), headers=headers, timeout=None).json()

    def events(self, task_id: str, after: int) -> Iterator[dict[str, Any]]:
        """The task's events after `after`, as the server-sent stream gives them."""
        url = f"{self.base}/tasks/{task_id}/events"
        headers = {"Last-Event-ID": str(after)}
        try:
            with self._http.stream("GET", url, headers=headers, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ApiError(error_message(response))
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        yield json.loads(line[5:])
        except httpx.HTTPError as exc:
            raise ApiError(f"the event stream broke: {exc}") from exc
