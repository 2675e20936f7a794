"""Journal events, typed: one frozen dataclass per event type, and their union `JournalEvent`.

A journal line is `{seq, ts, type, data, prev, hash}` (journal.py); its `type` names one
class here and its `data` holds that class's fields, by the same names. `parse(type, data)`
reads a line's data into its event and `to_data()` writes it back, exactly:
`parse(t, d).to_data() == d` for every line of every journal (the hash chain is over the
data as written), so a key a newer writer added is kept in `extra`, a key an older one
left out stays out, and a type this version does not know becomes an `UnknownEvent`.
Writers build an event and journal its `to_data()`, or journal the dict directly; the
manager parses what it wrote (`journal.Event.typed`) and folds that into the task
(`Task.apply`, a `match` over this union), and subscribers get the same object
(`TaskEvent.journal`). Each class's docstring says what it records; that is the list of
event types.

The format: the `task` event, the first line, carries `format` (`FORMAT`); a journal whose
first line has none is format 1, from before these types, and loads the same way (its
events lack keys added since, which take their defaults).

Not here: the raw line, the chain and its verification (journal.py); what a task makes of
the events (task.py); events that are never journaled (text deltas, tool calls as they
start, notices: `TaskEvent` kinds). Values inside an event (an outcome, content blocks,
check results, a policy) stay as the JSON they were written as: `parse` checks that an
event's required keys are there, not the types of its values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, cast

from .errors import JournalError

FORMAT = 2  # what this version writes in the task event; absent: 1

# Marks a field written only sometimes: when it holds its default, an event made in code
# leaves it out of its data (one parsed keeps exactly the keys it was read with).
SOMETIMES = {"sometimes": True}


@dataclass(frozen=True)
class _Event:
    TYPE: ClassVar[str] = ""
    # Keys of the data that this version does not know (a newer writer's), kept as read.
    extra: Mapping[str, Any] = field(default_factory=dict, kw_only=True, repr=False)
    # The keys the event was parsed from (None when made in code): `to_data` writes those.
    read_keys: frozenset[str] | None = field(default=None, kw_only=True, repr=False, compare=False)

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> _Event:
        shape = _shape(cls)
        names = shape.names
        known = {k: v for k, v in data.items() if k in names}
        missing = shape.required - known.keys()
        if missing:
            raise JournalError(
                f"A {cls.TYPE!r} journal event lacks {', '.join(sorted(missing))}: it was not "
                "written by jupyter-delegate. Run `jupyter delegate audit verify`."
            )
        extra = {k: v for k, v in data.items() if k not in names}
        return cls(**known, extra=extra, read_keys=frozenset(data))

    def to_data(self) -> dict[str, Any]:
        """The event's data as the journal holds it."""
        data: dict[str, Any] = {}
        read = self.read_keys
        for name, default, sometimes in _shape(type(self)).fields:
            value = getattr(self, name)
            if read is not None:
                keep = name in read or value != default
            else:
                keep = not sometimes or value != default
            if keep:
                data[name] = value
        data.update(self.extra)
        return data


@dataclass(frozen=True)
class TaskCreated(_Event):
    """`task`, the first line: the outcome and where the work happens. `policy` and
    `environment` are what the user declared (policy.Policy, environment.Declared, as
    dicts); `created` is ISO time; `format` is the journal's format (absent: 1).
    `model_info` is what the model can do and where that was learned
    (engine.catalogue.ModelInfo, as a dict); `effort` the effort asked for (None: the
    model's default); `compact_at` the input tokens at which the conversation is
    compacted. Journals from before the catalogue have none of the three."""

    TYPE: ClassVar[str] = "task"
    outcome: dict[str, Any]
    branch: str
    base_commit: str
    model: str
    worktree: str
    base_branch: str | None = None  # None: started from a detached commit
    sandbox: str = ""
    policy: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    use_suggested_checks: bool = True
    environment: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    format: int = field(default=1, metadata=SOMETIMES)
    model_info: dict[str, Any] | None = field(default=None, metadata=SOMETIMES)
    effort: str | None = field(default=None, metadata=SOMETIMES)
    compact_at: int | None = field(default=None, metadata=SOMETIMES)
    # The plan or attempt group the task is part of: {"kind": "plan", "id", "name"} or
    # {"kind": "attempts", "id", "index", "of"} (planning.py, best_of.py).
    group: dict[str, Any] | None = field(default=None, metadata=SOMETIMES)
    # What it declares it needs (resources.py): {"cpus": N, "memory": BYTES}, or absent.
    resources: dict[str, Any] | None = field(default=None, metadata=SOMETIMES)


