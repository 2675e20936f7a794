"""`%delegate` and `%%delegate`: the notebook's way to state outcomes and decide on them.

    %%delegate --repo ../shop --max-usd 2 --name csv-export
    Add CSV export to the orders report.
    check: pytest -q tests/test_report.py
    scope: shop/report/, tests/

    %delegate Fix the flaky test in tests/test_io.py --repo ../shop
    %delegate list | board | show ID | approve ID [--squash] | reject ID [--reason R]
    %delegate request-changes ID TEXT | cancel ID | resume ID | wait ID|all [--timeout S]
    %delegate restore [NOTEBOOK]

IDs may also be task names. Magics are sugar: each one is a call on the Python API. Errors
raise a `DelegateError` (the cell fails, so nbclient and papermill see it). Re-running a
`%%delegate` cell whose task exists re-attaches to it; `--new` starts another agent.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import os
import shlex
import string
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, magics_class

from ..errors import DelegateError
from ..outcome import Budget, Outcome
from ..policy import Policy
from ..task import Task, TaskState
from .record import RecordDisplay, read_records

SUBCOMMANDS = (
    "list",
    "board",
    "show",
    "approve",
    "reject",
    "request-changes",
    "cancel",
    "resume",
    "wait",
    "restore",
    "help",
)


class MagicUsageError(DelegateError):
    """The magic's options or arguments are malformed."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # raise instead of exiting the kernel
        raise MagicUsageError(f"%delegate: {message}. `%delegate?` shows the usage.")


def _outcome_parser() -> _Parser:
    parser = _Parser(prog="%%delegate", add_help=False)
    parser.add_argument("goal", nargs="*")
    parser.add_argument("--repo", default=".")
    parser.add_argument("--base")
    parser.add_argument("--model")
    parser.add_argument("--max-usd", type=float)
    parser.add_argument("--max-steps", type=int)
    parser.add_argument("--max-minutes", type=float)
    parser.add_argument("--name")
    parser.add_argument("--new", action="store_true")
    parser.add_argument("--sandbox", choices=["auto", "bubblewrap", "none"])
    parser.add_argument("--mode", choices=["default", "ask", "plan", "auto"], default="default")
    parser.add_argument("--check", action="append", default=[])
    parser.add_argument("--scope", action="append", default=[])
    for kind in ("allow", "ask", "deny"):
        parser.add_argument(f"--{kind}", action="append", default=[])
    return parser


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """`{name}` takes a notebook variable (`{{` and `}}` escape braces)."""
    try:
        return string.Formatter().vformat(text, (), _Namespace(namespace))
    except KeyError as exc:
        raise MagicUsageError(
            f"{{{exc.args[0]}}} in the cell names no notebook variable. Define it first, or "
            "write {{ and }} for literal braces."
        ) from None
    except (ValueError, IndexError, AttributeError) as exc:
        raise MagicUsageError(f"Cannot fill in the cell's {{...}}: {exc}.") from None


class _Namespace(dict[str, Any]):
    def __init__(self, source: Mapping[str, Any]) -> None:
        super().__init__()
        self.source = source

    def __getitem__(self, key: str) -> Any:
        return self.source[key]


