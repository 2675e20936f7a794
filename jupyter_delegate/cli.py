"""`jupyter delegate ...`: the command line, a thin layer over the Python API.

    run GOAL --repo P --check CMD --scope S --base REF --model M --max-usd N --max-steps N
             [--approve | --no-approve]
    list [--repo P] [--json]     show ID     diff ID     approve ID [--squash]
    reject ID [--reason R]       request-changes ID TEXT      resume ID     cancel ID
    audit verify [ID] [--repo P]
    demo [--dir D]

Exit codes: 0 done; 1 the task failed or its checks fail; 2 bad input (a DelegateError,
whose message says what to do).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .engine.tools import describe_input
from .errors import DelegateError
from .outcome import Budget, Outcome
from .policy import PermissionRequest, Policy
from .task import Task, TaskEvent, TaskState

if TYPE_CHECKING:
    from .manager import TaskManager

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Printer:
    """Prints a task's events as they happen: the agent's words, each tool call and how it
    ended. Thread-safe: events arrive on the engine thread."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._in_text = False

    def __call__(self, event: TaskEvent) -> None:
        with self._lock:
            handler = getattr(self, f"_on_{event.kind}", None)
            if handler is not None:
                handler(event.data)
            self.out.flush()

    def _end_text(self) -> None:
        if self._in_text:
            self.out.write("\n")
            self._in_text = False

    def _on_text(self, data: Any) -> None:
        if not self._in_text:
            self.out.write("  agent: ")
            self._in_text = True
        self.out.write(data["delta"].replace("\n", "\n         "))

    def _on_tool_call(self, data: Any) -> None:
        self._end_text()
        if data["name"] == "finish":
            return
        self.out.write(f"  > {data['name']} {describe_input(data['input'])}\n")

    def _on_tool_result(self, data: Any) -> None:
        if data["name"] == "finish":
            return
        mark = "x" if data.get("is_error") else "ok"
        extra = f" exit {data['exit_code']}" if "exit_code" in data else ""
        seconds = f" {data['duration_s']:.1f}s" if "duration_s" in data else ""
        self.out.write(f"    {mark}{extra}{seconds}\n")

    def _on_state(self, data: Any) -> None:
        self._end_text()
        line = f"[{data['state']}] {data.get('reason', '')}"
        if data.get("error"):
            line += f"\n  error: {data['error']}"
        self.out.write(line + "\n")

    def _on_notice(self, data: Any) -> None:
        self._end_text()
        self.out.write(f"  note: {data['text']}\n")


def print_review(task: Task, out: TextIO) -> None:
    stat = [line for line in task.diff().splitlines() if "|" in line or "changed" in line]
    out.write(f"\nReview of task {task.id}: {task.title}\n")
    out.write(f"  branch {task.branch} from {task.base_commit[:10]}")
    out.write(f" -> {(task.head_commit or '')[:10]}\n")
    out.write("  changes:\n" + "".join(f"   {line}\n" for line in stat[-30:]))
    out.write("  checks (run by the harness):\n")
    for check in task.checks:
        mark = "PASS" if check.passed else "FAIL"
        out.write(f"    {mark} {check.command} (exit {check.exit_code}, {check.duration_s:.1f}s)\n")
    if not task.checks:
        out.write("    none were given\n")
    out.write(f"  summary: {task.summary or '(none)'}\n")
    usage = task.usage
    out.write(
        f"  cost: ${usage.cost_usd:.4f} over {usage.steps} steps "
        f"({usage.input_tokens} in, {usage.cache_read_tokens} cached, "
        f"{usage.cache_write_tokens} cache-written, {usage.output_tokens} out); "
        f"model {', '.join(task.served_models) or task.model}; sandbox {task.sandbox}\n"
    )
    for flag in task.flags:
        out.write(f"  ! {flag}\n")


def follow(task: Task, out: TextIO, *, yes: bool = False) -> TaskState:
    """Print the task's events until it is in review or has ended, answering permission
    questions on the way: at a terminal by asking, headless by `yes` (allow) or deny."""
    unsubscribe = task.subscribe(Printer(out))
    try:
        while (state := task.wait()) == TaskState.WAITING:
            for request in task.pending():
                task.answer(request.request_id, _permission(request, out, yes))
        return state
    finally:
        unsubscribe()


