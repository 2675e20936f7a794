"""Kernel responsiveness: a kernel running many tasks still answers at once.

A real kernel (jupyter_client) whose ANTHROPIC_BASE_URL points at a `FakeServer` in this
process (loopback HTTP, a fixed model latency per turn). After `%load_ext
jupyter_delegate`, N round trips of `1+1` execute requests are timed idle; then N tasks
are started with `%delegate ... --new` (one cell each) and the same N round trips are
timed while they run. Then, for `window_s` more seconds and no round trips, what the busy
kernel does per model request is measured: its CPU time (from /proc) and what it
publishes on IOPub (messages, widget comm opens, bytes of content), which is mostly the
live task views. The tasks are checked to be still running when the timing ends, so every
busy sample really had the engine busy.

The reference (`bare_*` figures): a fresh kernel, the same idle round trips, then N bare
SDK loops on one asyncio loop in a thread of that kernel, as the engine runs its tasks,
sending what the tasks sent (same first message, system, tools and model, a tool result
of the same size after each turn) to the same fake, and doing nothing else. Its p95 ratio
is what the kernel would see from the model traffic alone, with no harness.

The p95 of 100 samples is the 5th-slowest round trip: on a shared host one stall moves
it, so compare several runs (bench/RESULTS.md). More samples would not only steady it:
the busy samples would come later in the tasks, whose requests cost the SDK more as their
histories grow, so the figure would measure something else than the earlier runs did.
"""

from __future__ import annotations

import json
import os
import queue
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


