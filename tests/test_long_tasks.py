"""Long tasks with a real model's limits, through the real SDK and the scripted fake: the
context window (the API's compaction, the harness's, a prompt past the window), output
cut at the limit, thinking blocks sent back byte for byte, a refusal. Judged from the
journal, the requests the fake received (it refuses what the real API refuses), and the
worktree."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest

from conftest import CHECK, FIX_TURNS, SANDBOX
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate.errors import JournalError
from jupyter_delegate.journal import Journal
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario
from jupyter_delegate.testing.caching import count_tokens

MODEL = "claude-sonnet-4-6"
BIG = "python3 -c \"print('log line ' * 700)\""  # about 7 KB of output


def scenario(turns: list[dict[str, Any]], **model: Any) -> dict[str, Any]:
    spec = {"id": MODEL, "max_input_tokens": 200_000, "max_tokens": 64_000, **model}
    return {"name": "long", "models": [spec], "turns": turns}


def manager_for(fake: FakeMessagesAPI) -> TaskManager:
    return TaskManager(client=fake.async_client(max_retries=0), sandbox=SANDBOX)


def bash(command: str, **turn: Any) -> dict[str, Any]:
    return {"tools": [{"bash": {"command": command}}], **turn}


def finish(summary: str = "done") -> dict[str, Any]:
    return {"tools": [{"finish": {"summary": summary}}]}


def journal_of(task: Any, kind: str) -> list[dict[str, Any]]:
    return [e.data for e in Journal(task.journal_path).events() if e.type == kind]


def turns_sent(fake: FakeMessagesAPI) -> list[dict[str, Any]]:
    return [r.body for r in fake.requests if r.kind == "turn"]


def test_a_cut_write_edit_and_bash_are_never_run_and_the_model_is_told(
    repo: git.Repo,
) -> None:
    root = Path(repo.working_dir)
    marker = root.parent / "MARKER-cut-bash"
    long_text = "def add(a, b):\n    return a + b\n" * 40
    turns = [
        {"tools": [{"write": {"file_path": "new.py", "content": long_text}}], "cut_at_chars": 60},
        {
            "tools": [
                {"edit": {"file_path": "calc.py", "old_string": "a - b", "new_string": "a + b"}}
            ],
            "cut_at_chars": 50,
        },
        bash(f"touch {marker} && echo {'x' * 200}", cut_at_chars=30),
        finish(),
    ]
    fake = FakeMessagesAPI(load_scenario(scenario(turns)))
    task = manager_for(fake).submit(Outcome("Fix add.", checks=("true",)), repo=str(root))
    assert task.wait(timeout=90) == TaskState.REVIEW, task.error
    assert task.worktree is not None
    assert not (task.worktree / "new.py").exists()
    assert (task.worktree / "calc.py").read_text() == "def add(a, b):\n    return a - b\n"
    assert not marker.exists()
    results = journal_of(task, "tool_result")
    assert [r["name"] for r in results[:3]] == ["write", "edit", "bash"]
    for result in results[:3]:
        assert result["is_error"] and result["cut"] is True
        assert result["content"].startswith("Not run: your output was cut at ")
    assert "output cut at the model's limit 3 time(s); the cut tool calls were not run" in (
        task.flags
    )


def test_a_refusal_fails_the_task_saying_so(repo: git.Repo) -> None:
    fake = FakeMessagesAPI(load_scenario(scenario([{"refusal": True, "text": "I can't."}])))
    task = manager_for(fake).submit(Outcome("Fix add.", checks=("true",)), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.FAILED
    assert "The model refused to go on with this task (stop reason `refusal`)" in task.error
    assert not task.transient


def test_thinking_is_journaled_and_sent_back_byte_for_byte_across_a_resume(
    repo: git.Repo,
) -> None:
    secretish = "AKIA" + "Z" * 16  # a token pattern the journal would otherwise redact
    slow = bash("sleep 20", thinking=f"Let me look first; I must not print {secretish}.")
    turns = [{**FIX_TURNS[0], "thinking": "Run the test first."}, slow, *FIX_TURNS[1:]]
    spec = scenario(turns, thinking=True)
    fake = FakeMessagesAPI(load_scenario(spec))
    task = manager_for(fake).submit(Outcome("Fix add.", checks=(CHECK,)), repo=repo.working_dir)
    deadline = time.monotonic() + 60
    while len(journal_of(task, "assistant")) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    task.pause()
    assert task.wait(timeout=30) == TaskState.PAUSED
    thinking = [
        block
        for turn in journal_of(task, "assistant")
        for block in turn["content"]
        if block["type"] == "thinking"
    ]
    assert len(thinking) == 2 and all(block["signature"] for block in thinking)
    assert secretish in thinking[1]["thinking"]  # as the API sent it: signed, not redacted
    # A new process: a fresh manager and a fresh fake, which checks every signature.
    again = FakeMessagesAPI(load_scenario(spec))
    resumed = manager_for(again).get(task.id, repo.working_dir)
    resumed.resume()
    assert resumed.wait(timeout=90) == TaskState.REVIEW, resumed.error
    assert resumed.checks[0].passed
    sent = turns_sent(again)[0]["messages"]
    blocks = [b for m in sent if m["role"] == "assistant" for b in m["content"]]
    assert [b for b in blocks if b["type"] == "thinking"] == thinking


def test_the_models_limits_reach_the_requests(repo: git.Repo) -> None:
    fake = FakeMessagesAPI(load_scenario(scenario(FIX_TURNS, max_tokens=12_000, thinking=False)))
    task = manager_for(fake).submit(Outcome("Fix add.", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=90) == TaskState.REVIEW, task.error
    bodies = turns_sent(fake)
    assert {b["max_tokens"] for b in bodies} == {12_000}
    assert all("thinking" not in b for b in bodies)
    trigger = bodies[0]["context_management"]["edits"][0]["trigger"]
    assert trigger == {"type": "input_tokens", "value": 120_000}  # 60% of the window


def long_turns(steps: int) -> list[dict[str, Any]]:
    return [bash(BIG) for _ in range(steps)] + [
        {
            "tools": [
                {"edit": {"file_path": "calc.py", "old_string": "a - b", "new_string": "a + b"}}
            ]
        },
        finish("add() adds now."),
    ]


@pytest.mark.parametrize("by", ["server", "harness"])
def test_a_long_task_crosses_the_window_and_reaches_review(repo: git.Repo, by: str) -> None:
    window = 24_000
    spec = scenario(long_turns(30), max_input_tokens=window, compaction=by == "server")
    fake = FakeMessagesAPI(load_scenario(spec))
    task = manager_for(fake).submit(Outcome("Fix add.", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=300) == TaskState.REVIEW, task.error
    assert task.checks[0].passed
    compacted = journal_of(task, "compacted")
    assert compacted and {c["by"] for c in compacted} == {by}
    assert all(c["tokens_after"] < c["tokens_before"] for c in compacted), compacted
    assert task.compactions == len(compacted)
    assert f"compaction 1 by {'the API' if by == 'server' else 'the harness (a summary)'}" in (
        " ".join(task.flags)
    )
    served = [r for r in fake.requests if r.kind in ("turn", "summary") and r.status == 200]
    assert max(count_tokens(r.body) for r in served) <= window
    if by == "harness":  # each compaction is one summarising turn, counted in the cost
        assert [r.kind for r in fake.requests].count("summary") == len(compacted)
        assert all(c["usage"]["input_tokens"] > 0 for c in compacted)


def test_a_prompt_past_the_window_is_compacted_and_the_task_goes_on(repo: git.Repo) -> None:
    window = 16_000
    huge = "python3 -c \"print('x' * 29000)\""  # about 7,000 tokens in one result
    turns = [bash(BIG), bash(huge), bash(huge), *long_turns(0)]
    spec = scenario(turns, max_input_tokens=window, compaction=False)
    fake = FakeMessagesAPI(load_scenario(spec))
    manager = manager_for(fake)
    outcome = Outcome("Fix add.", checks=(CHECK,))  # compacting late: one result jumps past
    task = manager.submit(outcome, repo=repo.working_dir, compact_at=15_500)
    assert task.wait(timeout=120) == TaskState.REVIEW, task.error
    too_long = [r for r in fake.requests if r.status == 400]
    assert too_long, [r.kind for r in fake.requests]
    assert journal_of(task, "compacted")


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    started: list[FakeServer] = []

    def serve(spec: dict[str, Any]) -> FakeMessagesAPI:
        fake = FakeMessagesAPI(load_scenario(spec))
        server = FakeServer(fake)
        server.__enter__()
        started.append(server)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        return fake

    yield serve
    for server in started:
        server.__exit__(None, None, None)


def compacted_in(path: Path) -> bool:
    """Whether the journal (being written by another process) has a compaction yet."""
    try:
        return any(e.type == "compacted" for e in Journal(path).events())
    except JournalError:  # its last line is being written
        return False


def test_a_task_killed_just_after_a_compaction_resumes_from_it(repo: git.Repo, served: Any) -> None:
    spec = scenario(long_turns(30), max_input_tokens=24_000, compaction=True)
    served(spec)
    root = repo.working_dir
    run = subprocess.Popen(
        [sys.executable, "-m", "jupyter_delegate.cli", "run", "Fix add.", "--repo", root,
         "--check", CHECK, "--sandbox", SANDBOX, "--no-approve"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy(),
    )  # fmt: skip
    tasks = Path(repo.git_dir) / "delegate" / "tasks"
    deadline = time.monotonic() + 120
    journal = None
    while time.monotonic() < deadline:
        found = list(tasks.glob("*/journal.jsonl")) if tasks.is_dir() else []
        if found and compacted_in(found[0]):
            journal = found[0]
            break
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert journal is not None, "no compaction within the time"
    fresh = served(spec)  # a fresh fake: it knows only what the requests carry
    task = TaskManager(sandbox=SANDBOX).get(journal.parent.name, root)
    assert task.state == TaskState.INTERRUPTED
    task.resume()
    assert task.wait(timeout=300) == TaskState.REVIEW, task.error
    assert task.checks[0].passed
    first = next(r.body for r in fresh.requests if r.kind == "turn")
    assert first["messages"][0]["content"][0]["type"] == "compaction"  # from there on


def test_a_paused_turn_goes_on_without_a_word_from_the_harness(repo: git.Repo) -> None:
    turns = [{"text": "Looking.", "stop_reason": "pause_turn"}, *FIX_TURNS]
    fake = FakeMessagesAPI(load_scenario(scenario(turns, thinking=False)))
    task = manager_for(fake).submit(Outcome("Fix add.", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=90) == TaskState.REVIEW, task.error
    second = turns_sent(fake)[1]["messages"]
    assert second[-1]["role"] == "assistant"  # sent back as it was: the API goes on
    assert second[-1]["content"] == [{"type": "text", "text": "Looking."}]


def test_the_live_view_folds_the_reasoning_and_redacts_what_it_shows() -> None:
    from jupyter_delegate.notebook.views import thinking_html

    key = "sk-ant-api03-" + "Q" * 40
    shown = thinking_html(f"I will not print {key} <b>here</b>.")
    assert shown.startswith('<details class="jd-thinking"><summary>reasoning</summary>')
    assert key not in shown and "[REDACTED]" in shown and "&lt;b&gt;" in shown


def test_a_compaction_is_paid_for_beside_the_message() -> None:
    from anthropic.types.beta import BetaUsage

    from jupyter_delegate.engine.model import usage_of

    figures = {"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    raw = BetaUsage.model_validate(
        {
            "input_tokens": 3_000,
            "output_tokens": 200,
            **figures,
            "iterations": [
                {"type": "compaction", "input_tokens": 90_000, "output_tokens": 1_500, **figures},
                {"type": "message", "input_tokens": 3_000, "output_tokens": 200, **figures},
            ],
        }
    )
    usage = usage_of(MODEL, raw)
    assert (usage["input_tokens"], usage["output_tokens"]) == (93_000, 1_700)
    plain = usage_of(MODEL, BetaUsage.model_validate({"input_tokens": 3_000, "output_tokens": 200}))
    assert usage["cost_usd"] > plain["cost_usd"] * 20


def test_the_reasoning_leads_the_entry_it_came_before_and_takes_no_place_of_its_own() -> None:
    from jupyter_delegate.notebook.views import LiveLog

    log = LiveLog()
    log.add_thinking("First I read the file.")
    log.add_call({"id": "t1", "name": "read", "input": {"file_path": "calc.py"}})
    log.add_result({"tool_use_id": "t1", "content": "def add(a, b): ...", "is_error": False})
    shown = log.html()
    assert shown.index("First I read the file.") < shown.index("read calc.py")
    assert shown.count('class="jd-tool"') == 1 and "earlier" not in shown
