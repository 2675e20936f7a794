"""The CLI (`jupyter delegate ...`) against the fake Messages API on loopback."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest

from conftest import CHECK, FIX_TURNS, SANDBOX, run_check
from jupyter_delegate.cli import main
from jupyter_delegate.journal import Journal
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario


def serve(turns: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    fake = FakeMessagesAPI(load_scenario({"name": "cli", "turns": turns}))
    with FakeServer(fake) as running:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", running.url)
        yield running


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    yield from serve(FIX_TURNS, monkeypatch)


# An agent that leaves add() broken, says things meant for the terminal, and is done.
NO_FIX_TURNS: list[dict[str, Any]] = [
    {
        "text": "Leaving a note.\x1b]0;owned\x07 \u202egnp.ssap\u202c\r\x1b[2K",
        "tools": [{"write": {"file_path": "NOTES.md", "content": "add() later\n"}}],
    },
    {"tools": [{"finish": {"summary": "Left a note.\x1b[2J\x1b[H PASS everything"}}]},
]


@pytest.fixture
def no_fix_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    yield from serve(NO_FIX_TURNS, monkeypatch)


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def run_task(repo: git.Repo, *extra: str) -> tuple[int, str, str]:
    code, text = cli(
        "run",
        "Make add() add.",
        "--repo",
        repo.working_dir,
        "--check",
        CHECK,
        "--sandbox",
        SANDBOX,
        *extra,
    )
    task_id = text.split()[1]
    return code, text, task_id


def test_run_prints_steps_and_review_then_approves(repo: git.Repo, server: FakeServer) -> None:
    code, text, _ = run_task(repo, "--approve")
    assert code == 0, text
    assert "> bash " + CHECK in text and "> edit calc.py" in text
    assert "PASS " + CHECK in text and "calc.py" in text and "cost: $" in text
    assert "Approved: main is now at" in text
    assert run_check(Path(repo.working_dir)) == 0


def test_list_show_diff_reject_and_audit(repo: git.Repo, server: FakeServer) -> None:
    _, _, task_id = run_task(repo, "--no-approve")
    code, listing = cli("list", "--repo", repo.working_dir, "--json")
    records = json.loads(listing)
    assert code == 0 and [r["id"] for r in records] == [task_id]
    assert records[0]["state"] == "review" and records[0]["checks"][0]["passed"]
    assert task_id in cli("list", "--repo", repo.working_dir)[1]
    assert "Review of task" in cli("show", task_id, "--repo", repo.working_dir)[1]
    assert "+    return a + b" in cli("diff", task_id, "--repo", repo.working_dir)[1]
    assert cli("audit", "verify", "--repo", repo.working_dir) == (
        0,
        f"{task_id}: audit verify: ok ({_events(repo, task_id)} events, head "
        f"{_head(repo, task_id)[:12]})\n",
    )
    code, text = cli("reject", task_id, "--repo", repo.working_dir, "--reason", "no")
    assert code == 0 and f"refs/delegate/archive/{task_id}" in text


def _journal(repo: git.Repo, task_id: str) -> Path:
    return Path(repo.git_dir) / "delegate" / "tasks" / task_id / "journal.jsonl"


def _events(repo: git.Repo, task_id: str) -> int:
    return len(_journal(repo, task_id).read_text().splitlines())


def _head(repo: git.Repo, task_id: str) -> str:
    return str(json.loads(_journal(repo, task_id).read_text().splitlines()[-1])["hash"])


def test_audit_names_the_tampered_line_and_exits_1(repo: git.Repo, server: FakeServer) -> None:
    _, _, task_id = run_task(repo, "--no-approve")
    journal = _journal(repo, task_id)
    lines = journal.read_text().splitlines()
    assert "Please reach" in lines[2]
    lines[2] = lines[2].replace("Please reach", "Please wreck")
    journal.write_text("\n".join(lines) + "\n")
    code, text = cli("audit", "verify", task_id, "--repo", repo.working_dir)
    assert code == 1 and "line 3: content does not match its hash" in text


def test_failing_checks_exit_nonzero(repo: git.Repo, server: FakeServer) -> None:
    code, text = cli(
        "run",
        "x",
        "--repo",
        repo.working_dir,
        "--check",
        "false",
        "--sandbox",
        SANDBOX,
        "--no-approve",
    )
    assert code == 1 and "FAIL false" in text


def test_bad_input_exits_2_with_the_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], server: FakeServer
) -> None:
    assert cli("run", "x", "--repo", str(tmp_path))[0] == 2
    assert "not inside a git repository" in capsys.readouterr().err
    assert cli("show", "abcdef", "--repo", str(tmp_path))[0] == 2
    assert cli("run", "x", "--repo", str(tmp_path), "--max-usd", "0")[0] == 2
    assert "max_usd must be a positive number" in capsys.readouterr().err


def test_unknown_task_id_is_named(repo: git.Repo, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli("approve", "zzzzzz", "--repo", repo.working_dir)[0] == 2
    assert "No task 'zzzzzz'" in capsys.readouterr().err


def test_jupyter_delegate_demo_runs_offline_end_to_end(tmp_path: Path) -> None:
    jupyter = Path(sys.executable).parent / "jupyter"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    done = subprocess.run(
        [str(jupyter), "delegate", "demo", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "SCRIPTED" in out and "Before: " in out and "FAILS" in out
    assert "PASS python3 -m unittest" in out
    assert "After: `python3 -m unittest discover -s tests -q` passes" in out
    assert "audit verify: ok" in out


def test_headless_ask_is_denied_and_yes_allows(repo: git.Repo, server: FakeServer) -> None:
    code, text, _ = run_task(repo, "--ask", "Bash", "--no-approve")
    assert "asks permission (rule bash matches" in text and "denied: nobody to ask" in text
    code, text, _ = run_task(repo, "--ask", "Bash", "--yes", "--no-approve")
    assert code == 0 and "allowed (--yes)" in text and "PASS " + CHECK in text


def test_plan_mode_from_the_cli_keeps_the_agent_read_only(
    repo: git.Repo, server: FakeServer
) -> None:
    code, text, _ = run_task(repo, "--mode", "plan", "--no-approve")
    assert code == 1 and "FAIL " + CHECK in text
    assert "denied: edit (plan mode is read only; by policy)" in text


def test_run_passes_declared_variables_and_a_check_timeout(
    repo: git.Repo,
    server: FakeServer,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FROM_MY_SHELL", "shell-value")
    code, text = cli(
        "run",
        "Make add() add.",
        "--repo",
        repo.working_dir,
        "--sandbox",
        SANDBOX,
        "--env",
        "MODE=ci",
        "--env",
        "FROM_MY_SHELL",
        "--check-timeout",
        "2",
        "--check",
        'test "$MODE/$FROM_MY_SHELL" = ci/shell-value',
        "--check",
        "sleep 30",
        "--check",
        "sleep 3; echo slept  # timeout=10",
        "--no-approve",
    )
    assert code == 1, text  # a check failed
    task_id = text.split()[1]
    _code, shown = cli("show", task_id, "--repo", repo.working_dir, "--json")
    checks = json.loads(shown)["checks"]
    assert [c["passed"] for c in checks] == [True, False, True], checks
    assert checks[1]["exit_code"] == 124 and "timed out after 2s" in checks[1]["output_tail"]
    assert [c["timeout_s"] for c in checks] == [2, 2, 10]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--env", "1BAD=x"], "'1BAD' is not a variable name"),
        (["--check-timeout", "-5"], "check_timeout_s must be a positive number"),
        (["--check", "pytest  # timeout=soon"], "'# timeout=soon' must be a positive number"),
    ],
)
def test_run_refuses_a_malformed_environment_or_timeout_before_starting(
    repo: git.Repo, args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _text = cli("run", "Goal.", "--repo", repo.working_dir, "--sandbox", SANDBOX, *args)
    assert code == 2
    assert message in capsys.readouterr().err
    assert not (Path(repo.git_dir) / "delegate" / "tasks").exists()


# -- done is proven; every failure has a way out ----------------------------------------------
@contextlib.contextmanager
def serving(turns: list, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesAPI]:  # type: ignore[type-arg]
    fake = FakeMessagesAPI(load_scenario({"name": "cli", "turns": turns}))
    with FakeServer(fake) as running:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", running.url)
        yield fake


def test_run_approve_never_merges_failing_work_and_force_does_recording_it(
    repo: git.Repo, server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    base = repo.head.commit.hexsha
    code, text = cli(
        "run",
        "x",
        "--repo",
        repo.working_dir,
        "--check",
        "false",
        "--sandbox",
        SANDBOX,
        "--approve",
    )
    task_id = text.split()[1]
    assert code == 1
    assert "Review of task" in text and "FAIL false" in text
    assert "NOT PROVEN: check `false` failed (exit 1)" in text
    assert "Not merged:" in text and "Nothing was merged" in text
    assert f"jupyter delegate approve {task_id} --force" in text
    assert repo.head.commit.hexsha == base
    assert f"{task_id}  review (checks fail)" in cli("list", "--repo", repo.working_dir)[1]
    assert f"{task_id}  review (checks fail)" in cli("show", task_id, "--repo", repo.working_dir)[1]

    assert cli("approve", task_id, "--repo", repo.working_dir) == (1, "")
    assert "is not proven: check `false` failed" in capsys.readouterr().err
    assert repo.head.commit.hexsha == base

    code, text = cli("approve", task_id, "--repo", repo.working_dir, "--force")
    assert code == 0 and "without proof (forced: check `false` failed (exit 1))" in text
    assert repo.head.commit.hexsha != base
    assert f"{task_id}  merged (forced)" in cli("list", "--repo", repo.working_dir)[1]
    shown = cli("show", task_id, "--repo", repo.working_dir)[1]
    assert "merged (forced)" in shown
    assert "proof: merged without proof (forced): check `false` failed (exit 1)" in shown
    record = json.loads(cli("show", task_id, "--repo", repo.working_dir, "--json")[1])
    assert record["forced"] is True and record["forced_reasons"] == [
        "check `false` failed (exit 1)"
    ]


def test_show_and_diff_after_the_base_moved_list_the_tasks_change_only(
    repo: git.Repo, server: FakeServer
) -> None:
    _, _, task_id = run_task(repo, "--no-approve")
    (Path(repo.working_dir) / "user.txt").write_text("mine\n")
    repo.git.add("-A")
    repo.git.commit("-q", "-m", "the user's commit")
    for command in ("show", "diff"):
        text = cli(command, task_id, "--repo", repo.working_dir)[1]
        assert "calc.py" in text and "user.txt" not in text


def test_a_dropped_connection_fails_the_run_and_resume_yes_approve_merges(
    repo: git.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped = {**FIX_TURNS[0], "faults": [{"drop": True}, {"drop": True}]}
    with serving([dropped, *FIX_TURNS[1:]], monkeypatch):
        code, text, task_id = run_task(repo, "--ask", "Bash", "--no-approve")
        assert code == 1 and "ended failed" in text
        assert f"`jupyter delegate resume {task_id}` continues it" in text
        shown = cli("show", task_id, "--repo", repo.working_dir)[1]
        assert "failed" in shown and "resume" in shown
        code, text = cli("resume", task_id, "--repo", repo.working_dir, "--yes", "--approve")
    assert code == 0, text
    assert "allowed (--yes)" in text and "Approved: main is now at" in text
    assert run_check(Path(repo.working_dir)) == 0


def test_a_failed_task_is_rejected_from_the_cli(
    repo: git.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    dropped = {**FIX_TURNS[0], "faults": [{"drop": True}, {"drop": True}]}
    with serving([dropped], monkeypatch):
        _, _, task_id = run_task(repo, "--no-approve")
    code, text = cli("reject", task_id, "--repo", repo.working_dir)
    assert code == 0 and f"refs/delegate/archive/{task_id}" in text
    assert repo.git.rev_parse(f"refs/delegate/archive/{task_id}")
    assert not (Path(repo.git_dir) / "delegate" / "worktrees" / task_id).exists()


def test_request_changes_takes_yes_and_a_headless_denial_is_recorded_as_headless(
    repo: git.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    turns = [
        *FIX_TURNS,
        {"tools": [{"bash": {"command": "echo again"}}]},
        {"tools": [{"finish": {"summary": "ran it again"}}]},
    ]
    with serving(turns, monkeypatch):
        _, text, task_id = run_task(repo, "--ask", "Bash", "--no-approve")
        assert "denied: nobody to ask" in text
        code, text = cli(
            "request-changes", task_id, "Run it again.", "--repo", repo.working_dir, "--yes"
        )
    assert code == 0 and "allowed (--yes)" in text and "ran it again" in text
    permissions = [
        e.data
        for e in Journal(_journal(repo, task_id)).events()
        if e.type == "permission" and e.data.get("decision")
    ]
    assert [(p["decision"], p["by"]) for p in permissions] == [
        ("deny", "headless"),
        ("deny", "headless"),
        ("allow", "--yes"),
    ]
    events = Journal(_journal(repo, task_id)).events()
    reasons = [e.data["reason"] for e in events if e.type == "state"]
    assert "bash denied by headless" in reasons and "bash allowed by --yes" in reasons


class _Terminal(io.StringIO):
    """Typed answers, at what the CLI takes for a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(("typed", "merged"), [("y\nn\n", False), ("y\ny\n", True)])
