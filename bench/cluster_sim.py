"""A discrete-event model of many tasks on a Dask cluster (cluster.py): 1,000 tasks on 50
workers by default. It is a model, not a measurement: every number it rests on is a
parameter below (`Params`), and `python bench/cluster_sim.py` prints them with the
results. bench/cluster.py measures the parts it can on this machine (a LocalCluster of
2 workers); its per-event mirror figure is what `mirror_line_s` defaults to here.

What a task does, as cluster.py does it (times in seconds):

1. At the client, the round's payload is made: a git bundle of the repository
   (`bundle_create_s`), one at a time on the client's git (`client git`, a FIFO server:
   the mirrors' threads share the client's CPU and disk).
2. It waits for a free worker slot (Dask's queue; `workers` x `slots_per_worker`, FIFO).
3. The bundle travels to the worker over the client's uplink (`bundle_mb` /
   `uplink_mb_s`, FIFO: one link), and the worker clones it (`clone_s`).
4. `steps` model turns. Each asks the model through the organisation's rate limit (a
   token bucket smoothed to spacing: a request may start `60/rpm` after the one before,
   and `60*output_tokens/otpm`), then waits the model's latency (lognormal, median
   `latency_s`, sigma `latency_sigma`) and runs its tools (`tool_s`). Each step appends
   `lines_per_step` journal lines, streamed home (`queue_s` transport) and checked and
   written by the client's mirror (`mirror_line_s` each, one FIFO server for all tasks:
   the mirrors' threads share one interpreter).
5. Its checks run on the worker (`check_s`), then the worker bundles the branch
   (`result_bundle_s`) and is free.
6. At home the result bundle travels back (`result_mb` over the uplink), is verified and
   fetched (`verify_s`, on the client's git, which holds the workspace lock).

Cost: the model (`input_tokens` a step, `cached_share` of them cache reads, and
`output_tokens`, at `price_*` per million tokens) plus the workers' time
(`worker_usd_hour` per slot for the whole wall).

Not modelled: failures and retries, the scheduler's own overhead (about a millisecond a
task), checks contending for a worker's CPUs, models slowing under load.

    python bench/cluster_sim.py            # the scenarios, as a table and a JSON line
"""

from __future__ import annotations

import heapq
import json
import math
import random
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import Any


@dataclass(frozen=True)
class Params:
    tasks: int = 1000
    workers: int = 50
    slots_per_worker: int = 1
    steps: int = 20
    latency_s: float = 1.0  # the model's median time per turn
    latency_sigma: float = 0.5  # lognormal spread of it
    tool_s: float = 0.05
    check_s: float = 2.0
    # Assumed limits (an organisation's tier; check yours): requests and output tokens a
    # minute. Input tokens read from the cache do not count against Anthropic's input limit.
    rpm: float = 4000
    otpm: float = 400_000
    input_tokens: int = 20_000
    cached_share: float = 0.95
    output_tokens: int = 300
    price_input: float = 3.0  # $ per million tokens (Sonnet-class list prices)
    price_cached: float = 0.30
    price_output: float = 15.0
    worker_usd_hour: float = 0.10  # a slot of a cloud worker
    bundle_mb: float = 20.0  # the repository as a bundle
    uplink_mb_s: float = 100.0  # the client's link (about 1 Gb/s)
    bundle_create_s: float = 0.3  # git bundle create at the client
    clone_s: float = 0.5
    result_mb: float = 0.1
    result_bundle_s: float = 0.1
    verify_s: float = 0.3  # verify + fetch + worktree at home
    lines_per_step: int = 3
    queue_s: float = 0.001  # a journal line's transport (bench/cluster_stream.py)
    mirror_line_s: float = 0.0005  # check + write + fsync of a line at home
    seed: int = 1


class Server:
    """A FIFO single server whose arrivals come in time order."""

    def __init__(self) -> None:
        self.free_at = 0.0
        self.busy = 0.0

    def serve(self, now: float, service: float) -> float:
        start = max(now, self.free_at)
        self.free_at = start + service
        self.busy += service
        return self.free_at


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(p / 100 * len(ordered)) - 1)]


