"""The bubblewrap sandbox code steps run in: `bwrap` (the Debian/Ubuntu package `bubblewrap`,
the sandbox Flatpak uses) starts the child in namespaces of its own, where it sees the Python
runtime read-only, a private writable directory and nothing else of the machine.

Inside, the code has:
- its own network namespace with only a loopback interface: no connection to anything outside
  it (the API, Temporal, the database server, the cloud metadata address, the internet);
- its own PID namespace and a fresh /proc of it: it sees only its own processes, and when the
  namespace's first process ends, the kernel kills every other one in it (no `setsid()`
  survivor), which happens when the code returns and when the worker kills the sandbox;
- its own mount namespace: a read-only view of the worker's Python runtime (the standard
  library; site-packages covered by empty directories) and of the system libraries it loads,
  a minimal read-only /dev, /proc with /proc/sys read-only, a private /tmp (a tmpfs of the
  memory budget), and its work directory; everything else read-only or absent: no home, no
  Baton code, settings, data directory or database, and of /etc only the loader's cache;
- its own IPC and UTS namespaces, uid and gid 65534 ("nobody"), no capabilities, no new
  privileges, and no further user namespaces;
- a seccomp filter (x86_64 and aarch64) that refuses new processes (fork, vfork, clone
  without CLONE_THREAD) and any foreign system-call ABI; threads are let through;
- a host uid of 65534 too when the worker runs as root. Where every path it mounts is
  readable by others (for example Python under /usr or /usr/local), bwrap itself is started
  as 65534. A runtime under /root (pyenv, uv) is not, and only root may mount it; so the
  worker makes, once, a user namespace that maps uid and gid 0 and 65534 to themselves and
  allows no user namespace below it (user.max_user_namespaces 0 in it), bwrap sets the
  sandbox up as that namespace's root, keeping only CAP_SETUID, CAP_SETGID, CAP_SETPCAP and
  CAP_DAC_READ_SEARCH (in that namespace), and util-linux's `setpriv`, mounted read-only,
  drops to 65534 (groups, gid, uid, an empty bounding set) before it starts Python. (bwrap's
  own switch, `--userns` with `--uid`, changes the uid first and then can neither change the
  gid nor mount anything.)

Whether bubblewrap works here is checked once per executable (a trivial Python run in the
sandbox, about 50 ms) and remembered for the life of the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import platform
import shutil
import site
import stat
import struct
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baton.errors import ServiceUnavailable

SANDBOX_UID = 65534  # "nobody": the code's uid and gid inside the sandbox
_SYSTEM_LIBRARIES = ("/usr/lib", "/usr/lib64", "/lib", "/lib64")
_PROBE_SECONDS = 10.0


class SandboxUnavailable(ServiceUnavailable):
    """bubblewrap is missing or cannot create its namespaces: code steps are refused."""

    code = "code_sandbox_unavailable"

    def __init__(self, reason: str) -> None:
        super().__init__(
            f"code steps run in a bubblewrap sandbox, which cannot start on this worker: "
            f"{reason}. Install the Debian/Ubuntu package `bubblewrap` and allow unprivileged "
            "user namespaces (sysctl user.max_user_namespaces > 0; on Ubuntu 24.04 and later "
            "also kernel.apparmor_restrict_unprivileged_userns=0 or an AppArmor profile for "
            "bwrap), or set BATON_CODE_SANDBOX=none to run code steps without a sandbox "
            "(development only)"
        )


@dataclass(frozen=True)
class Bubblewrap:
    """How to run a Python runtime inside bubblewrap; find_bubblewrap gives one it checked."""

    executable: str  # the resolved bwrap binary
    python: str  # the runtime's own interpreter (never a virtualenv's)
    runtime: tuple[str, ...]  # host paths mounted read-only at the same place
    links: tuple[tuple[str, str], ...]  # (path, target): /lib -> usr/lib on merged-usr systems
    hidden: tuple[str, ...]  # site-packages inside the runtime, covered by empty directories
    host_uid: int | None  # the uid bwrap is started as, when the worker is root and may drop
    drop: RootDrop | None = None  # when the worker is root and may not: how the code drops

    def command(
        self, argv: Sequence[str], *, work: Path, tmp_bytes: int, seccomp_fd: int | None
    ) -> list[str]:
        """The bwrap command line that runs `argv` in the sandbox with `work` (a host
        directory, mounted at the same path) as its writable working directory, and the
        filter read from `seccomp_fd` (see `no_processes_filter`) when there is one."""
        sandbox_id = str(SANDBOX_UID)
        command = [self.executable]
        if self.drop is None:
            command += [
                "--unshare-all",  # PID, network (loopback only), IPC, UTS, cgroup
                "--unshare-user",  # which --unshare-all only tries, and skips for root
                "--disable-userns",
                "--cap-drop",
                "ALL",
                "--uid",
                sandbox_id,
                "--gid",
                sandbox_id,
            ]
        else:
            # bwrap refuses --unshare-all (it tries a user namespace) along with --userns.
            command += ["--userns", str(self.drop.userns_fd)]
            command += [f"--unshare-{kind}" for kind in ("pid", "net", "ipc", "uts", "cgroup-try")]
            command += ["--cap-drop", "ALL"]
            for capability in _DROP_CAPABILITIES:
                command += ["--cap-add", capability]
        command += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
        # bwrap makes the directories above a mount point 0700, its own: as root of the
        # namespace, they would be closed to the code.
        for path in sorted(_ancestors([*self.mounted(), str(work)])):
            command += ["--perms", "0755", "--dir", path]
        for path in self.mounted():
            command += ["--ro-bind", path, path]
        for path, target in self.links:
            command += ["--symlink", target, path]
        for path in self.hidden:
            command += ["--tmpfs", path, "--remount-ro", path]
        command += [
            "--proc",
            "/proc",
            # bwrap covers /proc/sys only when its own uid could write there: kept read-only
            # whatever the uid, should the code ever be root on the host (kernel.modprobe).
            "--ro-bind",
            "/proc/sys",
            "/proc/sys",
            "--dev",
            "/dev",
            "--remount-ro",
            "/dev",  # its tmpfs holds /dev/shm, memory without a bound
            "--perms",
            "1777",
            "--size",
            str(tmp_bytes),
            "--tmpfs",
            "/tmp",
            "--bind",
            str(work),
            str(work),
            "--chdir",
            str(work),
            # The root is a tmpfs bwrap made, which the code would own; read-only, it cannot
            # fill memory through it. (Not recursive: /tmp and the work directory stay writable.)
            "--remount-ro",
            "/",
        ]
        if seccomp_fd is not None:
            command += ["--seccomp", str(seccomp_fd)]
        if self.drop is not None:
            argv = [*self.drop.argv(), *argv]
        return [*command, "--", *argv]

    def mounted(self) -> list[str]:
        """The host paths bind-mounted read-only, at the same place."""
        return [*self.runtime, *([self.drop.setpriv] if self.drop else [])]

    def process_options(self, pass_fds: Sequence[int] = ()) -> dict[str, Any]:
        """Keyword arguments for starting bwrap with the descriptors `pass_fds` passed on:
        as `host_uid` when there is one, with the user namespace's when there is one."""
        own = () if self.drop is None else (self.drop.userns_fd,)
        options: dict[str, Any] = {"pass_fds": (*pass_fds, *own)}
        if self.host_uid is not None:
            options |= {"user": self.host_uid, "group": self.host_uid, "extra_groups": []}
        return options

    def work_dir(self) -> Path:
        """A fresh directory the sandboxed code may write to; the caller deletes it."""
        work = Path(tempfile.mkdtemp(prefix="baton-code-"))
        owner = SANDBOX_UID if self.drop is not None else self.host_uid
        if owner is not None:
            os.chown(work, owner, owner)
        return work


