"""Kernel responsiveness: a kernel running many tasks still answers at once.

A real kernel (jupyter_client) whose ANTHROPIC_BASE_URL points at a `FakeServer` in this
process (loopback HTTP, a fixed model latency per turn). After `%load_ext
jupyter_delegate`, N round trips of `1+1` execute requests are timed idle; then N tasks
are started with `%delegate ... --new` (one cell each) and the same N round trips are
timed while they run. The tasks are checked to be still running when the timing ends,
so every busy sample really had the engine busy.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

NAME = "kernel_responsiveness"
GOALS = {"p95_ratio": 2.0}
COUNT_RUNNING = (
    "import jupyter_delegate as _jd\n"
    "print(sum(str(_t.state) in ('queued', 'running') for _t in _jd.tasks()))\n"
)


def round_trips(client: Any, count: int, gap_s: float) -> list[float]:
    times = []
    for _ in range(count):
        times.append(common.kernel_round_trip(client))
        time.sleep(gap_s)
    return times


def run(size: str = "full") -> dict[str, Any]:
    from jupyter_delegate.testing import FakeMessagesAPI, FakeServer
    from jupyter_delegate.testing.fake_anthropic import OFFLINE_API_KEY

    common.check_size(size)
    tasks, steps, latency_ms, samples = (2, 30, 20, 10) if size == "tiny" else (16, 100, 100, 100)
    gap_s = 0.01
    with common.git_identity(), common.scratch(NAME) as tmp:
        repo = common.make_repo(tmp / "repo")
        fake = FakeMessagesAPI(common.read_turns(steps), latency_ms=latency_ms)
        with FakeServer(fake) as server:
            env = {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": OFFLINE_API_KEY}
            with common.kernel(env=env, cwd=tmp) as client:
                common.kernel_run(client, "%load_ext jupyter_delegate")
                round_trips(client, 5, gap_s)  # warm-up
                idle = round_trips(client, samples, gap_s)
                started = time.perf_counter()
                for n in range(tasks):
                    common.kernel_run(
                        client,
                        f"%delegate Read the notes {n} --repo {repo} --sandbox none "
                        f"--max-steps {steps + 5} --new",
                    )
                submit_s = time.perf_counter() - started
                while len(fake.requests) < tasks:  # every task is talking to the model
                    time.sleep(0.01)
                busy = round_trips(client, samples, gap_s)
                still_running = int(common.kernel_run(client, COUNT_RUNNING).strip())
                requests_seen = len(fake.requests)
                server.close()  # before the kernel dies mid-request: no reset tracebacks
    if still_running < tasks:
        raise RuntimeError(
            f"only {still_running} of {tasks} tasks were still running when the timing "
            "ended; lengthen the scenario"
        )
    idle_p95 = common.percentile(idle, 95)
    busy_p95 = common.percentile(busy, 95)
    figures = {
        "benchmark": NAME,
        "size": size,
        "tasks": tasks,
        "samples": samples,
        "latency_ms": latency_ms,
        "idle_ms_p50": common.median(idle) * 1000,
        "idle_ms_p95": idle_p95 * 1000,
        "busy_ms_p50": common.median(busy) * 1000,
        "busy_ms_p95": busy_p95 * 1000,
        "busy_ms_max": max(busy) * 1000,
        "p95_ratio": busy_p95 / idle_p95,
        "submit_ms_per_task": submit_s / tasks * 1000,
        "model_requests_during": requests_seen,
        "tasks_running_at_end": still_running,
    }
    return common.round_all(figures)


if __name__ == "__main__":
    sys.exit(common.main(run))
