"""Typed journal events: every line parses into its event and writes back to the same data,
old journals (format 1, before these types) still load, replay and verify, newer writers'
keys and types are kept, and subscribers hear the journal event with the live one."""

from __future__ import annotations

import dataclasses
import io
import shutil
from pathlib import Path

import git
import pytest

from conftest import CHECK, Factory
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate.cli import main
from jupyter_delegate.errors import JournalError
from jupyter_delegate.events import (
    FORMAT,
    KNOWN,
    Checks,
    Control,
    Finish,
    StateChanged,
    TaskCreated,
    ToolResult,
    UnknownEvent,
    parse,
)
from jupyter_delegate.journal import Journal, canonical, replay_messages
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.task import Task, TaskEvent
from jupyter_delegate.workspace import Workspace

# Written by the code before typed events (tests/fixtures/make_journal.py): a task fixed
# add(), had a curl call denied by policy, was sent back with feedback kept as a
# preference, wrote NOTES.md and was approved.
FORMAT_1 = Path(__file__).parent / "fixtures" / "format1" / "journal.jsonl"
FORMAT_1_ID = "04c8ce"


def installed(repo: git.Repo) -> Path:
    """The format-1 journal, in `repo`'s task folder as if its task had run there."""
    folder = Workspace(repo.working_dir).task_dir(FORMAT_1_ID)
    folder.mkdir(parents=True)
    shutil.copy(FORMAT_1, folder / "journal.jsonl")
    return folder / "journal.jsonl"


def test_a_format_1_journal_loads_replays_and_verifies(repo: git.Repo) -> None:
    path = installed(repo)
    task = TaskManager().get(FORMAT_1_ID, repo.working_dir)
    assert task.state == TaskState.MERGED and task.name == "fix-add"
    assert task.summary == "Also wrote NOTES.md."
    assert [(c.command, c.passed) for c in task.checks] == [(CHECK, True)]
    assert task.proven and not task.forced and task.merged_commit
    assert task.usage.steps == 8 and task.served_models == ["claude-sonnet-4-6"]
    assert task.flags == [
        "commands ran unsandboxed",
        "denied: bash (rule bash(curl:*) matches `curl -s https://example.com`; by policy)",
        "remembered as a preference (repo): Please leave a note in NOTES.md.",
    ]
    events = list(Journal(path).events())
    assert isinstance(events[0].typed, TaskCreated) and events[0].typed.format == 1
    messages = replay_messages(events)
    assert [m["role"] for m in messages] == ["user", "assistant"] * 8 + ["user"]
    assert "Please leave a note in NOTES.md." in messages[12]["content"][-1]["text"]
    verified = Journal(path).verify()
    assert verified.ok and verified.events == 35 and verified.head == task.journal_head
    out = io.StringIO()
    assert main(["audit", "verify", "--repo", repo.working_dir], out=out) == 0
    head = task.journal_head[:12]
    assert out.getvalue() == f"{FORMAT_1_ID}: audit verify: ok (35 events, head {head})\n"


def round_trips(events: list) -> None:  # type: ignore[type-arg]
    for event in events:
        typed = parse(event.type, event.data)
        assert not isinstance(typed, UnknownEvent), event.type
        assert typed.to_data() == event.data, event.type
        assert canonical(typed.to_data()) == canonical(event.data)


def test_every_line_of_a_format_1_journal_writes_back_to_its_data() -> None:
    round_trips(list(Journal(FORMAT_1).events()))


