"""Review rounds: line comments the agent receives as in a pull-request review, each
request-changes a round with its own diff, and the reviewer's own edits committed as them
("fix it yourself"), all rebuilt from the journal."""

from __future__ import annotations

import contextlib
import io
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest

from conftest import CHECK, FIX_TURNS, FIXED, SANDBOX, Factory, messages_sent
from jupyter_delegate import LineComment, Outcome, ReviewRound, Task, TaskState
from jupyter_delegate.cli import main
from jupyter_delegate.errors import ReviewError, UsageError
from jupyter_delegate.journal import Journal
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario

SUB = "\n\ndef sub(a, b):\n    return a - b\n"
ROUND_TWO = [
    *FIX_TURNS,
    {"tools": [{"write": {"file_path": "calc.py", "content": FIXED + SUB}}]},
    {"tools": [{"finish": {"summary": "Added sub()."}}]},
]
# An agent that leaves add() broken (its check fails), then, sent back, adds a docstring.
NO_FIX = [
    {"tools": [{"write": {"file_path": "NOTES.md", "content": "add() later\n"}}]},
    {"tools": [{"finish": {"summary": "Left a note."}}]},
    {"tools": [{"write": {"file_path": "NOTES.md", "content": "add() fixed by you\n"}}]},
    {"tools": [{"finish": {"summary": "Noted your fix."}}]},
]


def submit(manager, repo: git.Repo):  # type: ignore[no-untyped-def]
    outcome = Outcome("Make add() add.", checks=(CHECK,))
    return manager.submit(outcome, repo=repo.working_dir)


def feedback_received(fake, needle: str) -> str:  # type: ignore[no-untyped-def]
    """The text of the user turn carrying `needle`, as the fake model first received it
    (in the request body)."""
    sent = [r for r in messages_sent(fake) if needle in json.dumps(r.body)]
    content = sent[0].body["messages"][-1]["content"]
    return "\n".join(block.get("text", "") for block in content if block["type"] == "text")


