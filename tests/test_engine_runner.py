"""Rounds on this process's engine (runner.EngineRunner): a burst of submits gets the
caller's thread back first, its rounds begun together once the burst pauses, and a
stream of starts that never pauses still has its rounds begun within a bound."""

from __future__ import annotations

import time
from collections.abc import Iterator

import git
import pytest

from jupyter_delegate import Budget, Outcome, Task
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.runner import Round
from jupyter_delegate.testing import FakeMessagesAPI, load_scenario

FINISH = [{"tools": [{"finish": {"summary": "Nothing to change."}}]}]


@pytest.fixture
def manager() -> Iterator[TaskManager]:
    fake = FakeMessagesAPI(load_scenario({"name": "finish", "turns": FINISH}))
    yield TaskManager(client=fake.async_client(), sandbox="none")


def _submit(manager: TaskManager, repo: git.Repo, n: int) -> Task:
    outcome = Outcome(f"Look at the notes ({n}).", budget=Budget(max_steps=3))
    return manager.submit(outcome, repo=repo.working_dir)


def _began(manager: TaskManager, task: Task) -> float:
    """When the task's round began: its journal's first `running`."""
    events = manager._context(task).journal.events()
    return next(e.ts for e in events if e.type == "state" and e.data["state"] == "running")


def test_a_burst_of_submits_begins_its_rounds_after_it(
    repo: git.Repo, manager: TaskManager
) -> None:
    runner = manager._engine_runner
    runner.gather_s, runner.gather_at_most_s = 1.0, 5.0  # wider than any gap here
    tasks = []
    for n in range(5):  # a submit every 0.15 s: long enough for a round to get going
        tasks.append(_submit(manager, repo, n))
        time.sleep(0.15 if n < 4 else 0)
    burst_ended = time.time()
    assert {str(t.state) for t in tasks} == {"queued"}
    assert {str(t.wait(timeout=60)) for t in tasks} == {"review"}
    assert all(_began(manager, t) >= burst_ended - 0.01 for t in tasks)


def test_starts_that_never_pause_still_begin_within_the_bound(
    repo: git.Repo, manager: TaskManager
) -> None:
    runner = manager._engine_runner
    runner.gather_s, runner.gather_at_most_s = 0.5, 0.3
    first = _submit(manager, repo, 0)
    tasks = [first]
    while time.time() - _created(manager, first) < 2.5:  # a submit every 0.1 s
        time.sleep(0.1)
        tasks.append(_submit(manager, repo, len(tasks)))
    stream_ended = time.time()
    assert {str(t.wait(timeout=60)) for t in tasks} == {"review"}
    assert _began(manager, first) < stream_ended - 1.0  # begun about 0.3 s in


def _created(manager: TaskManager, task: Task) -> float:
    return next(iter(manager._context(task).journal.events())).ts


def test_a_round_that_cannot_begin_fails_its_task_and_not_the_others(
    repo: git.Repo, manager: TaskManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    launch = manager._launch
    broken: set[str] = set()

    def launch_or_fail(work: Round) -> None:
        if work.task_id in broken:
            raise OSError("the disk went away")
        launch(work)

    monkeypatch.setattr(manager, "_launch", launch_or_fail)
    manager._engine_runner.gather_s = 0.3
    doomed = _submit(manager, repo, 0)
    broken.add(doomed.id)
    fine = _submit(manager, repo, 1)
    assert str(doomed.wait(timeout=30)) == "failed"
    assert "could not begin: the disk went away" in doomed.error
    assert str(fine.wait(timeout=60)) == "review"
    assert manager.until_round_ends(doomed, timeout=5) == doomed.state  # not left waiting
