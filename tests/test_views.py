"""The notebook widgets, driven by real tasks (scripted fake model, real git, real sandbox):
the live view, the review in place and its actions, the permission card, the board.

Without a front end, ipywidgets talks to a dummy comm: what is asserted is trait state,
which is exactly what a front end would be sent."""

from __future__ import annotations

import asyncio
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import git
import ipywidgets as widgets
import pytest

from conftest import CHECK, FIX_TURNS, Factory, marker_alive
from jupyter_delegate import Outcome, Task, TaskState
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.notebook.views import (
    EAGER_LINES,
    FLUSH_S,
    Board,
    TaskView,
    outside_scope,
    split_diff,
)
from jupyter_delegate.policy import Policy

# The first answer comes late enough for a view made right after submit to see everything.
SLOW_START = [{**FIX_TURNS[0], "latency_ms": 300}, *FIX_TURNS[1:]]
MORE_TURNS = [
    *SLOW_START,
    {"tools": [{"write": {"file_path": "NOTES.md", "content": "add() fixed\n"}}]},
    {"tools": [{"finish": {"summary": "Also wrote NOTES.md."}}]},
]


def until(predicate: Callable[[], object], timeout: float = 30, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)


def text_of(widget: widgets.Widget) -> str:
    """Every HTML value and accordion title inside `widget`, shown or not."""
    parts = [str(getattr(widget, "value", "")), *getattr(widget, "titles", ())]
    parts += [text_of(child) for child in getattr(widget, "children", ())]
    return "\n".join(p for p in parts if p)


def shown(widget: widgets.Widget) -> bool:
    return widget.layout.display != "none"


def tool_items(view: TaskView) -> list[str]:
    return [c.value for c in view.log_box.children if "jd-tool" in c.value]


@pytest.fixture
def views() -> Iterator[Callable[..., TaskView]]:
    made: list[TaskView] = []

    def make(task: Task, **kw: Any) -> TaskView:
        made.append(TaskView(task, **kw))
        return made[-1]

    yield make
    for view in made:
        view.close()


def start(manager: TaskManager, repo: git.Repo, **kw: Any) -> Task:
    outcome = Outcome("Make add() add.", checks=(CHECK,), scope=kw.pop("scope", ()))
    return manager.submit(outcome, repo=repo.working_dir, **kw)


def reviewed(view: TaskView) -> TaskView:
    assert view.task.wait(timeout=60) == TaskState.REVIEW
    until(lambda: shown(view.review), what="the review to be built")
    return view


@pytest.fixture
def in_review(repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]) -> TaskView:
    manager, _ = make_manager(SLOW_START)
    return reviewed(views(start(manager, repo)))


# -- live ------------------------------------------------------------------------------------
def test_live_view_streams_text_and_tool_calls_then_shows_the_review(in_review: TaskView) -> None:
    view, task = in_review, in_review.task
    assert "review" in view.header.value and f"${task.usage.cost_usd:.4f}" in view.header.value
    assert "5 steps" in view.header.value and task.model in view.header.value
    assert f"sandbox {task.sandbox}" in view.header.value
    items = tool_items(view)
    assert len(items) == 4  # bash, read, edit, bash; `finish` is the summary, not an item
    assert CHECK in items[0] and "exit 1" in items[0] and "calc.py" in items[1]
    assert "Running the test first." in text_of(view.log_box)
    assert not shown(view.cancel_button) and not shown(view.permission)
    review = text_of(view.review)
    assert "PASS" in review and CHECK in review and "add() subtracted; it now adds." in review
    assert "calc.py  +1 −1" in view.files["calc.py"].titles
    body = view.files["calc.py"].body.value
    assert '<div class="jd-add">+    return a + b</div>' in body
    assert '<div class="jd-del">-    return a - b</div>' in body
    assert shown(view.review_actions)


