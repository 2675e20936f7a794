"""Replay: what an agent did on a task, step by step, read from the task's journal.

`replay(task)` takes a `Task`, a task's id or name (in `repo`), a journal file or a task
folder, and returns a `Replay`: one `Step` per tool call (a turn with several calls gives
several steps, its words and thinking going with the first; a turn without a call, the
agent's last words, is one step), each with the call's result, the permission decisions
about it, the cost so far, the context size of its turn, the compaction that happened just
before it, notes (a round began, feedback received, checks, the state reached), and the
worktree as of that step: `tree` and `files`, and its diff from the task's base
(`diff_at`, computed when asked and cached). `Replay.to_dict()` is the JSON the front
ends read (the data contract: /work/notes/contract.md), plus `warnings`, and per step
`reconstructed`.

Where the worktree of a step comes from:
- a snapshot: the engine journals the git tree of the worktree after each call that can
  change files (`tool_result.tree`, snapshots.py), kept reachable under
  `refs/delegate/steps/<id>`. Exact, bash steps included.
- otherwise (journals from before snapshots, a tree this repository lacks) it is
  reconstructed from the journal's file tool calls: the last known tree (the base, a
  round's commit, a reviewer's edit) with each `write` and `edit` applied. A command
  (`bash`) can change files the journal does not show, so such steps say so in a note,
  and the last step of a round takes the round's commit instead. Those steps are marked
  `reconstructed`, their `tree` is `reconstructed:<sha1 of the state>`, not a git object,
  and their diff is made here (difflib) for the files the tools wrote.

It reads; it never writes to the journal or the repository. A journal that does not
verify is replayed up to its first bad line, with a warning; a line still being written
(a running task) is left for the next replay. The harness's git runs pinned
(workspace.PINNED_CONFIG), on trees only: no worktree, no attributes of the agent's.

Not here: the front ends (the CLI's step list is `step_line`; the notebook view and the
HTML export are replay_page.py), and the snapshots themselves (snapshots.py).
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import subprocess
import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DelegateError, JournalError, RepoError, TaskNotFound
from .events import (
    AssistantTurn,
    ChangesRequested,
    Checks,
    Commit,
    Compacted,
    Finish,
    Flag,
    Handoff,
    HumanEdit,
    JournalEvent,
    Merged,
    Permission,
    Rejected,
    StateChanged,
    TaskCreated,
    ToolResult,
    parse,
)
from .journal import GENESIS, chain_hash
from .outcome import Outcome
from .task import Task
from .workspace import pinned_argv, pinned_env

if TYPE_CHECKING:
    from .workspace import Workspace

VERSION = 1
RESULT_LIMIT = 4000
CHANGING = frozenset({"write", "edit", "bash"})
RECONSTRUCTED = "reconstructed:"
# A patch as `git diff BASE TREE` prints it (renames found), never a program of the repo's.
_PATCH = ("-r", "-p", "-M", "--no-ext-diff", "--no-textconv", "--ignore-submodules=all")
# States worth a note on the step they follow (running and waiting are the steps).
_NOTED_STATES = ("review", "failed", "paused", "interrupted", "cancelled", "merged", "rejected")


class ReplayError(DelegateError):
    """A replay cannot be made: the message says what was given and what to give."""


# -- the data -----------------------------------------------------------------------------
@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Result:
    text: str
    is_error: bool = False
    exit_code: int | None = None
    denied: bool = False
    sandbox: str | None = None


@dataclass(frozen=True)
class PermissionDecision:
    tool: str
    decision: str  # "allow", "deny", or "pending" while a human has not answered
    rule: str | None
    by: str


@dataclass(frozen=True)
class Compaction:
    by: str
    tokens_before: int
    tokens_after: int


@dataclass
class Step:
    """One tool call (or the last words) and the worktree after it (see the module)."""

    index: int
    round: int
    at: float
    text: str = ""
    thinking: str = ""
    tool: ToolCall | None = None
    result: Result | None = None
    permissions: list[PermissionDecision] = field(default_factory=list)
    cost_usd: float = 0.0
    context_tokens: int = 0
    compaction: Compaction | None = None
    notes: list[str] = field(default_factory=list)
    tree: str | None = None
    files: list[str] = field(default_factory=list)
    reconstructed: bool = False  # the worktree is rebuilt from the file tools' inputs
    # The worktree after it, as the module describes (filled in once every step is read).
    state: _State | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "round": self.round,
            "at": self.at,
            "text": self.text,
            "thinking": self.thinking,
            "tool": None if self.tool is None else vars(self.tool).copy(),
            "result": None if self.result is None else vars(self.result).copy(),
            "permissions": [vars(p).copy() for p in self.permissions],
            "cost_usd": self.cost_usd,
            "context_tokens": self.context_tokens,
            "compaction": None if self.compaction is None else vars(self.compaction).copy(),
            "notes": list(self.notes),
            "tree": self.tree,
            "files": list(self.files),
            "reconstructed": self.reconstructed,
        }


@dataclass(frozen=True)
class _State:
    """The worktree as of a step: a git `tree` (None: unknown) with `overlay`, the files
    the file tools wrote since (path -> text), sorted by path."""

    tree: str | None
    overlay: tuple[tuple[str, str], ...] = ()
    reconstructed: bool = False

    @property
    def key(self) -> str | None:
        if not self.overlay:
            return self.tree
        digest = hashlib.sha1(json.dumps([self.tree, self.overlay]).encode()).hexdigest()
        return RECONSTRUCTED + digest

    def with_file(self, path: str, text: str) -> _State:
        files = dict(self.overlay)
        files[path] = text
        return _State(self.tree, tuple(sorted(files.items())), True)


class Replay:
    """A task's steps (see the module). `len(replay)`, `replay.steps`, `diff_at(i)`,
    `to_dict(diffs=False)`."""

    def __init__(
        self,
        task: dict[str, Any],
        steps: list[Step],
        warnings: list[str],
        git: _Git | None,
        base: str,
        journal: Path,
    ) -> None:
        self.task = task
        self.steps = steps
        self.warnings = warnings
        self.journal = journal
        self._git = git
        self._base = base
        self._diffs: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return f"<Replay of task {self.task['id']}: {len(self.steps)} steps>"

    def diff_at(self, index: int) -> str:
        """The unified diff from the task's base to the worktree after step `index`."""
        if not -len(self.steps) <= index < len(self.steps):
            raise ReplayError(
                f"Task {self.task['id']} has {len(self.steps)} steps: give an index from 0 "
                f"to {len(self.steps) - 1}."
            )
        step = self.steps[index]
        state = step.state
        if state is None or state.key is None:
            return ""
        if state.key not in self._diffs:
            self._diffs[state.key] = self._diff(state)
        return self._diffs[state.key]

    def _diff(self, state: _State) -> str:
        git = self._git
        tree_part = ""
        if git is not None and state.tree is not None:
            excluded = [f":(exclude,literal,top){p}" for p, _ in state.overlay]
            pathspec = ["--", ".", *excluded] if excluded else []
            tree_part = git.text("diff-tree", *_PATCH, self._base, state.tree, *pathspec)
        if not state.overlay:
            return tree_part
        chunks = _split_diff(tree_part)
        for path, text in state.overlay:
            before = git.blob(self._base, path) if git is not None else None
            chunk = _text_diff(path, before, text)
            if chunk:
                chunks[path] = chunk
        return "".join(chunks[p] for p in sorted(chunks))

    def _all_diffs(self) -> None:
        """Every step's diff into the cache: the snapshots' with one git process."""
        missing = {
            s.state.key: s.state
            for s in self.steps
            if s.state is not None and s.state.key is not None and s.state.key not in self._diffs
        }
        plain = [k for k, state in missing.items() if not state.overlay]
        if self._git is not None and plain:
            self._diffs.update(self._git.per_tree(self._base, plain, *_PATCH))
        for key, state in missing.items():
            if key not in self._diffs:
                self._diffs[key] = self._diff(state)

    def to_dict(self, diffs: bool = False) -> dict[str, Any]:
        """The data contract's JSON (see the module); with `diffs`, every step's diff."""
        data: dict[str, Any] = {
            "version": VERSION,
            "task": dict(self.task),
            "steps": [step.to_dict() for step in self.steps],
            "warnings": list(self.warnings),
        }
        if diffs:
            self._all_diffs()
            data["diffs"] = {
                s.tree: self._diffs.get(s.tree, "") for s in self.steps if s.tree is not None
            }
        return data

    def text(self) -> str:
        """The step list, one line per step (`step_line`), after a heading."""
        task = self.task
        head = (
            f"{task['id']}  {task['state']}  {task['goal'].splitlines()[0] if task['goal'] else ''}"
        )
        lines = [
            head,
            f"  {len(self.steps)} steps in {task['rounds']} round(s), "
            f"from base {task['base'][:10]}",
        ]
        lines += [f"  warning: {w}" for w in self.warnings]
        lines += [step_line(step) for step in self.steps]
        return "\n".join(lines) + "\n"


