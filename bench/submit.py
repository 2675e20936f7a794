"""Submit: what `TaskManager.submit` costs the caller, one task and many at once.

One task's submit: on a manager whose engine is already running, `submit` of a short
task (2 steps, zero latency), the task waited to its review before the next; the p50 of
10 such submits a round. Many at once: N submits back to back on one manager, each task
(3 steps, 100 ms a model turn) starting its round while the next submits are made, as in
bench/concurrency.py; their total time, and beside it the submitting thread's own CPU
time in it (`submit_many_cpu_s`, `time.thread_time`): the rest of the wall is the thread
waiting for the cores and the interpreter's lock, which rounds already begun would hold
(the engine begins a burst's rounds when it pauses: runner.EngineRunner). And the same
burst with the rounds in a worker process (`submit_many_s_worker_process`, a notebook's
default), the fake served from its own process.

The reference (the floor of a submit, measured beside it in the same round): creating a
task's folder and writing its three opening events (`task`, `state`, `user`, copied from
a journal the harness wrote) with one write and one sync, as a fresh `Journal`, which is
what any submit that leaves the task durably on disk must do. Both goals are absolute
(machine-bound: the disk's sync is most of the floor); the ratio to the floor is printed
beside them. Rounds: 5 at full size, each figure as min / median / max.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.concurrency import fake_process

NAME = "submit"
GOALS = {"submit_one_ms_p50": 5.0, "submit_many_s": 0.3}


def floor_s(folder: Path, opening: list[tuple[str, dict[str, Any]]]) -> float:
    """Seconds to create a task folder and write `opening` to a fresh journal, synced."""
    from jupyter_delegate.journal import Journal

    started = time.perf_counter()
    folder.mkdir(parents=True)
    Journal(folder / "journal.jsonl").append_many(opening)
    return time.perf_counter() - started


def one_by_one(repo: Path, count: int) -> tuple[list[float], list[tuple[str, dict[str, Any]]]]:
    """`count` submits, each task waited to its review; their times, and the opening
    events the last one journaled."""
    from jupyter_delegate import Budget, Outcome
    from jupyter_delegate.manager import TaskManager
    from jupyter_delegate.testing import FakeMessagesAPI

    fake = FakeMessagesAPI(common.read_turns(2))
    manager = TaskManager(client=fake.async_client(), sandbox="none")
    manager._engine()
    times = []
    task = None
    for n in range(count):
        outcome = Outcome(f"Read the notes ({n}).", budget=Budget(max_steps=7))
        started = time.perf_counter()
        task = manager.submit(outcome, repo=repo)
        times.append(time.perf_counter() - started)
        if str(task.wait(timeout=120)) != "review":
            raise RuntimeError(f"the scripted task ended {task.state}: {task.error}")
    assert task is not None
    events = list(manager._context(task).journal.events())[:3]
    return times, [(e.type, dict(e.data)) for e in events]


def at_once(repo: Path, count: int, latency_ms: int) -> tuple[float, float]:
    """`count` submits back to back on one manager, the tasks running as they come;
    the submits' total time, and the submitting thread's own CPU time in it (the rest
    is waiting, mostly for the interpreter's lock, held by the rounds already started).
    The tasks are then waited for."""
    from jupyter_delegate import Budget, Outcome
    from jupyter_delegate.manager import TaskManager
    from jupyter_delegate.testing import FakeMessagesAPI

    fake = FakeMessagesAPI(common.read_turns(3), latency_ms=latency_ms)
    manager = TaskManager(client=fake.async_client(), sandbox="none")
    manager._engine()
    started, cpu = time.perf_counter(), time.thread_time()
    tasks = [
        manager.submit(Outcome(f"Read the notes ({n}).", budget=Budget(max_steps=8)), repo=repo)
        for n in range(count)
    ]
    total, cpu = time.perf_counter() - started, time.thread_time() - cpu
    states = {str(task.wait(timeout=300)) for task in tasks}
    if states != {"review"}:
        raise RuntimeError(f"tasks ended in {sorted(states)}")
    return total, cpu


def at_once_in_worker(repo: Path, count: int, url: str) -> float:
    """`count` submits back to back on a manager whose rounds run in its worker process
    (runner="process", a notebook's default), warm before the clock, the fake served at
    `url` from its own process; the submits' total time. The tasks are then waited for."""
    from jupyter_delegate import Budget, Outcome
    from jupyter_delegate.manager import TaskManager
    from jupyter_delegate.testing.fake_anthropic import OFFLINE_API_KEY

    os.environ.update(ANTHROPIC_BASE_URL=url, ANTHROPIC_API_KEY=OFFLINE_API_KEY)
    manager = TaskManager(sandbox="none")
    worker = manager.runner = manager.process_runner()
    worker.warm(wait=True)
    try:
        started = time.perf_counter()
        tasks = [
            manager.submit(Outcome(f"Read the notes ({n}).", budget=Budget(max_steps=8)), repo=repo)
            for n in range(count)
        ]
        total = time.perf_counter() - started
        states = {str(task.wait(timeout=300)) for task in tasks}
        for task in tasks:  # its last lines read, the round's lock let go
            manager.until_round_ends(task, timeout=60)
    finally:
        worker.close()
    if states != {"review"}:
        raise RuntimeError(f"tasks ended in {sorted(states)}")
    return total


def run(size: str = "full") -> dict[str, Any]:
    common.check_size(size)
    singles, many, latency_ms, rounds = (3, 4, 20, 1) if size == "tiny" else (10, 64, 100, 5)
    load_before = common.loadavg()
    one_p50: list[float] = []
    one_floor: list[float] = []
    many_s: list[float] = []
    many_cpu_s: list[float] = []
    many_floor: list[float] = []
    worker_s: list[float] = []
    with common.git_identity(), common.scratch(NAME) as tmp:
        repo = common.make_repo(tmp / "repo")
        one_by_one(repo, 2)  # warm-up: imports, git, the SDK client
        for n in range(rounds):
            # A repository of each round's own, used first by the single submits:
            # `git worktree add` slows with the worktrees one has (bench/concurrency.py),
            # and each round leaves `many` behind.
            repo = common.make_repo(tmp / f"repo{n}")
            times, opening = one_by_one(repo, singles)
            one_p50.append(common.median(times) * 1000)
            floors = [floor_s(tmp / f"floor{n}" / f"one{k}", opening) for k in range(singles)]
            one_floor.append(common.median(floors) * 1000)
            wall, cpu = at_once(repo, many, latency_ms)
            many_s.append(wall)
            many_cpu_s.append(cpu)
            many_floor.append(
                sum(floor_s(tmp / f"floor{n}" / f"many{k}", opening) for k in range(many))
            )
        with fake_process(tmp, 3, latency_ms) as url:
            for n in range(rounds):
                worker_s.append(at_once_in_worker(common.make_repo(tmp / f"w{n}"), many, url))
    goals = {
        "submit_one_ms_p50": common.goal_figure(
            GOALS["submit_one_ms_p50"],
            one_p50,
            one_floor,
            unit="ms, p50 of one task's submit (absolute, machine-bound); reference: the floor",
            kind="absolute",
        ),
        "submit_many_s": common.goal_figure(
            GOALS["submit_many_s"],
            many_s,
            many_floor,
            unit=f"s for {many} submits (absolute, machine-bound); reference: {many} floors",
            kind="absolute",
        ),
        "submit_many_s_worker_process": common.goal_figure(
            GOALS["submit_many_s"],
            worker_s,
            many_floor,
            unit=f"s for {many} submits, rounds in a worker process (a notebook's default); "
            f"reference: {many} floors",
            kind="absolute",
        ),
    }
    figures = {
        "benchmark": NAME,
        "size": size,
        "rounds": rounds,
        "tasks": many,
        "load_before": load_before,
        "load_after": common.loadavg(),
        "goals": goals,
        "submit_one_ms_p50": common.median(one_p50),
        "floor_one_ms_p50": common.median(one_floor),
        "submit_many_s": common.median(many_s),
        "submit_many_ms_per_task": common.median(many_s) / many * 1000,
        "submit_many_cpu_s": common.median(many_cpu_s),
        "floor_many_s": common.median(many_floor),
        "submit_many_worker_process_s": common.median(worker_s),
    }
    return common.round_all(figures)


if __name__ == "__main__":
    sys.exit(common.main(run))
