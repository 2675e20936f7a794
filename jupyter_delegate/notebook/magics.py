"""`%delegate` and `%%delegate`: the notebook's way to state outcomes and decide on them.

    %%delegate --repo ../shop --max-usd 2 --name csv-export
    Add CSV export to the orders report.
    check: pytest -q tests/test_report.py
    scope: shop/report/, tests/

    %delegate Fix the flaky test in tests/test_io.py --repo ../shop
    %delegate list | board | show ID | checks ID [N] | approve ID [--squash] [--force]
    %delegate reject ID [REASON...]
    %delegate request-changes ID TEXT | cancel ID | pause ID | resume ID
    %delegate handoff ID -o FILE | resume --from FILE [--review-only]
    %delegate wait ID|PLAN|all [--timeout S]
    %delegate replay ID [--repo P]         the task step by step (ReplayView)
    %delegate restore [NOTEBOOK]
    %delegate skills [list | show NAME | check [NAME] | trust NAME... | trust --all] [--repo P]
    %delegate prefer TEXT [--repo P]      %delegate prefs [remove ID] [--repo P]

Plans and best-of-N (planning.py, best_of.py):

    %%delegate --plan [options]           the agent breaks the outcome down into a plan
    (the outcome's lines)                 of subtasks, shown as a PlanView to edit and run
    %%delegate --attempts N [--models A,B] [--effort low,high]
    (the outcome's lines)                 N attempts side by side (AttemptsView): keep one
    %%delegate-plan [--repo P] [--parallel N] [--stack] [--run]
    (the plan's YAML)                     a plan written by hand, a draft (--run: run it)
    %delegate show PLAN | resume PLAN | approve PLAN | cancel PLAN | restart PLAN NAME

IDs may also be task names; a plan's id is "p" and six hex digits. Magics are sugar: each
one is a call on the Python API. The options are the command line's (options.py declares
them once): a word a subcommand does not know is an error that lists the ones it does.
Errors raise a `DelegateError` (the cell fails, so nbclient and papermill see it; a
notebook shows one red line). Re-running a `%%delegate` cell whose task (plan, attempts)
exists re-attaches to it; `--new` starts another.

`checks`, the skills and the preferences subcommands return small objects (`CheckOutputs`,
`SkillList`, `SkillCard`, `TrustReport`, `PreferenceList`) that a notebook shows as HTML
and a test can read; their text is the CLI's (cli.py), so both say the same thing.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import html
import inspect
import os
import shlex
import string
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from IPython.core.magic import Magics, cell_magic, line_cell_magic, magics_class

from .. import cli, options
from ..engine.catalogue import LEVELS
from ..errors import DelegateError, PlanError, RepoError
from ..outcome import Outcome
from ..task import CheckResult, Task, TaskState
from .header import cost_text, early_header
from .plan_record import PLAN_MIME, PlanRecordDisplay
from .record import RecordDisplay, read_notebook, read_records, recorded_cells

if TYPE_CHECKING:
    from ..best_of import Attempts
    from ..context import Preference, SkillStatus
    from ..manager import TaskManager
    from ..planning import Plan


# The comm on which the kernel asks our front end for the task records a notebook shows
# (labextension/src/restart.ts answers).
RECORDS_COMM = "jupyter_delegate.records"


class MagicUsageError(DelegateError):
    """The magic's options or arguments are malformed."""


def is_plan_id(text: str) -> bool:
    """`planning.is_plan_id`, planning imported at the first id asked about: it imports
    yaml, 40 ms of a `%load_ext` that then needs neither."""
    from ..planning import is_plan_id as plan_id

    return plan_id(text)


class _Parser(argparse.ArgumentParser):
    """A magic's own argument parser: a mistake raises a `MagicUsageError` (the cell fails
    with one line naming the word and the options there are) instead of exiting. Options
    are spelled out: `--scop` is not taken for `--scope`."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog=prog, add_help=False, allow_abbrev=False)

    def error(self, message: str) -> Any:  # raise instead of exiting the kernel
        known = options.option_strings(self)
        hint = ""
        if message.startswith("unrecognized arguments: "):
            words = message.split(": ", 1)[1].split()
            flags = [word for word in words if word.startswith("-")]
            message = (
                f"unknown option {', '.join(flags)}" if flags else f"unexpected {' '.join(words)!r}"
            )
            bare = {name.lstrip("-"): name for name in known}
            close = [
                bare[match]
                for flag in flags
                for match in difflib.get_close_matches(flag.lstrip("-"), list(bare), n=1)
            ]
            hint = f" Did you mean {' or '.join(close)}?" if close else ""
        valid = f" Its options: {', '.join(known)}." if known else " It takes no options."
        raise MagicUsageError(f"{self.prog}: {message}.{hint}{valid} `%delegate?` shows the usage.")


def _outcome_parser(prog: str) -> _Parser:
    parser = _Parser(prog)
    parser.add_argument("goal", nargs="*")
    parser.add_argument("--repo", default=".")
    options.add_submit_options(parser)
    parser.add_argument("--new", action="store_true")
    parser.add_argument("--plan", action="store_true")
    options.add_plan_options(parser)
    return parser


def _plan_cell_parser() -> _Parser:
    """`%%delegate-plan`'s options: where the plan runs and how its subtasks do."""
    parser = _Parser("%%delegate-plan")
    parser.add_argument("--repo", default=".")
    parser.add_argument("--base")
    options.add_plan_options(parser)
    parser.add_argument("--run", action="store_true")
    parser.add_argument("--model")
    parser.add_argument("--effort", choices=LEVELS)
    parser.add_argument("--sandbox", choices=options.SANDBOXES)
    parser.add_argument("--env", action="append", default=[], metavar="NAME[=VALUE]")
    parser.add_argument("--new", action="store_true")
    return parser


def _restart_parser(command: str) -> _Parser:
    parser = _Parser(f"%delegate {command}")
    parser.add_argument("id", metavar="PLAN")
    parser.add_argument("name", metavar="NAME")
    parser.add_argument("--repo")
    return parser


def _task_parser(command: str) -> _Parser:
    """A decision on a task, with the arguments the command line's takes."""
    parser = _Parser(f"%delegate {command}")
    options.add_task_arguments(command, parser)
    parser.add_argument("--repo")
    return parser


def _no_arguments(command: str) -> _Parser:
    return _Parser(f"%delegate {command}")


def _wait_parser(command: str) -> _Parser:
    parser = _Parser(f"%delegate {command}")
    parser.add_argument("ids", nargs="+", metavar="ID|all")
    parser.add_argument("--timeout", type=float, metavar="SECONDS")
    return parser


def _replay_parser(command: str) -> _Parser:
    parser = _Parser(f"%delegate {command}")
    parser.add_argument("id", metavar="ID")  # a task's id or name, its folder or journal
    parser.add_argument("--repo")
    return parser


def _restore_parser(command: str) -> _Parser:
    parser = _Parser(f"%delegate {command}")
    parser.add_argument("notebook", nargs="?")
    return parser


def _skills_parser(command: str) -> _Parser:
    parser = _Parser(f"%delegate {command}")
    parser.add_argument(
        "action", nargs="?", default="list", choices=["list", "show", "check", "trust"]
    )
    parser.add_argument("names", nargs="*")
    parser.add_argument("--repo")
    parser.add_argument("--all", action="store_true")
    return parser


def _prefer_parser(command: str) -> _Parser:
    parser = _Parser(f"%delegate {command}")
    parser.add_argument("text", nargs="*")  # none: prefer() says what it needs
    parser.add_argument("--repo")
    return parser


def _prefs_parser(command: str) -> _Parser:
    parser = _Parser(f"%delegate {command}")
    parser.add_argument("action", nargs="?", default="list", choices=["list", "remove"])
    parser.add_argument("id", nargs="?")
    parser.add_argument("--repo")
    return parser


# Each `%delegate` subcommand and its parser; the decisions on a task share theirs with
# the command line (options.TASK_ARGUMENTS).
SUBCOMMANDS: dict[str, Callable[[str], _Parser]] = {
    "list": _no_arguments,
    "board": _no_arguments,
    "show": _task_parser,
    "checks": _task_parser,
    "approve": _task_parser,
    "reject": _task_parser,
    "request-changes": _task_parser,
    "commit-edits": _task_parser,
    "cancel": _task_parser,
    "pause": _task_parser,
    "resume": _task_parser,
    "restart": _restart_parser,
    "handoff": _task_parser,
    "wait": _wait_parser,
    "replay": _replay_parser,
    "restore": _restore_parser,
    "skills": _skills_parser,
    "prefer": _prefer_parser,
    "prefs": _prefs_parser,
    "help": _no_arguments,
}


def split_line(line: str) -> list[str]:
    """The magic line's words, quoted as in a shell. A line whose quotes do not close (an
    apostrophe in free text: `%delegate prefer Don't mock the database`) is split on
    whitespace instead, so free text needs no quoting."""
    try:
        return shlex.split(line)
    except ValueError:
        return line.split()


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
        # Plans and attempt groups this kernel shows or restored, by id; and what each
        # cell started (a re-run of the cell re-attaches to it).
        self.plans: dict[str, Plan] = {}
        self.plan_records: dict[str, PlanRecordDisplay] = {}
        self.plan_options: dict[str, dict[str, Any]] = {}
        self.groups: dict[str, Attempts] = {}
        self.started: dict[tuple[str, ...], str] = {}

    @line_cell_magic
    def delegate(self, line: str, cell: str | None = None) -> Any:
        """Delegate an outcome to a coding agent, and review what it did.

        Cell form (the body is the outcome: free text is the goal, `check: CMD` lines are
        commands that must pass, `scope: PATH[, PATH]` lines the paths to change,
        `{name}` takes a notebook variable):

            %%delegate [--repo P] [--base REF] [--model M] [--max-usd N] [--max-steps N]
                       [--max-minutes N] [--name NAME] [--new] [--sandbox auto|none]
                       [--check-timeout S] [--command-timeout S] [--env NAME[=VALUE]]
                       [--allow RULE] [--ask RULE] [--deny RULE]
                       [--mode default|ask|plan|auto] [--no-suggested-checks]
                       [--check CMD] [--scope PATH] [--constraint TEXT]
                       [--effort low|medium|high|max] [--compact-at TOKENS|PERCENT]

        The options (`jupyter delegate run` takes the same) add to the cell's lines; a
        `constraint: TEXT` line is a rule stated to the agent. Scope entries are paths
        from the repository root: a file, a folder, or a glob (`src/*.py`, `**/x.py`).

        With no `check:` line, the test commands the repository's AGENTS.md names are
        run as the checks (the review says so); --no-suggested-checks declines them.

        Line forms:

            %delegate GOAL [options]          start a task in one line
            %delegate list | board            the tasks of this notebook
            %delegate show ID                 a task's live view or review
            %delegate checks ID [N]           each check (or the Nth) with its whole
                                              output
            %delegate approve ID [--squash] [--force]
                                              merge into the base branch; only a proven
                                              task (its checks all passed, no budget
                                              stopped it) unless --force, which the
                                              journal records
            %delegate reject ID [REASON...]   archive the branch (or --reason R)
            %delegate request-changes ID TEXT [--remember | --remember-everywhere]
                      [--comment FILE:LINE[-END]=TEXT]...
                                              the same agent continues; --remember also
                                              keeps TEXT as a preference for this
                                              repository, --remember-everywhere for all;
                                              --comment: on lines of the code, quoted
            %delegate commit-edits ID [-m MESSAGE]
                                              your edits in the task's worktree (`edit ID
                                              FILE` on the command line prints a path),
                                              committed as you; the checks run again
            %delegate cancel ID | pause ID | resume ID
                                              pause: stop where it is; resume: an
                                              interrupted or paused task, or one that
                                              failed for a transient cause
            %delegate wait ID|all [--timeout S]   block until review or end
            %delegate wait PLAN [--timeout S]     until the plan is ready or ended, or
                                              every subtask needs you
            %delegate replay ID [--repo P]    the task step by step: a slider over its
                                              steps, each with the agent's words, the
                                              call and its result, cost, context, and
                                              the worktree's diff (ID may also be a
                                              task's folder or journal.jsonl)
            %delegate restore [NOTEBOOK]      re-attach the tasks recorded in a notebook

        What the agent knows beyond the outcome (without --repo: the repository of the
        kernel's working directory, or outside any, your own and the bundled ones only):

            %delegate skills [list] [--repo P]     skills with source and trust
            %delegate skills show NAME             fields, files (sha256), instructions
            %delegate skills check [NAME]          why each is or is not loaded; diffs
            %delegate skills trust NAME... | --all record them in their skills.lock
            %delegate prefer TEXT [--repo P]       a preference for every later task
                                                   (user-wide; --repo: that repo only)
            %delegate prefs [remove ID] [--repo P] list preferences, or forget one

        A repository or user skill is loaded only once trusted; its allowed-tools are
        shown, never granted (your --allow/--ask/--deny rules decide).

        Plans and best-of-N:

            %%delegate --plan [--parallel N] [--stack] [options]
                                              the agent reads the repository (read only)
                                              and proposes subtasks; the plan's view shows
                                              it planning, then the plan to edit and run
            %%delegate --attempts N [--models A,B] [--effort LEVEL,LEVEL]
                                              N independent attempts at once (models and
                                              efforts spread in turn), ranked side by side;
                                              keeping one archives the others
            %delegate show PLAN | resume PLAN the plan's view (resume: take up a plan
                                              whose kernel died)
            %delegate approve PLAN            integrate: the approved subtasks merged into
                                              the base in dependency order, its checks run
            %delegate cancel PLAN | restart PLAN NAME
                                              restart: a stale, failed or rejected subtask
                                              started again from its parents' heads

        A plan written by hand is a `%%delegate-plan` cell (`%%delegate-plan?`).

        ID is a task id or its --name (--repo P: a task of that repository); PLAN a
        plan's id ("p" and six hex digits). A cell whose task (plan, attempts) exists is
        re-attached, not started again; --new starts another.
        A word a subcommand does not know fails the cell and lists the options it takes.
        """
        words = split_line(line)
        if cell is None and words and words[0] in SUBCOMMANDS:
            command = words[0]
            args = SUBCOMMANDS[command](command).parse_intermixed_args(words[1:])
            return getattr(self, "_cmd_" + command.replace("-", "_"))(args)
        return self._start(words, cell)

    # -- starting or re-attaching -----------------------------------------------------------
    def _start(self, words: list[str], cell: str | None) -> None:
        prog = "%%delegate" if cell is not None else "%delegate"
        args = _outcome_parser(prog).parse_intermixed_args(words)
        namespace = self.shell.user_ns if self.shell is not None else {}
        if cell is not None:
            if args.goal:
                raise MagicUsageError(
                    f"%%delegate: unexpected words on the magic line: {' '.join(args.goal)}. "
                    "Write the goal in the cell body; options go on the magic line."
                )
            outcome = options.outcome_from(args, Outcome.from_cell(interpolate(cell, namespace)))
        else:
            outcome = options.outcome_from(args, interpolate(" ".join(args.goal), namespace))
        spread = options.attempt_options(args)  # --models without --attempts: refused
        if args.plan and spread:
            raise MagicUsageError(
                f"{prog}: --plan and --attempts do not go together: a plan's subtasks each "
                "run once."
            )
        if not args.plan and (args.parallel is not None or args.stack is not None):
            raise MagicUsageError(
                f"{prog}: --parallel and --stack are for plans: add --plan (the agent plans "
                "it), or write the plan in a %%delegate-plan cell."
            )
        if args.plan:
            return self._start_plan(outcome, args)
        if spread:
            return self._start_attempts(outcome, args, spread)
        existing = None if args.new else self._existing(outcome, args.repo, args.name)
        task = existing or self.manager.submit(outcome, **options.submit_options(args))
        self._show(task)

    def _start_plan(self, outcome: Outcome, args: argparse.Namespace) -> None:
        """`%%delegate --plan`: the agent proposes the plan; its view shows it planning."""
        from ..planning import propose
        from ..workspace import Workspace

        effort = args.effort[0] if args.effort else None
        key = ("plan", str(Workspace(args.repo).root), repr(outcome.to_dict()))
        plan = None if args.new else self._started_plan(key)
        if plan is None:
            plan = propose(
                outcome,
                args.repo,
                base=args.base,
                model=args.model,
                effort=effort,
                sandbox=args.sandbox,
                manager=self.manager,
            )
            self.started[key] = plan.id
        self._show_plan(plan, _run_options(args, effort))

    def _start_attempts(
        self, outcome: Outcome, args: argparse.Namespace, spread: Mapping[str, Any]
    ) -> None:
        """`%%delegate --attempts N`: N tasks of one outcome, compared side by side."""
        from ..best_of import start
        from ..workspace import Workspace

        submit = options.submit_options(args)
        repo, policy = submit.pop("repo"), submit.pop("policy")
        key = (
            "attempts",
            str(Workspace(repo).root),
            repr(outcome.to_dict()),
            repr(sorted(spread.items())),
            str(args.name),
        )
        group = None if args.new else self.groups.get(self.started.get(key, ""))
        if group is None:
            group = start(
                outcome,
                spread["count"],
                repo=repo,
                models=spread["models"],
                efforts=spread["efforts"],
                manager=self.manager,
                policy=policy,
                **submit,
            )
            self.groups[group.id] = group
            self.started[key] = group.id
        self._show_attempts(group)

    def _show_attempts(self, group: Attempts) -> None:
        """The comparison, and each attempt's task record (kept in the notebook)."""
        from IPython import display as ipython_display

        from .attempts_view import AttemptsView

        show: Any = ipython_display.display
        previous = self.views.pop(group.id, None)
        if previous is not None:
            previous.close()
        view = AttemptsView(group)
        self.views[group.id] = view
        show(view)
        for task in group.tasks:
            record = self.records.get(task.id)
            if record is None:
                record = RecordDisplay(task, name=task.name, notebook_dir=self._notebook_dir())
                self.records[task.id] = record
            record.show()

    # -- plans --------------------------------------------------------------------------------
    @cell_magic("delegate-plan")  # type: ignore[arg-type]  # IPython types the name oddly
    def delegate_plan(self, line: str, cell: str) -> None:
        """A plan written by hand: the cell is its YAML (see `jupyter_delegate.planning`).

            %%delegate-plan [--repo P] [--base REF] [--parallel N] [--stack] [--run]
                            [--model M] [--effort LEVEL] [--sandbox auto|none]
                            [--env NAME[=VALUE]] [--new]
            plan: Add CSV export
            checks: [pytest -q]
            subtasks:
              - name: model
                goal: Add Report.to_rows()
                checks: [pytest -q tests/test_model.py]
              - name: csv
                goal: Write rows as CSV
                depends_on: [model]

        The plan is checked first (names, dependencies, cycles, scopes, budgets): a plan
        that cannot run fails the cell naming every problem, and nothing is created.
        Otherwise it is a draft, shown in its view (edit it there, run it, approve it);
        --run runs it at once. --parallel and --stack set the plan's `parallel:` and
        `stack:`; --model, --effort, --sandbox and --env apply to every subtask. Re-running
        the cell re-attaches to its plan; --new writes another.
        """
        from ..planning import PlanSpec, create
        from ..workspace import Workspace

        args = _plan_cell_parser().parse_intermixed_args(split_line(line))
        spec = PlanSpec.from_yaml(cell)
        if args.parallel is not None or args.stack is not None:
            spec = spec.edited(
                parallel=args.parallel if args.parallel is not None else spec.parallel,
                stack=args.stack if args.stack is not None else spec.stack,
            )
        key = ("plan-cell", str(Workspace(args.repo).root), cell.strip(), str(args.base))
        plan = None if args.new else self._started_plan(key)
        if plan is None:
            plan = create(spec, args.repo, base=args.base, manager=self.manager)
            self.started[key] = plan.id
        run_options = _run_options(args, args.effort)
        if args.run and plan.state == "draft":
            plan.dispatch(**run_options)
        self._show_plan(plan, run_options)

    def _started_plan(self, key: tuple[str, ...]) -> Plan | None:
        plan_id = self.started.get(key)
        return self.plans.get(plan_id) if plan_id else None

    def _show_plan(self, plan: Plan, run_options: Mapping[str, Any] | None = None) -> None:
        """The plan's view, and its record (kept in the notebook, updated in place)."""
        from IPython import display as ipython_display

        from .plan_view import PlanView

        self.plans[plan.id] = plan
        if run_options is not None:
            self.plan_options[plan.id] = dict(run_options)
        show: Any = ipython_display.display
        previous = self.views.pop(plan.id, None)
        if previous is not None:
            previous.close()
        view = PlanView(plan, run_options=self.plan_options.get(plan.id))
        self.views[plan.id] = view
        show(view)
        record = self.plan_records.get(plan.id)
        if record is None:
            record = PlanRecordDisplay(plan, notebook_dir=self._notebook_dir())
            self.plan_records[plan.id] = record
        record.show()

    def _plan(self, plan_id: str, repo: str | None) -> Plan:
        """A plan by id: one this kernel shows or restored, else from its journal in
        `repo` (default: the kernel's folder's repository)."""
        known = self.plans.get(plan_id)
        if known is not None and (repo is None or known.repo == _root_of(repo)):
            return known.refresh()
        try:
            plan = self.manager.plan(plan_id, repo or ".")
        except RepoError as exc:
            raise PlanError(
                f"No plan {plan_id} known to this kernel, and its repository is not found "
                f"({exc}). Give it: --repo PATH."
            ) from None
        self.plans[plan.id] = plan
        return plan

    def _refresh_plan(self, plan: Plan) -> None:
        record = self.plan_records.get(plan.id)
        if record is not None:
            record.refresh()

    def _existing(self, outcome: Outcome, repo: str, name: str | None) -> Task | None:
        from ..workspace import Workspace

        root = Workspace(repo).root
        for task in reversed(self.manager.tasks()):
            same = task.outcome.to_dict() == outcome.to_dict() and task.repo == root
            if same and task.name == name:
                return task
        return None

    def _show(self, task: Task) -> None:
        """The task's early header at once (header.py: drawn as soon as it arrives, before
        ipywidgets is imported in a new kernel), then its live view, then its record."""
        from IPython import display as ipython_display

        show: Any = ipython_display.display
        name = task.name or task.title
        early = show(early_header(task, name), raw=True, display_id=True)
        from .views import TaskView

        previous = self.views.pop(task.id, None)
        if previous is not None:
            previous.close()
        view = TaskView(task, name=task.name, early=early)
        self.views[task.id] = view
        show(view)
        record = self.records.get(task.id)
        if record is None:
            record = RecordDisplay(task, name=task.name, notebook_dir=self._notebook_dir())
            self.records[task.id] = record
        record.show()

    # -- finding tasks ------------------------------------------------------------------------
    def _task(self, args: argparse.Namespace) -> Task:
        return self.manager.get(args.id, args.repo)

    def _refresh(self, task: Task) -> None:
        """Publish the task's record from the running cell, and empty its early header if
        it has stopped working (a view that never drew: nbclient, papermill)."""
        record = self.records.get(task.id)
        if record is not None:
            record.refresh()
        view = self.views.get(task.id)
        if view is not None:
            view.empty_early_if_stopped()

    # -- subcommands ----------------------------------------------------------------------------
    def _cmd_help(self, args: argparse.Namespace) -> None:
        method: Any = DelegateMagics.delegate
        print(inspect.getdoc(method))

    def _cmd_list(self, args: argparse.Namespace) -> TaskTable:
        return TaskTable(self.manager.tasks(), empty="No tasks yet.")

    def _cmd_board(self, args: argparse.Namespace) -> Any:
        from .views import Board

        return Board(self.manager.tasks())

    def _cmd_show(self, args: argparse.Namespace) -> None:
        if is_plan_id(args.id):
            self._show_plan(self._plan(args.id, args.repo))
            return
        self._show(self._task(args))

    def _cmd_checks(self, args: argparse.Namespace) -> CheckOutputs:
        task = self._task(args)
        return CheckOutputs(task, cli.chosen_checks(task, args.number))

    def _cmd_approve(self, args: argparse.Namespace) -> str:
        if is_plan_id(args.id):
            if args.squash or args.force:
                raise MagicUsageError(
                    "%delegate approve PLAN integrates a plan (its subtasks each merged "
                    "already); --squash and --force are for a task."
                )
            plan = self._plan(args.id, args.repo)
            try:
                return plan.approve()
            finally:
                self._refresh_plan(plan)
        task = self._task(args)
        commit = task.approve("squash" if args.squash else "merge", force=args.force)
        self._refresh(task)
        return commit

    def _cmd_reject(self, args: argparse.Namespace) -> None:
        task = self._task(args)
        task.reject(options.reason_of(args))
        self._refresh(task)

    def _cmd_request_changes(self, args: argparse.Namespace) -> None:
        comments = options.comments_of(args)
        self._task(args).request_changes(
            options.feedback_of(args), remember=args.remember, comments=comments
        )

    def _cmd_commit_edits(self, args: argparse.Namespace) -> str:
        task = self._task(args)
        commit = task.commit_edits(args.message)
        self._refresh(task)
        return commit

    def _cmd_cancel(self, args: argparse.Namespace) -> None:
        if is_plan_id(args.id):
            plan = self._plan(args.id, args.repo)
            plan.cancel()
            self._refresh_plan(plan)
            return
        self._task(args).cancel()

    def _cmd_restart(self, args: argparse.Namespace) -> None:
        """A plan's subtask started again from its parents' heads (its task archived)."""
        if not is_plan_id(args.id):
            raise MagicUsageError(
                f"%delegate restart PLAN NAME starts a plan's subtask again; {args.id!r} is "
                "no plan id (a task is resumed: %delegate resume ID)."
            )
        plan = self._plan(args.id, args.repo)
        task = plan.restart(args.name)
        self._refresh_plan(plan)
        if task is None:
            print(f"{args.name} starts again once its parents are settled.")
        else:
            print(f"{args.name} started again from its parents' heads as task {task.id}.")

    def _cmd_pause(self, args: argparse.Namespace) -> None:
        self._task(args).pause()

    def _cmd_resume(self, args: argparse.Namespace) -> None:
        if args.from_file is not None and args.id is None:
            repo = args.repo or "."
            task = self.manager.receive(args.from_file, repo, review_only=args.review_only)
        elif args.id is None or args.from_file is not None or args.review_only:
            raise MagicUsageError(
                "%delegate resume ID continues a task here; %delegate resume --from FILE "
                "[--review-only] receives one handed off elsewhere. Give one of the two."
            )
        elif is_plan_id(args.id):
            plan = self._plan(args.id, args.repo)
            plan.resume()
            self._show_plan(plan)
            return
        else:
            task = self._task(args)
            task.resume()
        self._show(task)

    def _cmd_handoff(self, args: argparse.Namespace) -> None:
        written = self._task(args).handoff(args.output)
        print(f"Handed off to {written}: `jupyter delegate resume --from FILE` in another clone.")

    def _cmd_wait(self, args: argparse.Namespace) -> WaitResult:
        """Block until each task is in review, waiting, or has ended (a plan: until it is
        ready, has ended, or every subtask needs you); then publish their records from
        this cell (so nbclient and papermill save the final state)."""
        ids: list[str] = args.ids
        plans = [self._plan(i, None) for i in ids if is_plan_id(i)]
        ids = [i for i in ids if not is_plan_id(i)]
        chosen = self.manager.tasks() if ids == ["all"] else [self.manager.get(i) for i in ids]
        deadline = None if args.timeout is None else time.monotonic() + args.timeout
        for task in chosen:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            task.wait(left)
            self._refresh(task)
        for plan in plans:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            plan.wait(timeout=left)
            self._refresh_plan(plan)
        return WaitResult(chosen, plans)

    def _cmd_replay(self, args: argparse.Namespace) -> Any:
        from ..replaying import replay
        from .replay_view import ReplayView

        given = Path(args.id).expanduser()
        journal = (os.sep in args.id or given.suffix == ".jsonl") and given.exists()
        target: Task | str = args.id if journal else self.manager.get(args.id, args.repo)
        ReplayView(replay(target, args.repo)).show()
        return None

    def _cmd_restore(self, args: argparse.Namespace) -> TaskTable:
        path = Path(args.notebook) if args.notebook else notebook_path(self.shell)
        if path is None:
            raise MagicUsageError(
                "%delegate restore: this kernel does not know its notebook. Give its path: "
                "%delegate restore my-notebook.ipynb"
            )
        return TaskTable(self.reattach(path), empty=f"No task records in {path}.")

    # -- context: skills and preferences ------------------------------------------------------
    def _cmd_skills(self, args: argparse.Namespace) -> SkillList | SkillCard | TrustReport:
        from .. import skills, trust_skill
        from ..context.skills import find

        repo = cli.default_repo(args.repo)
        statuses = skills(repo)
        names: list[str] = args.names
        if args.action != "trust" and args.all:
            raise MagicUsageError("%delegate skills: --all goes with `trust`.")
        if args.action == "list":
            if names:
                raise MagicUsageError(
                    f"%delegate skills list takes no names; `%delegate skills show {names[0]}` "
                    "shows one."
                )
            return SkillList(statuses, note=_outside(repo))
        if args.action == "show":
            if len(names) != 1:
                raise MagicUsageError("%delegate skills show NAME: give one skill's name.")
            return SkillCard(find(statuses, names[0]))
        if args.action == "check":
            if len(names) > 1:
                raise MagicUsageError("%delegate skills check [NAME]: one name, or none for all.")
            chosen = [find(statuses, names[0])] if names else statuses
            return SkillList(chosen, note=_outside(repo), check=True)
        to_trust = cli.skills_to_trust(statuses, names, args.all)
        lines = cli.trust_lines(statuses, to_trust, args.all)
        trusted = [
            trust_skill(s.name, repo=repo) for s in to_trust if s.trust in ("new", "changed")
        ]
        return TrustReport(trusted, lines)

    def _cmd_prefer(self, args: argparse.Namespace) -> PreferenceList:
        from .. import prefer

        repo = args.repo
        preference = prefer(" ".join(args.text), repo=repo)
        where = "every repository" if repo is None else "this repository"
        return PreferenceList(
            [preference],
            heading=f"Remembered for {where}",
            files=[str(cli.preferences_file_of(repo))],
        )

    def _cmd_prefs(self, args: argparse.Namespace) -> PreferenceList:
        from .. import forget, preferences

        repo = cli.default_repo(args.repo)
        heading = "Preferences"
        if args.action == "remove":
            if not args.id:
                raise MagicUsageError(
                    "%delegate prefs remove ID: which one? `%delegate prefs` lists the ids."
                )
            gone = forget(args.id, repo=repo)
            heading = f"Forgot {gone.id} ({gone.scope}): {gone.text}. Still in force"
        elif args.id:
            raise MagicUsageError(
                f"%delegate prefs: unexpected {args.id!r}. To forget one: "
                f"`%delegate prefs remove {args.id}`."
            )
        files = [str(cli.preferences_file_of(None))]
        if repo is not None:
            files.append(str(cli.preferences_file_of(repo)))
        return PreferenceList(preferences(repo), heading=heading, files=files, note=_outside(repo))

    def reattach(self, path: str | os.PathLike[str]) -> list[Task]:
        """Re-attach the tasks recorded in the notebook at `path` and publish each one's
        record as it is now (a task its dead kernel left running is now interrupted): an
        update of the record already in the notebook, in the cell that holds it, never a
        second record. Later changes (a resume) update that record too."""
        notebook = Path(path)
        saved = _saved(notebook)  # read once: it is looked in four times
        tasks = restore_records(self.manager, read_records(saved), notebook.parent)
        own = notebook_path(self.shell)
        # The cells of another notebook's records are no cells of this one.
        mine = own is not None and own.resolve() == notebook.resolve()
        cells = recorded_cells(saved) if mine else {}
        self._publish_restored(tasks, cells, notebook.parent)
        plans = restore_plans(self.manager, read_records(saved, PLAN_MIME), notebook.parent)
        plan_cells = recorded_cells(saved, PLAN_MIME) if mine else {}
        self._publish_restored_plans(plans, plan_cells, notebook.parent)
        return tasks

    def ask_front_end(self) -> None:
        """Ask the notebook's front end for the task records it shows (our extension
        answers on the RECORDS_COMM comm): what it shows may not be saved yet, after a
        restart or in a notebook the kernel cannot name. Its answer re-attaches them as
        `reattach` does. Without our front end nobody answers, and nothing happens."""
        from comm import create_comm

        channel = create_comm(target_name=RECORDS_COMM, data={})
        channel.on_msg(self._on_front_end_records)

    def _on_front_end_records(self, message: Mapping[str, Any]) -> None:
        data = message["content"]["data"]
        folder = self._notebook_dir() or Path.cwd()
        for key in ("records", "plans"):  # the task records, then the plan records
            shown = data.get(key) or []
            records = [r for r in shown if isinstance(r, dict) and isinstance(r.get("id"), str)]
            cells = {r["id"]: r.get("cell_id") for r in records}
            if key == "records":
                tasks = restore_records(self.manager, records, folder)
                self._publish_restored(tasks, cells, folder)
            else:
                plans = restore_plans(self.manager, records, folder)
                self._publish_restored_plans(plans, cells, folder)

    def _publish_restored(
        self, tasks: Sequence[Task], cells: Mapping[str, str | None], folder: Path
    ) -> None:
        for task in tasks:
            record = self.records.get(task.id)
            if record is None:
                record = RecordDisplay(
                    task, name=task.name, notebook_dir=folder, cell_id=cells.get(task.id)
                )
                self.records[task.id] = record
            record.refresh()

    def _publish_restored_plans(
        self, plans: Sequence[Plan], cells: Mapping[str, str | None], folder: Path
    ) -> None:
        """Each restored plan's record as its journals say now (a plan its dead kernel was
        running says it is cut off), an update of the record the notebook holds."""
        for plan in plans:
            self.plans.setdefault(plan.id, plan)
            record = self.plan_records.get(plan.id)
            if record is None:
                record = PlanRecordDisplay(plan, notebook_dir=folder, cell_id=cells.get(plan.id))
                self.plan_records[plan.id] = record
            record.refresh()

    def _notebook_dir(self) -> Path | None:
        path = notebook_path(self.shell)
        return path.parent if path is not None else Path.cwd()


