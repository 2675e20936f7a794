"""The notebook widgets, driven by real tasks (scripted fake model, real git, real sandbox):
the live view, the review in place and its actions, the permission card, the board.

Without a front end, ipywidgets talks to a dummy comm: what is asserted is trait state,
which is exactly what a front end would be sent."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import comm
import git
import ipywidgets as widgets
import pytest

from conftest import CHECK, FIX_TURNS, Factory, marker_alive, messages_sent, until
from jupyter_delegate import Outcome, Task, TaskState
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.notebook.live import LogPages
from jupyter_delegate.notebook.views import (
    FLUSH_S,
    INPUT_HEAD,
    LOG_CHARS,
    LOG_ENTRIES,
    LOG_PAGES,
    OUTPUT_TAIL,
    PAGE_ENTRIES,
    QUICK_S,
    Board,
    LiveLog,
    TaskView,
    outside_scope,
    shown,
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


def text_of(widget: widgets.Widget) -> str:
    """Every HTML value and accordion title inside `widget`, shown or not."""
    parts = [str(getattr(widget, "value", "")), *getattr(widget, "titles", ())]
    if isinstance(widget, LogPages):
        parts += [widget.pages_html(), widget.text]
    parts += [text_of(child) for child in getattr(widget, "children", ())]
    return "\n".join(p for p in parts if p)


TOOL_ITEM = re.compile(r'<details class="jd-tool">.*?</details>', re.S)


def tool_items(view: TaskView) -> list[str]:
    """The tool calls the live log shows, oldest first (each one a collapsible item)."""
    return TOOL_ITEM.findall(view.live_log_html)


def tool_calls_logged(view: TaskView) -> int:
    """The tool calls the live log holds: those it shows and those it counts as earlier."""
    earlier = re.search(r"(\d+) earlier tool calls?", view.live_earlier.value)
    return len(tool_items(view)) + (int(earlier.group(1)) if earlier else 0)


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


def act(view: TaskView, **content: Any) -> None:
    """A click in the review's bar: the message its front end sends; wait for the action."""
    review = view.review_view
    assert review is not None
    review._handle_custom_msg(content, [])
    until(lambda: review.busy == "", what=f"{content['action']} to finish")


def review_files(view: TaskView) -> dict[str, dict[str, Any]]:
    assert view.review_view is not None
    return {f["path"]: f for f in view.review_view.files}


@pytest.fixture
def in_review(repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]) -> TaskView:
    manager, _ = make_manager(SLOW_START)
    return reviewed(views(start(manager, repo)))


# -- live ------------------------------------------------------------------------------------
def test_live_view_streams_text_and_tool_calls_then_shows_the_review(in_review: TaskView) -> None:
    view, task = in_review, in_review.task
    assert "review" in view.live.header and f"${task.usage.cost_usd:.4f}" in view.live.header
    assert "5 steps" in view.live.header and task.model in view.live.header
    assert f"sandbox {task.sandbox}" in view.live.header
    items = tool_items(view)
    assert len(items) == 4  # bash, read, edit, bash; `finish` is the summary, not an item
    assert CHECK in items[0] and "exit 1" in items[0] and "calc.py" in items[1]
    assert "Running the test first." in text_of(view.log_box)
    assert not shown(view.cancel_button) and not shown(view.permission)
    review = text_of(view.review_content)
    assert "PASS" in review and CHECK in review
    rv = view.review_view
    assert rv is not None and rv.summary == "add() subtracted; it now adds."
    assert rv.state == "review" and rv.verdict == "proven" and not rv.show_checks
    calc = review_files(view)["calc.py"]
    assert (calc["added"], calc["removed"]) == (1, 1)
    assert "+    return a + b" in rv.page_diff and "-    return a - b" in rv.page_diff


def test_approve_button_merges_and_shows_the_merged_commit(
    repo: git.Repo, in_review: TaskView
) -> None:
    view = in_review
    act(view, action="approve", strategy="squash")
    assert view.task.state == TaskState.MERGED
    assert repo.head.commit.hexsha == view.task.merged_commit
    assert len(repo.head.commit.parents) == 1  # squashed
    until(lambda: "merged" in view.live.header)
    assert view.task.merged_commit[:10] in view.status.value
    assert view.review_view is not None and view.review_view.state == "merged"
    assert view.review_view.decision.startswith("Merged into main as")