def _permission(request: PermissionRequest, out: TextIO, yes: bool) -> bool:
    out.write(
        f"  ? {request.tool} {describe_input(request.input)} asks permission ({request.reason})\n"
    )
    if yes:
        out.write("    allowed (--yes)\n")
        return True
    if not sys.stdin.isatty():
        out.write("    denied: nobody to ask (pass --yes to allow when headless)\n")
        return False
    return input("    allow? [y/N] ").strip().lower().startswith("y")


def decide(task: Task, choice: bool | None, out: TextIO, *, squash: bool = False) -> int:
    """After a run: print the review, then approve (`choice` True), keep it in review
    (False), or ask on a terminal (None)."""
    if task.state != TaskState.REVIEW:
        out.write(f"Task {task.id} ended {task.state}. {task.error}\n")
        return EXIT_FAILED
    print_review(task, out)
    action = {True: "approve", False: "keep"}.get(choice, "keep")  # type: ignore[arg-type]
    if choice is None and sys.stdin.isatty():
        answer = input("Approve and merge? [y]es / [n]o, reject / [k]eep for later: ").strip()
        action = {"y": "approve", "n": "reject"}.get(answer[:1].lower(), "keep")
    if action == "approve":
        commit = task.approve("squash" if squash else "merge")
        out.write(f"Approved: {task.base_branch} is now at {commit[:10]}.\n")
    elif action == "reject":
        task.reject("rejected from the command line")
        out.write(f"Rejected: the work is archived at refs/delegate/archive/{task.id}.\n")
    else:
        out.write(f"Kept in review: `jupyter delegate approve {task.id}` when ready.\n")
    return EXIT_OK if task.checks_passed else EXIT_FAILED


# -- commands -----------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    budget = Budget.from_options(
        max_steps=args.max_steps, max_usd=args.max_usd, max_minutes=args.max_minutes
    )
    outcome = Outcome(args.goal, tuple(args.check), tuple(args.scope), budget=budget)
    policy = Policy.from_rules(args.allow, args.ask, args.deny, args.mode)
    task = manager.submit(
        outcome,
        repo=args.repo,
        base=args.base,
        model=args.model,
        sandbox=args.sandbox,
        policy=policy,
    )
    out.write(f"Task {task.id} on {task.branch} (model {task.model})\n")
    follow(task, out, yes=args.yes)
    return decide(task, args.approve, out, squash=args.squash)


