"""Code steps run user Python in a child process: the result comes back as JSON, prints are
captured, and whatever the code does (loop forever, eat memory, crash, fork, exit) ends in a
clear CodeStepError while the worker lives on."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import time
from pathlib import Path

import pytest

from baton.errors import InvalidInput
from baton.integrations.code_runner import CodeLimits, CodeStepError, run_python
from tests.processes import processes_named, unique_process_name

# Small limits keep the failure tests fast.
FAST = CodeLimits(cpu_seconds=1, memory_mb=128, wall_seconds=2)


async def failure(code: str, limits: CodeLimits = FAST) -> CodeStepError:
    with pytest.raises(CodeStepError) as caught:
        await run_python(code, {}, limits=limits)
    assert caught.value.code == "code_step_failed"
    return caught.value


async def assert_worker_lives_on() -> None:
    assert (await run_python("result = 'still here'", {})).result == "still here"


def is_running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a zombie has finished running; only its exit status is left


async def wait_until_gone(pid: int, seconds: float = 3.0) -> bool:
    deadline = time.monotonic() + seconds
    while is_running(pid):
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# --- Results and output --------------------------------------------------------------------


async def test_the_result_is_what_main_returns():
    code = "def main(inputs):\n    return {'doubled': inputs['n'] * 2, 'items': [1, None]}\n"
    result = await run_python(code, {"n": 21})
    assert result.result == {"doubled": 42, "items": [1, None]}


async def test_duration_ms_covers_the_run_and_no_more_than_the_wait_for_it():
    code = "import time\ndef main(inputs):\n    time.sleep(0.3)\n    return 'slept'\n"
    started = time.monotonic()
    result = await run_python(code, {})
    waited_ms = (time.monotonic() - started) * 1000
    assert result.result == "slept"
    assert 300 <= result.duration_ms <= waited_ms


async def test_without_main_the_result_is_the_global_named_result():
    result = await run_python("total = sum(inputs['xs'])\nresult = total / 2\n", {"xs": [1, 2, 3]})
    assert result.result == 3


async def test_main_wins_over_a_global_result_and_neither_means_none():
    both = "result = 'global'\ndef main(inputs):\n    return 'main'\n"
    assert (await run_python(both, {})).result == "main"
    assert (await run_python("x = 1", {})).result is None


async def test_prints_to_stdout_and_stderr_are_captured_apart_from_the_result():
    code = "import sys\nprint('hello')\nprint('careful', file=sys.stderr)\nresult = 'done'\n"
    result = await run_python(code, {})
    assert (result.result, result.stdout, result.stderr) == ("done", "hello\n", "careful\n")


async def test_huge_prints_are_truncated_and_the_run_still_succeeds():
    code = "for _ in range(50_000):\n    print('x' * 99)\nresult = 'finished'\n"
    result = await run_python(code, {}, limits=CodeLimits(output_bytes=10_000))
    assert result.result == "finished"
    assert result.stdout.startswith("x" * 99 + "\n")
    kept, marker = result.stdout.rsplit("\n[truncated: ", 1)
    assert len(kept) <= 10_000
    assert marker.startswith("5000000 bytes written, the first 10000 kept")


async def test_inputs_must_be_json():
    with pytest.raises(InvalidInput, match="inputs of a code step must be JSON"):
        await run_python("result = 1", {"when": object()})


# --- What the child can see ----------------------------------------------------------------


async def test_the_child_sees_none_of_the_workers_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BATON_SECRET_KEY", "worker-secret-value-1234567890")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-secret-value")
    code = "import os\nresult = {'env': dict(os.environ), 'raw': open('/proc/self/environ').read()}"
    seen = (await run_python(code, {})).result
    assert seen["env"] == {}
    assert "secret-value" not in seen["raw"]


async def test_the_code_runs_in_a_fresh_directory_that_is_deleted_afterwards():
    code = "import os\nopen('scratch.txt', 'w').write('x')\nresult = os.getcwd()\n"
    first = (await run_python(code, {})).result
    second = (await run_python(code, {})).result
    assert first != second
    assert not Path(first).exists() and not Path(second).exists()


# --- Limits --------------------------------------------------------------------------------


@pytest.mark.xdist_group("timing")  # bounds how long it takes
async def test_an_endless_loop_is_stopped_by_the_wall_clock_limit_and_the_worker_lives_on():
    code = "import time\nprint('started')\nwhile True:\n    time.sleep(0.05)\n"
    started = time.monotonic()
    error = await failure(code, CodeLimits(cpu_seconds=5, wall_seconds=1))
    assert error.kind == "timeout"
    assert "longer than its 1s wall-clock limit" in error.message
    assert error.stdout == "started\n"  # what it printed before it was stopped
    assert time.monotonic() - started < 3
    await assert_worker_lives_on()


@pytest.mark.xdist_group("timing")  # bounds how long it takes
async def test_a_cpu_bound_loop_is_stopped_by_the_cpu_time_limit():
    started = time.monotonic()
    error = await failure("while True:\n    pass\n", CodeLimits(cpu_seconds=1, wall_seconds=10))
    assert error.kind == "cpu_limit"
    assert "more than its 1s CPU-time limit" in error.message
    assert time.monotonic() - started < 5
    await assert_worker_lives_on()


@pytest.mark.parametrize(
    "code",
    [
        "x = 'a' * 10**10\n",
        "hoard = []\nwhile True:\n    hoard.append(' ' * 10**6)\n",
        "def main(inputs):\n    hoard = []\n    while True:\n        hoard.append(len(hoard))\n",
    ],
    ids=["one-huge-string", "growing-global-list", "growing-local-list"],
)
async def test_a_memory_bomb_hits_the_memory_limit_and_the_worker_lives_on(code: str):
    error = await failure(code)
    assert error.kind == "memory_limit"
    assert "more than its 128 MB limit" in error.message
    assert error.line is not None
    await assert_worker_lives_on()


async def test_a_result_larger_than_the_output_cap_is_refused():
    error = await failure("result = 'x' * 5000\n", CodeLimits(output_bytes=1000))
    assert error.kind == "output_too_large"
    assert "more than the 1000 allowed" in error.message


# --- Failures in the user's code -----------------------------------------------------------


async def test_an_exception_names_its_type_message_and_line_in_the_users_code():
    code = "import json\n\ndef main(inputs):\n    ratio = inputs['a'] / inputs['b']\n    return 1\n"
    with pytest.raises(CodeStepError) as caught:
        await run_python(code, {"a": 1, "b": 0})
    error = caught.value
    assert error.kind == "exception"
    assert error.line == 4
    assert error.message.startswith("code failed at line 4: ZeroDivisionError: division by zero")
    assert "ratio = inputs['a'] / inputs['b']" in error.message  # the source line is shown
    assert "<string>" not in error.message  # no frames of the runner itself


async def test_an_exception_deep_in_a_helper_reports_the_deepest_line_of_the_users_code():
    code = "def helper(x):\n    return int(x)\n\nresult = helper('twelve')\n"
    error = await failure(code)
    assert error.line == 2
    assert "ValueError: invalid literal for int()" in error.message


async def test_a_syntax_error_names_its_line():
    error = await failure("x = 1\ny = (\n")
    assert error.kind == "exception"
    assert error.line == 2
    assert "SyntaxError: '(' was never closed" in error.message


async def test_output_printed_before_an_exception_is_attached_to_the_error():
    error = await failure("import sys\nprint('step 1')\nprint('warn', file=sys.stderr)\n1/0\n")
    assert (error.stdout, error.stderr) == ("step 1\n", "warn\n")


@pytest.mark.parametrize(
    ("code", "described"),
    [("result = {1, 2}\n", "set is not JSON serializable"), ("result = float('nan')\n", "float")],
)
async def test_a_result_that_is_not_json_is_refused(code: str, described: str):
    error = await failure(code)
    assert error.kind == "result_not_json"
    assert described in error.message


async def test_sys_exit_is_an_error_that_says_to_return_a_result_instead():
    error = await failure("import sys\nprint('bye')\nsys.exit(2)\n")
    assert error.kind == "exception"
    assert error.message.startswith("code called sys.exit(2) at line 3")
    assert error.stdout == "bye\n"
    await assert_worker_lives_on()


async def test_os_exit_ends_only_the_child():
    error = await failure("import os\nos._exit(3)\n")
    assert error.kind == "exception"
    assert "exited with status 3 before producing a result" in error.message
    await assert_worker_lives_on()


async def test_a_crash_of_the_interpreter_ends_only_the_child():
    error = await failure("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n")
    assert error.kind == "exception"
    assert "crashed with signal SIGSEGV" in error.message
    await assert_worker_lives_on()


# --- Processes -----------------------------------------------------------------------------
# The code renames itself so the test can find it from outside: the pids it sees are those of
# its own PID namespace.

FORK_AND_SLEEP = """
import os, time
try:
    pid = os.fork()