# What setpriv needs, and bwrap to enter the code's directory (0700, the code's): held in
# the sandbox's user namespace only, and gone before the code starts.
_DROP_CAPABILITIES = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP", "CAP_DAC_READ_SEARCH")


@dataclass(frozen=True)
class RootDrop:
    """How a root worker's sandbox reaches host uid 65534 where bwrap must start as root."""

    userns_fd: int  # the user namespace (see `nobody_namespace`), open for the process's life
    setpriv: str  # util-linux's setpriv, resolved

    def argv(self) -> list[str]:
        """What runs first inside the sandbox: it drops to 65534 and execs the rest."""
        nobody = str(SANDBOX_UID)
        return [
            self.setpriv,
            "--reuid",
            nobody,
            "--regid",
            nobody,
            "--clear-groups",
            "--bounding-set",
            "-all",
            "--inh-caps",
            "-all",
            "--no-new-privs",
            "--",
        ]


def interpreter() -> str:
    """The Python runtime's own interpreter: a virtualenv's is only a link into it."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


_checked: dict[str, Bubblewrap | str] = {}


async def find_bubblewrap(executable: str = "bwrap") -> Bubblewrap:
    """The sandbox for `executable` (a name on PATH or a path), checked on first use and
    remembered; raises SandboxUnavailable, also on every later call, when it cannot run."""
    found = _checked.get(executable)
    if found is None:
        found = describe(executable)
        try:
            if isinstance(found, Bubblewrap):
                found = await asyncio.to_thread(check, found)
        except _Transient as exc:
            raise SandboxUnavailable(str(exc)) from None  # not remembered: the next call retries
        _checked[executable] = found
    if isinstance(found, str):
        raise SandboxUnavailable(found)
    return found


class _Transient(Exception):
    """The check could not tell: a slow machine, not a missing sandbox."""


def check(sandbox: Bubblewrap) -> Bubblewrap | str:
    """`sandbox` if a trivial Python runs in it, else why not."""
    work = sandbox.work_dir()
    seccomp_fd = no_processes_filter()
    try:
        completed = subprocess.run(
            sandbox.command(
                [sandbox.python, "-I", "-S", "-c", "import json, resource"],
                work=work,
                tmp_bytes=1024 * 1024,
                seccomp_fd=seccomp_fd,
            ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            env={},
            timeout=_PROBE_SECONDS,
            check=False,
            **sandbox.process_options(() if seccomp_fd is None else (seccomp_fd,)),
        )
    except subprocess.TimeoutExpired:
        raise _Transient(
            f"{sandbox.executable} did not run Python within {_PROBE_SECONDS:g} s"
        ) from None
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{sandbox.executable} could not be run ({exc})"
    finally:
        if seccomp_fd is not None:
            os.close(seccomp_fd)
        shutil.rmtree(work, ignore_errors=True)
    if completed.returncode != 0:
        said = completed.stderr.decode("utf-8", errors="replace").strip()[-500:]
        return (
            f"{sandbox.executable} failed with status {completed.returncode}: "
            f"{said or 'no message'}"
        )
    return sandbox


def describe(
    executable: str, *, python: str | None = None, prefix: str | None = None
) -> Bubblewrap | str:
    """The sandbox `executable` would make for the Python runtime at `prefix` (this worker's
    by default), not yet checked; or why there is none. For a root worker whose runtime
    others cannot read, this makes the user namespace the sandbox drops to 65534 in."""
    resolved = shutil.which(executable)
    if resolved is None:
        return f"{executable!r} was not found (BATON_CODE_BWRAP_PATH)"
    python = python or interpreter()
    prefix = os.path.realpath(prefix or sys.base_prefix)
    runtime = [prefix]
    if not _inside(python, runtime):
        runtime.append(python)
    links: list[tuple[str, str]] = []
    for path in _SYSTEM_LIBRARIES:
        if os.path.islink(path):
            links.append((path, os.readlink(path)))
        elif os.path.isdir(path) and not _inside(path, runtime):
            runtime.append(path)
    # ld.so finds the libraries without its cache on Debian, not on every distribution.
    if os.path.isfile("/etc/ld.so.cache"):
        runtime.append("/etc/ld.so.cache")
    may_drop = os.geteuid() == 0 and all(
        _open_to_others(path) for path in [*runtime, tempfile.gettempdir()]
    )
    drop = None
    if os.geteuid() == 0 and not may_drop:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            return (
                "the worker runs as root with a Python runtime others cannot read, and "
                "`setpriv` (util-linux) was not found to drop the code to uid 65534"
            )
        made = nobody_namespace(python)
        if isinstance(made, str):
            return made
        drop = RootDrop(userns_fd=made, setpriv=os.path.realpath(setpriv))
    return Bubblewrap(
        executable=resolved,
        python=python,
        runtime=tuple(runtime),
        links=tuple(links),
        hidden=tuple(_site_packages(prefix, runtime)),
        host_uid=SANDBOX_UID if may_drop else None,
        drop=drop,
    )


# Runs as root in a child: enters a new user namespace, waits for the parent to map it, and
# forbids user namespaces below it, as bwrap's --disable-userns does for its own.
_NAMESPACE_HOLDER = r"""
import ctypes, sys
if ctypes.CDLL(None, use_errno=True).unshare(0x10000000):  # CLONE_NEWUSER
    sys.exit("unshare(CLONE_NEWUSER) failed: errno %d" % ctypes.get_errno())
