"""jupyter-delegate: delegate software work to a coding agent from a notebook.

State an outcome (a goal, checks that must pass, a scope, a budget); an agent works on it
in its own git worktree and branch, through the official `anthropic` SDK, with commands
confined by bubblewrap; the harness runs the checks; you review, approve (merge), reject
(archive) or request changes.

    import jupyter_delegate as jd
    task = jd.delegate("Fix the discount bug", repo="../shop", checks=["pytest -q"])
    task.wait(); print(task.diff()); task.approve()

Everything the magics and the CLI do is a call on this API.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import DelegateError
from .outcome import Budget, Outcome
from .review import LineComment, ReviewRound
from .task import CheckResult, Task, TaskEvent, TaskState, Usage

if TYPE_CHECKING:
    from .best_of import Attempts
    from .context import Preference, SkillStatus
    from .manager import TaskManager
    from .planning import Plan, PlanSpec
    from .replaying import Replay

Repo = str | os.PathLike[str]

__version__ = "0.1.0"
__all__ = [
    "Budget",
    "CheckResult",
    "DelegateError",
    "LineComment",
    "Outcome",
    "ReviewRound",
    "Task",
    "TaskEvent",
    "TaskState",
    "Usage",
    "attempts",
    "delegate",
    "forget",
    "get_attempts",
    "get_plan",
    "get_task",
    "load_ipython_extension",
    "plan",
    "plans",
    "prefer",
    "preferences",
    "receive",
    "replay",
    "skills",
    "tasks",
    "trust_skill",
]


def delegate(
    goal: str,
    *,
    repo: str | os.PathLike[str] = ".",
    checks: Iterable[str] = (),
    scope: Iterable[str] = (),
    constraints: Iterable[str] = (),
    base: str | None = None,
    model: str | None = None,
    budget: Budget | dict[str, Any] | None = None,
    sandbox: str | None = None,
    allow: Iterable[str] = (),
    ask: Iterable[str] = (),
    deny: Iterable[str] = (),
    mode: str = "default",
    name: str | None = None,
    suggested_checks: bool = True,
    env: Iterable[str] = (),
    effort: str | None = None,
    compact_at: str | int | None = None,
    manager: TaskManager | None = None,
    runner: Any = None,
    cpus: int | float | None = None,
    memory: str | int | None = None,
) -> Task:
    """Start an agent on an outcome; returns the `Task` at once (it runs on the engine
    thread). `checks` are commands the harness runs when the agent is done; `scope` the
    paths it is expected to change; `budget` a `Budget` or a dict of its fields;
    `sandbox` "auto" (default), "bubblewrap" or "none" (explicitly unconfined);
    `allow` / `ask` / `deny` permission rules such as "Bash(pytest:*)" or "Edit(src/**)";
    `mode` "default", "ask" (every write and command asks), "plan" (read only) or "auto";
    `name` a short handle for the notebook and CLI; `suggested_checks=False` declines
    the test commands AGENTS.md offers when `checks` is empty; `env` variables for its
    commands and checks, "NAME" (its value from this environment) or "NAME=VALUE",
    besides the defaults and `[environment] pass_env` (credentials never pass); `model`
    the model id (default: $JUPYTER_DELEGATE_MODEL, else `[model] default` of
    ~/.jupyter/delegate/config.toml, else claude-sonnet-4-6), refused at once when the
    endpoint does not serve it; `effort` "low", "medium", "high" or "max", one the model
    takes (default: `[model] effort`, else the model's own); `compact_at` the input tokens
    (120000) or share of the model's window ("60%") at which the conversation is compacted
    (default: `[model] compact_at`, else "60%"); `runner` where its rounds run:
    "process" (a worker process of this machine, so the agents' work takes no turn of
    the kernel's interpreter from your cells), "kernel" (the kernel's own engine), a Dask
    cluster as a `distributed.Client` or its scheduler's address ("tcp://host:8786"; needs
    the `dask` extra), or any Runner (default: `[cluster] address` of the config when
    set, else `[notebook] runner` after `%load_ext`, "process" unless set); `cpus` and
    `memory` ("4GB", or bytes) what its checks need: on a cluster its rounds run only on
    workers declaring those resources (journaled in the task's first line; not enforced
    in this kernel)."""
    from .manager import get_manager
    from .policy import Policy

    outcome = _outcome(goal, checks, scope, constraints, budget)
    chosen = manager or get_manager()
    policy = Policy.from_rules(allow, ask, deny, mode)
    return chosen.submit(
        outcome,
        repo=repo,
        base=base,
        model=model,
        sandbox=sandbox,
        policy=policy,
        name=name,
        use_suggested_checks=suggested_checks,
        env=list(env),
        effort=effort,
        compact_at=compact_at,
        runner=runner,
        cpus=cpus,
        memory=memory,
    )


def plan(
    goal: str | None = None,
    *,
    spec: PlanSpec | dict[str, Any] | str | None = None,
    repo: Repo = ".",
    checks: Iterable[str] = (),
    scope: Iterable[str] = (),
    budget: Budget | dict[str, Any] | None = None,
    base: str | None = None,
    model: str | None = None,
    effort: str | None = None,
    sandbox: str | None = None,
    manager: TaskManager | None = None,
) -> Plan:
    """Break an outcome down into subtasks (planning.py). With `goal`, the agent plans it in
    plan mode (read-only) and proposes the subtasks; the plan returned is `planning`
    until the proposal arrives (`plan.wait(["draft"])`). With `spec` (the plan's YAML
    form, its dict, or a PlanSpec), the plan is written by hand, checked, and a draft at
    once. `checks` are the plan's own, run on the integration of its subtasks; `budget`
    caps their sum. Edit it (`plan.edit`), run it (`plan.dispatch(parallel=2)`),
    approve its subtasks as they come, then integrate (`plan.approve()`)."""
    from . import planning as plans

    if (goal is None) == (spec is None):
        raise DelegateError("plan() takes a goal (the agent plans it) or spec= (yours).")
    if spec is not None:
        return plans.create(spec, repo, base=base, manager=manager)
    outcome = _outcome(str(goal), checks, scope, (), budget)
    return plans.propose(
        outcome, repo, base=base, model=model, effort=effort, sandbox=sandbox, manager=manager
    )


def get_plan(plan_id: str, repo: Repo = ".") -> Plan:
    """A plan by its id ("p" and six hex digits), read from its journal."""
    from . import planning as plans

    return plans.load(plan_id, repo)


def plans(repo: Repo = ".") -> list[Plan]:
    """Every plan of `repo`, oldest first."""
    from . import planning as plans_

    return plans_.plans(repo)


def attempts(
    goal: str,
    count: int = 3,
    *,
    models: Iterable[str] = (),
    efforts: Iterable[str] = (),
    repo: Repo = ".",
    checks: Iterable[str] = (),
    scope: Iterable[str] = (),
    constraints: Iterable[str] = (),
    budget: Budget | dict[str, Any] | None = None,
    allow: Iterable[str] = (),
    ask: Iterable[str] = (),
    deny: Iterable[str] = (),
    mode: str = "default",
    manager: TaskManager | None = None,
    **options: Any,
) -> Attempts:
    """Best-of-N (best_of.py): `count` independent attempts at one outcome, in parallel,
    spread over `models` and `efforts` in turn. `ranked()` compares them (checks, then
    the smaller diff, then cost); approving one (`keep(n)`, or its task's `approve`)
    archives the others. `options`: what `delegate` takes besides (base, sandbox, env,
    name, ...)."""
    from . import best_of as attempts_
    from .policy import Policy

    outcome = _outcome(goal, checks, scope, constraints, budget)
    return attempts_.start(
        outcome,
        count,
        repo=repo,
        models=list(models),
        efforts=list(efforts),
        manager=manager,
        policy=Policy.from_rules(allow, ask, deny, mode),
        **options,
    )


def get_attempts(group: str, repo: Repo = ".") -> Attempts:
    """An attempt group by its id ("a" and six hex digits; `list --json` names it)."""
    from . import best_of as attempts_

    return attempts_.load(group, repo)


def tasks(repo: str | os.PathLike[str] | None = None) -> list[Task]:
    """Tasks known to this process, or every task of `repo` (from their journals)."""
    from .manager import get_manager

    return get_manager().tasks(repo)


def get_task(task_id: str, repo: str | os.PathLike[str] | None = None) -> Task:
    from .manager import get_manager

    return get_manager().get(task_id, repo)


def replay(task: Task | str | os.PathLike[str], repo: Repo | None = None) -> Replay:
    """What the agent did on `task`, step by step, from its journal (a `Task`, a task's id
    or name in `repo`, or a journal file): each step's words, tool call and result,
    permissions, cost so far, context size, compactions, and the worktree's diff as of
    that step (`Replay.diff_at(i)`). Works on a running task, a finished one, and one
    received from another machine."""
    from .replaying import replay as replay_

    return replay_(task, repo)


def receive(path: Repo, repo: Repo = ".", *, review_only: bool = False) -> Task:
    """Receive a task handed off elsewhere (the file `Task.handoff` wrote) into `repo`,
    after verifying its journal and branch, and continue it here; with `review_only`,
    just restore it. Raises a DelegateError naming what failed, nothing changed."""
    from .manager import get_manager

    return get_manager().receive(path, repo, review_only)


def prefer(text: str, *, repo: Repo | None = None) -> Preference:
    """Teach a preference once: user-wide, or for `repo` only. Later tasks' agents get it
    in their system prompt."""
    from .context import add_preference

    return add_preference(text, _state_dir(repo))


def preferences(repo: Repo | None = None) -> list[Preference]:
    """The user's preferences, and `repo`'s when given."""
    from .context import read_preferences

    return read_preferences(_state_dir(repo))


def forget(preference_id: str, *, repo: Repo | None = None) -> Preference:
    """Remove a preference by its id (see `preferences()`) or its exact text."""
    from .context import remove_preference

    return remove_preference(preference_id, _state_dir(repo))


def skills(repo: Repo | None = ".") -> list[SkillStatus]:
    """Every skill found (in `repo`, the user's folder, and bundled), with its trust:
    trusted, bundled, new, changed, malformed or shadowed."""
    from .context import scan

    return scan(_root(repo))


def trust_skill(name: str, *, repo: Repo | None = ".") -> SkillStatus:
    """Trust a skill as its files are now (recorded in its skills.lock)."""
    from .context.skills import find, scan, trust

    return trust(find(scan(_root(repo)), name))


def _outcome(
    goal: str,
    checks: Iterable[str],
    scope: Iterable[str],
    constraints: Iterable[str],
    budget: Budget | dict[str, Any] | None,
) -> Outcome:
    """An Outcome from the API's arguments: a text where a list is wanted is one item."""

    def items(value: Iterable[str]) -> tuple[str, ...]:
        return (value,) if isinstance(value, str) else tuple(value)

    if isinstance(budget, dict):
        budget = Budget.from_dict(budget)
    return Outcome(goal, items(checks), items(scope), items(constraints), budget or Budget())


def _root(repo: Repo | None) -> Any:
    return _folders(repo)[0] if repo is not None else None


def _state_dir(repo: Repo | None) -> Any:
    return _folders(repo)[1] if repo is not None else None


def _folders(repo: Repo) -> tuple[Any, Any]:
    """A repository's top folder and delegate state dir. Skills and preferences need no
    commit, so a fresh `git init` will do; anything else gets Workspace's clear error."""
    from pathlib import Path

    import git

    from .workspace import Workspace

    try:
        found = git.Repo(Path(repo).expanduser(), search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        found = None
    if found is None or found.bare:
        workspace = Workspace(repo)  # raises, saying what to do
        return workspace.root, workspace.state_dir
    return Path(found.working_dir).resolve(), Path(found.common_dir).resolve() / "delegate"


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    """The Jupyter server extension (server/): the REST API and the phone page."""
    return [{"module": "jupyter_delegate.server"}]


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext jupyter_delegate`: registers the %delegate magics."""
    from .notebook.magics import load_ipython_extension as load

    load(ipython)
