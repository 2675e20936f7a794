"""One round of a task's work: what a runner (runner.py) carries out.

A round creates the task's worktree (first round), gathers what the agent is told
beyond the outcome (first round), runs the agent loop in the sandbox, asks a human
through the task's permission questions, commits what the agent made through the commit
guard, runs the checks on that commit in a throw-away checkout, and leaves the task in
review; a cancel, a pause or a failure is journaled as the round's end (a pause at the
next step boundary: tool calls running finish first). It writes only
through its `Host` (the manager: the one place events are written, under the task's
lock) and reads the task's facts from the `Task` the journal folds into.

What does not live here: deciding (approve, reject, request changes: manager.py), the
registry and the engine thread (manager.py), where a round runs (runner.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import os
import secrets
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .context import Watch, gather
from .engine.loop import AgentLoop, Finished, TaskFailed
from .engine.model import client_for, endpoint_from_env
from .engine.prompt import system_prompt
from .environment import Environment, diagnose, discover, furnish
from .errors import DelegateError
from .journal import Event, redact, replay_messages, secret_values
from .outcome import check_timeout
from .policy import PermissionRequest, is_protected, is_secret, rules_for
from .snapshots import Snapshots
from .task import CheckResult, Task, TaskState, told
from .workspace import Staged, Workspace, leads_outside, max_file_mb

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

    from .engine.tools import Toolbox
    from .manager import Context
    from .sandbox import Sandbox

log = logging.getLogger(__name__)
S = TaskState
CHECK_TAIL = 4000
CHECK_OUTPUT_LIMIT = 2_000_000  # a check's whole output kept (head and tail), in its log
# Commands must not leave caches in the worktree (the harness commits all it holds),
# and HOME is read-only in the sandbox.
CACHE_FREE_ENV = {
    "PYTHONDONTWRITEBYTECODE": "1",
    "PYTEST_ADDOPTS": "-p no:cacheprovider",
    "XDG_CACHE_HOME": "/tmp/.cache",
}


T = TypeVar("T")
# The rounds' git and file work (setting up a task's sandbox, reading its secrets, staging
# and committing) runs in threads of its own, not in the loop's default executor, where
# the journal's synced writes (`Host.record_off`) wait: a task's conclusion is not queued
# behind other tasks' git work. It is mostly waiting for git processes, so a few threads
# a core. Creating and removing worktrees (and the checks' checkouts) take the
# repository's lock for git's records of them (workspace.py): they have threads of their
# own, so that the tasks queued for a worktree hold no thread the others need.
GIT_THREADS = min(16, 4 * (os.cpu_count() or 1))
WORKTREE_THREADS = 4
_pools: dict[str, ThreadPoolExecutor] = {}
_pools_lock = threading.Lock()


def _pool(name: str, threads: int) -> ThreadPoolExecutor:
    """The process's executor `name` (made on first use, shared by every manager)."""
    with _pools_lock:
        if name not in _pools:
            _pools[name] = ThreadPoolExecutor(threads, thread_name_prefix=f"delegate-{name}")
        return _pools[name]


async def _in(name: str, threads: int, func: Callable[..., T], *args: Any) -> T:
    """`func(*args)` in the executor `name`, awaited (as `asyncio.to_thread`, whose
    context it carries too)."""
    call = functools.partial(contextvars.copy_context().run, func, *args)
    return await asyncio.get_running_loop().run_in_executor(_pool(name, threads), call)


async def in_git_thread(func: Callable[..., T], *args: Any) -> T:
    """`func(*args)` in a thread of the rounds' git work."""
    return await _in("git", GIT_THREADS, func, *args)


async def in_worktree_thread(func: Callable[..., T], *args: Any) -> T:
    """`func(*args)` in a thread of the rounds' worktree creation and removal."""
    return await _in("worktree", WORKTREE_THREADS, func, *args)


class PausedHere(Exception):
    """A pause ordered while the agent's tool calls ran: the round stops at the step
    boundary, before the next model turn."""


@dataclass(frozen=True)
class Answer:
    """A human's (or the headless front end's) answer to a permission question."""

    allow: bool
    remember: bool = False
    by: str = "human"
    # The process that gave it, when not this one (control.requester).
    requester: Mapping[str, Any] | None = None
    granted: tuple[str, ...] = ()  # the rules allowed for the rest of the task
    message: str = ""  # the human's words to the agent with the answer


