"""The SDK's file tools run on the task's own worker thread, never on the engine's loop: a
call stuck in a real blocking open() is abandoned at its timeout while the loop runs on.

The stuck call is `write` to a FIFO with its regular-file check taken away (as if the FIFO
had appeared between the check and the open): open() for writing then blocks until a
reader comes. Each test lets a reader come at the end, so no thread stays behind.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest

from conftest import SANDBOX, Factory
from jupyter_delegate import Budget, Outcome, TaskState
from jupyter_delegate.engine.loop import TaskFailed
from jupyter_delegate.engine.tools import MAX_ABANDONED_WORKERS, Toolbox, ToolOutput

TO_PIPE = {"file_path": "pipe", "content": "blocks in open() until a reader comes"}


@pytest.fixture
def worktree(outside_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A worktree with a small file and a FIFO that `write` no longer refuses."""
    (outside_tmp / "notes.txt").write_text("a small file\n")
    os.mkfifo(outside_tmp / "pipe")
    monkeypatch.setattr(Toolbox, "_not_a_regular_file", lambda self, tool_input: "")
    yield outside_tmp
    release(outside_tmp / "pipe")


def release(fifo: Path) -> None:
    """Open the FIFO for reading, so every writer stuck in open() goes on, and wait for
    their threads to end."""
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    try:
        for thread in file_tool_threads(fifo.parent):
            thread.join(timeout=10)
    finally:
        os.close(reader)


def file_tool_threads(worktree: Path) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == f"file tools {worktree.name}"]


def toolbox(worktree: Path, timeout_s: float, deadline: float | None = None) -> Toolbox:
    return Toolbox(worktree, None, command_timeout_s=timeout_s, deadline=deadline)  # type: ignore[arg-type]


async def call_while_ticking(box: Toolbox, name: str, tool_input: Any) -> tuple[Any, float, int]:
    """The call's output, how long it took, and how many times another coroutine on the
    same loop ticked (every 10 ms) meanwhile."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    started = time.monotonic()
    try:
        output = await box.call(name, tool_input)
    finally:
        ticking.cancel()
    return output, time.monotonic() - started, ticks


def test_a_stuck_file_tool_is_abandoned_at_the_timeout_while_the_loop_runs_on(
    worktree: Path,
) -> None:
    box = toolbox(worktree, timeout_s=0.5)
    output, took, ticks = asyncio.run(call_while_ticking(box, "write", TO_PIPE))
    assert output.is_error and output.meta == {"timed_out": True}
    assert output.content.startswith("write: took longer than 0.5 s and was abandoned.")
    assert "look with bash" in output.content
    assert 0.5 <= took < 2.0, took
    assert ticks >= 20, ticks  # about 50: the loop was never frozen
    assert len(file_tool_threads(worktree)) == 1  # the stuck one, left behind
    box.close()


def test_the_next_file_tool_call_after_an_abandoned_one_works(worktree: Path) -> None:
    box = toolbox(worktree, timeout_s=0.5)

    async def stuck_then_read() -> tuple[ToolOutput, ToolOutput]:
        return await box.call("write", TO_PIPE), await box.call("read", {"file_path": "notes.txt"})

    stuck, read = asyncio.run(stuck_then_read())
    assert "was abandoned" in str(stuck.content)
    assert not read.is_error and "a small file" in str(read.content)
    assert len(file_tool_threads(worktree)) == 2  # the stuck one and a fresh one
    box.close()


def test_a_task_whose_file_tools_keep_getting_stuck_fails_saying_why(worktree: Path) -> None:
    box = toolbox(worktree, timeout_s=0.2)

    async def stuck_again_and_again() -> list[ToolOutput]:
        outputs = []
        for _ in range(MAX_ABANDONED_WORKERS):
            outputs.append(await box.call("write", TO_PIPE))
        return outputs

    with pytest.raises(TaskFailed, match="file tools got stuck 3 times") as failed:
        asyncio.run(stuck_again_and_again())
    assert "`write`, was abandoned after 0.2 s" in str(failed.value)
    assert "reject the task" in str(failed.value)
    assert not failed.value.transient
    assert len(file_tool_threads(worktree)) == MAX_ABANDONED_WORKERS  # and no more
    box.close()


def test_the_time_left_in_the_budget_shortens_the_timeout(worktree: Path) -> None:
    box = toolbox(worktree, timeout_s=60, deadline=time.monotonic() + 0.5)
    output, took, _ = asyncio.run(call_while_ticking(box, "write", TO_PIPE))
    assert took < 2.0, took
    assert "took longer than 0.5 s, the time left in the task's budget" in str(output.content)
    late = toolbox(worktree, timeout_s=60, deadline=time.monotonic() - 1)
    spent = asyncio.run(late.call("read", {"file_path": "notes.txt"}))
    assert spent.is_error and "not run: the task's time budget has run out" in str(spent.content)
    box.close()


def test_a_cancelled_call_is_abandoned_and_the_cancel_goes_through(worktree: Path) -> None:
    box = toolbox(worktree, timeout_s=60)

    async def cancel_a_stuck_call() -> tuple[float, ToolOutput]:
        call = asyncio.create_task(box.call("write", TO_PIPE))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        took = time.monotonic() - started
        return took, await box.call("read", {"file_path": "notes.txt"})

    took, read = asyncio.run(cancel_a_stuck_call())
    assert took < 0.5, took
    assert "a small file" in str(read.content)
    box.close()


def test_close_ends_the_worker_and_is_safe_twice(worktree: Path) -> None:
    before = set(threading.enumerate())
    box = toolbox(worktree, timeout_s=5)
    read = asyncio.run(box.call("read", {"file_path": "notes.txt"}))
    assert "a small file" in str(read.content)
    [worker] = file_tool_threads(worktree)
    assert worker.daemon
    box.close()
    box.close()
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert [t for t in set(threading.enumerate()) - before if not t.daemon] == []


def test_the_agent_loop_gives_file_tools_no_more_than_the_time_budget(
    repo: git.Repo, make_manager: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(Toolbox, "_not_a_regular_file", lambda self, tool_input: "")
    turns = [
        {"tools": [{"bash": {"command": "mkfifo pipe && echo made"}}]},
        {"tools": [{"write": TO_PIPE}]},
        {"tools": [{"finish": {"summary": "never reached"}}]},
    ]
    manager, _ = make_manager(turns)
    budget = Budget(max_minutes=0.05, command_timeout_s=600)  # 3 s
    task = manager.submit(
        Outcome("Fix add.", checks=("true",), budget=budget),
        repo=repo.working_dir,
        sandbox=SANDBOX,
    )
    try:
        assert task.wait(timeout=60) == TaskState.REVIEW, task.error
        assert task.stopped_by == "the time budget (0.05 minutes)"
        journal = [json.loads(line) for line in task.journal_path.read_text().splitlines()]
        [write] = [e["data"] for e in journal if e["data"].get("name") == "write"]
        assert write["is_error"] and write["timed_out"]
        assert "the time left in the task's budget and was abandoned" in write["content"]
    finally:
        assert task.worktree is not None
        release(task.worktree / "pipe")