def step_line(step: Step) -> str:
    """One step in a line: index, round, tool and a short input, result, cost so far,
    context size, compaction and notes."""
    from .engine.tools import describe_input

    if step.tool is None:
        what = f"{'(words)':<8}{_one_line(step.text, 48)}"
    else:
        what = f"{step.tool.name:<8}{_one_line(describe_input(step.tool.input), 48)}"
    status = ""
    if step.result is not None:
        result = step.result
        if result.denied:
            status = "denied"
        elif result.exit_code is not None:
            status = f"exit {result.exit_code}"
        else:
            status = "error" if result.is_error else "ok"
    elif step.tool is not None:
        status = "running"
    line = (
        f"{step.index:>4}  r{step.round}  {what:<56}  {status:<8}  ${step.cost_usd:.4f}  "
        f"{step.context_tokens:>7,} tok"
    )
    if step.files:
        line += f"  {len(step.files)} file(s) changed"
    if step.compaction is not None:
        c = step.compaction
        line += f"  [compacted by {c.by}: {c.tokens_before:,} -> {c.tokens_after:,}]"
    for permission in step.permissions:
        line += f"  [{permission.decision} by {permission.by}]"
    if step.reconstructed:
        line += "  (reconstructed)"
    if step.notes:
        line += "  -- " + "; ".join(step.notes)
    return line


