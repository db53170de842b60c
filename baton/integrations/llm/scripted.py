"""The scripted models: offline and deterministic, for demos and tests only. Every answer starts
with `SCRIPTED_LABEL`, so nobody mistakes it for a real model's.

`scripted:echo` answers "You said: <the last user message>".

`scripted:tools` drives the whole agent loop without a model:

- When the last message is the user's and the request offers tools, every line of that message
  written as

      call <tool_name> {"json": "arguments"}

  becomes a tool call. Several such lines are parallel calls, in order. The arguments may be
  left out (meaning `{}`); arguments that are not a JSON object give a call with
  `arguments_error`, as a real model's invalid JSON would. The tool need not be among those
  offered, so an unknown tool can be tried as well. Call ids are `scripted-<turn>-<n>`.
- When the last messages are tool results, it answers with one line per result:
  "<tool name>: <result>".
- Otherwise (no `call` line, or no tools offered) it echoes like `scripted:echo`.

`scripted:search` stands in for the two model steps of advanced knowledge search
(baton/domain/advanced_search.py), whose user message is a JSON object:

- `{"question": ...}` (the rewrite) gets `{"query": ...}`: the question's words, lower-cased,
  without the common English words in `_STOP_WORDS` ("How do I reset my password?" becomes
  "reset password"); the question itself when no word is left.
- `{"question": ..., "hits": [{"row_id", "row"}, ...]}` (the answer) cites every hit whose row
  shares one of those words: `{"answered": <any cited>, "summary": "<label> Rows 3, 5 mention
  reset, password.", "citations": [3, 5]}`.
- Any other message gets what `scripted:echo` gives.

A request with a `json_schema` gets, from `echo` and `tools` (and from `search` when its
message is not one of the two above), the smallest JSON document that matches it (every string
in it is the label), so structured-output steps run offline too.

Text reaches `on_delta` in a few chunks, as a real model's stream would."""

from __future__ import annotations

import json
import re
from typing import Any

from baton.domain.llm import (
    LlmRequest,
    LlmResponse,
    Message,
    MessageRole,
    ProviderConfig,
    TokenUsage,
    ToolCall,
)
from baton.domain.models import SCRIPTED_LABEL, SCRIPTED_MODELS
from baton.errors import ModelNotAvailable
from baton.integrations.llm.streaming import DeltaSink, TextCollector, tool_call

_CALL_LINE = re.compile(r"^\s*call\s+(?P<name>[\w.\-]+)\s*(?P<arguments>.*?)\s*$")
_MAX_RESULT = 500
_WORD = re.compile(r"\w+")
# What `scripted:search` leaves out of a question: words that ask, not words that name.
_STOP_TEXT = """a about an and any are as at be can could did do does for from has have how i if
in is it its me my of on or our please should tell that the there this to was we what when where
which who why will with would you your"""
_STOP_WORDS = frozenset(_STOP_TEXT.split())
_CHUNKS = 4


async def complete(
    name: str,
    request: LlmRequest,
    *,
    config: ProviderConfig | None = None,
    on_delta: DeltaSink | None = None,
) -> LlmResponse:
    """`config` is not read: the scripted models need no key and no endpoint."""
    calls: list[ToolCall] = []
    if name not in SCRIPTED_MODELS:
        raise ModelNotAvailable(f"the scripted provider has no model {name!r}")
    scripted_search = _search(request.messages) if name == "search" else None
    if scripted_search is not None:
        content = json.dumps(scripted_search)
    elif request.json_schema is not None:
        content = json.dumps(_smallest_instance(request.json_schema))
    elif name in ("echo", "search"):
        content = _echo(request.messages)
    elif name == "tools":
        content, calls = _tools(request)
    else:
        raise ModelNotAvailable(f"the scripted provider has no model {name!r}")
    text = TextCollector(on_delta)
    for chunk in _chunks(content):
        await text.add(chunk)
    return LlmResponse(
        content=text.text,
        tool_calls=calls,
        model=request.model,
        usage=TokenUsage(
            input_tokens=sum(_count_tokens(m.content) for m in request.messages),
            output_tokens=_count_tokens(content)
            + sum(_count_tokens(str(c.arguments)) for c in calls),
        ),
        finish_reason="tool_calls" if calls else "stop",
    )


