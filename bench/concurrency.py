"""Concurrency: many tasks on one engine cost about as much wall time as one.

One TaskManager (one engine thread, one asyncio loop), the in-process fake with a fixed
model latency (100 ms per turn), N tasks of S steps each (`read` turns, then `finish`),
each round on a repository of its own. First one task alone, then N at once. Wall time runs
from the first `submit` to the last task in review. Resident memory is read from /proc/self/statm
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

Where the CPU goes: each round's N-task batch and N bare loops with the process's user
and system time, context switches, its ended children's CPU (git's), and the fake's own
CPU apart from the rest (`CpuAccount`); printed for one whole round, the one of the
median harness wall (`cpu_round`, `cpu_harness_*`, `cpu_bare_*`); one more batch with
each kind of thread's CPU and context switches (`cpu_by_thread`, `ThreadCpu`). And the
paced pair: the N tasks and N bare loops at a real model's pace (5 turns of 1 s), where
the CPU is not the limit, with the tasks' phases (`paced_*`; not a goal).

Rounds (5 at full size): each runs one task, N tasks, one bare loop and N bare loops, in
that order, so drift hits both sides; each goal (`goals`) is printed with its bare
reference and the ratio per round as min / median / max (`common.goal_figure`). The
what-if, by-thread, paced and loopback runs are made once, after the rounds.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

NAME = "concurrency"
# Issue 21: the harness's wall for N tasks against N bare SDK loops in the same round
# (a ratio), and the resident memory a task adds (absolute).
GOALS = {"concurrency_wall": 1.15, "memory_mb_per_task": 4.0}
# The paced pair: the same tasks at a real model's pace, a turn of 1 s (not a goal).
PACED_LATENCY_MS, PACED_STEPS = 1000, 5


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


class CpuAccount:
    """Where this process's CPU went while entered: user and kernel (system) time and the
    context switches of all its threads (`getrusage`), the CPU of the child processes
    that ended meanwhile (git's, `children_cpu_s`), and a lower bound of the part the fake
    model spent answering (`FakeMessagesAPI.reply`, timed with `time.thread_time` on the
    thread that ran it, wrapped and restored; the transport's handing over of the reply
    is left to the rest): the stand-in's work, which a real API does on its own machines.
    `own_cpu_s` is the rest: the harness (or the bare loops) and the SDK. `start()` and
    `stop()` move the window's ends (`batch` calls them at its first submit and when its
    last task is in review); entering and leaving the block are the defaults."""

    def __init__(self) -> None:
        self.fake_cpu_s = 0.0
        self.figures: dict[str, float] | None = None
        self._before: tuple[Any, Any] | None = None

    def __enter__(self) -> CpuAccount:
        from jupyter_delegate.testing.fake_anthropic import FakeMessagesAPI

        self._reply = original = FakeMessagesAPI.reply

        def reply(fake: Any, *args: Any, **kw: Any) -> Any:
            started = time.thread_time()
            try:
                return original(fake, *args, **kw)
            finally:
                self.fake_cpu_s += time.thread_time() - started

        self._wrapper = reply
        FakeMessagesAPI.reply = reply  # type: ignore[method-assign, assignment]
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        from jupyter_delegate.testing.fake_anthropic import FakeMessagesAPI

        self.stop()
        if FakeMessagesAPI.reply is self._wrapper:  # an account entered inside keeps its own
            FakeMessagesAPI.reply = self._reply  # type: ignore[method-assign]

    def start(self) -> None:
        self.fake_cpu_s = 0.0
        self._before = (resource.getrusage(resource.RUSAGE_SELF), _children())

    def stop(self) -> None:
        """Take the figures now; once."""
        if self.figures is not None or self._before is None:
            return
        after, children = resource.getrusage(resource.RUSAGE_SELF), _children()
        before, children_before = self._before
        user = after.ru_utime - before.ru_utime
        system = after.ru_stime - before.ru_stime
        self.figures = {
            "cpu_s": user + system,
            "user_s": user,
            "system_s": system,
            "fake_cpu_s": self.fake_cpu_s,
            "own_cpu_s": user + system - self.fake_cpu_s,
            "children_cpu_s": children - children_before,
            "voluntary_switches": after.ru_nvcsw - before.ru_nvcsw,
            "involuntary_switches": after.ru_nivcsw - before.ru_nivcsw,
        }


def _children() -> float:
    """The CPU seconds of this process's children that have ended and been waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