def _one_line(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


# -- finding the journal ------------------------------------------------------------------
def replay(
    task: Task | str | os.PathLike[str], repo: str | os.PathLike[str] | None = None
) -> Replay:
    """The replay of `task`: a `Task`, a task's id or name in `repo` (default: the
    repository of the current folder), a journal file (`journal.jsonl`) or a task's folder.
    ReplayError (a DelegateError) when there is nothing to replay."""
    journal, common_dir = _locate(task, repo)
    return _build(journal, common_dir)


def _locate(
    task: Task | str | os.PathLike[str], repo: str | os.PathLike[str] | None
) -> tuple[Path, Path | None]:
    """The journal file and the git dir whose objects its trees are in (None: none known)."""
    from .workspace import Workspace

    if isinstance(task, Task):
        workspace = Workspace(task.repo)
        return workspace.task_dir(task.id) / "journal.jsonl", workspace.common_dir
    given = Path(os.fspath(task)).expanduser()
    text = os.fspath(task)
    if isinstance(task, os.PathLike) or "/" in str(text) or str(text).endswith(".jsonl"):
        path = given / "journal.jsonl" if given.is_dir() else given
        if not path.is_file():
            raise ReplayError(
                f"No journal at {path}: give a task's id or name, its folder, or its journal.jsonl."
            )
        if repo is not None:
            return path, Workspace(repo).common_dir
        return path, _git_dir_of(path)
    try:
        workspace = Workspace(repo if repo is not None else ".")
    except RepoError as exc:
        raise ReplayError(f"Cannot find task {str(task)!r}: {exc}") from None
    return workspace.task_dir(_task_id(workspace, str(task).strip())) / "journal.jsonl", (
        workspace.common_dir
    )


def _task_id(workspace: Workspace, given: str) -> str:
    """A task's id from its id or its name, as the other commands take them."""
    from .manager import _name_in_journal

    ids = workspace.task_ids()
    if given in ids:
        return given
    named = [i for i in ids if _name_in_journal(workspace.task_dir(i)) == given]
    if len(named) == 1:
        return named[0]
    if named:
        raise TaskNotFound(
            f"{len(named)} tasks in {workspace.root} are named {given!r}: {', '.join(named)}. "
            "Pass one of these ids."
        )
    recent = ", ".join(ids[-10:]) or "none yet"
    raise TaskNotFound(
        f"No task {given!r} in {workspace.root}. Known tasks: {recent}. "
        "`jupyter delegate list` shows them."
    )


def _git_dir_of(journal: Path) -> Path | None:
    """The git dir holding a task's journal (`<git dir>/delegate/tasks/<id>/journal.jsonl`)."""
    folder = journal.resolve().parent
    if folder.parent.name == "tasks" and folder.parent.parent.name == "delegate":
        candidate = folder.parent.parent.parent
        if (candidate / "objects").is_dir():
            return candidate
    return None


# -- reading ------------------------------------------------------------------------------
def _verified_events(path: Path, warnings: list[str]) -> list[tuple[float, JournalEvent]]:
    """The journal's events up to its first line that does not verify (a warning says
    which), without a last line still being written."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ReplayError(f"Cannot read the journal {path}: {exc.strerror or exc}.") from None
    lines = data.split(b"\n")
    if lines and lines[-1]:
        lines = lines[:-1]  # being written: the next replay reads it
    events: list[tuple[float, JournalEvent]] = []
    prev = GENESIS
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        problem = ""
        try:
            raw = json.loads(line)
            body = {k: raw[k] for k in ("seq", "ts", "type", "data", "prev")}
            if raw["seq"] != number:
                problem = f"seq {raw['seq']} where {number} belongs"
            elif raw["prev"] != prev:
                problem = "does not link to the line before it"
            elif chain_hash(prev, body) != raw["hash"]:
                problem = "content does not match its hash"
            else:
                event = parse(raw["type"], raw["data"])
        except (ValueError, KeyError, TypeError, JournalError) as exc:
            problem = f"not a journal event ({exc})"
        if problem:
            warnings.append(
                f"{path}: line {number} does not verify ({problem}): replaying the "
                f"{number - 1} line(s) before it. `jupyter delegate audit verify` says more."
            )
            break
        prev = raw["hash"]
        events.append((float(raw["ts"]), event))
    return events


def _build(path: Path, common_dir: Path | None) -> Replay:
    warnings: list[str] = []
    events = _verified_events(path, warnings)
    if not events or not isinstance(events[0][1], TaskCreated):
        raise ReplayError(
            f"{path} holds no task event first: it is not a task's journal"
            + (f" ({warnings[0]})" if warnings else "")
            + ". Give a task's journal.jsonl."
        )
    first = events[0][1]
    assert isinstance(first, TaskCreated)
    # The id is in the branch's name (delegate/<id>-<slug>), wherever the journal was copied.
    named = first.branch.removeprefix("delegate/").split("-", 1)[0]
    task_id = (
        named if first.branch.startswith("delegate/") and named else path.resolve().parent.name
    )
    git = _Git(common_dir) if common_dir is not None else None
    root = common_dir.parent if common_dir is not None and common_dir.name == ".git" else None
    folder = _Folder(task_id, first, git, root)
    for ts, event in events:
        folder.feed(ts, event)
    steps = folder.finish()
    if git is None:
        warnings.append(
            "no repository holds this task's commits here: the diffs are rebuilt from the "
            "file tools' inputs only. Give repo= (--repo) the clone the task ran in."
        )
    elif not folder.base_tree:
        warnings.append(
            f"this repository lacks the task's base commit {first.base_commit[:10]}: the "
            "diffs are rebuilt from the file tools' inputs only. Fetch the base branch."
        )
    task = {
        "id": task_id,
        "name": first.name,
        "goal": str(first.outcome.get("goal", "")),
        "repo": str(root or (common_dir or "")),
        "base": first.base_commit,
        "state": str(folder.task.state),
        "model": first.model,
        "rounds": folder.task.review_round,
    }
    base = folder.base_tree or first.base_commit  # diffs count from the base's tree
    return Replay(task, steps, warnings, git if folder.base_tree else None, base, path)


class _Folder:
    """Folds the journal's events into steps, as they come (see the module)."""

    def __init__(
        self, task_id: str, first: TaskCreated, git: _Git | None, root: Path | None
    ) -> None:
        self.task = Task(id=task_id, outcome=Outcome.from_dict(first.outcome), repo=Path("."))
        self.git = git
        self.steps: list[Step] = []
        self.by_call: dict[str, Step] = {}
        self.turn: list[Step] = []  # the steps of the last assistant turn
        self.pending_notes: list[str] = []
        self.pending_compaction: Compaction | None = None
        self.trees: dict[int, str] = {}  # step index -> the tree its tool_result journaled
        # Step index -> the commits made after it (a round's, a reviewer's edit), in order.
        self.anchors: dict[int, list[str]] = {}
        self.round = 1
        worktree = Path(first.worktree)
        self.prefixes = [str(worktree)]
        if root is not None:
            self.prefixes += [str(root), str(root / ".git" / "delegate" / "worktrees" / task_id)]
        if len(worktree.parents) > 3:
            self.prefixes.append(str(worktree.parents[3]))
        self.base_tree: str | None = None
        self.base_commit = first.base_commit

    # -- events
    def feed(self, ts: float, event: JournalEvent) -> None:
        self.task.apply(event)
        match event:
            case AssistantTurn(content=content, usage=usage):
                self._turn(ts, content, usage)
            case ToolResult(tool_use_id=call_id):
                step = self.by_call.get(call_id)
                if step is not None:
                    step.result = _result(event)
                    step.at = ts
                    if isinstance(event.tree, str) and event.tree:
                        self.trees[step.index] = event.tree
            case Permission(tool_use_id=call_id, decision=decision, status=status):
                step = self.by_call.get(call_id)
                if step is not None:
                    if decision:
                        step.permissions = [p for p in step.permissions if p.decision != "pending"]
                        step.permissions.append(
                            PermissionDecision(
                                event.tool, decision, event.rule, event.by or "policy"
                            )
                        )
                    elif status == "asked":
                        step.permissions.append(PermissionDecision(event.tool, "pending", None, ""))
            case Compacted(by=by, tokens_before=before, tokens_after=after):
                compaction = Compaction(by, before, after)
                if by == "server" and self.turn and self.turn[0].compaction is None:
                    self.turn[0].compaction = compaction  # it opened this turn
                else:
                    self.pending_compaction = compaction
            case ChangesRequested(feedback=feedback, comments=comments):
                said = f": {_one_line(feedback, 120)}" if feedback else ""
                more = f" and {len(comments)} line comment(s)" if comments else ""
                self.pending_notes.append(f"feedback received{said}{more}")
            case Checks(results=results):
                passed = sum(1 for r in results if r.get("passed"))
                verdict = "passed" if passed == len(results) else "failed"
                text = f"checks {verdict}: {passed}/{len(results)}" if results else "no checks"
                self._after(text)
            case Commit(commit=commit):
                self._anchor(commit)
                self._after(f"committed {commit[:10]}")
            case HumanEdit(commit=commit, files=files):
                self._anchor(commit)
                self._after(f"the reviewer's edit {commit[:10]} ({', '.join(files)})")
            case StateChanged(state=state, reason=reason, error=error):
                self._state(state, reason, error)
            case Finish(stopped_by=stopped_by) if stopped_by:
                self._after(f"stopped by {stopped_by}")
            case Flag(text=text) if text.startswith("not committed"):
                self._after(text)
            case Handoff(direction=direction, source=source):
                where = f"{source.get('host', '?')}:{source.get('path', '?')}"
                self._after("handed off" if direction == "out" else f"received from {where}")
            case Merged(commit=commit):
                self._after(f"merged as {commit[:10]}")
            case Rejected(archive_ref=ref):
                self._after(f"rejected; archived at {ref}" if ref else "rejected")

    def _state(self, state: str, reason: str, error: str) -> None:
        if state == "running" and self.task.review_round != self.round:
            self.round = self.task.review_round
            self.pending_notes.insert(0, f"round {self.round} began")
        elif state == "running" and not self.steps and not self.pending_notes:
            self.pending_notes.append("round 1 began")
        if state in _NOTED_STATES:
            self._after(f"{state}: {_one_line(error or reason, 160)}" if error or reason else state)

    def _anchor(self, commit: str) -> None:
        if self.steps:
            self.anchors.setdefault(len(self.steps) - 1, []).append(commit)

    def _after(self, note: str) -> None:
        """A note on the step it follows (before any step: on the first)."""
        if self.steps:
            self.steps[-1].notes.append(note)
        else:
            self.pending_notes.append(note)

    def _turn(
        self, ts: float, content: Sequence[Mapping[str, Any]], usage: Mapping[str, Any]
    ) -> None:
        self.round = self.task.review_round
        words = "\n".join(str(b.get("text", "")) for b in content if b.get("type") == "text")
        thinking = "\n".join(
            str(b.get("thinking", "")) for b in content if b.get("type") == "thinking"
        )
        context = sum(
            int(usage.get(k, 0) or 0)
            for k in ("input_tokens", "cache_read_tokens", "cache_write_tokens")
        )
        calls = [b for b in content if b.get("type") == "tool_use"]
        if not calls and not words.strip() and not thinking.strip():
            self.turn = []
            return
        made: list[Step] = []
        each: list[Mapping[str, Any] | None] = [*calls] if calls else [None]
        for number, call in enumerate(each):
            step = Step(
                index=len(self.steps),
                round=self.round,
                at=ts,
                text=words.strip() if number == 0 else "",
                thinking=thinking.strip() if number == 0 else "",
                cost_usd=self.task.usage.cost_usd,
                context_tokens=context,
            )
            if call is not None:
                tool_input = call.get("input")
                step.tool = ToolCall(
                    str(call.get("id", "")),
                    str(call.get("name", "")),
                    dict(tool_input) if isinstance(tool_input, Mapping) else {"input": tool_input},
                )
                self.by_call[step.tool.id] = step
            if number == 0:
                step.notes, self.pending_notes = self.pending_notes, []
                step.compaction, self.pending_compaction = self.pending_compaction, None
            self.steps.append(step)
            made.append(step)
        self.turn = made

    # -- the worktree of each step
    def finish(self) -> list[Step]:
        for note in self.pending_notes:
            self._after(note)
        self.pending_notes = []
        git = self.git
        known: dict[str, str] = {}  # an object -> its tree, for those this repository has
        if git is not None:
            wanted = [f"{self.base_commit}^{{tree}}"]
            wanted += [f"{c}^{{tree}}" for made in self.anchors.values() for c in made]
            wanted += [f"{t}^{{tree}}" for t in self.trees.values()]
            found = git.trees(wanted)
            known = {w.removesuffix("^{tree}"): t for w, t in found.items() if t}
            self.base_tree = known.get(self.base_commit)
        state = _State(self.base_tree)
        for step in self.steps:
            state = self._advance(state, step, known)
            commits = [known[c] for c in self.anchors.get(step.index, []) if c in known]
            if commits and state.reconstructed:
                state = _State(commits[0])
                step.notes.append("the worktree shown is the round's commit")
            step.state = state
            step.reconstructed = state.reconstructed
            if commits:  # what the next step starts from
                state = _State(commits[-1])
        files = self._files([s.state for s in self.steps if s.state is not None])
        for step in self.steps:
            if step.state is not None:
                step.tree = step.state.key
                step.files = files.get(step.state.key or "", [])
        return self.steps

    def _advance(self, state: _State, step: Step, known: Mapping[str, str]) -> _State:
        """The worktree after `step`, from the one before it."""
        tree = self.trees.get(step.index)
        if tree is not None and tree in known:
            return _State(known[tree])
        tool, result = step.tool, step.result
        ran = (
            tool is not None
            and tool.name in CHANGING
            and result is not None
            and not result.denied
            and "Not run:" not in result.text[:20]
        )
        if not ran:
            return state
        assert tool is not None and result is not None
        if tool.name == "bash":
            if tree is not None:
                step.notes.append(
                    f"its snapshot {tree[:10]} is not in this repository: the files this "
                    "command changed are not shown"
                )
            else:
                step.notes.append("the files this command changed are not shown (no snapshot)")
            return _State(state.tree, state.overlay, True)
        if result.is_error:
            return state
        path = self._relative(str(tool.input.get("file_path", "")))
        if not path:
            return state
        if tool.name == "write":
            return state.with_file(path, str(tool.input.get("content", "")))
        current = dict(state.overlay).get(path)
        if current is None and self.git is not None and state.tree is not None:
            current = self.git.blob(state.tree, path)
        old, new = str(tool.input.get("old_string", "")), str(tool.input.get("new_string", ""))
        if current is None or not old or old not in current:
            step.notes.append(f"this edit of {path} cannot be rebuilt from the journal")
            return _State(state.tree, state.overlay, True)
        count = -1 if tool.input.get("replace_all") else 1
        return state.with_file(path, current.replace(old, new, count))

    def _relative(self, path: str) -> str:
        if not os.path.isabs(path):
            return os.path.normpath(path).removeprefix("./")
        for prefix in self.prefixes:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return os.path.normpath(path[len(prefix) :].lstrip("/"))
        return ""

    def _files(self, states: Iterable[_State]) -> dict[str, list[str]]:
        """The paths that differ from the base in each state, by its key."""
        unique = {s.key: s for s in states if s.key is not None}
        trees = sorted({s.tree for s in unique.values() if s.tree is not None})
        by_tree = self.git.changed(self.base_tree, trees) if self.git and self.base_tree else {}
        found: dict[str, list[str]] = {}
        for key, state in unique.items():
            paths = set(by_tree.get(state.tree or "", []))
            for path, text in state.overlay:
                before = (
                    self.git.blob(self.base_tree, path) if self.git and self.base_tree else None
                )
                if before == text:
                    paths.discard(path)
                else:
                    paths.add(path)
            assert key is not None
            found[key] = sorted(paths)
        return found


def _result(event: ToolResult) -> Result:
    content = event.content
    if isinstance(content, str):
        text = content
    elif isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, Mapping) and block.get("type") == "text":
                parts.append(str(block.get("text", "")))
            elif isinstance(block, Mapping):
                parts.append(f"[{block.get('type', 'block')}]")
        text = "\n".join(parts)
    else:
        text = json.dumps(content)
    return Result(
        _cut(text),
        bool(event.is_error),
        event.exit_code,
        bool(event.denied),
        event.sandbox,
    )


