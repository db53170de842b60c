"""The README's tour, run as written against a fresh `baton up`, so the README cannot drift.

Every `sh` block of the tour's sections runs, in order, in one bash (`set -euo pipefail`) with
the tour's own variables: `export BATON_TOKEN=bt_... BATON_PROJECT_ID=...` gets the values
this stack printed, and `http://127.0.0.1:8000` (or `localhost:8000`) is this stack's API.
Each `# -> ...` line under a command is its answer, checked loosely: the keys and literal
values it shows must be in the real answer, `...` stands for anything (inside a string, for
any text), a list without a trailing `...` has exactly the items shown, and a leading status
code (`# -> 202 {...}`) is the HTTP status. `"<name>"` in an answer takes the value found
there; a later `<name>` in a command is that value. Every curl answers below 400, or the tour
fails; a read (a GET, or `temporal workflow list`) whose answer is not yet the one shown is
asked again, as a newcomer would, for up to 30 seconds. `curl -N` (the event stream, which a
newcomer stops with Ctrl-C) is stopped after two seconds."""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.processes import RunningStack

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
# The tour's sections, in the README's order.
SECTIONS = (
    "## A quick tour",
    "### Tools",
    "### Knowledge",
    "### Triggers",
    "### Workforces",
    "### Tokens, members and user groups",
    "### Plans and credits",
    "### Audit log and usage",
    "### Sharing",
)
README_BASES = ("http://127.0.0.1:8000", "http://localhost:8000")
RETRY_SECONDS = 30
PLACEHOLDER = re.compile(r"<([a-z_]+)>")
ANY = object()  # `...` as a value
REST = object()  # `...` as a list's last item: any further items


# ---------------------------------------------------------------------------------------------
# Reading the README


@dataclass
class Command:
    section: str
    text: str
    answer: str | None = None


def section_blocks(readme: str) -> list[tuple[str, str]]:
    """The `sh` blocks of each tour section, in order."""
    found = []
    for title in SECTIONS:
        start = readme.index(f"\n{title}\n")
        rest = readme[start + len(title) + 2 :]
        end = re.search(r"^#{2,3} ", rest, flags=re.MULTILINE)
        body = rest[: end.start()] if end else rest
        blocks = re.findall(r"^```sh\n(.*?)^```$", body, flags=re.MULTILINE | re.DOTALL)
        assert blocks, f"no sh block under {title}"
        found += [(title, block) for block in blocks]
    return found


def code_of(text: str) -> tuple[str, bool]:
    """`text` without its comments, and whether it is a whole shell command: no open quote,
    no trailing backslash."""
    code = ""
    quote = ""
    escaped = False
    index = 0
    while index < len(text):
        char = text[index]
        if escaped:
            escaped = False
        elif char == "\\" and quote != "'":
            escaped = True
        elif quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (not code or code[-1].isspace()):
            # A comment runs to the end of its line.
            end = text.find("\n", index)
            index = len(text) if end == -1 else end
            continue
        code += char
        index += 1
    return code, not quote and not code.rstrip().endswith("\\")


def commands(section: str, block: str) -> list[Command]:
    found: list[Command] = []
    pending = ""
    lines = block.splitlines()
    index = 0
    while index < len(lines):
        line = lines[index]
        index += 1
        if not pending and line.lstrip().startswith("# -> "):
            answer = line.lstrip()[len("# -> ") :]
            # An answer goes on over the indented comment lines under it.
            while index < len(lines) and re.match(r"#\s{3,}\S", lines[index]):
                answer += "\n" + lines[index][1:].strip()
                index += 1
            assert found and found[-1].answer is None, f"an answer with no command: {line}"
            found[-1].answer = answer
            continue
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line + "\n"
        if heredoc := re.search(r"<<-?'?(\w+)'?\s*$", line):
            # A here-document's lines go with its command, up to the word that ends it.
            while index < len(lines) and lines[index].strip() != heredoc.group(1):
                pending += lines[index] + "\n"
                index += 1
            assert index < len(lines), f"an unfinished here-document in {section}"
            pending += lines[index] + "\n"
            index += 1
        if code_of(pending.split("<<", 1)[0] if heredoc else pending)[1]:
            found.append(Command(section, pending.rstrip("\n")))
            pending = ""
    assert not pending, f"an unfinished command in {section}: {pending}"
    return found


# ---------------------------------------------------------------------------------------------
# Answers


