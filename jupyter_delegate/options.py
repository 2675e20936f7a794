"""The options of the commands, declared once for the command line and the magics.

`jupyter delegate run GOAL ...`, `%%delegate ...` and `%delegate GOAL ...` submit a task
with the same options (`add_submit_options`), turned into an outcome and a submit call the
same way (`outcome_from`, `submit_options`). The decisions on a task (`approve ID
--squash`, `reject ID REASON`, ...) take the same arguments in both (`add_task_arguments`),
so a word the command does not know is an error in both, never a silent default or a
piece of free text.

What each side adds stays with it: the command line's `--yes`, `--approve` and `--json`,
the magic's `--new` and the goal (one argument on the command line, the rest of the line
or the cell body in a notebook). Nothing here prints or runs anything.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from typing import Any

from .engine.catalogue import LEVELS
from .errors import UsageError
from .outcome import Budget, Outcome
from .policy import Policy
from .review import LineComment

SANDBOXES = ("auto", "bubblewrap", "none")
MODES = ("default", "ask", "plan", "auto")


def add_submit_options(parser: argparse.ArgumentParser) -> None:
    """What a task is given besides its goal: checks, scope, constraints, budget, where it
    starts, who decides what its agent may do, and its name."""
    parser.add_argument(
        "--check",
        action="append",
        default=[],
        metavar="CMD",
        help="a command that must pass (repeatable)",
    )
    parser.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="PATH",
        help="a path the agent is expected to change, from the repository root: a file, a "
        "folder or a glob such as 'src/*.py' or '**/test_*.py' (repeatable)",
    )
    parser.add_argument(
        "--constraint",
        action="append",
        default=[],
        metavar="TEXT",
        help="a rule stated to the agent, e.g. 'do not add dependencies' (repeatable)",
    )
    parser.add_argument(
        "--name", help="a name for the task, usable wherever its id is (approve NAME)"
    )
    parser.add_argument(
        "--base", help="the branch to start from and merge into (default: the one checked out)"
    )
    parser.add_argument(
        "--model",
        help="model id (default: $JUPYTER_DELEGATE_MODEL, else [model] default in "
        "~/.jupyter/delegate/config.toml, else claude-sonnet-4-6)",
    )
    parser.add_argument(
        "--effort",
        type=_levels,
        metavar="LEVEL[,LEVEL...]",
        help=f"how hard the model thinks ({', '.join(LEVELS)}), one level it takes (default: "
        "[model] effort in config.toml, else the model's own); with --attempts, a list "
        "spread over the attempts in turn",
    )
    parser.add_argument(
        "--attempts",
        type=_attempts,
        metavar="N",
        help="best-of-N: run N independent attempts (1 to 8) in parallel, compare them side "
        "by side, keep one (approving it archives the others)",
    )
    parser.add_argument(
        "--models",
        type=_names,
        metavar="A,B,...",
        help="with --attempts: the models to spread the attempts over, in turn",
    )
    parser.add_argument(
        "--compact-at",
        metavar="TOKENS|PERCENT|off",
        help="compact the conversation when a request reaches this many input tokens, or "
        "this share of the model's window, e.g. 120000 or 60%% (default: [model] "
        "compact_at in config.toml, else 60%%); off: never (a long task then fails at "
        "the window)",
    )
    parser.add_argument("--max-usd", type=float, help="dollar budget (default 3)")
    parser.add_argument("--max-steps", type=int, help="step budget (default 60)")
    parser.add_argument("--max-minutes", type=float, help="time budget (default 30)")
    parser.add_argument(
        "--command-timeout",
        type=float,
        metavar="SECONDS",
        help="how long each of the agent's commands may run (default 120)",
    )
    parser.add_argument(
        "--check-timeout",
        type=float,
        metavar="SECONDS",
        help="how long each check may run (default 600; a check's own '# timeout=N' wins)",
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME[=VALUE]",
        help="a variable for commands and checks, from your environment or as given "
        "(repeatable; credentials never pass)",
    )
    parser.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run the task's rounds on the Dask cluster whose scheduler is at ADDRESS, "
        "e.g. tcp://host:8786 (default: [cluster] address in config.toml; needs "
        "`pip install 'jupyter-delegate[dask]'`)",
    )
    parser.add_argument(
        "--cpus",
        metavar="N",
        help="CPUs the task's checks need: on a cluster, its rounds run only on a worker "
        'declaring that many (`dask worker --resources "cpus=N"`); journaled',
    )
    parser.add_argument(
        "--memory",
        metavar="SIZE",
        help="memory the task's checks need, e.g. 4GB or 512MiB: on a cluster, a worker "
        "resource as --cpus is; journaled",
    )
    parser.add_argument(
        "--sandbox",
        choices=SANDBOXES,
        help="command confinement (default auto: bubblewrap or refuse)",
    )
    for kind in ("allow", "ask", "deny"):
        parser.add_argument(
            f"--{kind}",
            action="append",
            default=[],
            metavar="RULE",
            help=f"{kind} tool calls matching RULE, e.g. 'Bash(pytest:*)'",
        )
    parser.add_argument(
        "--mode",
        choices=MODES,
        default="default",
        help="permission mode (default: sandboxed commands and in-scope edits run)",
    )
    parser.add_argument(
        "--no-suggested-checks",
        action="store_true",
        help="when no --check is given, do not run the test commands AGENTS.md names",
    )


def add_plan_options(parser: argparse.ArgumentParser) -> None:
    """How a plan (planning.py) runs: the options of `%%delegate-plan`, `%%delegate --plan` and
    `jupyter delegate plan`."""
    parser.add_argument(
        "--parallel",
        type=_attempts,
        metavar="N",
        help="subtasks running at once (default: the plan's `parallel:`, else 2)",
    )
    parser.add_argument(
        "--stack",
        action="store_true",
        default=None,
        help="a subtask starts from its parents in review, not only once they are approved",
    )


def _levels(text: str) -> list[str]:
    levels = [t.strip() for t in text.split(",") if t.strip()]
    wrong = [t for t in levels if t not in LEVELS]
    if not levels or wrong:
        raise argparse.ArgumentTypeError(
            f"{text!r}: effort is one of {', '.join(LEVELS)} (or a list of them, comma separated)"
        )
    return levels


def _attempts(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if not 1 <= number <= 8:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number from 1 to 8")
    return number


def _names(text: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r}: give model ids, comma separated")
    return names


def attempt_options(args: argparse.Namespace) -> dict[str, Any]:
    """What `attempts.start` takes from the options: the count, the models and efforts to
    spread. A list of models or efforts without --attempts is refused."""
    efforts = args.effort or []
    if args.attempts is None:
        if args.models or len(efforts) > 1:
            raise UsageError(
                "--models and a list of --effort levels spread attempts: add --attempts N."
            )
        return {}
    return {"count": args.attempts, "models": args.models or [], "efforts": efforts}


def outcome_from(args: argparse.Namespace, stated: Outcome | str) -> Outcome:
    """The outcome to submit: the goal (or a cell's whole outcome) with the --check,
    --scope and --constraint options added, and the budget the options set."""
    budget = Budget.from_options(
        max_steps=args.max_steps,
        max_usd=args.max_usd,
        max_minutes=args.max_minutes,
        command_timeout_s=args.command_timeout,
        check_timeout_s=args.check_timeout,
    )
    if isinstance(stated, str):
        stated = Outcome(stated, budget=budget)
    return Outcome(
        stated.goal,
        stated.checks + tuple(args.check),
        stated.scope + tuple(args.scope),
        stated.constraints + tuple(args.constraint),
        budget,
    )


def submit_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keyword arguments of `TaskManager.submit` the options set."""
    return {
        "repo": args.repo,
        "base": args.base,
        "model": args.model,
        "sandbox": args.sandbox,
        "policy": Policy.from_rules(args.allow, args.ask, args.deny, args.mode),
        "name": args.name,
        "use_suggested_checks": not args.no_suggested_checks,
        "env": args.env,
        "effort": args.effort[0] if args.effort else None,
        "compact_at": args.compact_at,
        "runner": args.cluster,
        "cpus": args.cpus,
        "memory": args.memory,
    }


# -- the decisions on a task ------------------------------------------------------------------
def _task_id(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", metavar="ID", help="the task's id or name")


def _checks(parser: argparse.ArgumentParser) -> None:
    _task_id(parser)
    parser.add_argument(
        "number", nargs="?", metavar="N", help="only the Nth check (1 is the first)"
    )


def _approve(parser: argparse.ArgumentParser) -> None:
    _task_id(parser)
    parser.add_argument("--squash", action="store_true", help="one squashed commit")
    parser.add_argument(
        "--force",
        action="store_true",
        help="merge even if it is not proven (a check failed, it has none, or a budget "
        "stopped it); the journal records the override",
    )


def _reject(parser: argparse.ArgumentParser) -> None:
    _task_id(parser)
    parser.add_argument("words", nargs="*", metavar="REASON", help="why (kept in the journal)")
    parser.add_argument("--reason", nargs="+", default=[], metavar="R", help="why, as an option")


def _diff(parser: argparse.ArgumentParser) -> None:
    _task_id(parser)
    parser.add_argument(
        "--since-review",
        action="store_true",
        help="only the changes since the last review (the current round's own)",
    )


def _edit(parser: argparse.ArgumentParser) -> None:
    _task_id(parser)
    parser.add_argument("file", nargs="?", metavar="FILE", help="a file, from the repository root")


def _commit_edits(parser: argparse.ArgumentParser) -> None:
    _task_id(parser)
    parser.add_argument("-m", "--message", default="", help="the commit message")


def _request_changes(parser: argparse.ArgumentParser) -> None:
    _task_id(parser)
    parser.add_argument(
        "text", nargs="*", metavar="TEXT", help="the feedback (may be left out with --comment)"
    )
    parser.add_argument(
        "--comment",
        action="append",
        default=[],
        metavar="FILE:LINE[-END]=TEXT",
        help="a comment on lines of the reviewed code, e.g. 'calc.py:2=why subtract?' "
        "(repeatable); the agent receives it with the lines quoted",
    )
    remember = parser.add_mutually_exclusive_group()
    remember.add_argument(
        "--remember",
        dest="remember",
        action="store_const",
        const="repo",
        help="also keep the feedback as a preference for this repository's later tasks",
    )
    remember.add_argument(
        "--remember-everywhere",
        dest="remember",
        action="store_const",
        const="user",
        help="also keep the feedback as a preference for every repository",
    )


def _pending(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", nargs="?", help="one task (default: every task of the repository)")


def _answer(parser: argparse.ArgumentParser) -> None:
    _task_id(parser)
    parser.add_argument(
        "words",
        nargs="+",
        metavar="[REQUEST] allow|deny",
        help="the question's request id (may be left out when the task has one question), "
        "then allow or deny",
    )
    parser.add_argument(
        "--remember",
        action="store_true",
        help="with allow: also allow what the question shows (the command's prefix, "
        "bash(pytest:*), or the file) for the rest of the task",
    )
    parser.add_argument(
        "--rule",
        action="append",
        default=[],
        metavar="RULE",
        help="with allow: grant this rule for the rest of the task instead, e.g. "
        "'bash(pytest:*)' (it must match the call; repeatable)",
    )
    parser.add_argument(
        "--reason", default=None, help="with deny: what the agent is told, e.g. 'use the venv'"
    )


def _resume(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("id", nargs="?", metavar="ID", help="the task's id or name")
    parser.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="receive a task handed off elsewhere (`handoff ID -o FILE`) into this repository, "
        "after verifying its journal and branch, and continue it here",
    )
    parser.add_argument(
        "--review-only",
        action="store_true",
        help="with --from: restore the task here without running it",
    )


def _handoff(parser: argparse.ArgumentParser) -> None:
    _task_id(parser)
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="FILE",
        help="the bundle file to write (the task's branch, journal and record)",
    )


TASK_ARGUMENTS: dict[str, Callable[[argparse.ArgumentParser], None]] = {
    "show": _task_id,
    "diff": _diff,
    "edit": _edit,
    "commit-edits": _commit_edits,
    "checks": _checks,
    "approve": _approve,
    "reject": _reject,
    "request-changes": _request_changes,
    "cancel": _task_id,
    "pause": _task_id,
    "pending": _pending,
    "answer": _answer,
    "resume": _resume,
    "handoff": _handoff,
}


def add_task_arguments(command: str, parser: argparse.ArgumentParser) -> None:
    """The arguments of a decision on a task (`TASK_ARGUMENTS`), as both sides take them."""
    TASK_ARGUMENTS[command](parser)


def reason_of(args: argparse.Namespace) -> str | None:
    """A reject's reason: its words, or --reason's (`reject ID too big` keeps "too big")."""
    return " ".join([*args.words, *args.reason]) or None


def feedback_of(args: argparse.Namespace) -> str:
    """A request-changes' feedback, its words joined (one quoted argument stays as it is)."""
    return " ".join(args.text)


_COMMENT = re.compile(r"(?P<path>[^=]+?):(?P<line>\d+)(?:-(?P<end>\d+))?=(?P<body>.*)", re.DOTALL)


def comments_of(args: argparse.Namespace) -> list[LineComment]:
    """A request-changes' line comments, from its `--comment FILE:LINE[-END]=TEXT`s."""
    comments = []
    for given in args.comment:
        match = _COMMENT.fullmatch(given.strip())
        if match is None:
            raise UsageError(
                f"--comment {given!r}: write FILE:LINE=TEXT or FILE:LINE-END=TEXT, e.g. "
                "--comment 'calc.py:2=why subtract?'."
            )
        end = match["end"]
        comments.append(
            LineComment(
                match["path"].strip(),
                int(match["line"]),
                match["body"],
                end_line=int(end) if end is not None else None,
            )
        )
    return comments


def option_strings(parser: argparse.ArgumentParser) -> list[str]:
    """The options a parser knows, as an error lists them."""
    return [s for action in parser._actions for s in action.option_strings if s.startswith("--")]