class Host(Protocol):
    """How a round writes: through the manager, under the task's lock."""

    def record(
        self, task: Task, type_: str, data: Mapping[str, Any], sync: bool = True
    ) -> Event: ...

    def set_state(
        self, task: Task, new: TaskState, reason: str, error: str = "", transient: bool = False
    ) -> None: ...

    # The same from the engine's loop, the synced write in a worker thread (the loop runs
    # other tasks meanwhile); what is told, is told on the loop after the write.
    async def record_off(self, task: Task, type_: str, data: Mapping[str, Any]) -> Event: ...

    async def set_state_off(self, task: Task, new: TaskState, reason: str) -> None: ...

    def fail(self, task: Task, error: str, transient: bool = False) -> None: ...

    def cancelled(self, task: Task, context: Context) -> None: ...


@dataclass
class RoundOfWork:
    """Carries out rounds of tasks for one manager (`run`), and runs checks (`run_checks`,
    also at an approve after the base moved)."""

    host: Host
    client: AsyncAnthropic | None = None  # one client for every task (a fake, say)
    ask_timeout_s: float = 600.0

    async def run(self, task: Task, context: Context) -> None:
        """One round: worktree, context (first round), agent loop, guarded commit, checks,
        review; its end journaled whatever happens (cancel, pause, failure)."""
        workspace = context.workspace
        try:
            if task.worktree is None or not task.worktree.exists():
                await in_worktree_thread(self._create_worktree, task, workspace)
            assert task.worktree is not None
            if task.state != S.RUNNING:
                await self.host.set_state_off(task, S.RUNNING, "the agent is working")
            if not task.system_prompt:
                await in_git_thread(self._gather_context, task, context)
            events = list(context.journal.events())
            watch = Watch(
                task.worktree, next(e.data for e in reversed(events) if e.type == "context")
            )
            sandbox, _ = await in_git_thread(self.sandbox, task, context, task.worktree)
            context.secrets = await in_git_thread(workspace.committed_secrets)
            client = self.client or client_for(context.endpoint or endpoint_from_env())
            toolbox = _toolbox(task, sandbox)
            # Made in a worker: finding the worktree's admin folder and the identity reads
            # files and git's configuration.
            snapshots = await in_git_thread(
                Snapshots, workspace, task.id, task.worktree, task.base_commit
            )
            try:
                loop = AgentLoop(
                    client=client,
                    model=task.model,
                    system=task.system_prompt,
                    toolbox=toolbox,
                    budget=task.outcome.budget,
                    messages=replay_messages(events),
                    record=lambda type_, data, sync=True: self.host.record(task, type_, data, sync),
                    emit=task.emit,
                    spent_usd=lambda: task.usage.cost_usd,
                    permit=lambda call: self._permit_step(task, context, call),
                    before_turn=lambda: self._before_turn(task, context, watch),
                    secrets=tuple(context.secrets),
                    model_info=task.model_info,
                    effort=task.effort,
                    compact_at=task.compact_at,
                    snapshot=lambda: in_git_thread(snapshots.take_or_none),
                )
                finished = await loop.run()
            finally:
                toolbox.close()  # the file tools' thread
                await in_git_thread(snapshots.flush)
            context.tool_running = False  # a pause now stops the checks at once
            await self._conclude(task, context, sandbox, finished)
        except PausedHere:
            context.pausing = False
            self.host.set_state(
                task, S.PAUSED, "paused by the user at a step boundary; resume continues it"
            )
        except asyncio.CancelledError:
            if context.pausing:
                context.pausing = False
                self.host.set_state(task, S.PAUSED, "paused by the user; resume continues it")
            else:
                await asyncio.to_thread(self.host.cancelled, task, context)
        except TaskFailed as exc:
            self.host.fail(task, str(exc), transient=exc.transient)
        except DelegateError as exc:
            self.host.fail(task, str(exc))
        except Exception as exc:  # the engine must survive any one task
            log.exception("task %s failed", task.id)
            self.host.fail(task, f"internal error: {exc!r}. The journal keeps everything so far.")
        finally:
            context.tool_running = context.pausing = False

    def _before_turn(self, task: Task, context: Context, watch: Watch) -> None:
        """A step boundary: the last step's results are journaled. A pause ordered while
        they ran stops the round here."""
        context.tool_running = False
        if context.pausing:
            raise PausedHere
        self._notice_changes(task, watch)

    async def _permit_step(
        self, task: Task, context: Context, call: Mapping[str, Any]
    ) -> str | None:
        """`_permit`, noting whether the call then runs (a pause lets it finish)."""
        context.tool_running = False
        refusal = await self._permit(task, context, call)
        context.tool_running = refusal is None
        return refusal

    def _gather_context(self, task: Task, context: Context) -> None:
        """Read what the agent is told beyond the outcome, once per task (journaled with
        the whole system prompt, so every round and a resume use the same)."""
        assert task.worktree is not None
        workspace = context.workspace
        found = gather(task.worktree, workspace.root, workspace.state_dir, task.outcome.scope)
        event = found.to_event()
        checks = task.checks_given(tuple(event["suggested_checks"]))
        event["system"] = system_prompt(task.outcome, found, checks, planning=task.planning)
        tell(task, self.host.record(task, "context", event))

    def _notice_changes(self, task: Task, watch: Watch) -> None:
        changes = watch.changes()
        if changes:
            data = {"changes": changes}
            written = self.host.record(task, "context_changed", data)
            tell(task, written)

    def _create_worktree(self, task: Task, workspace: Workspace) -> None:
        slug = task.branch.split("-", 1)[1] if "-" in task.branch else "task"
        workspace.create(task.id, slug, task.base_commit)

    async def _conclude(
        self, task: Task, context: Context, sandbox: Sandbox, finished: Finished
    ) -> None:
        summary = finished.summary
        if finished.stopped_by:
            summary = summary or f"Stopped by {finished.stopped_by} before the agent finished."
        await self.host.record_off(
            task, "finish", {"summary": summary, "stopped_by": finished.stopped_by}
        )
        assert task.worktree is not None
        staged = await in_git_thread(context.workspace.stage, task.worktree)
        revert = await in_git_thread(self._guard, task, context, staged)
        trailers = {
            "Delegate-Task": task.id,
            "Delegate-Model": ", ".join(task.served_models) or task.model,
            "Delegate-Sandbox": sandbox.tier,
            "Delegate-Journal": context.journal.head,
        }
        message = f"delegate: {task.title}\n\n{summary}"
        head = await in_git_thread(
            functools.partial(context.workspace.commit, staged=staged),
            task.worktree,
            message,
            trailers,
            revert,
        )
        await self.host.record_off(task, "commit", {"commit": head})
        await self.run_checks(task, context, head)
        await self.host.set_state_off(task, S.REVIEW, "ready for review")
        task.emit("review", task.to_record())

    def _guard(self, task: Task, context: Context, staged: Staged) -> list[str]:
        """The commit guard: of exactly what the commit would hold (git's raw changes, no
        renames collapsed), the paths not to commit, each flagged with why: protected
        files no explicit rule opens, paths a deny rule of the user's forbids writing
        (however they were changed: a command's `sed -i` too), symlinks leading out of
        the repository, gitlinks of repositories the base does not have as submodules,
        files over the size limit; and nested repositories, which were not staged."""
        workspace, worktree = context.workspace, task.worktree
        assert worktree is not None
        limit_mb = max_file_mb(workspace.root)
        revert: list[str] = []
        flags: list[str] = []
        for change in staged.changes:
            path, why = change.path, ""
            allowed = task.policy.decide("write", {"file_path": path}).action == "allow"
            if is_protected(path) and not allowed:
                why = "a protected file (no rule of yours opens it)"
            elif rule := task.policy.denies_writing(path):
                why = f"your rule {rule} forbids changing it"
            elif change.new_mode == "120000":
                target = workspace.blob_text(worktree, change.new_sha)
                if leads_outside(path, target):
                    why = f"a symlink to {target!r}, outside the repository"
            elif change.new_mode == "160000" and path not in staged.submodules:
                why = "a gitlink to a repository the base has no submodule for"
            elif change.status != "D" and change.new_mode.startswith("100"):
                size = workspace.blob_size(worktree, change.new_sha)
                if size > limit_mb * 1024 * 1024:
                    why = f"{size / 1024 / 1024:.0f} MB, over the {limit_mb:g} MB limit"
            if why:
                revert.append(path)
                flags.append(f"not committed: {path} ({why})")
        flags += [
            f"not committed: {path}/ (a git repository of its own inside the task's tree; "
            "its configuration could run commands in git)"
            for path in staged.nested
        ]
        for text in flags:
            self.host.record(task, "flag", {"text": text})
        return revert

    async def run_checks(self, task: Task, context: Context, commit: str) -> list[CheckResult]:
        """Run the task's checks on `commit`, in a throw-away checkout of it seen at the
        user's checkout's path, in the user's declared environment: what the checks
        write is never committed, and what they test is the agent's committed code.
        With no checks to run, nothing is made: no checkout, no sandbox, and the
        event says they ran with nothing (an empty environment)."""
        workspace = context.workspace
        if not task.check_commands:
            nothing = {"results": [], "commit": commit, "environment": {}}
            tell(task, await self.host.record_off(task, "checks", nothing))
            return []
        logs = workspace.task_dir(task.id) / "checks"
        round_ = len(list(logs.glob("*-1.log"))) + 1 if logs.is_dir() else 1
        if not context.secrets:  # checks at an approve, in another process than the run
            context.secrets = await in_git_thread(workspace.committed_secrets)
        with contextlib.ExitStack() as stack:
            copy = await in_worktree_thread(
                stack.enter_context, workspace.check_copy(task.id, commit)
            )
            sandbox, environment = await in_git_thread(
                self.sandbox, task, context, copy, CHECK_OUTPUT_LIMIT
            )
            results = await _run_each(
                sandbox,
                environment,
                task.check_commands,
                task.outcome.budget.check_timeout_s,
                context.secrets,
                lambda number: logs / f"{round_}-{number}.log",
            )
            await in_worktree_thread(stack.close)
        data: dict[str, Any] = {
            "results": [r.to_dict() for r in results],
            "commit": commit,
            "environment": redact(environment.to_dict()),
        }
        tell(task, await self.host.record_off(task, "checks", data))
        return results

    async def _permit(self, task: Task, context: Context, call: Mapping[str, Any]) -> str | None:
        """Ask the task's policy about a tool call; on `ask`, wait for a human."""
        tool, tool_input = call["name"], call["input"]
        decision = task.policy.decide(
            tool, tool_input, worktree=task.worktree, scope=task.outcome.scope
        )
        if decision.action == "allow":
            return None
        base = {"tool_use_id": call["id"], "tool": tool, "input": tool_input}
        if decision.action == "deny":
            self.host.record(
                task,
                "permission",
                {**base, "decision": "deny", "by": "policy", "reason": decision.reason},
            )
            return f"Denied by the user's permission rules ({decision.reason})."
        rules = tuple(rules_for(tool, tool_input, task.worktree))
        request = PermissionRequest(secrets.token_hex(3), tool, tool_input, decision.reason, rules)
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        context.pending[request.request_id] = (request, answer)
        asked = {**base, "request_id": request.request_id, "reason": decision.reason}
        asked_data = {**asked, "rules": list(rules)}
        question = self.host.record(task, "permission", {**asked_data, "status": "asked"})
        self.host.set_state(task, S.WAITING, f"{tool} waits for your permission")
        tell(task, question)
        try:
            given = await asyncio.wait_for(answer, self.ask_timeout_s)
        except TimeoutError:
            given = Answer(allow=False, by="timeout")
        finally:
            context.pending.pop(request.request_id, None)
        verdict, done = ("allow", "allowed") if given.allow else ("deny", "denied")
        decided = self.host.record(
            task,
            "permission",
            {
                **asked,
                "decision": verdict,
                "by": given.by,
                "remember": given.remember,
                "rule": decision.rule,
                "granted": list(given.granted),
                **({"message": given.message} if given.message else {}),
                **({"from": dict(given.requester)} if given.requester else {}),
            },
        )
        self.host.set_state(task, S.RUNNING, f"{tool} {done} by {given.by}")
        tell(task, decided)
        if given.allow:
            return None
        if given.by == "timeout":
            return f"Denied: nobody answered within {self.ask_timeout_s:g} s."
        if given.by == "headless":
            return "Denied: nobody was there to answer (a headless run)."
        if given.message:
            return f"Denied by the user, who says: {given.message}"
        return "Denied by the user."

    def sandbox(
        self, task: Task, context: Context, worktree: Path, output_limit: int = 30_000
    ) -> tuple[Sandbox, Environment]:
        """The sandbox for commands in `worktree` (the task's, or a throw-away copy for the
        checks): seen at the user's checkout's path, in the user's declared environment,
        its protected files read-only and its secret files hidden."""
        from .sandbox import Sandbox

        workspace = context.workspace
        environment = discover(
            workspace.root, task.environment, python_prefixes=(sys.prefix, sys.base_prefix)
        )
        furnished = furnish(environment, worktree, mounts=context.sandbox_tier != "none")
        for item in set(environment.items) - set(furnished.items):
            text = f"{item.path} is not git-ignored in the task's tree, so commands lack it"
            if text not in task.flags:
                self.host.record(task, "flag", {"text": text})
        environment = furnished
        tracked = workspace.tracked_files(worktree)
        protected = [worktree / f for f in tracked if is_protected(f) and not is_secret(f)]
        sandbox = Sandbox(
            worktree,
            tier=context.sandbox_tier,
            seen_at=workspace.root,
            environment=environment,
            git_view=None if context.sandbox_tier == "none" else workspace.git_view(worktree),
            read_only=[p for p in protected if p.exists()],
            hidden=[worktree / f for f in tracked if is_secret(f)],
            extra_env=CACHE_FREE_ENV,
            output_limit=output_limit,
        )
        return sandbox, environment