except OSError:
    result = None  # RLIMIT_NPROC refused it: the sandbox runs as nobody on the host too
else:
    if pid == 0:
        {before_sleep}
        open('/proc/self/comm', 'w').write(inputs['name'])
        time.sleep(60)
        os._exit(0)
    result = pid
"""


async def assert_none_named(name: str, seconds: float = 3.0) -> None:
    deadline = time.monotonic() + seconds
    while survivors := processes_named(name):
        if time.monotonic() > deadline:
            for pid in survivors:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            pytest.fail(f"processes the code started outlived the run: {survivors}")
        await asyncio.sleep(0.05)


@pytest.mark.xdist_group("timing")  # bounds how long it takes
async def test_processes_the_code_forks_do_not_outlive_the_run():
    name = unique_process_name()
    started = time.monotonic()
    await run_python(FORK_AND_SLEEP.format(before_sleep="pass"), {"name": name})
    assert time.monotonic() - started < 2
    await assert_none_named(name)


@pytest.mark.xdist_group("timing")  # bounds how long it takes
async def test_a_process_that_leaves_the_session_neither_holds_the_run_open_nor_outlives_it():
    name = unique_process_name()
    started = time.monotonic()
    await run_python(FORK_AND_SLEEP.format(before_sleep="os.setsid()"), {"name": name})
    assert time.monotonic() - started < 3
    await assert_none_named(name)


async def test_cancelling_the_run_kills_the_child_at_once():
    name = unique_process_name()
    code = (
        "import time\n"
        "open('/proc/self/comm', 'w').write(inputs['name'])\n"
        "while True:\n"
        "    time.sleep(0.05)\n"
    )
    run = asyncio.create_task(run_python(code, {"name": name}, limits=CodeLimits(wall_seconds=30)))
    deadline = time.monotonic() + 5
    while not (found := processes_named(name)):
        assert time.monotonic() < deadline, "the child never started"
        await asyncio.sleep(0.02)
    [pid] = found
    assert is_running(pid)

    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert await wait_until_gone(pid, seconds=1)


async def test_on_tick_is_called_while_the_child_runs():
    ticks: list[float] = []
    result = await run_python(
        "import time\ntime.sleep(0.6)\nresult = 'ok'\n",
        {},
        on_tick=lambda: ticks.append(time.monotonic()),
        tick_interval=0.1,
    )
    assert result.result == "ok"
    # The child sleeps 0.6 s, so it ticks at least 3 times; at the interval, never faster
    # (a slow machine only makes the child run longer, hence more ticks).
    assert len(ticks) >= 3
    assert min(later - earlier for earlier, later in itertools.pairwise(ticks)) >= 0.09


async def test_runs_side_by_side_do_not_see_each_other():
    code = "import os\nopen('mine', 'w').write(str(inputs['n']))\nresult = open('mine').read()\n"
    results = await asyncio.gather(*(run_python(code, {"n": n}) for n in range(4)))
    assert [r.result for r in results] == ["0", "1", "2", "3"]


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="wall_seconds must be positive"):
        CodeLimits(wall_seconds=0)