def _cut(text: str, limit: int = RESULT_LIMIT) -> str:
    """`text`, at most `limit` characters, a cut one ending "… N more characters"."""
    if len(text) <= limit:
        return text
    keep = limit - len(f"\n… {len(text)} more characters")
    return text[:keep] + f"\n… {len(text) - keep} more characters"


# -- git, on trees only ---------------------------------------------------------------------
class _Git:
    """The harness's git on one repository's objects (pinned; no worktree)."""

    def __init__(self, git_dir: Path) -> None:
        self.git_dir = git_dir
        self._blobs: dict[tuple[str, str], str | None] = {}
        self._batch: subprocess.Popen[bytes] | None = None

    def _run(self, *args: str, stdin: bytes | None = None) -> bytes:
        argv = pinned_argv(f"--git-dir={self.git_dir}", *args)
        done = subprocess.run(
            argv, input=stdin, capture_output=True, env=pinned_env(), cwd=self.git_dir, check=False
        )
        if done.returncode != 0:
            raise ReplayError(
                f"git {args[0]} failed in {self.git_dir}: "
                f"{done.stderr.decode(errors='replace').strip()}"
            )
        return done.stdout

    def text(self, *args: str) -> str:
        return self._run(*args).decode("utf-8", errors="replace")

    def trees(self, names: Sequence[str]) -> dict[str, str | None]:
        """Each of `names` (`X^{tree}`) -> the tree it names, None when absent here."""
        unique = list(dict.fromkeys(names))
        out = self._run(
            "cat-file", "--batch-check", stdin="".join(f"{n}\n" for n in unique).encode()
        )
        found: dict[str, str | None] = {}
        for name, line in zip(unique, out.decode().splitlines(), strict=False):
            parts = line.split()
            found[name] = parts[0] if len(parts) == 3 and parts[1] == "tree" else None
        return found

    def changed(self, base: str, trees: Sequence[str]) -> dict[str, list[str]]:
        """The paths each tree changes from `base`."""
        listed = self.per_tree(base, trees, "-r", "--name-only", "-z", "--no-renames")
        return {tree: [p for p in text.split("\0") if p] for tree, text in listed.items()}

    def per_tree(self, base: str, trees: Sequence[str], *options: str) -> dict[str, str]:
        """`git diff-tree OPTIONS base tree`'s output for each tree, from one process
        (`--stdin`: each answer follows a line naming its two trees)."""
        if not trees:
            return {}
        headers = [f"{base} {t}\n" for t in trees]
        out = self._run("diff-tree", "--stdin", *options, stdin="".join(headers).encode())
        text = out.decode("utf-8", errors="surrogateescape")
        found: dict[str, str] = {}
        position = 0
        for number, (tree, header) in enumerate(zip(trees, headers, strict=True)):
            if not text.startswith(header, position):
                raise ReplayError(f"git diff-tree answered unexpectedly for tree {tree[:10]}")
            position += len(header)
            following = headers[number + 1] if number + 1 < len(headers) else None
            end = text.find(following, position) if following else len(text)
            end = len(text) if end < 0 else end
            found[tree] = text[position:end]
            position = end
        return found

    def blob(self, tree: str, path: str) -> str | None:
        """The text of `path` in `tree`; None when it has no such file. Read through one
        `git cat-file --batch` process, kept for the replay's life."""
        key = (tree, path)
        if key not in self._blobs:
            self._blobs[key] = self._read(f"{tree}:{path}")
        return self._blobs[key]

    def _read(self, name: str) -> str | None:
        if self._batch is None or self._batch.poll() is not None:
            argv = pinned_argv(f"--git-dir={self.git_dir}", "cat-file", "--batch")
            self._batch = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=pinned_env(),
                cwd=self.git_dir,
            )
            weakref.finalize(self, _close, self._batch)
        batch = self._batch
        assert batch.stdin is not None and batch.stdout is not None
        if "\n" in name:
            return None
        batch.stdin.write(name.encode("utf-8", errors="surrogateescape") + b"\n")
        batch.stdin.flush()
        header = batch.stdout.readline().split()
        if len(header) != 3:
            return None  # "<name> missing"
        data = batch.stdout.read(int(header[2]) + 1)[:-1]
        return data.decode("utf-8", errors="replace") if header[1] == b"blob" else None


