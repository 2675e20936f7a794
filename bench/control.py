"""Control: a decision's round trip through a task's control inbox while 16 tasks run.

One TaskManager here runs N tasks (the in-process fake, 50 ms per model turn, many `read`
steps, so they stay running). Another process, as the CLI would be, asks for a decision
about each running task in turn (an approve, which the process running the task refuses:
it is not in review) and times the round trip: post to the inbox -> journaled and acted
upon by the running process -> the outcome seen by the poster. The bare reference is the
same decision made in the process that runs the task (no inbox), measured in the same
run. Goal: round-trip p95 <= 1 s.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

NAME = "control"
GOALS = {"round_trip_ms_p95": 1000.0}

POSTER = """
import json, sys, time
from jupyter_delegate.errors import ReviewError
from jupyter_delegate.manager import TaskManager
manager = TaskManager(via="cli")
repo, rounds, ids = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
tasks = [manager.get(task_id, repo) for task_id in ids]
times = []
for n in range(rounds):
    task = tasks[n % len(tasks)]
    started = time.perf_counter()
    try:
        task.approve()
    except ReviewError as exc:
        assert "only a task in review" in str(exc), exc
    times.append(time.perf_counter() - started)
print(json.dumps(times))
"""


def run(size: str = "full") -> dict[str, Any]:
    from jupyter_delegate import Outcome
    from jupyter_delegate.errors import ReviewError
    from jupyter_delegate.manager import TaskManager
    from jupyter_delegate.testing import FakeMessagesAPI

    common.check_size(size)
    tasks, rounds, steps = (4, 8, 200) if size == "tiny" else (16, 100, 2000)
    with common.git_identity(), common.scratch(NAME) as tmp:
        repo = common.make_repo(tmp / "repo")
        fake = FakeMessagesAPI(common.read_turns(steps), latency_ms=50)
        manager = TaskManager(client=fake.async_client(max_retries=0), sandbox="none")
        running = [
            manager.submit(Outcome(f"Read the notes {n}.", checks=("true",)), repo=repo)
            for n in range(tasks)
        ]
        deadline = time.monotonic() + 60
        while any(t.usage.output_tokens == 0 for t in running) and time.monotonic() < deadline:
            time.sleep(0.05)
        local = []
        for n in range(rounds):
            started = time.perf_counter()
            with contextlib.suppress(ReviewError):
                running[n % tasks].approve()
            local.append(time.perf_counter() - started)
        poster = subprocess.run(
            [sys.executable, "-c", POSTER, str(repo), str(rounds), *(t.id for t in running)],
            capture_output=True,
            text=True,
            check=True,
        )
        trips = json.loads(poster.stdout.strip().splitlines()[-1])
        still = sum(t.state == "running" for t in running)
        for task in running:
            task.cancel()
        for task in running:
            task.wait(timeout=60)
    return common.round_all(
        {
            "benchmark": NAME,
            "size": size,
            "tasks": tasks,
            "rounds": rounds,
            "running_at_end": still,
            "round_trip_ms_p50": common.median(trips) * 1000,
            "round_trip_ms_p95": common.percentile(trips, 95) * 1000,
            "local_ms_p50": common.median(local) * 1000,
            "local_ms_p95": common.percentile(local, 95) * 1000,
        }
    )


if __name__ == "__main__":
    sys.exit(common.main(run))