@magics_class
class DelegateMagics(Magics):
    """The %delegate magics and the notebook's view of its tasks."""

    def __init__(self, shell: Any, manager: Any = None) -> None:
        super().__init__(shell)
        from ..manager import get_manager

        self.manager = manager or get_manager()
        self.records: dict[str, RecordDisplay] = {}
        self.views: dict[str, Any] = {}

    @line_cell_magic
    def delegate(self, line: str, cell: str | None = None) -> Any:
        """Delegate an outcome to a coding agent, and review what it did.

        Cell form (the body is the outcome: free text is the goal, `check: CMD` lines are
        commands that must pass, `scope: PATH[, PATH]` lines the paths to change,
        `{name}` takes a notebook variable):

            %%delegate [--repo P] [--base REF] [--model M] [--max-usd N] [--max-steps N]
                       [--max-minutes N] [--name NAME] [--new] [--sandbox auto|none]
                       [--allow RULE] [--ask RULE] [--deny RULE]
                       [--mode default|ask|plan|auto]

        Line forms:

            %delegate GOAL [options]          start a task in one line
            %delegate list | board            the tasks of this notebook
            %delegate show ID                 a task's live view or review
            %delegate approve ID [--squash]   merge into the base branch
            %delegate reject ID [--reason R]  archive the branch
            %delegate request-changes ID TEXT the same agent continues
            %delegate cancel ID | resume ID
            %delegate wait ID|all [--timeout S]   block until review or end
            %delegate restore [NOTEBOOK]      re-attach the tasks recorded in a notebook

        ID is a task id or its --name. A cell whose task exists is re-attached, not
        started again; --new starts another agent.
        """
        words = shlex.split(line)
        if cell is None and words and words[0] in SUBCOMMANDS:
            return getattr(self, "_cmd_" + words[0].replace("-", "_"))(words[1:])
        return self._start(words, cell)

    # -- starting or re-attaching -----------------------------------------------------------
    def _start(self, words: list[str], cell: str | None) -> None:
        args = _outcome_parser().parse_args(words)
        budget = Budget.from_options(
            max_steps=args.max_steps, max_usd=args.max_usd, max_minutes=args.max_minutes
        )
        namespace = self.shell.user_ns if self.shell is not None else {}
        if cell is not None:
            if args.goal:
                raise MagicUsageError(
                    f"%%delegate: unexpected words on the magic line: {' '.join(args.goal)}. "
                    "Write the goal in the cell body; options go on the magic line."
                )
            outcome = Outcome.from_cell(interpolate(cell, namespace), budget=budget)
            outcome = Outcome(
                outcome.goal,
                outcome.checks + tuple(args.check),
                outcome.scope + tuple(args.scope),
                outcome.constraints,
                budget,
            )
        else:
            goal = interpolate(" ".join(args.goal), namespace)
            outcome = Outcome(goal, tuple(args.check), tuple(args.scope), budget=budget)
        existing = None if args.new else self._existing(outcome, args.repo, args.name)
        task = existing or self.manager.submit(
            outcome,
            repo=args.repo,
            base=args.base,
            model=args.model,
            sandbox=args.sandbox,
            policy=Policy.from_rules(args.allow, args.ask, args.deny, args.mode),
            name=args.name,
        )
        self._show(task)

    def _existing(self, outcome: Outcome, repo: str, name: str | None) -> Task | None:
        from ..workspace import Workspace

        root = Workspace(repo).root
        for task in reversed(self.manager.tasks()):
            same = task.outcome.to_dict() == outcome.to_dict() and task.repo == root
            if same and task.name == name:
                return task
        return None

    def _show(self, task: Task) -> None:
        from IPython import display as ipython_display

        from .views import TaskView

        show: Any = ipython_display.display
        previous = self.views.pop(task.id, None)
        if previous is not None:
            previous.close()
        view = TaskView(task, name=task.name)
        self.views[task.id] = view
        show(view)
        record = self.records.get(task.id)
        if record is None:
            record = RecordDisplay(task, name=task.name, notebook_dir=self._notebook_dir())
            self.records[task.id] = record
        record.show()

    # -- finding tasks ------------------------------------------------------------------------
    def _one(self, words: list[str], usage: str) -> Task:
        if not words:
            raise MagicUsageError(f"%delegate {usage}: which task? Give its id or name.")
        return self.manager.get(words[0])

    def _refresh(self, task: Task) -> None:
        record = self.records.get(task.id)
        if record is not None:
            record.refresh()

    # -- subcommands ----------------------------------------------------------------------------
    def _cmd_help(self, words: list[str]) -> None:
        method: Any = DelegateMagics.delegate
        print(inspect.getdoc(method))

    def _cmd_list(self, words: list[str]) -> list[dict[str, Any]]:
        rows = [
            {
                "id": t.id,
                "name": t.name,
                "state": str(t.state),
                "cost_usd": t.usage.cost_usd,
                "title": t.title,
            }
            for t in self.manager.tasks()
        ]
        return rows

    def _cmd_board(self, words: list[str]) -> Any:
        from .views import Board

        return Board(self.manager.tasks())

    def _cmd_show(self, words: list[str]) -> None:
        self._show(self._one(words, "show"))

    def _cmd_approve(self, words: list[str]) -> str:
        task = self._one(words, "approve ID [--squash]")
        commit = task.approve("squash" if "--squash" in words[1:] else "merge")
        self._refresh(task)
        return commit

    def _cmd_reject(self, words: list[str]) -> None:
        task = self._one(words, "reject ID [--reason R]")
        reason = " ".join(words[2:]) if words[1:2] == ["--reason"] else None
        task.reject(reason)
        self._refresh(task)

    def _cmd_request_changes(self, words: list[str]) -> None:
        task = self._one(words, "request-changes ID TEXT")
        task.request_changes(" ".join(words[1:]))

    def _cmd_cancel(self, words: list[str]) -> None:
        self._one(words, "cancel ID").cancel()

    def _cmd_resume(self, words: list[str]) -> None:
        task = self._one(words, "resume ID")
        task.resume()
        self._show(task)

    def _cmd_wait(self, words: list[str]) -> dict[str, str]:
        """Block until each task is in review, waiting, or has ended; then publish their
        records from this cell (so nbclient and papermill save the final state)."""
        timeout = None
        if "--timeout" in words:
            at = words.index("--timeout")
            try:
                timeout = float(words[at + 1])
            except (IndexError, ValueError):
                raise MagicUsageError("%delegate wait: --timeout takes seconds.") from None
            words = words[:at] + words[at + 2 :]
        if not words:
            raise MagicUsageError("%delegate wait: give a task id, a name, or `all`.")
        chosen = self.manager.tasks() if words[0] == "all" else [self.manager.get(w) for w in words]
        deadline = None if timeout is None else time.monotonic() + timeout
        states = {}
        for task in chosen:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            states[task.name or task.id] = str(task.wait(left))
            self._refresh(task)
        return states

    def _cmd_restore(self, words: list[str]) -> list[dict[str, Any]]:
        path = Path(words[0]) if words else notebook_path(self.shell)
        if path is None:
            raise MagicUsageError(
                "%delegate restore: this kernel does not know its notebook. Give its path: "
                "%delegate restore my-notebook.ipynb"
            )
        restored = restore(self.manager, path)
        return [{"id": t.id, "name": t.name, "state": str(t.state)} for t in restored]

    def _notebook_dir(self) -> Path | None:
        path = notebook_path(self.shell)
        return path.parent if path is not None else Path.cwd()


