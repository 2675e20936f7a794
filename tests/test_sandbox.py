"""Sandbox: confinement under bubblewrap, and process handling in both tiers.

The bubblewrap tests skip only when `probe()` says bubblewrap cannot run here.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_delegate import sandbox as sandbox_module
from jupyter_delegate.errors import SandboxUnavailable
from jupyter_delegate.sandbox import (
    APT_FIX,
    CONTAINER_FIX,
    GENERIC_FIX,
    USERNS_FIX,
    CommandResult,
    Sandbox,
    fix_for,
    probe,
)

_PROBE = probe()
needs_bwrap = pytest.mark.skipif(
    not _PROBE.available, reason=f"bubblewrap unavailable: {_PROBE.reason} ({_PROBE.fix})"
)
BOTH_TIERS = pytest.mark.parametrize(
    "tier", [pytest.param("bubblewrap", marks=needs_bwrap), "none"]
)


@pytest.fixture
def worktree(tmp_path: Path) -> Path:
    path = tmp_path / "wt"
    path.mkdir()
    return path


def run(sandbox: Sandbox, command: str, timeout_s: float = 20.0) -> CommandResult:
    return asyncio.run(sandbox.run(command, timeout_s=timeout_s))


def unique_sleep() -> str:
    """A `sleep` whose command line no other process on the machine shares."""
    return f"sleep 1000.{secrets.randbelow(10**9):09d}"


def processes_running(cmdline: str) -> list[int]:
    """Pids whose command line is exactly `cmdline` (zombies have none, so never match)."""
    wanted = cmdline.replace(" ", "\0").encode() + b"\0"
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "cmdline").read_bytes() == wanted:
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


async def wait_until(condition: object, timeout_s: float = 5.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.02)


def pid_is_dead(pid: int) -> bool:
    """Gone, or a zombie (an orphan whose reaper, here a container init, never reaps)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


# -- both tiers: process handling ----------------------------------------------------


@BOTH_TIERS
def test_exit_code_and_merged_output_in_the_worktree(worktree: Path, tier: str) -> None:
    sandbox = Sandbox(worktree, tier=tier)
    result = run(sandbox, "echo out; echo err >&2; pwd; exit 3")
    assert sandbox.tier == tier
    assert result.exit_code == 3
    assert result.output == f"out\nerr\n{worktree}\n"
    assert (result.tier, result.timed_out, result.truncated) == (tier, False, False)
    assert result.command == "echo out; echo err >&2; pwd; exit 3"


