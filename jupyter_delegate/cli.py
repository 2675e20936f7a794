"""`jupyter delegate ...`: the command line, a thin layer over the Python API.

    run GOAL --repo P --check CMD --scope S --constraint TEXT --name NAME --base BRANCH
             --model M --max-usd N --max-steps N [--check-timeout S] [--command-timeout S]
             [--effort low|medium|high|max] [--compact-at TOKENS|PERCENT]
             [--env NAME[=VALUE]] [--no-suggested-checks] [--yes] [--approve | --no-approve]
             [--json]
    run GOAL --attempts N [--models A,B] [--effort low,high] ...   best-of-N: N attempts
                                 at once, followed, then ranked; approving one archives
                                 the others (--approve keeps the best proven one)
    list [--repo P] [--json]     (each task's plan or attempt group named)
    show ID     diff ID [--since-review]
    approve ID [--squash] [--force]
    checks ID [N]                each check (or the Nth) with its whole output
    reject ID [REASON...]        resume ID [--yes] [--approve | --no-approve]     cancel ID
    request-changes ID [TEXT] [--comment FILE:LINE[-END]=TEXT]... [--remember |
                                 --remember-everywhere] [--yes] [--approve | --no-approve]
    edit ID [FILE]               the path of the task's worktree (or a file in it)
    commit-edits ID [-m MESSAGE] your edits there, committed to the task as you; checks rerun
    pause ID                     pending [ID] [--json]
    handoff ID -o FILE           a task no process runs, in one file for another clone
    resume --from FILE [--review-only]   receive it there (journal and branch verified)
    answer ID [REQUEST] allow|deny [--remember | --rule RULE] [--reason TEXT]
    audit verify [ID] [--repo P]  (ID: a task, or a plan)
    demo [--dir D]
    scenarios [FILE...] [--json]  the scripted scenarios, and the tutorials that use each
    scenario-from ID [-o FILE] [--name N] [--description D]   a task as a replayable scenario

Plans (cli_groups.py; `jupyter delegate plan --help` shows the file's form):

    plan FILE.yaml [--parallel N] [--stack] [--approve] [--json] [--yes] [--model M] ...
                                 check it (refused: exit 2, nothing made), run it in the
                                 foreground, a line per subtask's transition, until it is
                                 ready; --approve approves proven subtasks and integrates
    plan --from-goal GOAL [--check CMD] [--max-usd N] [--model M] ... [--run | --yes]
                                 the agent proposes a plan (printed as YAML), left a draft
    plan show ID [--json | --yaml]    plan list [--json]    plan run ID [FILE.yaml] ...
    plan resume ID ...           plan restart ID NAME ...    plan approve ID (integrate)
    plan cancel ID

approve, reject, request-changes, cancel, pause and answer work whichever process runs
the task (a notebook, another terminal): they go through its control inbox (control.py)
and wait for that process to act, or act here when no process runs it. A task is named by
its id or by the name it was given (`--name`), in any process.

What the agent knows beyond the outcome (context/):

    skills [list] [--json]       every skill (repo, user, bundled) with its trust
    skills show NAME             its front matter, trust, files (sha256) and instructions
    skills check [NAME]          why each skill is or is not loaded, with the diff of a
                                 changed one; exit 1 when any is new, changed or malformed
    skills trust NAME... | --all record skills as trusted in their skills.lock
    prefer TEXT [--repo P]       teach a preference (user-wide; --repo: that repo only)
    prefs [--json]   prefs remove ID

`run` takes the options `%%delegate` takes, and the decisions on a task the arguments the
magics take (options.py declares both once). The skills and prefs commands take `--repo P`;
without it they use the repository the current directory is in, or, outside any, the
user's own (and bundled) ones only.

Only a proven task (it has checks, they all passed, no budget stopped it) is merged:
`approve ID --force` merges an unproven one anyway, and the journal records it; `--approve`
never does (it prints the review, says why it did not merge, and exits 1).

Everything printed that the agent could influence (its words, tool inputs, check output,
file names, summaries, skills from a repository) goes through `printable` first, so it
cannot act on the terminal; `diff` is printed as it is when its output is not a terminal
(a patch must stay exact).

Exit codes: 0 done; 1 the task failed, its checks fail, or an approve was refused because
the task is not proven (for `skills check`: a skill is not loaded; for `run --attempts`:
none is proven; for a plan: it failed, cannot go on without a restart, or its integration
was refused); 2 bad input (a DelegateError, whose message says what to do); 130 Ctrl-C
(a plan stays as it is, for `plan resume ID`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .check_output import check_log, failure_tail, printable, whole_output
from .engine.model import PRICE_GUESSED, usd_text
from .engine.tools import describe_input
from .environment import ran_with
from .errors import ContextError, DelegateError, NotProven, UsageError
from .events import StateChanged, ToolResult
from .options import (
    add_submit_options,
    add_task_arguments,
    attempt_options,
    comments_of,
    feedback_of,
    outcome_from,
    reason_of,
    submit_options,
)
from .policy import PermissionRequest
from .task import CheckResult, Task, TaskEvent, TaskState

if TYPE_CHECKING:
    from .context import Preference, SkillStatus
    from .manager import TaskManager

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class Printer:
    """Prints a task's events as they happen: the agent's words, each tool call and how it
    ended, made `printable`. Thread-safe: events arrive on the engine thread."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self._lock = threading.Lock()
        self._in_text = False
        self._text_key: tuple[Any, ...] | None = None

    def __call__(self, event: TaskEvent) -> None:
        with self._lock:
            match event.journal:
                case StateChanged() as changed:
                    self._state(changed)
                case ToolResult() as result:
                    self._tool_result(result)
                case _:  # what is not journaled: the agent's words, calls, notices
                    handler = getattr(self, f"_on_{event.kind}", None)
                    if handler is not None:
                        handler(event.data)
            self.out.flush()

    def _write(self, text: str) -> None:
        self.out.write(printable(text))

    def _end_text(self) -> None:
        if self._in_text:
            self.out.write("\n")
            self._in_text = False

    def _on_text(self, data: Any) -> None:
        key = (data.get("message"), data.get("block"))
        if self._in_text and key != self._text_key:
            self._end_text()  # a new message: its own line
        self._text_key = key
        if not self._in_text:
            self._write("  agent: ")
            self._in_text = True
        self._write(data["delta"].replace("\n", "\n         "))

    def _on_compacted(self, data: Any) -> None:
        self._end_text()
        who = "the API" if data["by"] == "server" else "the harness (a summary)"
        before, after = data["tokens_before"], data["tokens_after"]
        self._write(f"  ~ conversation compacted by {who}: {before:,} -> {after:,} tokens\n")

    def _on_tool_call(self, data: Any) -> None:
        self._end_text()
        if data["name"] == "finish":
            return
        self._write(f"  > {data['name']} {describe_input(data['input'])}\n")

    def _tool_result(self, result: ToolResult) -> None:
        if result.name == "finish":
            return
        mark = "x" if result.is_error else "ok"
        extra = f" exit {result.exit_code}" if result.exit_code is not None else ""
        seconds = f" {result.duration_s:.1f}s" if result.duration_s is not None else ""
        self._write(f"    {mark}{extra}{seconds}\n")

    def _state(self, changed: StateChanged) -> None:
        self._end_text()
        line = f"[{changed.state}] {changed.reason}"
        if changed.error:
            line += f"\n  error: {changed.error}"
        self._write(line + "\n")

    def _on_notice(self, data: Any) -> None:
        self._end_text()
        self._write(f"  note: {data['text']}\n")