def notebook_path(shell: Any) -> Path | None:
    """The notebook this kernel runs, when the front end told it."""
    namespace = getattr(shell, "user_ns", {}) or {}
    vscode = namespace.get("__vsc_ipynb_file__")
    if vscode:
        return Path(vscode)
    session = os.environ.get("JPY_SESSION_NAME")
    if session and session.endswith(".ipynb"):
        path = Path(session)
        return path if path.is_absolute() else Path.cwd() / path
    return None


def restore(manager: Any, path: str | os.PathLike[str]) -> list[Task]:
    """Re-attach every task recorded in a saved notebook (read, never written)."""
    notebook = Path(path)
    if not notebook.is_file():
        raise MagicUsageError(f"{notebook} is not a notebook file; nothing was restored.")
    found: dict[str, Task] = {}
    for record in read_records(notebook):
        for candidate in _repo_candidates(record, notebook.parent):
            try:
                found[record["id"]] = manager.get(record["id"], candidate)
                break
            except DelegateError:
                continue
    return list(found.values())


def _repo_candidates(record: Mapping[str, Any], folder: Path) -> list[Path]:
    """Where a record's repository may be: beside the notebook first (a copied project
    keeps its layout), then where it was, then the notebook's folder and the cwd."""
    candidates = []
    if record.get("repo_relative"):
        candidates.append(folder / record["repo_relative"])
    candidates += [Path(record.get("repo", "")), folder, Path.cwd()]
    return [c for c in candidates if c.is_dir()]


def load_ipython_extension(ipython: Any) -> None:
    magics = DelegateMagics(ipython)
    ipython.register_magics(magics)
    path = notebook_path(ipython)
    if path is not None and path.is_file():
        with contextlib.suppress(DelegateError):  # no usable records: nothing to restore
            restore(magics.manager, path)


__all__ = ["DelegateMagics", "TaskState", "load_ipython_extension", "notebook_path", "restore"]
