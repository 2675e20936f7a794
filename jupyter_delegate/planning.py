"""Plans: one outcome broken down into subtasks that run as a graph.

A plan is a list of subtasks, each an outcome of its own (a goal, checks, a scope, a
budget) and the names of the subtasks it depends on. It is written by the agent in plan
mode (`propose`: read-only tools and a `propose_plan` tool with a strict schema), or by
hand in this YAML form, which `%%delegate-plan` cells, `jupyter delegate plan FILE.yaml`
and `PlanSpec.from_yaml` read:

    plan: Add CSV export               # the plan's title
    goal: Users can export reports     # optional: the whole outcome, for the record
    checks: [pytest -q]                # run on the integration of every subtask
    budget: {max_usd: 6}               # optional: caps the sum of the subtasks' budgets
    parallel: 2                        # subtasks running at once (default 2)
    stack: false                       # true: dependents start from parents in review
    subtasks:
      - name: model                    # lower case, digits, - and _
        goal: Add Report.to_rows()
        checks: [pytest -q tests/test_model.py]
        scope: [src/shop/model.py]
        budget: {max_usd: 1.5}         # optional: Budget fields; default: a share
      - name: csv
        goal: Write rows as CSV
        depends_on: [model]

Validation (`PlanSpec.check`) refuses, naming each problem and starting nothing: a
duplicate or malformed name, a dependency on an unknown name, a cycle, a scope outside
the repository, a budget over the plan's (one subtask's, or the sum).

Running a plan (`Plan.dispatch`) starts every subtask whose dependencies are satisfied,
up to `parallel` at once, each as an ordinary task (its own worktree, journal and
review) whose base is a branch of the plan's, `delegate/plan-ID-NAME`, made at the
base commit, or at its parents' heads merged together: approved parents (their merged
commits), or, with `stack`, parents in review. Approving a subtask merges it into that
branch, never into the user's base. A parent's head that changes after a dependent
started (request changes, with `stack`) flags the dependent, which `restart` starts
again from the new head. A failed, rejected or cancelled parent blocks its dependents,
which say why. `approve` integrates: the approved subtasks merged into the base's tip in
dependency order on `delegate/plan-ID`, the plan's checks run there, then the base is
fast-forwarded to it; a conflict stops it naming the files, failing checks name the
commands. Nothing is merged into the base but by that last step.

One writer: a plan's journal (`plans/ID/journal.jsonl` in the repository's delegate
state, hash-chained like a task's) is written only by the process holding its lock
(`plans/ID/lock`), the one dispatching it. Everything else reads the journal and the
subtasks' own journals, so any process (the CLI, a restarted kernel) sees the plan's
true state, and `resume` takes the plan up where a dead process left it.
"""

from __future__ import annotations

import contextlib
import fcntl
import graphlib
import os
import re
import reprlib
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .errors import (
    DelegateError,
    MergeConflict,
    OutcomeError,
    PlanError,
    PlanNotFound,
    TaskNotFound,
)
from .journal import Journal
from .outcome import Budget, Outcome
from .task import CheckResult, Task, TaskState
from .workspace import Workspace, leads_outside

if TYPE_CHECKING:
    from .manager import TaskManager

S = TaskState
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}\Z")  # \Z: `$` lets a trailing newline by
PLAN_KEYS = ("plan", "goal", "checks", "budget", "parallel", "stack", "base", "subtasks")
SUBTASK_KEYS = ("name", "goal", "checks", "scope", "budget", "depends_on", "constraints")
DEFAULT_PARALLEL = 2
# More is no plan a person reviews, and the board folds the graph on every refresh.
MAX_SUBTASKS = 100
# A subtask's task settles a dependency: approved (merged), or with `stack` reviewed too.
BLOCKING = (S.FAILED, S.REJECTED, S.CANCELLED)
POLL_S = 0.2


# -- the spec ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Subtask:
    """One node of a plan: an outcome and the names it depends on. `budget` holds the
    Budget fields given (the rest: the plan's share, `PlanSpec.budget_of`)."""

    name: str
    goal: str
    checks: tuple[str, ...] = ()
    scope: tuple[str, ...] = ()
    budget: Mapping[str, float] = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    constraints: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"name": self.name, "goal": self.goal}
        for key in ("checks", "scope", "depends_on", "constraints"):
            if getattr(self, key):
                data[key] = list(getattr(self, key))
        if self.budget:
            data["budget"] = dict(self.budget)
        return data