def _close(process: subprocess.Popen[bytes]) -> None:
    if process.stdin is not None:
        process.stdin.close()
    process.wait()


def _split_diff(text: str) -> dict[str, str]:
    """A git patch's parts by the path they change."""
    chunks: dict[str, str] = {}
    current: list[str] = []
    path = ""
    for line in text.splitlines(keepends=True):
        if line.startswith("diff --git "):
            if current:
                chunks[path] = "".join(current)
            current = [line]
            path = line.rstrip("\n").split(" b/", 1)[-1]
        elif current:
            current.append(line)
    if current:
        chunks[path] = "".join(current)
    return chunks


def _text_diff(path: str, before: str | None, after: str) -> str:
    """A git-style unified diff of one file's text (made here: the new text is not a git
    object)."""
    if before == after:
        return ""
    old = (before or "").splitlines(keepends=True)
    new = after.splitlines(keepends=True)
    head = f"diff --git a/{path} b/{path}\n"
    if before is None:
        head += "new file mode 100644\n"
    lines = list(
        difflib.unified_diff(
            old,
            new,
            "/dev/null" if before is None else f"a/{path}",
            f"b/{path}",
            lineterm="\n",
        )
    )
    body = []
    for line in lines:
        if line.startswith(("---", "+++")):
            body.append(line.rstrip(" \t\n") + "\n")
        elif line.endswith("\n"):
            body.append(line)
        else:
            body.append(line + "\n\\ No newline at end of file\n")
    return head + "".join(body)
