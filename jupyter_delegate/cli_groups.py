"""Plans and best-of-N attempts on the command line, over plan.py and attempts.py.

    run GOAL --attempts N [--models A,B] [--effort low,high] [--approve] [--json]
    plan FILE.yaml [--repo P] [--parallel N] [--stack] [--approve] [--json] [--yes]
    plan --from-goal GOAL [--check CMD] [--max-usd N] [--model M] ... [--run | --yes]
    plan show ID [--json | --yaml]     plan list [--json]
    plan run ID [FILE.yaml] ...        plan resume ID ...      plan restart ID NAME ...
    plan approve ID                    plan cancel ID

`run --attempts` follows every attempt at once (each line behind its number, `#2`),
then prints them ranked. A plan runs in the foreground: its dispatcher is a thread of
this process, which holds the plan's lock, starts each subtask as its parents are
approved (from anywhere: `jupyter delegate approve ID` in another terminal, a notebook,
the phone page) and prints each subtask's transitions, one line each. It stops when the
plan is ready (with `--approve`: integrated), failed or cancelled, or when nothing a
reviewer does can move it on (a failed or rejected subtask blocks the rest: restart
it). Ctrl-C leaves the plan as it is, for `plan resume ID`.

`plan ACTION ...` is told from `plan FILE.yaml` by its first word (ACTIONS): the
parsers of the actions are commands of their own (`plan-show`, ...), hidden from the
command list, to which `main` turns `plan show` (`route`).

Not here: the plan's rules (plan.py), the ranking of attempts (attempts.py), and what the
CLI prints of one task (cli.py, which this module borrows from).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from .check_output import printable
from .errors import DelegateError, PlanError, UsageError
from .options import (
    add_plan_options,
    add_submit_options,
    attempt_options,
    outcome_from,
    submit_options,
)
from .task import Task, TaskState

if TYPE_CHECKING:
    from .best_of import Standing
    from .manager import TaskManager
    from .planning import Plan, Status

S = TaskState
EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130
ACTIONS = ("show", "run", "resume", "approve", "restart", "cancel", "list")
POLL_S = 0.25
# What a subtask does without a human: runs, or is about to start.
MOVING = (S.QUEUED.value, S.RUNNING.value, S.WAITING.value, "ready")


def route(argv: Sequence[str]) -> list[str]:
    """`plan show ID ...` -> `plan-show ID ...`: the action's own parser."""
    argv = list(argv)
    if len(argv) >= 2 and argv[0] == "plan" and argv[1] in ACTIONS:
        return [f"plan-{argv[1]}", *argv[2:]]
    return argv


def shown_name(command: str) -> str:
    """A command as the user typed it (`plan show`, not `plan-show`)."""
    return command.replace("plan-", "plan ", 1)


# -- the parsers -----------------------------------------------------------------------------
PLAN_EPILOG = """\
actions on a plan that exists (ID: p and six hex digits, as `plan list` shows):
  plan show ID [--json | --yaml]     the board: each subtask's state, task, cost, checks,
                                     why it waits; the graph as text
  plan run ID [FILE.yaml]            run a draft (with FILE: its spec replaced first)
  plan resume ID                     take up a plan whose process died (or was stopped)
  plan restart ID NAME               start subtask NAME again from its parents' heads
  plan approve ID                    integrate: every subtask approved, merged into the
                                     base, the plan's checks run there, the base moved
  plan cancel ID                     stop it; running subtasks are cancelled
  plan list [--json]                 the repository's plans

The plan file (YAML):
  plan: Add CSV export               # its title
  checks: [pytest -q]                # run on the integration of every subtask
  budget: {max_usd: 6}               # caps the sum of the subtasks' budgets
  parallel: 2                        # subtasks running at once
  subtasks:
    - name: model
      goal: Add Report.to_rows()
      checks: [pytest -q tests/test_model.py]
      scope: [src/shop/model.py]
    - name: csv
      goal: Write rows as CSV
      depends_on: [model]

Subtasks in review are approved from anywhere (`jupyter delegate approve TASK`, a
notebook, the phone page); this process starts their dependents. Ctrl-C leaves the plan
as it is: `jupyter delegate plan resume ID` takes it up.
"""