@dataclass(frozen=True)
class PlanSpec:
    """A plan as written: its title, subtasks, and the checks of their integration."""

    title: str
    subtasks: tuple[Subtask, ...]
    goal: str = ""
    checks: tuple[str, ...] = ()
    budget: Mapping[str, float] = field(default_factory=dict)
    parallel: int = DEFAULT_PARALLEL
    stack: bool = False
    base: str | None = None

    # -- reading -------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, text: str) -> PlanSpec:
        """A plan from its YAML form (module docstring); PlanError names what is wrong."""
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}" if mark is not None else ""
            raise PlanError(
                f"The plan is not valid YAML{where}: {getattr(exc, 'problem', exc)}. "
                "See `jupyter delegate plan --help` for its form."
            ) from None
        except (ValueError, OverflowError) as exc:  # a date such as 2026-13-45
            raise PlanError(f"The plan is not valid YAML: {exc}.") from None
        except RecursionError:
            raise PlanError("The plan is not valid YAML: it is nested too deeply.") from None
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: Any) -> PlanSpec:
        """A plan from its dict form; every problem of shape named at once."""
        problems: list[str] = []
        if not isinstance(data, Mapping):
            raise PlanError(
                "A plan is a mapping with `plan:` (its title) and `subtasks:` (a list), "
                f"not {type(data).__name__}."
            )
        unknown = sorted(set(map(str, data)) - set(PLAN_KEYS))
        if unknown:
            problems.append(f"unknown key(s) {', '.join(unknown)} (known: {', '.join(PLAN_KEYS)})")
        title = data.get("plan") or data.get("goal") or ""
        if not isinstance(title, str) or not title.strip():
            problems.append("`plan:` (the plan's title) must be a non-empty text")
            title = ""
        _plain("`plan:` (the plan's title)", title, problems)
        raw = data.get("subtasks")
        subtasks: list[Subtask] = []
        if not isinstance(raw, list) or not raw:
            problems.append("`subtasks:` must be a non-empty list of subtasks")
            raw = []
        for number, item in enumerate(raw, start=1):
            subtask = _subtask(number, item, problems)
            if subtask is not None:
                subtasks.append(subtask)
        parallel = data.get("parallel", DEFAULT_PARALLEL)
        if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
            problems.append(
                f"`parallel:` must be a whole number of 1 or more, not {_shown(parallel)}"
            )
            parallel = DEFAULT_PARALLEL
        stack = data.get("stack", False)
        if not isinstance(stack, bool):
            problems.append(f"`stack:` must be true or false, not {_shown(stack)}")
        base = data.get("base")
        if base is not None and not isinstance(base, str):
            problems.append(f"`base:` must be a branch name, not {_shown(base)}")
        goal = data.get("goal") or ""
        if isinstance(goal, str):
            _plain("`goal:`", goal, problems)
        spec = cls(
            title=str(title).strip(),
            subtasks=tuple(subtasks),
            goal=goal if isinstance(goal, str) else "",
            checks=_texts("checks", data.get("checks", ()), problems),
            budget=_budget("the plan", data.get("budget"), problems),
            parallel=parallel,
            stack=bool(stack),
            base=base,
        )
        if problems:
            raise PlanError(_refusal(problems))
        return spec

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"plan": self.title}
        if self.goal:
            data["goal"] = self.goal
        if self.checks:
            data["checks"] = list(self.checks)
        if self.budget:
            data["budget"] = dict(self.budget)
        data["parallel"] = self.parallel
        if self.stack:
            data["stack"] = True
        if self.base:
            data["base"] = self.base
        data["subtasks"] = [s.to_dict() for s in self.subtasks]
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True, width=88)

    # -- checking ------------------------------------------------------------------------
    def problems(self, root: Path | None = None) -> list[str]:
        """What makes the plan impossible to run as written (empty: none)."""
        problems: list[str] = []
        if len(self.subtasks) > MAX_SUBTASKS:
            return [
                f"the plan has {len(self.subtasks)} subtasks; a plan has at most "
                f"{MAX_SUBTASKS} subtasks (make each one larger, or split the plan)"
            ]
        names = [s.name for s in self.subtasks]
        for name in sorted({n for n in names if names.count(n) > 1}):
            problems.append(f"subtask name {name!r} is used more than once")
        known = set(names)
        for subtask in self.subtasks:
            for parent in subtask.depends_on:
                if parent not in known:
                    problems.append(
                        f"{subtask.name} depends on {parent!r}, which is no subtask of the plan "
                        f"(subtasks: {', '.join(names)})"
                    )
                elif parent == subtask.name:
                    problems.append(f"{subtask.name} depends on itself")
        if not problems:
            cycle = self._cycle()
            if cycle:
                problems.append("the dependencies make a cycle: " + " -> ".join(cycle))
        if root is not None:
            for subtask in self.subtasks:
                for path in subtask.scope:
                    if _outside(path, root):
                        problems.append(
                            f"{subtask.name}'s scope {path!r} is outside the repository {root}"
                        )
        if not problems:  # what its task would refuse at dispatch, after others started
            for subtask in self.subtasks:
                try:
                    self.outcome_of(subtask.name)
                except OutcomeError as exc:
                    problems.append(f"{subtask.name}: {exc}")
        problems += self._budget_problems()
        return problems

    def check(self, root: Path | None = None) -> PlanSpec:
        """The spec, when it can run; else PlanError naming every problem."""
        problems = self.problems(root)
        if problems:
            raise PlanError(_refusal(problems))
        return self

    def _cycle(self) -> list[str]:
        sorter = graphlib.TopologicalSorter({s.name: s.depends_on for s in self.subtasks})
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            found = list(exc.args[1])
            return list(reversed(found))
        return []

    def _budget_problems(self) -> list[str]:
        if not self.budget:
            return []
        problems = []
        cap = Budget.from_dict(self.budget)
        for subtask in self.subtasks:
            for key, value in subtask.budget.items():
                if key in self.budget and value > self.budget[key]:
                    problems.append(
                        f"{subtask.name}'s budget {key}={value:g} is over the plan's "
                        f"({self.budget[key]:g})"
                    )
        given = sum(float(s.budget.get("max_usd", 0)) for s in self.subtasks)
        if given > cap.max_usd + 1e-9:
            problems.append(
                f"the subtasks' budgets add up to ${given:.2f}, over the plan's "
                f"${cap.max_usd:.2f} (budget max_usd)"
            )
        return problems

    # -- using ---------------------------------------------------------------------------
    def order(self) -> list[str]:
        """The subtasks' names in dependency order (parents first), ties as listed."""
        placed: list[str] = []
        done: set[str] = set()
        left = list(self.subtasks)
        while left:
            ready = next((s for s in left if done.issuperset(s.depends_on)), None)
            if ready is None:  # a cycle: `check` refuses it; keep the rest as listed
                return placed + [s.name for s in left]
            placed.append(ready.name)
            done.add(ready.name)
            left.remove(ready)
        return placed

    def subtask(self, name: str) -> Subtask:
        for subtask in self.subtasks:
            if subtask.name == name:
                return subtask
        raise PlanError(
            f"The plan has no subtask {name!r}; its subtasks: "
            f"{', '.join(s.name for s in self.subtasks)}."
        )

    def dependents(self, name: str) -> list[str]:
        """Every subtask depending on `name`, directly or not."""
        found: list[str] = []
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for subtask in self.subtasks:
                if current in subtask.depends_on and subtask.name not in found:
                    found.append(subtask.name)
                    frontier.append(subtask.name)
        return found

    def budget_of(self, name: str) -> Budget:
        """The subtask's budget: its own fields, the plan's for the rest, and for dollars
        not given an equal share of what the plan's cap leaves."""
        subtask = self.subtask(name)
        fields_ = {**{k: v for k, v in self.budget.items() if k != "max_usd"}, **subtask.budget}
        if "max_usd" not in subtask.budget and "max_usd" in self.budget:
            given = sum(float(s.budget.get("max_usd", 0)) for s in self.subtasks)
            without = sum(1 for s in self.subtasks if "max_usd" not in s.budget)
            fields_["max_usd"] = round(
                max(float(self.budget["max_usd"]) - given, 0.01) / without, 4
            )
        return Budget.from_dict(fields_)

    def outcome_of(self, name: str, budget: Budget | None = None) -> Outcome:
        subtask = self.subtask(name)
        return Outcome(
            goal=subtask.goal,
            checks=subtask.checks,
            scope=subtask.scope,
            constraints=subtask.constraints,
            budget=budget or self.budget_of(name),
        )

    def edited(self, **changes: Any) -> PlanSpec:
        return replace(self, **changes)


