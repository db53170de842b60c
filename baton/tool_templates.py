"""Built-in tool templates: ready to run, to clone into a project and adapt. The LLM steps
use the offline scripted models (`scripted:echo`, and `scripted:search` for advanced knowledge
search) so every template runs on a fresh install; switch the `model` to a real provider after
cloning."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from baton.domain.advanced_search import (
    ANSWER_SCHEMA,
    ANSWER_SYSTEM_PROMPT,
    REWRITE_SCHEMA,
    REWRITE_SYSTEM_PROMPT,
)
from baton.domain.tools import ToolSpec


class ToolTemplate(BaseModel):
    id: str
    title: str
    description: str
    spec: ToolSpec


_READABLE_TEXT = """
from html.parser import HTMLParser

class Text(HTMLParser):
    skip = 0
    def __init__(self):
        super().__init__()
        self.parts = []
    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style", "noscript"):
            self.skip += 1
    def handle_endtag(self, tag):
        if tag in ("script", "style", "noscript") and self.skip:
            self.skip -= 1
    def handle_data(self, data):
        if not self.skip and data.strip():
            self.parts.append(data.strip())

def main(inputs):
    parser = Text()
    parser.feed(inputs["steps"]["fetch"]["output"]["body"])
    text = " ".join(parser.parts)
    return text[: inputs["params"]["max_chars"]]