@BOTH_TIERS
def test_environment_is_scrubbed_of_credentials(
    worktree: Path, tier: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret_keys = [
        "ANTHROPIC_API_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "SSH_AUTH_SOCK",
        "DB_PASSWORD",
        "PYTHONPATH",
        "LC_MY_TOKEN",
    ]
    for key in secret_keys:
        monkeypatch.setenv(key, "sekrit-value")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    sandbox = Sandbox(worktree, tier=tier, extra_env={"GIT_AUTHOR_NAME": "agent"})
    output = run(sandbox, "env").output
    assert "sekrit-value" not in output
    for key in secret_keys:
        assert f"{key}=" not in output
    for line in [
        "LC_ALL=C.UTF-8",
        "GIT_AUTHOR_NAME=agent",
        "GIT_TERMINAL_PROMPT=0",
        "PAGER=cat",
        "NO_COLOR=1",
        f"JUPYTER_DELEGATE_SANDBOX={tier}",
    ]:
        assert line in output.splitlines()


def test_extra_env_refuses_credentials(worktree: Path) -> None:
    with pytest.raises(ValueError, match="ANTHROPIC_API_KEY"):
        Sandbox(worktree, tier="none", extra_env={"ANTHROPIC_API_KEY": "x"})


def test_tier_none_kills_child_and_grandchild_on_timeout(worktree: Path) -> None:
    sleep = unique_sleep()
    command = f"{sleep} & echo $! >> pids; ( {sleep} & echo $! >> pids; wait ) & {sleep}"
    sandbox = Sandbox(worktree, tier="none")

    async def scenario() -> CommandResult:
        task = asyncio.create_task(sandbox.run(command, timeout_s=1.0))
        await wait_until(lambda: len(processes_running(sleep)) == 3)
        return await task

    result = asyncio.run(scenario())
    assert (result.exit_code, result.timed_out) == (124, True)
    assert result.output.endswith("[timed out after 1s; process group killed]")
    pids = [int(line) for line in (worktree / "pids").read_text().split()]
    assert len(pids) == 2
    # SIGKILL is delivered; the exit itself completes a moment later.
    deadline = time.monotonic() + 2
    while not all(pid_is_dead(pid) for pid in pids):
        assert time.monotonic() < deadline, f"still alive: {pids}"
        time.sleep(0.01)
    assert processes_running(sleep) == []


@BOTH_TIERS
def test_timeout_leaves_no_process_behind(worktree: Path, tier: str) -> None:
    sleep = unique_sleep()
    sandbox = Sandbox(worktree, tier=tier)

    async def scenario() -> CommandResult:
        task = asyncio.create_task(
            sandbox.run(f"{sleep} & ( {sleep} & wait ) & {sleep}", timeout_s=1.0)
        )
        await wait_until(lambda: len(processes_running(sleep)) == 3)
        return await task

    result = asyncio.run(scenario())
    assert (result.exit_code, result.timed_out) == (124, True)
    assert processes_running(sleep) == []


@BOTH_TIERS
def test_cancellation_kills_the_group_and_propagates(worktree: Path, tier: str) -> None:
    sleep = unique_sleep()
    sandbox = Sandbox(worktree, tier=tier)

    async def scenario() -> None:
        task = asyncio.create_task(sandbox.run(f"{sleep} & {sleep}", timeout_s=60))
        await wait_until(lambda: len(processes_running(sleep)) == 2)
        await asyncio.sleep(0.3)
        task.cancel()
        await task

    started = time.monotonic()
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(scenario())
    assert time.monotonic() - started < 10
    assert processes_running(sleep) == []


@BOTH_TIERS
def test_grandchild_holding_the_pipe_does_not_hang(worktree: Path, tier: str) -> None:
    sleep = unique_sleep()
    result = run(Sandbox(worktree, tier=tier), f"( {sleep} & ) ; echo done", timeout_s=20)
    assert result.output == "done\n"
    assert (result.exit_code, result.timed_out) == (0, False)
    assert result.duration_s < 3
    assert processes_running(sleep) == []


@BOTH_TIERS
def test_huge_output_keeps_head_and_tail(worktree: Path, tier: str) -> None:
    sandbox = Sandbox(worktree, tier=tier, output_limit=30_000)
    result = run(sandbox, "echo START; yes | head -c 5000000; echo END")
    assert result.truncated
    assert result.exit_code == 0
    assert result.output.startswith("START\ny\ny\n")
    assert result.output.endswith("y\nEND\n")
    assert "\n[... 4970010 bytes cut ...]\n" in result.output
    assert 30_000 < len(result.output) < 30_100


def test_output_at_the_limit_is_kept_whole(worktree: Path) -> None:
    sandbox = Sandbox(worktree, tier="none", output_limit=1000)
    result = run(sandbox, "head -c 1000 /dev/zero | tr '\\0' a")
    assert (result.output, result.truncated) == ("a" * 1000, False)


@BOTH_TIERS
def test_invalid_utf8_is_replaced(worktree: Path, tier: str) -> None:
    result = run(Sandbox(worktree, tier=tier), r"printf '\xff\xfe ok'")
    assert result.output == "\ufffd\ufffd ok"


# -- bubblewrap: confinement ---------------------------------------------------------


@needs_bwrap
def test_writes_land_in_the_worktree_only(worktree: Path, outside_tmp: Path) -> None:
    name = f"delegate-sandbox-{secrets.token_hex(4)}"
    home = Path.home()
    result = run(
        Sandbox(worktree),
        f"echo hi > inside.txt && echo tmp > /tmp/{name}; echo x > /etc/{name}"
        f"; echo x > {home}/{name}; echo x > {outside_tmp}/{name}; echo x > /usr/{name}"
        "; echo end",
    )
    outside = [Path("/etc", name), home / name, outside_tmp / name, Path("/tmp", name)]
    try:
        assert (worktree / "inside.txt").read_text() == "hi\n"
        assert result.output.count("Read-only file system") == 2, result.output  # /etc, /usr
        assert result.output.endswith("end\n")
        for path in [*outside, Path("/usr", name)]:
            assert not path.exists()
    finally:
        for path in outside:
            path.unlink(missing_ok=True)


@needs_bwrap
def test_the_host_is_not_there_only_what_the_view_names(worktree: Path, outside_tmp: Path) -> None:
    # The user's files outside /tmp (so the private /tmp cannot be what hides them).
    (outside_tmp / "checkout").mkdir()
    (outside_tmp / "checkout" / ".env.local").write_text("API=sekrit")
    result = run(
        Sandbox(worktree),
        f"ls {outside_tmp}; ls /run /home /var/run /mnt /srv 2>&1 | head -3; "
        "cat /etc/shadow | wc -c; ls /proc | grep -c '^[0-9]'; ls /usr/bin/env",
    )
    assert "checkout" not in result.output and "sekrit" not in result.output
    assert f"ls: cannot access '{outside_tmp}': No such file or directory" in result.output
    assert "ls: cannot access '/run'" in result.output
    lines = result.output.splitlines()
    assert lines[-3] == "0"  # /etc/shadow reads as empty
    assert lines[-1] == "/usr/bin/env"


@needs_bwrap
def test_the_worktree_is_seen_at_the_checkout_path_and_hides_the_checkout(
    outside_tmp: Path,
) -> None:
    checkout, worktree = outside_tmp / "proj", outside_tmp / "wt"
    checkout.mkdir()
    worktree.mkdir()
    (checkout / "calc.py").write_text("USER'S VERSION\n")
    (checkout / "untracked-secret.txt").write_text("USER ONLY\n")
    (worktree / "calc.py").write_text("AGENT'S VERSION\n")
    result = run(
        Sandbox(worktree, seen_at=checkout),
        "pwd; cat calc.py; ls; echo new > made.txt; cat untracked-secret.txt 2>&1 | head -1",
    )
    lines = result.output.splitlines()
    assert lines[:4] == [str(checkout), "AGENT'S VERSION", "calc.py", ""] or lines[:3] == [
        str(checkout),
        "AGENT'S VERSION",
        "calc.py",
    ], result.output
    assert "USER" not in result.output
    assert (worktree / "made.txt").read_text() == "new\n"
    assert not (checkout / "made.txt").exists()
    assert (checkout / "calc.py").read_text() == "USER'S VERSION\n"


@needs_bwrap
def test_home_is_empty_private_and_bounded(
    worktree: Path, outside_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = outside_tmp / "home"
    for secret in (
        ".ssh/id_rsa",
        ".aws/credentials",
        ".git-credentials",
        ".pgpass",
        ".cache/huggingface/token",
        ".local/share/jupyter/runtime/jpserver-1.json",
        ".bash_history",
    ):
        (home / secret).parent.mkdir(parents=True, exist_ok=True)
        (home / secret).write_text("PRIVATE KEY MATERIAL")
    monkeypatch.setenv("HOME", str(home))
    result = run(
        Sandbox(worktree, limits=sandbox_module.Limits(tmp_mb=8)),
        "find ~ -type f | wc -l; grep -r PRIVATE ~ ; echo mine > ~/notes; cat ~/notes; "
        "(head -c 20000000 /dev/zero > ~/big) 2>&1 | tail -1",
    )
    assert result.output.startswith("0\nmine\n"), result.output
    assert "PRIVATE KEY MATERIAL" not in result.output
    assert "No space left on device" in result.output
    assert not (home / "notes").exists()
    assert (home / ".ssh" / "id_rsa").read_text() == "PRIVATE KEY MATERIAL"


@needs_bwrap
def test_read_only_paths_stay_read_only_around_a_writable_worktree(tmp_path: Path) -> None:
    # The layout of workspace.py: the worktree lives inside the git common dir, and its
    # `.git` file points back into it. Both are passed read-only, as the manager does.
    common = tmp_path / "repo.git"
    worktree = common / "delegate" / "worktrees" / "t1"
    worktree.mkdir(parents=True)
    (common / "HEAD").write_text("ref: refs/heads/main\n")
    (worktree / ".git").write_text(f"gitdir: {common}/worktrees/t1\n")
    sandbox = Sandbox(worktree, read_only=[common, worktree / ".git"])
    result = run(
        sandbox,
        f"echo x > {common}/HEAD; echo x > {common}/new; echo x > .git; rm -f .git;"
        " echo ok > mine.txt && echo wrote",
    )
    assert result.output.count("Read-only file system") == 3, result.output
    assert "rm: cannot remove '.git'" in result.output
    assert result.output.endswith("wrote\n")
    assert (common / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert not (common / "new").exists()
    assert (worktree / ".git").read_text() == f"gitdir: {common}/worktrees/t1\n"
    assert (worktree / "mine.txt").read_text() == "ok\n"


@needs_bwrap
def test_read_only_dir_inside_the_worktree_is_mounted_over_it(worktree: Path) -> None:
    (worktree / "vendored").mkdir()
    result = run(
        Sandbox(worktree, read_only=[worktree / "vendored"]),
        "echo x > vendored/new; echo x > new && echo wrote",
    )
    assert "Read-only file system" in result.output
    assert not (worktree / "vendored" / "new").exists()
    assert (worktree / "new").exists()


def test_worktree_may_appear_after_the_sandbox_is_made(tmp_path: Path) -> None:
    sandbox = Sandbox(tmp_path / "later", tier="none")
    with pytest.raises(FileNotFoundError):
        run(sandbox, "true")
    (tmp_path / "later").mkdir()
    assert run(sandbox, "pwd").output == f"{tmp_path / 'later'}\n"


@needs_bwrap
def test_no_network_not_even_loopback_or_dns(worktree: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        script = (
            "import socket\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3); print('connected')\n"
            "except OSError as exc: print('connect failed', exc)\n"
            "try:\n"
            "    socket.getaddrinfo('example.com', 443); print('resolved')\n"
            "except OSError as exc: print('dns failed', exc)\n"
        )
        (worktree / "net.py").write_text(script)
        result = run(Sandbox(worktree), f"{sys.executable} net.py")
    assert "connect failed" in result.output, result.output
    assert "dns failed" in result.output, result.output


@needs_bwrap
def test_pid_namespace_shows_only_the_sandbox(worktree: Path) -> None:
    result = run(Sandbox(worktree), "echo $$; ls /proc | grep -c '^[0-9]'")
    shell_pid, visible = (int(n) for n in result.output.split())
    assert shell_pid < 10
    assert visible < 10


@needs_bwrap
def test_signal_death_is_reported_as_128_plus_n_under_bwrap(worktree: Path) -> None:
    assert run(Sandbox(worktree), "kill -9 $$").exit_code == 137
    assert run(Sandbox(worktree, tier="none"), "kill -9 $$").exit_code == -9


# -- choosing a tier and probing -----------------------------------------------------


def test_unknown_tier_names_the_choices(worktree: Path) -> None:
    with pytest.raises(SandboxUnavailable, match="'auto', 'bubblewrap', 'none'"):
        Sandbox(worktree, tier="docker")


@pytest.fixture
def fresh_probe(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Let a test re-probe; the process-wide cached probe comes back afterwards."""
    monkeypatch.setattr(sandbox_module, "_probe_cache", None)
    yield


@pytest.mark.usefixtures("fresh_probe")
@pytest.mark.parametrize("tier", ["auto", "bubblewrap"])
def test_missing_bwrap_says_how_to_install_it(
    worktree: Path, tier: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sandbox_module, "bwrap_executable", lambda: None)
    found = probe(refresh=True)
    assert (found.available, found.fix, found.version) == (False, APT_FIX, "")
    with pytest.raises(SandboxUnavailable) as raised:
        Sandbox(worktree, tier=tier)
    message = str(raised.value)
    assert "sudo apt-get install bubblewrap" in message
    assert 'pass sandbox="none"' in message
    assert Sandbox(worktree, tier="none").tier == "none"


@pytest.mark.usefixtures("fresh_probe")
def test_failing_bwrap_reports_its_message_and_the_fix(
    tmp_path: Path, worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = --version ]; then echo "bubblewrap 0.8.0"; exit 0; fi\n'
        "echo 'bwrap: No permissions to create new namespace, likely because the kernel"
        " does not allow non-privileged user namespaces.' >&2\n"
        "exit 1\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(sandbox_module, "bwrap_executable", lambda: str(fake))
    monkeypatch.setattr(sandbox_module, "_seccomp_filtered", lambda: False)
    found = probe(refresh=True)
    assert not found.available
    assert found.reason.startswith("bwrap: No permissions to create new namespace")
    assert (found.fix, found.version) == (USERNS_FIX, "0.8.0")
    assert probe() is found
    with pytest.raises(SandboxUnavailable, match=r"kernel\.unprivileged_userns_clone=1"):
        Sandbox(worktree)


@pytest.mark.parametrize(
    ("message", "seccomp_filtered", "fix"),
    [
        ("bwrap (bubblewrap) is not installed", False, APT_FIX),
        ("bwrap: No permissions to create new namespace, likely because ...", False, USERNS_FIX),
        ("bwrap: setting up uid map: Permission denied", False, USERNS_FIX),
        ("bwrap: Creating new namespace failed: Operation not permitted", False, USERNS_FIX),
        ("bwrap: No permissions to create new namespace, likely because ...", True, CONTAINER_FIX),
        ("bwrap: loopback: Failed RTM_NEWADDR: Operation not permitted", False, CONTAINER_FIX),
        ("bwrap: Can't mount proc on /newroot/proc: Operation not permitted", False, CONTAINER_FIX),
        ("bwrap: something nobody has seen", False, GENERIC_FIX),
    ],
)
def test_bwrap_failures_map_to_fixes(message: str, seccomp_filtered: bool, fix: str) -> None:
    assert fix_for(message, seccomp_filtered=seccomp_filtered) == fix


def test_userns_fix_names_both_sysctls() -> None:
    assert "kernel.unprivileged_userns_clone=1" in USERNS_FIX
    assert "kernel.apparmor_restrict_unprivileged_userns=0" in USERNS_FIX
    assert "--security-opt seccomp=unconfined" in CONTAINER_FIX


def test_probe_is_cached_per_process() -> None:
    assert probe() is probe()
    if _PROBE.available:
        assert (_PROBE.reason, _PROBE.fix) == ("", "")
        assert _PROBE.version


def test_environment_reads_os_environ_at_each_run(
    worktree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandbox = Sandbox(worktree, tier="none")
    monkeypatch.setenv("TZ", "Europe/Paris")
    assert run(sandbox, "echo $TZ").output == "Europe/Paris\n"
    assert os.environ["TZ"] == "Europe/Paris"


@needs_bwrap
def test_a_toolchain_under_tmp_stays_visible_read_only(
    worktree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = tmp_path / "venv" / "bin"
    tools.mkdir(parents=True)
    (tools / "mytool").write_text("#!/bin/sh\necho tool-ran\n")
    (tools / "mytool").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}{os.pathsep}{os.environ['PATH']}")
    result = run(Sandbox(worktree), f"mytool; touch {tools}/x || echo read-only")
    assert result.output.startswith("tool-ran\n"), result.output
    assert "read-only" in result.output and not (tools / "x").exists()


def test_cancel_while_the_command_is_starting_kills_it_at_once(worktree: Path) -> None:
    tier = "bubblewrap" if probe().available else "none"
    marker = f"sleep 30.{secrets.randbelow(10**6)}"

    async def scenario() -> float:
        job = asyncio.ensure_future(Sandbox(worktree, tier=tier).run(marker))
        await asyncio.sleep(0)  # the cancel lands inside process creation
        job.cancel()
        started = time.monotonic()
        with pytest.raises(asyncio.CancelledError):
            await job
        return time.monotonic() - started

    # On a loop in another thread, as the engine's is: there asyncio's own cleanup of a
    # cancelled process creation would wait for the whole command.
    seconds: list[float] = []
    engine = threading.Thread(target=lambda: seconds.append(asyncio.run(scenario())))
    engine.start()
    engine.join(timeout=60)
    assert seconds and seconds[0] < 5
    assert not any(marker.encode() in p for p in _cmdlines())


def _cmdlines() -> list[bytes]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                found.append((proc / "cmdline").read_bytes())
            except OSError:
                continue
    return found


@BOTH_TIERS
def test_a_worktree_that_grows_over_its_quota_is_reported(worktree: Path, tier: str) -> None:
    from jupyter_delegate.engine.loop import TaskFailed
    from jupyter_delegate.engine.tools import Toolbox

    sandbox = Sandbox(worktree, tier=tier, limits=sandbox_module.Limits(worktree_mb=1))
    small = run(sandbox, "head -c 100000 /dev/urandom > small.bin")
    assert small.over_quota_mb == 0
    big = run(sandbox, "head -c 3000000 /dev/urandom > big.bin")
    assert 2.5 < big.over_quota_mb < 4, big
    toolbox = Toolbox(worktree, sandbox, 20.0)
    with pytest.raises(TaskFailed, match=r"grew by \d+ MB, over its quota"):
        asyncio.run(toolbox.call("bash", {"command": "head -c 3000000 /dev/urandom > b2"}))


ROOT_UNCAPPED = os.geteuid() == 0 and sandbox_module._ProcessCap.home() is None


@BOTH_TIERS
@pytest.mark.skipif(
    ROOT_UNCAPPED, reason="root without a pids cgroup here: nothing can cap its processes"
)
def test_a_command_cannot_start_more_processes_than_its_limit(worktree: Path, tier: str) -> None:
    # `ulimit -u` does not bind root (as CI runs): there a pids cgroup caps the command.
    sandbox = Sandbox(worktree, tier=tier, limits=sandbox_module.Limits(processes=40))
    sleep = unique_sleep()
    most = 0

    async def scenario() -> CommandResult:
        nonlocal most
        command = asyncio.create_task(
            sandbox.run(f"for i in $(seq 200); do {sleep} & done; wait", timeout_s=4)
        )
        while not command.done():
            most = max(most, len(processes_running(sleep)))
            await asyncio.sleep(0.05)
        return await command

    result = asyncio.run(scenario())
    assert result.timed_out, result
    assert 10 <= most <= 40, most
    assert processes_running(sleep) == []