def _subtask(number: int, item: Any, problems: list[str]) -> Subtask | None:
    where = f"subtask {number}"
    if not isinstance(item, Mapping):
        problems.append(f"{where} must be a mapping with name and goal, not {_shown(item)}")
        return None
    unknown = sorted(set(map(str, item)) - set(SUBTASK_KEYS))
    name = item.get("name")
    if isinstance(name, str):
        where = f"subtask {_shown(name)}"
    if unknown:
        problems.append(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(SUBTASK_KEYS)})"
        )
    if not isinstance(name, str) or not NAME.match(name):
        problems.append(
            f"{where}: name {_shown(name)} must be 1 to 40 of a-z, 0-9, - and _, starting with a "
            "letter or digit (it names a branch)"
        )
        name = f"#{number}"
    goal = item.get("goal")
    if not isinstance(goal, str) or not goal.strip():
        problems.append(f"{where}: goal must be a non-empty text")
        goal = ""
    _plain(f"{where}: goal", goal, problems)
    depends = item.get("depends_on") or ()
    if isinstance(depends, str):
        depends = [depends]
    return Subtask(
        name=name,
        goal=goal.strip(),
        checks=_texts(f"{where}: checks", item.get("checks", ()), problems),
        scope=_texts(f"{where}: scope", item.get("scope", ()), problems),
        budget=_budget(where, item.get("budget"), problems),
        depends_on=_texts(f"{where}: depends_on", depends, problems),
        constraints=_texts(f"{where}: constraints", item.get("constraints", ()), problems),
    )


def _texts(what: str, value: Any, problems: list[str]) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        problems.append(f"{what} must be a list of texts, not {_shown(value)}")
        return ()
    for text in value:
        _plain(what, text, problems)
    return tuple(v.strip() for v in value if v.strip())


CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")


def _plain(what: str, text: str, problems: list[str]) -> None:
    """A text of the plan holds no control character (but tab and line ends): a NUL breaks
    git and the journal's readers, an escape sequence the terminal that shows the plan."""
    found = CONTROL.search(text)
    if found:
        problems.append(
            f"{what} contains a control character (U+{ord(found.group()):04X}): {_shown(text)}"
        )


def _budget(what: str, value: Any, problems: list[str]) -> dict[str, float]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        problems.append(
            f"{what}'s budget must be a mapping such as {{max_usd: 1.5}}, not {_shown(value)}"
        )
        return {}
    for key, number in value.items():
        if isinstance(number, bool) or not isinstance(number, int | float):
            problems.append(f"{what}'s budget {_shown(key)} must be a number, not {_shown(number)}")
            return {}
    try:
        Budget.from_dict(value)
    except (OutcomeError, TypeError) as exc:
        problems.append(f"{what}'s budget: {exc}")
        return {}
    return {str(k): v for k, v in value.items()}


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = _SHOWN.maxother = 80
_SHOWN.maxlevel = 2


def _shown(value: Any) -> str:
    """`value!r`, bounded: what a plan holds may be huge (a YAML alias bomb, a long text)."""
    text = _SHOWN.repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _outside(path: str, root: Path) -> bool:
    if os.path.isabs(path):
        resolved = Path(path).resolve()
        return not (resolved == root or root in resolved.parents)
    return leads_outside("x", path) or path.startswith("..")


def _refusal(problems: list[str]) -> str:
    listed = "".join(f"\n  - {p}" for p in problems)
    return f"The plan cannot run: {len(problems)} problem(s); nothing was started.{listed}"


# -- a plan in a repository -------------------------------------------------------------
@dataclass
class Started:
    """A subtask's task as the plan started it: from `start_commit`, the merge of its
    parents' heads (`parents`, by name), which the plan compares with their heads now."""

    task: str
    start_commit: str
    parents: dict[str, str] = field(default_factory=dict)


@dataclass
class Status:
    """One subtask's standing, for the board and the CLI."""

    name: str
    state: str  # planned (its parents are not done), ready, blocked, or its task's state
    task: str | None = None
    why: str = ""
    stale: str = ""  # a parent's head moved after it started: restart it
    cost_usd: float = 0.0
    checks: str = ""  # "2/2 passed"
    depends_on: tuple[str, ...] = ()
    started: float | None = None  # when its task began and ended (journal time)
    ended: float | None = None

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["depends_on"] = list(self.depends_on)
        return data


PLAN_STATES = ("planning", "draft", "running", "ready", "integrated", "failed", "cancelled")