def print_review(task: Task, out: TextIO) -> None:
    """The review: changes, checks (a failing one with the last lines of its output and
    the environment problem they show, if any), summary, skills, preferences, cost and
    flags."""
    stat = [line for line in task.diff().splitlines() if "|" in line or "changed" in line]
    lines = [
        "",
        f"Review of task {task.id}: {task.title}",
        f"  branch {task.branch} from {task.base_commit[:10]} -> {(task.head_commit or '')[:10]}",
        "  changes:",
        *(f"   {line}" for line in stat[-30:]),
    ]
    from_agents_md = bool(task.check_commands) and not task.outcome.checks
    origin = "offered by AGENTS.md as the outcome named none, " if from_agents_md else ""
    lines.append(f"  checks ({origin}run by the harness):")
    for number, check in enumerate(task.checks, 1):
        lines.append(f"    {check_line(check)}")
        if not check.passed:
            lines += failure_lines(task, check)
            lines += [f"      hint: {check.hint}"] if check.hint else []
            lines.append(f"      all of it: {checks_command(task, number)}")
    if not task.checks:
        offered = task.suggested_checks and not task.use_suggested_checks
        declined = " (AGENTS.md offered some; declined)" if offered else ""
        lines.append(f"    none were given{declined}")
    lines += [f"    {line}" for line in ran_with(task.check_environment)]
    lines.append(f"  summary: {task.summary or '(none)'}")
    loaded = f" ({len(task.skills)} offered)" if task.skills else ""
    lines.append(f"  skills used: {', '.join(task.skills_used) or 'none'}{loaded}")
    lines.append("  preferences in force:" + ("" if task.preferences else " none"))
    for preference in task.preferences:
        lines.append(f"    [{preference.get('scope', '?')}] {preference.get('text', '')}")
    usage = task.usage
    guessed = f" ({PRICE_GUESSED})" if task.price_guessed else ""
    lines.append(
        f"  cost: {usd_text(usage.cost_usd)}{guessed} over {usage.steps} steps "
        f"({usage.input_tokens} in, {usage.cache_read_tokens} cached, "
        f"{usage.cache_write_tokens} cache-written, {usage.output_tokens} out); "
        f"model {', '.join(task.served_models) or task.model}; sandbox {task.sandbox}"
    )
    lines.append(f"  model: {task.model_text}")
    lines += [f"  {note}" for note in task.review_notes]
    lines.append(f"  proof: {proof_text(task)}")
    lines += [f"  ! {flag}" for flag in task.flags]
    out.write(printable("\n".join(lines) + "\n"))


def check_line(check: CheckResult) -> str:
    """`FAIL CMD (exit 1, 1.1s)`."""
    mark = "PASS" if check.passed else "FAIL"
    return f"{mark} {check.command} (exit {check.exit_code}, {check.duration_s:.1f}s)"


def failure_lines(task: Task, check: CheckResult) -> list[str]:
    """The last lines of a failing check's output, each behind a `|` so that nothing it
    printed can pass for a line of the review."""
    tail = failure_tail(whole_output(check, task.folder))
    if not tail:
        return ["      (it printed nothing)"]
    return [f"      | {line}".rstrip() for line in tail.splitlines()]


def checks_command(task: Task, number: int) -> str:
    """The command that prints a check's whole output (`--repo` when run elsewhere)."""
    command = f"jupyter delegate checks {task.id} {number}"
    if not Path.cwd().resolve().is_relative_to(Path(task.repo).resolve()):
        command += f" --repo {shlex.quote(str(task.repo))}"
    return command


def chosen_checks(task: Task, number: str | None) -> list[tuple[int, CheckResult]]:
    """The checks `checks ID [N]` shows, numbered from 1: all of them, or the Nth. A bad
    N raises a DelegateError that names the numbers there are."""
    count = len(task.checks)
    if number is None:
        return list(enumerate(task.checks, 1))
    if not count:
        raise DelegateError(
            f"Task {task.id} has no check results ({no_checks_reason(task)}): there is no "
            f"check {number}."
        )
    which = (
        "it ran one check, number 1"
        if count == 1
        else f"it ran {count} checks, numbered 1 to {count}"
    )
    try:
        at = int(number)
    except ValueError:
        raise DelegateError(
            f"{number!r} is not a check number. Task {task.id}: {which}. Give one of those "
            "numbers, or none for all of them."
        ) from None
    if not 1 <= at <= count:
        raise DelegateError(
            f"Task {task.id} has no check {at}: {which}. Give one of those numbers, or none "
            "for all of them."
        )
    return [(at, task.checks[at - 1])]