print("unshared", flush=True)
sys.stdin.readline()
with open("/proc/sys/user/max_user_namespaces", "w") as limit:
    limit.write("0")
print("ready", flush=True)
sys.stdin.read()
"""


def nobody_namespace(python: str) -> int | str:
    """A descriptor (close-on-exec) of a new user namespace, owned by this root process, that
    maps uid and gid 0 and 65534 to themselves and allows no user namespace below it; or why
    it could not be made. The namespace lives as long as the descriptor."""
    try:
        holder = subprocess.Popen(
            [python, "-I", "-S", "-c", _NAMESPACE_HOLDER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={},
            text=True,
        )
    except OSError as exc:
        return f"no user namespace for the sandbox could be made ({exc})"
    assert holder.stdin is not None and holder.stdout is not None
    try:
        if holder.stdout.readline() != "unshared\n":
            raise OSError("the namespace's first process ended")
        mapping = f"0 0 1\n{SANDBOX_UID} {SANDBOX_UID} 1\n"
        for name in ("uid_map", "gid_map"):
            with open(f"/proc/{holder.pid}/{name}", "w") as map_file:
                map_file.write(mapping)
        holder.stdin.write("\n")
        holder.stdin.flush()
        if holder.stdout.readline() != "ready\n":
            raise OSError("its user.max_user_namespaces could not be set to 0")
        return os.open(f"/proc/{holder.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as exc:
        holder.kill()
        said = (holder.stderr.read() if holder.stderr else "").strip()[-300:]
        return f"no user namespace for the sandbox could be made ({exc}) {said}".strip()
    finally:
        with contextlib.suppress(OSError):  # a holder that died leaves a broken pipe
            holder.stdin.close()
        holder.wait()


# Classic BPF for seccomp: the system calls that make a process, refused (threads are let
# through; RLIMIT_NPROC refuses them too where the code is nobody on the host).
_ARCHITECTURES = {
    # machine: (AUDIT_ARCH_*, clone, clone3, fork-like calls without flags, x32 ABI bit)
    "x86_64": (0xC000003E, 56, 435, (57, 58), 0x40000000),
    "aarch64": (0xC00000B7, 220, 435, (), None),
}
_LOAD, _JEQ, _JGE, _JSET, _RETURN = 0x20, 0x15, 0x35, 0x45, 0x06
_ALLOW, _ERRNO = 0x7FFF0000, 0x00050000
_CLONE_THREAD = 0x00010000
_NR, _ARCH, _FIRST_ARGUMENT = 0, 4, 16  # offsets in struct seccomp_data


def no_processes_filter() -> int | None:
    """The read end of a pipe holding a seccomp program that refuses new processes (EAGAIN,
    as RLIMIT_NPROC would) and any foreign system-call ABI, for `--seccomp`; the caller
    closes it once bwrap has started. None on an architecture this does not know."""
    known = _ARCHITECTURES.get(platform.machine())
    if known is None:
        return None
    arch, clone, clone3, forks, x32 = known

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("=HBBI", code, jt, jf, k)

    program = [op(_LOAD, _ARCH), op(_JEQ, arch, jt=1), op(_RETURN, _ERRNO | errno.ENOSYS)]
    program.append(op(_LOAD, _NR))
    if x32 is not None:
        program += [op(_JGE, x32, jf=1), op(_RETURN, _ERRNO | errno.ENOSYS)]
    for call in forks:
        program += [op(_JEQ, call, jf=1), op(_RETURN, _ERRNO | errno.EAGAIN)]
    # glibc falls back from clone3, whose flags a filter cannot read, to clone.
    program += [op(_JEQ, clone3, jf=1), op(_RETURN, _ERRNO | errno.ENOSYS)]
    program += [
        op(_JEQ, clone, jf=3),
        op(_LOAD, _FIRST_ARGUMENT),  # clone's flags (their low 32 bits)
        op(_JSET, _CLONE_THREAD, jt=1),
        op(_RETURN, _ERRNO | errno.EAGAIN),
        op(_RETURN, _ALLOW),
    ]
    read_end, write_end = os.pipe()
    try:
        os.write(write_end, b"".join(program))  # a few hundred bytes: the pipe holds them
    finally:
        os.close(write_end)
    return read_end


def _site_packages(prefix: str, runtime: list[str]) -> list[str]:
    """The runtime's installed packages (Baton's own among them when it is installed there):
    code steps get the standard library only, the same on every worker."""
    found = set(site.getsitepackages([prefix]))
    for scheme in {sysconfig.get_default_scheme(), "posix_prefix"}:
        for key in ("purelib", "platlib"):
            found.add(sysconfig.get_path(key, scheme, vars={"base": prefix, "platbase": prefix}))
    real = {os.path.realpath(path) for path in found}
    return sorted(path for path in real if os.path.isdir(path) and _inside(path, runtime))


def _ancestors(paths: list[str]) -> set[str]:
    """The directories above `paths`, the root excluded."""
    return {str(parent) for path in paths for parent in Path(path).parents if parent != Path("/")}


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _open_to_others(path: str) -> bool:
    """Whether a user who owns nothing may reach `path` and read it."""
    current = Path(path)
    try:
        if not os.stat(current).st_mode & stat.S_IROTH:
            return False
        for directory in current.parents:
            if not os.stat(directory).st_mode & stat.S_IXOTH:
                return False
    except OSError:
        return False
    return True
