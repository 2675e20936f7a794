"""Tasks on a Dask cluster (cluster.py) against the same tasks in this process, measured
in one run on a LocalCluster of real worker processes.

N tasks of S steps each (`read` turns, then `finish`) against the fake model served from
its own process over loopback with a latency of L seconds a turn, each with one check
that takes C seconds (`sleep C`). Two ways, on the same repository:

- local: one TaskManager here (the default runner); all N at once on its engine.
- dask: the same manager with `DaskRunner` on a LocalCluster of W worker processes of T
  threads each: a round per thread at once, the rest wait in Dask's queue.

Each beside its bare reference measured in the same run: the same waits (S x L + C a
task) with no harness, at the same concurrency (N threads here; N `client.submit`s of a
sleep to the same cluster). Reported: wall, throughput (tasks a minute), the ratio to the
bare reference; and the latency a journal event adds on its way home to the mirror: from
its `ts` (stamped on the worker as it is journaled) to its arrival at the client
(`DaskRunner.received`), p50 and p95. The worker streams once every `cluster.POLL_S`.

    python bench/cluster.py [--quick] [--tasks N] [--steps S] [--latency L] [--check C]
                            [--workers W] [--threads T]

Defaults: 64 x 20, L 1 s, C 2 s, 2 workers of 1 thread. `--quick` (a 2-core machine):
8 tasks x 5 steps, L 0.5 s, C 1 s. What 1,000 tasks on 50 workers would do is modelled,
not measured: bench/cluster_sim.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common
from bench.concurrency import fake_process


def submit_all(manager: Any, repo: Path, args: argparse.Namespace, runner: Any) -> float:
    from jupyter_delegate import Budget, Outcome

    started = time.perf_counter()
    tasks = [
        manager.submit(
            Outcome(
                f"Read the notes ({n}).",
                checks=(f"sleep {args.check}",),
                budget=Budget(max_steps=args.steps + 5),
            ),
            repo=repo,
            runner=runner,
            use_suggested_checks=False,
        )
        for n in range(args.tasks)
    ]
    states = [str(t.wait(timeout=3600)) for t in tasks]
    wall = time.perf_counter() - started
    if any(s != "review" for s in states):
        errors = {t.error for t in tasks if t.error}
        raise RuntimeError(f"tasks ended in {sorted(set(states))}: {errors}")
    return wall


def bare_threads(n: int, seconds: float) -> float:
    started = time.perf_counter()
    threads = [threading.Thread(target=time.sleep, args=(seconds,)) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> dict[str, Any]:
    import distributed

    from jupyter_delegate.cluster import DaskRunner
    from jupyter_delegate.manager import TaskManager
    from jupyter_delegate.testing.fake_anthropic import OFFLINE_API_KEY

    per_task = args.steps * args.latency + args.check
    lines: list[float] = []

    class Timed(DaskRunner):
        def received(self, line: str) -> str:
            lines.append(time.time() - float(json.loads(line)["ts"]))
            return line

    with common.scratch("bench-cluster-") as folder, common.git_identity():
        repo = common.make_repo(folder / "repo")
        os.environ["JUPYTER_DELEGATE_WORKER_DIR"] = str(folder / "workers")
        with fake_process(folder, args.steps, int(args.latency * 1000)) as url:
            os.environ["ANTHROPIC_BASE_URL"] = url
            os.environ["ANTHROPIC_API_KEY"] = OFFLINE_API_KEY
            manager = TaskManager(sandbox="none")
            local_wall = submit_all(manager, repo, args, None)
            local_bare = bare_threads(args.tasks, per_task)
            cluster = distributed.LocalCluster(
                n_workers=args.workers,
                threads_per_worker=args.threads,
                processes=True,
                dashboard_address=None,
            )
            with cluster, distributed.Client(cluster) as client:
                runner = Timed(client)
                dask_wall = submit_all(manager, repo, args, runner)
                started = time.perf_counter()
                futures = [
                    client.submit(time.sleep, per_task, pure=False) for _ in range(args.tasks)
                ]
                distributed.wait(futures)
                dask_bare = time.perf_counter() - started
                workers = sorted(
                    {w for rs in runner.results.values() for r in rs if r for w in [r.worker]}
                )
    slots = args.workers * args.threads
    return common.round_all(
        {
            "tasks": args.tasks,
            "steps": args.steps,
            "latency_s": args.latency,
            "check_s": args.check,
            "workers": args.workers,
            "threads_per_worker": args.threads,
            "workers_used": len(workers),
            "local_wall_s": local_wall,
            "local_bare_s": local_bare,
            "local_ratio": local_wall / local_bare,
            "local_tasks_per_min": args.tasks / local_wall * 60,
            "dask_wall_s": dask_wall,
            "dask_bare_s": dask_bare,
            "dask_ratio": dask_wall / dask_bare,
            "dask_tasks_per_min": args.tasks / dask_wall * 60,
            "dask_slots": slots,
            "event_lines": len(lines),
            "event_latency_p50_ms": common.percentile(lines, 50) * 1e3,
            "event_latency_p95_ms": common.percentile(lines, 95) * 1e3,
        }
    )


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/cluster.py")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--tasks", type=int)
    parser.add_argument("--steps", type=int)
    parser.add_argument("--latency", type=float)
    parser.add_argument("--check", type=float)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    quick = {"tasks": 8, "steps": 5, "latency": 0.5, "check": 1.0}
    full = {"tasks": 64, "steps": 20, "latency": 1.0, "check": 2.0}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


if __name__ == "__main__":
    common.report(run(parse(sys.argv[1:])))