def simulate(p: Params) -> dict[str, Any]:
    rng = random.Random(p.seed)
    git, uplink, mirror, limiter = Server(), Server(), Server(), Server()
    spacing = max(60 / p.rpm, 60 * p.output_tokens / p.otpm)
    slots = p.workers * p.slots_per_worker
    free = slots
    waiting: list[int] = []  # tasks queued for a slot, FIFO
    events: list[tuple[float, int, int, Iterator[tuple[str, float]]]] = []
    counter = 0
    ready_at: dict[int, float] = {}
    waits: list[float] = []
    line_latency: list[float] = []
    model_wait: list[float] = []
    ended: list[float] = []
    busy_slots = 0.0

    def task(i: int) -> Iterator[tuple[str, float]]:
        nonlocal free, busy_slots
        now = yield ("at", 0.0)
        now = yield ("at", git.serve(now, p.bundle_create_s))
        ready_at[i] = now
        now = yield ("slot", 0.0)
        waits.append(now - ready_at[i])
        started = now
        now = yield ("at", uplink.serve(now, p.bundle_mb / p.uplink_mb_s) + p.clone_s)
        for _ in range(p.steps):
            begin = limiter.serve(now, spacing) - spacing  # when the limit lets it go
            model_wait.append(begin - now)
            turn = p.latency_s * math.exp(rng.gauss(0, p.latency_sigma))
            now = yield ("at", begin + turn + p.tool_s)
            for _ in range(p.lines_per_step):
                arrive = now + p.queue_s
                line_latency.append(mirror.serve(arrive, p.mirror_line_s) - now)
        now = yield ("at", now + p.check_s + p.result_bundle_s)
        busy_slots += now - started
        now = yield ("release", 0.0)
        home = max(now, mirror.free_at)  # the held lines wait for the mirror to drain
        home = uplink.serve(home, p.result_mb / p.uplink_mb_s)
        now = yield ("at", git.serve(home, p.verify_s))
        ended.append(now)

    def push(at: float, i: int, gen: Iterator[tuple[str, float]]) -> None:
        nonlocal counter
        counter += 1
        heapq.heappush(events, (at, counter, i, gen))

    gens: dict[int, Any] = {}
    for i in range(p.tasks):
        gen = task(i)
        next(gen)
        gens[i] = gen
        push(0.0, i, gen)
    while events:
        now, _, i, gen = heapq.heappop(events)
        try:
            kind, at = gen.send(now)
        except StopIteration:
            continue
        while True:
            if kind == "at":
                push(at, i, gen)
                break
            if kind == "slot":
                if free > 0:
                    free -= 1
                    kind, at = gen.send(now)
                    continue
                waiting.append(i)
                break
            if kind == "release":
                if waiting:
                    j = waiting.pop(0)
                    push(now, j, gens[j])  # it takes the slot at once
                else:
                    free += 1
                kind, at = gen.send(now)
                continue
    wall = max(ended)
    requests = p.tasks * p.steps
    per_step = (
        p.input_tokens * (1 - p.cached_share) * p.price_input
        + p.input_tokens * p.cached_share * p.price_cached
        + p.output_tokens * p.price_output
    ) / 1e6
    model_usd = requests * per_step
    workers_usd = slots * p.worker_usd_hour * wall / 3600
    use = {
        "worker slots": busy_slots / (slots * wall),
        "model rate limit": limiter.busy / wall,
        "client mirror": mirror.busy / wall,
        "client git": git.busy / wall,
        "client uplink": uplink.busy / wall,
    }
    return {
        "wall_s": round(wall, 1),
        "tasks_per_min": round(p.tasks / wall * 60, 1),
        "queue_wait_p50_s": round(percentile(waits, 50), 1),
        "queue_wait_p95_s": round(percentile(waits, 95), 1),
        "model_wait_p50_s": round(percentile(model_wait, 50), 3),
        "model_wait_p95_s": round(percentile(model_wait, 95), 3),
        "event_latency_p50_ms": round(percentile(line_latency, 50) * 1e3, 2),
        "event_latency_p95_ms": round(percentile(line_latency, 95) * 1e3, 2),
        "model_usd": round(model_usd, 2),
        "workers_usd": round(workers_usd, 2),
        "utilisation": {k: round(v, 3) for k, v in use.items()},
        "bottleneck": max(use, key=lambda k: use[k]),
    }


SCENARIOS: dict[str, dict[str, Any]] = {
    "1,000 tasks on 50 workers (assumed tier limits)": {},
    "limits 10x (rpm 40,000, otpm 4M)": {"rpm": 40_000, "otpm": 4_000_000},
    "limits 10x, 500 workers": {"rpm": 40_000, "otpm": 4_000_000, "workers": 500},
    "limits 10x, 500 workers, 500 MB repo": {
        "rpm": 40_000,
        "otpm": 4_000_000,
        "workers": 500,
        "bundle_mb": 500.0,
        "bundle_create_s": 3.0,
    },
    "limits 100x, 2,000 workers, 10x journal lines": {
        "rpm": 400_000,
        "otpm": 40_000_000,
        "workers": 2000,
        "lines_per_step": 30,
    },
}


def run(size: str = "full", **overrides: Any) -> dict[str, Any]:
    base = replace(Params(), **overrides)
    if size == "tiny":
        base = replace(base, tasks=50, workers=5)
    out: dict[str, Any] = {"params": asdict(base), "scenarios": {}}
    for name, change in SCENARIOS.items():
        changed = dict(change)
        if size == "tiny" and "workers" in changed:
            changed["workers"] = max(1, changed["workers"] // 10)
        out["scenarios"][name] = {"changed": change, **simulate(replace(base, **changed))}
    return out


def main() -> None:
    size = sys.argv[1] if len(sys.argv) > 1 else "full"
    figures = run(size)
    print("parameters:", json.dumps(figures["params"]))
    for name, r in figures["scenarios"].items():
        print(
            f"{name}: wall {r['wall_s']:.0f} s, {r['tasks_per_min']} tasks/min, queue wait "
            f"p50/p95 {r['queue_wait_p50_s']}/{r['queue_wait_p95_s']} s, rate-limit wait p95 "
            f"{r['model_wait_p95_s']} s, event latency p50/p95 {r['event_latency_p50_ms']}/"
            f"{r['event_latency_p95_ms']} ms, ${r['model_usd']} model + ${r['workers_usd']} "
            f"workers; bottleneck: {r['bottleneck']} {r['utilisation']}"
        )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