class Plan:
    """A plan of a repository, folded from its journal (and its subtasks' journals).
    Make one with `create` (a spec), `propose` (the agent writes it) or `load` (by id)."""

    def __init__(self, workspace: Workspace, plan_id: str, manager: TaskManager) -> None:
        self.id = plan_id
        self.workspace = workspace
        self.repo = workspace.root
        self.folder = plan_folder(workspace, plan_id)
        if not (self.folder / "journal.jsonl").exists():
            raise PlanNotFound(
                f"No plan {plan_id!r} in {workspace.root}; known plans: "
                f"{', '.join(plan_ids(workspace)) or 'none'}."
            )
        self.manager = manager
        self.journal = Journal(self.folder / "journal.jsonl")
        self.spec: PlanSpec | None = None
        self.state = "planning"
        self.reason = ""
        self.base_branch = ""
        self.base_commit = ""
        self.planner: str | None = None
        self.options: dict[str, Any] = {}
        self.started: dict[str, Started] = {}
        # Where a subtask restarted after a conflict at the integration starts besides its
        # parents: the work merged before it (by name).
        self.after: dict[str, str] = {}
        self.flagged: dict[str, dict[str, str]] = {}  # name -> parent -> head flagged
        # Tasks a restart replaced: what they spent still counts (the cost, the budget).
        self.retired: list[str] = []
        self.integration: dict[str, Any] = {}
        self.failure: dict[str, Any] = {}
        self.created = ""
        self._lock_fd: int | None = None
        self._holders = 0  # who here holds the plan's lock: decisions, the dispatcher
        self._runner: threading.Thread | None = None
        self.cluster: Any = None  # where subtasks' rounds run, as dispatch was given it
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._subscribers: list[Callable[[Plan], None]] = []
        self._write = threading.RLock()
        # One decision at a time here (the lock shuts out other processes only): a cancel
        # or a restart must not land in the middle of an integration.
        self._deciding = threading.RLock()
        for event in self.journal.events():  # the Journal read to its end when opened
            self._apply(event.type, event.data, event.ts)

    # -- reading -------------------------------------------------------------------------
    def refresh(self) -> Plan:
        """Fold what was journaled since the last read (by any process)."""
        with self._write:
            for event in self.journal.catch_up():
                self._apply(event.type, event.data, event.ts)
        return self

    def _apply(self, type_: str, data: Mapping[str, Any], ts: float) -> None:
        if type_ == "plan":
            self.base_branch = data.get("base_branch", "")
            self.base_commit = data.get("base_commit", "")
            self.planner = data.get("planner")
            self.created = data.get("created", "")
            if data.get("spec"):
                self.spec = PlanSpec.from_dict(data["spec"])
        elif type_ in ("proposed", "edited"):
            self.spec = PlanSpec.from_dict(data["spec"])
        elif type_ == "dispatched":
            self.options = dict(data.get("options", {}))
        elif type_ == "started":
            self.started[data["name"]] = Started(
                data["task"], data["start_commit"], dict(data.get("parents", {}))
            )
            self.flagged.pop(data["name"], None)
        elif type_ == "flag":
            self.flagged.setdefault(data["name"], {})[data["parent"]] = data["head"]
        elif type_ == "restarted":
            if data.get("old_task"):
                self.retired.append(str(data["old_task"]))
            self.started.pop(data["name"], None)
            self.flagged.pop(data["name"], None)
            if data.get("after"):
                self.after[data["name"]] = data["after"]
        elif type_ == "integrated":
            self.integration = dict(data)
            self.failure = {}
        elif type_ == "integration_failed":
            self.failure = dict(data)
        elif type_ == "state":
            self.state, self.reason = data["state"], data.get("reason", "")

    @property
    def title(self) -> str:
        return self.spec.title if self.spec else "(being planned)"

    def tasks(self) -> dict[str, Task]:
        """The subtasks' tasks by name, each read up to its journal's end."""
        found: dict[str, Task] = {}
        for name, started in list(self.started.items()):
            try:
                task = self.manager.get(started.task, self.repo)
            except TaskNotFound:
                continue
            found[name] = self.manager.refresh(task)
        return found

    def task(self, name: str) -> Task:
        """The task of subtask `name` (PlanError when it has not started)."""
        spec = self._spec()
        spec.subtask(name)
        task = self.tasks().get(name)
        if task is None:
            raise PlanError(f"Subtask {name!r} of plan {self.id} has not started yet.")
        return task

    def statuses(self) -> list[Status]:
        """Each subtask's standing, in dependency order."""
        spec = self._spec()
        tasks = self.tasks()
        found: dict[str, Status] = {}
        for name in spec.order():
            subtask = spec.subtask(name)
            status = Status(name, "planned", depends_on=subtask.depends_on)
            task = tasks.get(name)
            if task is not None:
                status.state, status.task = task.state.value, task.id
                status.cost_usd = round(task.usage.cost_usd, 4)
                if task.checks:
                    passed = sum(1 for c in task.checks if c.passed)
                    status.checks = f"{passed}/{len(task.checks)} passed"
                if task.state in BLOCKING:
                    status.why = task.error
                moved = [
                    p
                    for p, head in getattr(self.started.get(name), "parents", {}).items()
                    if self._head_of(tasks.get(p)) not in (None, head)
                ]
                if moved and task.state not in (S.MERGED, S.REJECTED, S.CANCELLED):
                    status.stale = (
                        f"{', '.join(moved)} changed after it started: restart it to start "
                        "from the new head"
                    )
            else:
                blockers = [
                    p
                    for p in subtask.depends_on
                    if found[p].state in ("blocked", *(s.value for s in BLOCKING))
                ]
                if blockers:
                    status.state = "blocked"
                    status.why = "; ".join(
                        f"{p} is {found[p].state}"
                        + (
                            f" ({found[p].why})"
                            if found[p].why and found[p].state != "blocked"
                            else ""
                        )
                        for p in blockers
                    )
                elif all(self._settled(tasks.get(p), spec) for p in subtask.depends_on):
                    status.state = "ready"
            found[name] = status
        return [found[n] for n in spec.order()]

    def _settled(self, task: Task | None, spec: PlanSpec) -> bool:
        if task is None:
            return False
        return task.state == S.MERGED or (spec.stack and task.state == S.REVIEW)

    @staticmethod
    def _head_of(task: Task | None) -> str | None:
        if task is None:
            return None
        return task.merged_commit or task.head_commit

    @property
    def cost_usd(self) -> float:
        total = sum(t.usage.cost_usd for t in self.tasks().values()) + self._retired_cost()
        if self.planner:
            with contextlib.suppress(DelegateError):
                total += self.manager.get(self.planner, self.repo).usage.cost_usd
        return round(total, 4)

    def _retired_cost(self) -> float:
        total = 0.0
        for task_id in self.retired:
            with contextlib.suppress(DelegateError):
                task = self.manager.refresh(self.manager.get(task_id, self.repo))
                total += task.usage.cost_usd
        return total

    def to_record(self) -> dict[str, Any]:
        """The plan as JSON: `plan --json`, the REST API, the notebook record."""
        statuses = self.statuses() if self.spec else []
        return {
            "id": self.id,
            "title": self.title,
            "state": self.state,
            "reason": self.reason,
            "repo": str(self.repo),
            "base_branch": self.base_branch,
            "base_commit": self.base_commit,
            "planner": self.planner,
            "spec": self.spec.to_dict() if self.spec else None,
            "subtasks": [s.to_dict() for s in statuses],
            "cost_usd": self.cost_usd,
            "integration": dict(self.integration),
            "failure": dict(self.failure),
            "journal_head": self.journal.head,
            "created": self.created,
        }

    def _spec(self) -> PlanSpec:
        if self.spec is None:
            raise PlanError(
                f"Plan {self.id} has no subtasks yet: the agent is still planning it "
                f"(task {self.planner}). Wait for it, then run the plan."
            )
        return self.spec

    def driven(self) -> bool:
        """Whether a process (this one, or another) holds the plan's lock, so runs it.
        Probes the lock, not keeping it."""
        if self._lock_fd is not None or (self._runner is not None and self._runner.is_alive()):
            return True
        fd = _try_lock(self.folder)
        if fd is None:
            return True
        os.close(fd)
        return False

    def is_cut_off(self) -> bool:
        """Running by its journal while no process dispatches it (its dispatcher died with
        its kernel): `resume` takes it up."""
        return self.state == "running" and not self.driven()

    # -- watching ------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[Plan], None]) -> Callable[[], None]:
        """Call `callback(plan)` whenever the dispatcher here sees a change."""
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def wait(
        self,
        until: Iterable[str] = ("ready", "integrated", "failed", "cancelled"),
        timeout: float | None = None,
    ) -> str:
        """Block until the plan reaches one of `until` states, or until every subtask
        needs a human (in review, blocked, failed); returns the plan's state."""
        wanted = set(until)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self.refresh()
            if self.state in wanted or (self.state == "running" and self._idle()):
                return self.state
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"Plan {self.id} is still {self.state} after {timeout} s.")
            time.sleep(POLL_S)

    def _idle(self) -> bool:
        """Nothing runs and nothing can start: every subtask waits on a human."""
        statuses = self.statuses()
        active = {S.QUEUED.value, S.RUNNING.value, S.WAITING.value, "ready"}
        return not any(s.state in active for s in statuses)

    # -- writing (under the plan's lock) -------------------------------------------------
    def _record(self, type_: str, data: Mapping[str, Any]) -> None:
        if self._lock_fd is None:
            raise PlanError(
                f"Plan {self.id} is being run by another process; act on it there, or "
                "wait for that process to end and resume it here."
            )
        with self._write:
            event = self.journal.append(type_, data)
            self._apply(event.type, event.data, event.ts)
        self._changed_now()

    def _changed_now(self) -> None:
        for callback in list(self._subscribers):
            with contextlib.suppress(Exception):
                callback(self)

    def _acquire(self) -> None:
        """Hold the plan's lock (taken from the system for the first holder here)."""
        with self._write:
            if self._holders == 0:
                fd = _try_lock(self.folder)
                if fd is None:
                    raise PlanError(
                        f"Plan {self.id} is being run by another process; act on it there "
                        "(or wait for it to end, then `resume` it here)."
                    )
                self._lock_fd = fd
                self.refresh()
            self._holders += 1

    def _release(self) -> None:
        with self._write:
            self._holders -= 1
            if self._holders == 0 and self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    @contextlib.contextmanager
    def _holding(self) -> Iterator[None]:
        """Hold the plan's lock for one decision (shared with this process's dispatcher)."""
        self._acquire()
        try:
            yield
        finally:
            self._release()

    def edit(self, spec: PlanSpec | Mapping[str, Any] | str) -> Plan:
        """Replace the plan's spec before it runs (a PlanSpec, its dict or its YAML)."""
        spec = _as_spec(spec).check(self.repo)
        with self._holding():
            if self.state not in ("draft", "planning"):
                raise PlanError(
                    f"Plan {self.id} is {self.state}: only a draft plan can be edited. "
                    "Restart a subtask instead (`restart NAME`), or write a new plan."
                )
            self._record("edited", {"spec": spec.to_dict()})
            if self.state == "planning":
                self._record("state", {"state": "draft", "reason": "written by hand"})
        return self

    def dispatch(
        self,
        *,
        parallel: int | None = None,
        stack: bool | None = None,
        model: str | None = None,
        effort: str | None = None,
        sandbox: str | None = None,
        env: Sequence[str] = (),
        policy: Mapping[str, Any] | None = None,
        runner: Any = None,
        cpus: int | float | str | None = None,
        memory: str | int | None = None,
    ) -> Plan:
        """Run the plan: start every subtask whose dependencies are satisfied, up to
        `parallel` at once, and go on starting them as their parents are approved (with
        `stack`, reviewed), in a thread of this process, which holds the plan's lock.
        Returns at once. The options apply to every subtask and are journaled, so
        `resume` uses them too. `runner`: where the subtasks' rounds run, as
        `TaskManager.submit` takes it (a Dask cluster's Client or address spreads them
        over its workers; an address is journaled, a Client is known to this process
        only); `cpus`, `memory`: what each subtask declares (resources.py)."""
        from .cluster import runner_for
        from .resources import declared

        if parallel is not None and (
            isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1
        ):
            raise PlanError(f"--parallel must be 1 or more, not {parallel!r}.")
        resources = declared(cpus, memory)  # malformed: refused before anything runs
        self.cluster = runner_for(runner) if runner is not None else None
        options = {
            k: v
            for k, v in {
                "model": model,
                "effort": effort,
                "sandbox": sandbox,
                "env": list(env),
                "policy": dict(policy or {}),
                "cluster": runner.strip() if isinstance(runner, str) else None,
                **resources,
            }.items()
            if v
        }
        with self._holding():
            if self.state != "draft":
                raise PlanError(
                    f"Plan {self.id} is {self.state}; only a draft plan is dispatched (a "
                    f"running plan no process runs any more is resumed: `plan.resume()`, "
                    f"`jupyter delegate plan resume {self.id}`)."
                )
            # The spec as journaled now (the lock's refresh): another process may have
            # edited the draft since this one last read it.
            spec = self._spec().check(self.repo)
            if parallel is not None or stack is not None:
                spec = spec.edited(
                    parallel=parallel if parallel is not None else spec.parallel,
                    stack=stack if stack is not None else spec.stack,
                )
            if spec != self.spec:
                self._record("edited", {"spec": spec.to_dict()})
            self._record("dispatched", {"options": options, "by": self.manager.requester()})
            self._record("state", {"state": "running", "reason": "dispatched"})
            self._run()
        return self

    def resume(self) -> Plan:
        """Take up a plan no process runs any more (its kernel died): re-attach its
        subtasks' tasks, resume those cut off, and go on dispatching."""
        if self._runner is not None and self._runner.is_alive():
            return self
        with self._holding():
            if self.state == "planning":
                self._take_proposal()
            if self.state in ("draft", "ready", "integrated", "cancelled", "planning"):
                return self
            if self.state != "running":
                raise PlanError(
                    f"Plan {self.id} is {self.state} ({self.reason}); there is nothing to resume."
                )
            for task in self.tasks().values():
                if task.state in (S.INTERRUPTED, S.PAUSED) or (
                    task.state == S.FAILED and task.transient
                ):
                    task.resume()
            self._record("resumed", {"by": self.manager.requester()})
            self._run()
        return self

    def restart(self, name: str) -> Task | None:
        """Start subtask `name` again from its parents' heads now: its task (flagged
        because a parent changed, or failed, or rejected) is archived first (rejected,
        its branch under refs/delegate/archive/). An approved subtask whose change
        conflicted at the integration starts again from the work merged before it (so
        its agent redoes the change on top of it); its old task stays merged into the
        plan's branch, and is not integrated. Returns the new task (None when its
        parents are not settled yet: it starts when they are)."""
        spec = self._spec()
        spec.subtask(name)
        with self._deciding, self._holding():
            started = self.started.get(name)
            if started is None:
                raise PlanError(f"Subtask {name!r} of plan {self.id} has not started yet.")
            task = self.manager.refresh(self.manager.get(started.task, self.repo))
            after = ""
            if task.state == S.MERGED:
                if self.failure.get("subtask") != name or not self.failure.get("partial"):
                    raise PlanError(
                        f"Subtask {name!r} is already approved (task {task.id}); only one "
                        "whose change conflicted at the integration restarts once approved."
                    )
                after = str(self.failure["partial"])
            if task.state.active:
                task.cancel()
                task.wait(timeout=60)
            if task.state in (S.REVIEW, S.INTERRUPTED, S.PAUSED, S.FAILED):
                task.reject("restarted from its parents' new heads")
            restarted = {"name": name, "old_task": task.id, "by": self.manager.requester()}
            # One step for the dispatcher here: it would start the subtask too, once ready.
            with self._write:
                self._record("restarted", {**restarted, "after": after} if after else restarted)
                if self.state not in ("running",):
                    self._record("state", {"state": "running", "reason": f"{name} restarted"})
                started_now = self._start_ready()
            if self._runner is None or not self._runner.is_alive():
                self._run()
        return started_now.get(name)

    def cancel(self) -> None:
        """Stop the plan: its planner and running subtasks are cancelled, none starts
        any more."""
        with self._deciding, self._holding(), self._write:  # the dispatcher starts nothing
            if self.state == "integrated":
                raise PlanError(
                    f"Plan {self.id} is already integrated into {self.base_branch} as "
                    f"{self.integration.get('commit', '')[:10]}; there is nothing to cancel."
                )
            if self.state == "cancelled":
                return
            working = list(self.tasks().values())
            if self.planner is not None:
                working.append(self.manager.get(self.planner, self.repo))
            for task in working:
                if task.state.active:
                    with contextlib.suppress(DelegateError):
                        task.cancel()
            self._record(
                "state",
                {
                    "state": "cancelled",
                    "reason": "cancelled by the user",
                    "by": self.manager.requester(),
                },
            )
        self._stop.set()

    def approve(self) -> str:
        """Integrate: merge every approved subtask into the base's tip in dependency
        order, as one integration branch `delegate/plan-ID`; run the plan's checks on it;
        then fast-forward the base branch to it. Returns the base's new commit. Refused,
        the base untouched, while a subtask is not approved, on a conflict (the files
        named) or failing checks (the commands named)."""
        spec = self._spec()
        with self._deciding, self._holding():
            if self.state == "integrated":
                raise PlanError(
                    f"Plan {self.id} is already integrated into {self.base_branch} as "
                    f"{self.integration.get('commit', '')[:10]}."
                )
            tasks = self.tasks()
            missing = [
                f"{n} ({tasks[n].state.value if n in tasks else 'not started'})"
                for n in spec.order()
                if n not in tasks or tasks[n].state != S.MERGED
            ]
            if missing:
                raise PlanError(
                    f"Plan {self.id} cannot be integrated yet: every subtask must be approved "
                    f"first, and these are not: {', '.join(missing)}. Nothing was merged."
                )
            return self._integrate(spec, tasks)

    def _integrate(self, spec: PlanSpec, tasks: Mapping[str, Task]) -> str:
        workspace = self.workspace
        tip = workspace.repo.commit(self.base_branch).hexsha
        branch = f"delegate/plan-{self.id}"
        current, merged_in = tip, list[str]()
        for name in spec.order():
            head = tasks[name].merged_commit
            assert head is not None
            try:
                current = workspace.merge_commits(
                    [current, head],
                    f"delegate plan {self.id}: integrate {name}\n\n"
                    f"{spec.subtask(name).goal}\n\nDelegate-Plan: {self.id}\n",
                )
            except MergeConflict as conflict:
                self._record(
                    "integration_failed",
                    {
                        "subtask": name,
                        "conflicts": conflict.files,
                        "merged": merged_in,
                        "partial": current,
                    },
                )
                raise PlanError(
                    f"Integrating plan {self.id} stopped at {name}: it conflicts with "
                    f"{', '.join(merged_in) or self.base_branch} in "
                    f"{', '.join(conflict.files)}. Nothing was merged into {self.base_branch}. "
                    f"Restart {name} (`restart {self.id} {name}`): its agent redoes it on top "
                    f"of {', '.join(merged_in) or 'the base'}."
                ) from None
            merged_in.append(name)
        workspace.set_branch(branch, current)
        results = self._check(current, spec.checks)
        failing = [r.command for r in results if not r.passed]
        if failing:
            self._record(
                "integration_failed",
                {"checks": [r.to_dict() for r in results], "commit": current, "branch": branch},
            )
            raise PlanError(
                f"Plan {self.id}'s checks fail on the integration of its subtasks "
                f"({branch}, {current[:10]}): {', '.join(failing)}. Nothing was merged into "
                f"{self.base_branch}. Restart the subtask at fault, or fix it on {branch}."
            )
        merged = workspace.fast_forward(self.base_branch, tip, current)
        self._record(
            "integrated",
            {
                "commit": merged.commit,
                "onto": merged.onto,
                "branch": branch,
                "order": merged_in,
                "checks": [r.to_dict() for r in results],
                "by": self.manager.requester(),
            },
        )
        self._record("state", {"state": "integrated", "reason": "approved"})
        self._stop.set()
        return merged.commit

    def _check(self, commit: str, commands: Sequence[str]) -> list[CheckResult]:
        from .rounds import run_checks_at

        if not commands:
            return []
        tier = str(self.options.get("sandbox") or self.manager.sandbox)
        logs = self.folder / "checks"
        return self.manager._run_sync(
            run_checks_at(
                self.workspace,
                commit,
                commands,
                tier,
                f"plan-{self.id}",
                logs,
                tuple(self.options.get("env", ())),
            )
        )

    # -- the dispatcher --------------------------------------------------------------------
    def _run(self) -> None:
        self._acquire()  # the dispatcher's hold, let go when it ends
        self._stop.clear()
        self._runner = threading.Thread(
            target=self._dispatch_loop, name=f"jupyter-delegate-plan-{self.id}", daemon=True
        )
        self._runner.start()

    def _dispatch_loop(self) -> None:
        last: Any = None
        try:
            while not self._stop.is_set():
                with self._write:
                    self.refresh()
                    if self.state != "running":
                        break
                    self._start_ready()
                    self._flag_stale()
                    now = [(s.state, s.stale, s.cost_usd) for s in self.statuses()]
                    if all(state == S.MERGED.value for state, _, _ in now):
                        self._record(
                            "state", {"state": "ready", "reason": "every subtask is approved"}
                        )
                if now != last:
                    last = now
                    self._changed_now()
                self._stop.wait(POLL_S)
        except Exception as exc:  # keep the journal's word on it; the plan can be resumed
            with contextlib.suppress(Exception):
                self._record("state", {"state": "failed", "reason": f"dispatcher: {exc}"})
        finally:
            self._release()
            self._changed_now()

    def _start_ready(self) -> dict[str, Task]:
        spec = self._spec()
        statuses = self.statuses()
        tasks = self.tasks()
        running = sum(1 for task in tasks.values() if task.state.active)
        started: dict[str, Task] = {}
        for status in statuses:
            if status.state != "ready" or running >= spec.parallel:
                continue
            task = self._start(spec, status.name, tasks)
            if task is not None:
                started[status.name] = task
                tasks[status.name] = task
                running += 1
        return started

    def _start(self, spec: PlanSpec, name: str, tasks: Mapping[str, Task]) -> Task | None:
        subtask = spec.subtask(name)
        parents = {p: self._head_of(tasks[p]) or "" for p in subtask.depends_on}
        heads = [parents[p] for p in subtask.depends_on] or [self.base_commit]
        if name in self.after:
            heads.append(self.after[name])
        try:
            start = self.workspace.merge_commits(
                heads, f"delegate plan {self.id}: start of {name}\n\nDelegate-Plan: {self.id}\n"
            )
        except MergeConflict as conflict:
            self._record(
                "state",
                {
                    "state": "failed",
                    "reason": (
                        f"{name}'s parents {', '.join(subtask.depends_on)} conflict in "
                        f"{', '.join(conflict.files)}: restart one of them"
                    ),
                },
            )
            return None
        budget = self._budget_left(spec, name, tasks)
        if budget is None:
            self._record(
                "state",
                {
                    "state": "failed",
                    "reason": (
                        f"the plan's budget (${spec.budget.get('max_usd')}) is spent; {name} "
                        "cannot start"
                    ),
                },
            )
            return None
        branch = f"delegate/plan-{self.id}-{name}"
        self.workspace.set_branch(branch, start)
        from .policy import Policy

        options = self.options
        task = self.manager.submit(
            spec.outcome_of(name, budget),
            repo=self.repo,
            base=branch,
            model=options.get("model"),
            effort=options.get("effort"),
            sandbox=options.get("sandbox"),
            env=list(options.get("env", ())),
            policy=Policy.from_dict(options["policy"]) if options.get("policy") else None,
            name=f"{self.id}-{name}",
            group={"kind": "plan", "id": self.id, "name": name},
            runner=getattr(self, "cluster", None) or options.get("cluster"),
            cpus=options.get("cpus"),
            memory=options.get("memory"),
        )
        self._record(
            "started", {"name": name, "task": task.id, "start_commit": start, "parents": parents}
        )
        return task

    def _budget_left(self, spec: PlanSpec, name: str, tasks: Mapping[str, Task]) -> Budget | None:
        """The subtask's budget, cut to what the plan's cap leaves (None: nothing left)."""
        budget = spec.budget_of(name)
        if "max_usd" not in spec.budget:
            return budget
        committed = self._retired_cost()
        for other, task in tasks.items():
            if other == name:
                continue
            spent = task.usage.cost_usd
            committed += max(spent, task.outcome.budget.max_usd) if task.state.active else spent
        left = float(spec.budget["max_usd"]) - committed
        if left < 0.01:
            return None
        return replace(budget, max_usd=round(min(budget.max_usd, left), 4))

    def _flag_stale(self) -> None:
        tasks = self.tasks()
        for name, started in list(self.started.items()):
            task = tasks.get(name)
            if task is None or task.state in (S.MERGED, S.REJECTED, S.CANCELLED):
                continue
            for parent, head in started.parents.items():
                now = self._head_of(tasks.get(parent))
                if now and now != head and self.flagged.get(name, {}).get(parent) != now:
                    self._record(
                        "flag",
                        {
                            "name": name,
                            "parent": parent,
                            "head": now,
                            "text": f"{parent} changed ({head[:10]} -> {now[:10]}) after {name} "
                            "started from it: restart it to start from the new head",
                        },
                    )

    # -- planning ------------------------------------------------------------------------
    def _take_proposal(self) -> None:
        """The planner's proposal, once its task has one, as the plan's spec."""
        if self.planner is None or self.spec is not None or self.state == "cancelled":
            return
        task = self.manager.refresh(self.manager.get(self.planner, self.repo))
        if task.state.active:
            return
        proposal = spec_of_proposal(task)
        if proposal is None:
            self._record(
                "state",
                {
                    "state": "failed",
                    "reason": (
                        f"the planner (task {task.id}) ended {task.state.value} without "
                        f"proposing a plan{': ' + task.error if task.error else ''}"
                    ),
                },
            )
            return
        spec = PlanSpec.from_dict(proposal)
        self._record("proposed", {"spec": spec.to_dict(), "by": task.id})
        self._record("state", {"state": "draft", "reason": "proposed by the agent"})
        if task.state == S.REVIEW:
            with contextlib.suppress(DelegateError):
                task.reject(f"its plan became plan {self.id}")

    def _await_proposal(self) -> None:
        try:
            task = self.manager.get(self.planner or "", self.repo)
            task.wait()
            with self._write:
                self._take_proposal()
        finally:
            self._release()  # the hold `propose` took
            self._changed_now()


