"""What the server extension knows of tasks: the repositories under its roots, their
tasks, one task's review, and the decisions, all plain synchronous Python.

The handlers (handlers.py) run these in worker threads, never on the server's IO loop:
reading journals, git diffs and decisions that wait on another process all take time.

Repositories are found by a bounded walk under each root (`DEPTH` folders down, at most
`MAX_FOLDERS` folders looked at, hidden folders and `node_modules` skipped, no descent
into a repository found), so a root of a home directory stays fast. A task is found by
its id only (a name can be given in two repositories), and only in those repositories: a
task of a repository outside the roots is unknown here.

Every decision goes through the manager's decision path (`TaskManager._decide`, via the
public `Task` methods): through the task's control inbox when another process runs it,
under its lock here when nobody does. The manager names the server's authenticated
user (`acting_for(server_user=...)`), so the journal records who decided. Not here: any
HTTP or authentication (handlers.py), the page (static/phone.html).

Plans (plan.py) of those repositories too: their records (`plans`, `plan_detail`) with
whether a process runs each (`driven`) and each subtask's verdict, and the decisions on a
plan (PLAN_ACTIONS). A plan has one writer, the process holding its lock: a decision on a
plan another process runs is refused (PlanError, the page shows why), while `dispatch`
and `resume` make the server that process, its dispatcher a thread here that starts
subtasks in the server as their parents are approved.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from ..errors import DelegateError, PlanNotFound, TaskNotFound, UsageError
from ..manager import TaskManager
from ..notebook.record import compact_record
from ..planning import Plan, is_plan_id, plan_ids
from ..task import Task, TaskState
from ..workspace import Workspace

DEPTH = 3
MAX_FOLDERS = 2000
SKIPPED = frozenset({"node_modules", "__pycache__", "site-packages"})
DIFF_LIMIT = 200_000
TASK_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
# The order the page shows tasks in: what needs you first (lower first).
NEEDS_YOU = {
    TaskState.WAITING: 0,
    TaskState.REVIEW: 1,
    TaskState.FAILED: 2,
    TaskState.INTERRUPTED: 2,
    TaskState.PAUSED: 3,
    TaskState.RUNNING: 4,
    TaskState.QUEUED: 4,
}
ACTIONS = ("answer", "approve", "reject", "request-changes", "cancel", "pause")
PLAN_ACTIONS = ("approve", "restart", "cancel", "resume", "dispatch")


def find_repos(roots: Iterable[Path], depth: int = DEPTH) -> list[Path]:
    """The git repositories (working trees) at or under `roots`, `depth` folders down."""
    found: dict[Path, None] = {}
    budget = [MAX_FOLDERS]
    for root in roots:
        for repo in _walk(Path(root).expanduser().resolve(), depth, budget):
            found.setdefault(repo, None)
    return list(found)


def _walk(folder: Path, depth: int, budget: list[int]) -> Iterator[Path]:
    if budget[0] <= 0:
        return
    budget[0] -= 1
    if (folder / ".git").exists():
        yield folder
        return
    if depth <= 0:
        return
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.is_symlink())
    except OSError:
        return
    for child in children:
        if child.name.startswith(".") or child.name in SKIPPED:
            continue
        yield from _walk(child, depth - 1, budget)


class Board:
    """The tasks of the repositories under `roots`, for one server (one manager)."""

    def __init__(self, roots: Iterable[str | os.PathLike[str]], manager: TaskManager) -> None:
        self.roots = [Path(root).expanduser().resolve() for root in roots]
        self.manager = manager
        # Each task's summary as of its journal's head: a poll that finds nothing new
        # runs no git.
        self._summaries: dict[tuple[Path, str], tuple[str, dict[str, Any]]] = {}

    def workspaces(self) -> list[Workspace]:
        """A workspace per repository under the roots that delegate has used."""
        found = []
        for repo in find_repos(self.roots):
            if not (repo / ".git").exists():
                continue
            try:
                workspace = Workspace(repo)
            except DelegateError:  # no commits yet, say: it has no tasks either
                continue
            if workspace.task_ids() or plan_ids(workspace):
                found.append(workspace)
        return found

    def tasks(self) -> list[dict[str, Any]]:
        """Every task, what needs you first (waiting, review, failing), newest first within."""
        listed: list[tuple[Task, dict[str, Any]]] = []
        for workspace in self.workspaces():
            for task_id in workspace.task_ids():
                try:
                    task = self._task(workspace, task_id)
                except DelegateError:  # a journal with no task event: `audit` tells
                    continue
                key = (workspace.root, task.id)
                head, summary = self._summaries.get(key, ("", {}))
                if head != task.journal_head or not summary:
                    summary = self.summary(task)
                    self._summaries[key] = (task.journal_head, summary)
                listed.append((task, summary))
        listed.sort(key=lambda pair: pair[0].created, reverse=True)
        listed.sort(key=lambda pair: NEEDS_YOU.get(pair[0].state, 9))
        return [summary for _, summary in listed]

    def find(self, task_id: str) -> Task:
        """The task `task_id` of a repository under the roots (TaskNotFound otherwise)."""
        if not isinstance(task_id, str) or not TASK_ID.match(task_id):
            raise TaskNotFound(f"No task {task_id!r} here: a task id is letters and digits.")
        for workspace in self.workspaces():
            if task_id in workspace.task_ids():
                return self._task(workspace, task_id)
        raise TaskNotFound(
            f"No task {task_id!r} in the repositories this server shows (under "
            f"{', '.join(map(str, self.roots))})."
        )

    def _task(self, workspace: Workspace, task_id: str) -> Task:
        return self.manager.refresh(self.manager.get(task_id, workspace.root))

    def summary(self, task: Task) -> dict[str, Any]:
        """The task as listed: its compact record, its questions, why it is unproven."""
        record: dict[str, Any] = dict(compact_record(task, name=task.name))
        record["pending"] = [dataclasses.asdict(r) for r in task.pending()]
        record["unproven_reasons"] = task.unproven_reasons if task.state == "review" else []
        record["needs_you"] = task.state in (TaskState.WAITING, TaskState.REVIEW)
        record["workers"] = list(task.workers)  # the Dask workers its rounds ran on
        record["resources"] = dict(task.resources)
        return record

    def detail(self, task_id: str) -> dict[str, Any]:
        """One task: its record, its questions and its diff (cut at DIFF_LIMIT)."""
        task = self.find(task_id)
        record = self.summary(task)
        try:
            diff = task.diff() if task.head_commit else ""
        except (DelegateError, AssertionError, OSError, ValueError):
            diff = ""  # no worktree or branch left (rejected, failed early)
        except Exception as exc:  # git's own errors: shown, not a 500
            diff = f"(the diff cannot be read: {exc})"
        record["diff_cut"] = len(diff) > DIFF_LIMIT
        record["diff"] = diff[:DIFF_LIMIT]
        return record

    def act(self, task_id: str, action: str, body: Mapping[str, Any], user: str) -> Any:
        """Do `action` (ACTIONS) on the task with the arguments of `body`, as `user`."""
        if action not in ACTIONS:
            raise UsageError(f"Unknown action {action!r}: one of {', '.join(ACTIONS)}.")
        task = self.find(task_id)
        with self.manager.acting_for(server_user=user):
            return getattr(self, "_" + action.replace("-", "_"))(task, body)

    def _answer(self, task: Task, body: Mapping[str, Any]) -> None:
        request_id = _text(body, "request_id", required=True)
        allow = body.get("allow")
        if not isinstance(allow, bool):
            raise UsageError(f"answer takes `allow`: true or false, not {allow!r}.")
        reason = _text(body, "reason")
        if allow and reason:
            raise UsageError("A reason goes with a denial (`allow: false`): an allowed call runs.")
        remember = body.get("remember", False)
        if not isinstance(remember, bool):
            raise UsageError(f"`remember` is true or false, not {remember!r}.")
        task.answer(request_id, allow, remember=remember, reason=reason or None)

    def _approve(self, task: Task, body: Mapping[str, Any]) -> str:
        force = body.get("force", False)
        if not isinstance(force, bool):
            raise UsageError(f"`force` is true or false, not {force!r}.")
        squash = body.get("squash", False)
        if not isinstance(squash, bool):
            raise UsageError(f"`squash` is true or false, not {squash!r}.")
        return task.approve("squash" if squash else "merge", force=force)

    def _reject(self, task: Task, body: Mapping[str, Any]) -> None:
        task.reject(_text(body, "reason") or "rejected from the Jupyter server")

    def _request_changes(self, task: Task, body: Mapping[str, Any]) -> None:
        comments = body.get("comments", [])
        if not isinstance(comments, list) or not all(isinstance(c, dict) for c in comments):
            raise UsageError(
                '`comments` is a list of {"path": ..., "line": N, "body": ...}, not '
                f"{comments!r}."
            )
        task.request_changes(_text(body, "feedback"), comments=comments)

    def _cancel(self, task: Task, body: Mapping[str, Any]) -> None:
        task.cancel()

    def _pause(self, task: Task, body: Mapping[str, Any]) -> None:
        task.pause()

    # -- plans ---------------------------------------------------------------------------
    def plans(self) -> list[dict[str, Any]]:
        """Every plan under the roots, the running ones first, newest first within."""
        listed = [
            self.plan_summary(self.manager.plan(plan_id, workspace.root))
            for workspace in self.workspaces()
            for plan_id in plan_ids(workspace)
        ]
        listed.sort(key=lambda record: record["created"], reverse=True)
        listed.sort(key=lambda record: PLAN_ORDER.get(record["state"], 9))
        return listed

    def find_plan(self, plan_id: str) -> Plan:
        """The plan `plan_id` of a repository under the roots (PlanNotFound otherwise)."""
        if not isinstance(plan_id, str) or not is_plan_id(plan_id):
            raise PlanNotFound(f"No plan {plan_id!r} here: a plan id is p and six hex digits.")
        for workspace in self.workspaces():
            if plan_id in plan_ids(workspace):
                return self.manager.plan(plan_id, workspace.root)
        raise PlanNotFound(
            f"No plan {plan_id!r} in the repositories this server shows (under "
            f"{', '.join(map(str, self.roots))})."
        )

    def plan_summary(self, plan: Plan) -> dict[str, Any]:
        """A plan's record, with whether a process runs it and its subtasks' verdicts."""
        record = plan.to_record()
        record["driven"] = plan.driven()
        tasks = plan.tasks() if plan.spec is not None else {}
        for subtask in record["subtasks"]:
            task = tasks.get(subtask["name"])
            subtask["verdict"] = task.verdict if task is not None else None
            subtask["title"] = task.title if task is not None else ""
        return record

    def plan_detail(self, plan_id: str) -> dict[str, Any]:
        return self.plan_summary(self.find_plan(plan_id))

    def act_on_plan(self, plan_id: str, action: str, body: Mapping[str, Any], user: str) -> Any:
        """Do `action` (PLAN_ACTIONS) on the plan with the arguments of `body`, as `user`."""
        if action not in PLAN_ACTIONS:
            raise UsageError(f"Unknown action {action!r}: one of {', '.join(PLAN_ACTIONS)}.")
        plan = self.find_plan(plan_id)
        with self.manager.acting_for(server_user=user):
            return getattr(self, "_plan_" + action)(plan, body)

    def _plan_approve(self, plan: Plan, body: Mapping[str, Any]) -> str:
        return plan.approve()

    def _plan_restart(self, plan: Plan, body: Mapping[str, Any]) -> str | None:
        task = plan.restart(_text(body, "name", required=True))
        return task.id if task is not None else None

    def _plan_cancel(self, plan: Plan, body: Mapping[str, Any]) -> None:
        plan.cancel()

    def _plan_resume(self, plan: Plan, body: Mapping[str, Any]) -> None:
        plan.resume()

    def _plan_dispatch(self, plan: Plan, body: Mapping[str, Any]) -> None:
        parallel = body.get("parallel")
        if parallel is not None and (
            isinstance(parallel, bool) or not isinstance(parallel, int) or not 1 <= parallel <= 8
        ):
            raise UsageError(f"`parallel` is a whole number from 1 to 8, not {parallel!r}.")
        stack = body.get("stack")
        if stack is not None and not isinstance(stack, bool):
            raise UsageError(f"`stack` is true or false, not {stack!r}.")
        plan.dispatch(parallel=parallel, stack=stack)


# The order the page shows plans in: what moves or needs you first.
PLAN_ORDER = {"running": 0, "ready": 1, "planning": 2, "draft": 2, "failed": 3}


def _text(body: Mapping[str, Any], key: str, required: bool = False) -> str:
    value = body.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise UsageError(f"`{key}` is a text, not {value!r}.")
    return value.strip()