"""

# The citations the answer keeps: those that name a hit of the search (as the API's advanced
# search checks them, baton/domain/advanced_search.py).
_HIT_IDS = 'steps.search.output | map(attribute="row_id") | list'
_TEMPLATES: list[dict[str, Any]] = [
    {
        "id": "summarise-text",
        "title": "Summarise text",
        "description": "Summarises a text in a few sentences.",
        "spec": {
            "name": "Summarise text",
            "params": [
                {"name": "text", "type": "long_text"},
                {"name": "sentences", "type": "integer", "required": False, "default": 3},
            ],
            "steps": [
                {
                    "name": "summary",
                    "type": "llm",
                    "prompt": "Summarise in {{ params.sentences }} sentences:\n\n{{ params.text }}",
                }
            ],
        },
    },
    {
        "id": "classify-text",
        "title": "Classify text into labels",
        "description": "Picks the best label for a text from a list you give.",
        "spec": {
            "name": "Classify text",
            "params": [
                {"name": "text", "type": "long_text"},
                {"name": "labels", "type": "list_of_text"},
            ],
            "steps": [
                {
                    "name": "classify",
                    "type": "llm",
                    "prompt": "Classify the text into one of {{ params.labels | join(', ') }}."
                    "\n\n{{ params.text }}",
                    "json_schema": {
                        "type": "object",
                        "properties": {"label": {"type": "string"}},
                        "required": ["label"],
                    },
                }
            ],
            "output": "{{ steps.classify.output.label }}",
        },
    },
    {
        "id": "extract-fields",
        "title": "Extract fields to a JSON Schema",
        "description": "Pulls structured fields out of free text.",
        "spec": {
            "name": "Extract fields",
            "params": [
                {"name": "text", "type": "long_text"},
                {
                    "name": "schema",
                    "type": "json",
                    "required": False,
                    "default": {
                        "type": "object",
                        "properties": {"name": {"type": "string"}, "email": {"type": "string"}},
                    },
                },
            ],
            "steps": [
                {
                    "name": "extract",
                    "type": "llm",
                    "prompt": "Extract the fields of this JSON Schema from the text.\n"
                    "Schema: {{ params.schema | tojson }}\n\n{{ params.text }}",
                    "json_schema": {"type": "object"},
                }
            ],
        },
    },
    {
        "id": "translate",
        "title": "Translate",
        "description": "Translates a text into another language.",
        "spec": {
            "name": "Translate",
            "params": [
                {"name": "text", "type": "long_text"},
                {"name": "language", "type": "text", "required": False, "default": "French"},
            ],
            "steps": [
                {
                    "name": "translation",
                    "type": "llm",
                    "system_prompt": "You are a careful translator. "
                    "Answer with the translation only.",
                    "prompt": "Translate into {{ params.language }}:\n\n{{ params.text }}",
                }
            ],
        },
    },
    {
        "id": "fetch-json-fields",
        "title": "Fetch JSON from a URL and pick fields",
        "description": "GETs a JSON document and returns the fields a JMESPath expression picks.",
        "spec": {
            "name": "Fetch JSON fields",
            "params": [
                {"name": "url", "type": "file_url"},
                {"name": "fields", "type": "text", "required": False, "default": "@"},
            ],
            "steps": [
                {"name": "fetch", "type": "http", "url": "{{ params.url }}", "response": "json"},
                {
                    "name": "pick",
                    "type": "code",
                    "code": "import json\n"
                    "def main(inputs):\n"
                    "    body = inputs['steps']['fetch']['output']['body']\n"
                    "    return body if inputs['params']['fields'] == '@' else "
                    "{k: body.get(k) for k in inputs['params']['fields'].split(',')}\n",
                },
            ],
        },
    },
    {
        "id": "fetch-page-text",
        "title": "Fetch a page and return its readable text",
        "description": "GETs a web page and strips scripts, styles and markup.",
        "spec": {
            "name": "Fetch page text",
            "params": [
                {"name": "url", "type": "file_url"},
                {"name": "max_chars", "type": "integer", "required": False, "default": 20000},
            ],
            "steps": [
                {"name": "fetch", "type": "http", "url": "{{ params.url }}", "response": "text"},
                {"name": "readable", "type": "code", "code": _READABLE_TEXT},
            ],
        },
    },
    {
        "id": "post-to-slack",
        "title": "Post to a Slack incoming webhook",
        "description": "Posts a message; store the webhook URL as the project secret "
        "`slack_webhook_url` first.",
        "spec": {
            "name": "Post to Slack",
            "params": [{"name": "text", "type": "long_text"}],
            "steps": [
                {
                    "name": "post",
                    "type": "http",
                    "method": "POST",
                    "url": "{{ secrets.slack_webhook_url }}",
                    "body": {"text": "{{ params.text }}"},
                    "response": "text",
                    "retries": 3,
                }
            ],
            "output": "{{ steps.post.output.status }}",
        },
    },
    {
        "id": "post-to-slack-channel",
        "title": "Post to a Slack channel as a bot",
        "description": "Posts a message in a channel, or in a thread, as the bot of the "
        "project's Slack integration; add one named `slack` first (its bot must be in the "
        "channel).",
        "spec": {
            "name": "Post to a Slack channel",
            "params": [
                {"name": "channel", "type": "text", "description": "The channel's id (C...)"},
                {"name": "text", "type": "long_text"},
                {"name": "thread_ts", "type": "text", "required": False, "default": ""},
            ],
            "steps": [
                {
                    "name": "post",
                    "type": "slack_post",
                    "integration": "slack",
                    "channel": "{{ params.channel }}",
                    "text": "{{ params.text }}",
                    "thread_ts": "{{ params.thread_ts }}",
                }
            ],
            "output": "{{ steps.post.output }}",
        },
    },
    {
        "id": "current-time-from-mcp",
        "title": "The current time, from an MCP server",
        "description": "Asks the `get_current_time` tool of the project's MCP integration "
        "named `time` (for example the reference server `mcp-server-time`, or any server "
        "with that tool) for the time in a timezone; add the integration first.",
        "spec": {
            "name": "Current time",
            "params": [
                {
                    "name": "timezone",
                    "type": "text",
                    "description": "An IANA timezone such as Europe/Paris",
                }
            ],
            "steps": [
                {
                    "name": "now",
                    "type": "mcp",
                    "integration": "time",
                    "tool": "get_current_time",
                    "arguments": {"timezone": "{{ params.timezone }}"},
                }
            ],
            "output": "{{ steps.now.output }}",
        },
    },
    {
        "id": "compute-python",
        "title": "Compute with Python",
        "description": "Computes statistics of a list of numbers in Python; "
        "edit the code to compute anything else.",
        "spec": {
            "name": "Compute with Python",
            "params": [
                {"name": "data", "type": "json", "required": False, "default": [1, 2, 3]},
            ],
            "steps": [
                {
                    "name": "compute",
                    "type": "code",
                    "code": "data = inputs['params']['data']\n"
                    "result = {'count': len(data), 'sum': sum(data), "
                    "'mean': sum(data) / len(data) if data else None}\n",
                }
            ],
        },
    },
    {
        "id": "summarise-each",
        "title": "Summarise each text of a list",
        "description": "Runs a summary over every item of a list, four at a time.",
        "spec": {
            "name": "Summarise each",
            "params": [{"name": "texts", "type": "list_of_text"}],
            "steps": [
                {
                    "name": "summaries",
                    "type": "llm",
                    "foreach": "params.texts",
                    "concurrency": 4,
                    "prompt": "Summarise in one sentence:\n\n{{ foreach.item }}",
                }
            ],
        },
    },
    {
        "id": "draft-email",
        "title": "Draft an email",
        "description": "Fills an email template, then has the model polish it.",
        "spec": {
            "name": "Draft email",
            "params": [
                {"name": "recipient", "type": "text"},
                {"name": "points", "type": "list_of_text"},
                {
                    "name": "tone",
                    "type": "enum",
                    "options": ["friendly", "formal"],
                    "required": False,
                    "default": "friendly",
                },
            ],
            "steps": [
                {
                    "name": "outline",
                    "type": "template",
                    "template": "To: {{ params.recipient }}\n"
                    "{% for p in params.points %}- {{ p }}\n{% endfor %}",
                },
                {
                    "name": "email",
                    "type": "llm",
                    "prompt": "Write a {{ params.tone }} email from this outline:\n\n"
                    "{{ steps.outline.output }}",
                },
            ],
        },
    },
    {
        "id": "send-email",
        "title": "Send an email",
        "description": "Sends a plain-text email through the project's SMTP integration, "
        "which must be named `smtp` (POST .../integrations with kind smtp).",
        "spec": {
            "name": "Send email",
            "params": [
                {"name": "to", "type": "text", "description": "The recipient's address"},
                {"name": "subject", "type": "text"},
                {"name": "body", "type": "long_text"},
            ],
            "steps": [
                {
                    "name": "send",
                    "type": "email_send",
                    "integration": "smtp",
                    "to": ["{{ params.to }}"],
                    "subject": "{{ params.subject }}",
                    "text": "{{ params.body }}",
                }
            ],
        },
    },
    {
        "id": "word-count",
        "title": "Count words",
        "description": "Counts words and the most frequent ones, without a model.",
        "spec": {
            "name": "Count words",
            "params": [
                {"name": "text", "type": "long_text"},
                {"name": "top", "type": "integer", "required": False, "default": 5},
            ],
            "steps": [
                {
                    "name": "count",
                    "type": "code",
                    "code": "from collections import Counter\n"
                    "words = inputs['params']['text'].lower().split()\n"
                    "result = {'words': len(words), 'top': "
                    "Counter(words).most_common(inputs['params']['top'])}\n",
                }
            ],
        },
    },
    {
        "id": "answer-from-knowledge",
        "title": "Answer from knowledge",
        "description": "Searches a knowledge set and answers from the hits, citing row ids. "
        "Pick the set when running it: hybrid search, or lexical where the set has no "
        "embedding provider.",
        "spec": {
            "name": "Answer from knowledge",
            "params": [
                {"name": "question", "type": "text"},
                {"name": "knowledge_set", "type": "knowledge_set"},
            ],
            "steps": [
                {
                    "name": "search",
                    "type": "knowledge_search",
                    "knowledge_set": "{{ params.knowledge_set }}",
                    "query": "{{ params.question }}",
                },
                {
                    "name": "answer",
                    "type": "llm",
                    "prompt": "Answer from these rows, citing their ids:\n"
                    "{{ steps.search.output | tojson }}\n\nQuestion: {{ params.question }}",
                },
            ],
        },
    },
    {
        "id": "advanced-knowledge-search",
        "title": "Advanced knowledge search",
        "description": "A model rewrites the question into a search query, the knowledge set "
        "is searched, and a model checks the hits answer the question and summarises them "
        "citing row ids; a cited id that is not a hit is dropped. The steps use the offline "
        "`scripted:search` model (a fixed script, for demos and tests): set both to a real "
        "model after cloning.",
        "spec": {
            "name": "Advanced knowledge search",
            "params": [
                {"name": "question", "type": "text"},
                {"name": "knowledge_set", "type": "knowledge_set"},
            ],
            "steps": [
                {
                    "name": "rewrite",
                    "type": "llm",
                    "model": "scripted:search",
                    "system_prompt": REWRITE_SYSTEM_PROMPT,
                    "prompt": '{{ {"question": params.question} | tojson }}',
                    "json_schema": REWRITE_SCHEMA,
                },
                {
                    "name": "search",
                    "type": "knowledge_search",
                    "knowledge_set": "{{ params.knowledge_set }}",
                    "query": "{{ steps.rewrite.output.query }}",
                },
                {
                    "name": "answer",
                    "type": "llm",
                    "model": "scripted:search",
                    "system_prompt": ANSWER_SYSTEM_PROMPT,
                    "prompt": '{{ {"question": params.question, "hits": steps.search.output}'
                    " | tojson }}",
                    "json_schema": ANSWER_SCHEMA,
                },
            ],
            "output": '{{ {"search_query": steps.rewrite.output.query, '
            '"answered": steps.answer.output.answered and '
            f'(steps.answer.output.citations | select("in", {_HIT_IDS}) | list | length > 0), '
            '"summary": steps.answer.output.summary, '
            f'"citations": steps.answer.output.citations | select("in", {_HIT_IDS}) | list, '
            f'"dropped_citations": steps.answer.output.citations | reject("in", {_HIT_IDS})'
            ' | list, "hits": steps.search.output} }}',
        },
    },
]


TEMPLATES: dict[str, ToolTemplate] = {t["id"]: ToolTemplate.model_validate(t) for t in _TEMPLATES}