# -- making and finding plans -----------------------------------------------------------
def plan_folder(workspace: Workspace, plan_id: str) -> Path:
    return workspace.state_dir / "plans" / plan_id


def plan_ids(workspace: Workspace) -> list[str]:
    folder = workspace.state_dir / "plans"
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if (p / "journal.jsonl").exists()]
    return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime)]


def is_plan_id(text: str) -> bool:
    return bool(re.fullmatch(r"p[0-9a-f]{6}", text.strip()))


def _allocate(workspace: Workspace) -> tuple[str, int]:
    """A new plan's id, its folder made and its lock held."""
    while True:
        plan_id = "p" + secrets.token_hex(3)
        folder = plan_folder(workspace, plan_id)
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        fd = _try_lock(folder)
        assert fd is not None
        return plan_id, fd


def _open(
    workspace: Workspace, manager: TaskManager, plan_id: str, fd: int, opening: Mapping[str, Any]
) -> Plan:
    journal = Journal(plan_folder(workspace, plan_id) / "journal.jsonl")
    journal.append("plan", {**opening, "created": datetime.now(UTC).isoformat(timespec="seconds")})
    journal.close()
    plan = manager.plan(plan_id, workspace.root)
    plan._lock_fd, plan._holders = fd, 1
    return plan


