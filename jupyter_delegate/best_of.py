"""Best-of-N: several independent attempts at one outcome, compared side by side.

`start` submits N tasks of one outcome at once, each in its own worktree and branch, as
one group, which each task's journal names in its first line (`{"kind": "attempts",
"id", "index", "of"}`); `--models a,b` and `--effort` spread the attempts over models and
efforts, in turn. They share the prompt cache where the API allows: the system prompt
and tools are the same bytes for each (no path or id is in them), so on one model every
attempt after the first reads that prefix from the cache.

`Attempts.ranked` orders them by the checks (all passing first, then more passing), then
the smaller diff, then the lower cost; a task that is not in review comes last. Keeping
one (approving it anywhere: `Task.approve`, the CLI, the widget, the server) archives
the others: rejected, "another attempt was kept", their branches under
refs/delegate/archive/, never deleted. `diff(a, b)` is the difference between two
attempts' heads.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DelegateError, ReviewError
from .journal import Journal
from .outcome import Outcome
from .task import Task, TaskState
from .workspace import Workspace

if TYPE_CHECKING:
    from .manager import TaskManager
    from .policy import Policy

S = TaskState
KEPT_ELSEWHERE = "another attempt was kept"


@dataclass(frozen=True)
class Standing:
    """One attempt as the comparison shows it."""

    rank: int
    index: int
    task: str
    model: str
    effort: str | None
    state: str
    checks_passed: int
    checks_total: int
    proven: bool
    added: int
    removed: int
    files: int
    cost_usd: float
    seconds: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Attempts:
    """The attempts of one group, read from their journals."""

    def __init__(self, group: str, tasks: Sequence[Task], manager: TaskManager) -> None:
        self.id = group
        self.manager = manager
        self.tasks = sorted(tasks, key=_index)

    def refresh(self) -> Attempts:
        for task in self.tasks:
            self.manager.refresh(task)
        return self

    def wait(self, timeout: float | None = None) -> list[TaskState]:
        """Wait until every attempt needs a human (or ended); their states."""
        return [task.wait(timeout) for task in self.tasks]

    def attempt(self, which: int | str) -> Task:
        """An attempt by its number (1, 2, ...) or its task id."""
        for task in self.tasks:
            if which in (_index(task), task.id, str(_index(task))):
                return task
        listed = ", ".join(f"{_index(t)} ({t.id})" for t in self.tasks)
        raise ReviewError(f"No attempt {which!r} in group {self.id}; attempts: {listed}.")

    def ranked(self) -> list[Standing]:
        """Best first: the checks, then the smaller diff, then the lower cost."""
        rows = [self._standing(task) for task in self.refresh().tasks]
        rows.sort(key=_rank_key)
        return [Standing(**{**r.to_dict(), "rank": n}) for n, r in enumerate(rows, start=1)]

    def _standing(self, task: Task) -> Standing:
        added = removed = files = 0
        if task.head_commit:
            workspace = Workspace(task.repo)
            start = self.manager.diff_base(task)
            numstat = workspace.repo.git.diff("--numstat", "--no-renames", start, task.head_commit)
            for line in numstat.splitlines():
                plus, minus, _ = line.split("\t", 2)
                files += 1
                added += int(plus) if plus.isdigit() else 0
                removed += int(minus) if minus.isdigit() else 0
        return Standing(
            rank=0,
            index=_index(task),
            task=task.id,
            model=task.model,
            effort=task.effort,
            state=task.state.value,
            checks_passed=sum(1 for c in task.checks if c.passed),
            checks_total=len(task.checks),
            proven=task.proven,
            added=added,
            removed=removed,
            files=files,
            cost_usd=round(task.usage.cost_usd, 4),
            seconds=_duration(self.manager.journal_path(task)),
        )

    def diff(self, a: int | str, b: int | str) -> str:
        """What attempt `b` has that attempt `a` has not (`git diff A B`, their heads)."""
        first, second = self.attempt(a), self.attempt(b)
        heads = [t.merged_commit or t.head_commit for t in (first, second)]
        if None in heads:
            raise ReviewError("Both attempts need a commit to compare; wait for them.")
        workspace = Workspace(first.repo)
        return str(workspace.repo.git.diff("--no-ext-diff", "--no-textconv", heads[0], heads[1]))

    def keep(self, which: int | str, strategy: str = "merge", force: bool = False) -> str:
        """Approve one attempt (its change merged into the base); the others are archived."""
        return self.attempt(which).approve(strategy, force=force)

    def to_record(self) -> dict[str, Any]:
        return {"id": self.id, "attempts": [s.to_dict() for s in self.ranked()]}


def _index(task: Task) -> int:
    return int((task.group or {}).get("index", 0))


def _rank_key(row: Standing) -> tuple[Any, ...]:
    reviewable = row.state in (S.REVIEW.value, S.MERGED.value)
    return (
        not reviewable,
        not row.proven,
        -row.checks_passed,
        row.added + row.removed,
        row.cost_usd,
        row.index,
    )


def _duration(path: Path) -> float | None:
    """Seconds from the task's first line to its first arrival in review (or its end)."""
    first = end = None
    for event in Journal(path).events():
        first = first if first is not None else event.ts
        if event.type == "state" and event.data.get("state") in ("review", "failed", "cancelled"):
            end = event.ts
            break
    return round(end - first, 1) if first is not None and end is not None else None


