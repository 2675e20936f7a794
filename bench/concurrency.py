"""Concurrency: many tasks on one engine cost about as much wall time as one.

One TaskManager (one engine thread, one asyncio loop), the in-process fake with a fixed
model latency (100 ms per turn), N tasks of S steps each (`read` turns, then `finish`)
on one repository. First one task alone, then N at once. Wall time runs from the first
`submit` to the last task in review. Resident memory is read from /proc/self/statm
before the first submit of the batch and when every task is running (all N are past
their first model turn), divided by N; the peak during the run is reported too.
Where the time goes: each task's phases from its journal (waiting for its worktree, the
agent loop, the conclusion), every journal write timed (`Journal.append_many`,
which `append` calls; it runs on the engine thread), and a bare reference: N bare SDK
loops (as in step_overhead) on one asyncio loop against the same fake, which is what the
engine could do with no harness at all. A what-if batch with `os.fsync` and
`os.fdatasync` made no-ops bounds what moving the journal's sync off the engine thread
would gain (reported apart; never compared with the goal). Last, the same
one-versus-many runs (harness and bare) against the fake served from its own process over
loopback, so that the fake's CPU is not on the engine's thread, as a real API's is not.
"""

from __future__ import annotations

import contextlib
import gc
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

NAME = "concurrency"
GOALS = {"wall_ratio": 1.3, "rss_mb_per_task": 4.0}