def create(
    spec: PlanSpec | Mapping[str, Any] | str,
    repo: str | os.PathLike[str] = ".",
    *,
    base: str | None = None,
    manager: TaskManager | None = None,
) -> Plan:
    """A draft plan from a spec written by hand (its YAML, dict, or a PlanSpec), checked
    first: a refused plan creates nothing."""
    from .manager import get_manager

    workspace = Workspace(repo)
    spec = _as_spec(spec).check(workspace.root)
    base_branch, base_commit = workspace.resolve_base(base or spec.base)
    plan_id, fd = _allocate(workspace)
    opening = {"spec": spec.to_dict(), "base_branch": base_branch, "base_commit": base_commit}
    plan = _open(workspace, manager or get_manager(), plan_id, fd, opening)
    plan._record("state", {"state": "draft", "reason": "written by hand"})
    plan._release()
    return plan


def propose(
    outcome: Outcome,
    repo: str | os.PathLike[str] = ".",
    *,
    base: str | None = None,
    model: str | None = None,
    effort: str | None = None,
    sandbox: str | None = None,
    manager: TaskManager | None = None,
) -> Plan:
    """Ask the agent for a plan: it reads the repository with read-only tools (plan mode,
    no writes) and answers with `propose_plan`, which the harness checks as `PlanSpec.check`
    does (the agent is told what is wrong, and fixes it). Returns the plan at once, in
    state `planning`; it becomes a draft when the proposal arrives (`wait`)."""
    from .manager import get_manager
    from .policy import Policy

    chosen = manager or get_manager()
    workspace = Workspace(repo)
    base_branch, base_commit = workspace.resolve_base(base)
    plan_id, fd = _allocate(workspace)
    try:
        task = chosen.submit(
            replace(outcome, checks=()),
            repo=workspace.root,
            base=base_branch,
            model=model,
            effort=effort,
            sandbox=sandbox,
            policy=Policy.from_rules((), (), (), "plan"),
            name=f"{plan_id}-planner",
            group={
                "kind": "plan",
                "id": plan_id,
                "role": "planner",
                "checks": list(outcome.checks),
                "budget": {"max_usd": outcome.budget.max_usd},
            },
        )
    except BaseException:  # nothing made: the refusal is the caller's to read
        os.close(fd)
        with contextlib.suppress(OSError):
            (plan_folder(workspace, plan_id) / "lock").unlink()
            plan_folder(workspace, plan_id).rmdir()
        raise
    opening = {
        "base_branch": base_branch,
        "base_commit": base_commit,
        "planner": task.id,
        "outcome": outcome.to_dict(),
    }
    plan = _open(workspace, chosen, plan_id, fd, opening)
    plan._record("state", {"state": "planning", "reason": f"the agent plans it (task {task.id})"})
    threading.Thread(
        target=plan._await_proposal, daemon=True, name=f"jupyter-delegate-plan-{plan.id}"
    ).start()
    return plan