def add_commands(
    sub: Any,
    command: Callable[..., argparse.ArgumentParser],
    yes_flag: Callable[[argparse.ArgumentParser], None],
) -> None:
    """`plan` (a file or --from-goal) and its actions, on the CLI's subparsers."""
    plan = command(
        "plan",
        "run a plan of subtasks as a graph: FILE.yaml, or --from-goal GOAL (the agent "
        "plans it); `plan show|run|resume|restart|approve|cancel|list` act on one",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=PLAN_EPILOG,
    )
    plan.add_argument("file", nargs="?", metavar="FILE.yaml", help="the plan, written by hand")
    plan.add_argument(
        "--from-goal",
        metavar="GOAL",
        help="ask the agent for the plan (read-only, plan mode): it is printed as YAML and "
        "left as a draft to edit and run (`plan run ID`), unless --run or --yes",
    )
    plan.add_argument(
        "--run", action="store_true", help="with --from-goal: run the proposed plan at once"
    )
    _follow_options(plan, yes_flag)
    add_submit_options(plan)

    def action(name: str, help_: str) -> argparse.ArgumentParser:
        # No help=: hidden from the command list (`plan --help` lists the actions).
        p: argparse.ArgumentParser = sub.add_parser(
            f"plan-{name}",
            prog=f"jupyter delegate plan {name}",
            description=help_,
            allow_abbrev=False,
        )
        p.add_argument("--repo", default=".", help="the git repository (default: .)")
        if name != "list":
            p.add_argument("id", metavar="ID", help="the plan's id (p and six hex digits)")
        return p

    show = action("show", "the board of a plan: its subtasks, their tasks, and the graph")
    shown = show.add_mutually_exclusive_group()
    shown.add_argument("--json", action="store_true", help="the plan's record")
    shown.add_argument("--yaml", action="store_true", help="the plan's spec, to edit")
    listed = action("list", "the repository's plans")
    listed.add_argument("--json", action="store_true", help="their records")
    run = action("run", "run a draft plan (its spec replaced by FILE.yaml first, if given)")
    run.add_argument("file", nargs="?", metavar="FILE.yaml", help="an edited spec for the draft")
    _follow_options(run, yes_flag)
    add_submit_options(run)
    resume = action("resume", "take up a running plan no process runs any more")
    _follow_options(resume, yes_flag, plan_options=False)
    restart = action("restart", "start a subtask again from its parents' heads now")
    restart.add_argument("name", metavar="NAME", help="the subtask")
    _follow_options(restart, yes_flag, plan_options=False)
    action("approve", "integrate a ready plan into its base branch")
    action("cancel", "stop a plan: its running subtasks are cancelled")


def _follow_options(
    parser: argparse.ArgumentParser,
    yes_flag: Callable[[argparse.ArgumentParser], None],
    plan_options: bool = True,
) -> None:
    if plan_options:
        add_plan_options(parser)
    yes_flag(parser)
    parser.add_argument(
        "--approve",
        action="store_true",
        help="approve each proven subtask as it reaches review (never an unproven one), and "
        "integrate the plan once every subtask is approved",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print the plan's record at the end (the transitions go to stderr)",
    )


# What a plan does not take from the submit options: each subtask's outcome is the plan's.
OUTCOME_OPTIONS = {
    "check": "--check",
    "scope": "--scope",
    "constraint": "--constraint",
    "max_usd": "--max-usd",
    "max_steps": "--max-steps",
    "max_minutes": "--max-minutes",
    "command_timeout": "--command-timeout",
    "check_timeout": "--check-timeout",
}
NOT_FOR_PLANS = {
    "name": "--name",
    "attempts": "--attempts",
    "models": "--models",
    "compact_at": "--compact-at",
    "no_suggested_checks": "--no-suggested-checks",
}


def _refuse(args: argparse.Namespace, options: Mapping[str, str], why: str) -> None:
    given = [flag for key, flag in options.items() if getattr(args, key, None)]
    if given:
        raise UsageError(f"{', '.join(given)}: {why}")


def dispatch_options(args: argparse.Namespace) -> dict[str, Any]:
    """What `Plan.dispatch` takes from the options: how every subtask runs."""
    efforts = args.effort or []
    if len(efforts) > 1:
        raise UsageError(
            "--effort takes one level for a plan's subtasks (a list is for --attempts)."
        )
    return {
        "parallel": args.parallel,
        "stack": args.stack,
        "model": args.model,
        "effort": efforts[0] if efforts else None,
        "sandbox": args.sandbox,
        "env": list(args.env),
        "policy": submit_options(args)["policy"].to_dict(),
        "runner": getattr(args, "cluster", None),
        "cpus": getattr(args, "cpus", None),
        "memory": getattr(args, "memory", None),
    }


# -- run GOAL --attempts N -------------------------------------------------------------------
class Prefixed(io.TextIOBase):
    """Whole lines to `out`, each behind `prefix`: several tasks' events, printed at once,
    never cut into each other (a line is held until it ends)."""

    def __init__(self, out: TextIO, prefix: str, lock: threading.Lock) -> None:
        self._out, self._prefix, self._lock = out, prefix, lock
        self._held = ""

    def write(self, text: str) -> int:
        with self._lock:
            self._held += text
            *lines, self._held = self._held.split("\n")
            for line in lines:
                self._out.write(f"{self._prefix}{line}\n")
            self._out.flush()
        return len(text)

    def isatty(self) -> bool:
        return self._out.isatty()

    def end(self) -> None:
        if self._held:
            self.write("\n")

    def text(self) -> TextIO:
        """This, as what the CLI's printers write to."""
        return cast(TextIO, self)


def run_attempts(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    """`run GOAL --attempts N`: start them, follow them all, print them ranked; keep the
    best proven one with --approve. 0 when at least one is proven."""
    from .best_of import start

    spread = attempt_options(args)
    submit = submit_options(args)
    progress = sys.stderr if args.json else out
    group = start(
        outcome_from(args, args.goal),
        spread["count"],
        models=spread["models"],
        efforts=spread["efforts"],
        repo=submit.pop("repo"),
        policy=submit.pop("policy"),
        manager=manager,
        **submit,
    )
    progress.write(printable(f"Attempts {group.id}: {len(group.tasks)} at once at {args.goal!r}\n"))
    for task in group.tasks:
        effort = f", effort {task.effort}" if task.effort else ""
        progress.write(
            f"  #{_index(task)} task {task.id} on {task.branch} (model {task.model}{effort})\n"
        )
    follow_all(group.tasks, progress, yes=args.yes)
    rows = group.ranked()
    if args.json:
        out.write(json.dumps(group.to_record(), indent=2) + "\n")
    else:
        out.write(printable(attempts_table(rows)))
    proven = [row for row in rows if row.proven and row.state == S.REVIEW.value]
    if args.approve and proven:
        best = proven[0]
        commit = group.keep(best.index, "squash" if args.squash else "merge")
        progress.write(
            f"Kept attempt #{best.index} (task {best.task}): "
            f"{group.attempt(best.index).base_branch} is now at {commit[:10]}; the others are "
            "archived.\n"
        )
    elif args.approve:
        progress.write("None is proven: nothing was kept (--approve never merges unproven work).\n")
    elif proven:
        progress.write(
            f"Keep one: `jupyter delegate approve {proven[0].task}` (the best) or another's "
            "id; the others are archived. `jupyter delegate show ID` reviews one.\n"
        )
    else:
        progress.write(
            "None is proven. `jupyter delegate show ID` says why; `jupyter delegate approve "
            "ID --force` keeps one anyway, `reject ID` archives it.\n"
        )
    return EXIT_OK if any(row.proven for row in rows) else EXIT_FAILED


def _index(task: Task) -> int:
    return int((task.group or {}).get("index", 0))


def follow_all(tasks: Sequence[Task], out: TextIO, *, yes: bool = False) -> None:
    """Print several tasks' events at once (each line behind `#N`) until none is active,
    answering their permission questions one at a time, as `follow` does for one task."""
    from .cli import Printer, _permission

    lock = threading.Lock()
    writers = {task.id: Prefixed(out, f"#{_index(task)} ", lock) for task in tasks}
    stops = [task.subscribe(Printer(writers[task.id].text())) for task in tasks]
    answered: set[str] = set()
    try:
        while True:
            moving = False
            for task in tasks:
                if task.state == S.WAITING:
                    for request in task.pending():
                        if request.request_id in answered:
                            continue
                        answered.add(request.request_id)
                        allow, by = _permission(request, writers[task.id].text(), yes)
                        task.answer(request.request_id, allow, by=by)
                moving = moving or task.state.active
            if not moving:
                return
            time.sleep(POLL_S)
    finally:
        for stop in stops:
            stop()
        for writer in writers.values():
            writer.end()


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    return "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()


def attempts_table(rows: Sequence[Standing]) -> str:
    """The ranked comparison: best first (checks, then the smaller diff, then the cost)."""
    head = ("RANK", "ATTEMPT", "TASK", "MODEL", "EFFORT", "STATE", "CHECKS", "+/-", "FILES")
    table = [(*head, "COST", "TIME")]
    for row in rows:
        checks = f"{row.checks_passed}/{row.checks_total}" if row.checks_total else "none"
        table.append(
            (
                str(row.rank),
                f"#{row.index}",
                row.task,
                row.model,
                row.effort or "-",
                row.state + (" (proven)" if row.proven and row.state == "review" else ""),
                checks,
                f"+{row.added}/-{row.removed}",
                str(row.files),
                f"${row.cost_usd:.4f}",
                f"{row.seconds:.1f}s" if row.seconds is not None else "-",
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(head) + 2)]
    lines = [_row(line, widths) for line in table]
    return "\n".join(["", "Attempts, best first:", *lines]) + "\n"


# -- plan FILE.yaml | --from-goal GOAL --------------------------------------------------------
def cmd_plan(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    if args.from_goal is not None and args.file is not None:
        raise UsageError(
            f"Give a plan file or --from-goal GOAL, not both (got {args.file} and --from-goal)."
        )
    if args.from_goal is not None:
        return plan_from_goal(args, manager, out)
    if args.file is None:
        raise UsageError(
            "Which plan? `jupyter delegate plan FILE.yaml` runs one written by hand, "
            "`plan --from-goal GOAL` asks the agent for one, `plan list` lists the plans "
            "(`jupyter delegate plan --help`: the file's form)."
        )
    if args.run:
        raise UsageError("--run goes with --from-goal: a plan file runs as it is given.")
    return plan_from_file(args, manager, out)


def read_spec(file: str, repo: str) -> Any:
    """The checked spec of a plan file; PlanError naming the file and each problem."""
    from .planning import PlanSpec
    from .workspace import Workspace

    path = Path(file).expanduser()
    if not path.is_file():
        raise PlanError(
            f"No plan file {file}{' (a folder)' if path.is_dir() else ''}. Write one "
            "(`jupyter delegate plan --help` shows its form), or give a plan's id to "
            "`plan show|run|resume ID`."
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"Cannot read the plan file {file}: {exc}.") from None
    try:
        return PlanSpec.from_yaml(text).check(Workspace(repo).root)
    except PlanError as exc:
        raise PlanError(f"{file}: {exc}") from None


def plan_from_file(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    from .planning import create

    _refuse(
        args,
        {**OUTCOME_OPTIONS, **NOT_FOR_PLANS},
        "a plan file states its subtasks' "
        "outcomes (their checks, scope, budget) and its own; write them there.",
    )
    options = dispatch_options(args)
    spec = read_spec(args.file, args.repo)
    plan = create(spec, args.repo, base=args.base, manager=manager)
    return run_plan(plan, args, out, options)


def plan_from_goal(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    from .cli import follow
    from .planning import propose

    _refuse(args, NOT_FOR_PLANS, "not for a plan (its subtasks are named in the plan).")
    options = dispatch_options(args)
    progress = sys.stderr if args.json else out
    plan = propose(
        outcome_from(args, args.from_goal),
        args.repo,
        base=args.base,
        model=args.model,
        effort=options["effort"],
        sandbox=args.sandbox,
        manager=manager,
    )
    planner = manager.get(plan.planner or "", plan.repo)
    progress.write(f"Plan {plan.id}: the agent plans it (task {planner.id}, read-only tools)\n")
    follow(planner, progress, yes=args.yes)
    state = plan.wait(until=("draft", "failed", "cancelled"), timeout=120)
    if state != "draft" or plan.spec is None:
        progress.write(printable(f"Plan {plan.id} is {state}: {plan.reason}\n"))
        return EXIT_FAILED
    if args.json and not (args.run or args.yes):
        out.write(json.dumps(plan.to_record(), indent=2) + "\n")
    else:
        progress.write("\n" + printable(plan.spec.to_yaml()) + "\n")
    if not (args.run or args.yes):
        progress.write(
            f"Draft plan {plan.id} ({len(plan.spec.subtasks)} subtasks, ${plan.cost_usd:.4f} "
            "to plan). Run it as it is: "
            f"`jupyter delegate plan run {plan.id}`; or save the YAML above to a file, edit "
            f"it, and `jupyter delegate plan run {plan.id} FILE.yaml`.\n"
        )
        return EXIT_OK
    return run_plan(plan, args, out, options)


def run_plan(plan: Plan, args: argparse.Namespace, out: TextIO, options: Mapping[str, Any]) -> int:
    """Dispatch a draft and follow it in the foreground."""
    plan.dispatch(**options)
    return follow_and_report(plan, args, out)


def follow_and_report(plan: Plan, args: argparse.Namespace, out: TextIO) -> int:
    progress = sys.stderr if args.json else out
    tasks, statuses = plan.tasks(), plan.statuses()
    progress.write(printable(board_head(plan)) + printable(graph_text(plan, statuses)))
    shown = {s.name: _seen(s, tasks.get(s.name)) for s in statuses}
    code = follow_plan(plan, progress, approve=args.approve, yes=args.yes, shown=shown)
    if args.json:
        out.write(json.dumps(plan.to_record(), indent=2) + "\n")
    return code


# -- following a plan ------------------------------------------------------------------------
def follow_plan(
    plan: Plan,
    out: TextIO,
    *,
    approve: bool = False,
    yes: bool = False,
    shown: Mapping[str, tuple[Any, ...]] | None = None,
) -> int:
    """Print each subtask's transitions as they happen, answer permission questions (as
    `follow` does), approve proven subtasks with `approve`, until the plan is ready
    (`approve`: integrated), failed or cancelled, or nothing a reviewer does can move
    it on. `shown`: what was printed of each subtask already (`_seen`, by the graph):
    only changes from it are.
    Ctrl-C stops following; the plan stays as it is, for `plan resume ID`."""
    from .cli import _permission

    seen = dict(shown or {})
    answered: set[str] = set()
    decided: set[tuple[str, str | None]] = set()
    waiting_said = ""
    try:
        while True:
            acted = False
            plan.refresh()
            tasks = plan.tasks()
            statuses = plan.statuses()
            for status in statuses:
                key = _seen(status, tasks.get(status.name))
                if seen.get(status.name) != key:
                    seen[status.name] = key
                    out.write(printable(transition_line(status, tasks.get(status.name))) + "\n")
            for name, task in tasks.items():
                if task.state == S.WAITING:
                    for request in task.pending():
                        if request.request_id not in answered:
                            answered.add(request.request_id)
                            named = Prefixed(out, f"[{name}] ", threading.Lock())
                            allow, by = _permission(request, named.text(), yes)
                            named.end()
                            task.answer(request.request_id, allow, by=by)
                reached = (task.id, task.head_commit)
                printed = seen.get(name, ())[:1] == (S.REVIEW.value,)  # act on what was shown
                if approve and printed and task.state == S.REVIEW and reached not in decided:
                    decided.add(reached)
                    out.write(printable(_approve_line(name, task)) + "\n")
                    acted = True
            out.flush()
            if acted:  # read the plan again before saying what it waits for
                continue
            if plan.state != "running":
                return _ended(plan, out, approve)
            moving = [s for s in statuses if s.state in MOVING]
            done = all(s.state == S.MERGED.value for s in statuses)  # ready in a moment
            if not moving and not done:
                reviewable = [s for s in statuses if s.state == S.REVIEW.value]
                if not reviewable:
                    return _stuck(plan, statuses, out)
                said = ",".join(f"{s.name}:{s.task}" for s in reviewable)
                if said != waiting_said:
                    waiting_said = said
                    out.write(printable(waiting_text(plan, statuses, tasks)))
            time.sleep(POLL_S)
    except KeyboardInterrupt:
        out.write(
            f"\nStopped following plan {plan.id}; it stays {plan.state} as it is. "
            f"`jupyter delegate plan resume {plan.id}` takes it up (its subtasks cut off "
            "resume from their journals).\n"
        )
        return EXIT_INTERRUPTED


def _seen(status: Status, task: Task | None) -> tuple[Any, ...]:
    """What a transition line is printed on a change of."""
    return (status.state, status.task, bool(status.stale), task.verdict if task else None)


def _approve_line(name: str, task: Task) -> str:
    stamp = datetime.now().strftime("%H:%M:%S")
    if not task.proven:
        return (
            f"{stamp}  {name}: not approved, NOT PROVEN: {'; '.join(task.unproven_reasons)}. "
            f"It waits for you: `jupyter delegate show {task.id}`."
        )
    try:
        commit = task.approve()
    except DelegateError as exc:
        return f"{stamp}  {name}: not approved: {exc}"
    return f"{stamp}  {name}: approved (--approve) as {commit[:10]}"


def transition_line(status: Status, task: Task | None) -> str:
    """`12:01:03  csv       review (proven)  c56cc8  $0.0123  1/1 passed`."""
    from .cli import state_text

    stamp = datetime.now().strftime("%H:%M:%S")
    state = state_text(task) if task is not None else status.state
    parts = [stamp, f"{status.name:<12}", f"{state:<18}", f"{status.task or '-':<8}"]
    parts.append(f"${status.cost_usd:.4f}")
    if status.checks:
        parts.append(status.checks)
    note = status.stale or status.why
    if status.state == "planned":
        note = note or f"waits for {', '.join(status.depends_on)}"
    if note:
        parts.append(f"({note})" if not status.stale else f"! {status.stale}")
    return "  ".join(parts).rstrip()


def waiting_text(plan: Plan, statuses: Sequence[Status], tasks: Mapping[str, Task]) -> str:
    """What the plan waits for, and how to give it (from anywhere)."""
    lines = [f"Plan {plan.id} waits for you (approve from here, a notebook or the phone page):"]
    for status in statuses:
        if status.state == S.REVIEW.value and status.task:
            task = tasks.get(status.name)
            how = f"jupyter delegate approve {status.task}"
            if task is not None and not task.proven:
                how += f" --force  (not proven: {'; '.join(task.unproven_reasons)})"
            lines.append(
                f"  {status.name}: review it (`jupyter delegate show {status.task}`), then `{how}`"
            )
    lines.append(
        "  This process starts their dependents as they are approved; Ctrl-C stops it "
        f"(then `jupyter delegate plan resume {plan.id}`)."
    )
    return "\n".join(lines) + "\n"


def _stuck(plan: Plan, statuses: Sequence[Status], out: TextIO) -> int:
    """Nothing runs, nothing is in review: a subtask failed or was rejected (or paused)."""
    lines = [f"Plan {plan.id} cannot go on by itself:"]
    for status in statuses:
        if status.state in (S.MERGED.value, "blocked", "planned"):
            continue
        why = f": {status.why}" if status.why else ""
        if status.state in (S.INTERRUPTED.value, S.PAUSED.value):
            fix = f"`jupyter delegate resume {status.task}`, then `plan resume {plan.id}`"
        else:
            fix = f"`jupyter delegate plan restart {plan.id} {status.name}`"
        lines.append(f"  {status.name} is {status.state}{why}; {fix}")
    blocked = [s.name for s in statuses if s.state == "blocked"]
    if blocked:
        lines.append(f"  blocked by it: {', '.join(blocked)}")
    out.write(printable("\n".join(lines) + "\n"))
    return EXIT_FAILED


def _ended(plan: Plan, out: TextIO, approve: bool) -> int:
    if plan.state == "ready" and approve:
        try:
            commit = plan.approve()
        except PlanError as exc:
            out.write(printable(f"Plan {plan.id} is ready but not integrated: {exc}\n"))
            return EXIT_FAILED
        out.write(printable(integrated_text(plan, commit)))
        return EXIT_OK
    if plan.state == "ready":
        out.write(
            f"Plan {plan.id} is ready: every subtask is approved. `jupyter delegate plan "
            f"approve {plan.id}` integrates it into {plan.base_branch} (its checks run first).\n"
        )
        return EXIT_OK
    if plan.state == "integrated":
        out.write(printable(integrated_text(plan, plan.integration.get("commit", ""))))
        return EXIT_OK
    out.write(printable(f"Plan {plan.id} is {plan.state}: {plan.reason}\n"))
    return EXIT_FAILED


def integrated_text(plan: Plan, commit: str) -> str:
    checks = plan.integration.get("checks", [])
    passed = sum(1 for c in checks if c.get("passed"))
    ran = f"; its checks passed ({passed}/{len(checks)})" if checks else ""
    order = ", ".join(plan.integration.get("order", []))
    return (
        f"Integrated plan {plan.id} into {plan.base_branch}: now at {commit[:10]} ({order}){ran}.\n"
    )


# -- the board as text -------------------------------------------------------------------------
def board_head(plan: Plan) -> str:
    spec = plan.spec
    lines = [f"Plan {plan.id} ({plan.state}): {plan.title}"]
    if plan.reason and plan.state in ("failed", "cancelled"):
        lines.append(f"  why: {plan.reason}")
    cap = spec.budget.get("max_usd") if spec else None
    budget = f" of ${float(cap):.2f}" if cap else ""
    lines.append(
        f"  from {plan.base_branch} at {plan.base_commit[:10]}; cost ${plan.cost_usd:.4f}{budget}"
        + (f"; parallel {spec.parallel}{', stack' if spec.stack else ''}" if spec else "")
    )
    if spec and spec.checks:
        lines.append(f"  checks on the integration: {'; '.join(spec.checks)}")
    return "\n".join(lines) + "\n"


def depths(statuses: Sequence[Status]) -> dict[str, int]:
    """Each subtask's depth: 0 without parents, else one more than its deepest parent."""
    found: dict[str, int] = {}
    for status in statuses:  # in dependency order: parents first
        found[status.name] = 1 + max((found.get(p, 0) for p in status.depends_on), default=-1)
    return found


def graph_text(plan: Plan, statuses: Sequence[Status] | None = None) -> str:
    """The graph, a row per depth: `2  csv [review] <- model`."""
    if plan.spec is None:
        return ""
    statuses = plan.statuses() if statuses is None else statuses
    depth = depths(statuses)
    lines = ["  graph (a row per depth; <- its parents):"]
    for level in range(max(depth.values(), default=-1) + 1):
        for n, status in enumerate(s for s in statuses if depth[s.name] == level):
            parents = f" <- {', '.join(status.depends_on)}" if status.depends_on else ""
            stale = " !" if status.stale else ""
            label = f"{level + 1:>3}" if n == 0 else "   "
            lines.append(f"  {label}  {status.name} [{status.state}{stale}]{parents}")
    return "\n".join(lines) + "\n"


def board_text(plan: Plan) -> str:
    """`plan show ID`: the head, a row per subtask, the graph, and what to do next."""
    lines = [board_head(plan)]
    if plan.spec is None:
        lines.append(f"  the agent is still planning it (task {plan.planner})\n")
        return "".join(lines)
    statuses = plan.statuses()
    tasks = plan.tasks()
    from .cli import state_text

    table = [("SUBTASK", "STATE", "TASK", "COST", "CHECKS", "WHY")]
    for status in statuses:
        task = tasks.get(status.name)
        note = status.stale or status.why
        if status.state == "planned":
            note = note or f"waits for {', '.join(status.depends_on)}"
        table.append(
            (
                status.name,
                state_text(task) if task is not None else status.state,
                status.task or "-",
                f"${status.cost_usd:.4f}",
                status.checks or "-",
                ("! " if status.stale else "") + note,
            )
        )
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        lines.append("  " + _row(row, [*widths, 0]) + "\n")
    lines.append(graph_text(plan, statuses))
    if plan.integration:
        lines.append(integrated_text(plan, plan.integration.get("commit", "")))
    if plan.failure:
        what = plan.failure.get("conflicts") or [
            c["command"] for c in plan.failure.get("checks", []) if not c.get("passed")
        ]
        lines.append(f"  the last integration failed: {', '.join(what)}\n")
    lines.append(next_text(plan, statuses))
    return "".join(lines)


def next_text(plan: Plan, statuses: Sequence[Status]) -> str:
    """What can be done with the plan now."""
    pid = plan.id
    if plan.state == "draft":
        return f"  next: `jupyter delegate plan run {pid}`\n"
    if plan.state == "ready":
        return f"  next: `jupyter delegate plan approve {pid}` integrates it\n"
    if plan.state != "running":
        return ""
    lines = []
    for status in statuses:
        if status.stale or status.state in (S.FAILED.value, S.REJECTED.value):
            lines.append(f"  next: `jupyter delegate plan restart {pid} {status.name}`")
        elif status.state == S.REVIEW.value:
            lines.append(f"  next: `jupyter delegate approve {status.task}` ({status.name})")
    if not plan.driven():
        lines.append(f"  no process runs it: `jupyter delegate plan resume {pid}` takes it up")
    return "".join(line + "\n" for line in lines)


# -- the actions -------------------------------------------------------------------------------
def load_plan(args: argparse.Namespace, manager: TaskManager) -> Plan:
    from .planning import is_plan_id
    from .workspace import Workspace

    if not is_plan_id(args.id):
        raise PlanError(
            f"{args.id!r} is not a plan id: p and six hex digits, such as p3fa2c1 "
            "(`jupyter delegate plan list` lists them)."
        )
    return manager.plan(args.id, Workspace(args.repo).root)


def cmd_plan_show(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    plan = load_plan(args, manager)
    if args.json:
        out.write(json.dumps({**plan.to_record(), "driven": plan.driven()}, indent=2) + "\n")
    elif args.yaml:
        if plan.spec is None:
            raise PlanError(f"Plan {plan.id} has no subtasks yet: the agent is planning it.")
        out.write(plan.spec.to_yaml())
    else:
        out.write(printable(board_text(plan)))
    return EXIT_OK


def cmd_plan_list(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    from .planning import plans

    found = plans(args.repo, manager)
    if args.json:
        out.write(json.dumps([p.to_record() for p in found], indent=2) + "\n")
        return EXIT_OK
    if not found:
        out.write(
            "No plans yet. Run one: `jupyter delegate plan FILE.yaml`, or ask the agent for "
            "one: `jupyter delegate plan --from-goal GOAL`.\n"
        )
    for plan in found:
        statuses = plan.statuses() if plan.spec else []
        done = sum(1 for s in statuses if s.state == S.MERGED.value)
        count = f"{done}/{len(statuses)} approved" if statuses else "planning"
        line = f"{plan.id}  {plan.state:<10}  {count:<14}  ${plan.cost_usd:<7.4f}  {plan.title}\n"
        out.write(printable(line))
    return EXIT_OK


def cmd_plan_run(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    _refuse(
        args,
        {**OUTCOME_OPTIONS, **NOT_FOR_PLANS, "base": "--base"},
        "a plan's subtasks take their outcomes from the plan (and its base from when it was made).",
    )
    options = dispatch_options(args)
    plan = load_plan(args, manager)
    if args.file is not None:
        plan.edit(read_spec(args.file, args.repo))
    return run_plan(plan, args, out, options)


def cmd_plan_resume(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    plan = load_plan(args, manager).resume()
    if plan.state == "draft":
        out.write(f"Plan {plan.id} is a draft: `jupyter delegate plan run {plan.id}` runs it.\n")
        return EXIT_OK
    if plan.state == "planning":
        out.write(f"Plan {plan.id}: the agent is still planning it (task {plan.planner}).\n")
        return EXIT_OK
    if plan.state != "running":
        return _ended(plan, out, args.approve)
    out.write(f"Resumed plan {plan.id}: this process runs it now.\n")
    return follow_and_report(plan, args, out)


def cmd_plan_restart(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    plan = load_plan(args, manager)
    task = plan.restart(args.name)
    if task is None:
        out.write(f"Restarted {args.name}: it starts once its parents are settled.\n")
    else:
        out.write(f"Restarted {args.name} as task {task.id} from its parents' heads.\n")
    return follow_and_report(plan, args, out)


def cmd_plan_approve(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    plan = load_plan(args, manager)
    try:
        commit = plan.approve()
    except PlanError as exc:  # not bad input: the work is not integrable (yet)
        sys.stderr.write(printable(f"jupyter delegate plan approve: {exc}\n"))
        return EXIT_FAILED
    out.write(printable(integrated_text(plan, commit)))
    return EXIT_OK


def cmd_plan_cancel(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    plan = load_plan(args, manager)
    plan.cancel()
    out.write(
        f"Cancelled plan {plan.id}: no subtask starts any more; running ones were cancelled.\n"
    )
    return EXIT_OK


COMMANDS = {
    "plan": cmd_plan,
    "plan-show": cmd_plan_show,
    "plan-list": cmd_plan_list,
    "plan-run": cmd_plan_run,
    "plan-resume": cmd_plan_resume,
    "plan-restart": cmd_plan_restart,
    "plan-approve": cmd_plan_approve,
    "plan-cancel": cmd_plan_cancel,
}


def group_text(task: Task) -> str:
    """The plan or attempt group a task is part of, as `list` shows it ("" when none)."""
    group = task.group or {}
    if group.get("kind") == "plan":
        return f"[plan {group.get('id')}: {group.get('name') or group.get('role', '?')}]"
    if group.get("kind") == "attempts":
        return f"[attempt {group.get('index')}/{group.get('of')} of {group.get('id')}]"
    return ""