def _toolbox(task: Task, sandbox: Sandbox) -> Toolbox:
    from .engine.tools import Toolbox

    assert task.worktree is not None
    check_plan = None
    if task.planning:
        from .planning import check_proposal

        budget = dict((task.group or {}).get("budget") or {})
        root = sandbox.seen_at

        def check_plan(proposal: Any) -> str | None:
            return check_proposal(proposal, root, budget)

    return Toolbox(
        task.worktree,
        sandbox,
        task.outcome.budget.command_timeout_s,
        task.skills,
        check_plan=check_plan,
    )


def _write_log(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8", errors="replace")


async def run_checks_at(
    workspace: Workspace,
    commit: str,
    commands: Sequence[str],
    tier: str,
    name: str,
    logs: Path,
    env: Sequence[str] = (),
    check_timeout_s: float = 600.0,
) -> list[CheckResult]:
    """Run `commands` on `commit` as a task's checks run (a throw-away checkout of it seen
    at the user's checkout's path, in the sandbox `tier`, in the repository's declared
    environment with `env`), for work that is no one task's: a plan's integration.
    Each check's whole output goes to `logs/N.log`."""
    from .environment import declared_environment
    from .sandbox import Sandbox

    secrets_ = await asyncio.to_thread(workspace.committed_secrets)
    with contextlib.ExitStack() as stack:
        copy = await asyncio.to_thread(stack.enter_context, workspace.check_copy(name, commit))
        declared = declared_environment(workspace.root, env)
        environment = discover(
            workspace.root, declared, python_prefixes=(sys.prefix, sys.base_prefix)
        )
        environment = furnish(environment, copy, mounts=tier != "none")
        tracked = workspace.tracked_files(copy)
        sandbox = Sandbox(
            copy,
            tier=tier,
            seen_at=workspace.root,
            environment=environment,
            git_view=None if tier == "none" else workspace.git_view(copy),
            read_only=[copy / f for f in tracked if is_protected(f) and not is_secret(f)],
            hidden=[copy / f for f in tracked if is_secret(f)],
            extra_env=CACHE_FREE_ENV,
            output_limit=CHECK_OUTPUT_LIMIT,
        )
        results = await _run_each(
            sandbox,
            environment,
            commands,
            check_timeout_s,
            secrets_,
            lambda number: logs / f"{number}.log",
        )
        await asyncio.to_thread(stack.close)
    return results


async def _run_each(
    sandbox: Sandbox,
    environment: Environment,
    commands: Sequence[str],
    default_timeout_s: float,
    secrets_: list[str],
    log_of: Callable[[int], Path],
) -> list[CheckResult]:
    """Run each check in `sandbox`; its whole output (redacted) to `log_of(number)`."""
    results: list[CheckResult] = []
    for number, command in enumerate(commands, start=1):
        timeout_s = check_timeout(command, default_timeout_s)
        run = await sandbox.run(command, timeout_s=timeout_s)
        output = redact(run.output, secret_values() + secrets_)
        log = log_of(number)
        await asyncio.to_thread(_write_log, log, output)
        failed = run.exit_code != 0
        hint = await asyncio.to_thread(diagnose, run, environment) if failed else ""
        results.append(
            CheckResult(
                command=command,
                exit_code=run.exit_code,
                passed=not failed,
                duration_s=round(run.duration_s, 3),
                output_tail=output[-CHECK_TAIL:],
                log=str(log),
                hint=hint,
                timeout_s=timeout_s,
            )
        )
    return results


def tell(task: Task, written: Event) -> None:
    """Tell the task's subscribers of a line just journaled, as `told` says (the same words
    a process following the journal tells them in: `Retelling`)."""
    if (kind := told(written.type, written.data)) is not None:
        task.emit(*kind, written.typed)
