"""Running one agent shell command, confined: `Sandbox.run` and the bubblewrap `probe`.

Each command is its own process (`/bin/bash --noprofile --norc -c COMMAND`, no persistent
shell) in its own process group, with stdin closed, stdout and stderr merged, a timeout
that kills the whole group, and output kept as head and tail so a flood never grows
memory. Two tiers:

- "bubblewrap": an allowlist view. The command sees the system folders (read-only), the
  toolchains and the user's environment that `environment.py` names (read-only), the
  worktree (writable) at the user's checkout's path, a git dir of its own (read-only:
  its HEAD and index, and the objects reachable from what tasks started from or made; see
  `GitView`), and an empty private /tmp and home of bounded size. Not the host root: not
  the user's checkout, home, other worktrees, the repository's own git dir (other
  branches, stash, reflogs, config), other tasks' journals, /run or any host socket. No
  network, no view of host processes, and only the declared variables.
- "none": the explicit opt-out; the same process handling and scrubbed environment, no
  confinement. Callers journal such commands as unsandboxed.

Every command's processes are capped (`Limits.processes`): by `ulimit -u`, and, where that
does not bind (root: the kernel exempts uid 0 from RLIMIT_NPROC, in a user namespace or
not), by a pids cgroup of its own when one can be made (`_ProcessCap`); a fork bomb then
fills its cgroup, not the machine's process table.
What deliberately does not live here: deciding whether a command may run (policy and
approvals), journaling, the agent's file tools, and git. This module knows nothing of
tasks or agents; it runs a command in a directory and says what happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .environment import CREDENTIAL_NAME, SYSTEM_FOLDERS, Environment, bare
from .errors import SandboxUnavailable

log = logging.getLogger(__name__)

TIERS = ("auto", "bubblewrap", "none")
TIMEOUT_EXIT_CODE = 124
BASH = "/bin/bash"

APT_FIX = "sudo apt-get install bubblewrap"
USERNS_FIX = (
    "allow unprivileged user namespaces: sudo sysctl -w kernel.unprivileged_userns_clone=1 "
    "(Debian) or sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 23.10+)"
)
CONTAINER_FIX = (
    "run the container with --security-opt seccomp=unconfined "
    '(and --security-opt apparmor=unconfined), or use sandbox="none"'
)
GENERIC_FIX = 'see the bwrap error above, or use sandbox="none"'

# The namespaces every confined command gets; the probe runs exactly these.
_NAMESPACES = (
    "--new-session",
    "--die-with-parent",
    "--unshare-user",
    "--cap-drop",
    "ALL",
    "--unshare-net",
    "--unshare-pid",
    "--unshare-ipc",
    "--unshare-uts",
)
# Where commands see their worktree's git dir and the objects it may read (GitView).
GIT_DIR_IN_SANDBOX = Path("/run/delegate/git")
OBJECTS_IN_SANDBOX = Path("/run/delegate/objects")
_FIXED_ENV = {"GIT_TERMINAL_PROMPT": "0", "PAGER": "cat", "GIT_PAGER": "cat", "NO_COLOR": "1"}

_PROBE_TIMEOUT_S = 10.0
_PIPE_GRACE_S = 0.5  # after the command exits, how long a grandchild may hold the pipe
_EXIT_POLL_S = 0.05
_READ_CHUNK = 64 * 1024


# -- probe ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """Whether bubblewrap can confine commands on this machine, and if not, the fix."""

    available: bool
    reason: str  # "" when available; else what failed (bwrap's own message when it ran)
    fix: str  # "" when available; else the fix in one line
    version: str  # "0.8.0"; "" when bwrap is missing


_probe_cache: Probe | None = None
_probe_lock = threading.Lock()


def bwrap_executable() -> str | None:
    """The bwrap to run, or None when it is not installed (the one place that looks)."""
    return shutil.which("bwrap")


def probe(refresh: bool = False) -> Probe:
    """Probe bubblewrap once per process (a confined `/bin/true`); `refresh` re-probes."""
    global _probe_cache
    with _probe_lock:
        if _probe_cache is None or refresh:
            _probe_cache = _run_probe()
        return _probe_cache


def fix_for(reason: str, *, seccomp_filtered: bool = False) -> str:
    """The one-line fix for a bwrap failure message.

    `seccomp_filtered` says this process runs under a seccomp filter (as in a Docker
    container with the default profile), where namespace creation is refused whatever
    the sysctls say.
    """
    text = reason.lower()
    if "not installed" in text or "not found" in text:
        return APT_FIX
    userns_refused = any(
        marker in text
        for marker in (
            "no permissions to create new namespace",
            "setting up uid map",
            "creating new namespace failed",
            "unshare",
        )
    )
    if userns_refused:
        return CONTAINER_FIX if seccomp_filtered else USERNS_FIX
    if any(marker in text for marker in ("rtm_newaddr", "loopback", "mount", "seccomp")):
        return CONTAINER_FIX
    return GENERIC_FIX


def _run_probe() -> Probe:
    bwrap = bwrap_executable()
    if bwrap is None:
        return Probe(False, "bwrap (bubblewrap) is not installed", APT_FIX, "")
    try:
        version = _run_quietly([bwrap, "--version"]).stdout.strip()
        trial = _run_quietly([bwrap, *_NAMESPACES, *_system_view(), "--", "/bin/true"])
    except subprocess.TimeoutExpired:
        reason = f"bwrap did not finish within {_PROBE_TIMEOUT_S:g} s"
        return Probe(False, reason, GENERIC_FIX, "")
    except OSError as exc:
        return Probe(False, f"cannot run {bwrap}: {exc}", GENERIC_FIX, "")
    version = version.removeprefix("bubblewrap").strip()
    if trial.returncode == 0:
        return Probe(True, "", "", version)
    reason = trial.stderr.strip() or f"bwrap exited with {trial.returncode}"
    return Probe(False, reason, fix_for(reason, seccomp_filtered=_seccomp_filtered()), version)


def _run_quietly(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=_PROBE_TIMEOUT_S,
        check=False,
    )


def _seccomp_filtered() -> bool:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return False
    return re.search(r"^Seccomp:\s*2\s*$", status, re.MULTILINE) is not None


# -- running a command ---------------------------------------------------------------


@dataclass(frozen=True)
class GitView:
    """The git a worktree's commands see, so `git log`, `git diff` and `git status` work
    there and nothing else of the repository is in reach: `folder` is a git dir of its own
    (HEAD, a minimal config, refs, and `objects/info/alternates` naming
    OBJECTS_IN_SANDBOX), seen at GIT_DIR_IN_SANDBOX; `objects` is a store holding only the
    objects reachable from commits tasks started from or made; `index` is the worktree's
    own index. All three read-only. workspace.py makes them."""

    folder: Path
    objects: Path
    index: Path | None


@dataclass(frozen=True)
class CommandResult:
    command: str
    # The command's exit status; 124 on timeout. A command killed by signal N shows as
    # -N when the top process itself died (tier "none"), or 128+N when reported by bash
    # or by bwrap (which always reports a signalled command as 128+N).
    exit_code: int
    output: str  # stdout and stderr merged, UTF-8 with replacement, head + tail when cut
    duration_s: float
    timed_out: bool
    truncated: bool
    tier: str  # "bubblewrap" or "none"
    # The worktree's growth in MB since the sandbox was made, when it went over the
    # quota (Limits.worktree_mb) during this command; 0 otherwise.
    over_quota_mb: float = 0.0


@dataclass(frozen=True)
class Limits:
    """Resource limits for every command: rlimits set by bash before the command runs (so
    the command cannot raise them) for processes of the user, address space and file
    size; and the size of the sandbox's private /tmp and home (tmpfs)."""

    processes: int = 4096
    memory_mb: int = 16384
    file_size_mb: int = 1024
    tmp_mb: int = 2048
    worktree_mb: int = 4096  # how much the worktree may grow; checked after each command

    def preamble(self) -> str:
        return (
            f"ulimit -u {self.processes} -v {self.memory_mb * 1024} "
            f"-f {self.file_size_mb * 1024} 2>/dev/null; "
        )


