"""The review widget (`ReviewView`, an anywidget) driven by real tasks (scripted fake model,
real git): the traits its front end draws (files named added, renamed or binary; a large
diff sent in pages), and the messages its buttons send (approve, merge anyway, reject with
a reason, request changes with line comments, edit and commit your own edits).

Without a front end the widget talks to a dummy comm: a front end's message is handed to
the widget as ipywidgets hands it (`_handle_custom_msg`), and what is asserted is trait
state, which is exactly what a front end would be sent."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import git
import pytest

from conftest import CHECK, FIX_TURNS, FIXED, Factory, messages_sent, until
from jupyter_delegate import Outcome, Task, TaskState
from jupyter_delegate.notebook.review import PAGE_LINES, ReviewView

# The agent leaves add() broken (the check fails) and adds a big file, a binary file and
# a rename; its summary claims success.
MIXED = [
    {
        "tools": [
            {
                "bash": {
                    "command": "seq 1 5000 > big.txt && printf 'PNG\\000\\001\\002\\003' > logo.bin"
                    " && mv README.md GUIDE.md"
                }
            }
        ]
    },
    {"tools": [{"finish": {"summary": "All tests pass."}}]},
]
SUB = "\n\ndef sub(a, b):\n    return a - b\n"
ROUND_TWO = [
    *FIX_TURNS,
    {"tools": [{"write": {"file_path": "calc.py", "content": FIXED + SUB}}]},
    {"tools": [{"finish": {"summary": "Added sub()."}}]},
]


@pytest.fixture
def review_of() -> Iterator[Callable[[Task], ReviewView]]:
    made: list[ReviewView] = []

    def make(task: Task) -> ReviewView:
        assert task.wait(timeout=60) == TaskState.REVIEW
        made.append(ReviewView(task))
        return made[-1]

    yield make
    for view in made:
        view.close()


def submit(manager: Any, repo: git.Repo) -> Task:
    task: Task = manager.submit(Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir)
    return task


def act(view: ReviewView, **content: Any) -> None:
    """What a click in the front end does: a message to the widget; wait for its action."""
    view._handle_custom_msg(content, [])
    until(lambda: view.busy == "", what=f"{content['action']} to finish")


def test_files_are_named_binary_renamed_and_a_big_diff_is_sent_in_pages(
    repo: git.Repo, make_manager: Factory, review_of: Callable[[Task], ReviewView]
) -> None:
    manager, _ = make_manager(MIXED)
    view = review_of(submit(manager, repo))
    files = {f["path"]: f for f in view.files}
    assert files["logo.bin"]["status"] == "binary"
    assert files["GUIDE.md"]["status"] == "renamed"
    assert files["GUIDE.md"]["old_path"] == "README.md"
    assert files["big.txt"]["status"] == "added" and files["big.txt"]["added"] == 5000
    assert files["big.txt"]["cut"] > 0  # its patch is longer than a page: cut, and said so
    # No page carries more than PAGE_LINES lines of the patch; every file is on one.
    seen: dict[str, str] = {}
    for number in range(view.page_count):
        view.page = number
        assert view.page == number
        assert len(view.page_diff.splitlines()) <= PAGE_LINES + 1
        seen.update(dict.fromkeys(view.page_files, view.page_diff))
    assert view.page_count >= 2 and set(seen) == set(files)
    assert "Binary files" in seen["logo.bin"] and "rename from README.md" in seen["GUIDE.md"]
    # The bar's facts: the verdict, why, the counts.
    assert view.verdict == "checks fail" and view.state == "review"
    assert any(f"check `{CHECK}` failed" in reason for reason in view.reasons)
    assert view.counts["files"] == 3 and view.counts["checks_failed"] == 1
    assert view.counts["cost"].startswith("$") and view.summary == "All tests pass."


def test_approve_on_failing_checks_asks_and_only_merge_anyway_merges(
    repo: git.Repo, make_manager: Factory, review_of: Callable[[Task], ReviewView]
) -> None:
    manager, _ = make_manager(MIXED)
    view = review_of(submit(manager, repo))
    main_before = repo.heads.main.commit.hexsha
    act(view, action="approve", strategy="merge")
    assert view.asking == "force" and view.feedback == {}
    assert view.task.state == TaskState.REVIEW and repo.heads.main.commit.hexsha == main_before
    act(view, action="keep")  # changed their mind: nothing happens
    assert view.asking == "" and view.task.state == TaskState.REVIEW
    act(view, action="approve", strategy="merge")
    act(view, action="force", strategy="merge")
    assert view.task.state == TaskState.MERGED and view.state == "merged"
    merged = repo.heads.main.commit.hexsha
    assert merged != main_before
    assert view.decision == f"Merged into main as {merged[:10]} without proof (recorded)."
    assert view.feedback["text"] == view.decision and not view.feedback["error"]
    act(view, action="force", strategy="merge")  # twice: one clear line, no traceback
    assert view.feedback["error"] and "\n" not in view.feedback["text"].strip()


def test_reject_with_a_reason_archives_and_shows_the_reason(
    repo: git.Repo, make_manager: Factory, review_of: Callable[[Task], ReviewView]
) -> None:
    manager, _ = make_manager(FIX_TURNS)
    view = review_of(submit(manager, repo))
    assert view.verdict == "proven"
    act(view, action="reject", reason="not like this")
    assert view.task.state == TaskState.REJECTED and view.state == "rejected"
    assert view.decision == "Rejected: not like this."
    assert "archived" in view.feedback["text"]


def test_line_comments_reach_the_agent_and_round_two_shows_only_its_change(
    repo: git.Repo, make_manager: Factory, review_of: Callable[[Task], ReviewView]
) -> None:
    manager, fake = make_manager(ROUND_TWO)
    view = review_of(submit(manager, repo))
    comment = {"path": "calc.py", "line": 2, "body": "Good; keep this line."}
    view.draft_comments = [comment]  # as the front end keeps it
    act(view, action="request_changes", feedback="Add a sub() too.", comments=[comment])
    assert not view.feedback["error"], view.feedback
    assert view.draft_comments == []
    assert view.task.wait(timeout=60) == TaskState.REVIEW
    # The request the fake model received holds the anchor and the quoted line.
    sent = [r for r in messages_sent(fake) if "Add a sub() too." in json.dumps(r.body)]
    text = json.dumps(sent[0].body["messages"][-1])
    assert "calc.py:2" in text and ">     return a + b" in text and "Good; keep this line." in text
    until(lambda: len(view.rounds) == 2 and "+def sub" in view.page_diff, what="round 2")
    latest = view.rounds[-1]
    assert latest["feedback"] == "Add a sub() too." and latest["comments"] == [comment]
    view.since = latest["base"]  # the "changes since the last review" tab
    until(lambda: "+    return a + b" not in view.page_diff, what="the round's own diff")
    assert "+def sub(a, b):" in view.page_diff and view.page_files == ["calc.py"]
    view.since = ""
    until(lambda: "+    return a + b" in view.page_diff, what="all changes again")


def test_edit_save_and_commit_your_edits_marks_them_yours(
    repo: git.Repo, make_manager: Factory, review_of: Callable[[Task], ReviewView]
) -> None:
    manager, _ = make_manager(FIX_TURNS)
    view = review_of(submit(manager, repo))
    sent: list[dict[str, Any]] = []
    view.send = lambda content, buffers=None: sent.append(content)
    act(view, action="edit", path="calc.py")
    assert sent == [{"kind": "edit", "path": "calc.py", "text": FIXED}]
    act(view, action="save", path="calc.py", text=FIXED + "# checked by hand\n")
    assert "Saved calc.py" in view.feedback["text"]
    act(view, action="commit_edits", message="A note of mine")
    assert not view.feedback["error"], view.feedback
    assert "committed as" in view.feedback["text"]
    assert [e["message"] for e in view.human_edits] == ["A note of mine"]
    assert view.human_edits[0]["files"] == ["calc.py"]
    assert "+# checked by hand" in view.page_diff
    act(view, action="save", path="../outside.py", text="x")  # refused: one red line
    assert view.feedback["error"] and "\n" not in view.feedback["text"].strip()
    assert not (Path(view.worktree).parent / "outside.py").exists()