def _run_options(args: argparse.Namespace, effort: str | None) -> dict[str, Any]:
    """What a plan's Run passes to `Plan.dispatch`, from a magic's options."""
    given = {
        "parallel": args.parallel,
        "stack": args.stack,
        "model": args.model,
        "effort": effort,
        "sandbox": args.sandbox,
        "env": list(args.env or ()),
    }
    return {k: v for k, v in given.items() if v not in (None, [])}


def _root_of(repo: str) -> Path:
    from ..workspace import Workspace

    return Workspace(repo).root


def _outside(repo: str | None) -> str:
    return (
        ""
        if repo is not None
        else (
            "Not in a git repository: the user's own and bundled ones only (--repo P for a "
            "repository's)."
        )
    )


# -- what the skills and preferences subcommands return ------------------------------------------
TRUST_COLOURS = {
    "trusted": "#15803d",
    "bundled": "#1d4ed8",
    "new": "#b45309",
    "changed": "#c2410c",
    "malformed": "#b91c1c",
    "shadowed": "#6b7280",
}
_TABLE = 'style="border-collapse:collapse;text-align:left"'
_CELL = 'style="padding:2px 8px;vertical-align:top;text-align:left"'


def trust_badge(trust: str) -> str:
    colour = TRUST_COLOURS.get(trust, "#6b7280")
    return (
        f'<span class="jd-trust jd-trust-{html.escape(trust)}" style="background:{colour};'
        f'color:white;border-radius:4px;padding:0 6px">{html.escape(trust)}</span>'
    )