@dataclass(frozen=True)
class StateChanged(_Event):
    """`state`: the task's new state (task.TaskState's value) and why; `error` when it
    failed, `transient` when that failure's cause can pass (it may resume); `head`, on
    reaching review, the task's head commit reviewed (absent in older journals)."""

    TYPE: ClassVar[str] = "state"
    state: str
    reason: str = ""
    error: str = field(default="", metadata=SOMETIMES)
    transient: bool = field(default=False, metadata=SOMETIMES)
    head: str | None = field(default=None, metadata=SOMETIMES)


@dataclass(frozen=True)
class UserTurn(_Event):
    """`user`: content blocks sent to the model as a user turn (the goal, feedback)."""

    TYPE: ClassVar[str] = "user"
    content: list[dict[str, Any]]


@dataclass(frozen=True)
class AssistantTurn(_Event):
    """`assistant`: a finished model turn as the model sent it (redacted), the model that
    served it, and its usage (engine.model.usage_of). `message_id`: the API's id of the
    message (absent in journals from before it was kept), the key its streamed words
    were told under."""

    TYPE: ClassVar[str] = "assistant"
    content: list[dict[str, Any]]
    model: str = ""
    stop_reason: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    request_id: str | None = None
    message_id: str = field(default="", metadata=SOMETIMES)


@dataclass(frozen=True)
class ToolResult(_Event):
    """`tool_result`: what a tool call returned to the model. A command's also has
    `exit_code`, `sandbox` (the tier it ran in), `timed_out` and `duration_s`; a skill
    read's `skill` (and `file`); a call the policy or a human refused `denied`. `tree`: the
    git tree of the worktree after a call that can change files (snapshots.py; absent in
    journals from before snapshots, and when the snapshot failed)."""

    TYPE: ClassVar[str] = "tool_result"
    tool_use_id: str
    name: str
    content: Any  # a string, or content blocks
    is_error: bool = False
    exit_code: int | None = field(default=None, metadata=SOMETIMES)
    sandbox: str | None = field(default=None, metadata=SOMETIMES)
    timed_out: bool | None = field(default=None, metadata=SOMETIMES)
    duration_s: float | None = field(default=None, metadata=SOMETIMES)
    denied: bool | None = field(default=None, metadata=SOMETIMES)
    skill: str | None = field(default=None, metadata=SOMETIMES)
    file: str | None = field(default=None, metadata=SOMETIMES)
    tree: str | None = field(default=None, metadata=SOMETIMES)


@dataclass(frozen=True)
class Finish(_Event):
    """`finish`: the round of work is over: the agent's summary, and the budget that
    stopped it before it finished, if one did."""

    TYPE: ClassVar[str] = "finish"
    summary: str = ""
    stopped_by: str | None = None


@dataclass(frozen=True)
class Checks(_Event):
    """`checks`: the checks as the harness ran them on `commit` (task.CheckResult dicts),
    and the environment they ran with (environment.Environment.to_dict)."""

    TYPE: ClassVar[str] = "checks"
    results: list[dict[str, Any]]
    commit: str | None = None
    environment: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Commit(_Event):
    """`commit`: the harness committed the agent's work; `base_moved` when it merged the
    moved base branch into the task before an approve."""

    TYPE: ClassVar[str] = "commit"
    commit: str
    base_moved: bool = field(default=False, metadata=SOMETIMES)
    trailers: dict[str, str] | None = field(default=None, metadata=SOMETIMES)  # in early journals


@dataclass(frozen=True)
class Merged(_Event):
    """`merged`: approved and merged onto the base branch, whose tip was `onto`; `forced`
    when it was not proven, and `reasons` why not."""

    TYPE: ClassVar[str] = "merged"
    commit: str
    onto: str | None = None
    strategy: str = "merge"
    forced: bool = False
    reasons: list[str] = field(default_factory=list, metadata=SOMETIMES)


@dataclass(frozen=True)
class Rejected(_Event):
    """`rejected`: the work was archived at `archive_ref` ("" when there was none)."""

    TYPE: ClassVar[str] = "rejected"
    archive_ref: str = ""
    reason: str = ""


@dataclass(frozen=True)
class ChangesRequested(_Event):
    """`changes_requested`: the reviewer sent the task back, starting the next round of
    review: their `feedback`, their line `comments` (review.LineComment dicts, about the
    code of `reviewed`, the head they reviewed), and the reviewer's own edits the agent was
    told of (`human_edits`, their commits). The agent's message follows as a `user`
    event. Journals from before rounds have none (the round starts at the state change)."""

    TYPE: ClassVar[str] = "changes_requested"
    feedback: str = ""
    comments: list[dict[str, Any]] = field(default_factory=list)
    reviewed: str | None = None
    human_edits: list[str] = field(default_factory=list, metadata=SOMETIMES)