def test_at_a_terminal_merging_unproven_work_takes_a_second_yes(
    repo: git.Repo, server: FakeServer, monkeypatch: pytest.MonkeyPatch, typed: str, merged: bool
) -> None:
    monkeypatch.setattr(sys, "stdin", _Terminal(typed))
    base = repo.head.commit.hexsha
    code, text = cli(
        "run", "x", "--repo", repo.working_dir, "--check", "false", "--sandbox", SANDBOX
    )
    assert code == 1  # its check fails, merged or not
    state = cli("list", "--repo", repo.working_dir)[1]
    if merged:
        assert "merged (forced)" in state and repo.head.commit.hexsha != base
    else:
        assert "Kept in review" in text and " review " in state
        assert repo.head.commit.hexsha == base


# Prints 2000 numbered lines (past the journal's 4000 characters), the first in red, with a
# bidi override and a carriage return.
NOISY_CHECK = "printf '\\033[31mred\\033[0m \\342\\200\\256reversed\\r\\n'; seq 2 2000; exit 3"
MISSING_MODULE = "python3 -c 'import humanize_is_not_here'"
TERMINAL_ACTORS = ("\x1b", "\r", "\u202e", "\u202c", "\x07")


def under(lines: list[str], start: str) -> list[str]:
    """The lines after the first one that starts with `start`, to the next check's."""
    at = next(i for i, line in enumerate(lines) if line.startswith(start)) + 1
    end = next(i for i in range(at, len(lines)) if not lines[i].startswith("      "))
    return lines[at:end]