def load(
    plan_id: str, repo: str | os.PathLike[str] = ".", manager: TaskManager | None = None
) -> Plan:
    from .manager import get_manager

    return (manager or get_manager()).plan(plan_id, repo)


def plans(repo: str | os.PathLike[str] = ".", manager: TaskManager | None = None) -> list[Plan]:
    from .manager import get_manager

    chosen = manager or get_manager()
    workspace = Workspace(repo)
    return [chosen.plan(p, workspace.root) for p in plan_ids(workspace)]


def check_proposal(data: Any, root: Path, budget: Mapping[str, float]) -> str | None:
    """What is wrong with a plan the agent proposed (None: nothing), in words for it."""
    try:
        spec = PlanSpec.from_dict({**_from_tool(data), "budget": dict(budget) or None})
    except PlanError as exc:
        return str(exc).replace("nothing was started", "fix them and propose again")
    problems = spec.problems(root)
    if problems:
        return _refusal(problems).replace("nothing was started", "fix them and propose again")
    return None


def _from_tool(data: Any) -> dict[str, Any]:
    """The propose_plan tool's input as the plan's dict form."""
    if not isinstance(data, Mapping):
        return {}
    if not isinstance(data.get("subtasks"), list):  # from_dict names what it is
        return {"plan": data.get("title") or "", "subtasks": data.get("subtasks")}
    subtasks = []
    for item in data["subtasks"]:
        if not isinstance(item, Mapping):
            subtasks.append(item)
            continue
        entry = {k: v for k, v in item.items() if k != "budget_usd"}
        if item.get("budget_usd"):
            entry["budget"] = {"max_usd": item["budget_usd"]}
        subtasks.append(entry)
    return {"plan": data.get("title") or "", "subtasks": subtasks}


def spec_of_proposal(task: Task) -> dict[str, Any] | None:
    """The plan's dict form from the planner task's proposal (with the user's checks and
    budget, kept in its group), or None."""
    proposal = task.proposed_plan
    if proposal is None:
        return None
    group = task.group or {}
    data = _from_tool(proposal)
    if group.get("checks"):
        data["checks"] = list(group["checks"])
    if group.get("budget"):
        data["budget"] = dict(group["budget"])
    return data


def _as_spec(spec: PlanSpec | Mapping[str, Any] | str) -> PlanSpec:
    if isinstance(spec, PlanSpec):
        return spec
    if isinstance(spec, str):
        return PlanSpec.from_yaml(spec)
    return PlanSpec.from_dict(spec)


def _try_lock(folder: Path) -> int | None:
    fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd
