"""`baton chat`: talk to an agent from a terminal. Tokens stream as they arrive, a tool call
that needs approval asks y/n, `/exit` (or an empty line, or end of input) ends the chat."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, TextIO

import httpx

FINAL = {"completed", "failed", "cancelled", "timed-out", "out-of-credits"}
LEAVE = {"/exit", "/quit"}


class ChatError(RuntimeError):
    pass


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`["region=eu", "limit=3"]` -> `{"region": "eu", "limit": 3}`: a JSON value, else text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise ChatError(f"--param {pair!r}: write it as name=value")
        try:
            params[name.strip()] = json.loads(value)
        except json.JSONDecodeError:
            params[name.strip()] = value
    return params


class Chat:
    def __init__(
        self,
        *,
        api_url: str,
        token: str,
        project_id: str,
        agent_id: str,
        ask: Callable[[str], str],
        out: TextIO,
        params: dict[str, Any] | None = None,
    ) -> None:
        self._base = f"{api_url.rstrip('/')}/api/v1/projects/{project_id}"
        self._project_id = project_id
        self._agent_id = agent_id
        self._params = params or {}
        self._client = httpx.Client(headers={"Authorization": f"Token {token}"}, timeout=30)
        self._ask = ask
        self._out = out
        self._last_seq = 0

    def run(self) -> int:
        agent = self._agent()
        self._say(f"Chatting with {agent['name']} ({agent['model']}). /exit leaves.\n")
        if agent.get("welcome_message"):
            self._say(f"{agent['welcome_message']}\n")
        first = self._prompt()
        if first is None:
            return 0
        body: dict[str, Any] = {"message": first}
        if self._params:
            body["params"] = self._params
        started = self._post(f"/agents/{self._agent_id}/tasks", body)
        task_id = started["id"]
        self._say(f"(task {task_id}; in the Temporal UI: {started['temporal_ui_url']})\n")
        while True:
            status = self._follow(task_id)
            if status in FINAL:
                self._say(f"\n[task {status}]\n")
                return 0 if status == "completed" else 1
            message = self._prompt()
            if message is None:
                self._post(f"/tasks/{task_id}/cancel", None)
                self._say("[chat ended]\n")
                return 0
            self._post(f"/tasks/{task_id}/messages", {"message": message})

    def _follow(self, task_id: str) -> str:
        """Streams the task's events until it is idle or over; answers approval requests."""
        while True:
            for event in self._events(task_id):
                kind, data = event["type"], event["data"]
                if kind == "message.delta":
                    self._say(data.get("text", ""))
                elif kind == "message.completed" and data.get("role") == "assistant":
                    self._say("\n")
                elif kind == "tool.run.completed":
                    self._say(f"  [{data['tool']} done]\n")
                elif kind == "tool.run.failed":
                    self._say(f"  [{data['tool']} failed: {data.get('error', '')}]\n")
                elif kind == "tool.approval.requested":
                    self._decide(task_id, data)
                elif kind == "task.status" and data["status"] in FINAL | {"idle"}:
                    return str(data["status"])

    def _decide(self, task_id: str, pending: dict[str, Any]) -> None:
        arguments = json.dumps(pending.get("arguments", {}))
        answer = self._ask(f"Allow {pending['tool']}({arguments})? [y/N] ").strip().lower()
        approve = answer in ("y", "yes")
        body = {"approve": approve, "reason": "" if approve else "declined in the chat"}
        self._post(f"/tasks/{task_id}/approvals/{pending['call_id']}", body)

    def _events(self, task_id: str) -> Iterator[dict[str, Any]]:
        headers = {"Last-Event-ID": str(self._last_seq)}
        url = f"{self._base}/tasks/{task_id}/events"
        with self._client.stream("GET", url, headers=headers, timeout=None) as response:
            if response.status_code != 200:
                raise ChatError(f"the event stream answered {response.status_code}")
            for line in response.iter_lines():
                if line.startswith("data:"):
                    event: dict[str, Any] = json.loads(line[5:])
                    self._last_seq = max(self._last_seq, int(event["seq"]))
                    yield event

    def _agent(self) -> dict[str, Any]:
        """The agent, before the first message: a wrong id or token fails here."""
        response = self._client.get(f"{self._base}/agents/{self._agent_id}")
        if response.status_code == 404:
            raise ChatError(f"no agent {self._agent_id!r} in project {self._project_id!r}")
        if response.status_code >= 400:
            raise ChatError(response.json().get("error", {}).get("message", response.text))
        agent: dict[str, Any] = response.json()
        return agent

    def _post(self, path: str, body: dict[str, Any] | None) -> dict[str, Any]:
        response = self._client.post(f"{self._base}{path}", json=body)
        if response.status_code >= 400:
            raise ChatError(response.json().get("error", {}).get("message", response.text))
        result: dict[str, Any] = response.json()
        return result

    def _prompt(self) -> str | None:
        try:
            text = self._ask("you> ").strip()
        except EOFError:
            return None
        if text.lower() in LEAVE:
            return None
        return text or None

    def _say(self, text: str) -> None:
        self._out.write(text)
        self._out.flush()
