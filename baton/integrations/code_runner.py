"""Runs a code step's Python in a child process with limits, inside the bubblewrap sandbox
(baton/integrations/sandbox.py), so a runaway step cannot take the worker down with it and a
hostile one cannot reach anything of Baton's.

What the limits protect against:
- runaway CPU: RLIMIT_CPU stops the child after its CPU-time budget;
- runaway memory: RLIMIT_AS caps its address space, so a memory bomb gets a MemoryError (or
  dies) instead of pushing the worker's machine into swap or the OOM killer;
- runaway wall time (sleeps, blocking I/O): the worker kills the sandbox, and with it every
  process in it;
- output flooding: stdout, stderr and the result are each capped at `output_bytes`, and any
  file it writes is capped in size (RLIMIT_FSIZE; not in number); its /tmp is a tmpfs of the
  memory budget;
- crashes of any kind (`os._exit`, `sys.exit`, segfaults, fork attempts): they end the child,
  never the worker. Its working directory is a fresh temporary one, deleted afterwards.

What the sandbox protects against: the code starts with an empty environment, runs as uid
65534 without capabilities, and sees only the Python standard library (read-only), its own
directory, a private /tmp and its own processes. So it cannot read the worker's environment
(/proc/<worker pid>/environ), settings, `.env` files, data directory or SQLite database, nor
/etc; cannot write outside its directory; cannot connect to the API, Temporal, the database
server or any other address (its network namespace has only loopback); cannot start a
process (a seccomp filter); and nothing in the sandbox outlives the run, `setsid()` or not:
its PID namespace dies with it. It receives the job on stdin and writes its report to an
inherited descriptor, so no path of Baton's is mounted.

What remains: the kernel is shared, so a kernel exploit escapes any namespace (the seccomp
filter refuses new processes, not the rest of the kernel's system calls); CPU, memory and
file limits are per process, and a file count is not limited beyond the disk; the code has
the worker's uid on the host when the worker is not root (65534 when it is); on an
architecture other than x86_64 and aarch64 there is no filter, and RLIMIT_NPROC alone
refuses processes. It can read the system libraries and the runtime's files. BATON_CODE_SANDBOX=none
(development only) runs the same child without the sandbox, with the worker's own access to
files and the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from baton.errors import BatonError, InvalidInput
from baton.integrations.sandbox import (
    Bubblewrap,
    find_bubblewrap,
    interpreter,
    no_processes_filter,
)

CodeFailure = Literal[
    "timeout",
    "cpu_limit",
    "memory_limit",
    "exception",
    "result_not_json",
    "output_too_large",
    "disabled",
]

_MB = 1024 * 1024
# Seconds to wait for the output pipes to close once the child is dead: only a process that
# escaped the process group could keep them open longer.
_PIPE_DRAIN_SECONDS = 1.0


@dataclass(frozen=True)
class CodeLimits:
    cpu_seconds: float = 5.0
    memory_mb: int = 256
    wall_seconds: float = 10.0
    output_bytes: int = 1_000_000  # cap on captured stdout / stderr / result JSON each

    def __post_init__(self) -> None:
        for name in ("cpu_seconds", "memory_mb", "wall_seconds", "output_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"CodeLimits.{name} must be positive")


@dataclass(frozen=True)
class CodeResult:
    result: Any  # JSON-compatible value
    stdout: str
    stderr: str
    duration_ms: int


class CodeStepError(BatonError):
    """A code step failed; `kind` says how, and what it printed so far is attached."""

    code = "code_step_failed"
    status_code = 422

    def __init__(
        self,
        message: str,
        *,
        kind: CodeFailure,
        stdout: str = "",
        stderr: str = "",
        line: int | None = None,
    ) -> None:
        super().__init__(message, details={"kind": kind, "line": line})
        self.kind: CodeFailure = kind
        self.stdout = stdout
        self.stderr = stderr
        self.line = line  # where in the user's code it failed, when known


async def run_python(
    code: str,
    inputs: dict[str, Any],
    *,
    limits: CodeLimits = CodeLimits(),
    bwrap: str | None = "bwrap",
    on_tick: Callable[[], None] | None = None,
    tick_interval: float = 1.0,
) -> CodeResult:
    """Runs `code` as a module with a global `inputs`; its output is `main(inputs)` if it
    defines `main`, else its global `result` (None if neither). Raises CodeStepError.

    `bwrap` is the bubblewrap executable the code runs in (a name on PATH or a path); when it
    cannot run, SandboxUnavailable. None runs the code without a sandbox (development only)."""
    try:
        job = json.dumps({"code": code, "inputs": inputs, "output_bytes": limits.output_bytes})
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"the inputs of a code step must be JSON: {exc}") from exc
    sandbox = None if bwrap is None else await find_bubblewrap(bwrap)
    work = sandbox.work_dir() if sandbox else Path(tempfile.mkdtemp(prefix="baton-code-"))
    try:
        # Unnamed files, handed to the child open: nothing of Baton's is a path it must reach.
        with tempfile.TemporaryFile() as job_file, tempfile.TemporaryFile() as report_file:
            job_file.write(job.encode("utf-8"))
            job_file.seek(0)
            run = await _run_child(
                _Child(sandbox, work, job_file.fileno(), report_file.fileno()),
                limits,
                on_tick,
                tick_interval,
            )
            report_file.seek(0)
            report = _parse_report(report_file.read())
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return _outcome(run, report, limits)


@dataclass(frozen=True)
class _Child:
    sandbox: Bubblewrap | None
    work: Path  # its working directory
    job_fd: int  # its stdin: the job as JSON
    report_fd: int  # where it writes its report


@dataclass(frozen=True)
class _ChildRun:
    returncode: int
    timed_out: bool
    stdout: str
    stderr: str
    duration_ms: int


async def _run_child(
    child: _Child, limits: CodeLimits, on_tick: Callable[[], None] | None, tick_interval: float
) -> _ChildRun:
    loop = asyncio.get_running_loop()
    stdout = _CappedPipe(limits.output_bytes, loop)
    stderr = _CappedPipe(limits.output_bytes, loop)
    try:
        process = await _spawn(child, limits, stdout, stderr)
    except BaseException:
        stdout.close()
        stderr.close()
        raise

    started = time.monotonic()
    exited = asyncio.ensure_future(process.wait())
    timed_out = False
    try:
        while not exited.done():
            remaining = started + limits.wall_seconds - time.monotonic()
            if remaining <= 0:
                timed_out = True
                break
            await asyncio.wait({exited}, timeout=min(tick_interval, remaining))
            if on_tick is not None and not exited.done():
                on_tick()
    finally:
        # Always, also on success: whatever the code forked must not outlive the run. In the
        # sandbox this kills bwrap, whose death kills its PID namespace (--die-with-parent).
        _kill_group(process.pid)
        await asyncio.wait({exited}, timeout=5)
        if not exited.done():
            exited.cancel()
        duration_ms = int((time.monotonic() - started) * 1000)
        await asyncio.wait({stdout.closed, stderr.closed}, timeout=_PIPE_DRAIN_SECONDS)
        stdout.close()
        stderr.close()

    returncode = process.returncode if process.returncode is not None else -signal.SIGKILL
    if child.sandbox is not None and returncode - 128 in signal.valid_signals():
        returncode = 128 - returncode  # bwrap exits 128 + N when the code dies of signal N
    return _ChildRun(
        returncode=returncode,
        timed_out=timed_out,
        stdout=stdout.text(),
        stderr=stderr.text(),
        duration_ms=duration_ms,
    )


async def _spawn(
    child: _Child, limits: CodeLimits, stdout: _CappedPipe, stderr: _CappedPipe
) -> asyncio.subprocess.Process:
    loop = asyncio.get_running_loop()
    argv = [
        child.sandbox.python if child.sandbox else interpreter(),
        "-I",  # no PYTHON* variables, no user site-packages, no cwd on sys.path
        "-S",  # no site-packages at all: the standard library, the same on every worker
        "-u",  # unbuffered, so prints made before a kill are not lost
        "-X",
        "utf8",
        "-c",
        _BOOTSTRAP,
        json.dumps(_rlimits(limits)),
        str(child.report_fd),
    ]
    # The child holds its own copies of these; ours would keep the pipes from ever closing.
    ours: list[int] = []
    pass_fds = [child.report_fd]
    options: dict[str, Any] = {"pass_fds": pass_fds}
    try:
        if child.sandbox is not None:
            seccomp_fd = no_processes_filter()
            if seccomp_fd is not None:
                ours.append(seccomp_fd)
                pass_fds.append(seccomp_fd)
            # /tmp is memory (a tmpfs), so it gets the memory budget.
            argv = child.sandbox.command(
                argv, work=child.work, tmp_bytes=limits.memory_mb * _MB, seccomp_fd=seccomp_fd
            )
            options = child.sandbox.process_options(pass_fds)
        for pipe in (stdout, stderr):
            ours.append(await pipe.open(loop))
        return await asyncio.create_subprocess_exec(
            *argv,
            stdin=child.job_fd,
            stdout=ours[-2],
            stderr=ours[-1],
            cwd=child.work,
            env={},
            start_new_session=True,  # its own process group, killed as a whole
            **options,
        )
    finally:
        for fd in ours:
            os.close(fd)


def _rlimits(limits: CodeLimits) -> dict[str, int]:
    memory_bytes = limits.memory_mb * _MB
    return {
        "cpu_seconds": max(1, math.ceil(limits.cpu_seconds)),
        "memory_bytes": memory_bytes,
        # Files may be as large as the memory budget, and the result file always fits.
        "file_bytes": max(memory_bytes, limits.output_bytes + 64 * 1024),
    }


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is gone
        os.killpg(pgid, signal.SIGKILL)


def _parse_report(data: bytes) -> dict[str, Any] | None:
    try:
        report = json.loads(data)
    except ValueError:
        return None  # no report, or one cut short by a kill
    return report if isinstance(report, dict) else None


def _outcome(run: _ChildRun, report: dict[str, Any] | None, limits: CodeLimits) -> CodeResult:
    def fail(kind: CodeFailure, message: str, line: int | None = None) -> CodeStepError:
        return CodeStepError(message, kind=kind, stdout=run.stdout, stderr=run.stderr, line=line)

    if report is not None:
        if report.get("ok"):
            return CodeResult(
                result=report.get("result"),
                stdout=run.stdout,
                stderr=run.stderr,
                duration_ms=run.duration_ms,
            )
        raise _failure_from_report(report, limits, fail)
    if run.timed_out:
        raise fail(
            "timeout",
            f"code ran longer than its {limits.wall_seconds:g}s wall-clock limit and was "
            "stopped; make it finish sooner (no endless loops or long sleeps) or raise the limit",
        )
    # SIGXCPU comes at the soft CPU limit, SIGKILL at the hard one if SIGXCPU was ignored;
    # a SIGKILL sooner than the CPU budget could have run out came from somewhere else.
    cpu_spent = run.duration_ms >= limits.cpu_seconds * 1000
    if run.returncode == -signal.SIGXCPU or (run.returncode == -signal.SIGKILL and cpu_spent):
        raise fail(
            "cpu_limit",
            f"code used more than its {limits.cpu_seconds:g}s CPU-time limit and was stopped; "
            "make it do less work or raise the limit",
        )
    if run.returncode < 0:
        raise fail(
            "exception",
            f"code crashed with signal {signal.Signals(-run.returncode).name} before producing "
            f"a result{_tail(run.stderr)}",
        )
    raise fail(
        "exception",
        f"code exited with status {run.returncode} before producing a result (did it call "
        f"os._exit()?); return the output from main() or assign it to `result`{_tail(run.stderr)}",
    )


def _failure_from_report(
    report: dict[str, Any], limits: CodeLimits, fail: Callable[..., CodeStepError]
) -> CodeStepError:
    kind = report.get("kind")
    line = report.get("line")
    where = f" at line {line}" if line else ""
    if kind == "memory_limit":
        return fail(
            "memory_limit",
            f"code ran out of memory{where}: it needed more than its {limits.memory_mb} MB "
            "limit; work on smaller pieces of data or raise the limit",
            line,
        )
    if kind == "exit":
        return fail(
            "exception",
            f"code called sys.exit({report.get('status')}){where} before producing a result; "
            "return the output from main() or assign it to `result` instead",
            line,
        )
    if kind == "result_not_json":
        return fail(
            "result_not_json",
            f"the code's result is not JSON ({report.get('error')}); return only dicts, lists, "
            "strings, numbers, booleans and None",
        )
    if kind == "output_too_large":
        return fail(
            "output_too_large",
            f"the code's result is {report.get('size')} bytes of JSON, more than the "
            f"{limits.output_bytes} allowed; return less data",
        )
    return fail(
        "exception",
        f"code failed{where}: {report.get('error')}\n\n{report.get('traceback', '')}".rstrip(),
        line,
    )


def _tail(stderr: str, lines: int = 5) -> str:
    last = stderr.strip().splitlines()[-lines:]
    return ":\n" + "\n".join(last) if last else ""


class _CappedPipe(asyncio.Protocol):
    """Collects what the child writes to one pipe, keeping the first `cap` bytes and draining
    the rest so the child never blocks on a full pipe."""

    def __init__(self, cap: int, loop: asyncio.AbstractEventLoop) -> None:
        self._cap = cap
        self._data = bytearray()
        self._total = 0
        self._transport: asyncio.BaseTransport | None = None
        self.closed: asyncio.Future[None] = loop.create_future()

    async def open(self, loop: asyncio.AbstractEventLoop) -> int:
        """Creates the pipe, starts reading it and returns the end the child writes to."""
        read_end, write_end = os.pipe()
        try:
            self._transport, _ = await loop.connect_read_pipe(
                lambda: self, os.fdopen(read_end, "rb", buffering=0)
            )
        except BaseException:
            os.close(write_end)
            raise
        return write_end

    def data_received(self, data: bytes) -> None:
        self._total += len(data)
        room = self._cap - len(self._data)
        if room > 0:
            self._data += data[:room]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def text(self) -> str:
        text = self._data.decode("utf-8", errors="replace")
        if self._total > len(self._data):
            text += f"\n[truncated: {self._total} bytes written, the first {self._cap} kept]"
        return text


# Runs in the child before the user's code: applies the limits, reads the job from stdin, runs
# the code as a module, and writes a JSON report to a file descriptor the parent reads after
# the child has exited.
_BOOTSTRAP = r"""
import json, linecache, os, resource, sys, traceback, types