@dataclass
class Expected:
    status: int | None
    value: Any  # a pattern: ANY, REST, `Wildcard`, or JSON with those inside
    lines: list[str] | None = None  # or lines of text, each found in turn in the answer

    def match(self, output: str, bindings: dict[str, str]) -> str | None:
        """What differs, if anything."""
        if self.lines is not None:
            return lines_differ(self.lines, output)
        try:
            actual = json.loads(output)
        except json.JSONDecodeError:
            return "the answer is not JSON"
        return None if matches(self.value, actual, bindings) else "the answer differs"


@dataclass(frozen=True)
class Wildcard:
    """A string shown with `...` (any text) or `<name>` (a value to keep) in it."""

    shown: str

    def match(self, actual: object, bindings: dict[str, str]) -> bool:
        if self.shown == "...":
            return True
        whole = PLACEHOLDER.fullmatch(self.shown)
        if whole and not isinstance(actual, (dict, list)):
            return bind(whole.group(1), str(actual), bindings)
        if not isinstance(actual, str):
            return False
        names: list[str] = []
        pattern = ""
        for part in re.split(r"(\.\.\.|<[a-z_]+>)", self.shown):
            if part == "...":
                pattern += ".*"
            elif PLACEHOLDER.fullmatch(part):
                names.append(part[1:-1])
                pattern += f"(?P<{part[1:-1]}>.+?)"
            else:
                pattern += re.escape(part)
        found = re.fullmatch(pattern, actual, flags=re.DOTALL)
        return found is not None and all(bind(n, found.group(n), bindings) for n in names)


def bind(name: str, value: str, bindings: dict[str, str]) -> bool:
    if name in bindings:
        return bindings[name] == value
    bindings[name] = value
    return True


def parse_answer(text: str, base: str) -> Expected:
    for readme_base in README_BASES:
        text = text.replace(readme_base, base)
    status = None
    if found := re.match(r"(\d{3}) ", text):
        status, text = int(found.group(1)), text[found.end() :]
    if not text.startswith(("{", "[")):
        return Expected(status, None, text.splitlines())
    text = text.replace("\n", " ")
    # `...` outside strings: as an object's member nothing (objects are always open), as a
    # value anything, as a list's last item any further items.
    marked = re.sub(r'("(?:[^"\\]|\\.)*")|\.\.\.', lambda m: m.group(1) or '"\u2026"', text)
    marked = re.sub(r',\s*"\u2026"\s*(?=})', "", marked)
    marked = re.sub(r'{\s*"\u2026"\s*}', "{}", marked)
    value, _ = json.JSONDecoder().raw_decode(marked)  # prose may follow the answer
    return Expected(status, pattern_of(value))


