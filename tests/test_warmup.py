"""The SDK's first stream of a process, read beforehand (engine/warmup.py): it leaves the
SDK's stream types built, and a warm-up that fails or never ends holds no task back."""

from __future__ import annotations

import concurrent.futures
import json
import os
import subprocess
import sys
import textwrap

import git
import pytest

from conftest import CHECK, Factory
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate.engine import warmup

# In a fresh process: read one stream from the scripted fake through the SDK, counting
# the pydantic schemas built while it is read; with the warm-up first when asked.
SCHEMAS_BUILT = textwrap.dedent(
    """
    import asyncio, json, sys
    from pydantic._internal import _generate_schema
    from jupyter_delegate.engine import warmup
    from jupyter_delegate.testing import FakeMessagesAPI

    warmed = sys.argv[1] == "warm"
    if warmed:
        warmup.start().result(timeout=60)
    built = []
    original = _generate_schema.GenerateSchema.generate_schema
    def counting(self, obj, *args, **kwargs):
        built.append(repr(obj)[:80])
        return original(self, obj, *args, **kwargs)
    _generate_schema.GenerateSchema.generate_schema = counting

    turn = {"text": "Reading first.", "tools": [{"read": {"file_path": "a.py"}}]}
    client = FakeMessagesAPI({"name": "w", "turns": [turn]}).async_client()
    async def read():
        request = {"role": "user", "content": "Read a.py."}
        async with client.beta.messages.stream(
            model="claude-sonnet-4-6", max_tokens=1000, messages=[request]
        ) as stream:
            words = [event.text async for event in stream if event.type == "text"]
        return "".join(words)
    words = asyncio.run(read())
    print(json.dumps({"words": words, "built": built}))
    """
)


def _schemas_built(mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", SCHEMAS_BUILT, mode], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return found


def test_after_the_warm_up_the_first_real_stream_builds_no_schema() -> None:
    cold = _schemas_built("cold")
    warm = _schemas_built("warm")
    assert cold["words"] == warm["words"] == "Reading first."
    assert cold["built"], "without the warm-up the first stream builds the SDK's types"
    assert warm["built"] == [], f"built during the first stream after the warm-up: {warm}"


def _fresh(monkeypatch: pytest.MonkeyPatch, started: object = None) -> None:
    monkeypatch.setattr(warmup, "_started", started)
    monkeypatch.setattr(warmup, "_given_up", False)


def test_a_task_runs_when_the_warm_up_fails(
    repo: git.Repo, make_manager: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken() -> None:
        raise RuntimeError("an SDK that streams differently")

    _fresh(monkeypatch)
    monkeypatch.setattr(warmup, "_read_a_stream", broken)
    manager, _ = make_manager()
    task = manager.submit(Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert task.checks_passed
    failed = warmup._started  # the engine started it (start() would make one too)
    assert failed is not None
    assert isinstance(failed.exception(timeout=10), RuntimeError)


def test_a_warm_up_that_never_ends_is_waited_for_once_only(
    repo: git.Repo, make_manager: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    never: concurrent.futures.Future[None] = concurrent.futures.Future()
    _fresh(monkeypatch, never)
    monkeypatch.setattr(warmup, "WAIT_S", 0.2)
    waits: list[bool] = []
    ready = warmup.ready

    async def counted(warm_up: concurrent.futures.Future[None]) -> None:
        waits.append(not warmup._given_up)  # whether this call may still wait
        await ready(warm_up)

    monkeypatch.setattr(warmup, "ready", counted)
    manager, _ = make_manager()
    task = manager.submit(Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert task.usage.steps == 5 and not never.done()
    assert warmup._given_up  # the first turn's wait ran out ...
    assert waits == [True, False, False, False, False]  # ... and no later turn waited


def test_a_forked_child_starts_its_own_warm_up(monkeypatch: pytest.MonkeyPatch) -> None:
    pending: concurrent.futures.Future[None] = concurrent.futures.Future()
    _fresh(monkeypatch, pending)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its parent's warm-up thread is not here
        os.write(write, b"none" if warmup._started is None else b"inherited")
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    assert os.read(read, 20) == b"none"
    os.close(read)
    assert warmup._started is pending  # the parent's is untouched