class AppendClock:
    """Times every journal write in this process while entered, synced or not:
    `append_many`, which `append` calls (wrapped, restored)."""

    def __init__(self) -> None:
        self.appends: list[float] = []

    def __enter__(self) -> AppendClock:
        from jupyter_delegate.journal import Journal

        self._append_many = original = Journal.append_many
        appends = self.appends

        def append_many(journal: Any, events: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(journal, events, **kw)
            finally:
                appends.append(time.perf_counter() - started)

        Journal.append_many = append_many  # type: ignore[method-assign, assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        from jupyter_delegate.journal import Journal

        Journal.append_many = self._append_many  # type: ignore[method-assign]


def batch(
    repo: Path, tasks: int, steps: int, latency_ms: int, base_url: str | None = None
) -> dict[str, Any]:
    """Run `tasks` tasks at once on a fresh manager; wall, submit time, memory. The fake
    is in process, or the server at `base_url` (its own process) when given."""
    from jupyter_delegate import Budget, Outcome
    from jupyter_delegate.manager import TaskManager
    from jupyter_delegate.testing import FakeMessagesAPI

    fake = FakeMessagesAPI(common.read_turns(steps), latency_ms=latency_ms)
    client = fake.async_client() if base_url is None else loopback_client(base_url)
    manager = TaskManager(client=client, sandbox="none")
    manager._engine()  # start the engine thread before measuring
    gc.collect()
    rss_before = common.rss_bytes()
    rss_peak = rss_before
    started = time.perf_counter()
    submitted = []
    for n in range(tasks):
        outcome = Outcome(f"Read the notes ({n}).", budget=Budget(max_steps=steps + 5))
        submitted.append(manager.submit(outcome, repo=repo))
    submit_s = time.perf_counter() - started
    rss_running = 0
    done = threading.Event()

    def sample() -> None:  # memory while the tasks are alive, every 50 ms
        nonlocal rss_peak, rss_running
        while not done.wait(0.05):
            now = common.rss_bytes()
            rss_peak = max(rss_peak, now)
            if not rss_running and all(t.usage.steps >= 1 for t in submitted):
                rss_running = now

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    states = [str(task.wait(timeout=600)) for task in submitted]
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if any(state != "review" for state in states):
        raise RuntimeError(f"tasks ended in {sorted(set(states))}")
    phases = [phases_of(list(manager._context(task).journal.events())) for task in submitted]
    return {
        "phases": {key: [p[key] for p in phases] for key in ("worktree_s", "loop_s", "conclude_s")},
        "wall": wall,
        "submit_s": submit_s,
        "rss_before": rss_before,
        "rss_running": rss_running or rss_peak,
        "rss_peak": rss_peak,
        "requests": [r.body for r in fake.requests if r.kind != "models"],
    }


def phases_of(events: list[Any]) -> dict[str, float]:
    """Where one task's time went, from its journal's timestamps: waiting for its
    worktree (submit to running), the agent loop (running to the last turn), and the
    conclusion (commit, review)."""
    created = events[0].ts
    running = next(e.ts for e in events if e.type == "state" and e.data["state"] == "running")
    last_turn = [e.ts for e in events if e.type == "tool_result"][-1]
    review = events[-1].ts
    return {
        "worktree_s": running - created,
        "loop_s": last_turn - running,
        "conclude_s": review - last_turn,
    }


def loopback_client(base_url: str) -> AsyncAnthropic:
    from anthropic import AsyncAnthropic

    from jupyter_delegate.testing.fake_anthropic import OFFLINE_API_KEY

    return AsyncAnthropic(api_key=OFFLINE_API_KEY, base_url=base_url, max_retries=2)


@contextlib.contextmanager
def fake_process(folder: Path, steps: int, latency_ms: int) -> Iterator[str]:
    """The fake served over loopback from its own process (as a real API is elsewhere);
    yields its URL."""
    scenario = folder / "scenario.json"
    scenario.write_text(json.dumps(common.read_turns(steps)))
    server = subprocess.Popen(
        [
            *(sys.executable, "-m", "jupyter_delegate.testing.fake_anthropic"),
            *("--scenario", str(scenario), "--latency-ms", str(latency_ms), "--port", "0"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise RuntimeError(f"the fake server did not start: {line!r}")
        yield line.removeprefix("listening on ")
    finally:
        server.terminate()
        server.wait(timeout=10)


def bare_many(
    requests: list[dict[str, Any]],
    tasks: int,
    steps: int,
    latency_ms: int,
    base_url: str | None = None,
) -> float:
    """The reference: `tasks` bare SDK loops (see step_overhead) at once on one asyncio
    loop against one fake with the same latency; their wall time."""
    import asyncio

    from bench.step_overhead import bare_loop
    from jupyter_delegate.testing import FakeMessagesAPI

    async def all_at_once() -> None:
        fake = FakeMessagesAPI(common.read_turns(steps), latency_ms=latency_ms)
        client = fake.async_client() if base_url is None else loopback_client(base_url)
        await asyncio.gather(*(bare_loop(requests, steps, client) for _ in range(tasks)))
        await client.close()

    started = time.perf_counter()
    asyncio.run(all_at_once())
    return time.perf_counter() - started


def run(size: str = "full") -> dict[str, Any]:
    common.check_size(size)
    tasks, steps, latency_ms = (4, 3, 20) if size == "tiny" else (64, 20, 100)
    with common.git_identity(), common.scratch(NAME) as tmp:
        repo = common.make_repo(tmp / "repo")
        batch(repo, 1, 2, 0)  # warm-up: imports, git, the SDK client
        one = batch(repo, 1, steps, latency_ms)
        with AppendClock() as clock:
            many = batch(repo, tasks, steps, latency_ms)
        with common.fsync_off():
            what_if = batch(repo, tasks, steps, latency_ms)
        with fake_process(tmp, steps, latency_ms) as url:
            loop_one = batch(repo, 1, steps, latency_ms, url)
            loop_many = batch(repo, tasks, steps, latency_ms, url)
            loop_bare_one = bare_many(one["requests"], 1, steps, latency_ms, url)
            loop_bare_many = bare_many(one["requests"], tasks, steps, latency_ms, url)
    bare_one = bare_many(one["requests"], 1, steps, latency_ms)
    bare_all = bare_many(one["requests"], tasks, steps, latency_ms)
    per_task = (many["rss_running"] - many["rss_before"]) / tasks
    peak_per_task = (many["rss_peak"] - many["rss_before"]) / tasks
    figures = {
        "benchmark": NAME,
        "size": size,
        "tasks": tasks,
        "steps": steps,
        "latency_ms": latency_ms,
        "one_task_wall_s": one["wall"],
        "many_tasks_wall_s": many["wall"],
        "wall_ratio": many["wall"] / one["wall"],
        "bare_one_wall_s": bare_one,
        "bare_many_wall_s": bare_all,
        "bare_wall_ratio": bare_all / bare_one,
        "submit_s_total": many["submit_s"],
        "submit_ms_per_task": many["submit_s"] / tasks * 1000,
        "model_floor_s": steps * latency_ms / 1000,
        "rss_mb_per_task": max(per_task, 0) / 2**20,
        "rss_peak_mb_per_task": max(peak_per_task, 0) / 2**20,
        "rss_mb_before": many["rss_before"] / 2**20,
        "requests": len(many["requests"]),
        **{
            f"{key}_{stat}": fn(values)
            for key, values in many["phases"].items()
            for stat, fn in (("p50", common.median), ("max", max))
        },
        "one_loop_s": one["phases"]["loop_s"][0],
        "journal_appends": len(clock.appends),
        "journal_append_ms_p50": common.median(clock.appends) * 1000,
        "journal_append_ms_p99": common.percentile(clock.appends, 99) * 1000,
        "journal_total_s": sum(clock.appends),
        "loopback_one_wall_s": loop_one["wall"],
        "loopback_many_wall_s": loop_many["wall"],
        "loopback_wall_ratio": loop_many["wall"] / loop_one["wall"],
        "loopback_loop_s_p50": common.median(loop_many["phases"]["loop_s"]),
        "loopback_bare_one_wall_s": loop_bare_one,
        "loopback_bare_many_wall_s": loop_bare_many,
        "loopback_bare_wall_ratio": loop_bare_many / loop_bare_one,
        "what_if_no_fsync_wall_s": what_if["wall"],
        "what_if_no_fsync_loop_s_p50": common.median(what_if["phases"]["loop_s"]),
    }
    return common.round_all(figures)


if __name__ == "__main__":
    sys.exit(common.main(run))