class Sandbox:
    """Runs agent commands in one worktree, each its own confined process group.

    The worktree is seen at `seen_at` (the user's checkout: see environment.py), with the
    `environment`'s untracked folders bound read-only beside it, its toolchains read-only,
    and its variables. `git_view` is the git it sees (read-only), its `.git` file pointing
    there.
    `read_only`: paths in the worktree bound read-only (protected files); `hidden`: files
    read as empty and folders as empty (secrets such as .env).
    """

    def __init__(
        self,
        worktree: Path,
        *,
        tier: str = "auto",
        seen_at: Path | None = None,
        environment: Environment | None = None,
        git_view: GitView | None = None,
        read_only: Sequence[Path] = (),
        hidden: Sequence[Path] = (),
        output_limit: int = 30_000,
        extra_env: Mapping[str, str] | None = None,
        limits: Limits | None = None,
    ) -> None:
        if tier not in TIERS:
            choices = ", ".join(repr(t) for t in TIERS)
            raise SandboxUnavailable(f"unknown sandbox {tier!r}: choose one of {choices}")
        self._worktree = Path(worktree).resolve()  # need not exist until the first run
        self._seen_at = Path(seen_at).resolve() if seen_at is not None else self._worktree
        self._environment = environment
        self._git_view = git_view
        self._read_only = tuple(Path(p).resolve() for p in read_only)
        missing = [str(p) for p in self._read_only if not p.exists()]
        if missing:
            raise ValueError(f"read-only paths do not exist: {', '.join(missing)}")
        if output_limit < 2:
            raise ValueError("output_limit must be at least 2 bytes")
        self._output_limit = output_limit
        self._hidden = tuple(Path(p).resolve() for p in hidden if Path(p).exists())
        self._limits = limits or Limits()
        self._extra_env = dict(extra_env or {})
        credentials = sorted(k for k in self._extra_env if CREDENTIAL_NAME.search(k))
        if credentials:
            raise ValueError(f"extra_env would pass credentials into commands: {credentials}")
        self._worktree_bytes = _tree_bytes(self._worktree) if self._worktree.is_dir() else None
        self._bwrap = ""
        if tier == "none":
            self._tier = "none"
            return
        found = probe()
        bwrap = bwrap_executable()
        if not found.available or bwrap is None:
            raise SandboxUnavailable(
                f"bubblewrap cannot confine commands here: {found.reason or 'bwrap is missing'}"
                f"\nFix: {found.fix or APT_FIX}"
                '\nor pass sandbox="none" to run commands unconfined '
                "(each is journaled as unsandboxed)"
            )
        self._tier, self._bwrap = "bubblewrap", bwrap

    @property
    def tier(self) -> str:
        """ "bubblewrap" or "none": what actually confines the commands."""
        return self._tier

    @property
    def worktree(self) -> Path:
        return self._worktree

    @property
    def seen_at(self) -> Path:
        """Where commands see the worktree (their working directory)."""
        return self._seen_at if self._tier == "bubblewrap" else self._worktree

    async def run(
        self,
        command: str,
        *,
        timeout_s: float = 120.0,
        on_output: Callable[[bytes], None] | None = None,
    ) -> CommandResult:
        """Run `command` with bash; never raises for the command's own failures.

        On timeout the process group is killed and the result says so (exit code 124).
        If the calling task is cancelled, the group is killed and CancelledError raised.
        `on_output` hears each piece of the output as it is read, on the caller's loop
        (the result still holds it all, head and tail): keep it short.
        """
        if timeout_s <= 0:
            raise ValueError("timeout_s must be positive")
        if not self._worktree.is_dir():
            raise FileNotFoundError(f"the worktree {self._worktree} does not exist")
        environment = self._environment or bare(self._worktree)
        env = self._variables(environment)
        argv = [BASH, "--noprofile", "--norc", "-c", self._limits.preamble() + command]
        disk_before = _disk_used(self._worktree)
        pass_fds: list[int] = []
        try:
            if self._tier == "bubblewrap" and self._git_view is not None:
                # The worktree's `.git` as commands see it; bwrap reads it from a pipe.
                read_end, write_end = os.pipe()
                with os.fdopen(write_end, "wb") as pipe:  # a few bytes: the pipe holds them
                    pipe.write(f"gitdir: {GIT_DIR_IN_SANDBOX}\n".encode())
                pass_fds.append(read_end)
            if self._tier == "bubblewrap":
                argv = self._bwrap_argv(argv, env, environment, pass_fds[0] if pass_fds else None)
            cap = _ProcessCap.make(self._limits.processes)
            if cap is not None:
                argv = cap.wrap(argv)
            started = time.monotonic()
            try:
                exit_code, output, truncated, timed_out = await _execute(
                    argv, self._worktree, env, timeout_s, self._output_limit, pass_fds, on_output
                )
            finally:
                if cap is not None:
                    await cap.close()
        finally:
            for fd in pass_fds:
                os.close(fd)
        return CommandResult(
            command=command,
            exit_code=exit_code,
            output=output,
            duration_s=time.monotonic() - started,
            timed_out=timed_out,
            truncated=truncated,
            tier=self._tier,
            over_quota_mb=await asyncio.to_thread(self._over_quota, disk_before),
        )

    def _over_quota(self, disk_before: int) -> float:
        """The worktree's growth in MB when over its quota, else 0. The file system's
        use is compared first (cheap); only when it grew by more than the quota during
        the command is the worktree walked and measured."""
        quota = self._limits.worktree_mb << 20
        if _disk_used(self._worktree) - disk_before <= quota:
            return 0.0
        if self._worktree_bytes is None:
            return 0.0
        grown = _tree_bytes(self._worktree) - self._worktree_bytes
        return grown / (1 << 20) if grown > quota else 0.0

    def _variables(self, environment: Environment) -> dict[str, str]:
        """The command's whole environment: the declared variables (credentials were
        withheld when they were declared), the harness's own, and, unsandboxed, the
        editable installs pointed at the worktree."""
        env = {k: v for k, v in environment.variables.items() if not CREDENTIAL_NAME.search(k)}
        env.update(self._extra_env)
        env.update(_FIXED_ENV)
        if self._tier == "none" and environment.python_path:
            roots = [str(self._worktree / p) for p in environment.python_path]
            env["PYTHONPATH"] = os.pathsep.join([*roots, *filter(None, [env.get("PYTHONPATH")])])
        env["JUPYTER_DELEGATE_SANDBOX"] = self._tier
        return env

    def _bwrap_argv(
        self,
        command_argv: list[str],
        env: Mapping[str, str],
        environment: Environment,
        dotgit_fd: int | None,
    ) -> list[str]:
        """bwrap's arguments: the namespaces, then the mounts, each after its parents
        (sorted by the depth of where it lands; the order given breaks ties), then the
        working directory and the environment. `dotgit_fd` holds the worktree's `.git`
        file as commands see it (pointing at GIT_DIR_IN_SANDBOX)."""
        seen, worktree = self._seen_at, self._worktree

        def inside(path: Path) -> Path:  # a worktree path, where commands see it
            return seen / path.relative_to(worktree) if path.is_relative_to(worktree) else path

        mounts: list[tuple[Path, list[str]]] = [
            (Path("/proc"), ["--proc", "/proc"]),
            (Path("/dev"), ["--dev", "/dev"]),
            (Path("/tmp"), ["--size", str(self._limits.tmp_mb << 20), "--tmpfs", "/tmp"]),
        ]
        home = env.get("HOME", "")
        if home and os.path.isabs(home) and Path(home) != Path("/"):
            size = str(self._limits.tmp_mb << 20)
            mounts.append((Path(home), ["--size", size, "--tmpfs", home]))
        for folder in environment.toolchains:
            mounts.append((Path(folder), ["--ro-bind", folder, folder]))
        mounts.append((seen, ["--bind", str(worktree), str(seen)]))
        checkout = Path(environment.checkout)
        for item in environment.items:
            if item.how == "read-only" and (checkout / item.path).is_dir():
                at = seen / item.path
                mounts.append((at, ["--ro-bind", str(checkout / item.path), str(at)]))
        view = self._git_view
        if dotgit_fd is not None and view is not None:
            git_dir, objects = GIT_DIR_IN_SANDBOX, OBJECTS_IN_SANDBOX
            mounts.append((git_dir, ["--ro-bind", str(view.folder), str(git_dir)]))
            mounts.append((objects, ["--ro-bind", str(view.objects), str(objects)]))
            if view.index is not None and view.index.is_file():
                index = str(git_dir / "index")
                mounts.append((git_dir / "index", ["--ro-bind", str(view.index), index]))
            dotgit = str(seen / ".git")
            mounts.append((seen / ".git", ["--ro-bind-data", str(dotgit_fd), dotgit]))
        for path in self._read_only:
            mounts.append((inside(path), ["--ro-bind", str(path), str(inside(path))]))
        for path in self._hidden:
            hidden = str(inside(path))
            hide = ["--tmpfs", hidden] if path.is_dir() else ["--ro-bind", "/dev/null", hidden]
            mounts.append((inside(path), hide))
        argv = [self._bwrap, *_NAMESPACES, *_system_view()]
        for _, args in sorted(mounts, key=lambda mount: len(mount[0].parts)):
            argv += args
        argv += ["--chdir", str(seen), "--clearenv"]
        for key, value in env.items():
            argv += ["--setenv", key, value]
        return [*argv, "--", *command_argv]