FILENAME = "<code>"
MAX_TEXT = 20000


def set_limits(limits):
    cpu = limits["cpu_seconds"]
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    resource.setrlimit(resource.RLIMIT_AS, (limits["memory_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    try:
        resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    except (OSError, ValueError):
        pass


def user_line(tb):
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def describe(exc):
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename != FILENAME:
        tb = tb.tb_next
    line = user_line(tb)
    if line is None and isinstance(exc, SyntaxError) and exc.filename == FILENAME:
        line = exc.lineno
    if isinstance(exc, SyntaxError):
        error = type(exc).__name__ + ": " + str(exc.msg)  # the rest repeats the traceback
    else:
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    return {"error": error[:MAX_TEXT], "line": line, "traceback": text[-MAX_TEXT:]}


def main():
    limits, report_fd = json.loads(sys.argv[1]), int(sys.argv[2])
    set_limits(limits)
    try:
        os.nice(5)  # the worker's own event loop goes first
    except OSError:
        pass
    os.environ.clear()
    job = json.load(sys.stdin)
    # Open before the user's code runs, so a chdir or a full descriptor table cannot stop it.
    report_file = open(report_fd, "w", encoding="utf-8")
    source, inputs, max_bytes = job["code"], job["inputs"], job["output_bytes"]
    del job
    linecache.cache[FILENAME] = (len(source), None, source.splitlines(True), FILENAME)
    module = types.ModuleType("user_code")
    module.inputs = inputs
    sys.modules["user_code"] = module
    reserve = bytearray(1 << 20)  # freed on MemoryError so the report can still be written

    report = None
    out_of_memory = False
    try:
        exec(compile(source, FILENAME, "exec"), module.__dict__)
        main_function = module.__dict__.get("main")
        value = main_function(inputs) if callable(main_function) else module.__dict__.get("result")
    except MemoryError as exc:
        out_of_memory = True
        line = user_line(exc.__traceback__)
    except SystemExit as exc:
        report = {"kind": "exit", "status": repr(exc.code), "line": user_line(exc.__traceback__)}
    except BaseException as exc:
        try:
            report = {"kind": "exception", **describe(exc)}
        except MemoryError:
            out_of_memory, line = True, None
    else:
        try:
            text = json.dumps({"ok": True, "result": value}, allow_nan=False)
        except MemoryError:
            out_of_memory, line = True, None
        except (TypeError, ValueError, RecursionError) as exc:
            report = {"kind": "result_not_json", "error": str(exc)[:MAX_TEXT]}
        else:
            if len(text.encode("utf-8")) > max_bytes:
                report = {"kind": "output_too_large", "size": len(text.encode("utf-8"))}
            else:
                report_file.write(text)
    if out_of_memory:
        # Drop what the code built before reporting; the traceback is gone by now.
        module.__dict__.clear()
        value = text = None
        del reserve
        report = {"kind": "memory_limit", "line": line}
    if report is not None:
        report_file.write(json.dumps({"ok": False, **report}))
    report_file.close()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass
    # Skips atexit handlers and the joining of threads the code may have left running.
    os._exit(0)


main()
"""