def test_line_comments_reach_the_agent_anchored_with_the_quoted_lines(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, fake = make_manager(ROUND_TWO)
    task = submit(manager, repo)
    assert task.wait(timeout=60) == TaskState.REVIEW
    first_head = task.head_commit
    task.request_changes(
        "Add a sub() too.",
        comments=[
            LineComment("calc.py", 2, "Good; keep this line as it is."),
            {
                "path": "calc.py",
                "line": 1,
                "end_line": 2,
                "body": "Old version, for reference.",
                "side": "old",
            },
        ],
    )
    assert task.wait(timeout=60) == TaskState.REVIEW
    # What the model received after the first round, from the request body itself.
    text = feedback_received(fake, "Add a sub() too.")
    assert "Add a sub() too." in text
    assert "calc.py:2\n>     return a + b\nGood; keep this line as it is." in text
    assert "calc.py:1-2 (old side" in text and ">     return a - b" in text

    rounds = task.review_rounds()
    assert [r.number for r in rounds] == [1, 2]
    assert rounds[0] == ReviewRound(1, "", (), task.base_commit, first_head)
    assert rounds[1].feedback == "Add a sub() too." and rounds[1].base == first_head
    assert rounds[1].comments[0] == LineComment("calc.py", 2, "Good; keep this line as it is.")
    assert rounds[1].comments[1].side == "old" and rounds[1].head == task.head_commit
    # The second round's own diff: only what it changed.
    since = task.diff(since=rounds[1].base)
    assert "+def sub(a, b):" in since and "+    return a + b" not in since
    assert "+    return a + b" in task.diff()
    # Rebuilt from the journal by another manager (another process, a restored notebook).
    other, _ = make_manager()
    again = other.get(task.id, repo.working_dir)
    assert again is not task and again.review_rounds() == rounds
    assert Journal(task.journal_path).verify().ok


def test_a_comment_on_a_line_or_file_that_is_not_there_is_refused_and_nothing_is_lost(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, fake = make_manager()
    task = submit(manager, repo)
    assert task.wait(timeout=60) == TaskState.REVIEW
    before = len(messages_sent(fake))
    with pytest.raises(UsageError, match=r"calc\.py has 2 lines in the new version"):
        task.request_changes("x", comments=[LineComment("calc.py", 9, "here?")])
    with pytest.raises(UsageError, match="not in the new version"):
        task.request_changes(comments=[{"path": "nope.py", "line": 1, "body": "?"}])
    with pytest.raises(UsageError, match="lacks body"):
        task.request_changes(comments=[{"path": "calc.py", "line": 1}])
    with pytest.raises(UsageError, match="line number from 1"):
        LineComment("calc.py", 0, "x")
    with pytest.raises(ReviewError, match="needs feedback or line comments"):
        task.request_changes()
    assert task.state == TaskState.REVIEW and len(messages_sent(fake)) == before
    assert len(task.review_rounds()) == 1
    assert not [e for e in Journal(task.journal_path).events() if e.type == "changes_requested"]


def test_the_reviewers_own_edit_is_committed_as_them_checks_rerun_and_the_agent_told(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, fake = make_manager(NO_FIX)
    task = submit(manager, repo)
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert task.verdict == "checks fail"
    with pytest.raises(ReviewError, match="Nothing changed"):
        task.commit_edits()
    path = task.worktree_file("calc.py")
    assert path == task.worktree / "calc.py"
    path.write_text(FIXED)

    commit = task.commit_edits("Fix add() myself")

    made = repo.commit(commit)
    assert (made.author.name, made.author.email) == ("Test User", "t@example.com")
    assert "Delegate-Edit: human" in made.message and task.branch in repo.git.branch(
        "--contains", commit
    )
    assert task.head_commit == commit and task.state == TaskState.REVIEW
    assert task.checks_passed and task.verdict == "proven"
    assert [(e["commit"], e["files"], e["message"]) for e in task.human_edits] == [
        (commit, ["calc.py"], "Fix add() myself")
    ]
    edits = [e.data for e in Journal(task.journal_path).events() if e.type == "human_edit"]
    assert edits and edits[0]["commit"] == commit and edits[0]["files"] == ["calc.py"]
    assert task.review_rounds()[-1].head == commit

    task.request_changes("Note my fix in NOTES.md.")
    assert task.wait(timeout=60) == TaskState.REVIEW
    text = feedback_received(fake, "Note my fix in NOTES.md.")
    assert "The reviewer edited the code themselves" in text and "in: calc.py" in text
    assert "+    return a + b" in text and commit[:10] in text
    assert task.review_rounds()[1].base == commit  # round 2 starts from the edited head
    assert "return a + b" not in task.diff(since=task.review_rounds()[1].base)
    other, _ = make_manager()
    assert other.get(task.id, repo.working_dir).human_edits == task.human_edits
    assert Journal(task.journal_path).verify().ok


def test_edits_committed_while_another_process_holds_the_task_go_through_its_inbox(
    repo: git.Repo, make_manager: Factory
) -> None:
    """A holder that lets go without acting (a round ending elsewhere) leaves the posted
    request to the poster, who commits the edits itself; the journal records the request."""
    from jupyter_delegate.manager import _try_lock

    manager, _ = make_manager(NO_FIX)
    task = submit(manager, repo)
    assert task.wait(timeout=60) == TaskState.REVIEW
    task.worktree_file("calc.py").write_text(FIXED)
    other, _ = make_manager()
    held = _try_lock(other.get(task.id, repo.working_dir).folder)
    assert held is not None  # "another process" holds the task now
    threading.Timer(0.5, os.close, (held,)).start()

    commit = task.commit_edits("Fix add() myself")

    assert task.head_commit == commit and task.verdict == "proven"
    controls = [e.data for e in Journal(task.journal_path).events() if e.type == "control"]
    assert [(c["action"], c["status"]) for c in controls] == [
        ("commit_edits", "accepted"),
        ("commit_edits", "done"),
    ]
    assert Journal(task.journal_path).verify().ok


def test_worktree_file_refuses_paths_leading_out(repo: git.Repo, make_manager: Factory) -> None:
    manager, _ = make_manager()
    task = submit(manager, repo)
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert task.worktree is not None
    (task.worktree / "out").symlink_to("/etc")
    for bad in ("../x", "/etc/passwd", ".git/config", "out/passwd", ""):
        with pytest.raises(UsageError):
            task.worktree_file(bad)
    assert task.worktree_file("new/file.py") == Path(task.worktree) / "new/file.py"
    with pytest.raises(ReviewError, match="not a commit"):
        task.diff(since="no-such-commit")


# -- the command line -------------------------------------------------------------------------
@contextlib.contextmanager
def serving(turns: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    fake = FakeMessagesAPI(load_scenario({"name": "cli", "turns": turns}))
    with FakeServer(fake) as running:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", running.url)
        yield fake


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def test_cli_comments_edits_and_the_diff_since_the_last_review(
    repo: git.Repo, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    at = ("--repo", repo.working_dir)
    with serving(ROUND_TWO, monkeypatch) as fake:
        code, text = cli(
            "run", "Make add() add.", *at, "--check", CHECK, "--sandbox", SANDBOX, "--no-approve"
        )
        task_id = text.split()[1]
        capsys.readouterr()
        # Bad input: one line saying what to do, exit 2, the task still in review.
        for argv, said in (
            (("--comment", "calc.py=why?"), "write FILE:LINE=TEXT"),
            (("--comment", "calc.py:9=why?"), "calc.py has 2 lines"),
            (("--comment", "nope.py:1=why?"), "not in the new version"),
            ((), "needs feedback or line comments"),
        ):
            assert cli("request-changes", task_id, *argv, *at, "--no-approve") == (2, "")
            err = capsys.readouterr().err
            assert said in err and len(err.strip().splitlines()) == 1
        assert cli("diff", task_id, "--since-review", *at)[0] == 2
        assert "first round of review" in capsys.readouterr().err
        assert cli("commit-edits", task_id, *at)[0] == 2
        assert "Nothing changed" in capsys.readouterr().err
        assert cli("edit", task_id, "../outside", *at)[0] == 2
        assert "`..`" in capsys.readouterr().err
        assert "changes_requested" not in Path(_journal(repo, task_id)).read_text()

        # Fix it yourself: the path to edit, your commit, the checks again.
        code, printed = cli("edit", task_id, "README.md", *at)
        readme = Path(printed.strip())
        assert code == 0 and readme.read_text() == "# proj\n"
        readme.write_text("# proj\n\nAdds numbers.\n")
        code, text = cli("commit-edits", task_id, "-m", "Say what it does", *at)
        assert code == 0 and "(README.md)" in text and "proven" in text

        code, text = cli(
            "request-changes",
            task_id,
            "Add a sub() too.",
            "--comment",
            "calc.py:2=Keep this line.",
            *at,
            "--no-approve",
        )
        assert code == 0
        sent = [r for r in messages_sent(fake) if "Add a sub() too." in json.dumps(r.body)]
        received = json.dumps(sent[0].body["messages"][-1])
        assert "calc.py:2\\n>     return a + b\\nKeep this line." in received
        assert "in: README.md" in received and "+Adds numbers." in received

    code, since = cli("diff", task_id, "--since-review", *at)
    assert code == 0 and "+def sub(a, b):" in since and "+    return a + b" not in since
    assert "README.md" not in since  # the reviewer's edit was in the round before
    shown = cli("show", task_id, *at)[1]
    assert "round 2 of review (changes requested 1 time)" in shown
    assert "human edit " in shown and "README.md (Say what it does)" in shown
    assert cli("audit", "verify", task_id, *at)[0] == 0


def _journal(repo: git.Repo, task_id: str) -> Path:
    return Path(repo.git_dir) / "delegate" / "tasks" / task_id / "journal.jsonl"


def test_edits_left_uncommitted_at_request_changes_are_the_reviewers_not_the_agents(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, fake = make_manager(NO_FIX)
    task = submit(manager, repo)
    assert task.wait(timeout=60) == TaskState.REVIEW
    task.worktree_file("calc.py").write_text(FIXED + "# checked\n")
    # The comment is on the code as the reviewer sees it, their edit included.
    task.request_changes(comments=[LineComment("calc.py", 3, "Drop this comment later.")])
    assert task.wait(timeout=60) == TaskState.REVIEW
    (edit,) = task.human_edits
    made = repo.commit(edit["commit"])
    assert made.author.name == "Test User" and edit["files"] == ["calc.py"]
    text = feedback_received(fake, "Drop this comment later.")
    assert "calc.py:3\n> # checked\nDrop this comment later." in text
    assert "The reviewer edited the code themselves" in text
    assert task.review_rounds()[1].base == edit["commit"]
    agent_commit = repo.commit(task.head_commit)
    assert agent_commit.parents[0].hexsha == edit["commit"]
    assert "Delegate-Model" in agent_commit.message and "calc.py" not in task.diff(
        since=edit["commit"]
    )


def test_rounds_of_a_journal_from_before_rounds_start_at_each_request_for_changes() -> None:
    outcome = Outcome("Make add() add.", checks=(CHECK,))
    task = Task(id="old", outcome=outcome, repo=Path("/nowhere"))
    opening = {
        "outcome": outcome.to_dict(),
        "branch": "delegate/old-x",
        "base_commit": "b" * 40,
        "model": "claude-sonnet-4-6",
        "worktree": "/nowhere/wt",
    }
    for type_, data in (
        ("task", opening),
        ("state", {"state": "running", "reason": "the agent is working"}),
        ("commit", {"commit": "1" * 40}),
        ("state", {"state": "review", "reason": "ready for review"}),
        ("user", {"content": [{"type": "text", "text": "The reviewer requests changes: x"}]}),
        ("state", {"state": "running", "reason": "changes requested"}),
        ("commit", {"commit": "2" * 40}),
        ("state", {"state": "review", "reason": "ready for review"}),
    ):
        task.apply(type_, data)
    assert task.review_rounds() == [
        ReviewRound(1, "", (), "b" * 40, "1" * 40),
        ReviewRound(2, "", (), "1" * 40, "2" * 40),
    ]
    assert task.review_round == 2 and task.last_review_base() == "1" * 40


# -- the magics -------------------------------------------------------------------------------
def test_magics_comment_and_commit_edits_and_the_record_names_round_and_edit(
    repo: git.Repo, make_manager: Factory
) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from jupyter_delegate.notebook.magics import DelegateMagics
    from jupyter_delegate.notebook.record import compact_record

    ip = InteractiveShell.instance()
    manager, fake = make_manager(ROUND_TWO)
    ip.register_magics(DelegateMagics(ip, manager=manager))
    try:
        with capture_output():
            ip.run_cell_magic(
                "delegate",
                f"--repo {repo.working_dir} --name fix",
                f"Make add() add.\ncheck: {CHECK}\n",
            )
        task = manager.get("fix")
        assert task.wait(timeout=60) == TaskState.REVIEW
        with pytest.raises(UsageError, match="write FILE:LINE=TEXT"):
            ip.run_line_magic("delegate", "request-changes fix --comment calc.py")
        task.worktree_file("README.md").write_text("# proj\n\nAdds.\n")
        with capture_output():
            commit = ip.run_line_magic("delegate", "commit-edits fix -m 'Say what it does'")
            assert task.human_edits[0]["commit"] == commit
            ip.run_line_magic("delegate", "request-changes fix --comment 'calc.py:2=Keep it.'")
        assert task.wait(timeout=60) == TaskState.REVIEW
        assert "calc.py:2\n>     return a + b\nKeep it." in feedback_received(fake, "Keep it.")
        record = compact_record(task)
        assert record["review_round"] == 2
        assert record["human_edits"] == [
            {"commit": commit, "files": ["README.md"], "message": "Say what it does"}
        ]
    finally:
        InteractiveShell.clear_instance()