@dataclass(frozen=True)
class HumanEdit(_Event):
    """`human_edit`: the reviewer's own edits in the task's worktree, committed by the
    harness to the task's branch as the reviewer (`author`, from their git identity):
    the `commit`, the `files` it changed and its `message`, at `at` (ISO time). The
    checks then run again on it (a `checks` event)."""

    TYPE: ClassVar[str] = "human_edit"
    commit: str
    files: list[str] = field(default_factory=list)
    message: str = ""
    author: str = ""
    at: str = ""


@dataclass(frozen=True)
class Flag(_Event):
    """`flag`: something the reviewer should know (a file not committed, say)."""

    TYPE: ClassVar[str] = "flag"
    text: str


@dataclass(frozen=True)
class ContextGathered(_Event):
    """`context`: what the agent was told beyond the outcome, once per task: the AGENTS.md
    files read, the checks they offer, the skills loaded and not loaded, the preferences,
    and the whole system prompt (every round and a resume use the same)."""

    TYPE: ClassVar[str] = "context"
    agents_md: list[dict[str, Any]] = field(default_factory=list)
    suggested_checks: list[str] = field(default_factory=list)
    skills: list[dict[str, Any]] = field(default_factory=list)
    skills_not_loaded: list[dict[str, Any]] = field(default_factory=list)
    preferences: list[dict[str, str]] = field(default_factory=list)
    system: str = ""


@dataclass(frozen=True)
class ContextChanged(_Event):
    """`context_changed`: files the task read changed on disk while it ran (it keeps the
    version it started with)."""

    TYPE: ClassVar[str] = "context_changed"
    changes: list[str]


@dataclass(frozen=True)
class Permission(_Event):
    """`permission`: a tool call the policy did not simply allow. Asked of a human:
    `request_id`, `reason` and `status` "asked". Decided: `decision` ("allow", "deny"),
    `by` (policy, human, headless, --yes, timeout), and for a human's answer `remember`,
    the `rule` that asked (None when none did), the rules `granted` for the rest of the
    task (policy.rules_for; journals before them granted `rule` itself) and the
    `message` the human gave the agent with the answer. Asked: the `rules` "allow for this
    task" would grant."""

    TYPE: ClassVar[str] = "permission"
    tool_use_id: str
    tool: str
    input: Any
    reason: str = ""
    request_id: str | None = field(default=None, metadata=SOMETIMES)
    status: str | None = field(default=None, metadata=SOMETIMES)
    decision: str | None = field(default=None, metadata=SOMETIMES)
    by: str | None = field(default=None, metadata=SOMETIMES)
    remember: bool | None = field(default=None, metadata=SOMETIMES)
    rule: str | None = field(default=None, metadata=SOMETIMES)
    rules: list[str] | None = field(default=None, metadata=SOMETIMES)
    granted: list[str] | None = field(default=None, metadata=SOMETIMES)
    message: str | None = field(default=None, metadata=SOMETIMES)


@dataclass(frozen=True)
class PreferenceRemembered(_Event):
    """`preference`: feedback kept as a preference for later tasks (context.Preference)."""

    TYPE: ClassVar[str] = "preference"
    id: str
    scope: str
    text: str


@dataclass(frozen=True)
class Control(_Event):
    """`control`: a request another process posted to the task's control inbox, as the
    lock holder took it: `action` ("answer", "approve", "reject", "request_changes",
    "commit_edits", "cancel", "pause") with its `args`, `by` whom (process pid, host, user), and its
    `status` ("accepted", then "done" or "refused") with its `result` or `error`."""

    TYPE: ClassVar[str] = "control"
    request_id: str
    action: str
    args: dict[str, Any] = field(default_factory=dict)
    by: dict[str, Any] = field(default_factory=dict)
    status: str = "posted"
    result: Any = field(default=None, metadata=SOMETIMES)
    error: str | None = field(default=None, metadata=SOMETIMES)


@dataclass(frozen=True)
class Compacted(_Event):
    """`compacted`: the conversation was made shorter to stay in the model's window.
    `by` "server" (the API's compaction: its block is in the assistant turn, and the
    conversation starts there) or "harness" (a summarising turn of the same model:
    `messages` is the whole new conversation, which replay starts from). Tokens of the
    conversation before and after; the summarising turn's `usage` (harness only)."""

    TYPE: ClassVar[str] = "compacted"
    by: str
    tokens_before: int = 0
    tokens_after: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list, metadata=SOMETIMES)
    usage: dict[str, Any] = field(default_factory=dict, metadata=SOMETIMES)