def test_a_new_journal_is_format_2_and_folds_into_the_task_that_ran(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager()
    ran = manager.submit(Outcome("Fix add().", checks=(CHECK,)), repo=repo.working_dir)
    assert ran.wait(timeout=60) == TaskState.REVIEW
    events = list(Journal(ran.journal_path).events())
    first = events[0].typed
    assert isinstance(first, TaskCreated) and first.format == FORMAT == 2
    round_trips(events)
    folded = Task(id=ran.id, outcome=ran.outcome, repo=ran.repo)
    for event in events:
        folded.apply(event.typed)
    assert folded.to_record() == {**ran.to_record(), "journal_head": ""}


def test_events_made_in_code_write_what_is_written_only_sometimes_when_it_is_set() -> None:
    assert StateChanged("running", "resumed").to_data() == {"state": "running", "reason": "resumed"}
    failed = StateChanged("failed", "the task failed", error="boom", transient=True)
    assert failed.to_data() == {
        "state": "failed",
        "reason": "the task failed",
        "error": "boom",
        "transient": True,
    }
    assert Finish("done").to_data() == {"summary": "done", "stopped_by": None}
    assert ToolResult("t1", "read", "text").to_data() == {
        "tool_use_id": "t1",
        "name": "read",
        "content": "text",
        "is_error": False,
    }


def test_what_a_newer_writer_adds_is_kept_and_an_unknown_type_is_passed_over() -> None:
    data = {"state": "running", "reason": "go", "by": {"pid": 7}}
    event = parse("state", data)
    assert isinstance(event, StateChanged) and event.extra == {"by": {"pid": 7}}
    assert event.to_data() == data
    hologram = parse("hologram", {"beams": 3})
    assert hologram == UnknownEvent("hologram", {"beams": 3})
    assert hologram.to_data() == {"beams": 3}
    task = Task(id="t", outcome=Outcome("x"), repo=Path("."))
    task.apply(hologram)
    task.apply("state", data)  # the (type, data) form parses first
    assert task.state == TaskState.RUNNING and not task.flags


def test_a_journal_of_a_newer_format_is_flagged() -> None:
    line = next(Journal(FORMAT_1).events())
    task = Task(id="t", outcome=Outcome("x"), repo=Path("."))
    task.apply("task", {**line.data, "format": FORMAT + 1})
    assert f"its journal is of format {FORMAT + 1}" in task.flags[-1]


def test_a_line_lacking_a_key_its_type_always_has_is_named() -> None:
    with pytest.raises(JournalError, match="'checks' journal event lacks results"):
        parse("checks", {"commit": "abc"})


def test_a_control_request_round_trips_and_changes_no_fact_but_who_decided() -> None:
    posted = {
        "request_id": "r1",
        "action": "approve",
        "args": {"strategy": "merge"},
        "by": {"pid": 42, "host": "box", "user": "ada"},
        "status": "posted",
    }
    done = {**posted, "status": "done", "result": {"commit": "abc"}}
    refused = {**posted, "status": "refused", "error": "not in review"}
    for data in (posted, done, refused):
        event = parse("control", data)
        assert isinstance(event, Control) and event.to_data() == data
    task = Task(id="t", outcome=Outcome("x"), repo=Path("."))
    before = task.to_record()
    task.apply(parse("control", done))
    after = task.to_record()
    assert after.pop("decisions") == ["approved by ada via Python"]
    assert before.pop("decisions") == []
    assert after == before


def test_subscribers_hear_the_journal_event_with_the_live_one(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager()
    heard: list[TaskEvent] = []
    task = manager.submit(Outcome("Fix add().", checks=(CHECK,)), repo=repo.working_dir)
    task.subscribe(heard.append)
    assert task.wait(timeout=60) == TaskState.REVIEW
    kinds = {e.kind: e for e in heard}
    last_state = [e for e in heard if e.kind == "state"][-1]
    assert isinstance(last_state.journal, StateChanged) and last_state.journal.state == "review"
    results = [e for e in heard if e.kind == "tool_result"]
    assert results and all(isinstance(e.journal, ToolResult) for e in results)
    assert all(e.journal.to_data() == e.data for e in results)  # type: ignore[union-attr]
    assert isinstance(kinds["checks"].journal, Checks)
    assert kinds["checks"].journal.results[0]["passed"] is True
    assert all(e.journal is None for e in heard if e.kind in ("text", "tool_call", "review"))


def test_every_known_type_parses_its_fields_and_writes_them_back() -> None:
    # A class that lost its @dataclass (a merge did that once) parses every line as empty.
    for type_, cls in KNOWN.items():
        assert dataclasses.is_dataclass(cls), f"{cls.__name__} is not a dataclass"
        assert type_ == cls.TYPE
    data = {"event": "review", "target": "webhook h (json)", "error": "HTTP 500", "attempts": 4}
    assert parse("notify_failed", data).to_data() == data


def test_a_round_run_elsewhere_is_retold_from_its_journal_in_the_order_it_ran() -> None:
    """`Retelling`: a model turn's words and usage, then its calls one at a time, each when
    the one before has its result (as AgentLoop.act tells them); a permission and a state
    as `told` says; a policy's own denial is not told."""
    from jupyter_delegate.task import Retelling

    call = {"type": "tool_use", "input": {"file_path": "a.py"}}
    turn = {
        "content": [
            {"type": "text", "text": "Two reads."},
            {**call, "id": "c1", "name": "read"},
            {**call, "id": "c2", "name": "edit"},
        ],
        "usage": {"output_tokens": 3},
    }
    asked = {"tool_use_id": "c2", "tool": "edit", "input": {}, "request_id": "r1", "reason": "?"}
    lines = [
        ("assistant", turn),
        ("tool_result", {"tool_use_id": "c1", "name": "read", "content": "x"}),
        ("permission", {**asked, "status": "asked", "rules": []}),
        ("state", {"state": "waiting"}),
        ("permission", {**asked, "decision": "allow", "by": "human", "granted": []}),
        ("permission", {"tool_use_id": "c9", "tool": "bash", "decision": "deny", "by": "policy"}),
        ("state", {"state": "running"}),
        ("tool_result", {"tool_use_id": "c2", "name": "edit", "content": "ok"}),
    ]
    retelling = Retelling()
    told = [
        (kind, data)
        for seq, (type_, line) in enumerate(lines)
        for kind, data, _ in retelling.events(type_, line, None, seq)
    ]
    assert [kind for kind, _ in told] == [
        "text", "usage", "tool_call", "tool_result", "tool_call", "permission", "state",
        "permission", "state", "tool_result",
    ]  # fmt: skip
    assert told[0][1] == {"delta": "Two reads.", "message": "journal-0", "block": 0}
    assert [d["id"] for k, d in told if k == "tool_call"] == ["c1", "c2"]
    assert told[7][1]["status"] == "allowed" and told[7][1]["by"] == "human"