def _note(text: str) -> str:
    return f"<p><em>{html.escape(text)}</em></p>" if text else ""


def _text_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    )


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """`rows` hold HTML already escaped."""
    head = "".join(f"<th {_CELL}>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td {_CELL}>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table {_TABLE}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class TaskTable(list[dict[str, Any]]):
    """Tasks as a table (`%delegate list`, `%delegate restore`): a notebook shows the
    table; the value is still a list of rows (id, name, state, verdict, forced, cost_usd,
    title) a cell can read."""

    HEADER = ("id", "name", "state", "cost", "title")

    def __init__(self, tasks: Sequence[Task], empty: str = "No tasks.") -> None:
        super().__init__(
            {
                "id": t.id,
                "name": t.name,
                "state": str(t.state),
                "verdict": t.verdict,
                "forced": t.forced,
                "cost_usd": t.usage.cost_usd,
                "title": t.title,
            }
            for t in tasks
        )
        self.tasks = list(tasks)
        self.empty = empty

    def _cells(self, task: Task) -> list[str]:
        return [task.id, task.name or "", cli.state_text(task), _cost(task), task.title]

    def __repr__(self) -> str:
        if not self.tasks:
            return self.empty
        return _text_table(self.HEADER, [self._cells(t) for t in self.tasks])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        from .record import badge

        if not self.tasks:
            return _note(self.empty)
        rows = [
            [
                f"<code>{html.escape(t.id)}</code>",
                html.escape(t.name or ""),
                badge(t.state, t.verdict) + (" (forced)" if t.forced else ""),
                html.escape(_cost(t)),
                html.escape(t.title),
            ]
            for t in self.tasks
        ]
        return f'<div class="jd-task-table">{_html_table(self.HEADER, rows)}</div>'


class WaitResult(dict[str, str]):
    """What `%delegate wait` waited for: each task's name (or id) and its state now, shown
    as a table."""

    def __init__(self, tasks: Sequence[Task], plans: Sequence[Plan] = ()) -> None:
        super().__init__((t.name or t.id, str(t.state)) for t in tasks)
        self.update((p.id, p.state) for p in plans)
        self.table = TaskTable(tasks, empty="" if plans else "No tasks to wait for.")
        self.plans = [f"plan {p.id} ({p.title}): {p.state}" for p in plans]

    def __repr__(self) -> str:
        return "\n".join(line for line in [*self.plans, repr(self.table)] if line)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        plans = "".join(_note(line) for line in self.plans)
        return plans + (self.table._repr_html_() if self.table.tasks or not plans else "")


def _cost(task: Task) -> str:
    return cost_text(task, short=True)


class CheckOutputs:
    """A task's checks, each with its whole output (`%delegate checks ID [N]`)."""

    def __init__(self, task: Task, chosen: Sequence[tuple[int, CheckResult]]) -> None:
        self.task = task
        self.chosen = list(chosen)

    def __repr__(self) -> str:
        return cli.checks_text(self.task, self.chosen).rstrip("\n")

    def _repr_html_(self) -> str:
        from ..check_output import check_log, printable, whole_output

        e = html.escape
        task, folder = self.task, self.task.folder
        parts = [f"<p><b>{e(task.title)}</b> <code>{e(task.id)}</code> ({e(str(task.state))})</p>"]
        if not task.checks:
            parts.append(_note(f"No check results: {cli.no_checks_reason(task)}."))
        for number, check in self.chosen:
            kept = (
                "its whole output"
                if check_log(check, folder) is not None
                else "its output as the journal keeps it (the last 4000 characters at most)"
            )
            output = printable(whole_output(check, folder))
            parts.append(
                f"<p>check {number} of {len(task.checks)}: <code>{e(cli.check_line(check))}"
                f"</code><br><small>{kept}</small></p>"
                f'<pre style="max-height:40em;overflow:auto">{e(output) or "(it printed nothing)"}'
                "</pre>"
            )
        return f'<div class="jd-check-outputs">{"".join(parts)}</div>'


class SkillList:
    """Skills with their trust (`%delegate skills` / `skills check`): a table with trust
    badges, why each unloaded one is not loaded, and a changed one's diff."""

    def __init__(
        self, statuses: Sequence[SkillStatus], note: str = "", check: bool = False
    ) -> None:
        self.statuses = list(statuses)
        self.note = note
        self.check = check

    @property
    def ok(self) -> bool:
        """Whether every skill is trusted or bundled (a shadowed one does not count)."""
        return not self.needs_review

    @property
    def needs_review(self) -> list[SkillStatus]:
        return [s for s in self.statuses if s.trust in cli.NEEDS_REVIEW]

    def __repr__(self) -> str:
        lines = [self.note] if self.note else []
        if self.check:
            for status in self.statuses:
                lines += cli.skill_check(status)
        else:
            lines += cli.skill_rows(self.statuses)
        if self.needs_review:
            lines.append(
                "Not loaded until reviewed: "
                + ", ".join(s.name for s in self.needs_review)
                + ". `%delegate skills show NAME`, then `%delegate skills trust NAME`."
            )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        rows = []
        for status in self.statuses:
            rows.append(
                f'<tr><td {_CELL}><code style="white-space:nowrap">{html.escape(status.name)}'
                "</code></td>"
                f"<td {_CELL}>{html.escape(status.source)}</td>"
                f"<td {_CELL}>{trust_badge(status.trust)}</td>"
                f"<td {_CELL}>{self._about(status)}</td></tr>"
            )
        footer = ""
        if self.needs_review:
            names = ", ".join(s.name for s in self.needs_review)
            footer = _note(
                f"Not loaded until reviewed: {names}. Read one with `%delegate skills show "
                "NAME`, then `%delegate skills trust NAME`."
            )
        elif self.check:
            footer = _note(f"All {len(self.statuses)} checked: trusted or bundled.")
        head = "".join(f"<th {_CELL}>{h}</th>" for h in ("skill", "source", "trust", "about"))
        return (
            f'<div class="jd-skills">{_note(self.note)}<table {_TABLE}><thead><tr>{head}</tr>'
            f"</thead><tbody>{''.join(rows)}</tbody></table>{footer}</div>"
        )

    @staticmethod
    def _about(status: SkillStatus) -> str:
        if status.trust == "malformed":
            return f"<code>{html.escape(status.problem)}</code>"
        parts = [html.escape(status.skill.description if status.skill else "")]
        if not status.loadable:
            parts.append(f"<br><small>{html.escape(status.explain())}</small>")
        if status.trust == "changed":
            parts.append(
                "<details><summary>what changed since it was trusted</summary>"
                f"<pre>{html.escape(status.diff())}</pre></details>"
            )
        return "".join(parts)


class SkillCard:
    """One skill (`%delegate skills show NAME`): fields, trust, files, instructions."""

    def __init__(self, status: SkillStatus) -> None:
        self.status = status

    def __repr__(self) -> str:
        return "\n".join(cli.skill_card(self.status))

    def _repr_html_(self) -> str:
        status, skill = self.status, self.status.skill
        e = html.escape
        head = (
            f"<h4><code>{e(status.name)}</code> {trust_badge(status.trust)} "
            f"<small>{e(status.source)} skill, {e(str(status.folder))}</small></h4>"
        )
        if not status.loadable:
            head += _note(status.explain())
        if skill is None:
            return f'<div class="jd-skill">{head}</div>'
        fields = [("description", e(skill.description))]
        if skill.license:
            fields.append(("license", e(skill.license)))
        if skill.compatibility:
            fields.append(("compatibility", e(skill.compatibility)))
        if skill.metadata:
            pairs = ", ".join(f"{k}={v}" for k, v in skill.metadata.items())
            fields.append(("metadata", e(pairs)))
        tools = " ".join(skill.allowed_tools)
        fields.append(
            (
                "allowed-tools",
                f"<code>{e(tools)}</code> <small>({e(cli.ALLOWED_TOOLS_NOTE)})</small>"
                if tools
                else "none declared",
            )
        )
        fields += [("warning", e(warning)) for warning in skill.warnings]
        rows = "".join(f"<tr><th {_CELL}>{k}</th><td {_CELL}>{v}</td></tr>" for k, v in fields)
        drift = {path: label for label, paths in status.drift() for path in paths}
        files = "".join(
            f"<tr><td {_CELL}><code>{e(digest[:12])}</code></td><td {_CELL}>{e(path)}"
            f"{' <em>(' + e(drift[path]) + ' since trusted)</em>' if path in drift else ''}"
            "</td></tr>"
            for path, digest in sorted(skill.files.items())
        )
        return (
            f'<div class="jd-skill">{head}<table {_TABLE}>{rows}</table>'
            f"<p>files (sha256)</p><table {_TABLE}>{files}</table>"
            f"<pre>{e(skill.body())}</pre></div>"
        )


class TrustReport:
    """What `%delegate skills trust` recorded, and where."""

    def __init__(self, trusted: Sequence[SkillStatus], notes: Sequence[str] = ()) -> None:
        self.trusted = list(trusted)
        self.notes = list(notes)

    @property
    def lines(self) -> list[str]:
        return [*self.notes, *(cli.trusted_line(s) for s in self.trusted)]

    def __repr__(self) -> str:
        return "\n".join(self.lines)

    def _repr_html_(self) -> str:
        items = "".join(f"<li>{html.escape(line)}</li>" for line in self.lines)
        return f'<ul class="jd-trust-report">{items}</ul>'


class PreferenceList:
    """Preferences with their ids and scope (`%delegate prefs`, `%delegate prefer`)."""

    def __init__(
        self,
        preferences: Sequence[Preference],
        heading: str = "Preferences",
        files: Sequence[str] = (),
        note: str = "",
    ) -> None:
        self.preferences = list(preferences)
        self.heading = heading
        self.files = list(files)
        self.note = note

    def __repr__(self) -> str:
        lines = [self.note] if self.note else []
        lines.append(f"{self.heading}:" + ("" if self.preferences else " none"))
        lines += [cli.preference_line(p) for p in self.preferences]
        lines += [f"({path})" for path in self.files]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        e = html.escape
        rows = "".join(
            f"<tr><td {_CELL}><code>{e(p.id)}</code></td><td {_CELL}>{e(p.scope)}</td>"
            f"<td {_CELL}>{e(p.text)}</td></tr>"
            for p in self.preferences
        )
        body = f"<table {_TABLE}>{rows}</table>" if rows else "<p>none</p>"
        files = "".join(f"<br><small>{e(path)}</small>" for path in self.files)
        return (
            f'<div class="jd-preferences">{_note(self.note)}<p><b>{e(self.heading)}</b></p>'
            f"{body}<p>{files}</p></div>"
        )


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
    return restore_records(manager, read_records(_saved(path)), Path(path).parent)


def _saved(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The saved notebook at `path`, read."""
    if not Path(path).is_file():
        raise MagicUsageError(f"{path} is not a notebook file; nothing was restored.")
    return read_notebook(path)


def restore_records(manager: Any, records: Iterable[Mapping[str, Any]], folder: Path) -> list[Task]:
    """The tasks of these records (`id`, `repo`, `repo_relative`), found by `manager`; a
    record whose repository or journal is nowhere to be found is left out."""
    found: dict[str, Task] = {}
    for record in records:
        for candidate in _repo_candidates(record, folder):
            try:
                found[record["id"]] = manager.get(record["id"], candidate)
                break
            except DelegateError:
                continue
    return list(found.values())


def restore_plans(manager: Any, records: Iterable[Mapping[str, Any]], folder: Path) -> list[Plan]:
    """The plans of these plan records (`id`, `repo`, `repo_relative`), read from their
    journals; a record whose repository or plan is nowhere to be found is left out."""
    found: dict[str, Plan] = {}
    for record in records:
        for candidate in _repo_candidates(record, folder):
            try:
                found[record["id"]] = manager.plan(record["id"], candidate)
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
    use_notebook_runner(magics.manager)
    path = notebook_path(ipython)
    if path is not None and path.is_file():
        with contextlib.suppress(DelegateError):  # no usable records: nothing to restore
            magics.reattach(path)
    magics.ask_front_end()


def use_notebook_runner(manager: TaskManager) -> None:
    """The kernel's rounds run where `[notebook] runner` says: by default in a worker
    process (runner.ProcessRunner), started now so the first task need not wait for it;
    a manager given a client object keeps its rounds in the kernel (the client cannot
    go to another process). A malformed setting is one line, and the kernel keeps them."""
    from ..runner import ProcessRunner, notebook_runner

    try:
        named = notebook_runner()
    except DelegateError as exc:
        print(f"jupyter-delegate: {exc} Tasks run in the kernel meanwhile.", file=sys.stderr)
        return
    if named != "process" or manager._client is not None:
        return
    if not isinstance(manager.runner, ProcessRunner):
        manager.runner = manager.process_runner()
    manager.process_runner().warm()


__all__ = [
    "CheckOutputs",
    "DelegateMagics",
    "PreferenceList",
    "SkillCard",
    "SkillList",
    "TaskState",
    "TaskTable",
    "TrustReport",
    "WaitResult",
    "load_ipython_extension",
    "notebook_path",
    "restore",
    "restore_plans",
    "restore_records",
]