def start(
    outcome: Outcome,
    count: int,
    *,
    repo: str | os.PathLike[str] = ".",
    models: Sequence[str] = (),
    efforts: Sequence[str] = (),
    manager: TaskManager | None = None,
    policy: Policy | None = None,
    **submit: Any,
) -> Attempts:
    """Submit `count` attempts at `outcome` (models and efforts spread in turn). Every
    submission is validated before the first starts: a bad model or effort starts none."""
    from .manager import get_manager

    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 8:
        raise ReviewError(f"--attempts takes a number from 1 to 8, not {count!r}.")
    chosen = manager or get_manager()
    group = "a" + secrets.token_hex(3)
    name = submit.pop("name", None)
    tasks: list[Task] = []
    for index in range(1, count + 1):
        model = models[(index - 1) % len(models)] if models else submit.get("model")
        effort = efforts[(index - 1) % len(efforts)] if efforts else submit.get("effort")
        options = {**submit, "model": model, "effort": effort}
        try:
            task = chosen.submit(
                outcome,
                repo=repo,
                policy=policy,
                name=f"{name}-{index}" if name else None,
                group={"kind": "attempts", "id": group, "index": index, "of": count},
                **options,
            )
        except BaseException:  # a refusal, or anything else: all or none
            for started in tasks:
                with contextlib.suppress(DelegateError):
                    started.cancel()
            raise
        tasks.append(task)
    return Attempts(group, tasks, chosen)


def group_of(task: Task) -> Attempts:
    """The attempts `task` is one of."""
    group = task.group or {}
    if group.get("kind") != "attempts":
        raise ReviewError(f"Task {task.id} is no attempt of a group.")
    manager = task._mgr()
    siblings = [t for t in manager.tasks(task.repo) if (t.group or {}).get("id") == group["id"]]
    return Attempts(str(group["id"]), siblings or [task], manager)


def load(group: str, repo: str | os.PathLike[str] = ".") -> Attempts:
    from .manager import get_manager

    manager = get_manager()
    found = [t for t in manager.tasks(repo) if (t.group or {}).get("id") == group]
    if not found:
        raise ReviewError(f"No attempt group {group!r} in {Workspace(repo).root}.")
    return Attempts(group, found, manager)


def archive_others(kept: Task) -> list[str]:
    """After `kept` was approved: archive each other attempt of its group (rejected with
    KEPT_ELSEWHERE; one still running is paused first). Returns their ids."""
    archived = []
    for other in group_of(kept).refresh().tasks:
        if other.id == kept.id or other.state in (S.MERGED, S.REJECTED, S.CANCELLED):
            continue
        with contextlib.suppress(DelegateError, TimeoutError):
            if other.state.active:
                other.pause()
                other.wait(timeout=120)
            other.reject(KEPT_ELSEWHERE)
            archived.append(other.id)
    return archived


def groups(tasks: Iterable[Task]) -> Mapping[str, list[Task]]:
    found: dict[str, list[Task]] = {}
    for task in tasks:
        group = task.group or {}
        if group.get("kind") == "attempts":
            found.setdefault(str(group["id"]), []).append(task)
    return found