def _search(messages: list[Message]) -> dict[str, Any] | None:
    last_user = next((m.content for m in reversed(messages) if m.role is MessageRole.user), "")
    try:
        asked = json.loads(last_user)
    except ValueError:
        return None
    if not isinstance(asked, dict) or not isinstance(asked.get("question"), str):
        return None
    keywords = _keywords(asked["question"])
    hits = asked.get("hits")
    if hits is None:
        return {"query": " ".join(keywords) or asked["question"]}
    if not isinstance(hits, list):
        return None
    cited: list[Any] = []
    shared: dict[str, None] = {}
    for hit in hits:
        if not isinstance(hit, dict) or "row_id" not in hit:
            continue
        words = set(_keywords(json.dumps(hit.get("row"), ensure_ascii=False)))
        found = [word for word in keywords if word in words]
        if found:
            cited.append(hit["row_id"])
            shared.update(dict.fromkeys(found))
    if cited:
        rows = ", ".join(str(row_id) for row_id in cited)
        summary = f"{SCRIPTED_LABEL} Rows {rows} mention {', '.join(shared)}."
    else:
        summary = f"{SCRIPTED_LABEL} No row mentions {', '.join(keywords) or 'the question'}."
    return {"answered": bool(cited), "summary": summary, "citations": cited}


def _keywords(text: str) -> list[str]:
    words = (word.lower() for word in _WORD.findall(text))
    return list(dict.fromkeys(word for word in words if word not in _STOP_WORDS))


def _smallest_instance(schema: dict[str, Any]) -> Any:
    if schema.get("enum"):
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0] if kind else None
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        return {key: _smallest_instance(sub) for key, sub in properties.items()}
    if kind == "array":
        items = schema.get("items")
        count = int(schema.get("minItems", 0))
        return [_smallest_instance(items) for _ in range(count)] if isinstance(items, dict) else []
    if kind in ("number", "integer"):
        return schema.get("minimum", 0)
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return SCRIPTED_LABEL


def _echo(messages: list[Message]) -> str:
    last_user = next((m.content for m in reversed(messages) if m.role is MessageRole.user), "")
    return f"{SCRIPTED_LABEL} You said: {last_user}"


def _tools(request: LlmRequest) -> tuple[str, list[ToolCall]]:
    messages = request.messages
    last = messages[-1] if messages else None
    if last is not None and last.role is MessageRole.tool:
        return _summarise_results(messages), []
    if last is not None and last.role is MessageRole.user and request.tools:
        turn = sum(1 for m in messages if m.role is MessageRole.assistant)
        calls = [
            tool_call(
                id=f"scripted-{turn}-{number}",
                name=match["name"],
                raw_arguments=match["arguments"],
            )
            for number, match in enumerate(_call_lines(last.content))
        ]
        if calls:
            return f"{SCRIPTED_LABEL} Calling {', '.join(c.name for c in calls)}.", calls
    return _echo(messages), []


def _call_lines(text: str) -> list[re.Match[str]]:
    return [match for line in text.splitlines() if (match := _CALL_LINE.match(line))]


def _summarise_results(messages: list[Message]) -> str:
    results: list[Message] = []
    for message in reversed(messages):
        if message.role is not MessageRole.tool:
            break
        results.insert(0, message)
    asked = {
        call.id: call.name
        for message in messages
        if message.role is MessageRole.assistant
        for call in message.tool_calls
    }
    lines = [
        f"{m.name or asked.get(m.tool_call_id or '', m.tool_call_id)}: {m.content[:_MAX_RESULT]}"
        for m in results
    ]
    return "\n".join([f"{SCRIPTED_LABEL} Tool results:", *lines])


def _chunks(text: str) -> list[str]:
    # Split where a word begins, so the chunks join back to exactly the text.
    words = re.split(r"(?<=\s)(?=\S)", text)
    size = max(1, -(-len(words) // _CHUNKS))
    return ["".join(words[i : i + size]) for i in range(0, len(words), size)]


def _count_tokens(text: str) -> int:
    # Whitespace words: no tokenizer is needed to make usage figures plausible offline.
    return len(text.split())