def test_approve_button_merges_and_shows_the_merged_commit(
    repo: git.Repo, in_review: TaskView
) -> None:
    view = in_review
    view.strategy.value = "squash"
    view.approve_button.click()
    assert view.task.state == TaskState.MERGED
    assert repo.head.commit.hexsha == view.task.merged_commit
    assert len(repo.head.commit.parents) == 1  # squashed
    assert "merged" in view.header.value and view.task.merged_commit[:10] in view.status.value
    assert view.error.value == "" and not shown(view.review_actions)


def test_reject_button_with_a_reason_archives(repo: git.Repo, in_review: TaskView) -> None:
    view = in_review
    head = view.task.head_commit
    view.reject_reason.value = "not like this"
    view.reject_button.click()
    assert view.task.state == TaskState.REJECTED
    assert repo.git.rev_parse(f"refs/delegate/archive/{view.task.id}") == head
    assert "rejected" in view.header.value and "refs/delegate/archive/" in view.status.value
    assert not shown(view.review_actions)


def test_request_changes_continues_the_same_agent_to_a_second_review(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    manager, fake = make_manager(MORE_TURNS)
    view = reviewed(views(start(manager, repo)))
    view.request_button.click()  # no feedback: refused, shown, still in review
    assert "Say what should change" in view.error.value
    assert view.task.state == TaskState.REVIEW
    view.changes_text.value = "Please leave a note in NOTES.md."
    view.request_button.click()
    assert view.error.value == "" and view.changes_text.value == ""
    until(lambda: "Also wrote NOTES.md." in text_of(view.review_content), what="round 2")
    assert view.task.state == TaskState.REVIEW and shown(view.review)
    assert {"calc.py", "NOTES.md"} <= set(view.files)
    assert len(tool_items(view)) == 5  # the same log goes on
    assert len(fake.requests) == 7


def test_approve_with_a_dirty_base_file_shows_the_error_and_stays_in_review(
    repo: git.Repo, in_review: TaskView
) -> None:
    view = in_review
    calc = Path(repo.working_dir) / "calc.py"
    calc.write_text("# my own work\n" + calc.read_text())
    view.approve_button.click()  # must not raise
    assert "uncommitted changes in files this task changes: calc.py" in view.error.value
    assert 'class="jd-error"' in view.error.value
    assert view.task.state == TaskState.REVIEW
    assert shown(view.review_actions) and not view.approve_button.disabled
    assert calc.read_text().startswith("# my own work")


def test_cancel_button_during_a_long_command_ends_cancelled(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    command = f"sleep 60; echo {marker}"
    manager, _ = make_manager([{"tools": [{"bash": {"command": command}}], "latency_ms": 300}])
    view = views(start(manager, repo))
    until(lambda: any(command in item for item in tool_items(view)), what="the tool call")
    # A cancel that lands while the sandbox is still starting the process waits for the
    # command to end (asyncio's subprocess start, bubblewrap tier): cancel once it runs.
    until(lambda: marker_alive(marker), what="the command to run")
    assert shown(view.cancel_button) and "running" in view.header.value
    view.cancel_button.click()
    assert view.task.wait(timeout=20) == TaskState.CANCELLED
    until(lambda: "cancelled" in view.header.value)
    assert "Cancelled" in view.status.value and not shown(view.cancel_button)
    assert not marker_alive(marker)


def test_failed_task_shows_its_error(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    bad = {"tools": [{"edit": {"file_path": "calc.py"}}]}
    manager, _ = make_manager([{**bad, "latency_ms": 300}, bad, bad])
    view = views(start(manager, repo))
    assert view.task.wait(timeout=60) == TaskState.FAILED
    until(lambda: "failed" in view.header.value)
    assert "malformed tool input 3 times in a row" in view.status.value
    assert len(tool_items(view)) == 3 and all("error" in item for item in tool_items(view))
    assert not shown(view.review) and not shown(view.cancel_button)


def test_view_of_a_restored_merged_task_renders_merged(
    repo: git.Repo, in_review: TaskView, views: Callable[..., TaskView]
) -> None:
    in_review.approve_button.click()
    task = in_review.task
    restored = TaskManager().get(task.id, repo.working_dir)  # a fresh process's view of it
    view = views(restored, name="fix add")
    assert "merged" in view.header.value and "fix add" in view.header.value
    assert task.merged_commit is not None and task.merged_commit[:10] in view.status.value
    assert shown(view.review) and not shown(view.review_actions)
    assert "calc.py" in view.files and "PASS" in text_of(view.review)


# -- permission ------------------------------------------------------------------------------
def asked(view: TaskView) -> None:
    until(lambda: shown(view.permission) and not view.allow_button.disabled, what="the card")


def test_permission_card_allow_lets_the_command_run_and_remember_stops_asking(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    manager, _ = make_manager(SLOW_START)
    view = views(start(manager, repo, policy=Policy.from_rules(ask=["Bash"])))
    asked(view)
    assert view.task.state == TaskState.WAITING and "waiting" in view.header.value
    assert CHECK in view.permission_text.value and "rule bash" in view.permission_text.value
    view.remember.value = True
    view.allow_button.click()
    reviewed(view)  # the second bash call was not asked: "remember" allowed it
    assert not shown(view.permission)
    items = tool_items(view)
    assert "exit 1" in items[0] and "exit 0" in items[3]
    assert "bash: allowed" in text_of(view.log_box)


def test_permission_card_deny_gives_the_agent_a_denial(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    turns = [SLOW_START[0], FIX_TURNS[-1]]
    manager, fake = make_manager(turns)
    view = views(start(manager, repo, policy=Policy.from_rules(ask=["Bash"])))
    asked(view)
    view.deny_button.click()
    reviewed(view)
    (item,) = tool_items(view)
    assert "denied" in item and "Denied by the user." in item
    result = fake.requests[1].body["messages"][-1]["content"][0]
    assert result["is_error"] and result["content"] == "Denied by the user."


# -- board -----------------------------------------------------------------------------------
def test_board_lists_tasks_and_approving_a_row_merges_it(
    repo: git.Repo, make_manager: Factory
) -> None:
    def turn(body: dict[str, Any], number: int) -> dict[str, Any]:
        name = "a.txt" if "Create a.txt" in str(body["messages"][0]["content"]) else "b.txt"
        return [
            {"tools": [{"write": {"file_path": name, "content": "x\n"}}], "latency_ms": 200},
            {"tools": [{"finish": {"summary": f"wrote {name}"}}]},
        ][min(number, 1)]

    manager, _ = make_manager(turn)
    first = manager.submit(Outcome("Create a.txt"), repo=repo.working_dir, name="a")
    second = manager.submit(Outcome("Create b.txt"), repo=repo.working_dir)
    board = Board([first, second])
    try:
        assert set(board.rows) == {first.id, second.id}
        assert first.wait(timeout=60) == second.wait(timeout=60) == TaskState.REVIEW
        row = board.rows[first.id]
        until(lambda: "review" in row.cells["state"].value and row.cells["steps"].value == "2")
        assert row.cells["title"].value == "a" and "Create b.txt" in text_of(board)
        assert shown(row.approve_button) and row.cells["cost"].value.startswith("$")
        row.approve_button.click()
        assert first.state == TaskState.MERGED and "merged" in row.cells["state"].value
        assert not shown(row.approve_button) and row.error.value == ""
        assert (Path(repo.working_dir) / "a.txt").exists()
        board.rows[second.id].reject_button.click()
        assert second.state == TaskState.REJECTED
    finally:
        board.close()
    assert not first._subscribers and not second._subscribers


# -- streaming text --------------------------------------------------------------------------
def count_text_sets(view: TaskView) -> list[int]:
    """How many times a text item's value is set, counted as it happens."""
    sets = [0]

    def on_item(change: dict[str, Any]) -> None:
        for item in change["new"][len(change["old"]) :]:
            item.observe(lambda _: sets.__setitem__(0, sets[0] + 1), names="value")

    view.log_box.observe(on_item, names="children")
    return sets


def test_text_deltas_are_coalesced_and_flushed_by_the_next_event(
    views: Callable[..., TaskView],
) -> None:
    task = Task(id="t1", outcome=Outcome("say a lot"), repo=Path("."))
    view = views(task)
    sets = count_text_sets(view)
    words = [f"word{i} " for i in range(300)]

    async def engine() -> float:  # as the engine does: deltas from coroutines on a loop
        started = time.monotonic()
        for word in words:
            task.emit("text", {"delta": word})
            await asyncio.sleep(0.001)
        took = time.monotonic() - started
        task.emit("notice", {"text": "retrying"})  # any other event flushes at once
        return took

    took: list[float] = []
    thread = threading.Thread(target=lambda: took.append(asyncio.run(engine())))
    thread.start()
    thread.join(timeout=30)
    text_item = view.log_box.children[0]
    assert "".join(words).strip() in text_item.value
    assert "retrying" in view.log_box.children[1].value
    most_pushes = took[0] / FLUSH_S + 2  # one push per flush interval, plus the ends
    assert sets[0] >= 1 and sets[0] <= most_pushes < len(words)


def test_text_from_a_thread_without_a_loop_is_flushed_by_a_timer(
    views: Callable[..., TaskView],
) -> None:
    task = Task(id="t2", outcome=Outcome("say a lot"), repo=Path("."))
    view = views(task)
    sets = count_text_sets(view)
    for i in range(200):
        task.emit("text", {"delta": f"w{i} "})
    until(lambda: view.log_box.children and "w199" in view.log_box.children[0].value, 5)
    assert sets[0] <= 2


# -- diff rendering --------------------------------------------------------------------------
def test_large_file_diffs_render_only_when_opened_and_scope_is_flagged(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    big = "".join(f"line {i}\n" for i in range(EAGER_LINES + 50))
    turns = [
        FIX_TURNS[2],
        # written by a command: the default mode asks before out-of-scope edits by the
        # file tools, and the review still flags the file as outside the scope
        {
            "tools": [
                {
                    "bash": {
                        "command": f"mkdir -p data && printf %s {shlex.quote(big)} > data/big.txt"
                    }
                }
            ]
        },
        FIX_TURNS[-1],
    ]
    manager, _ = make_manager(turns)
    view = reviewed(views(start(manager, repo, scope=("calc.py",))))
    large = view.files["data/big.txt"]
    assert large.selected_index is None and large.body.value == ""
    assert f"+{EAGER_LINES + 50} −0" in large.titles[0]
    large.selected_index = 0  # the reviewer opens it
    assert "line 449" in large.body.value
    assert view.files["calc.py"].selected_index == 0
    assert "outside the scope: data/big.txt" in text_of(view.review)
    assert "outside the scope: calc.py" not in text_of(view.review)


def test_split_diff_names_files_counts_lines_and_keeps_the_stat() -> None:
    diff = (
        " a b.py | 2 +-\n 1 file changed\n\n"
        "diff --git a/a b.py b/a b.py\nindex 1..2 100644\n--- a/a b.py\n+++ b/a b.py\n"
        "@@ -1 +1 @@\n-old\n+new\n+more\n"
        "diff --git a/gone.py b/gone.py\ndeleted file mode 100644\n--- a/gone.py\n"
        "+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"
        "diff --git a/logo.bin b/logo.bin\nBinary files /dev/null and b/logo.bin differ\n"
    )
    stat, files = split_diff(diff)
    assert stat == " a b.py | 2 +-\n 1 file changed"
    assert [(f.path, f.added, f.removed) for f in files] == [
        ("a b.py", 2, 1),
        ("gone.py", 0, 1),
        ("logo.bin", 0, 0),
    ]
    assert outside_scope(["src/a.py", "src", "srcx/b.py", "t.py"], ["src/", "t.py"]) == [
        "srcx/b.py"
    ]