def cmd_list(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    found = manager.tasks(args.repo)
    if args.json:
        out.write(json.dumps([t.to_record() for t in found], indent=2) + "\n")
        return EXIT_OK
    if not found:
        out.write("No tasks yet. Start one with `jupyter delegate run GOAL --check CMD`.\n")
    for task in found:
        out.write(f"{task.id}  {task.state:<11} ${task.usage.cost_usd:<7.4f} {task.title}\n")
    return EXIT_OK


def cmd_show(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    if args.json:
        out.write(json.dumps(task.to_record(), indent=2) + "\n")
        return EXIT_OK
    out.write(f"{task.id}  {task.state}  {task.title}\n")
    if task.error:
        out.write(f"  error: {task.error}\n")
    if task.head_commit or task.state == TaskState.REVIEW:
        print_review(task, out)
    return EXIT_OK


def cmd_diff(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    out.write(manager.get(args.id, args.repo).diff())
    return EXIT_OK


def cmd_approve(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    commit = task.approve("squash" if args.squash else "merge")
    out.write(f"Approved task {task.id}: {task.base_branch} is now at {commit[:10]}.\n")
    return EXIT_OK


def cmd_reject(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    task.reject(args.reason)
    out.write(f"Rejected task {task.id}; its work is at refs/delegate/archive/{task.id}.\n")
    return EXIT_OK


def cmd_request_changes(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    task.request_changes(args.text)
    follow(task, out)
    return decide(task, args.approve, out)


def cmd_resume(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    task.resume()
    follow(task, out)
    return decide(task, args.approve, out)


def cmd_cancel(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    task.cancel()
    out.write(f"Cancelled task {task.id}.\n")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    from .audit import audit_repo
    from .workspace import Workspace

    workspace = Workspace(args.repo)
    known = workspace.task_ids()
    if args.id and args.id not in known:
        raise DelegateError(f"No journal for task {args.id} in {workspace.root}.")
    ids = [args.id] if args.id else known
    results = audit_repo(workspace, ids, [Path(nb) for nb in args.notebook])
    for result in results:
        out.write(f"{result.task_id}: audit verify: {result}\n")
    if not ids:
        out.write("No journals to verify.\n")
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def cmd_demo(args: argparse.Namespace, manager: TaskManager | None, out: TextIO) -> int:
    from .demo import run_demo

    return run_demo(Path(args.dir) if args.dir else None, out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter delegate",
        description="Delegate software work to a coding agent; review, approve or reject.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, repo: bool = True) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        if repo:
            p.add_argument("--repo", default=".", help="the git repository (default: .)")
        return p

    def approve_flags(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument(
            "--approve",
            dest="approve",
            action="store_true",
            default=None,
            help="approve (merge) when it reaches review",
        )
        group.add_argument(
            "--no-approve", dest="approve", action="store_false", help="leave it in review"
        )

    run = command("run", "state an outcome and run an agent on it")
    run.add_argument("goal", help="what must be true when the agent is done")
    run.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="CMD",
        help="a command that must pass (repeatable)",
    )
    run.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="PATH",
        help="a path the agent is expected to change (repeatable)",
    )
    run.add_argument("--base", help="branch, tag or commit to start from (default: HEAD)")
    run.add_argument("--model", help="model id (default: $JUPYTER_DELEGATE_MODEL)")
    run.add_argument("--max-usd", type=float, help="dollar budget (default 3)")
    run.add_argument("--max-steps", type=int, help="step budget (default 60)")
    run.add_argument("--max-minutes", type=float, help="time budget (default 30)")
    run.add_argument(
        "--sandbox",
        choices=["auto", "bubblewrap", "none"],
        help="command confinement (default auto: bubblewrap or refuse)",
    )
    run.add_argument("--squash", action="store_true", help="squash when approving")
    for kind in ("allow", "ask", "deny"):
        run.add_argument(
            f"--{kind}",
            action="append",
            default=[],
            metavar="RULE",
            help=f"{kind} tool calls matching RULE, e.g. 'Bash(pytest:*)'",
        )
    run.add_argument(
        "--mode",
        choices=["default", "ask", "plan", "auto"],
        default="default",
        help="permission mode (default: sandboxed commands and in-scope edits run)",
    )
    run.add_argument(
        "--yes", action="store_true", help="headless: allow what asks (without it, asks are denied)"
    )
    approve_flags(run)

    lst = command("list", "list the repository's tasks")
    lst.add_argument("--json", action="store_true", help="machine-readable records")
    for name, help_ in (
        ("show", "show a task and its review"),
        ("diff", "print a task's diff"),
        ("cancel", "cancel a running task"),
    ):
        p = command(name, help_)
        p.add_argument("id")
        if name == "show":
            p.add_argument("--json", action="store_true")
    appr = command("approve", "merge a task in review into its base branch")
    appr.add_argument("id")
    appr.add_argument("--squash", action="store_true", help="one squashed commit")
    rej = command("reject", "archive a task's branch and remove its worktree")
    rej.add_argument("id")
    rej.add_argument("--reason")
    req = command("request-changes", "send feedback; the same agent continues")
    req.add_argument("id")
    req.add_argument("text")
    approve_flags(req)
    res = command("resume", "continue an interrupted task from its journal")
    res.add_argument("id")
    approve_flags(res)
    audit = command("audit", "verify journals")
    audit.add_argument("action", choices=["verify"])
    audit.add_argument("id", nargs="?", help="one task (default: all of the repository's)")
    audit.add_argument("--all", action="store_true", help="every task (the default)")
    audit.add_argument(
        "--notebook",
        action="append",
        default=[],
        metavar="NB",
        help="also check the journal heads this notebook's records show",
    )
    demo = command("demo", "run an offline demo with a scripted model", repo=False)
    demo.add_argument("--dir", help="where to create the sample repository (default: temp)")
    return parser


COMMANDS = {
    "run": cmd_run,
    "list": cmd_list,
    "show": cmd_show,
    "diff": cmd_diff,
    "approve": cmd_approve,
    "reject": cmd_reject,
    "request-changes": cmd_request_changes,
    "resume": cmd_resume,
    "cancel": cmd_cancel,
    "audit": cmd_audit,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    args = build_parser().parse_args(argv)
    try:
        if args.command == "demo":
            return cmd_demo(args, None, out)
        from .manager import get_manager

        return COMMANDS[args.command](args, get_manager(), out)
    except DelegateError as exc:
        sys.stderr.write(f"jupyter delegate {args.command}: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; running tasks can be resumed with `resume ID`\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
