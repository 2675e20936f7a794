"""The SDK's first stream of a process, read beforehand (engine/warmup.py): it leaves the
SDK's stream types built, and a warm-up that fails or never ends holds no task back."""

from __future__ import annotations

import concurrent.futures
import json
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
    failed = warmup.start()
    assert isinstance(failed.exception(timeout=10), RuntimeError)


def test_a_warm_up_that_never_ends_holds_the_stream_back_only_its_wait(
    repo: git.Repo, make_manager: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    never: concurrent.futures.Future[None] = concurrent.futures.Future()
    _fresh(monkeypatch, never)
    monkeypatch.setattr(warmup, "WAIT_S", 0.2)
    manager, _ = make_manager()
    task = manager.submit(Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert task.usage.steps == 5 and not never.done()