def pattern_of(value: Any) -> Any:
    if value == "\u2026":
        return ANY
    if isinstance(value, str) and ("..." in value or PLACEHOLDER.search(value)):
        return Wildcard(value)
    if isinstance(value, dict):
        return {k: pattern_of(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [pattern_of(v) for v in value]
        if items and items[-1] is ANY:
            items[-1] = REST
        return items
    return value


def lines_differ(shown: list[str], output: str) -> str | None:
    """Text shown as lines (runs of spaces are one, `...` any text): each must match a line
    of the output, in order."""
    actual = iter(" ".join(line.split()) for line in output.splitlines())
    for line in shown:
        pattern = ".*".join(re.escape(part) for part in " ".join(line.split()).split("..."))
        if not any(re.fullmatch(pattern, candidate) for candidate in actual):
            return f"no line (after the ones before) is {line!r}"
    return None


def matches(pattern: Any, actual: Any, bindings: dict[str, str]) -> bool:
    if pattern is ANY:
        return True
    if isinstance(pattern, Wildcard):
        return pattern.match(actual, bindings)
    if isinstance(pattern, dict):
        return isinstance(actual, dict) and all(
            key in actual and matches(value, actual[key], bindings)
            for key, value in pattern.items()
        )
    if isinstance(pattern, list):
        if not isinstance(actual, list):
            return False
        shown = pattern[:-1] if pattern and pattern[-1] is REST else pattern
        if len(actual) < len(shown) or (shown is pattern and len(actual) != len(shown)):
            return False
        return all(matches(p, a, bindings) for p, a in zip(shown, actual, strict=False))
    return type(pattern) is type(actual) and bool(pattern == actual)


# ---------------------------------------------------------------------------------------------
# Running it


# Every curl writes its response headers where the runner reads its status; the event
# stream, which a newcomer stops with Ctrl-C, stops after two seconds.
PRELUDE = r"""
set -euo pipefail
curl() {
    if [[ " $* " == *" -N "* ]]; then
        command curl -D "$TOUR_HEADERS" --max-time 2 "$@" || [ $? -eq 28 ]
    else
        command curl -D "$TOUR_HEADERS" "$@"
    fi
}
"""


@dataclass
class Shell:
    """One bash for the whole tour, fed a command at a time, so variables carry over."""

    cwd: Path
    env: dict[str, str]
    headers: Path
    process: subprocess.Popen[bytes] = field(init=False)
    lines: queue.Queue[bytes] = field(init=False, default_factory=queue.Queue)

    def __post_init__(self) -> None:
        self.stderr = (self.cwd / "stderr.log").open("wb")
        self.process = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=self.cwd,
            env={**self.env, "TOUR_HEADERS": str(self.headers)},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        threading.Thread(target=self._read, daemon=True).start()
        self.run(PRELUDE)

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in iter(self.process.stdout.readline, b""):
            self.lines.put(line)
        self.lines.put(b"")

    def run(self, command: str, timeout: float = 60) -> str:
        marker = f"--tour-{time.monotonic_ns()}--"
        self.headers.write_text("")
        assert self.process.stdin is not None
        self.process.stdin.write(f"{command}\nprintf '\\n{marker}\\n'\n".encode())
        self.process.stdin.flush()
        output = b""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no end after {timeout} s:\n{command}") from None
            if line == b"":
                self.process.wait(timeout=10)
                raise AssertionError(
                    f"the tour stopped (exit {self.process.returncode}) at:\n{command}\n"
                    f"output: {output.decode()}\nstderr: {self.stderr_text()}"
                )
            if line.decode().strip() == marker:
                text = output.decode()
                return text[:-1] if text.endswith("\n") else text
            output += line

    def status(self) -> int | None:
        statuses = re.findall(r"^HTTP/[\d.]+ (\d{3})", self.headers.read_text(), re.MULTILINE)
        return int(statuses[-1]) if statuses else None

    def stderr_text(self) -> str:
        self.stderr.flush()
        return (self.cwd / "stderr.log").read_text()

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=10)
        self.stderr.close()


def prepare(command: Command, stack: RunningStack, bindings: dict[str, str]) -> str:
    text = command.text
    base = f"http://127.0.0.1:{stack.api_port}"
    for readme_base in README_BASES:
        text = text.replace(readme_base, base)
    if "export BATON_TOKEN=" in text:
        # "Copy the token and the project id `make run` printed into your shell".
        token, project = stack.value("BATON_TOKEN"), stack.value("BATON_PROJECT_ID")
        assert token.startswith("bt_")
        copied = text.replace("BATON_TOKEN=bt_...", f"BATON_TOKEN={token}")
        copied = copied.replace("BATON_PROJECT_ID=...", f"BATON_PROJECT_ID={project}")
        assert "..." not in copied.split("\n", 1)[0], f"cannot fill in: {text}"
        text = copied
    for name in PLACEHOLDER.findall(code_of(text)[0]):
        assert name in bindings, f"<{name}> has no value yet (no earlier answer shows it): {text}"
        text = text.replace(f"<{name}>", bindings[name])
    return text


def is_read(command: str) -> bool:
    """A command that only reads, so it may be asked again: a GET, or a list of Temporal runs
    (whose visibility store follows a run's changes a moment later)."""
    reader = re.match(r"(curl |\.venv/bin/temporal workflow list )", command)
    return bool(reader) and not re.search(r" -X | -d | -F |\$\(|>", command)


def check(command: Command, shell: Shell, stack: RunningStack, bindings: dict[str, str]) -> None:
    text = prepare(command, stack, bindings)
    base = f"http://127.0.0.1:{stack.api_port}"
    expected = parse_answer(command.answer, base) if command.answer else None
    deadline = time.monotonic() + RETRY_SECONDS
    while True:
        output = shell.run(text)
        status = shell.status() if "curl " in text else None
        problem = None
        found: dict[str, str] = dict(bindings)
        if status is not None and status >= 400:
            problem = f"HTTP {status}"
        elif expected is not None:
            if expected.status is not None and status != expected.status:
                problem = f"HTTP {status}, the README shows {expected.status}"
            else:
                problem = expected.match(output, found)
        if problem is None:
            bindings.update(found)
            return
        if not is_read(text) or time.monotonic() > deadline or (status or 0) >= 400:
            raise AssertionError(
                f"{command.section}: {problem}\n$ {text}\n"
                f"README: # -> {command.answer}\nanswer: {output}\n"
                f"stderr: {shell.stderr_text()}"
            )
        time.sleep(0.2)


def test_the_readme_tour_runs_as_written(tmp_path: Path):
    readme = README.read_text()
    tour = [c for section, block in section_blocks(readme) for c in commands(section, block)]
    assert sum(c.answer is not None for c in tour) >= 10, "the tour lost its answers"

    home = tmp_path / "home"
    home.mkdir()
    # The tour runs in the checkout, as after `make run`: `.venv/bin/...` is this venv.
    (home / ".venv").symlink_to(sys.prefix)
    stack = RunningStack(tmp_path / "data", tmp_path / "baton.log")
    shell = None
    try:
        stack.wait_until_running()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("BATON_", "TEMPORAL_"))},
            # `temporal` finds the stack's server as it finds `make run`'s at its default port.
            "TEMPORAL_ADDRESS": f"127.0.0.1:{stack.temporal_port}",
        }
        shell = Shell(home, env, tmp_path / "headers")
        bindings: dict[str, str] = {}
        for command in tour:
            check(command, shell, stack, bindings)
    finally:
        if shell is not None:
            shell.close()
        try:
            stack.interrupt()
        finally:
            stack.kill()


