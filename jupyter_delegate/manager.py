"""The task manager: registry, engine thread, and every decision a human makes.

One writer per journal: only the process holding a task's lock (an flock on
`tasks/<id>/lock`) writes its journal, through `_record`, the one place events are
written. A decision (approve, reject, request changes, commit the reviewer's edits,
cancel, pause, answer) runs here when this process runs the task, or takes the lock when
nobody does; otherwise it is posted to the task's control inbox (control.py) and the
process running the task acts on it. Every decision reads the journal first (`refresh`),
so a stale one is refused.

Rounds of work (rounds.py) run where the runner says (runner.py): by default as
coroutines on one engine thread with its own asyncio loop, many at once; git work runs
in worker threads under the repository's lock so the loop never blocks.
`submit` validates everything it can (repo, base, model key, sandbox, the model id against
the endpoint's catalogue, effort and compaction point against what the model can do)
before it returns, so bad input fails in the caller, at once, with nothing created. A
task is known from its journal: the manager folds the journal into a `Task`
(`Task.apply`), which is how the CLI in another process, or a restored notebook, sees the
same task. A task whose journal says it was working, but which no live process holds (an
flock on its lock file), was cut off: it becomes `interrupted`, and `resume` continues it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import fcntl
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from . import control
from .audit import witness
from .context import add_preference, check_readable
from .engine.catalogue import (
    ModelInfo,
    cached_description,
    check_compact_at,
    check_effort,
    describe,
    keep_description,
    resolve_compact_at,
    resolve_effort,
    stored_description,
)
from .engine.model import (
    Endpoint,
    client_for,
    endpoint_from_env,
    known_client,
    model_settings,
    resolve_model,
)
from .engine.prompt import first_message
from .engine.tools import describe_input
from .environment import check_declared, declared_environment
from .errors import DelegateError, NotProven, ReviewError, TaskNotFound, UsageError
from .events import FORMAT
from .journal import Event, Journal, redact
from .notify import EVENTS, Notice, Notifier, Question, notify_settings
from .outcome import Outcome
from .policy import PermissionRequest, Policy, Rule, effective_policy, reads_config_once
from .review import LineComment, comments_of, feedback_text, quote
from .rounds import Answer, RoundOfWork
from .runner import EngineRunner, ProcessRunner, Round, Runner
from .task import Retelling, Task, TaskState, check_transition
from .workspace import Staged, Workspace, slugify

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

    from .planning import Plan


log = logging.getLogger(__name__)
T = TypeVar("T")
# Whom decisions made in this context are for, besides this process (`acting_for`).
_ACTING_FOR: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "jupyter_delegate_acting_for", default=None
)
S = TaskState


# How the reviewer's feedback opens the message the agent receives (views.py finds rounds by it).


@dataclass
class Context:
    """What the manager keeps for a task it knows (and a round of it uses)."""

    workspace: Workspace
    journal: Journal
    endpoint: Endpoint | None = None
    sandbox_tier: str = "auto"
    lock_fd: int | None = None
    # Secret values committed in the history (never journaled: kept here, redacted).
    secrets: list[str] = field(default_factory=list, repr=False)
    running: asyncio.Task[None] | None = field(default=None, repr=False)
    # A round was started (`_start`) and owns the lock until it ends; `idle` is set
    # when no round runs (after it let the lock go).
    handed_over: bool = False
    idle: threading.Event = field(default_factory=lambda: _set(threading.Event()), repr=False)
    following: int = 0  # rounds followed from here (`_follow`): the last one sets `idle`
    pausing: bool = False  # the running round is being stopped to pause, not to cancel
    # A tool call of the agent is running (allowed, not yet finished): a pause lets the
    # step end (its results journaled) and stops before the next model turn.
    tool_running: bool = False
    inbox_offset: int = 0  # how far this process, running the task, has read its inbox
    runner: Runner | None = None  # where its rounds run, when not the manager's (submit)
    last_change: float = 0.0  # when the journal last recorded a state change
    # Tells the lines another process journals (a round run elsewhere) to subscribers.
    retelling: Retelling = field(default_factory=Retelling, repr=False)
    # Held while the journal's new lines are folded and told, or a streamed word told
    # (runner.ProcessRunner), so each is told once and in order, from whichever thread.
    fold_lock: threading.RLock = field(default_factory=threading.RLock, repr=False)
    # Set (on the engine loop) when the runner of a round followed from here says the
    # round ended: `_follow` looks at once instead of at its next poll.
    news: asyncio.Event | None = field(default=None, repr=False)
    pending: dict[str, tuple[PermissionRequest, asyncio.Future[Answer]]] = field(
        default_factory=dict, repr=False
    )


class TaskManager:
    def __init__(
        self,
        *,
        client: AsyncAnthropic | None = None,
        sandbox: str = "auto",
        ask_timeout_s: float = 600.0,
        control_timeout_s: float = 120.0,
        via: str = "python",
        runner: Runner | None = None,
    ) -> None:
        """`client`: an AsyncAnthropic to use for every task (the in-process fake, say);
        by default one is made from ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL. `sandbox`:
        "auto" (bubblewrap, or refuse), "bubblewrap", or "none" (explicit opt-out).
        `ask_timeout_s`: a permission question not answered in time is denied.
        `control_timeout_s`: how long a decision about a task another process runs waits
        for that process to act on it (control.py). `via`: what this process is, as the
        journal names who decided ("cli", "notebook", "python"). `runner`: where rounds
        run (runner.py; default: this process's engine thread)."""
        self.rounds = RoundOfWork(_Host(self), client, ask_timeout_s)
        self._engine_runner = EngineRunner(self)  # runner="kernel": one, for its gathering
        self.runner: Runner = runner or self._engine_runner
        # Tells the user, away from the notebook, that a task needs them (notify.py).
        self.notifier = Notifier()
        self.control_timeout_s = control_timeout_s
        self.via = via
        self.sandbox = sandbox
        self._tasks: dict[tuple[Path, str], Task] = {}
        self._contexts: dict[int, Context] = {}
        self._registry_lock = threading.RLock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._inboxes: asyncio.Task[None] | None = None
        self._plans: dict[tuple[Path, str], Plan] = {}
        self._process_runner: ProcessRunner | None = None

    @property
    def _client(self) -> AsyncAnthropic | None:
        return self.rounds.client

    @_client.setter
    def _client(self, client: AsyncAnthropic | None) -> None:
        self.rounds.client = client

    @property
    def ask_timeout_s(self) -> float:
        """How long a permission question waits for an answer before it is denied."""
        return self.rounds.ask_timeout_s

    # -- engine thread -------------------------------------------------------------------
    def _engine(self) -> asyncio.AbstractEventLoop:
        with self._registry_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def serve() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                self._thread = threading.Thread(
                    target=serve, name="jupyter-delegate-engine", daemon=True
                )
                self._thread.start()
                ready.wait()
                self._loop = loop
            return self._loop

    def _on_engine(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self._engine())

    def _run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run a coroutine on the engine and wait for it (from a user thread)."""
        return self._on_engine(coro).result()

    # -- submit ----------------------------------------------------------------------------
    @reads_config_once
    def submit(
        self,
        outcome: Outcome,
        *,
        repo: str | os.PathLike[str] = ".",
        base: str | None = None,
        model: str | None = None,
        sandbox: str | None = None,
        policy: Policy | None = None,
        name: str | None = None,
        use_suggested_checks: bool = True,
        env: Sequence[str] = (),
        effort: str | None = None,
        compact_at: str | int | None = None,
        group: Mapping[str, Any] | None = None,
        runner: Runner | Any = None,
        cpus: int | float | str | None = None,
        memory: str | int | None = None,
    ) -> Task:
        """Start a task. `use_suggested_checks`: when the outcome has no checks, run the
        test commands its AGENTS.md names (shown in the review either way). `env`:
        variables for its commands and checks, `NAME` (from this environment) or
        `NAME=VALUE`, besides the defaults and `[environment] pass_env`. `effort`: "low",
        "medium", "high" or "max", one the model takes (default: `[model] effort` of the
        user's config where the model takes it, else the model's own). `compact_at`: the
        input tokens (120000) or share of the model's window ("60%") at which the
        conversation is compacted (default: `[model] compact_at`, else 60%). `group`: the
        plan or attempt group the task is part of (planning.py, best_of.py), journaled.
        `runner`: where its rounds run (runner.py): "process" (a worker process of this
        machine), "kernel" (this process's engine thread), a Runner, or a Dask cluster as
        a `distributed.Client` or a scheduler address (cluster.py); default: `[cluster]
        address` of the user's config when set, else this manager's runner (in a notebook,
        `[notebook] runner`, "process" unless set). `cpus`,
        `memory` ("4GB"): what its checks need (resources.py): on a Dask cluster, worker
        resources its rounds are scheduled by; journaled, not enforced in this process."""
        from .cluster import runner_for
        from .resources import declared as declared_resources
        from .sandbox import Sandbox

        if not isinstance(outcome, Outcome):
            raise DelegateError(f"submit() takes an Outcome, got {type(outcome).__name__}.")
        if isinstance(env, str):
            env = [env]
        resources = declared_resources(cpus, memory)  # malformed: refused, nothing made
        if runner == "process":
            chosen_runner: Any = self.process_runner()
        elif runner == "kernel":
            chosen_runner = self._engine_runner
        else:
            chosen_runner = runner_for(runner)  # a missing dask, a bad address: at once
        if isinstance(chosen_runner or self.runner, ProcessRunner) and self._client is not None:
            raise UsageError(
                "Rounds in a worker process reach the model through ANTHROPIC_BASE_URL and "
                "ANTHROPIC_API_KEY; this manager was given a client object, which cannot go "
                'there. Pass runner="kernel", or leave out client=.'
            )
        if resources and hasattr(chosen_runner, "check_resources"):
            chosen_runner.check_resources(resources)  # no worker offers them: refused here
        # Its own Workspace (a GitPython Repo is not shared by threads); HEAD read once, by
        # resolve_base, which refuses a branch with no commits as the opening check would.
        workspace = Workspace(repo, check_head=False)
        base_branch, base_commit = workspace.resolve_base(base)
        settings = model_settings()
        model_id = resolve_model(model, settings)
        if effort is not None:
            check_effort(effort)
        if compact_at is not None:
            check_compact_at(compact_at)
        policy = effective_policy(policy or Policy(), workspace.root)
        declared = declared_environment(workspace.root, env)
        check_declared(workspace.root, declared)  # a bad [environment] fails here, at once
        notify_settings()  # and a malformed [notify]
        check_readable(workspace.root, workspace.state_dir)
        endpoint = None if self._client is not None else endpoint_from_env()
        tier = sandbox or self.sandbox
        task_id = self._new_id(workspace)
        worktree = workspace.worktree_path(task_id)
        probe_sandbox = Sandbox(worktree, tier=tier)  # raises SandboxUnavailable with the fix
        # Last, as it asks the endpoint: an unknown model id fails here, nothing created.
        # An answer already known (to this process, or kept on disk by any) is read here,
        # without waiting for the busy engine or importing the SDK.
        info = self._known_model(endpoint, model_id)
        if info is None:
            info = self._run_sync(self._describe(endpoint, model_id))
            if endpoint is not None:  # the endpoint's own client: kept for the next process
                keep_description(endpoint, info)
        effort = resolve_effort(effort, info, settings.effort)
        compact_tokens = resolve_compact_at(
            compact_at if compact_at is not None else settings.compact_at,
            info,
            "compact_at" if compact_at is not None else "[model] compact_at of your config",
        )
        branch = f"delegate/{task_id}-{slugify(outcome.title)}"
        task = Task(id=task_id, outcome=outcome, repo=workspace.root, _manager=self)
        journal = Journal(workspace.task_dir(task_id) / "journal.jsonl")
        context = Context(workspace, journal, endpoint, probe_sandbox.tier, runner=chosen_runner)
        context.lock_fd = _try_lock(workspace.task_dir(task_id))
        self._remember(task, context)
        opening = {
            "format": FORMAT,
            "outcome": outcome.to_dict(),
            "branch": branch,
            "base_branch": base_branch,
            "base_commit": base_commit,
            "model": model_id,
            "worktree": str(worktree),
            "sandbox": probe_sandbox.tier,
            "policy": policy.to_dict(),
            "name": name,
            "use_suggested_checks": bool(use_suggested_checks),
            "environment": redact(declared.to_dict()),
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "model_info": info.to_dict(),
            "effort": effort,
            "compact_at": compact_tokens,
        }
        if group:
            opening["group"] = dict(group)
        if resources:
            opening["resources"] = resources
        planning = bool(group and group.get("role") == "planner")
        goal = {"content": [{"type": "text", "text": first_message(outcome, planning)}]}
        # One write, synced (folder and file) by the journal's background thread within
        # milliseconds, not here: submit waits for no disk. The witness of the round's
        # first synced event (running, or how it ended) covers these three.
        self._record_many(
            task,
            [
                ("task", opening),
                ("state", {"state": S.QUEUED, "reason": "submitted"}),
                ("user", goal),
            ],
            sync=False,
        )
        self._start(task, context, "submitted")
        return task

    def _known_model(self, endpoint: Endpoint | None, model_id: str) -> ModelInfo | None:
        """What `_describe` would answer, when the catalogue's answer is cached already:
        by the client, or for the endpoint on disk (a client passed to the manager has no
        endpoint: only its own cache). Any thread: no request, no hop to the engine."""
        if self._client is not None:
            return cached_description(self._client, model_id)
        endpoint = endpoint or endpoint_from_env()
        client = known_client(endpoint, self._engine())
        cached = None if client is None else cached_description(client, model_id)
        return cached or stored_description(endpoint, model_id)

    async def _describe(self, endpoint: Endpoint | None, model_id: str) -> ModelInfo:
        """What the model can do, asked on the engine loop of the client rounds use."""
        client = self._client or client_for(endpoint or endpoint_from_env())
        return await describe(client, model_id)

    def _new_id(self, workspace: Workspace) -> str:
        while True:  # a task's folder exists from its submit on, journal or not
            candidate = secrets.token_hex(3)
            if not workspace.task_dir(candidate).exists():
                return candidate

    def _remember(self, task: Task, context: Context) -> None:
        with self._registry_lock:
            self._tasks[(context.workspace.common_dir, task.id)] = task
            self._contexts[id(task)] = context

    def _start(self, task: Task, context: Context, why: str = "") -> None:
        """Hand a round of the task to the runner. In this process, the round owns the
        lock the decision took until it ends; elsewhere, the lock is let go for the
        runner to take, and this process follows the journal."""
        work = Round(str(task.repo), task.id, why)
        runner = context.runner or self.runner
        if runner.in_process:
            context.handed_over = True
            context.idle.clear()
            runner.start(work)
            return
        _unlock(context)
        runner.start(work)
        self._follow_round(task, context)

    def process_runner(self) -> ProcessRunner:
        """This manager's worker process for rounds (runner.ProcessRunner), made on first
        use; `warm()` starts its process before the first round needs it."""
        with self._registry_lock:
            if self._process_runner is None:
                self._process_runner = ProcessRunner(self)
            return self._process_runner

    def _launch(self, work: Round) -> None:
        """Run `work` on the engine (its task known here, its lock held here)."""
        task = self.get(work.task_id, work.repo)
        context = self._context(task)
        context.handed_over = True
        context.idle.clear()

        async def launch() -> None:
            try:
                # Before the inbox is served (which needs `running`): a left request must
                # be closed, not acted upon, and a pause must find the round's own guard.
                await asyncio.to_thread(self._close_left_requests, task, context)
                context.running = asyncio.current_task()
                if self._inboxes is None:  # it ends when no round runs (`_serve_inboxes`)
                    self._inboxes = asyncio.get_running_loop().create_task(self._serve_inboxes())
                await self.rounds.run(task, context)
            finally:
                context.running = None
                context.handed_over = False
                _unlock(context)
                context.idle.set()

        self._on_engine(launch())

    def _not_begun(self, work: Round, error: str) -> None:
        """A round handed to this process's engine that could not begin (EngineRunner):
        its lock goes and the task fails with `error`, rather than stay queued."""
        task = self.get(work.task_id, work.repo)
        context = self._context(task)
        context.handed_over = False
        _unlock(context)
        try:
            self._settle_stopped(task, context, "", error=error)
        finally:
            context.idle.set()

    def claim(self, work: Round) -> Task:
        """Take the lock of `work`'s task for a round run here (runner.run_round). A
        lock held for a moment (another process looking whether it is held: `_held`) is
        waited for, up to a second."""
        workspace = Workspace(work.repo)
        deadline = time.monotonic() + 1.0
        while (fd := _try_lock(workspace.task_dir(work.task_id))) is None:
            if time.monotonic() > deadline:
                raise ReviewError(f"Task {work.task_id} is being worked on by another process.")
            time.sleep(0.01)
        try:
            task = self.get(work.task_id, work.repo)
            context = self._context(task)
            # Known here from an earlier round (a warm worker): what others journaled
            # since (the decision that started this one) is read first.
            self._refresh(task, context)
        except BaseException:
            os.close(fd)
            raise
        context.lock_fd = fd
        return task

    def _let_go(self, task: Task) -> None:
        """Let go of the task's lock, taken for a round that could not begin (run_round)."""
        _unlock(self._context(task))

    def until_round_ends(self, task: Task, timeout: float | None = None) -> TaskState:
        """Wait for the task's round, run or followed from this process, to end (its last
        event journaled and its lock let go); its state then. Raises TimeoutError if
        `timeout` seconds pass first."""
        if not self._context(task).idle.wait(timeout):
            raise TimeoutError(f"Task {task.id}'s round is still going after {timeout} s.")
        return task.state

    def _follow_round(self, task: Task, context: Context) -> None:
        """Follow from here the round another runner took up (`_follow`); until it ends,
        the task is not idle."""
        context.following += 1
        context.idle.clear()
        self._on_engine(self._follow(task, context, context.following))

    async def _follow(self, task: Task, context: Context, following: int) -> None:
        """Follow a round another process (or a runner's thread) runs, from the journal,
        until it ends: its state no longer active and its lock let go. Meanwhile the
        context is not idle (`_follow_round`), so that a decision waits for the
        lock (`_settle_round`); `following`: this round's number, so that a follow
        outlived by the next round's does not set it idle."""
        runner = context.runner or self.runner
        every = getattr(runner, "follow_every_s", 0.1)  # the poll, when no news comes
        # A runner that tells the round's streamed words here, on this loop: the journal
        # is read here too, so its lines are told after the words before them.
        here = getattr(runner, "streams", False)
        news = context.news = asyncio.Event()
        try:
            started = False
            while True:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(every):
                        await news.wait()
                news.clear()
                if here:
                    self._refresh(task, context)
                else:
                    await asyncio.to_thread(self._refresh, task, context)
                held = _held(context.workspace.task_dir(task.id))
                started = started or held or not task.state.active
                if started and not held and not task.state.active:
                    return
        finally:
            if context.following == following:
                context.idle.set()

    def _cancelled(self, task: Task, context: Context) -> None:
        ref = self._archive(task, context)
        reason = f"cancelled by the user; work kept at {ref}" if ref else "cancelled by the user"
        self._set_state(task, S.CANCELLED, reason)

    def _fail(self, task: Task, error: str, transient: bool = False) -> None:
        if task.state.terminal:
            return
        self._set_state(task, S.FAILED, "the task failed", error=error, transient=transient)

    def pending(self, task: Task) -> list[PermissionRequest]:
        """The task's permission questions waiting for an answer, from whichever process
        runs it: asked in its journal, not yet decided, while it waits."""
        context = self._context(task)
        if context.running is not None:
            return [request for request, _ in context.pending.values()]
        self._refresh(task, context)
        if task.state != S.WAITING:
            return []
        asked: dict[str, PermissionRequest] = {}
        for event in context.journal.events():
            data = event.data
            if event.type != "permission" or "request_id" not in data:
                continue
            if data.get("status") == "asked":
                asked[data["request_id"]] = PermissionRequest(
                    data["request_id"],
                    data["tool"],
                    data.get("input", {}),
                    data["reason"],
                    tuple(data.get("rules") or ()),
                )
            elif data.get("decision"):
                asked.pop(data["request_id"], None)
        return list(asked.values())

    def answer(
        self,
        task: Task,
        request_id: str,
        allow: bool,
        remember: bool = False,
        by: str = "human",
        rule: str | Sequence[str] | None = None,
        reason: str | None = None,
    ) -> None:
        """Answer a pending permission question, whichever process runs the task. `by`:
        who decided, as journaled ("human"; "headless" when nobody could be asked);
        `rule`, `reason`: see `Task.answer`."""
        if not isinstance(by, str) or not by.strip():
            raise ReviewError(f"by= names who answered (say 'human'), not {by!r}.")
        rules = [rule] if isinstance(rule, str) else list(rule or [])
        for text in rules:
            Rule.parse(text)  # a malformed rule is refused here, in the asking process
        if rules and not allow:
            raise ReviewError("rule= goes with allow: a denial grants no rule.")
        if reason is not None and not isinstance(reason, str):
            raise ReviewError(f"reason= is the words the agent receives, not {reason!r}.")
        if reason and reason.strip() and allow:
            raise ReviewError("reason= goes with a denial: an allowed call runs, told nothing.")
        args = {"request_id": request_id, "allow": bool(allow), "remember": bool(remember)}
        extra: dict[str, Any] = {"rules": rules} if rules else {}
        if reason and reason.strip():
            extra["reason"] = reason.strip()
        self._decide(task, "answer", {**args, "by": by.strip(), **extra})

    def _answer(
        self,
        task: Task,
        context: Context,
        request_id: str,
        allow: bool,
        remember: bool = False,
        by: str = "human",
        requester: Mapping[str, Any] | None = None,
        rules: Sequence[str] = (),
        reason: str = "",
    ) -> None:
        entry = context.pending.get(request_id)
        if entry is None:
            waiting = ", ".join(context.pending) or "none"
            raise ReviewError(
                f"Task {task.id} has no pending question {request_id!r} (pending: {waiting})."
            )
        request, future = entry
        granted = _granted(request, bool(allow), bool(remember), rules)
        answer = Answer(bool(allow), bool(remember), by, requester, granted, reason)

        def settle() -> None:
            if not future.done():
                future.set_result(answer)

        self._engine().call_soon_threadsafe(settle)
        with task._changed:  # return once the engine has taken the answer
            task._changed.wait_for(lambda: request_id not in context.pending, timeout=10)
            task._changed.wait_for(lambda: task.state != S.WAITING or context.pending, 10)

    # -- decisions, from any process (control.py) ------------------------------------------
    def refresh(self, task: Task) -> Task:
        """Fold into `task` what other processes journaled since this one last read it."""
        self._refresh(task, self._context(task))
        return task

    def _refresh(self, task: Task, context: Context) -> None:
        """Fold the lines other processes journaled since this one last read, and tell the
        task's subscribers of them as the round that wrote them told its own (Retelling):
        a round run elsewhere reaches this process's views as its journal grows. Called
        again from a subscriber while it tells (a view asking `pending`), it returns: the
        lines are folded and told in order, each before the next is read."""
        within: set[int] = _refreshing.__dict__.setdefault("contexts", set())
        if id(context) in within:
            return
        within.add(id(context))
        try:
            with context.fold_lock:
                self._fold_new(task, context)
        finally:
            within.discard(id(context))

    def _fold_new(self, task: Task, context: Context) -> None:
        new = context.journal.catch_up()
        for event in new:
            task.apply(event.typed)
            task.journal_head = event.hash
            if event.type == "state":
                context.last_change = event.ts
            # what the round that wrote it told its own subscribers, told here
            for kind, data, typed in context.retelling.events(
                event.type, event.data, event.typed, event.seq
            ):
                task.emit(kind, data, typed)
            if event.type == "state" and event.data.get("state") == S.REVIEW:
                task.emit("review", task.to_record())
        if new and not context.pending and context.running is None:
            with task._changed:
                task._changed.notify_all()

    def _decide(self, task: Task, action: str, args: Mapping[str, Any]) -> Any:
        """Carry out a decision about `task` in the one process that may write its journal:
        here, when this process runs it or nobody does (then under the task's lock);
        otherwise through the control inbox, in the process that runs it."""
        context = self._context(task)
        self._settle_round(task, context)
        by = self.requester()
        if context.lock_fd is not None:  # this process holds the task: it runs it
            return self._act(task, context, action, args, by=by)
        fd = _try_lock(context.workspace.task_dir(task.id))
        if fd is None:
            request = control.post(task.folder, action, args, by)
            runner = context.runner or self.runner
            if hasattr(runner, "posted"):  # it can tell its process at once
                runner.posted(task)
            return self._await(task, context, request)
        with self._holding(context, fd):
            return self._act(task, context, action, args, before=task.state, by=by)

    def requester(self) -> dict[str, Any]:
        """Who decides from here: this process (`via`), and whom it acts for (`acting_for`)."""
        return control.requester(self.via, **(_ACTING_FOR.get() or {}))

    @contextlib.contextmanager
    def acting_for(self, **who: Any) -> Iterator[None]:
        """Decisions made inside (in this thread or coroutine) name `who` besides this
        process: the Jupyter server passes the user it authenticated,
        `acting_for(server_user="alice")`, and the journal names them."""
        token = _ACTING_FOR.set(dict(who))
        try:
            yield
        finally:
            _ACTING_FOR.reset(token)

    def _settle_round(self, task: Task, context: Context) -> None:
        """A round that just ended (in review, failed, paused) lets the lock go right after
        its last event: wait for that, so a decision made at once does not find it held."""
        if not task.state.active:
            context.idle.wait(timeout=10)

    @contextlib.contextmanager
    def _holding(self, context: Context, fd: int) -> Iterator[None]:
        """Hold the task's lock (taken as `fd`) for a decision; a round the decision starts
        takes it over (`_start`) and lets it go when it ends."""
        context.lock_fd = fd
        try:
            yield
        finally:
            if context.lock_fd == fd and not context.handed_over:
                _unlock(context)

    def _act(
        self,
        task: Task,
        context: Context,
        action: str,
        args: Mapping[str, Any],
        request: control.Request | None = None,
        before: TaskState | None = None,
        by: Mapping[str, Any] | None = None,
    ) -> Any:
        """Do `action` holding the task's lock, after reading what others journaled;
        `request`: it came through the inbox, and its outcome is journaled for the poster.
        `before`: the state the caller last saw, to say so when it has moved on. `by`: who
        decided here (control.requester), journaled with a decision that did something
        (an answer: in its permission event)."""
        self._refresh(task, context)
        if request is not None:
            accepted = {**request.to_dict(), "status": "accepted"}
            self._record(task, "control", accepted)
            by = request.by
        if action == "answer" and by is not None:
            args = {**args, "requester": dict(by)}
        try:
            result = getattr(self, f"_{action}")(task, context, **args)
        except DelegateError as exc:
            error = str(exc)
            if before is not None and task.state != before:
                at = datetime.fromtimestamp(context.last_change).strftime("%H:%M")
                error = (
                    f"Task {task.id} was {task.state} by another process at {at}; nothing "
                    f"was done. ({error})"
                )
                exc = ReviewError(error)
            if request is not None:
                self._settle(task, request, "refused", error=error)
            raise exc from None
        if request is not None:
            self._settle(task, request, "done", result=result)
        elif by is not None and action != "answer" and context.lock_fd is not None:
            decided = {"request_id": secrets.token_hex(4), "action": action, "args": dict(args)}
            if result is not None:
                decided["result"] = result
            self._record(task, "control", {**decided, "by": dict(by), "status": "done"})
        return result

    def _settle(self, task: Task, request: control.Request, status: str, **outcome: Any) -> None:
        data = {"request_id": request.request_id, "action": request.action, "status": status}
        self._record(task, "control", {**data, **outcome})

    def _await(self, task: Task, context: Context, request: control.Request) -> Any:
        """Wait for the outcome of a request another process acts on. If that process
        lets the task go (its round ended, it died), act here, under the lock."""
        deadline = time.monotonic() + self.control_timeout_s
        delay = 0.01
        while True:
            self._refresh(task, context)
            outcome = task.control_outcomes.get(request.request_id)
            if outcome is None:
                fd = _try_lock(context.workspace.task_dir(task.id))
                if fd is not None:
                    with self._holding(context, fd):
                        self._refresh(task, context)
                        outcome = task.control_outcomes.get(request.request_id)
                        if outcome is None:
                            return self._act(task, context, request.action, request.args, request)
            if outcome is not None:
                if outcome["status"] == "refused":
                    raise ReviewError(outcome.get("error") or f"Task {task.id}: refused.")
                return outcome.get("result")
            if time.monotonic() > deadline:
                raise ReviewError(
                    f"Task {task.id} is run by another process, which has not acted on your "
                    f"{request.action} (request {request.request_id}) within "
                    f"{self.control_timeout_s:g} s. It stays in the task's inbox "
                    f"({task.folder / control.INBOX}) and is acted upon if that process "
                    "reads it; `jupyter delegate show ID` tells what happened."
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.1)

    async def _serve_inboxes(self) -> None:
        """In the process running tasks: act on what other processes post to their
        inboxes, within a fraction of a second. It ends when no round runs here, so an
        idle engine (a kernel between tasks) is not woken ten times a second; the next
        round starts it again (`_launch`, on this loop: no round can start in between)."""
        while True:
            await asyncio.sleep(0.1)
            with self._registry_lock:
                held = [(t, c) for t, c in self._known() if c.running is not None]
            if not held:
                self._inboxes = None
                return
            for task, context in held:
                self._take_inbox(task, context)

    def _take_inbox(self, task: Task, context: Context) -> None:
        """On the engine: act (each on a thread) on what the task's inbox gained since
        this process last read it."""
        try:
            size = os.stat(task.folder / control.INBOX).st_size
        except OSError:
            return
        if size <= context.inbox_offset:
            return
        requests, context.inbox_offset = control.read(task.folder, context.inbox_offset)
        for request in requests:
            asyncio.get_running_loop().create_task(
                asyncio.to_thread(self._serve, task, context, request)
            )

    def look_at_inbox(self, task: Task) -> None:
        """Act now on the task's inbox, if its round runs here (not at the server's next
        look): a runner's message says something was posted (runner.ProcessRunner)."""
        context = self._context(task)

        def look() -> None:
            if context.running is not None:
                self._take_inbox(task, context)

        self._engine().call_soon_threadsafe(look)

    def _serve(self, task: Task, context: Context, request: control.Request) -> None:
        if request.request_id in task.control_outcomes:
            return
        with contextlib.suppress(DelegateError):  # refusals are journaled for the poster
            self._act(task, context, request.action, request.args, request)

    def _close_left_requests(self, task: Task, context: Context) -> None:
        """At the start of a round: requests nobody acted on (posted to a process that
        then stopped) are closed as refused, so nobody waits for them and none is acted
        upon by surprise later; the review says so."""
        left = [
            r for r in control.read(task.folder)[0] if r.request_id not in task.control_outcomes
        ]
        context.inbox_offset = control.read(task.folder)[1]
        for request in left:
            when = datetime.fromtimestamp(request.posted).strftime("%H:%M:%S")
            self._settle(
                task,
                request,
                "refused",
                error=f"posted at {when} to a process that stopped before acting on it; "
                "nothing was done. Decide again now that the task runs.",
            )
            who = control.describe(request.by)
            self._record(
                task,
                "flag",
                {
                    "text": f"a {request.action} from {who} was left unanswered by a process "
                    "that stopped; closed without acting on it"
                },
            )

    def _known(self) -> list[tuple[Task, Context]]:
        return [(t, self._contexts[id(t)]) for t in self._tasks.values()]

    # -- journal: the one place events are written ------------------------------------------
    def _record(self, task: Task, type_: str, data: Mapping[str, Any], sync: bool = True) -> Event:
        return self._record_many(task, [(type_, data)], sync)[0]

    def _record_many(
        self, task: Task, events: list[tuple[str, Mapping[str, Any]]], sync: bool = True
    ) -> list[Event]:
        context = self._context(task)
        if context.lock_fd is None:
            raise ReviewError(
                f"Task {task.id}: this process does not hold the task, so it may not write "
                "its journal (an internal error: please report it)."
            )
        written = context.journal.append_many(events, sync=sync)
        if sync:  # what a human acts upon is witnessed outside the journal (audit.py)
            witness(context.workspace.state_dir, task.id, written[-1])
        for event in written:
            task.apply(event.typed)
            task.journal_head = event.hash
            if event.type == "state":
                context.last_change = event.ts
        return written

    def _set_state(
        self, task: Task, new: TaskState, reason: str, error: str = "", transient: bool = False
    ) -> None:
        data = self._state_data(task, new, reason, error, transient)
        self._told_state(task, new, reason, data, self._record(task, "state", data))

    async def _set_state_off(
        self, task: Task, new: TaskState, reason: str, error: str = "", transient: bool = False
    ) -> None:
        """`_set_state` from the engine's loop, its synced write (journal and witness) in a
        worker thread so the loop goes on with other tasks meanwhile; the change is told
        on the loop, after the write, as `_set_state` tells it."""
        data = self._state_data(task, new, reason, error, transient)
        written = await asyncio.to_thread(self._record, task, "state", data)
        self._told_state(task, new, reason, data, written)

    def _state_data(
        self, task: Task, new: TaskState, reason: str, error: str, transient: bool
    ) -> dict[str, Any]:
        check_transition(task.id, task.state, new, transient=task.transient)
        data: dict[str, Any] = {"state": str(new), "reason": reason}
        if error:
            data["error"] = error
        if transient:
            data["transient"] = True
        if new == S.REVIEW and task.head_commit:
            data["head"] = task.head_commit  # the head this round of review is about
        return data

    def _told_state(
        self, task: Task, new: TaskState, reason: str, data: dict[str, Any], written: Event
    ) -> None:
        task.emit("state", data, written.typed)
        if new.value in EVENTS:
            self._notify(task, new, reason)

    def _notify(self, task: Task, new: TaskState, reason: str) -> None:
        """Tell the user, away from the notebook, that the task needs them: it waits for
        an answer, is in review, failed or was interrupted (notify.py). Sent off-thread;
        a delivery that fails for good is journaled (`_notify_failed`)."""
        question = None
        if new == S.WAITING and task.asked:
            asked = list(task.asked.values())[-1]
            what = describe_input(asked.input)
            question = Question(asked.request_id, asked.tool, what, asked.reason)
        notice = Notice(
            EVENTS[new.value],
            task.id,
            task.title,
            str(task.repo),
            new.value,
            name=task.name,
            verdict=task.verdict,
            question=question,
            error=task.error if new == S.FAILED else "",
            reason=reason,
        )
        secrets = self._context(task).secrets
        try:
            self.notifier.send(notice, lambda failed: self._notify_failed(task, failed), secrets)
        except Exception:  # a notification must never stop the task
            log.exception("task %s: notification not sent", task.id)

    def _notify_failed(self, task: Task, failed: Mapping[str, Any]) -> None:
        """Journal a notification that could not be delivered (on the delivery's thread):
        here when this process holds the task, else under its lock when nobody does; when
        another process holds it, only the log says so."""
        context = self._context(task)
        for _ in range(3):
            try:
                if context.lock_fd is not None:
                    self._record(task, "notify_failed", failed)
                    return
                fd = _try_lock(context.workspace.task_dir(task.id))
                if fd is None:
                    break
                with self._holding(context, fd):
                    self._refresh(task, context)
                    self._record(task, "notify_failed", failed)
                return
            except DelegateError:  # the lock moved meanwhile (a round ended): again
                time.sleep(0.05)
        log.warning("task %s: notification not delivered: %s", task.id, dict(failed))

    # -- finding tasks -----------------------------------------------------------------------
    def _context(self, task: Task) -> Context:
        try:
            return self._contexts[id(task)]
        except KeyError:
            raise TaskNotFound(f"Task {task.id} is not known to this manager.") from None

    def get(self, task_id: str, repo: str | os.PathLike[str] | None = None) -> Task:
        """A task by id, or by name (as given to `delegate(name=...)`, `--name`), in any
        process: names are read from the journals. An ambiguous name lists the tasks."""
        task_id = task_id.strip()
        if repo is not None:  # a task of this process, asked for by id and its root
            with self._registry_lock:
                for task in self._tasks.values():
                    if task.id == task_id and str(task.repo) == str(repo):
                        return task
        workspace = Workspace(repo) if repo is not None else None
        with self._registry_lock:
            known_tasks = list(self._tasks.values())
        here = [t for t in known_tasks if workspace is None or t.repo == workspace.root]
        for task in here:
            if task_id == task.id:
                return task
        named_here = [t for t in here if t.name == task_id]
        if len(named_here) == 1 and workspace is None:  # a name given in this process
            return named_here[0]
        if len(named_here) > 1 and workspace is None:  # in several repositories
            listed = ", ".join(f"{t.id} (in {t.repo})" for t in named_here)
            raise TaskNotFound(
                f"{len(named_here)} tasks of this process are named {task_id!r}: {listed}. "
                "Pass one of these ids, or the repository (`--repo`, repo=)."
            )
        workspace = workspace or Workspace(".")
        ids = workspace.task_ids()
        if task_id in ids:
            with self._registry_lock:
                known = self._tasks.get((workspace.common_dir, task_id))
            return known if known is not None else self._load(workspace, task_id)
        named = [i for i in ids if _name_in_journal(workspace.task_dir(i)) == task_id]
        if len(named) > 1:
            listed = ", ".join(named)
            raise TaskNotFound(
                f"{len(named)} tasks in {workspace.root} are named {task_id!r}: {listed}. "
                "Pass one of these ids."
            )
        if named:
            return self.get(named[0], workspace.root)
        recent = ", ".join(ids[-10:]) or "none yet"
        raise TaskNotFound(
            f"No task {task_id!r} in {workspace.root}. Known tasks: {recent}. "
            "`jupyter delegate list` shows them."
        )

    def plan(self, plan_id: str, repo: str | os.PathLike[str] | None = None) -> Plan:
        """A plan (planning.py) by id: the one this process knows, else read from its journal."""
        from .planning import Plan

        workspace = Workspace(repo if repo is not None else ".")
        key = (workspace.common_dir, plan_id.strip())
        with self._registry_lock:
            known = self._plans.get(key)
            if known is None:
                known = self._plans[key] = Plan(workspace, plan_id.strip(), self)
        return known.refresh()

    def tasks(self, repo: str | os.PathLike[str] | None = None) -> list[Task]:
        if repo is None:
            with self._registry_lock:
                return list(self._tasks.values())
        workspace = Workspace(repo)
        return [self.get(task_id, workspace.root) for task_id in workspace.task_ids()]

    def _load(self, workspace: Workspace, task_id: str) -> Task:
        journal = Journal(workspace.task_dir(task_id) / "journal.jsonl")
        events = list(journal.events())
        if not events or events[0].type != "task":
            raise TaskNotFound(f"The journal of task {task_id} has no task event; see audit.")
        task = Task(
            id=task_id,
            outcome=Outcome.from_dict(events[0].data["outcome"]),
            repo=workspace.root,
            _manager=self,
        )
        for event in events:
            task.apply(event.typed)
        task.journal_head = journal.head
        # The repository may have moved (a copy on another path): its worktrees are where
        # this repository keeps them, and git's links to them are mended.
        task.worktree = workspace.worktree_path(task_id)
        if task.worktree.exists():
            workspace.repair_worktree(task.worktree)
        context = Context(workspace, journal, sandbox_tier=task.sandbox or self.sandbox)
        self._remember(task, context)
        if task.state.active and self._reattach(task, context):
            return task
        if task.state.active:
            self._settle_stopped(task, context, "the process running it stopped")
        return task

    def _settle_stopped(self, task: Task, context: Context, reason: str, error: str = "") -> None:
        """A task left active by a process that stopped running it (or never began):
        when nobody holds its lock, interrupted (resumable) with `reason`, or failed with
        `error` when one is given. Held: it still runs somewhere, and is left be."""
        fd = _try_lock(context.workspace.task_dir(task.id))
        if fd is None:
            return
        with self._holding(context, fd):
            self._refresh(task, context)
            if task.state.active and error:
                self._fail(task, error)
            elif task.state.active:
                self._set_state(task, S.INTERRUPTED, reason)

    def _reattach(self, task: Task, context: Context) -> bool:
        """A round on a Dask cluster that the process which started it no longer mirrors
        (cluster.reattach): mirrored from here on, and followed."""
        if not (context.workspace.task_dir(task.id) / "cluster.json").exists():
            return False
        from .cluster import reattach

        runner = reattach(context.workspace, task.id)
        if runner is None:
            return False
        context.runner = runner
        self._follow_round(task, context)
        return True

    def journal_path(self, task: Task) -> Path:
        return self._context(task).journal.path

    # -- what humans do ----------------------------------------------------------------------
    def diff(self, task: Task, since: str | None = None) -> str:
        """The task's own change (`git diff BASE...TASK`; see `Task.diff`), or from the
        commit `since` to the task's head."""
        context = self._context(task)
        assert task.worktree is not None
        head = task.merged_commit or task.head_commit
        if since is None:
            start = self.diff_base(task)
        else:
            start = context.workspace.resolve_commit(task.worktree, str(since))
        return context.workspace.diff(task.worktree, start, head)

    def worktree_file(self, task: Task, path: str) -> Path:
        """`path` (repository relative) in the task's worktree; see `Task.worktree_file`."""
        worktree = self._worktree_of(task, "edit its files")
        given = str(path).strip() if isinstance(path, (str, os.PathLike)) else ""
        if not given or os.path.isabs(given):
            raise UsageError(
                f"Name a file of task {task.id} relative to the repository root (calc.py, "
                f"src/app.py), not {path!r}."
            )
        parts = Path(given).parts
        if ".." in parts or ".git" in parts:
            raise UsageError(
                f"{given!r} is not a file of task {task.id}'s worktree: paths with `..` or "
                "`.git` are refused. Name the file relative to the repository root."
            )
        root = worktree.resolve()
        target = root / given
        if not target.resolve().is_relative_to(root):
            raise UsageError(
                f"{given!r} leads outside task {task.id}'s worktree (a symlink out); only "
                "files inside it can be edited there."
            )
        return target

    def _worktree_of(self, task: Task, doing: str) -> Path:
        if task.worktree is None or not task.worktree.exists():
            raise ReviewError(
                f"Task {task.id} is {task.state} and has no worktree, so you cannot {doing}. "
                "Only a task that is still open (in review, say) has one."
            )
        return task.worktree

    def commit_edits(self, task: Task, message: str = "") -> str:
        """Commit the reviewer's own edits in the task's worktree; see `Task.commit_edits`."""
        if not isinstance(message, str):
            raise UsageError(f"commit_edits(message=) takes a text, not {message!r}.")
        return str(self._decide(task, "commit_edits", {"message": message}))

    def _commit_edits(self, task: Task, context: Context, message: str = "") -> str:
        self._require(task, S.REVIEW, "given your own edits")
        worktree = self._worktree_of(task, "commit your edits")
        staged = context.workspace.stage(worktree)
        if not staged.changes:
            raise ReviewError(
                f"Nothing changed in task {task.id}'s worktree ({worktree}), so there is "
                f"nothing to commit. Edit its files there first (`jupyter delegate edit "
                f"{task.id} FILE` prints a file's path)."
            )
        head = self._commit_human_edit(task, context, worktree, staged, message)
        self._run_sync(self.rounds.run_checks(task, context, head))
        task.emit("review", task.to_record())
        return head

    def _commit_human_edit(
        self, task: Task, context: Context, worktree: Path, staged: Staged, message: str
    ) -> str:
        """Commit what the reviewer changed in the worktree (`staged`) as them, and
        journal it as a human edit; returns the commit."""
        workspace = context.workspace
        identity = workspace.user_identity()
        if identity is None:
            raise ReviewError(
                "Your edits are committed as you, and git does not know who you are: run "
                "`git config user.name 'Your Name'` and `git config user.email you@example.com` "
                "in the repository, then try again. Nothing was committed."
            )
        files = sorted({change.path for change in staged.changes})
        shown = ", ".join(files[:5]) + (f" and {len(files) - 5} more" if len(files) > 5 else "")
        text = message.strip() or f"Reviewer's edits to {shown}"
        trailers = {
            "Delegate-Task": task.id,
            "Delegate-Edit": "human",
            "Delegate-Journal": context.journal.head,
        }
        head = workspace.commit(worktree, text, trailers, identity=identity, staged=staged)
        author = f"{identity['GIT_AUTHOR_NAME']} <{identity['GIT_AUTHOR_EMAIL']}>"
        at = datetime.now(UTC).isoformat(timespec="seconds")
        edit = {"commit": head, "files": files, "message": text, "author": author, "at": at}
        self._record(task, "human_edit", edit)
        return head

    def diff_base(self, task: Task) -> str:
        """Where the task's own change starts: the base tip it was merged onto, or where
        its head meets its base branch now (the base it started from, if neither is
        known)."""
        context = self._context(task)
        if task.merged_commit is not None:
            return task.merged_onto or task.base_commit
        # The worktree's HEAD is the task's last commit: only the harness commits there.
        return context.workspace.change_start(task.base_commit, task.base_branch, task.head_commit)

    def approve(self, task: Task, strategy: str = "merge", force: bool = False) -> str:
        """Merge a task in review into its base branch. An unproven one (`Task.proven`) is
        refused with NotProven unless `force`; then the journal records the override."""
        return str(self._decide(task, "approve", {"strategy": strategy, "force": bool(force)}))

    def _refuse_second_attempt(self, task: Task) -> None:
        """One attempt of a group is kept: refused when another one was merged already
        (its archiving of the others, a second step, may not have reached this one)."""
        group = task.group or {}
        if group.get("kind") != "attempts":
            return
        from .best_of import group_of

        for other in group_of(task).refresh().tasks:
            if other.id != task.id and other.state == S.MERGED:
                raise ReviewError(
                    f"Attempt {group.get('index')} ({task.id}) was not merged: attempt "
                    f"{(other.group or {}).get('index')} ({other.id}) was already kept, into "
                    f"{other.base_branch} as {(other.merged_commit or '')[:10]}. Reject this "
                    f"one (`jupyter delegate reject {task.id}`)."
                )

    def _approve(self, task: Task, context: Context, strategy: str, force: bool) -> str:
        workspace = context.workspace
        if task.state == S.MERGED:
            raise ReviewError(
                f"Task {task.id} is already merged into {task.base_branch} as "
                f"{(task.merged_commit or '')[:10]}; there is nothing more to approve."
            )
        self._require(task, S.REVIEW, "approved")
        self._refuse_second_attempt(task)
        if task.base_branch is None:
            raise ReviewError(
                f"Task {task.id} started from a detached commit, so there is no branch to "
                f"merge into. Merge its branch {task.branch} by hand."
            )
        if not task.proven and not force:  # why it is not proven comes first
            raise self._not_proven(task, task.unproven_reasons)
        head = task.head_commit or task.base_commit
        start = workspace.change_start(task.base_commit, task.base_branch, task.head_commit)
        if not workspace.changes(start, head):
            raise ReviewError(
                f"Task {task.id} has no changes: its head {head[:10]} does not differ from "
                f"{task.base_branch}, so there is nothing to merge. Nothing was merged; reject "
                f"it (`%delegate reject {task.id}`, `jupyter delegate reject {task.id}`), or "
                "request changes so the agent does the work."
            )
        assert task.worktree is not None
        if workspace.bring_base_in(task.worktree, task.base_branch):
            head = _head(task.worktree)
            self._record(task, "commit", {"commit": head, "base_moved": True})
            results = self._run_sync(self.rounds.run_checks(task, context, head))
            failing = [r.command for r in results if not r.passed]
            if failing:
                self._record(task, "flag", {"text": "checks fail after bringing in the base"})
                if not force:
                    raise self._not_proven(
                        task,
                        task.unproven_reasons,
                        f"{task.base_branch} had moved; after merging it into the task, these "
                        f"checks fail: {', '.join(failing)}.",
                    )
        reasons = task.unproven_reasons
        forced = bool(reasons)  # only with force: an unproven task was refused above
        message = f"delegate: {task.title}\n\n{task.summary}\n\n"
        if forced:
            message += "Merged without proof (forced): " + "; ".join(reasons) + ".\n\n"
        merged = workspace.integrate(
            task.worktree,
            task.base_branch,
            strategy,
            message + f"Delegate-Task: {task.id}\nDelegate-Journal: {context.journal.head}\n",
        )
        event: dict[str, Any] = {
            "commit": merged.commit,
            "onto": merged.onto,
            "strategy": strategy,
            "forced": forced,
        }
        if forced:
            event["reasons"] = reasons
        self._record(task, "merged", event)
        how = f"{strategy}, forced" if forced else strategy
        self._set_state(task, S.MERGED, f"approved ({how})")
        workspace.finish_merged(task.branch, task.worktree)
        return merged.commit

    def _not_proven(self, task: Task, reasons: list[str], before: str = "") -> NotProven:
        why = "; ".join(reasons)
        return NotProven(
            f"{before + ' ' if before else ''}Task {task.id} is not proven: {why}. Nothing was "
            "merged; the task stays in review. Request changes so the agent fixes it, or "
            f"reject it; to merge it anyway, approve it with force: `approve(force=True)`, "
            f"`jupyter delegate approve {task.id} --force`, `%delegate approve {task.id} --force`."
        )

    def reject(self, task: Task, reason: str | None = None) -> None:
        self._decide(task, "reject", {"reason": reason})

    def _reject(self, task: Task, context: Context, reason: str | None = None) -> None:
        if task.state not in (S.REVIEW, S.INTERRUPTED, S.PAUSED, S.FAILED):
            self._require(task, S.REVIEW, "rejected")
        ref = self._archive(task, context)
        self._record(task, "rejected", {"archive_ref": ref, "reason": reason or ""})
        self._set_state(task, S.REJECTED, reason or "rejected by the reviewer")

    def _archive(self, task: Task, context: Context) -> str:
        """Keep the task's branch under refs/delegate/archive/<id>, and remove its
        worktree; "" when it has neither (it failed before its worktree was made)."""
        workspace = context.workspace
        if task.worktree is None or not (
            task.worktree.exists() or workspace.has_branch(task.branch)
        ):
            return ""
        return workspace.archive(task.id, task.branch, task.worktree)

    def request_changes(
        self,
        task: Task,
        feedback: str = "",
        remember: str | None = None,
        comments: Sequence[LineComment | Mapping[str, Any]] = (),
    ) -> None:
        if not isinstance(feedback, str):
            raise ReviewError(f"request_changes() takes the feedback as a text, not {feedback!r}.")
        checked = comments_of(comments)
        if not feedback.strip() and not checked:
            raise ReviewError(
                "Say what should change: request_changes('...') needs feedback or line "
                "comments (comments=[LineComment('calc.py', 2, 'why subtract?')])."
            )
        if remember not in (None, "repo", "user"):
            raise ReviewError(f"remember= takes 'repo' or 'user' (or None), not {remember!r}.")
        if remember is not None and not feedback.strip():
            raise ReviewError("remember= keeps the feedback as a preference: give feedback.")
        args = {"feedback": feedback, "remember": remember}
        self._decide(task, "request_changes", {**args, "comments": [c.to_dict() for c in checked]})

    def _request_changes(
        self,
        task: Task,
        context: Context,
        feedback: str,
        remember: str | None = None,
        comments: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        self._require(task, S.REVIEW, "sent back for changes")
        worktree = self._worktree_of(task, "request changes")
        workspace = context.workspace
        # Edits the reviewer left uncommitted are theirs (the agent's work is all
        # committed): the diff they reviewed shows them, and they are committed as theirs
        # below, not left for the agent's round to commit as its own.
        staged = workspace.stage(worktree)
        reviewed = staged.tree if staged.changes else (task.head_commit or task.base_commit)
        round_base = task.review_rounds()[-1].base
        quoted = []
        for comment in comments_of(comments):  # each line read before anything is written
            commit = reviewed if comment.side == "new" else round_base
            text = workspace.file_at(worktree, commit, comment.path)
            quoted.append((comment, quote(comment, text, commit)))
        if remember is not None:  # first: a preference it cannot keep changes nothing
            state_dir = context.workspace.state_dir if remember == "repo" else None
            preference = add_preference(feedback, state_dir)
        if staged.changes:
            reviewed = self._commit_human_edit(task, context, worktree, staged, "")
        number = task.review_round
        edits = [e for e in task.human_edits if e.get("round") == number]
        edits_diff = ""
        if edits:
            first = str(edits[0]["commit"])
            edits_diff = workspace.commit_diff(worktree, f"{first}^", reviewed)
        text = feedback_text(feedback, quoted, edits, edits_diff)
        if remember is not None:
            self._record(task, "preference", preference.to_dict())
        requested: dict[str, Any] = {
            "feedback": feedback.strip(),
            "comments": [comment.to_dict() for comment, _ in quoted],
            "reviewed": reviewed,
        }
        if edits:
            requested["human_edits"] = [e["commit"] for e in edits]
        self._record(task, "changes_requested", requested)
        written = self._record(task, "user", {"content": [{"type": "text", "text": text}]})
        task.emit("feedback", {"text": feedback.strip()}, written.typed)  # views: a new round
        self._set_state(task, S.RUNNING, "changes requested")
        self._start(task, context, "changes requested")

    def resume(self, task: Task) -> None:
        """Run the task again in this process (taking its lock: a task another process
        runs cannot be resumed here)."""
        context = self._context(task)
        self._settle_round(task, context)
        if context.lock_fd is None:
            fd = _try_lock(context.workspace.task_dir(task.id))
            if fd is None:
                self._refresh(task, context)
                raise ReviewError(
                    f"Task {task.id} is {task.state} and being worked on by another process; "
                    "only a task no process runs can be resumed."
                )
            with self._holding(context, fd):
                self._resume(task, context)
        else:
            self._resume(task, context)

    def _resume(self, task: Task, context: Context) -> None:
        self._refresh(task, context)
        if task.state == S.FAILED and not task.transient:
            raise ReviewError(
                f"Task {task.id} failed for a cause that trying again will not fix "
                f"({task.error}), so it cannot resume. Reject it (`jupyter delegate reject "
                f"{task.id}`: its work is archived under refs/delegate/archive/{task.id}) "
                "and delegate again."
            )
        if task.handed_off:
            raise ReviewError(
                f"Task {task.id} was handed off to {task.handed_off}, so it continues where "
                "that bundle is received (`jupyter delegate resume --from FILE`), not here. "
                f"Reject it here (`jupyter delegate reject {task.id}`) if it is not wanted."
            )
        if task.state not in (S.INTERRUPTED, S.PAUSED, S.FAILED):
            raise ReviewError(
                f"Task {task.id} is {task.state}; only a task interrupted, paused, or failed "
                "for a transient cause can be resumed."
            )
        if task.worktree is None or not task.worktree.exists():
            raise ReviewError(
                f"Task {task.id}'s worktree {task.worktree} is gone, so it cannot resume. "
                "Reject it (its branch is archived) and delegate again."
            )
        why = "resumed after a transient failure" if task.state == S.FAILED else "resumed"
        self._set_state(task, S.RUNNING, why)
        self._start(task, context, "resumed")

    def handoff(self, task: Task, path: str | os.PathLike[str]) -> Path:
        """Write the task to a bundle file for another clone (see `Task.handoff`)."""
        from .handoff import handoff

        return handoff(self, task, path)

    def receive(
        self,
        path: str | os.PathLike[str],
        repo: str | os.PathLike[str] = ".",
        review_only: bool = False,
    ) -> Task:
        """Receive a task handed off elsewhere (a bundle file `Task.handoff` wrote) into
        `repo`, after verifying its journal and branch, and continue it here; with
        `review_only`, just restore it (handoff.py)."""
        from .handoff import receive

        return receive(self, path, repo, review_only)

    def cancel(self, task: Task) -> None:
        """Stop the task for good, its work archived (see `reject`)."""
        self._decide(task, "cancel", {})

    def _round_of(self, context: Context) -> asyncio.Task[None] | None:
        """The round running the task here; one handed over but not begun yet (closing
        left requests) is waited for, so a cancel or pause is not lost in between."""
        deadline = time.monotonic() + 10
        while context.running is None and context.handed_over and time.monotonic() < deadline:
            if context.idle.wait(0.01):
                break
        return context.running

    def _cancel(self, task: Task, context: Context) -> None:
        running = self._round_of(context)
        if running is not None:
            self._engine().call_soon_threadsafe(running.cancel)
            return
        if task.state in (S.INTERRUPTED, S.PAUSED, S.QUEUED):
            self._cancelled(task, context)
            return
        self._require(task, S.RUNNING, "cancelled")

    def pause(self, task: Task) -> None:
        """Stop the running task at the next step boundary, its worktree and journal kept:
        `resume` continues it, in this process or another. The agent's tool calls that run
        finish first (a command up to its timeout), their results journaled, and the task
        stops before the next model turn; a model turn in flight, or a permission question
        waiting, is stopped at once (nothing of it ran: the turn is asked again at resume).
        Returns once the pause is ordered; `wait` tells when it is paused."""
        self._decide(task, "pause", {})

    def _pause(self, task: Task, context: Context) -> None:
        running = self._round_of(context)
        if running is None or not task.state.active:
            self._require(task, S.RUNNING, "paused")
            raise ReviewError(f"Task {task.id} is not running in any process; nothing to pause.")
        context.pausing = True
        if not context.tool_running:  # else the round stops itself at the step's end
            self._engine().call_soon_threadsafe(running.cancel)

    def _require(self, task: Task, state: TaskState, verb: str) -> None:
        if task.state != state:
            raise ReviewError(
                f"Task {task.id} is {task.state}; only a task in {state} can be {verb}."
            )


class _Host:
    """What a round writes through (rounds.Host): this manager's journaling."""

    def __init__(self, manager: TaskManager) -> None:
        self._manager = manager

    def record(self, task: Task, type_: str, data: Mapping[str, Any], sync: bool = True) -> Event:
        return self._manager._record(task, type_, data, sync)

    async def record_off(self, task: Task, type_: str, data: Mapping[str, Any]) -> Event:
        return await asyncio.to_thread(self._manager._record, task, type_, data)

    def set_state(
        self, task: Task, new: TaskState, reason: str, error: str = "", transient: bool = False
    ) -> None:
        self._manager._set_state(task, new, reason, error, transient)

    async def set_state_off(self, task: Task, new: TaskState, reason: str) -> None:
        await self._manager._set_state_off(task, new, reason)

    def fail(self, task: Task, error: str, transient: bool = False) -> None:
        self._manager._fail(task, error, transient)

    def cancelled(self, task: Task, context: Context) -> None:
        self._manager._cancelled(task, context)


# The contexts this thread is folding new journal lines of (`TaskManager._refresh`).
_refreshing = threading.local()


def _set(event: threading.Event) -> threading.Event:
    event.set()
    return event


def _name_in_journal(task_dir: Path) -> str | None:
    """The name a task was given, from its journal's first line (its `task` event)."""
    try:
        with (task_dir / "journal.jsonl").open(encoding="utf-8") as handle:
            first = json.loads(handle.readline())
    except (OSError, ValueError):
        return None
    data = first.get("data") if isinstance(first, dict) else None
    return data.get("name") if isinstance(data, dict) else None


def _head(worktree: Path) -> str:
    import git

    return str(git.Repo(worktree).head.commit.hexsha)


def _try_lock(task_dir: Path) -> int | None:
    """An exclusive flock on the task's lock file, or None when another process holds it."""
    task_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(task_dir / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def _held(task_dir: Path) -> bool:
    """Whether some process holds the task's lock."""
    fd = _try_lock(task_dir)
    if fd is None:
        return True
    os.close(fd)
    return False


def _unlock(context: Context) -> None:
    if context.lock_fd is not None:
        os.close(context.lock_fd)
        context.lock_fd = None


_default: TaskManager | None = None
_default_guard = threading.Lock()


def get_manager() -> TaskManager:
    """The process-wide manager that `delegate()`, the magics and the CLI use."""
    global _default
    with _default_guard:
        if _default is None:
            _default = TaskManager()
        return _default


def _granted(
    request: PermissionRequest, allow: bool, remember: bool, rules: Sequence[str]
) -> tuple[str, ...]:
    """The rules an answer grants for the rest of the task: those given (each must match
    the call), else with `remember` those the question showed."""
    if not allow:
        return ()
    for rule in rules:
        if not request.covers(rule):
            raise ReviewError(
                f"The rule {rule} does not match the call it would answer ({request.tool}: "
                f"{describe_input(request.input)}); the question offers "
                f"{', '.join(request.rules) or 'no rule'}."
            )
    if rules:
        return tuple(str(Rule.parse(rule)) for rule in rules)
    if remember and not request.rules:
        raise ReviewError(
            f"This {request.tool} call cannot be allowed for the task by a rule (nothing "
            "names it: a command that does not parse, say); allow it once."
        )
    return request.rules if remember else ()