THREAD_NUMBER = re.compile(r"(_\d+| [0-9a-f]{6})$")  # `delegate-git_3`, `file tools 92a37c`


class ThreadCpu:
    """Every 0.1 s, each thread's CPU so far (/proc/self/task/*/schedstat, its first
    field) and how often it gave up its core (`voluntary_ctxt_switches` of its status),
    kept per thread (its id and start time), ended ones too (a thread's last 0.1 s
    before it ends is lost), summed by kind: the Python name without its number or task
    id (`delegate-git_3` and `file tools 92a37c` count as `delegate-git` and `file
    tools`). Only threads that ran in the window count; the sampler's own is reported as
    `bench-thread-cpu`. `start()` and `stop()` as `CpuAccount`'s; use it as a block."""

    def __init__(self) -> None:
        self._seen: dict[tuple[int, int], tuple[str, int, int]] = {}
        self._names: dict[int, str] = {}
        self._stop = threading.Event()
        self.figures: dict[str, dict[str, float]] | None = None
        self.start()
        self._thread = threading.Thread(target=self._run, name="bench-thread-cpu", daemon=True)
        self._thread.start()

    def __enter__(self) -> ThreadCpu:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._read()
        self._start = dict(self._seen)

    def _read(self) -> None:
        for thread in threading.enumerate():
            if thread.native_id is not None:
                self._names[thread.native_id] = THREAD_NUMBER.sub("", thread.name)
        for tid_text in os.listdir("/proc/self/task"):
            tid = int(tid_text)
            try:
                with open(f"/proc/self/task/{tid}/stat") as handle:
                    started = int(handle.read().rsplit(")", 1)[1].split()[19])
                with open(f"/proc/self/task/{tid}/schedstat") as handle:
                    ns = int(handle.read().split()[0])
                with open(f"/proc/self/task/{tid}/status") as handle:
                    status = handle.read()
            except (OSError, IndexError, ValueError):  # ended between listing and reading
                continue
            switches = int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])
            self._seen[(tid, started)] = (self._names.get(tid, "other"), ns, switches)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            self._read()

    def stop(self) -> None:
        """Per kind of thread, into `figures`: threads that ran, CPU seconds and
        voluntary switches since the start. Once."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._read()
        kinds: dict[str, dict[str, float]] = {}
        for key, (name, ns, switches) in self._seen.items():
            _, ns0, switches0 = self._start.get(key, (name, 0, 0))
            if ns <= ns0:
                continue
            kind = kinds.setdefault(name, {"threads": 0, "cpu_s": 0.0, "voluntary_switches": 0})
            kind["threads"] += 1
            kind["cpu_s"] += (ns - ns0) / 1e9
            kind["voluntary_switches"] += switches - switches0
        self.figures = dict(sorted(kinds.items(), key=lambda item: -item[1]["cpu_s"]))


def batch(
    repo: Path,
    tasks: int,
    steps: int,
    latency_ms: int,
    base_url: str | None = None,
    clocks: Sequence[CpuAccount | ThreadCpu] = (),
    runner: str = "kernel",
) -> dict[str, Any]:
    """Run `tasks` tasks at once on a fresh manager; wall, submit time, memory. The fake
    is in process, or the server at `base_url` (its own process) when given. `clocks`
    are started at the first submit and stopped when the last task is in review (before
    the bench reads the journals), the wall's own ends. `runner`: "kernel" (this
    process's engine) or "process" (a worker process, started before the clock, which
    reaches the fake at `base_url` through its environment)."""
    from jupyter_delegate import Budget, Outcome
    from jupyter_delegate.manager import TaskManager
    from jupyter_delegate.testing import FakeMessagesAPI
    from jupyter_delegate.testing.fake_anthropic import OFFLINE_API_KEY

    fake = FakeMessagesAPI(common.read_turns(steps), latency_ms=latency_ms)
    if runner == "process":
        if base_url is None:
            raise ValueError("a worker process reaches the fake over loopback: give base_url")
        os.environ.update(ANTHROPIC_BASE_URL=base_url, ANTHROPIC_API_KEY=OFFLINE_API_KEY)
        manager = TaskManager(sandbox="none")
        worker = manager.process_runner()
        manager.runner = worker
        worker.warm(wait=True)
    else:
        client = fake.async_client() if base_url is None else loopback_client(base_url)
        manager = TaskManager(client=client, sandbox="none")
    manager._engine()  # start the engine thread before measuring
    gc.collect()
    rss_before = common.rss_bytes()
    rss_peak = rss_before
    for clock in clocks:
        clock.start()
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

    sampler = threading.Thread(target=sample, name="bench-memory", daemon=True)
    sampler.start()
    states = [str(task.wait(timeout=600)) for task in submitted]
    wall = time.perf_counter() - started
    for clock in clocks:
        clock.stop()
    done.set()
    sampler.join()
    if runner == "process":
        for task in submitted:  # its last lines read, the round's lock let go
            manager.until_round_ends(task, timeout=60)
        manager.process_runner().close()
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
    rss_growth: list[int] | None = None,
) -> float:
    """The reference: `tasks` bare SDK loops (see step_overhead) at once on one asyncio
    loop against one fake with the same latency; their wall time. Appends to
    `rss_growth` how far the resident size rose above where it started, at its peak."""
    import asyncio

    from bench.step_overhead import bare_loop
    from jupyter_delegate.testing import FakeMessagesAPI

    peak = [common.rss_bytes()]

    async def all_at_once() -> None:
        fake = FakeMessagesAPI(common.read_turns(steps), latency_ms=latency_ms)
        client = fake.async_client() if base_url is None else loopback_client(base_url)
        loops = [bare_loop(requests, steps, client) for _ in range(tasks)]
        sampler = asyncio.get_running_loop().create_task(sample_peak(peak))
        await asyncio.gather(*loops)
        sampler.cancel()
        await client.close()

    started = time.perf_counter()
    asyncio.run(all_at_once())
    wall = time.perf_counter() - started
    if rss_growth is not None:
        rss_growth.append(peak[1] - peak[0] if len(peak) > 1 else 0)
    return wall


async def sample_peak(peak: list[int]) -> None:
    """Keep the highest resident size seen (every 50 ms) in `peak[1]`."""
    import asyncio

    while True:
        await asyncio.sleep(0.05)
        now = common.rss_bytes()
        if len(peak) == 1:
            peak.append(now)
        peak[1] = max(peak[1], now)


def run(size: str = "full") -> dict[str, Any]:
    common.check_size(size)
    tasks, steps, latency_ms, rounds = (4, 3, 20, 1) if size == "tiny" else (64, 20, 100, 5)
    load_before = common.loadavg()
    ones: list[dict[str, Any]] = []
    manys: list[dict[str, Any]] = []
    bare_ones: list[float] = []
    bare_manys: list[float] = []
    bare_rss: list[int] = []
    accounts: list[dict[str, float]] = []
    bare_accounts: list[dict[str, float]] = []
    paced_steps, paced_ms = (2, 200) if size == "tiny" else (PACED_STEPS, PACED_LATENCY_MS)
    with common.git_identity(), common.scratch(NAME) as tmp:
        made = itertools.count()

        def used() -> Path:
            """A repository of its own, used once before (a task run in it to its review):
            `git worktree add` slows with the worktrees a repository has (5 ms each with
            none, 25 ms with 400) and the batches would leave 400 in one; and a repository
            used for the first time makes its state folders then, which a batch should not
            time (the rounds' repositories are used first by their one-task batch)."""
            repo = common.make_repo(tmp / f"repo{next(made)}")
            batch(repo, 1, 2, 0)
            return repo

        used()  # warm-up: imports, git, the SDK client
        with AppendClock() as clock:
            for _ in range(rounds):
                repo = common.make_repo(tmp / f"repo{next(made)}")
                ones.append(batch(repo, 1, steps, latency_ms))
                with CpuAccount() as account:
                    manys.append(batch(repo, tasks, steps, latency_ms, None, [account]))
                accounts.append(account.figures or {})
                requests = ones[-1]["requests"]
                bare_ones.append(bare_many(requests, 1, steps, latency_ms))
                with CpuAccount() as account:
                    bare_manys.append(bare_many(requests, tasks, steps, latency_ms, None, bare_rss))
                bare_accounts.append(account.figures or {})
        with ThreadCpu() as by_thread, CpuAccount() as threads_account:
            threads_batch = batch(
                used(), tasks, steps, latency_ms, None, [threads_account, by_thread]
            )
        # At a real model's pace (a turn of paced_ms), where the CPU is not the limit.
        repo = used()
        paced_requests = batch(repo, 1, paced_steps, 0)["requests"]
        paced = batch(repo, tasks, paced_steps, paced_ms)
        paced_bare = bare_many(paced_requests, tasks, paced_steps, paced_ms)
        with common.fsync_off():
            what_if = batch(used(), tasks, steps, latency_ms)
        with fake_process(tmp, steps, latency_ms) as url:
            repo = used()
            loop_one = batch(repo, 1, steps, latency_ms, url)
            loop_many = batch(repo, tasks, steps, latency_ms, url)
            loop_bare_one = bare_many(requests, 1, steps, latency_ms, url)
            loop_bare_many = bare_many(requests, tasks, steps, latency_ms, url)
            # The rounds in a worker process (runner="process"), as a notebook runs them;
            # each batch against a bare batch of the same run, over the same loopback.
            process_many, process_bare = [], []
            for _ in range(rounds):
                process_many.append(
                    batch(used(), tasks, steps, latency_ms, url, runner="process")["wall"]
                )
                process_bare.append(bare_many(requests, tasks, steps, latency_ms, url))
    one_walls = [b["wall"] for b in ones]
    many_walls = [b["wall"] for b in manys]
    wall_ratios = [m / o for m, o in zip(many_walls, one_walls, strict=True)]
    bare_ratios = [m / o for m, o in zip(bare_manys, bare_ones, strict=True)]
    # Memory from the first round only: later rounds reuse what the earlier ones freed, so
    # the process grows by about nothing (measured: 0 MB in rounds 2 to 5).
    per_task = [max(manys[0]["rss_running"] - manys[0]["rss_before"], 0) / tasks / 2**20]
    bare_per_loop = [max(bare_rss[0], 0) / tasks / 2**20]
    goals = {
        "concurrency_wall": common.goal_figure(
            GOALS["concurrency_wall"], many_walls, bare_manys, unit=f"s for {tasks} tasks"
        ),
        "concurrency_wall_worker_process": common.goal_figure(
            GOALS["concurrency_wall"],
            process_many,
            process_bare,
            unit=f"s for {tasks} tasks run in a worker process, the fake in its own (loopback)",
        ),
        "memory_mb_per_task": common.goal_figure(
            GOALS["memory_mb_per_task"],
            per_task,
            bare_per_loop,
            unit="MB a task, first round (absolute); reference: a bare loop's peak growth",
            kind="absolute",
        ),
    }
    many = manys[len(manys) // 2]  # the phases of one round (the middle one)
    middle = sorted(range(rounds), key=lambda n: many_walls[n])[rounds // 2]
    figures = {
        "benchmark": NAME,
        "size": size,
        "tasks": tasks,
        "steps": steps,
        "latency_ms": latency_ms,
        "rounds": rounds,
        "load_before": load_before,
        "load_after": common.loadavg(),
        "goals": goals,
        "one_task_wall_s": common.median(one_walls),
        "many_tasks_wall_s": common.median(many_walls),
        "wall_ratio": common.median(wall_ratios),
        "bare_one_wall_s": common.median(bare_ones),
        "bare_many_wall_s": common.median(bare_manys),
        "bare_wall_ratio": common.median(bare_ratios),
        "wall_ratio_of_ratios": common.spread(
            [w / b for w, b in zip(wall_ratios, bare_ratios, strict=True)]
        ),
        "submit_s_total": common.median([b["submit_s"] for b in manys]),
        "submit_ms_per_task": common.median([b["submit_s"] for b in manys]) / tasks * 1000,
        "model_floor_s": steps * latency_ms / 1000,
        "rss_mb_per_task": common.median(per_task),
        "rss_peak_mb_per_task": common.median(
            [max(b["rss_peak"] - b["rss_before"], 0) / tasks / 2**20 for b in manys]
        ),
        "rss_mb_before": many["rss_before"] / 2**20,
        "requests": len(many["requests"]),
        **{
            f"{key}_{stat}": fn(values)
            for key, values in many["phases"].items()
            for stat, fn in (("p50", common.median), ("max", max))
        },
        "one_loop_s": ones[len(ones) // 2]["phases"]["loop_s"][0],
        "journal_appends": len(clock.appends) // rounds,
        "journal_append_ms_p50": common.median(clock.appends) * 1000,
        "journal_append_ms_p99": common.percentile(clock.appends, 99) * 1000,
        "journal_total_s": sum(clock.appends) / rounds,
        "loopback_one_wall_s": loop_one["wall"],
        "loopback_many_wall_s": loop_many["wall"],
        "loopback_wall_ratio": loop_many["wall"] / loop_one["wall"],
        "loopback_loop_s_p50": common.median(loop_many["phases"]["loop_s"]),
        "loopback_bare_one_wall_s": loop_bare_one,
        "loopback_bare_many_wall_s": loop_bare_many,
        "loopback_bare_wall_ratio": loop_bare_many / loop_bare_one,
        "loopback_wall_vs_bare": loop_many["wall"] / loop_bare_many,
        # The CPU of one whole round (the round of the median harness wall; its parts add
        # up, which medians of each part would not), the harness's and the bare loops'.
        "cpu_round": middle + 1,
        "cpu_round_wall_s": many_walls[middle],
        "cpu_round_bare_wall_s": bare_manys[middle],
        **{f"cpu_harness_{key}": value for key, value in accounts[middle].items()},
        **{f"cpu_bare_{key}": value for key, value in bare_accounts[middle].items()},
        "cpu_by_thread_wall_s": threads_batch["wall"],  # that batch's own wall and CPU
        "cpu_by_thread_process_cpu_s": (threads_account.figures or {}).get("cpu_s", 0.0),
        "cpu_by_thread_children_cpu_s": (threads_account.figures or {}).get("children_cpu_s", 0.0),
        "cpu_by_thread": {
            kind: common.round_all(f) for kind, f in (by_thread.figures or {}).items()
        },
        "paced_latency_ms": paced_ms,
        "paced_steps": paced_steps,
        "paced_wall_s": paced["wall"],
        "paced_bare_wall_s": paced_bare,
        "paced_wall_vs_bare": paced["wall"] / paced_bare,
        "paced_submit_s": paced["submit_s"],
        **{
            f"paced_{key}_{stat}": fn(values)
            for key, values in paced["phases"].items()
            for stat, fn in (("p50", common.median), ("max", max))
        },
        "what_if_no_fsync_wall_s": what_if["wall"],
        "what_if_no_fsync_loop_s_p50": common.median(what_if["phases"]["loop_s"]),
    }
    return common.round_all(figures)


if __name__ == "__main__":
    sys.exit(common.main(run))