def cpu_s(pid: int) -> float:
    """User plus system CPU seconds of process `pid` so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def iopub_window(client: Any, seconds: float) -> dict[str, int]:
    """What the kernel publishes on IOPub in the next `seconds` (what was queued before
    is dropped first): messages, widget comm opens, and bytes of their content as JSON."""
    try:
        while True:
            client.get_iopub_msg(timeout=0)
    except queue.Empty:
        pass
    seen = {"messages": 0, "comm_opens": 0, "bytes": 0}
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = client.get_iopub_msg(timeout=left)
        except queue.Empty:
            break
        seen["messages"] += 1
        seen["comm_opens"] += msg["msg_type"] == "comm_open"
        seen["bytes"] += len(json.dumps(msg["content"], default=str))
    return seen


def measure_busy(
    client: Any, fake: Any, start: list[str], tasks: int, samples: int, window_s: float
) -> dict[str, Any]:
    """Idle round trips, then run the cells of `start` and, once every one of `tasks`
    loops has sent its first request, the busy round trips; then the kernel's CPU time
    per model request over `window_s` more seconds, and what it published on IOPub."""
    gap_s = 0.01
    pid = int(common.kernel_run(client, "import os; print(os.getpid())"))
    round_trips(client, 5, gap_s)  # warm-up
    idle = round_trips(client, samples, gap_s)
    requests_before = len(messages_sent(fake))
    started = time.perf_counter()
    for cell in start:
        common.kernel_run(client, cell)
    start_s = time.perf_counter() - started
    while len(messages_sent(fake)) < requests_before + tasks:  # every loop talks to the model
        time.sleep(0.01)
    busy = round_trips(client, samples, gap_s)
    requests_seen, cpu_before = len(messages_sent(fake)), cpu_s(pid)
    published = iopub_window(client, window_s)
    cpu_window = cpu_s(pid) - cpu_before
    return {
        "idle": idle,
        "busy": busy,
        "start_s": start_s,
        "requests_seen": requests_seen - requests_before,
        "requests_window": max(1, len(messages_sent(fake)) - requests_seen),
        "cpu_window": cpu_window,
        "window_s": window_s,
        "published": published,
    }


def start_bare_loops(shape_json: str, loops: int, steps: int) -> None:
    """Run in the reference kernel: `loops` bare SDK loops on one asyncio loop in a
    daemon thread, as the engine runs its tasks. Each sends what a task sends (the same
    first message, system, tools and model, a tool result of the same size after each
    turn) with `client.beta.messages.stream`, and does nothing else."""
    import asyncio
    import threading

    shape = json.loads(shape_json)

    async def one(client: Any) -> None:
        messages: list[dict[str, Any]] = [shape["first"]]
        for _ in range(steps):
            content = await common.bare_turn(client, shape, messages)
            ids = [b["id"] for b in content if b["type"] == "tool_use"]
            if not ids:
                break
            results = [{**shape["result"], "tool_use_id": i} for i in ids]
            messages.append({"role": "user", "content": results})
        RUNNING[0] -= 1

    async def all_loops() -> None:
        from anthropic import AsyncAnthropic

        client = AsyncAnthropic()
        await asyncio.gather(*(one(client) for _ in range(loops)))

    RUNNING[0] = loops
    threading.Thread(target=asyncio.run, args=(all_loops(),), daemon=True).start()


RUNNING = [0]  # bare loops still running in this (the reference) kernel


def run(size: str = "full") -> dict[str, Any]:
    from jupyter_delegate.testing import FakeMessagesAPI, FakeServer
    from jupyter_delegate.testing.fake_anthropic import OFFLINE_API_KEY

    common.check_size(size)
    tiny = size == "tiny"
    tasks, steps, latency_ms, samples = (2, 30, 20, 10) if tiny else (16, 100, 100, 100)
    window_s = 0.3 if tiny else 2.0
    root = Path(__file__).resolve().parent.parent
    with common.git_identity(), common.scratch(NAME) as tmp:
        repo = common.make_repo(tmp / "repo")
        fake = FakeMessagesAPI(common.read_turns(steps), latency_ms=latency_ms)
        with FakeServer(fake) as server:
            env = {"ANTHROPIC_BASE_URL": server.url, "ANTHROPIC_API_KEY": OFFLINE_API_KEY}
            with common.kernel(env=env, cwd=tmp) as client:
                common.kernel_run(client, "%load_ext jupyter_delegate")
                cells = [
                    f"%delegate Read the notes {n} --repo {repo} --sandbox none "
                    f"--max-steps {steps + 5} --new"
                    for n in range(tasks)
                ]
                ours = measure_busy(client, fake, cells, tasks, samples, window_s)
                still_running = int(common.kernel_run(client, COUNT_RUNNING).strip())
            # The reference: the same requests from bare SDK loops in a fresh kernel.
            first, second = (r.body for r in messages_sent(fake)[:2])
            shape = {
                "first": first["messages"][0],
                "model": first["model"],
                "max_tokens": first["max_tokens"],
                "system": first["system"],
                "tools": first["tools"],
                "result": second["messages"][-1]["content"][0],
            }
            with common.kernel(env=env, cwd=tmp) as client:
                common.kernel_run(client, f"import sys; sys.path.insert(0, {str(root)!r})")
                cell = (
                    "from bench import kernel_responsiveness as _kr\n"
                    f"_kr.start_bare_loops({json.dumps(shape)!r}, {tasks}, {steps})"
                )
                bare = measure_busy(client, fake, [cell], tasks, samples, window_s)
                bare_running = int(common.kernel_run(client, "print(_kr.RUNNING[0])").strip())
            server.close()  # before the kernels die mid-request: no reset tracebacks
    if still_running < tasks or bare_running < tasks:
        raise RuntimeError(
            f"only {still_running} tasks and {bare_running} bare loops of {tasks} were still "
            "running when the timing ended; lengthen the scenario"
        )
    figures = {
        "benchmark": NAME,
        "size": size,
        "tasks": tasks,
        "samples": samples,
        "latency_ms": latency_ms,
        "submit_ms_per_task": ours["start_s"] / tasks * 1000,
        "model_requests_during": ours["requests_seen"],
        "tasks_running_at_end": still_running,
        "window_s": window_s,
        **figures_of(ours),
        **{f"bare_{key}": value for key, value in figures_of(bare).items()},
    }
    return common.round_all(figures)


def figures_of(measured: dict[str, Any]) -> dict[str, float]:
    idle, busy, published = measured["idle"], measured["busy"], measured["published"]
    requests = measured["requests_window"]
    return {
        "idle_ms_p50": common.median(idle) * 1000,
        "idle_ms_p95": common.percentile(idle, 95) * 1000,
        "busy_ms_p50": common.median(busy) * 1000,
        "busy_ms_p95": common.percentile(busy, 95) * 1000,
        "busy_ms_max": max(busy) * 1000,
        "p95_ratio": common.percentile(busy, 95) / common.percentile(idle, 95),
        "window_requests": requests,
        "kernel_cpu_share": measured["cpu_window"] / measured["window_s"],
        "kernel_cpu_ms_per_request": measured["cpu_window"] / requests * 1000,
        "iopub_msgs_per_request": published["messages"] / requests,
        "iopub_kb_per_request": published["bytes"] / requests / 1000,
        "comm_opens_per_request": published["comm_opens"] / requests,
    }


if __name__ == "__main__":
    sys.exit(common.main(run))


def messages_sent(fake: Any) -> list[Any]:
    """The Messages API requests the fake received (not the Models API's, asked at submit)."""
    return [r for r in fake.requests if r.kind != "models"]