def _disk_used(path: Path) -> int:
    """Bytes in use on the file system holding `path`."""
    try:
        found = os.statvfs(path)
    except OSError:
        return 0
    return (found.f_blocks - found.f_bfree) * found.f_frsize


def _tree_bytes(root: Path) -> int:
    """Bytes of the blocks the files under `root` use (never following a symlink)."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(folder, name)).st_blocks * 512
    return total


@functools.cache
def _system_view() -> tuple[str, ...]:
    """The system folders, read-only, as the host has them (a symlink as a symlink), with
    what in /etc only its owner may read hidden (/etc/shadow and the like: a confined
    command may run as the same uid as the owner, root in a container)."""
    args: list[str] = []
    for folder in SYSTEM_FOLDERS:  # nothing else of the host is there unless named
        path = Path(folder)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), folder]
        elif path.is_dir():
            args += ["--ro-bind", folder, folder]
    for private in _private_files(Path("/etc")):
        args += ["--ro-bind", "/dev/null", str(private)]
    return tuple(args)


def _private_files(root: Path) -> list[Path]:
    """Regular files under `root` that others may not read."""
    found = []
    for folder, dirs, files in os.walk(root):
        for name in files:
            path = Path(folder, name)
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if stat.S_ISREG(mode) and not mode & stat.S_IROTH:
                found.append(path)
        dirs[:] = [d for d in dirs if os.access(Path(folder, d), os.R_OK | os.X_OK)]
    return found


async def _execute(
    argv: list[str],
    cwd: Path,
    env: Mapping[str, str],
    timeout_s: float,
    limit: int,
    pass_fds: Sequence[int] = (),
    on_output: Callable[[bytes], None] | None = None,
) -> tuple[int, str, bool, bool]:
    """Run argv in its own session; return (exit code, output, truncated, timed out)."""
    spawn = asyncio.ensure_future(
        asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
    )
    try:
        # Shielded: a cancel inside create_subprocess_exec makes asyncio wait for the
        # whole command before it gives up; we let it start, then kill it at once.
        proc = await asyncio.shield(spawn)
    except asyncio.CancelledError:
        started = await spawn
        _kill_group(started.pid)
        await started.wait()
        raise
    assert proc.stdout is not None
    capture = _HeadTail(limit)
    reader = asyncio.create_task(capture.drain(proc.stdout, on_output))
    timed_out = False
    try:
        try:
            async with asyncio.timeout(timeout_s):
                await _exited(proc)
        except TimeoutError:
            timed_out = True
        else:
            # A grandchild may still hold the pipe (`sleep 100 &`): it gets a moment.
            await asyncio.wait({reader}, timeout=_PIPE_GRACE_S)
    finally:
        _kill_group(proc.pid)
        await _reap(proc, reader)
    output = capture.text()
    if timed_out:
        if output and not output.endswith("\n"):
            output += "\n"
        output += f"[timed out after {timeout_s:g}s; process group killed]"
        return TIMEOUT_EXIT_CODE, output, capture.truncated, True
    assert proc.returncode is not None
    return proc.returncode, output, capture.truncated, False


async def _exited(proc: asyncio.subprocess.Process) -> None:
    """Wait for the process itself to exit, not for its pipes to close.

    `Process.wait()` also waits for the pipes on Python 3.12+, which a grandchild
    holding stdout would stall; `returncode` is set as soon as the process is reaped.
    """
    waiting = asyncio.ensure_future(proc.wait())
    try:
        while not waiting.done() and proc.returncode is None:
            await asyncio.wait({waiting}, timeout=_EXIT_POLL_S)
    finally:
        waiting.cancel()


async def _reap(proc: asyncio.subprocess.Process, reader: asyncio.Task[None]) -> None:
    """After the group is killed: let the reader see EOF and the process be reaped. EOF
    means every process holding the output pipe is gone (under bwrap, the sandbox's pid
    namespace is torn down after its outer process dies, which a loaded host can take
    more than a moment to do), so a cancelled command leaves nothing behind."""
    await asyncio.wait({reader}, timeout=_REAP_S)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    if proc.returncode is None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), timeout=2.0)


_REAP_S = 10.0


def _kill_group(pgid: int) -> None:
    # Under bwrap the group holds the outer bwrap; its death takes down the sandbox's
    # pid namespace (--die-with-parent), and with it every process inside.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class _ProcessCap:
    """A pids cgroup of one command's own, for where `ulimit -u` does not bind: a process
    running as root (uid 0 is exempt from RLIMIT_NPROC, and bwrap's user namespace maps
    the command to the caller's uid). The command's first process joins it before it
    execs (`wrap`), so everything it starts is counted; `close` kills what is left in it
    and removes it. None where no pids cgroup can be made (then only `ulimit` caps)."""

    _made = itertools.count(1)  # numbers this process's cgroups

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    @classmethod
    def make(cls, limit: int) -> _ProcessCap | None:
        home = cls.home()
        if home is None:
            return None
        folder = home / f"{os.getpid()}-{next(cls._made)}"
        try:
            folder.mkdir()
            (folder / "pids.max").write_text(str(limit))
        except OSError:
            with contextlib.suppress(OSError):
                folder.rmdir()
            return None
        return cls(folder)

    @staticmethod
    @functools.cache
    def home() -> Path | None:
        """Where this process makes its commands' cgroups (looked up once), or None."""
        if os.geteuid() != 0:
            return None
        home = _pids_cgroup_home()
        if home is None:
            log.warning(
                "running as root with no pids cgroup to make: a command's processes "
                "are bounded only by its timeout (ulimit -u does not bind root)"
            )
        return home

    def wrap(self, argv: list[str]) -> list[str]:
        """`argv`, started by a shell that first moves itself into the cgroup (should
        that fail, the command runs as it would without one)."""
        join = 'echo $$ 2>/dev/null > "$0"; exec "$@"'
        return ["/bin/sh", "-c", join, str(self.folder / "cgroup.procs"), *argv]

    async def close(self) -> None:
        """Kill what is left in the cgroup (an unconfined command's stray processes; under
        bwrap the pid namespace took them already) and remove it. It may start nothing
        more first, so the kills catch up with a fork bomb."""
        with contextlib.suppress(OSError):
            (self.folder / "pids.max").write_text("0")
        for _ in range(200):
            try:
                pids = (self.folder / "cgroup.procs").read_text().split()
            except OSError:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            with contextlib.suppress(OSError):
                self.folder.rmdir()
                return
            await asyncio.sleep(0.01)


def _pids_cgroup_home() -> Path | None:
    """A folder in this process's pids cgroup (v1 pids hierarchy, or cgroup v2 with the
    pids controller enabled below it) where child cgroups can be made, or None."""
    try:
        mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        own = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    v1 = {line.split(":", 2)[1]: line.split(":", 2)[2] for line in own if line.count(":") >= 2}
    for line in mounts:
        fields = line.split(" - ")
        if len(fields) != 2:
            continue
        mount_root, mountpoint = line.split()[3:5]
        kind, _, options = fields[1].split()[:3]
        if kind == "cgroup" and "pids" in options.split(","):
            place = v1.get("pids")
        elif kind == "cgroup2":
            place = v1.get("")
        else:
            continue
        if place is None:
            continue
        # The cgroup's path is from the hierarchy's root; the mount may show a part of it
        # (a container without a cgroup namespace mounts its own cgroup at the mountpoint).
        inside = (
            Path(place).relative_to(mount_root)
            if Path(place).is_relative_to(mount_root)
            else Path(place.lstrip("/"))
        )
        folder = Path(mountpoint) / inside / "jupyter-delegate"
        try:
            folder.mkdir(exist_ok=True)
            if kind == "cgroup2":
                (folder.parent / "cgroup.subtree_control").write_text("+pids")
                (folder / "cgroup.subtree_control").write_text("+pids")
            if (folder / "pids.max").exists() or kind == "cgroup":
                _sweep(folder)
                return folder
        except OSError:
            continue
    return None


def _sweep(home: Path) -> None:
    """Remove the cgroups left by processes that died before removing them (empty)."""
    for child in home.iterdir():
        owner = child.name.split("-", 1)[0]
        if child.is_dir() and owner.isdigit() and not Path(f"/proc/{owner}").exists():
            with contextlib.suppress(OSError):
                child.rmdir()


class _HeadTail:
    """Keeps the first and last limit/2 bytes of a stream, and how many were cut."""

    def __init__(self, limit: int) -> None:
        self._half = limit // 2
        self._head = bytearray()
        self._tail = bytearray()
        self._total = 0

    async def drain(
        self, stream: asyncio.StreamReader, on_output: Callable[[bytes], None] | None = None
    ) -> None:
        while chunk := await stream.read(_READ_CHUNK):
            if on_output is not None:
                on_output(chunk)
            self._total += len(chunk)
            room = self._half - len(self._head)
            if room > 0:
                self._head += chunk[:room]
                chunk = chunk[room:]
            self._tail += chunk
            if len(self._tail) > 2 * self._half:
                del self._tail[: -self._half]

    @property
    def truncated(self) -> bool:
        return self._total > len(self._head) + min(len(self._tail), self._half)

    def text(self) -> str:
        if not self.truncated:
            return (self._head + self._tail).decode("utf-8", errors="replace")
        tail = bytes(self._tail[-self._half :]) if self._half else b""
        cut = self._total - len(self._head) - len(tail)
        head = self._head.decode("utf-8", errors="replace")
        return f"{head}\n[... {cut} bytes cut ...]\n{tail.decode('utf-8', errors='replace')}"