def test_approve_on_an_unproven_task_asks_to_merge_anyway_and_only_that_merges(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    give_up = [
        {"tools": [{"bash": {"command": "echo tried > notes.txt"}}]},
        {"tools": [{"finish": {"summary": "Could not fix it."}}], "latency_ms": 300},
    ]
    manager, _ = make_manager(give_up)
    view = reviewed(views(start(manager, repo)))
    assert "review · checks fail" in view.live.header
    base = repo.head.commit.hexsha
    rv = view.review_view
    assert rv is not None and rv.asking == ""
    act(view, action="approve")
    assert view.task.state == TaskState.REVIEW and repo.head.commit.hexsha == base
    assert rv.asking == "force" and not rv.feedback
    assert f"check `{CHECK}` failed (exit 1)" in rv.reasons
    act(view, action="keep")  # changed their mind: nothing happens
    assert rv.asking == "" and view.task.state == TaskState.REVIEW
    act(view, action="approve")
    act(view, action="force")
    assert view.task.state == TaskState.MERGED and view.task.forced
    assert repo.head.commit.hexsha == view.task.merged_commit
    until(lambda: "without proof (forced)" in view.status.value)
    assert rv.asking == "" and rv.state == "merged"


def test_failed_task_says_how_to_go_on(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    dropped = {**SLOW_START[0], "faults": [{"drop": True}, {"drop": True}]}
    manager, _ = make_manager([dropped, *SLOW_START[1:]])
    view = views(start(manager, repo))
    assert view.task.wait(timeout=60) == TaskState.FAILED
    until(lambda: "failed" in view.live.header)
    assert f"%delegate resume {view.task.id}" in view.status.value
    view.task.resume()
    reviewed(view)
    assert view.task.checks_passed


def test_reject_button_with_a_reason_archives(repo: git.Repo, in_review: TaskView) -> None:
    view = in_review
    head = view.task.head_commit
    act(view, action="reject", reason="not like this")
    assert view.task.state == TaskState.REJECTED
    assert repo.git.rev_parse(f"refs/delegate/archive/{view.task.id}") == head
    until(lambda: "rejected" in view.live.header)
    assert "refs/delegate/archive/" in view.status.value
    assert view.review_view is not None and view.review_view.decision == "Rejected: not like this."


def test_request_changes_continues_the_same_agent_to_a_second_review(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    manager, fake = make_manager(MORE_TURNS)
    view = reviewed(views(start(manager, repo)))
    rv = view.review_view
    assert rv is not None
    act(view, action="request_changes", feedback="")  # nothing said: refused, shown
    assert rv.feedback["error"] and "Say what should change" in rv.feedback["text"]
    assert view.task.state == TaskState.REVIEW
    act(view, action="request_changes", feedback="Please leave a note in NOTES.md.")
    assert not rv.feedback["error"]
    until(lambda: rv.summary == "Also wrote NOTES.md." and rv.state == "review", what="round 2")
    until(lambda: shown(view.review), what="round 2's review")
    assert view.task.state == TaskState.REVIEW
    until(lambda: {"calc.py", "NOTES.md"} <= set(review_files(view)), what="round 2's diff")
    assert tool_calls_logged(view) == 5  # the same log goes on
    assert len(messages_sent(fake)) == 7


def test_request_changes_can_be_remembered_as_a_preference_from_the_review(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    from jupyter_delegate import preferences

    manager, _ = make_manager(MORE_TURNS)
    view = reviewed(views(start(manager, repo)))
    feedback = "Leave a note in NOTES.md about what you fixed."
    act(view, action="request_changes", feedback=feedback, remember="repo")
    rv = view.review_view
    assert rv is not None and not rv.feedback["error"]
    until(lambda: rv.summary == "Also wrote NOTES.md." and rv.state == "review", what="round 2")
    until(lambda: "remembered" in text_of(view.review_content), what="round 2's review")
    assert [p.text for p in preferences(repo.working_dir)] == [
        "Leave a note in NOTES.md about what you fixed."
    ]
    assert "remembered as a preference (repo)" in text_of(view.review_content)


def test_the_review_names_skills_used_and_preferences_and_shows_a_drifted_skills_diff(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    from conftest import commit_all
    from jupyter_delegate import prefer, trust_skill

    root = Path(repo.working_dir)
    for name in ("helper", "drifted"):
        folder = root / ".agents" / "skills" / name
        (folder / "scripts").mkdir(parents=True)
        (folder / "SKILL.md").write_text(
            f"---\nname: {name}\ndescription: The {name} skill.\n---\nSteps.\n"
        )
        (folder / "scripts" / "go.sh").write_text("echo safe\n")
    commit_all(repo, "skills")
    trust_skill("helper", repo=root)
    trust_skill("drifted", repo=root)
    (root / ".agents" / "skills" / "drifted" / "scripts" / "go.sh").write_text("echo pwned\n")
    commit_all(repo, "drift")
    prefer("Keep diffs small.")
    turns = [{"tools": [{"skill": {"name": "helper"}}]}, *SLOW_START[1:]]
    manager, _ = make_manager(turns)
    view = reviewed(views(start(manager, repo)))
    review = text_of(view.review_content)
    assert "Skills used: helper" in review and "Keep diffs small." in review
    [section] = view.context_box.children
    assert "skill drifted (repo) not loaded, changed: scripts/go.sh" in section.titles[0]
    assert section.body.value == ""  # the diff is made when it is opened
    section.selected_index = 0
    assert "+echo pwned" in section.body.value and "-echo safe" in section.body.value
    assert "skills trust drifted" in section.body.value


NO_FIX_TURNS = [
    {"tools": [{"write": {"file_path": "NOTES.md", "content": "later\n"}}], "latency_ms": 300},
    {"tools": [{"finish": {"summary": "Left add() as it was."}}]},
]
HTML_CHECK = "printf '<script>alert(1)</script>\\n\\033[31mred\\033[0m\\n'; exit 4"
TAIL = re.compile(r'<pre class="jd-tail">(.*?)</pre>', re.S)
WHOLE = re.compile(r'<details class="jd-whole">(.*?)</details>', re.S)


def test_the_review_shows_a_failing_checks_last_lines_and_all_of_it_folded(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    manager, _ = make_manager(NO_FIX_TURNS)
    missing = "python3 -c 'import humanize_is_not_here'"
    outcome = Outcome("Make add() add.", checks=(CHECK, HTML_CHECK, "true", missing))
    view = reviewed(views(manager.submit(outcome, repo=repo.working_dir)))
    review = text_of(view.review)
    unittest_tail, html_tail, missing_tail = TAIL.findall(review)
    assert "AssertionError: -1 != 5" in unittest_tail
    assert unittest_tail.endswith("FAILED (failures=1)")
    assert html_tail == "&lt;script&gt;alert(1)&lt;/script&gt;\nred"  # escaped, no escapes
    assert missing_tail.endswith(
        "ModuleNotFoundError: No module named &#x27;humanize_is_not_here&#x27;"
    )
    hints = re.findall(r'<div class="jd-hint">(.*?)</div>', review)
    assert len(hints) == 1 and hints[0].startswith("`humanize_is_not_here` is not importable")
    first, second, _ = WHOLE.findall(review)
    assert "<summary>all of its output</summary>" in first
    assert "Traceback (most recent call last):" in first  # above the tail, in the fold
    assert f"`%delegate checks {view.task.id} 1` prints it whole." in first
    assert f"%delegate checks {view.task.id} 2" in second
    assert "<script>" not in review and "\x1b" not in review
    assert review.count('<span class="jd-fail">FAIL</span>') == 3
    assert review.count('<span class="jd-pass">PASS</span>') == 1


def test_approve_with_a_dirty_base_file_shows_the_error_and_stays_in_review(
    repo: git.Repo, in_review: TaskView
) -> None:
    view = in_review
    calc = Path(repo.working_dir) / "calc.py"
    calc.write_text("# my own work\n" + calc.read_text())
    act(view, action="approve")  # must not raise
    rv = view.review_view
    assert rv is not None and rv.feedback["error"]
    assert "uncommitted changes in files this task changes: calc.py" in rv.feedback["text"]
    assert view.task.state == TaskState.REVIEW and rv.busy == "" and rv.state == "review"
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
    assert shown(view.cancel_button) and "running" in view.live.header
    view.cancel_button.click()  # asks first: nothing stops yet
    assert shown(view.cancel_box) and not shown(view.cancel_button)
    assert f"refs/delegate/archive/{view.task.id}" in view.cancel_text.value
    view.cancel_keep.click()
    assert not shown(view.cancel_box) and shown(view.cancel_button)
    time.sleep(0.5)
    assert view.task.state == TaskState.RUNNING and marker_alive(marker)
    view.cancel_button.click()
    view.cancel_confirm.click()
    assert view.task.wait(timeout=20) == TaskState.CANCELLED
    until(lambda: "cancelled" in view.live.header)
    assert "Cancelled" in view.status.value and not shown(view.cancel_button)
    assert not shown(view.cancel_box) and not marker_alive(marker)


def test_failed_task_shows_its_error(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    bad = {"tools": [{"edit": {"file_path": "calc.py"}}]}
    manager, _ = make_manager([{**bad, "latency_ms": 300}, bad, bad])
    view = views(start(manager, repo))
    assert view.task.wait(timeout=60) == TaskState.FAILED
    until(lambda: "failed" in view.live.header)
    assert "malformed tool input 3 times in a row" in view.status.value
    assert f"%delegate reject {view.task.id}" in view.status.value
    assert "resume" not in view.status.value
    assert len(tool_items(view)) == 3 and all("error" in item for item in tool_items(view))
    assert not shown(view.review) and not shown(view.cancel_button)


def test_view_of_a_restored_merged_task_renders_merged(
    repo: git.Repo, in_review: TaskView, views: Callable[..., TaskView]
) -> None:
    act(in_review, action="approve")
    task = in_review.task
    restored = TaskManager().get(task.id, repo.working_dir)  # a fresh process's view of it
    view = views(restored, name="fix add")
    assert "merged" in view.live.header and "fix add" in view.live.header
    assert task.merged_commit is not None and task.merged_commit[:10] in view.status.value
    assert shown(view.review) and view.review_view is not None
    assert view.review_view.state == "merged" and "calc.py" in review_files(view)
    assert "PASS" in text_of(view.review_content)


# -- permission ------------------------------------------------------------------------------
def asked(view: TaskView) -> None:
    until(lambda: shown(view.permission) and not view.allow_button.disabled, what="the card")


def test_permission_card_allow_lets_the_command_run_and_the_prefix_stops_asking(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    manager, _ = make_manager(SLOW_START)
    view = views(start(manager, repo, policy=Policy.from_rules(ask=["Bash"])))
    asked(view)
    assert view.task.state == TaskState.WAITING and "waiting" in view.live.header
    card = view.permission_text.value
    assert f"$ {CHECK}" in card and "rule bash" in card
    assert "<code>bash(python3 -m unittest:*)</code>" in card
    assert shown(view.allow_rule_button)
    assert view.allow_rule_button.description == "Allow this prefix for the task"
    view.allow_rule_button.click()
    reviewed(view)  # the second bash call was not asked: its prefix was allowed
    assert not shown(view.permission)
    items = tool_items(view)
    assert "exit 1" in items[0] and "exit 0" in items[3]
    view.log_toggle.value = True
    assert "you allowed bash python3 -m unittest -q test_calc, and bash(python3 -m " in (
        text_of(view.log_box)
    )


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
    result = messages_sent(fake)[1].body["messages"][-1]["content"][0]
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
        assert not shown(row.force_button)
        base = repo.head.commit.hexsha
        row.approve_button.click()  # no checks: not proven, so one click merges nothing
        assert first.state == TaskState.REVIEW and repo.head.commit.hexsha == base
        assert "Not proven" in row.error.value and "it has no checks" in row.error.value
        assert shown(row.force_button)
        row.force_button.click()  # the second, explicit click
        assert first.state == TaskState.MERGED and "merged" in row.cells["state"].value
        assert "forced" in row.cells["state"].value and first.forced
        assert not shown(row.approve_button) and not shown(row.force_button)
        assert row.error.value == ""
        assert (Path(repo.working_dir) / "a.txt").exists()
        board.rows[second.id].reject_button.click()
        assert second.state == TaskState.REJECTED
    finally:
        board.close()
    assert not first._subscribers and not second._subscribers


# -- streaming and pushing -------------------------------------------------------------------
# These drive a bare task's events as the engine does: from coroutines on an event loop
# that keeps running (the manager's loop runs forever; pending pushes are due on it).
def on_engine(steps: Callable[[], Coroutine[Any, Any, None]]) -> float:
    """Run `steps` on a loop in its own thread, as the engine does; the seconds it took.
    The loop then runs a little longer, as the engine's does, for the pushes due on it."""
    took: list[float] = []

    async def engine() -> None:
        started = time.monotonic()
        await steps()
        took.append(time.monotonic() - started)
        await asyncio.sleep(3 * FLUSH_S)

    thread = threading.Thread(target=lambda: asyncio.run(engine()))
    thread.start()
    thread.join(timeout=60)
    return took[0]


def step(task: Task, n: int, output: str = "a small file\n") -> None:
    """One step of an agent, as the engine and the manager make it: its words, a tool
    call, the result, then the usage (folded into the task first)."""
    task.emit("text", {"delta": f"Step {n}: reading the notes. "})
    call = {"id": f"call-{n}", "name": "read", "input": {"file_path": f"notes-{n}.txt"}}
    task.emit("tool_call", call)
    result = {"tool_use_id": f"call-{n}", "name": "read", "content": output, "is_error": False}
    task.emit("tool_result", result)
    usage = {"input_tokens": 10, "output_tokens": 5}
    task.usage.add(usage)
    task.emit("usage", usage)


def value_sets(widget: widgets.Widget, name: str = "value") -> list[str]:
    """Every value `widget`'s trait `name` is set to from now on (what a front end would
    be sent)."""
    values: list[str] = []
    widget.observe(lambda change: values.append(change["new"]), names=name)
    return values


@dataclass
class Sent:
    """What the views sent over their comms: widgets opened, and the bytes of each
    message (JSON, as the kernel serialises it)."""

    opens: int = 0
    messages: list[int] = field(default_factory=list)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> Sent:
    record = Sent()

    class RecordingComm(comm.DummyComm):
        def publish_msg(self, msg_type: str, data: Any = None, *args: Any, **kw: Any) -> None:
            record.opens += msg_type == "comm_open"
            record.messages.append(len(json.dumps(data, default=str)))

    monkeypatch.setattr(comm, "create_comm", RecordingComm)
    return record


def bare_task(name: str) -> Task:
    return Task(id=name, outcome=Outcome("read the notes"), repo=Path("."))


def test_text_deltas_are_coalesced_and_end_in_the_log_before_the_next_event(
    views: Callable[..., TaskView],
) -> None:
    task = bare_task("t1")
    view = views(task)
    text_sets = value_sets(view.log_pages, "text")
    words = [f"word{i} " for i in range(300)]

    async def steps() -> None:
        for word in words:
            task.emit("text", {"delta": word})
            await asyncio.sleep(0.001)
        task.emit("notice", {"text": "retrying"})

    took = on_engine(steps)
    log = view.live_log_html
    assert "".join(words).strip() in log and log.index("word299") < log.index("retrying")
    assert view.log_pages.text == ""  # the words moved into the log, in their place
    # one push per flush interval, plus the ends: the first word at once (the view was
    # idle) and the burst it came in `QUICK_S` later, and the last word
    most_pushes = took / FLUSH_S + 3
    assert most_pushes < len(words)  # else the bound below would prove nothing
    assert text_sets, "the streamed text was never pushed"
    assert len(text_sets) <= most_pushes, f"{len(text_sets)} pushes for {len(words)} words"


def test_a_first_word_after_a_quiet_spell_is_pushed_on_the_loops_next_turn(
    views: Callable[..., TaskView],
) -> None:
    task = bare_task("t1q")
    view = views(task)
    seen: list[str] = []

    async def steps() -> None:
        await asyncio.sleep(2 * FLUSH_S)  # quiet: nothing pushed for a while
        task.emit("text", {"delta": "First words. "})
        await asyncio.sleep(FLUSH_S / 4)  # the loop turns; a fixed delay would still wait
        seen.append(view.log_pages.text)
        task.emit("text", {"delta": "More words in the same burst."})
        await asyncio.sleep(QUICK_S + FLUSH_S / 4)
        seen.append(view.log_pages.text)

    on_engine(steps)
    assert "First words." in seen[0] and "More words" not in seen[0], seen
    assert "More words in the same burst." in seen[1], seen


def test_text_from_a_thread_without_a_loop_is_flushed_by_a_timer(
    views: Callable[..., TaskView],
) -> None:
    task = bare_task("t2")
    view = views(task)
    text_sets = value_sets(view.log_pages, "text")
    for i in range(200):
        task.emit("text", {"delta": f"w{i} "})
    until(lambda: "w199" in view.log_pages.text, 5)
    assert len(text_sets) <= 2


def test_many_tool_calls_open_no_widget_and_send_bounded_messages(
    views: Callable[..., TaskView], sent: Sent
) -> None:
    task = bare_task("t3")
    view = views(task)
    children = view.log_box.children
    opened_by_the_view = sent.opens
    sent.messages.clear()

    async def steps() -> None:
        for n in range(200):
            step(task, n)
            await asyncio.sleep(0.002)

    took = on_engine(steps)
    assert sent.opens == opened_by_the_view > 0  # no widget per tool call, nor per turn
    assert view.log_box.children == children and view.log_pages in children
    assert len(tool_items(view)) == LOG_ENTRIES // 2  # and as many messages
    assert "notes-199.txt" in tool_items(view)[-1] and "ok" in tool_items(view)[-1]
    # 800 events: at most one push per interval of each of the header and live line (one
    # model), the pages and the words (one model), and the earlier line
    pushed = 3
    assert len(sent.messages) <= pushed * (took / FLUSH_S + 2) < 800
    assert max(sent.messages) <= LOG_CHARS + 1000


def widgets_in(widget: widgets.Widget) -> int:
    return 1 + sum(widgets_in(child) for child in getattr(widget, "children", ()))


def test_a_view_opens_one_comm_per_widget_and_closes_all_it_opened(
    views: Callable[..., TaskView], sent: Sent
) -> None:
    # Styles and the layouts nothing changes are shared: a comm open each saved (90 opens a
    # view before, three per widget); no widget has a layout of its own.
    from ipywidgets.widgets.widget import _instances

    views(bare_task("c1"))  # makes the shared styles and layouts, if no view has yet
    before, opened = set(_instances), sent.opens
    view = views(bare_task("c2"))
    made = set(_instances) - before
    assert sent.opens - opened == len(made) == widgets_in(view) == 18
    hidden = [view.cancel_box, view.permission, view.review]
    assert not any(shown(part) for part in hidden) and shown(view.cancel_button)
    assert all(part.layout is view.live.layout for part in hidden)  # hidden by a class
    # what a view may never need is made when it first is: Cancel's question (3 widgets)
    lazy = [view.cancel_box, view.permission, view.log_bar]
    assert not any(part.children for part in lazy)
    view.cancel_button.click()
    assert shown(view.cancel_box) and "Cancel task c2?" in view.cancel_text.value
    view.cancel_keep.click()
    view.cancel_button.click()  # asked again: the same widgets
    assert sent.opens - opened == widgets_in(view) == 21
    made = set(_instances) - before
    view.close()
    assert not made & set(_instances)  # its own layouts too; the shared ones stay
    assert view.live.layout.comm is not None


def test_a_burst_of_events_is_pushed_a_bounded_number_of_times(
    views: Callable[..., TaskView],
) -> None:
    task = bare_task("t4")
    view = views(task)
    log_sets = [value_sets(view.live_earlier)]
    log_sets += [value_sets(view.log_pages, slot) for slot in LogPages.SLOTS]
    header_sets = value_sets(view.live, "header")

    async def steps() -> None:
        for n in range(20):
            step(task, n)
        await asyncio.sleep(0)  # the burst ends; the loop may push
        for n in range(20, 40):
            step(task, n)

    on_engine(steps)
    assert all(log_sets) and header_sets, "the burst was never pushed"
    for sets in log_sets:
        assert len(sets) <= 2, f"{len(sets)} pushes of a part of the log for 160 events"
    assert len(header_sets) <= 2, f"{len(header_sets)} header pushes for 160 events"
    assert "notes-39.txt" in view.live_log_html and "40 steps" in header_sets[-1]


def test_the_final_state_is_shown_at_once_with_every_event_before_it(
    views: Callable[..., TaskView],
) -> None:
    task = bare_task("t5")
    view = views(task)

    async def steps() -> None:
        for n in range(50):
            step(task, n, output=f"output of step {n}")
        task.state = TaskState.FAILED
        task.error = "the budget ran out"
        task.emit("state", {"state": "failed"})

    done = threading.Event()
    seen: list[str] = []

    def engine() -> None:  # the loop ends at once: nothing is left for a later push
        asyncio.run(steps())
        seen.extend((view.live_log_html, view.live.header, view.status.value))
        done.set()

    threading.Thread(target=engine).start()
    assert done.wait(30)
    log, header, status = seen
    assert "output of step 49" in TOOL_ITEM.findall(log)[-1]
    assert "Step 49: reading the notes." in log and view.log_pages.text == ""
    assert "failed" in header and "50 steps" in header and "the budget ran out" in status


def test_a_long_task_log_stays_bounded_and_counts_what_it_no_longer_shows(
    views: Callable[..., TaskView],
) -> None:
    task = bare_task("t6")
    view = views(task)
    page_sets = [value_sets(view.log_pages, slot) for slot in LogPages.SLOTS]
    output = "".join(f"test line {i} passed\n" for i in range(150))  # about 3 KB

    async def steps() -> None:
        for n in range(200):
            step(task, n, output=output)
            await asyncio.sleep(0.002)
        task.emit("notice", {"text": "done reading"})

    on_engine(steps)
    for sets in page_sets:  # each page pushed while the log grew, each one bounded
        assert len(sets) >= 3
        assert max(len(value) for value in sets) <= LOG_CHARS + 300
    final = view.live_log_html
    assert len(final) <= LOG_PAGES * LOG_CHARS + 1000
    dropped = re.search(r"… (\d+) earlier tool calls and (\d+) earlier messages", final)
    assert dropped is not None, final[:300]
    # the pages dropped are counted above them (and a page too full would count its own)
    counted = [int(n) for n in re.findall(r"(\d+) earlier tool calls?\b", final)]
    assert counted and sum(counted) + len(tool_items(view)) == 200
    assert final.endswith("done reading</div>") and "notes-199.txt" in tool_items(view)[-1]


STEP_ENTRIES = 2  # a step's entries in the log: its words, then its tool call


def updates(widget: widgets.Widget, monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """The traits each update message of `widget` carries from now on, message by message."""
    told: list[set[str]] = []
    publish = widget.comm.publish_msg

    def recording(msg_type: str, data: Any = None, *args: Any, **kw: Any) -> None:
        if data and data.get("method") == "update":
            told.append(set(data["state"]))
        publish(msg_type, data, *args, **kw)

    monkeypatch.setattr(widget.comm, "publish_msg", recording)
    return told


def test_the_header_and_the_live_line_go_in_one_message_per_push(
    views: Callable[..., TaskView], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A step changes the task's spending (the header) and what it does now (the live
    line): one model, so each push sends both in one message, not one a widget."""
    task = bare_task("t9")
    view = views(task)
    told = updates(view.live, monkeypatch)

    async def steps() -> None:
        for n in range(3):
            step(task, n)
            await asyncio.sleep(2 * FLUSH_S)  # each step pushed on its own

    on_engine(steps)
    assert "3 steps" in view.live.header and view.live.activity["kind"] == "model"
    together = [keys for keys in told if {"header", "activity"} <= keys]
    assert len(together) >= 3, told  # each step's push: the spending and the activity
    assert not [keys for keys in told if keys == {"header"}], told  # never the header alone


def test_the_page_the_words_join_and_the_words_go_in_one_message_per_push(
    views: Callable[..., TaskView], monkeypatch: pytest.MonkeyPatch
) -> None:
    """When a tool call ends the streamed words, they leave the words' place and join a
    page of the log: one model, so the push sends both in one message, and a page taken
    over by a newer one is sent with its new place."""
    task = bare_task("t10")
    view = views(task)
    told = updates(view.log_pages, monkeypatch)
    slots = set(LogPages.SLOTS)

    async def steps() -> None:
        for n in range(8):  # 16 entries on pages 0 to 3: page 3 takes page 0's slot over
            task.emit("text", {"delta": f"Step {n}: reading the notes. "})
            await asyncio.sleep(2 * FLUSH_S)  # the words pushed on their own
            call = {"id": f"c{n}", "name": "read", "input": {"file_path": f"notes-{n}.txt"}}
            task.emit("tool_call", call)
            await asyncio.sleep(2 * FLUSH_S)  # the words joined the log

    on_engine(steps)
    assert view.log_pages.text == "" and steps_in(view.live_log_html) == list(range(2, 8))
    joined = [keys for keys in told if "text" in keys and keys & slots]
    assert len(joined) >= 8, told  # each step's words left their place for a page
    assert {"text"} in told  # and were streamed before that, alone
    moved = [keys for keys in told if "order" in keys]
    assert moved and all(keys & slots for keys in moved), told  # a page with its place
    assert view.log_pages.order == [3, 1, 2]


def steps_in(html: str) -> list[int]:
    """The steps whose words `html` shows, in the order shown."""
    return [int(n) for n in re.findall(r"Step (\d+): reading", html)]


def page_of(value: str) -> int:
    """The page a page widget shows: the one of the first step it names."""
    return steps_in(value)[0] * STEP_ENTRIES // PAGE_ENTRIES


def settled(value: str) -> bool:
    """A full page whose tool calls all have their result: nothing will change it."""
    calls = len(TOOL_ITEM.findall(value))
    return calls == PAGE_ENTRIES // STEP_ENTRIES and '"jd-note">…</span>' not in value


def test_a_settled_page_is_not_sent_again_so_a_tool_call_opened_in_it_stays_open(
    views: Callable[..., TaskView],
) -> None:
    task = bare_task("t7")
    view = views(task)
    slot_sets = [value_sets(view.log_pages, slot) for slot in LogPages.SLOTS]

    async def steps() -> None:
        for n in range(30):
            step(task, n)
            await asyncio.sleep(FLUSH_S / 3)  # a few steps a push: a page fills over two

    on_engine(steps)
    resent_later = 0
    for values in slot_sets:
        pages = [page_of(value) for value in values]
        assert len(set(pages)) >= 3, pages  # the slot was taken over again and again
        for page, value, next_page in zip(pages, values, pages[1:], strict=False):
            # a slot shows pages p, p + LOG_PAGES, ...; once settled, the next value it is
            # sent is the page that takes the slot over
            assert next_page >= page and (next_page - page) % LOG_PAGES == 0, pages
            if settled(value):
                assert next_page > page, f"page {page} was sent again once settled"
                resent_later += 1
    assert resent_later >= LOG_PAGES  # else the loop above proved nothing


def test_the_pages_are_shown_oldest_first_whichever_widget_shows_them(
    views: Callable[..., TaskView],
) -> None:
    task = bare_task("t8")
    view = views(task)

    async def steps() -> None:
        for n in range(25):
            step(task, n)

    on_engine(steps)
    # 25 steps are 50 entries on pages 0 to 12: the last LOG_PAGES pages hold steps 20 to
    # 24, and page 12, the newest, took over the first widget
    newest = list(range(20, 25))
    in_order = sorted(range(LOG_PAGES), key=lambda slot: view.log_pages.order[slot])
    assert in_order[-1] == 0
    pages = [getattr(view.log_pages, LogPages.SLOTS[slot]) for slot in in_order]
    assert [page_of(page) for page in pages] == [10, 11, 12]
    shown = view.live_log_html
    assert shown.startswith('<div class="jd-note">… 20 earlier tool calls and 20 earlier messages')
    assert steps_in(shown) == newest
    assert all(f"notes-{n}.txt" in item for n, item in zip(newest, tool_items(view), strict=True))


def test_live_log_keeps_the_newest_entries_each_bounded() -> None:
    log = LiveLog()
    log.add_text("Let me look.")
    log.add_call(
        {"id": "a", "name": "write", "input": {"file_path": "big.txt", "content": "x" * 50_000}}
    )
    log.add_result({"tool_use_id": "a", "content": "y" * 50_000, "is_error": True})
    html = log.html()
    assert html.index("Let me look.") < html.index("write big.txt") and "error" in html
    assert "characters more" in html and "characters before" in html
    assert len(html) < INPUT_HEAD + OUTPUT_TAIL + 1000
    for n in range(LOG_ENTRIES):
        log.add_note(f"note {n}")
    html = log.html()  # the first page, the words, the call and two notes, is dropped
    assert html.startswith(
        '<div class="jd-note">… 1 earlier tool call, 1 earlier message and 2 earlier notes'
    )
    assert "write big.txt" not in html and html.endswith(f"note {LOG_ENTRIES - 1}</div>")
    log.add_result({"tool_use_id": "a", "content": "late", "is_error": False})  # ignored
    assert log.html() == html


def test_a_page_of_the_live_log_changes_only_with_its_own_entries() -> None:
    def call(n: int) -> dict[str, Any]:
        return {"id": f"c{n}", "name": "read", "input": {"file_path": f"f{n}.txt"}}

    def result(n: int) -> dict[str, Any]:
        return {"tool_use_id": f"c{n}", "content": f"output {n}", "is_error": False}

    log = LiveLog()
    for n in range(PAGE_ENTRIES):  # page 0: calls 0 to 3, waiting for their results
        log.add_call(call(n))
    log.add_result(result(0))
    first = log.pages()
    assert [number for number, _ in first] == [0]
    log.add_text("On to the next page.")
    log.add_call(call(PAGE_ENTRIES))
    before = log.pages()
    assert [number for number, _ in before] == [0, 1] and before[0] == first[0]
    log.add_result(result(PAGE_ENTRIES))  # a result changes its own page only
    after = log.pages()
    assert after[0] == before[0] and after[1] != before[1] and "output 4" in after[1][1]
    log.add_result(result(1))
    assert log.pages()[1] == after[1] and "output 1" in log.pages()[0][1]
    assert log.html() == "".join(page for _, page in log.pages())
    for n in range(PAGE_ENTRIES * (LOG_PAGES - 1)):  # a new page: page 0 is dropped
        log.add_note(f"note {n}")
    assert [number for number, _ in log.pages()] == list(range(1, LOG_PAGES + 1))
    assert log.earlier().startswith('<div class="jd-note">… 4 earlier tool calls not shown')
    assert log.html() == log.earlier() + "".join(page for _, page in log.pages())


# -- diff rendering --------------------------------------------------------------------------
def test_a_large_file_is_in_the_review_diff_and_out_of_scope_files_are_flagged(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    big = "".join(f"line {i}\n" for i in range(450))
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
    large = review_files(view)["data/big.txt"]
    assert (large["added"], large["removed"]) == (450, 0)
    assert view.review_view is not None and "+line 449" in view.review_view.page_diff
    assert "outside the scope: data/big.txt" in text_of(view.review_content)
    assert "outside the scope: calc.py" not in text_of(view.review_content)


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