def no_checks_reason(task: Task) -> str:
    if not task.check_commands:
        return "none were given"
    return f"they have not run yet; the task is {task.state}"


def checks_text(task: Task, chosen: Sequence[tuple[int, CheckResult]]) -> str:
    """What `checks ID [N]` prints: each chosen check and its whole output (or, for a
    task from before check logs, the last 4000 characters kept)."""
    lines = [f"Task {task.id} ({task.state}): {task.title}"]
    if not task.checks:
        lines.append(f"  no check results: {no_checks_reason(task)}.")
    for number, check in chosen:
        log = check_log(check, task.folder)
        output = whole_output(check, task.folder).rstrip("\n")
        lines += [
            "",
            f"check {number} of {len(task.checks)}: {check_line(check)}",
            *([f"  hint: {check.hint}"] if check.hint else []),
            f"  its whole output ({log}):"
            if log is not None
            else "  its output as the journal keeps it (the last 4000 characters at most):",
            output or "  (it printed nothing)",
        ]
    return printable("\n".join(lines) + "\n")


def proof_text(task: Task) -> str:
    """Whether the task is proven, or why not; for a merged one, how it was merged."""
    if task.forced:
        return f"merged without proof (forced): {'; '.join(task.forced_reasons)}"
    if task.proven:
        return "proven (its checks passed)"
    return f"NOT PROVEN: {'; '.join(task.unproven_reasons)}"


def state_text(task: Task) -> str:
    """The state as listed: `merged (forced)` for work merged without proof, and a task in
    review with its verdict (`review (checks fail)`, `review (proven)`)."""
    if task.forced:
        return f"{task.state} (forced)"
    return f"{task.state} ({task.verdict})" if task.verdict else str(task.state)


def next_steps(task: Task) -> str:
    """What a user can do with a task that stopped without reaching review."""
    tid = task.id
    if task.handed_off:
        return (
            f"Handed off to {task.handed_off}: it continues where that file is received "
            f"(`jupyter delegate resume --from FILE`); `jupyter delegate reject {tid}` "
            "archives its work here.\n"
        )
    if task.state == TaskState.FAILED and task.transient:
        return (
            f"The cause may pass: `jupyter delegate resume {tid}` continues it from its "
            f"journal; `jupyter delegate reject {tid}` archives its work.\n"
        )
    if task.state == TaskState.FAILED:
        return (
            f"`jupyter delegate reject {tid}` archives its work under "
            f"refs/delegate/archive/{tid}; then delegate again.\n"
        )
    if task.state in (TaskState.INTERRUPTED, TaskState.PAUSED):
        return f"`jupyter delegate resume {tid}` continues it.\n"
    return ""


def follow(task: Task, out: TextIO, *, yes: bool = False) -> TaskState:
    """Print the task's events until it is in review or has ended, answering permission
    questions on the way: at a terminal by asking, headless by `yes` (allow) or deny."""
    unsubscribe = task.subscribe(Printer(out))
    try:
        while (state := task.wait()) == TaskState.WAITING:
            for request in task.pending():
                allow, by = _permission(request, out, yes)
                task.answer(request.request_id, allow, by=by)
        return state
    finally:
        unsubscribe()


def _permission(request: PermissionRequest, out: TextIO, yes: bool) -> tuple[bool, str]:
    """(allow, who decided) for one question: `--yes` allows, a headless run denies, a
    terminal asks the human."""
    out.write(
        printable(
            f"  ? {request.tool} {describe_input(request.input)} asks permission "
            f"({request.reason})\n"
        )
    )
    if yes:
        out.write("    allowed (--yes)\n")
        return True, "--yes"
    if not sys.stdin.isatty():
        out.write("    denied: nobody to ask (pass --yes to allow when headless)\n")
        return False, "headless"
    return input("    allow? [y/N] ").strip().lower().startswith("y"), "human"


def decide(task: Task, choice: bool | None, out: TextIO, *, squash: bool = False) -> int:
    """After a run: print the review, then approve (`choice` True), keep it in review
    (False), or ask on a terminal (None). `choice` True never merges an unproven task: it
    says why and returns 1, the task still in review; at a terminal, merging one anyway
    takes a second, explicit yes."""
    if task.state != TaskState.REVIEW:
        out.write(printable(f"Task {task.id} ended {task.state}. {task.error}\n"))
        out.write(next_steps(task))
        return EXIT_FAILED
    print_review(task, out)
    action = {True: "approve", False: "keep"}.get(choice, "keep")  # type: ignore[arg-type]
    force = False
    if choice is None and sys.stdin.isatty():
        answer = input("Approve and merge? [y]es / [n]o, reject / [k]eep for later: ").strip()
        action = {"y": "approve", "n": "reject"}.get(answer[:1].lower(), "keep")
        if action == "approve" and not task.proven:
            why = "; ".join(task.unproven_reasons)
            again = input(f"It is not proven ({why}). Merge anyway? [y/N]: ").strip()
            force = again[:1].lower() == "y"
            action = "approve" if force else "keep"
    if action == "approve":
        try:
            commit = task.approve("squash" if squash else "merge", force=force)
        except NotProven as exc:
            out.write(f"Not merged: {exc}\n")
            return EXIT_FAILED
        out.write(f"Approved: {task.base_branch} is now at {commit[:10]}.\n")
    elif action == "reject":
        task.reject("rejected from the command line")
        out.write(f"Rejected: the work is archived at refs/delegate/archive/{task.id}.\n")
    else:
        out.write(f"Kept in review: `jupyter delegate approve {task.id}` when ready.\n")
    return EXIT_OK if task.checks_passed else EXIT_FAILED


