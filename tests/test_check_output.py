"""A check's output as a review shows it: the last lines that say why it failed (real
pytest and unittest output), its whole output from the log or the journal's tail, and agent
text made printable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_delegate.check_output import (
    LINE_CHARS,
    TAIL_LINES,
    check_log,
    failure_tail,
    printable,
    whole_output,
)
from jupyter_delegate.task import CheckResult, Task

MANY_FAILURES = """\
import pytest


@pytest.mark.parametrize("n", range(20))
def test_n(n):
    assert n == 3, f"n was {n}"


def test_boom():
    raise RuntimeError("boom")
"""
ONE_FAILURE = """\
def test_total():
    assert sum([2, 3]) == 6, "the total is wrong"


def test_fine():
    assert True
"""


def pytest_output(tmp_path: Path, source: str, *args: str) -> str:
    (tmp_path / "test_it.py").write_text(source)
    # As a user's terminal runs it: under CI (CI=true, BUILD_NUMBER) pytest stops
    # shortening the lines of its short test summary, which changes the tail.
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "BUILD_NUMBER")}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args, "test_it.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    return done.stdout + done.stderr


def test_the_tail_is_the_last_lines_without_the_trailing_blank_ones() -> None:
    output = "".join(f"line {n}\n" for n in range(1, 41)) + "\n   \n\n"
    tail = failure_tail(output).splitlines()
    assert tail == [f"line {n}" for n in range(26, 41)] and len(tail) == TAIL_LINES
    assert failure_tail("only\n\n") == "only"
    assert failure_tail("") == "" and failure_tail("\n \n") == ""


def test_a_single_pytest_failure_shows_its_assertion_and_the_counts(tmp_path: Path) -> None:
    tail = failure_tail(pytest_output(tmp_path, ONE_FAILURE, "-q")).splitlines()
    assert len(tail) <= TAIL_LINES
    assert any(line.startswith("E ") and "the total is wrong" in line for line in tail)
    assert any("short test summary info" in line for line in tail)
    assert "FAILED test_it.py::test_total - AssertionError: the total is wrong" in tail
    assert tail[-1].startswith("1 failed, 1 passed")


@pytest.mark.parametrize("verbosity", ["-q", "-v"])
def test_many_pytest_failures_show_the_summarys_start_and_its_counts(
    tmp_path: Path, verbosity: str
) -> None:
    output = pytest_output(tmp_path, MANY_FAILURES, verbosity)
    tail = failure_tail(output).splitlines()
    assert len(tail) == TAIL_LINES
    assert "short test summary info" in tail[0]
    assert tail[1] == "FAILED test_it.py::test_n[0] - AssertionError: n was 0"
    # the header, 20 failures and the counts: the header, 12 failures and the counts shown
    assert tail[-2] == "[… 8 more lines]"
    assert "20 failed, 1 passed" in tail[-1]
    # what plain last lines would show instead: the end of the summary only
    assert "test_n[0]" not in "\n".join(output.splitlines()[-TAIL_LINES:])


def test_unittest_output_shows_the_assertion_and_the_verdict(tmp_path: Path) -> None:
    (tmp_path / "test_sum.py").write_text(
        "import unittest\n\n\nclass T(unittest.TestCase):\n"
        "    def test_sum(self):\n        self.assertEqual(2 + 3, 6)\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "unittest", "-q", "test_sum"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    tail = failure_tail(done.stderr).splitlines()
    assert "AssertionError: 5 != 6" in tail and tail[-1] == "FAILED (failures=1)"


def test_the_tail_of_a_flood_is_chosen_from_its_end(tmp_path: Path) -> None:
    flood = "".join(f"progress {n}\n" for n in range(200_000))  # 2.5 MB, like a full log
    summary = pytest_output(tmp_path, MANY_FAILURES, "-q")
    tail = failure_tail(flood + summary).splitlines()
    assert tail == failure_tail(summary).splitlines()
    assert failure_tail(flood).splitlines()[-1] == "progress 199999"


def test_long_lines_are_cut_and_few_lines_kept_when_asked() -> None:
    tail = failure_tail("x" * 5000 + "\nend\n")
    assert tail.splitlines()[0] == "x" * (LINE_CHARS - 1) + "…"
    assert failure_tail("a\nb\nc\n", limit=2) == "b\nc"
    assert failure_tail("a\n", limit=0) == ""


def test_printable_removes_what_a_terminal_would_act_upon() -> None:
    text = (
        "\x1b[31mred\x1b[0m \x1b]0;new title\x07title \x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\"
        " over\rwrite\r\n back\x08space \x9b2J c1 \u202eevil\u202c \u2066iso\u2069 bell\x07"
        " tab\tand\nnewline é ✓"
    )
    assert printable(text) == (
        "red title link overwrite\n backspace 2J c1 evil iso bell tab\tand\nnewline é ✓"
    )
    assert printable("plain text\n") == "plain text\n"


def test_the_tail_is_printable_too() -> None:
    tail = failure_tail("\x1b[1m\x1b[31mFAILED\x1b[0m test_x\r\n\u202e1 failed\n")
    assert tail == "FAILED test_x\n1 failed"


def check(**kw: str) -> CheckResult:
    fields = {"command": "pytest", "exit_code": 1, "passed": False, "duration_s": 1.0}
    return CheckResult(**fields, output_tail="the last 4000 characters\n", **kw)  # type: ignore[arg-type]


def test_the_whole_output_comes_from_the_log_and_else_from_the_journals_tail(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "tasks" / "abc123"
    (folder / "checks").mkdir(parents=True)
    (folder / "checks" / "1-1.log").write_text("everything\n" * 1000)
    whole = "everything\n" * 1000
    assert whole_output(check(log=str(folder / "checks" / "1-1.log")), folder) == whole
    assert whole_output(check(log="checks/1-1.log"), folder) == whole  # relative to the folder
    # the repository moved: the absolute path is stale, the file is in the task's folder
    moved = check(log="/old/place/.git/delegate/tasks/abc123/checks/1-1.log")
    assert check_log(moved, folder) == folder / "checks" / "1-1.log"
    assert whole_output(moved, folder) == whole
    assert check_log(check(log="checks/1-1.log"), None) is None
    for missing in (check(), check(log="checks/1-2.log"), check(log=str(folder / "checks"))):
        assert check_log(missing, folder) is None
        assert whole_output(missing, folder) == "the last 4000 characters\n"
    assert check_log(check(log="/elsewhere/other-task/checks/1-1.log"), folder) is None


def test_a_journal_from_before_check_logs_still_folds(tmp_path: Path) -> None:
    from jupyter_delegate.outcome import Outcome

    task = Task(id="abc123", outcome=Outcome("x"), repo=tmp_path)
    old = {"command": "false", "exit_code": 1, "passed": False, "duration_s": 0.1}
    task.apply("checks", {"results": [{**old, "output_tail": "boom\n"}]})
    assert task.checks[0].log == "" and whole_output(task.checks[0], None) == "boom\n"
