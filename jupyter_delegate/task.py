"""A task: one outcome delegated to one agent, its states, and what it has produced.

`TaskState` and its legal transitions, `Usage` (tokens, steps, dollars), `CheckResult`
(a check as the harness ran it), `TaskEvent` (what subscribers hear), and `Task`, the
handle users hold. A task's facts are folded from its journal (`Task.apply`), so the same
code rebuilds a task in a new process (CLI, restored notebook) as the one that ran it.
Running and deciding are the manager's job; `Task` methods forward to it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict, cast

from . import control
from .engine.catalogue import ModelInfo, default_compact_at, from_table, limits_text
from .engine.model import price_guessed
from .environment import Declared
from .errors import IllegalTransition, ReviewError
from .events import (
    FORMAT,
    AssistantTurn,
    ChangesRequested,
    Checks,
    Commit,
    Compacted,
    ContextChanged,
    ContextGathered,
    Control,
    Finish,
    Flag,
    Handoff,
    HumanEdit,
    JournalEvent,
    Merged,
    NotifyFailed,
    Permission,
    PlanProposed,
    PreferenceRemembered,
    RanOn,
    Rejected,
    StateChanged,
    TaskCreated,
    ToolResult,
    UnknownEvent,
    UserTurn,
    parse,
)
from .outcome import Outcome
from .policy import PermissionRequest, Policy
from .review import LineComment, ReviewRound

if TYPE_CHECKING:
    from .manager import TaskManager


class TaskState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    REVIEW = "review"
    MERGED = "merged"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    PAUSED = "paused"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL

    @property
    def active(self) -> bool:
        """The engine is (or should be) working on it."""
        return self in (TaskState.QUEUED, TaskState.RUNNING, TaskState.WAITING)


S = TaskState
TERMINAL = frozenset({S.MERGED, S.REJECTED, S.FAILED, S.CANCELLED})
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    S.QUEUED: frozenset({S.RUNNING, S.CANCELLED, S.FAILED, S.INTERRUPTED}),
    S.RUNNING: frozenset({S.WAITING, S.REVIEW, S.FAILED, S.CANCELLED, S.INTERRUPTED, S.PAUSED}),
    S.WAITING: frozenset({S.RUNNING, S.FAILED, S.CANCELLED, S.INTERRUPTED, S.PAUSED}),
    S.REVIEW: frozenset({S.RUNNING, S.MERGED, S.REJECTED}),
    S.INTERRUPTED: frozenset({S.RUNNING, S.CANCELLED, S.REJECTED}),
    S.PAUSED: frozenset({S.RUNNING, S.CANCELLED, S.REJECTED}),
    # A failed task can be rejected (its work archived); it runs again only when its cause
    # was transient (see `check_transition`).
    S.FAILED: frozenset({S.RUNNING, S.REJECTED}),
    S.MERGED: frozenset(),
    S.REJECTED: frozenset(),
    S.CANCELLED: frozenset(),
}


def check_transition(
    task_id: str, old: TaskState, new: TaskState, *, transient: bool = False
) -> None:
    """Raise IllegalTransition unless `old -> new` is legal. `transient`: the task failed
    for a cause that can pass (a dropped connection, an overloaded API), the one case in
    which `failed -> running` is legal."""
    if old == S.FAILED and new == S.RUNNING and not transient:
        raise IllegalTransition(
            f"Task {task_id} failed for a cause that trying again will not fix, so it cannot "
            "run again. Reject it (its work is archived) and delegate again."
        )
    if new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(TRANSITIONS[old])) or "nothing (it is finished)"
        raise IllegalTransition(
            f"Task {task_id} is {old}; it cannot become {new}. From {old} it can become: {allowed}."
        )


@dataclass
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    steps: int = 0
    cost_usd: float = 0.0

    def add(self, other: Mapping[str, Any]) -> None:
        for key in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            setattr(self, key, getattr(self, key) + int(other.get(key, 0)))
        self.steps += 1
        self.cost_usd = round(self.cost_usd + float(other.get("cost_usd", 0.0)), 6)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class CheckResult:
    """A check as the harness ran it. `output_tail`: the last 4000 characters of its
    output, redacted; `log`: the file holding its whole output, in the task's folder (""
    in journals older than logs; check_output.whole_output reads either); `hint`: an
    environment problem its output shows, named with the fix; `timeout_s`: how long it
    was allowed."""

    command: str
    exit_code: int
    passed: bool
    duration_s: float
    output_tail: str
    log: str = ""
    hint: str = ""
    timeout_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TaskEvent:
    """What a subscriber hears. `kind` is one of: state, text, tool_call, tool_result,
    tool_output (the last lines of a command still running, throttled; never journaled),
    usage, checks, review, notice, permission, context (what the agent was told beyond
    the outcome). `journal`: the journal event this one tells of, when there is one (the
    state, tool_result, checks, context and permission kinds; usage with the model turn;
    notice with context_changed); text deltas, tool calls as they start, notices and the
    review have none. Delivered on the engine thread: keep callbacks short. For a round
    that runs in another process (a Dask worker), the process following its journal tells
    the same kinds from the lines as they arrive (`Retelling`, on a thread of its own): the
    words whole per block, not in deltas, and no tool_output."""

    task_id: str
    kind: str
    data: Mapping[str, Any]
    journal: JournalEvent | None = None


def changed_notice(changes: Sequence[str]) -> str:
    """The notice a `context_changed` line tells (`notice` kind)."""
    return "; ".join(changes) + " (the task keeps the version it started with)"


def told(type_: str, data: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """The live event (kind, data) a journal line is told as when it is told whole: by the
    round as it writes the line (rounds.py) and by `Retelling` for a round run elsewhere.
    None: the line is not told on its own (a policy's own decision, a model turn, whose
    words stream and whose calls are told one at a time, a line of no interest to views)."""
    if type_ in ("state", "tool_result", "checks", "context", "compacted"):
        return type_, data
    if type_ == "context_changed":
        return "notice", {"text": changed_notice(data.get("changes", []))}
    if type_ == "permission" and "request_id" in data:
        if data.get("status") == "asked":
            return "permission", data
        done = "allowed" if data.get("decision") == "allow" else "denied"
        asked = {k: data[k] for k in ("tool_use_id", "tool", "input", "request_id", "reason")}
        said = {"granted": list(data.get("granted", [])), "message": data.get("message", "")}
        return "permission", {**asked, "status": done, "by": data.get("by", "human"), **said}
    return None


def _remember(seen: dict[str, None], key: str, keep: int = 64) -> None:
    """Add `key` to an insertion-ordered set that keeps the last `keep` keys."""
    seen[key] = None
    if len(seen) > keep:
        del seen[next(iter(seen))]


class Retelling:
    """The live events of a round that runs in another process (a Dask worker, say), told
    from its journal lines as they arrive here (`TaskManager._refresh`), as the round would
    have told them here: a model turn's words and reasoning (whole per block, not in
    deltas), its usage, then its tool calls one at a time, each told when the one before
    it has its result (the order `AgentLoop.act` tells them in); the rest as `told`. Not
    told: a running command's output (`tool_output`, never journaled).

    A runner that also streams the round's words here as they come (runner.ProcessRunner)
    passes each through `live`: a message's words are then told once, either streamed or
    whole from its journal line, whichever arrives first."""

    def __init__(self) -> None:
        self._calls: list[Mapping[str, Any]] = []  # the last turn's calls without a result
        self._front_told = False  # the first of them was told
        self._streamed: dict[str, None] = {}  # messages whose words were streamed here
        self._told_whole: dict[str, None] = {}  # messages whose words were told whole

    def live(self, kind: str, data: Mapping[str, Any]) -> bool:
        """Whether a streamed event (words, reasoning, a command's output) is to be told:
        not when its message's words were told whole already."""
        message = data.get("message")
        if kind not in ("text", "thinking") or not message:
            return True
        if message in self._told_whole:
            return False
        _remember(self._streamed, message)
        return True

    def events(
        self, type_: str, data: Mapping[str, Any], typed: JournalEvent | None, seq: int
    ) -> list[tuple[str, Mapping[str, Any], JournalEvent | None]]:
        out: list[tuple[str, Mapping[str, Any], JournalEvent | None]] = []
        if type_ == "assistant":
            content = [b for b in data.get("content", []) if isinstance(b, Mapping)]
            message = str(data.get("message_id") or "")
            streamed = message in self._streamed
            if message and not streamed:
                _remember(self._told_whole, message)
            for index, block in enumerate([] if streamed else content):
                if block.get("type") == "text" and block.get("text"):
                    said = {"delta": block["text"], "message": f"journal-{seq}", "block": index}
                    out.append(("text", said, None))
                elif block.get("type") == "thinking" and block.get("thinking"):
                    out.append(("thinking", {"delta": block["thinking"]}, None))
            out.append(("usage", data.get("usage", {}), typed))
            calls = [b for b in content if b.get("type") == "tool_use"]
            goes_on = bool(data.get("continues"))  # a paused turn going on
            self._calls = [*self._calls, *calls] if goes_on else calls
            self._front_told = self._front_told and goes_on
            return out + self._next_call()
        if type_ == "tool_result":
            if self._calls and self._calls[0].get("id") == data.get("tool_use_id"):
                self._calls.pop(0)
                self._front_told = False
            out.append(("tool_result", data, typed))
            return out + self._next_call()
        if (kind := told(type_, data)) is not None:
            out.append((*kind, typed))
        return out

    def _next_call(self) -> list[tuple[str, Mapping[str, Any], JournalEvent | None]]:
        if not self._calls or self._front_told:
            return []
        call, self._front_told = self._calls[0], True
        said = {"id": call.get("id"), "name": call.get("name"), "input": call.get("input", {})}
        return [("tool_call", said, None)]


# -- the task record (`Task.to_record`): typed, its JSON schema checked (notebook/record.py) --
TaskStateName = Literal[
    "queued",
    "running",
    "waiting",
    "review",
    "merged",
    "rejected",
    "failed",
    "cancelled",
    "interrupted",
    "paused",
]


# What a task in review amounts to (`Task.verdict`): the face of `proven`.
Verdict = Literal["proven", "checks fail", "stopped by budget", "no checks", "no changes"]


class BudgetRecord(TypedDict):
    max_steps: int
    max_usd: float
    max_minutes: float
    command_timeout_s: float
    check_timeout_s: float


class OutcomeRecord(TypedDict):
    goal: str
    checks: list[str]
    scope: list[str]
    constraints: list[str]
    budget: BudgetRecord


class UsageRecord(TypedDict):
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    steps: int
    cost_usd: float


class CheckResultRecord(TypedDict):
    command: str
    exit_code: int
    passed: bool
    duration_s: float
    output_tail: str
    log: str
    hint: str
    timeout_s: float


class RecordFields(TypedDict):
    """What the task record and the notebook record (notebook/record.py) both hold."""

    id: str
    title: str
    name: str | None
    outcome: OutcomeRecord
    state: TaskStateName
    repo: str
    branch: str
    base_branch: str | None
    base_commit: str
    head_commit: str | None
    merged_commit: str | None
    model: str
    served_models: list[str]
    price_guessed: bool  # the cost rests on a price guessed from the model family
    sandbox: str
    summary: str
    proven: bool
    verdict: Verdict | None  # None unless the task is in review
    usage: UsageRecord
    flags: list[str]
    error: str
    transient: bool
    forced: bool
    forced_reasons: list[str]
    journal_head: str
    created: str
    check_commands: list[str]
    skills_used: list[str]
    preferences: list[str]  # their texts
    decisions: list[str]  # who decided what: "approved by alice via the Jupyter server"


class TaskRecord(RecordFields):
    """`Task.to_record()`: what `list --json` prints, and what the notebook record is cut
    from."""

    checks: list[CheckResultRecord]
    # The plan ({"kind": "plan", "id", "name"}) or attempt group ({"kind": "attempts",
    # "id", "index", "of"}) the task is part of.
    group: dict[str, Any] | None
    workers: list[str]  # the Dask workers its rounds ran on, in order (none: this process)
    resources: dict[str, Any]  # what it declares it needs (resources.py)


Subscriber = Callable[[TaskEvent], None]
# What a thread blocked in `wait` (or `TaskManager.answer`) can be waiting for: the state
# and the pending permission questions. Waking it for every text delta and tool result
# made it take the GIL from the engine several times a step.
WAKES = frozenset({"state", "permission"})
CUT_FLAG = "output cut at the model's limit "
# A decision as the review names it (`Task.decisions`).
DECIDED = {
    "approve": "approved",
    "reject": "rejected",
    "request_changes": "sent back for changes",
    "commit_edits": "edits committed",
    "cancel": "cancelled",
    "pause": "paused",
}


@dataclass
class Task:
    """A delegated outcome. Obtain one from `delegate()`, `tasks()` or `get_task()`."""

    id: str
    outcome: Outcome
    repo: Path
    name: str | None = None
    branch: str = ""
    base_branch: str | None = None
    base_commit: str = ""
    head_commit: str | None = None
    worktree: Path | None = None
    model: str = ""
    # What the model can do (from the catalogue or the built-in table), the effort asked
    # of it (None: the model's default), and the input tokens at which the conversation is
    # compacted: from the task event (the table and the default for older journals).
    model_info: ModelInfo | None = None
    effort: str | None = None
    compact_at: int | None = None
    state: TaskState = TaskState.QUEUED
    summary: str = ""
    checks: list[CheckResult] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    served_models: list[str] = field(default_factory=list)
    sandbox: str = ""
    flags: list[str] = field(default_factory=list)
    error: str = ""
    # The error's cause can pass (connection, rate limit, overload): `resume` continues it.
    transient: bool = False
    # What the budget stopped the last round by ("the step budget (60 steps)"), if any.
    stopped_by: str | None = None
    merged_commit: str | None = None
    archive_ref: str | None = None  # where a reject kept the work
    # The base branch's tip the task was merged onto: the task's own change is from there.
    merged_onto: str | None = None
    # Merged without proof, by an explicit override, and why it was unproven.
    forced: bool = False
    forced_reasons: list[str] = field(default_factory=list)
    journal_head: str = ""
    created: str = ""
    policy: Policy = field(default_factory=Policy)
    # What the user declared for the commands' environment ([environment], --env), and
    # what the last checks ran with (environment.Environment.to_dict).
    environment: Declared = field(default_factory=Declared)
    check_environment: dict[str, Any] = field(default_factory=dict)
    # From the context event (context/): what the agent was told beyond the outcome.
    system_prompt: str = ""
    suggested_checks: tuple[str, ...] = ()
    use_suggested_checks: bool = True
    skills: list[dict[str, Any]] = field(default_factory=list)
    skills_not_loaded: list[dict[str, Any]] = field(default_factory=list)
    skills_used: list[str] = field(default_factory=list)
    # The outcome of each control request (control.py) the journal settled, by its id.
    control_outcomes: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    # Who decided what, in the review's words ("approved by alice via the Jupyter
    # server"): from the control events and the answers' `from` (control.who).
    decisions: list[str] = field(default_factory=list)
    _requested_by: dict[str, Mapping[str, Any]] = field(default_factory=dict, repr=False)
    # How often the conversation was compacted, and tool calls cut at the output limit.
    compactions: int = 0
    cuts: int = 0
    preferences: list[dict[str, str]] = field(default_factory=list)
    agents_md: list[str] = field(default_factory=list)
    # The reviewer's own commits on the task's branch (`commit_edits`): {"commit", "files",
    # "message", "at", "round"} each, from the journal's human_edit events.
    human_edits: list[dict[str, Any]] = field(default_factory=list)
    # Where the task was handed off to (the bundle file; `handoff`), while it is not
    # received back: a task handed off continues where its bundle is received.
    handed_off: str = ""
    # The workers its rounds ran on, in order (`runner` events: a Dask worker's address).
    workers: list[str] = field(default_factory=list)
    # What it declares it needs ({"cpus": N, "memory": BYTES}; resources.py), journaled.
    resources: dict[str, Any] = field(default_factory=dict)
    # The plan or attempt group the task is part of ({"kind": "plan", "id", "name"} or
    # {"kind": "attempts", "id", "index", "of"}), None for a task of its own.
    group: dict[str, Any] | None = None
    # A planner task's proposal (the `propose_plan` input the harness accepted; planning.py).
    proposed_plan: dict[str, Any] | None = None
    # The permission questions asked and not yet decided, by request id (what the notebook
    # record and the notifications show of a waiting task).
    asked: dict[str, PermissionRequest] = field(default_factory=dict, repr=False)
    # The rounds of review so far (`review_rounds`), folded from the journal.
    _rounds: list[ReviewRound] = field(default_factory=list, repr=False)
    _manager: TaskManager | None = field(default=None, repr=False, compare=False)
    _subscribers: list[Subscriber] = field(default_factory=list, repr=False, compare=False)
    _changed: threading.Condition = field(
        default_factory=threading.Condition, repr=False, compare=False
    )

    @property
    def planning(self) -> bool:
        """The task is a plan's planner (planning.py): it proposes a plan, it changes nothing."""
        return bool(self.group and self.group.get("role") == "planner")

    # -- what users do -------------------------------------------------------------
    def diff(self, since: str | None = None) -> str:
        """The task's own change, new files included, binary files named: from where it
        meets its base branch (`git diff BASE...TASK`), so commits made to the base since
        the task started are not shown as the task's. `since`: a commit (a round's `base`,
        say): the change from there to the task's head instead ("changes since the last
        review")."""
        return self._mgr().diff(self, since)

    def review_rounds(self) -> list[ReviewRound]:
        """The rounds of review, first to current (see `ReviewRound`), from the journal:
        the same in every process, and after a restore."""
        return list(self._rounds)

    def last_review_base(self) -> str:
        """Where "the changes since the last review" start: the head reviewed before the
        current round. ReviewError in the first round (there was no review before)."""
        if len(self._rounds) < 2:
            raise ReviewError(
                f"Task {self.id} is in its first round of review: there is no earlier review "
                "to compare with. Its whole change is its diff without --since-review."
            )
        return self._rounds[-1].base

    @property
    def review_round(self) -> int:
        """The number of the current round of review (1 before any request-changes)."""
        return len(self._rounds) or 1

    @property
    def review_notes(self) -> list[str]:
        """The rounds of review and the reviewer's own edits, a line each, as `show` and
        the notebook record say them; none in a first round without edits."""
        notes = []
        if len(self._rounds) > 1:
            times = len(self._rounds) - 1
            notes.append(
                f"round {len(self._rounds)} of review (changes requested {times} "
                f"time{'s' if times > 1 else ''})"
            )
        for edit in self.human_edits:
            files = ", ".join(edit["files"])
            notes.append(
                f"human edit {str(edit['commit'])[:10]} in round {edit.get('round', 1)}: "
                f"{files} ({edit['message']})"
            )
        return notes

    def worktree_file(self, path: str) -> Path:
        """The absolute path of `path` (repository relative) in the task's worktree, to
        edit it yourself (then `commit_edits`). Paths leading out of the worktree (`..`,
        a symlink out) and into `.git` are refused."""
        return self._mgr().worktree_file(self, path)

    def commit_edits(self, message: str = "") -> str:
        """Commit your own edits in the task's worktree to its branch, as you (your git
        identity), journaled as a human edit; the checks run again and the task stays in
        review with their verdict. Returns the commit. Refused unless the task is in
        review and something changed."""
        return self._mgr().commit_edits(self, message)

    def diff_base(self) -> str:
        """The commit the task's own change is counted from (see `diff`)."""
        return self._mgr().diff_base(self)

    def wait(self, timeout: float | None = None) -> TaskState:
        """Block until the task needs a human (review, waiting) or has ended. Returns the
        state; raises TimeoutError if `timeout` seconds pass first."""
        with self._changed:
            done = self._changed.wait_for(lambda: not self._engine_busy(), timeout)
        if not done:
            raise TimeoutError(f"Task {self.id} is still {self.state} after {timeout} s.")
        return self.state

    def approve(self, strategy: str = "merge", force: bool = False) -> str:
        """Merge the task's branch into its base branch; returns the new base commit.
        Only a proven task is merged (see `proven`); `force=True` merges an unproven one
        anyway, and the journal records that override and why it was needed. Keeping one
        of several attempts (best_of.py) archives the others."""
        merged = self._mgr().approve(self, strategy, force=force)
        if self.group and self.group.get("kind") == "attempts":
            from .best_of import archive_others

            archive_others(self)
        return merged

    def reject(self, reason: str | None = None) -> None:
        """Archive the branch under refs/delegate/archive/<id> and remove the worktree
        (a task in review, interrupted, paused or failed)."""
        self._mgr().reject(self, reason)

    def request_changes(
        self,
        feedback: str = "",
        remember: str | None = None,
        comments: Sequence[LineComment | Mapping[str, Any]] = (),
    ) -> None:
        """Send feedback and line comments (`LineComment`s or their dicts); the same agent
        continues from where it stopped, in the next round of review. It receives the
        feedback, each comment anchored `path:line` with the lines quoted, as in a pull
        request review, and the edits you committed since its last round
        (`commit_edits`). `remember` ("repo" or "user") also keeps the feedback as a
        preference for later tasks."""
        self._mgr().request_changes(self, feedback, remember, comments)

    def cancel(self) -> None:
        """Stop the task for good; its work is archived as by `reject`."""
        self._mgr().cancel(self)

    def pause(self) -> None:
        """Stop the running task where it is; `resume` continues it."""
        self._mgr().pause(self)

    def handoff(self, path: str | Path) -> Path:
        """Write the task to one bundle file (its branch as a git bundle, its journal, its
        record) for another machine or clone of the repository to continue
        (`TaskManager.receive`, `jupyter delegate resume --from FILE`). Only a task no
        process runs (paused, interrupted, in review, failed for a transient cause);
        returns the file written, and the journal records the move."""
        return self._mgr().handoff(self, path)

    def refresh(self) -> Task:
        """Read what other processes did to the task (an approve from the CLI, say): every
        decision does this first, so a stale one is refused, never acted upon."""
        return self._mgr().refresh(self)

    def resume(self) -> None:
        """Continue an interrupted or paused task, or one that failed for a transient cause
        (see `transient`), from its journal, in its intact worktree."""
        self._mgr().resume(self)

    def pending(self) -> list[PermissionRequest]:
        """Tool calls waiting for a human decision (the task is `waiting`)."""
        return self._mgr().pending(self)

    def answer(
        self,
        request_id: str,
        allow: bool,
        remember: bool = False,
        by: str = "human",
        *,
        rule: str | Sequence[str] | None = None,
        reason: str | None = None,
    ) -> None:
        """Allow or deny a waiting tool call. `remember`: also allow, for the rest of the
        task, what the question showed (`PermissionRequest.rules`: the command's prefix,
        `bash(pytest:*)`, or the file); `rule`: grant this rule (or these) instead, each of
        which must match the call. `reason`: words the agent receives with a denial. `by`
        is who decided, as the journal records it ("human"; "headless" for a denial with
        nobody to ask)."""
        self._mgr().answer(self, request_id, allow, remember, by=by, rule=rule, reason=reason)

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call `callback(TaskEvent)` for every event; returns a function that unsubscribes."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback) if callback in self._subscribers else None

    @property
    def journal_path(self) -> Path:
        return self._mgr().journal_path(self)

    @property
    def folder(self) -> Path:
        """The task's folder: its journal, lock, control inbox and check logs."""
        return self.journal_path.parent

    @property
    def checks_passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def proven(self) -> bool:
        """Done is proven: it has checks, the harness ran them and all passed, and no budget
        stopped the agent. Only a proven task is approved without `force=True`."""
        return not self.unproven_reasons

    @property
    def unproven_reasons(self) -> list[str]:
        """Why the task is not proven, in the user's words; empty when it is."""
        reasons = []
        if not self.checks:
            reasons.append("it has no checks, so nothing proves it works")
        reasons += [
            f"check `{c.command}` failed (exit {c.exit_code})" for c in self.checks if not c.passed
        ]
        if self.stopped_by:
            reasons.append(f"{self.stopped_by} stopped the agent before it finished")
        return reasons

    @property
    def verdict(self) -> Verdict | None:
        """What a task in review amounts to, in one phrase shown beside its state: "no
        changes" (nothing to merge), "checks fail", "stopped by budget", "no checks", or
        "proven". None in any other state. "No changes" is read from the journal (no commit
        of its own); `approve` also asks git whether the head differs from its base."""
        if self.state != TaskState.REVIEW:
            return None
        if self.head_commit in (None, self.base_commit):
            return "no changes"
        if not self.checks_passed:
            return "checks fail"
        if self.stopped_by:
            return "stopped by budget"
        if not self.checks:
            return "no checks"
        return "proven"

    @property
    def title(self) -> str:
        return self.outcome.title

    @property
    def price_guessed(self) -> bool:
        """Whether the cost rests on a price guessed from the model family (a model id the
        price table does not name)."""
        return price_guessed(self.served_models or [self.model])

    @property
    def model_text(self) -> str:
        """The model's limits and where they came from, the effort and the compaction point,
        as the review says them."""
        if self.model_info is None:
            return self.model
        return limits_text(self.model_info, self.effort, self.compact_at)

    @property
    def check_commands(self) -> tuple[str, ...]:
        """What the harness runs: the outcome's checks, or, when it has none, those its
        AGENTS.md offered (unless declined)."""
        return self.checks_given(self.suggested_checks)

    def checks_given(self, suggested: tuple[str, ...]) -> tuple[str, ...]:
        """The checks the harness runs if AGENTS.md offers `suggested`."""
        if self.outcome.checks or not self.use_suggested_checks:
            return self.outcome.checks
        return suggested

    # -- plumbing -------------------------------------------------------------------
    def _mgr(self) -> TaskManager:
        if self._manager is None:
            from .manager import get_manager

            self._manager = get_manager()
        return self._manager

    def _engine_busy(self) -> bool:
        return self.state in (TaskState.QUEUED, TaskState.RUNNING)

    def emit(self, kind: str, data: Mapping[str, Any], journal: JournalEvent | None = None) -> None:
        event = TaskEvent(self.id, kind, data, journal)
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:  # a broken view must never stop the engine
                import logging

                logging.getLogger(__name__).exception("task subscriber failed")
        if kind in WAKES:
            with self._changed:
                self._changed.notify_all()

    def apply(self, event: JournalEvent | str, data: Mapping[str, Any] | None = None) -> None:
        """Fold one journal event into the task's facts (events.py says what each holds).
        `apply(type, data)` parses the line's type and data first."""
        if isinstance(event, str):
            event = parse(event, data or {})
        match event:
            case TaskCreated():
                self._apply_task(event)
            case ContextGathered():
                self._apply_context(event)
            case ContextChanged(changes=changes):
                self._flag(
                    "changed while the task ran (it keeps the version it started with): "
                    + "; ".join(changes)
                )
            case PreferenceRemembered(scope=scope, text=text):
                self._flag(f"remembered as a preference ({scope}): {text}")
            case StateChanged(state=state, error=error, transient=transient):
                self._apply_round(event)
                self.state = TaskState(state)
                if error:
                    self.error = error
                self.transient = bool(transient)
            case AssistantTurn(usage=usage, model=served):
                self.usage.add(usage)
                if served and served not in self.served_models:
                    self.served_models.append(served)
                    if served != self.model:
                        self._flag(f"served model {served} differs from requested {self.model}")
            case Finish(summary=summary, stopped_by=stopped_by):
                self.summary = summary
                self.stopped_by = stopped_by or None
                if self.stopped_by:
                    self._flag(f"stopped by {self.stopped_by}")
            case Checks(results=results, environment=environment):
                known = {f.name for f in fields(CheckResult)}
                self.checks = [
                    CheckResult(**{k: v for k, v in c.items() if k in known}) for c in results
                ]
                self.check_environment = dict(environment)
            case Commit(commit=commit):
                self.head_commit = commit
            case ChangesRequested():
                reviewed = event.reviewed or self._reviewed_head()
                comments = tuple(LineComment.from_dict(c) for c in event.comments)
                number = len(self._rounds) + 1
                self._rounds.append(ReviewRound(number, event.feedback, comments, reviewed, None))
            case HumanEdit(commit=commit):
                edit = {"commit": commit, "files": list(event.files), "message": event.message}
                # `round`: the round of review it was made in.
                self.human_edits.append(edit | {"at": event.at, "round": len(self._rounds)})
                self.head_commit = commit
                if self._rounds:
                    self._rounds[-1] = replace(self._rounds[-1], head=commit)
            case Rejected(archive_ref=archive_ref):
                self.archive_ref = archive_ref or None
            case Merged():
                self.merged_commit, self.merged_onto = event.commit, event.onto
                self.forced, self.forced_reasons = bool(event.forced), list(event.reasons)
                if self.forced:
                    self._flag(f"merged without proof (forced): {'; '.join(self.forced_reasons)}")
            case ToolResult(sandbox=sandbox, skill=skill, is_error=is_error):
                if event.extra.get("cut"):
                    self.flags = [f for f in self.flags if not f.startswith(CUT_FLAG)]
                    self.cuts += 1
                    self._flag(f"{CUT_FLAG}{self.cuts} time(s); the cut tool calls were not run")
                if sandbox == "none":
                    self._flag("commands ran unsandboxed")
                if skill and not is_error and skill not in self.skills_used:
                    self.skills_used.append(skill)
            case Permission(request_id=str(request_id), status="asked"):
                self.asked[request_id] = PermissionRequest(
                    request_id,
                    event.tool,
                    event.input or {},
                    event.reason,
                    tuple(event.rules or ()),
                )
            case Permission(decision=str(decision)):
                if event.request_id:
                    self.asked.pop(event.request_id, None)
                verdict = "denied" if decision == "deny" else "allowed"
                source = event.extra.get("from")
                if isinstance(source, Mapping):
                    self.decisions.append(f"{verdict} {event.tool} by {control.who(source)}")
                self._flag(f"{verdict}: {event.tool} ({event.reason}; by {event.by or 'policy'})")
                if event.granted:
                    self.policy = self.policy.granting(event.granted)
                elif event.remember and event.rule and event.granted is None:
                    self.policy = self.policy.remembering(event.rule)  # an older journal
            case Flag(text=text):
                self._flag(text)
            case Handoff(direction=direction, file=file, source=source):
                self.handed_off = file if direction == "out" else ""
                if direction == "in":
                    where = f"{source.get('host', '?')}:{source.get('path', '?')}"
                    self._flag(f"handed off from {where} on {event.at}")
            case RanOn(runner="process"):
                pass  # this machine's worker process (runner.ProcessRunner): not a worker
            case RanOn(worker=worker, host=host, moved_from=moved_from):
                self.workers.append(worker)
                if moved_from:
                    self._flag(
                        f"moved workers: {moved_from} was lost mid-round; the round went on "
                        f"from the journal on {worker} ({host})"
                    )
            case Compacted(by=by, tokens_before=before, tokens_after=after, usage=usage):
                self.compactions += 1
                if usage:  # the harness's summarising turn
                    self.usage.add(usage)
                who = "the API" if by == "server" else "the harness (a summary)"
                self._flag(
                    f"compaction {self.compactions} by {who}: {before:,} -> {after:,} tokens"
                )
            case PlanProposed(plan=plan):
                self.proposed_plan = dict(plan)
            case NotifyFailed(event=what, target=target, error=error):
                self._flag(f"a notification ({what}) did not reach {target}: {error}")
            case Control(request_id=request_id, status="accepted", by=asker):
                self._requested_by[request_id] = asker
            case Control(request_id=request_id, status="done" | "refused", action=action):
                self.control_outcomes[request_id] = event.to_data()
                decider = event.by or self._requested_by.pop(request_id, {})
                if event.status == "done" and decider and action != "answer":  # answers: above
                    verb = DECIDED.get(action, action)
                    self.decisions.append(f"{verb} by {control.who(decider)}")
            case UserTurn() | Permission() | Control() | UnknownEvent():
                pass  # the conversation (journal.replay_messages); questions; requests

    def _apply_task(self, event: TaskCreated) -> None:
        self.outcome = Outcome.from_dict(event.outcome)
        self.branch, self.base_branch = event.branch, event.base_branch
        self.base_commit, self.model = event.base_commit, event.model
        self.worktree = Path(event.worktree)
        self._rounds = [ReviewRound(1, "", (), event.base_commit, None)]
        self.sandbox, self.created = event.sandbox, event.created
        self.policy = Policy.from_dict(event.policy)
        for ignored in self.policy.ignored:
            self._flag(ignored)
        self.name = event.name
        self.use_suggested_checks = event.use_suggested_checks
        self.environment = Declared.from_dict(event.environment)
        info = event.model_info
        self.model_info = ModelInfo.from_dict(info) if info else from_table(event.model)
        self.effort = event.effort
        self.compact_at = (
            default_compact_at(self.model_info) if event.compact_at is None else event.compact_at
        )
        self.group = dict(event.group) if event.group else None
        self.resources = dict(event.resources) if event.resources else {}
        if event.format > FORMAT:
            self._flag(
                f"its journal is of format {event.format}, written by a newer jupyter-delegate "
                f"(this one reads up to {FORMAT}): what is new in it is not shown"
            )

    def _apply_round(self, event: StateChanged) -> None:
        """Rounds of review at state changes: reaching review sets the round's head; a
        task sent back from review without a changes_requested event (a journal from
        before rounds) starts the next round here."""
        if event.state == TaskState.REVIEW and self._rounds:
            head = event.head or self.head_commit
            self._rounds[-1] = replace(self._rounds[-1], head=head)
        elif (
            event.state == TaskState.RUNNING
            and self.state == TaskState.REVIEW
            and self._rounds
            and self._rounds[-1].head is not None
        ):
            number = len(self._rounds) + 1
            self._rounds.append(ReviewRound(number, "", (), self._reviewed_head(), None))

    def _reviewed_head(self) -> str:
        """The head of the round under review (the task's base before any)."""
        last = self._rounds[-1] if self._rounds else None
        return (last.head if last else None) or self.head_commit or self.base_commit

    def _apply_context(self, event: ContextGathered) -> None:
        self.system_prompt = event.system
        self.suggested_checks = tuple(event.suggested_checks)
        self.skills = list(event.skills)
        self.skills_not_loaded = list(event.skills_not_loaded)
        self.preferences = list(event.preferences)
        self.agents_md = [item["path"] for item in event.agents_md]
        for skipped in self.skills_not_loaded:
            self._flag(f"skill {skipped['why']}")
        if self.suggested_checks and not self.outcome.checks:
            listed = ", ".join(f"`{c}`" for c in self.suggested_checks)
            if self.use_suggested_checks:
                self._flag(f"checks offered by AGENTS.md, used as the outcome has none: {listed}")
            else:
                self._flag(f"checks offered by AGENTS.md, declined: {listed}")

    def _flag(self, text: str) -> None:
        if text not in self.flags:
            self.flags.append(text)

    def to_record(self) -> TaskRecord:
        """The task's facts as JSON: printed by `list --json`, the notebook record's base."""
        return {
            "id": self.id,
            "title": self.title,
            "name": self.name,
            "outcome": cast(OutcomeRecord, self.outcome.to_dict()),
            "state": self.state.value,
            "repo": str(self.repo),
            "branch": self.branch,
            "base_branch": self.base_branch,
            "base_commit": self.base_commit,
            "head_commit": self.head_commit,
            "merged_commit": self.merged_commit,
            "model": self.model,
            "served_models": list(self.served_models),
            "price_guessed": self.price_guessed,
            "sandbox": self.sandbox,
            "summary": self.summary,
            "checks": [cast(CheckResultRecord, c.to_dict()) for c in self.checks],
            "proven": self.proven,
            "verdict": self.verdict,
            "usage": cast(UsageRecord, self.usage.to_dict()),
            "flags": list(self.flags),
            "error": self.error,
            "transient": self.transient,
            "forced": self.forced,
            "forced_reasons": list(self.forced_reasons),
            "journal_head": self.journal_head,
            "created": self.created,
            "check_commands": list(self.check_commands),
            "skills_used": list(self.skills_used),
            "preferences": [p["text"] for p in self.preferences],
            "decisions": list(self.decisions),
            "group": dict(self.group) if self.group else None,
            "workers": list(self.workers),
            "resources": dict(self.resources),
        }