@dataclass(frozen=True)
class Handoff(_Event):
    """`handoff`: the task moved between machines or clones (handoff.py). `direction`
    "out" (a bundle was written: `file`, and the `head` commit it holds) or "in" (a
    bundle was received here); `source` and `target` are {host, path} of the two clones
    (the target of an "out" is the file), `at` ISO time."""

    TYPE: ClassVar[str] = "handoff"
    direction: str
    file: str = ""
    head: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    at: str = ""


@dataclass(frozen=True)
class RanOn(_Event):
    """`runner`: where a round runs, journaled by the process that runs it when it is not
    the one that decided (a Dask worker: cluster.py). `runner` ("dask"), `worker` (its
    address), `host`, `pid`, `folder` (where the round's clone lives there), `at` ISO
    time; `moved_from`: the worker a round was lost on, when this one took it over."""

    TYPE: ClassVar[str] = "runner"
    runner: str
    worker: str = ""
    host: str = ""
    pid: int = 0
    folder: str = ""
    at: str = ""
    moved_from: str = field(default="", metadata=SOMETIMES)


@dataclass(frozen=True)
class NotifyFailed(_Event):
    """`notify_failed`: a notification of the task's `event` ("question", "review",
    "failed", "interrupted") could not be delivered to `target` (a webhook named by its
    host and format, never its URL; or the command) after `attempts`, and the last
    `error` (notify.py)."""

    TYPE: ClassVar[str] = "notify_failed"
    event: str
    target: str
    error: str = ""
    attempts: int = 1


@dataclass(frozen=True)
class PlanProposed(_Event):
    """`plan_proposed`: the plan a planner task proposed (the `propose_plan` tool's input,
    checked by the harness; planning.py)."""

    TYPE: ClassVar[str] = "plan_proposed"
    plan: dict[str, Any]


@dataclass(frozen=True)
class UnknownEvent:
    """A line whose type this version does not know (a newer writer's): kept as read."""

    type: str
    data: dict[str, Any]

    def to_data(self) -> dict[str, Any]:
        return dict(self.data)


JournalEvent = (
    TaskCreated
    | StateChanged
    | UserTurn
    | AssistantTurn
    | ToolResult
    | Finish
    | Checks
    | Commit
    | Merged
    | Rejected
    | ChangesRequested
    | HumanEdit
    | Flag
    | ContextGathered
    | ContextChanged
    | Permission
    | PreferenceRemembered
    | Control
    | Compacted
    | Handoff
    | RanOn
    | NotifyFailed
    | UnknownEvent
)

KNOWN: dict[str, type[_Event]] = {
    cls.TYPE: cls
    for cls in (
        TaskCreated,
        StateChanged,
        UserTurn,
        AssistantTurn,
        ToolResult,
        Finish,
        Checks,
        Commit,
        Merged,
        Rejected,
        ChangesRequested,
        HumanEdit,
        Flag,
        ContextGathered,
        ContextChanged,
        Permission,
        PreferenceRemembered,
        Control,
        Compacted,
        Handoff,
        RanOn,
        NotifyFailed,
        PlanProposed,
    )
}


def parse(type_: str, data: Mapping[str, Any]) -> JournalEvent:
    """The event a journal line of `type_` with `data` records. Raises JournalError when a
    known type lacks a key it always has."""
    cls = KNOWN.get(type_)
    if cls is None:
        return UnknownEvent(type_, dict(data))
    return cast(JournalEvent, cls.from_data(data))


def type_of(event: JournalEvent) -> str:
    """The journal line type of `event`."""
    return event.type if isinstance(event, UnknownEvent) else event.TYPE


# -- per-class facts, computed once --------------------------------------------------------
@dataclass(frozen=True)
class _Shape:
    """What `from_data` and `to_data` need of an event class: its fields (not `extra` and
    `read_keys`) with their defaults and whether they are written only sometimes, their
    names, and those without a default."""

    fields: tuple[tuple[str, Any, bool], ...]
    names: frozenset[str]
    required: frozenset[str]


_shapes: dict[type, _Shape] = {}


def _shape(cls: type) -> _Shape:
    shape = _shapes.get(cls)
    if shape is None:
        found: list[tuple[str, Any, bool]] = []
        for f in dataclasses.fields(cls):
            if f.name in ("extra", "read_keys"):
                continue
            default: Any = f.default
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            found.append((f.name, default, bool(f.metadata.get("sometimes"))))
        required = frozenset(n for n, d, _ in found if d is dataclasses.MISSING)
        shape = _Shape(tuple(found), frozenset(n for n, _, _ in found), required)
        _shapes[cls] = shape
    return shape