def test_run_show_and_checks_say_why_a_check_failed(
    repo: git.Repo, no_fix_server: FakeServer
) -> None:
    code, ran, task_id = run_task(
        repo, "--check", NOISY_CHECK, "--check", MISSING_MODULE, "--no-approve"
    )
    assert code == 1
    code, shown = cli("show", task_id, "--repo", repo.working_dir)
    assert code == 0
    for text in (ran, shown):
        review = text[text.index("Review of task") :].splitlines()
        unittest_tail = under(review, f"    FAIL {CHECK} (exit 1, ")
        assert "      | AssertionError: -1 != 5" in unittest_tail
        assert unittest_tail[-2:-1] == ["      | FAILED (failures=1)"]
        assert unittest_tail[-1].startswith(f"      all of it: jupyter delegate checks {task_id} 1")
        noisy_tail = under(review, "    FAIL printf ")
        assert noisy_tail[:-1] == [f"      | {n}" for n in range(1986, 2001)]  # the last 15
        assert noisy_tail[-1].startswith(f"      all of it: jupyter delegate checks {task_id} 2")
        missing_tail = under(review, f"    FAIL {MISSING_MODULE} (exit 1, ")
        assert "      | ModuleNotFoundError: No module named 'humanize_is_not_here'" in missing_tail
        assert missing_tail[-2].startswith(  # the environment problem the output shows
            "      hint: `humanize_is_not_here` is not importable in the checks' environment"
        )
        for actor in TERMINAL_ACTORS:
            assert actor not in text, repr(actor)
    assert "agent: Leaving a note. gnp.ssap" in ran
    assert "summary: Left a note. PASS everything" in shown

    code, both = cli("checks", task_id, "--repo", repo.working_dir)
    assert code == 0
    assert f"check 1 of 3: FAIL {CHECK} (exit 1," in both and "AssertionError: -1 != 5" in both
    second = both[both.index("check 2 of 3: FAIL printf") : both.index("check 3 of 3")]
    log = _journal(repo, task_id).parent / "checks" / "1-2.log"
    assert second.splitlines()[1:] == [  # all of it, from its log
        f"  its whole output ({log}):",
        "red reversed",
        *(str(n) for n in range(2, 2001)),
        "",
    ]
    assert "  hint: `humanize_is_not_here` is not importable" in both
    code, one = cli("checks", task_id, "2", "--repo", repo.working_dir)
    assert code == 0 and "check 1 of 3" not in one and one.endswith("1999\n2000\n")
    for actor in TERMINAL_ACTORS:
        assert actor not in both, repr(actor)