# ---------------------------------------------------------------------------------------------
# The runner's own checks, so a tour that passes means the README's answers were met


def test_an_answer_is_checked_loosely_but_not_blindly():
    shown = parse_answer(
        '202 {"id": "<task_id>", "status": "queued", "url": "http://127.0.0.1:8000/x/...", '
        '"top": [["to", 2], ...], "steps": [...], "n": ..., ...}  (prose)',
        "http://127.0.0.1:9",
    )
    assert shown.status == 202
    real = {"id": "t-1", "status": "queued", "url": "http://127.0.0.1:9/x/y", "extra": 1}
    real |= {"top": [["to", 2], ["be", 2]], "steps": [], "n": None}
    bindings: dict[str, str] = {}
    assert shown.match(json.dumps(real), bindings) is None and bindings == {"task_id": "t-1"}
    assert shown.match(json.dumps(real), {"task_id": "t-2"}) is not None  # not the same task
    for wrong in (
        {"status": "running"},
        {"url": "http://127.0.0.1:8000/x/y"},
        {"top": [["to", 1]]},
        {"top": []},
        {"steps": {}},
    ):
        assert shown.match(json.dumps(real | wrong), {}) is not None, wrong
    assert shown.match(json.dumps({k: v for k, v in real.items() if k != "n"}), {}) is not None
    assert shown.match("not json", {}) is not None
    exact = parse_answer('{"top": [["to", 2]], "ok": true}', "")
    assert exact.match('{"top": [["to", 2]], "ok": true}', {}) is None
    assert exact.match('{"top": [["to", 2], ["be", 2]], "ok": true}', {}) is not None
    assert exact.match('{"top": [["to", 2]], "ok": 1}', {}) is not None


def test_text_answers_are_lines_found_in_order():
    shown = parse_answer("id: ...\nevent: task.status\ndata: {...", "")
    assert (
        shown.match("id: 1\nevent: a\ndata: {}\n\nid: 2\nevent: task.status\ndata: {}", {}) is None
    )
    assert shown.match("id: 2\nevent: task.status\n", {}) is not None
    assert shown.match("data: {}\nevent: task.status\n", {}) is not None
    table = parse_answer("Status  WorkflowId\nRunning   task-...", "")
    assert table.match("  Status     WorkflowId \n  Running  task-1  X", {}) is None
    assert table.match("  Status     WorkflowId \n  Completed  task-1", {}) is not None
    assert table.match("  Status     WorkflowId \n  Running  tool-run-1", {}) is not None


def test_a_block_splits_into_whole_commands_each_with_its_answer():
    block = (
        "# a comment\n"
        "X=1\n"
        "cat > f.csv <<'EOF'\n"
        'a,"b\n'
        "EOF\n"
        'curl -s $API -d \'{"q": 1,\n'
        '   "r": 2}\' \\\n'
        '  -H "$AUTH"   # what it does\n'
        '# -> {"a": 1,\n'
        '#     "b": 2}\n'
        "# Not part of the answer.\n"
        "echo '#' done\n"
    )
    found = commands("s", block)
    assert [c.text.split()[0] for c in found] == ["X=1", "cat", "curl", "echo"]
    assert found[1].text.endswith("EOF") and found[1].answer is None
    assert found[2].text.endswith('-H "$AUTH"   # what it does')
    assert found[2].answer == '{"a": 1,\n"b": 2}'
    assert code_of(found[2].text)[0].rstrip().endswith('-H "$AUTH"')
    assert code_of("echo '#' done")[0] == "echo '#' done"