# -- commands -----------------------------------------------------------------------------
def cmd_run(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    if attempt_options(args):
        from .cli_groups import run_attempts

        return run_attempts(args, manager, out)
    task = manager.submit(outcome_from(args, args.goal), **submit_options(args))
    progress = sys.stderr if args.json else out
    progress.write(f"Task {task.id} on {task.branch} (model {task.model})\n")
    follow(task, progress, yes=args.yes)
    code = decide(task, args.approve, progress, squash=args.squash)
    if args.json:
        out.write(json.dumps(task.to_record(), indent=2) + "\n")
    return code


def cmd_list(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    found = manager.tasks(args.repo)
    if args.json:
        out.write(json.dumps([t.to_record() for t in found], indent=2) + "\n")
        return EXIT_OK
    if not found:
        out.write("No tasks yet. Start one with `jupyter delegate run GOAL --check CMD`.\n")
    from .cli_groups import group_text

    for task in found:
        state = state_text(task)
        group = group_text(task)
        line = f"{task.id}  {state:<26} ${task.usage.cost_usd:<7.4f} {task.title}"
        where = f"  on {task.workers[-1]}" if task.workers else ""
        out.write(printable(line + (f"  {group}" if group else "") + where + "\n"))
    return EXIT_OK


def cmd_show(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    if args.json:
        out.write(json.dumps(task.to_record(), indent=2) + "\n")
        return EXIT_OK
    out.write(printable(f"{task.id}  {state_text(task)}  {task.title}\n"))
    out.write(printable(group_line(task)))
    out.write(printable(where_line(task)))
    if task.error and task.state != TaskState.MERGED:
        out.write(printable(f"  error: {task.error}\n") + next_steps(task))
    elif task.handed_off:
        out.write(printable(next_steps(task)))
    if task.head_commit or task.state == TaskState.REVIEW:
        print_review(task, out)
    if task.decisions:
        out.write(printable("  decided: " + "\n           ".join(task.decisions) + "\n"))
    return EXIT_OK


def where_line(task: Task) -> str:
    """Which Dask workers its rounds ran on, and the resources it declares."""
    from .resources import text

    lines = ""
    if task.workers:
        lines += f"  ran on: {', '.join(task.workers)} (Dask workers, round by round)\n"
    if task.resources:
        lines += f"  needs: {text(task.resources)}\n"
    return lines


def group_line(task: Task) -> str:
    """Where a task of a plan or of attempts belongs, and the command that shows it all."""
    group = task.group or {}
    if group.get("kind") == "plan":
        part = f"subtask {group['name']}" if group.get("name") else "its planner"
        return f"  {part} of plan {group['id']} (`jupyter delegate plan show {group['id']}`)\n"
    if group.get("kind") == "attempts":
        return (
            f"  attempt {group.get('index')} of {group.get('of')} (group {group['id']}): "
            "approving it archives the others\n"
        )
    return ""


def cmd_diff(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    diff = task.diff(since=task.last_review_base() if args.since_review else None)
    out.write(printable(diff) if out.isatty() else diff)  # a patch piped on stays exact
    return EXIT_OK


def cmd_replay(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    """A task step by step from its journal: the step list, its JSON, or an HTML page."""
    from .replaying import replay

    target = Path(args.html).expanduser() if args.html else None
    if target is not None and not target.parent.is_dir():
        raise UsageError(
            f"--html {args.html}: {target.parent} does not exist; give a file in a folder "
            "that does."
        )
    given = args.id
    looks_like_path = "/" in given or given.endswith(".jsonl")
    found = replay(given, None if looks_like_path and args.repo == "." else args.repo)
    for warning in found.warnings:
        sys.stderr.write(printable(f"jupyter delegate replay: warning: {warning}\n"))
    if target is not None:
        from .replay_page import replay_html

        target.write_text(replay_html(found.to_dict(diffs=True)), encoding="utf-8")
        out.write(
            f"Wrote the replay of task {found.task['id']} ({len(found)} steps) to {target}.\n"
        )
        return EXIT_OK
    if args.json:
        out.write(json.dumps(found.to_dict(diffs=True), indent=1) + "\n")
        return EXIT_OK
    out.write(printable(found.text()))
    return EXIT_OK


def cmd_checks(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    out.write(checks_text(task, chosen_checks(task, args.number)))
    return EXIT_OK


def cmd_approve(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    commit = task.approve("squash" if args.squash else "merge", force=args.force)
    if task.forced:
        out.write(
            f"Merged task {task.id} without proof (forced: {'; '.join(task.forced_reasons)}); "
            f"the journal records it. {task.base_branch} is now at {commit[:10]}.\n"
        )
    else:
        out.write(f"Approved task {task.id}: {task.base_branch} is now at {commit[:10]}.\n")
    return EXIT_OK


def cmd_reject(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    task.reject(reason_of(args))
    if task.archive_ref:
        out.write(f"Rejected task {task.id}; its work is at {task.archive_ref}.\n")
    else:
        out.write(f"Rejected task {task.id}; it had no work to archive.\n")
    return EXIT_OK


def cmd_edit(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    path = task.worktree_file(args.file or ".")
    out.write(f"{path}\n")
    if not path.exists():
        sys.stderr.write(f"({args.file} does not exist yet: writing it there creates it)\n")
    return EXIT_OK


def cmd_commit_edits(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    commit = task.commit_edits(args.message)
    files = ", ".join(task.human_edits[-1]["files"]) if task.human_edits else ""
    out.write(
        printable(
            f"Committed your edits to task {task.id} as {commit[:10]} ({files}); the checks "
            f"ran again: {task.verdict or task.state}.\n"
        )
    )
    return EXIT_OK


def cmd_request_changes(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    comments = comments_of(args)
    task.request_changes(feedback_of(args), remember=args.remember, comments=comments)
    if args.remember is not None:
        where = "this repository" if args.remember == "repo" else "every repository"
        out.write(f"Remembered as a preference for {where}: `jupyter delegate prefs` lists it.\n")
    follow(task, out, yes=args.yes)
    return decide(task, args.approve, out)


def cmd_resume(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    if args.from_file is not None:
        return resume_from(args, manager, out)
    if args.review_only:
        raise DelegateError("--review-only goes with --from FILE (a task handed off elsewhere).")
    if args.id is None:
        raise DelegateError(
            "Which task? `jupyter delegate resume ID`, or `resume --from FILE` for one handed "
            "off elsewhere."
        )
    task = manager.get(args.id, args.repo)
    task.resume()
    follow(task, out, yes=args.yes)
    return decide(task, args.approve, out)


def resume_from(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    """`resume --from FILE`: receive a handed-off task here, then follow it like resume."""
    if args.id is not None:
        raise DelegateError(
            f"Give the task's id or --from FILE, not both: the bundle names its task "
            f"(`jupyter delegate resume --from {args.from_file}`)."
        )
    task = manager.receive(args.from_file, args.repo, review_only=args.review_only)
    out.write(
        printable(
            f"Received task {task.id} from {args.from_file} into {task.repo} ({task.state}); "
            f"branch {task.branch}.\n"
        )
    )
    if task.state.active:
        follow(task, out, yes=args.yes)
        return decide(task, args.approve, out)
    if task.state == TaskState.REVIEW:
        print_review(task, out)
    else:
        out.write(next_steps(task))
    return EXIT_OK


def cmd_handoff(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    written = task.handoff(args.output)
    out.write(
        printable(
            f"Handed off task {task.id} ({task.state}) to {written}. On the other machine, in "
            f"a clone of the repository: `jupyter delegate resume --from {written.name}`.\n"
        )
    )
    return EXIT_OK


def cmd_cancel(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    task.cancel()
    out.write(f"Cancelled task {task.id}.\n")
    return EXIT_OK


def cmd_pause(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    task.pause()
    out.write(f"Pausing task {task.id}; `jupyter delegate resume {task.id}` continues it.\n")
    return EXIT_OK


def cmd_pending(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    chosen = [manager.get(args.id, args.repo)] if args.id else manager.tasks(args.repo or ".")
    questions = [(task, request) for task in chosen for request in task.pending()]
    if args.json:
        listed = [{"task": t.id, "name": t.name, **dataclasses.asdict(r)} for t, r in questions]
        out.write(json.dumps(listed, indent=2) + "\n")
        return EXIT_OK
    if not questions:
        out.write("No questions are waiting.\n")
    for task, request in questions:
        what = printable(describe_input(request.input))
        out.write(
            f"{task.id}  {request.request_id}  {request.tool}: {what}\n"
            f"    {printable(request.reason)}\n"
            f"    answer: jupyter delegate answer {task.id} {request.request_id} allow|deny\n"
        )
        if request.rules:
            rules = printable(", ".join(request.rules))
            out.write(f"    allow for the rest of the task with --remember (grants {rules})\n")
    return EXIT_OK


def cmd_answer(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    task = manager.get(args.id, args.repo)
    *named, decision = args.words
    if decision not in ("allow", "deny") or len(named) > 1:
        raise DelegateError(
            f"answer takes [REQUEST] allow|deny, not {' '.join(args.words)!r}: say "
            f"`jupyter delegate answer {task.id} allow` or `... {task.id} REQUEST deny`."
        )
    if named:
        request_id = named[0]
    else:
        waiting = [r.request_id for r in task.pending()]
        if len(waiting) != 1:
            listed = ", ".join(waiting) or "none"
            raise DelegateError(
                f"Task {task.id} has {len(waiting)} pending questions ({listed}): name the "
                f"one you answer, `jupyter delegate answer {task.id} REQUEST {decision}` "
                "(`jupyter delegate pending` lists them)."
            )
        request_id = waiting[0]
    if (args.remember or args.rule) and decision == "deny":
        raise DelegateError("--remember and --rule go with allow: a denial is not remembered.")
    task.answer(
        request_id,
        decision == "allow",
        remember=args.remember,
        rule=args.rule or None,
        reason=args.reason,
    )
    done = "Allowed" if decision == "allow" else "Denied"
    out.write(f"{done} {request_id} of task {task.id}.\n")
    return EXIT_OK


def cmd_audit(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    from .audit import audit_plan, audit_repo, named_tasks
    from .planning import is_plan_id
    from .planning import plan_ids as listed_plans
    from .workspace import Workspace

    workspace = Workspace(args.repo)
    known = named_tasks(workspace)
    plan_ids = [args.id] if args.id and is_plan_id(args.id) else []
    if args.id and args.id not in known and not plan_ids:
        raise DelegateError(f"No journal for task {args.id} in {workspace.root}.")
    if not args.id:
        plan_ids = listed_plans(workspace)
    ids = [] if plan_ids and args.id else [args.id] if args.id else known
    results = audit_repo(workspace, ids, [Path(nb) for nb in args.notebook])
    results += [audit_plan(workspace, plan_id) for plan_id in plan_ids]
    for result in results:
        out.write(f"{result.task_id}: audit verify: {result}\n")
    if not results:
        out.write("No journals to verify.\n")
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def cmd_demo(args: argparse.Namespace, manager: TaskManager | None, out: TextIO) -> int:
    from .demo import run_demo

    return run_demo(Path(args.dir) if args.dir else None, out)


# -- context: skills and preferences --------------------------------------------------------
NEEDS_REVIEW = ("new", "changed", "malformed")
ALLOWED_TOOLS_NOTE = (
    "shown, not granted: what the agent may do comes only from your own rules "
    "(--allow / --ask / --deny and the mode)"
)


def default_repo(given: str | None) -> str | None:
    """The repository a skills or prefs command works on: the one given (an error later if
    it is not one), else the one the current directory is in, else None (the user's own
    and bundled skills, the user-wide preferences)."""
    if given is not None:
        return given
    import git

    try:
        found = git.Repo(Path.cwd(), search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return None
    return None if found.bare else "."


def _outside_note(repo: str | None, what: str) -> str:
    if repo is not None:
        return ""
    return f"Not in a git repository: {what} only (--repo P for a repository's).\n"


def shorten(text: str, width: int = 70) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3].rstrip() + "..."


def skill_rows(statuses: Sequence[SkillStatus]) -> list[str]:
    """One line per skill: name, source, trust, and its description or problem."""
    width = max([len(s.name) for s in statuses] + [4])
    lines = [f"{'NAME':<{width}}  SOURCE   TRUST      DESCRIPTION"]
    for status in statuses:
        if status.trust == "malformed":
            about = status.problem
        elif status.trust == "shadowed":
            about = "(not loaded: a skill of the same name comes first)"
        else:
            about = shorten(status.skill.description if status.skill else "")
        lines.append(f"{status.name:<{width}}  {status.source:<7}  {status.trust:<9}  {about}")
    return lines


def skill_card(status: SkillStatus) -> list[str]:
    """A skill as `skills show` prints it: its fields, trust, files, then its body."""
    lines = [f"{status.name} ({status.source} skill, {status.folder})", f"  trust: {status.trust}"]
    if not status.loadable:
        lines.append(f"    {status.explain()}")
    skill = status.skill
    if skill is None:
        return lines
    lines.append(f"  description: {skill.description}")
    if skill.license:
        lines.append(f"  license: {skill.license}")
    if skill.compatibility:
        lines.append(f"  compatibility: {skill.compatibility}")
    if skill.metadata:
        lines.append("  metadata: " + ", ".join(f"{k}={v}" for k, v in skill.metadata.items()))
    if skill.allowed_tools:
        lines.append(f"  allowed-tools: {' '.join(skill.allowed_tools)}")
        lines.append(f"    {ALLOWED_TOOLS_NOTE}")
    else:
        lines.append("  allowed-tools: none declared")
    lines += [f"  warning: {warning}" for warning in skill.warnings]
    lines.append("  files (sha256):")
    drift = {path: label for label, paths in status.drift() for path in paths}
    for path, digest in sorted(skill.files.items()):
        mark = f"  ({drift[path]} since trusted)" if path in drift else ""
        lines.append(f"    {digest[:12]}  {path}{mark}")
    lines += [f"    {'':12}  {path}  (removed since trusted)" for path in status.removed]
    return [*lines, "", skill.body()]


def skill_check(status: SkillStatus) -> list[str]:
    """Why a skill is or is not loaded; for a changed one, the diff against the trusted copy."""
    mark = "ok" if status.loadable else status.trust.upper()
    lines = [f"{mark:<9}  {status.explain()}"]
    if status.trust == "new" and status.skill is not None:
        lines.append("           files: " + ", ".join(sorted(status.skill.files)))
    if status.trust == "changed":
        lines += ["    " + line for line in status.diff().splitlines()]
    if status.skill is not None:
        lines += [f"           warning: {warning}" for warning in status.skill.warnings]
    return lines


def _statuses(repo: str | None) -> list[SkillStatus]:
    from . import skills

    return skills(repo)


def cmd_skills_list(args: argparse.Namespace, out: TextIO) -> int:
    repo = default_repo(args.repo)
    statuses = _statuses(repo)
    if args.json:
        rows = [
            {
                "name": s.name,
                "source": s.source,
                "trust": s.trust,
                "folder": str(s.folder),
                "description": s.skill.description if s.skill else "",
                "problem": s.problem,
                "why": s.explain(),
                "changed": list(s.changed),
                "added": list(s.added),
                "removed": list(s.removed),
            }
            for s in statuses
        ]
        out.write(json.dumps(rows, indent=2) + "\n")
        return EXIT_OK
    out.write(_outside_note(repo, "the user's and bundled skills"))
    out.write(printable("".join(line + "\n" for line in skill_rows(statuses))))
    waiting = [s.name for s in statuses if s.trust in NEEDS_REVIEW]
    if waiting:
        out.write(
            f"Not loaded until reviewed: {', '.join(waiting)}. "
            "`jupyter delegate skills check` says why.\n"
        )
    return EXIT_OK


def cmd_skills_show(args: argparse.Namespace, out: TextIO) -> int:
    from .context.skills import find

    status = find(_statuses(default_repo(args.repo)), args.name)
    out.write(printable("".join(line + "\n" for line in skill_card(status))))
    return EXIT_OK


def cmd_skills_check(args: argparse.Namespace, out: TextIO) -> int:
    from .context.skills import find

    repo = default_repo(args.repo)
    statuses = _statuses(repo)
    if args.name:
        statuses = [find(statuses, args.name)]
    out.write(_outside_note(repo, "the user's and bundled skills"))
    for status in statuses:
        out.write(printable("".join(line + "\n" for line in skill_check(status))))
    waiting = [s for s in statuses if s.trust in NEEDS_REVIEW]
    if not waiting:
        out.write(f"All {len(statuses)} checked: trusted or bundled.\n")
        return EXIT_OK
    out.write(
        f"{len(waiting)} not loaded: read a new or changed skill (`jupyter delegate skills "
        "show NAME`), then `jupyter delegate skills trust NAME`; fix a malformed one.\n"
    )
    return EXIT_FAILED


def cmd_skills_trust(args: argparse.Namespace, out: TextIO) -> int:
    from . import trust_skill

    repo = default_repo(args.repo)
    statuses = _statuses(repo)
    chosen = skills_to_trust(statuses, args.names, args.all)
    for line in trust_lines(statuses, chosen, args.all):
        out.write(printable(line + "\n"))
    for status in chosen:
        if status.trust in ("new", "changed"):
            out.write(trusted_line(trust_skill(status.name, repo=repo)) + "\n")
    return EXIT_OK


def trusted_line(status: SkillStatus) -> str:
    """What trusting a skill recorded, and where."""
    return (
        f"Trusted {status.name} ({status.source} skill): {len(status.locked)} files recorded "
        f"in {status.lock}."
    )


def skills_to_trust(
    statuses: Sequence[SkillStatus], names: Sequence[str], every: bool
) -> list[SkillStatus]:
    """The skills a `trust` names (or, with `every`, all new and changed ones); raises
    before anything is recorded when a name is unknown or malformed."""
    from .context.skills import find

    if every and names:
        raise DelegateError("Give skill names or --all, not both.")
    if every:
        return [s for s in statuses if s.trust in ("new", "changed")]
    if not names:
        raise DelegateError(
            "Which skills? Name them (`skills trust NAME...`), or pass --all for every new "
            "or changed one; `skills check` lists them."
        )
    chosen = [find(statuses, name) for name in dict.fromkeys(names)]
    for status in chosen:
        if status.trust == "malformed":
            raise ContextError(
                f"Cannot trust {status.name}: {status.problem}. Fix it first; nothing was trusted."
            )
    return chosen


def trust_lines(
    statuses: Sequence[SkillStatus], chosen: Sequence[SkillStatus], every: bool
) -> list[str]:
    """What a `trust` leaves as it was: trusted or bundled skills it was given, and (with
    --all) the malformed ones, which cannot be trusted."""
    lines = []
    for status in chosen:
        if status.trust == "trusted":
            lines.append(
                f"{status.name} ({status.source} skill): already trusted in {status.lock}."
            )
        elif status.trust == "bundled":
            lines.append(f"{status.name}: bundled, trusted as installed; nothing to record.")
    if every:
        lines += [
            f"Not trusted, malformed: {s.problem}" for s in statuses if s.trust == "malformed"
        ]
        if not chosen:
            lines.append("Nothing to trust: no skill is new or changed.")
    return lines


def cmd_prefer(args: argparse.Namespace, out: TextIO) -> int:
    from . import prefer

    preference = prefer(" ".join(args.text), repo=args.repo)
    where = "every repository" if args.repo is None else "this repository"
    out.write(
        f"Remembered for {where} ({preference.id}): {preference.text}\n"
        f"  in {preferences_file_of(args.repo)}\n"
    )
    return EXIT_OK


def preference_line(preference: Preference) -> str:
    """A preference as listed: its id, its scope (user or repo) and its text."""
    return f"{preference.id}  {preference.scope:<4}  {preference.text}"


def preferences_file_of(repo: str | None) -> Path:
    from .context.preferences import preferences_file
    from .workspace import Workspace

    return preferences_file(Workspace(repo).state_dir if repo is not None else None)


def cmd_prefs(args: argparse.Namespace, out: TextIO) -> int:
    from . import forget, preferences

    repo = default_repo(args.repo)
    if args.action == "remove":
        gone = forget(args.id, repo=repo)
        out.write(f"Forgot {gone.id} ({gone.scope}): {gone.text}\n")
        return EXIT_OK
    found = preferences(repo)
    if args.json:
        out.write(json.dumps([p.to_dict() for p in found], indent=2) + "\n")
        return EXIT_OK
    out.write(_outside_note(repo, "the user-wide preferences"))
    if not found:
        out.write(
            'No preferences yet. Teach one: `jupyter delegate prefer "Use pathlib, not '
            'os.path"` (with --repo P, for one repository only).\n'
        )
    for preference in found:
        out.write(preference_line(preference) + "\n")
    files = [f"user {preferences_file_of(None)}"]
    if repo is not None:
        files.append(f"repo {preferences_file_of(repo)}")
    out.write(f"({'; '.join(files)}: Markdown bullets, editable by hand)\n")
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jupyter delegate",
        description="Delegate software work to a coding agent; review, approve or reject.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_: str, repo: bool = True, **kwargs: Any) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_, allow_abbrev=False, **kwargs)
        if repo:
            p.add_argument("--repo", default=".", help="the git repository (default: .)")
        return p

    def yes_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--yes",
            action="store_true",
            help="headless: allow what asks (without it, asks are denied)",
        )

    def approve_flags(p: argparse.ArgumentParser) -> None:
        group = p.add_mutually_exclusive_group()
        group.add_argument(
            "--approve",
            dest="approve",
            action="store_true",
            default=None,
            help="approve (merge) when it reaches review, if it is proven (never forced)",
        )
        group.add_argument(
            "--no-approve", dest="approve", action="store_false", help="leave it in review"
        )

    run = command("run", "state an outcome and run an agent on it")
    run.add_argument("goal", help="what must be true when the agent is done")
    add_submit_options(run)
    run.add_argument("--squash", action="store_true", help="squash when approving")
    run.add_argument(
        "--json",
        action="store_true",
        help="print the task's record (with --attempts: the group's, ranked) at the end; "
        "its progress goes to stderr",
    )
    yes_flag(run)
    approve_flags(run)

    lst = command("list", "list the repository's tasks")
    lst.add_argument("--json", action="store_true", help="machine-readable records")
    for name, help_ in (
        ("show", "show a task and its review"),
        ("diff", "print a task's diff"),
        ("cancel", "cancel a task (whichever process runs it); its work is archived"),
        ("pause", "pause a running task (whichever process runs it); resume continues it"),
        ("pending", "list permission questions waiting for an answer"),
        ("answer", "allow or deny a waiting tool call, whichever process runs the task"),
        ("checks", "print a task's checks, each with its whole output"),
        ("approve", "merge a task in review into its base branch"),
        ("reject", "archive a task's branch and remove its worktree (also a failed task)"),
    ):
        p = command(name, help_)
        add_task_arguments(name, p)
        if name in ("show", "pending"):
            p.add_argument("--json", action="store_true")
    replay_ = command(
        "replay", "step through what the agent did on a task, from its journal (any state)"
    )
    replay_.add_argument("id", help="the task's id or name, or a journal.jsonl file")
    replay_.add_argument(
        "--json", action="store_true", help="the replay's data, every step's diff included"
    )
    replay_.add_argument(
        "--html", metavar="FILE", help="write one self-contained HTML page of the replay"
    )
    edit = command("edit", "print the path of a task's worktree (or of a file in it) to edit")
    add_task_arguments("edit", edit)
    commit_edits = command(
        "commit-edits", "commit your edits in a task's worktree to its branch, as you"
    )
    add_task_arguments("commit-edits", commit_edits)
    req = command("request-changes", "send feedback; the same agent continues")
    add_task_arguments("request-changes", req)
    yes_flag(req)
    approve_flags(req)
    res = command(
        "resume",
        "continue an interrupted or paused task, or one that failed for a transient cause, "
        "from its journal",
    )
    add_task_arguments("resume", res)
    yes_flag(res)
    approve_flags(res)
    handoff = command(
        "handoff",
        "write a task no process runs (paused, interrupted, in review) to one bundle file, "
        "for `resume --from FILE` in another clone",
    )
    add_task_arguments("handoff", handoff)
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
    from .cli_groups import add_commands

    add_commands(sub, command, yes_flag)
    from .cli_scenarios import add_scenario_commands

    add_scenario_commands(sub, command)
    context_commands(sub)
    return parser


REPO_HELP = "the git repository (default: the one the current directory is in, if any)"


def context_commands(sub: Any) -> None:
    """`skills ...`, `prefer` and `prefs`: what the agent knows beyond the outcome."""
    skills = sub.add_parser(
        "skills",
        help="list, show, check and trust Agent Skills",
        description="Agent Skills from the repository (.agents/skills, .claude/skills), "
        "your folder and the package. A repository or user skill is loaded only once "
        "trusted (its files recorded in skills.lock).",
    )
    skills.add_argument("--repo", help=REPO_HELP)
    skills.add_argument("--json", action="store_true", help="machine-readable (with list)")
    actions = skills.add_subparsers(dest="skills_action", metavar="ACTION (default: list)")

    def action(name: str, help_: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = actions.add_parser(name, help=help_, description=help_)
        p.add_argument("--repo", default=argparse.SUPPRESS, help=REPO_HELP)
        return p

    action("list", "every skill with its source and trust").add_argument(
        "--json", action="store_true", default=argparse.SUPPRESS, help="machine-readable"
    )
    action("show", "a skill's fields, trust, files and instructions").add_argument("name")
    action(
        "check", "why each skill is or is not loaded; exit 1 when one needs review"
    ).add_argument("name", nargs="?", help="one skill (default: all)")
    trust = action("trust", "record skills as trusted as their files are now")
    trust.add_argument("names", nargs="*", metavar="NAME")
    trust.add_argument("--all", action="store_true", help="every new or changed skill")

    prefer = sub.add_parser(
        "prefer",
        help="teach a preference every later task is told",
        description="Teach a preference once, in one sentence: user-wide, or with --repo "
        "for that repository only.",
    )
    prefer.add_argument("text", nargs="+", help="the preference, e.g. 'Use pathlib, not os.path'")
    prefer.add_argument("--repo", help="keep it for this repository only (default: user-wide)")

    prefs = sub.add_parser(
        "prefs", help="list preferences, or remove one", description="List preferences."
    )
    prefs.add_argument("--repo", help=REPO_HELP)
    prefs.add_argument("--json", action="store_true", help="machine-readable")
    prefs_actions = prefs.add_subparsers(dest="action", metavar="ACTION")
    remove = prefs_actions.add_parser(
        "remove", help="forget a preference by its id", description="Forget a preference."
    )
    remove.add_argument("id", help="its id, as `prefs` lists it (or its exact text)")
    remove.add_argument("--repo", default=argparse.SUPPRESS, help=REPO_HELP)


COMMANDS = {
    "run": cmd_run,
    "list": cmd_list,
    "show": cmd_show,
    "diff": cmd_diff,
    "checks": cmd_checks,
    "replay": cmd_replay,
    "approve": cmd_approve,
    "reject": cmd_reject,
    "request-changes": cmd_request_changes,
    "edit": cmd_edit,
    "commit-edits": cmd_commit_edits,
    "resume": cmd_resume,
    "handoff": cmd_handoff,
    "cancel": cmd_cancel,
    "pause": cmd_pause,
    "pending": cmd_pending,
    "answer": cmd_answer,
    "audit": cmd_audit,
}


CONTEXT_COMMANDS = {
    "skills list": cmd_skills_list,
    "skills show": cmd_skills_show,
    "skills check": cmd_skills_check,
    "skills trust": cmd_skills_trust,
    "prefer": cmd_prefer,
    "prefs": cmd_prefs,
}


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    from .cli_groups import COMMANDS as GROUP_COMMANDS
    from .cli_groups import route, shown_name
    from .cli_scenarios import COMMANDS as SCENARIO_COMMANDS
    from .cli_scenarios import cmd_scenarios

    out = out or sys.stdout
    args = build_parser().parse_args(route(sys.argv[1:] if argv is None else argv))
    name = shown_name(args.command)
    try:
        if args.command == "demo":
            return cmd_demo(args, None, out)
        if args.command == "scenarios":
            return cmd_scenarios(args, out)
        if args.command in ("skills", "prefer", "prefs"):
            context = args.command
            if context == "skills":
                context = f"skills {args.skills_action or 'list'}"
            return CONTEXT_COMMANDS[context](args, out)
        from .manager import get_manager

        manager = get_manager()
        manager.via = "cli"
        return {**COMMANDS, **GROUP_COMMANDS, **SCENARIO_COMMANDS}[args.command](args, manager, out)
    except NotProven as exc:  # not bad input: the work is not proven
        sys.stderr.write(f"jupyter delegate {name}: {exc}\n")
        return EXIT_FAILED
    except DelegateError as exc:
        sys.stderr.write(f"jupyter delegate {name}: {exc}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("interrupted; running tasks can be resumed with `resume ID`\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