def test_checks_refuses_a_bad_task_or_number_saying_what_to_do(
    repo: git.Repo, no_fix_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, task_id = run_task(repo, "--no-approve")
    capsys.readouterr()
    where = ("--repo", repo.working_dir)
    assert cli("checks", "zzzzzz", *where) == (2, "")
    assert f"No task 'zzzzzz' in {repo.working_dir}. Known tasks: {task_id}" in (
        capsys.readouterr().err
    )
    for bad in ("2", "0", "-1"):
        assert cli("checks", task_id, bad, *where) == (2, "")
        assert capsys.readouterr().err == (
            f"jupyter delegate checks: Task {task_id} has no check {bad}: it ran one check, "
            "number 1. Give one of those numbers, or none for all of them.\n"
        )
    assert cli("checks", task_id, "first", *where) == (2, "")
    assert capsys.readouterr().err == (
        f"jupyter delegate checks: 'first' is not a check number. Task {task_id}: it ran one "
        "check, number 1. Give one of those numbers, or none for all of them.\n"
    )


def test_checks_of_a_task_without_check_results_says_why(tmp_path: Path) -> None:
    from jupyter_delegate import Outcome, Task
    from jupyter_delegate.cli import checks_text, chosen_checks
    from jupyter_delegate.errors import DelegateError

    task = Task(id="abc123", outcome=Outcome("Tidy up."), repo=tmp_path)
    assert chosen_checks(task, None) == []
    assert checks_text(task, []) == (
        "Task abc123 (queued): Tidy up.\n  no check results: none were given.\n"
    )
    with pytest.raises(DelegateError, match=r"no check results \(none were given\): there is"):
        chosen_checks(task, "1")
    running = Task(id="abc124", outcome=Outcome("Fix it.", checks=("pytest",)), repo=tmp_path)
    with pytest.raises(DelegateError, match="they have not run yet; the task is queued"):
        chosen_checks(running, "1")


def test_run_takes_the_magics_name_and_constraints_and_reject_keeps_the_whole_reason(
    repo: git.Repo, server: FakeServer
) -> None:
    rule = "do not add dependencies"
    code, text, task_id = run_task(
        repo, "--name", "fix", "--constraint", rule, "--scope", "calc.py", "--no-approve"
    )
    assert code == 0, text
    code, shown = cli("show", "fix", "--repo", repo.working_dir, "--json")
    record = json.loads(shown)
    assert code == 0 and record["id"] == task_id and record["name"] == "fix"
    assert record["outcome"]["constraints"] == [rule]
    assert record["outcome"]["scope"] == ["calc.py"]
    code, text = cli("reject", "fix", "too", "big", "--repo", repo.working_dir)
    assert code == 0 and f"refs/delegate/archive/{task_id}" in text
    rejected = [e.data for e in Journal(_journal(repo, task_id)).events() if e.type == "rejected"]
    assert rejected[0]["reason"] == "too big"


@pytest.mark.parametrize(
    "argv",
    [
        ["approve", "fix", "--sqash"],
        ["approve", "fix", "--squ"],  # options are spelled out, as in the magics
        ["request-changes", "fix", "Add docstrings", "--remmeber"],
        ["run", "Fix it", "--scop", "src/"],
    ],
)
def test_an_unknown_flag_exits_2_naming_it(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli(*argv)
    assert exited.value.code == 2
    assert f"unrecognized arguments: {argv[-1] if argv[0] != 'run' else '--scop src/'}" in (
        capsys.readouterr().err
    )
