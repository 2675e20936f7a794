"""Step overhead: what the harness adds to each model turn, beside a bare SDK loop.

A scripted task of N steps (N-1 `read`s of a small file, then `finish`) runs through the
real engine (TaskManager, journal, policy, tools) against the in-process fake with zero
latency. Beside it, a bare loop sends the same requests with the same SDK call
(`client.beta.messages.stream`, same model, system, tools, cache_control, thinking,
effort and compaction options (`common.REQUEST_OPTIONS`) and the same history growth,
tool results copied from the harness's journal) to a fresh fake, and does nothing else:
no journal, no tools, no policy, no events.

Per step we time `AgentLoop.step` (query + act) and, inside it, `Toolbox.call`; the bare
loop's step is one stream plus appending the two messages. Rounds alternate harness and
bare so drift hits both. Figures: median step time of each, their ratio, and the median
added time per step excluding tool execution (harness step - tool - bare step, paired by
step index, so history length is the same on both sides). Each goal (`goals`) is
printed with its bare reference and the ratio, round by round, as min / median / max
over the rounds (`common.goal_figure`). A what-if round with
`os.fsync` and `os.fdatasync` made no-ops shows what the journal's syncs still cost a
step (a step's events are synced by a background thread, so this is their contention
for the CPU; reported apart, never compared with the goal).
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

NAME = "step_overhead"
# Issue 21: ratios against the bare loop of the same run (the model-turn path excludes
# the tool's own execution, which the bare loop does not run), and the added time.
GOALS = {"step_model_turn": 1.10, "step_added_ms": 0.3, "step_whole": 1.15}


class StepClock:
    """Times `AgentLoop.step` and `Toolbox.call` of the engine in this process (wrapped
    for the run, restored after)."""

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.tools: list[float] = []
        self._tool_in_step = 0.0

    def __enter__(self) -> StepClock:
        from jupyter_delegate.engine.loop import AgentLoop
        from jupyter_delegate.engine.tools import Toolbox

        self._step, self._call = AgentLoop.step, Toolbox.call
        clock = self
        original_step, original_call = self._step, self._call

        async def step(loop: Any) -> None:
            clock._tool_in_step = 0.0
            started = time.perf_counter()
            try:
                await original_step(loop)
            finally:
                clock.steps.append(time.perf_counter() - started)
                clock.tools.append(clock._tool_in_step)

        async def call(toolbox: Any, name: str, tool_input: object) -> Any:
            started = time.perf_counter()
            try:
                return await original_call(toolbox, name, tool_input)
            finally:
                clock._tool_in_step += time.perf_counter() - started

        AgentLoop.step = step  # type: ignore[method-assign, assignment]
        Toolbox.call = call  # type: ignore[method-assign, assignment]
        return self

    def __exit__(self, *exc: object) -> None:
        from jupyter_delegate.engine.loop import AgentLoop
        from jupyter_delegate.engine.tools import Toolbox

        AgentLoop.step = self._step  # type: ignore[method-assign]
        Toolbox.call = self._call  # type: ignore[method-assign]


def harness_round(repo: Path, steps: int) -> dict[str, Any]:
    """One scripted task through the engine; its per-step times and what it sent."""
    from jupyter_delegate import Budget, Outcome
    from jupyter_delegate.manager import TaskManager
    from jupyter_delegate.testing import FakeMessagesAPI

    fake = FakeMessagesAPI(common.read_turns(steps))
    manager = TaskManager(client=fake.async_client(), sandbox="none")
    outcome = Outcome("Read the notes.", budget=Budget(max_steps=steps + 5))
    with StepClock() as clock:
        started = time.perf_counter()
        task = manager.submit(outcome, repo=repo)
        state = task.wait(timeout=300)
        wall = time.perf_counter() - started
    if str(state) != "review":
        raise RuntimeError(f"the scripted task ended {state}: {task.error}")
    # The last step raises Finished inside act; its timing is kept too.
    requests = [r.body for r in fake.requests if r.kind != "models"]
    return {"steps": clock.steps, "tools": clock.tools, "requests": requests, "wall": wall}


async def bare_loop(
    requests: list[dict[str, Any]], steps: int, client: AsyncAnthropic | None = None
) -> list[float]:
    """The same SDK calls against a fresh fake (or `client`), with the same history
    growth; the time of each step."""
    from jupyter_delegate.testing import FakeMessagesAPI

    own = client is None
    if client is None:
        client = FakeMessagesAPI(common.read_turns(steps)).async_client()
    first = requests[0]
    messages: list[dict[str, Any]] = [first["messages"][0]]
    # The user turn after step k is the tool results the harness sent in request k+1.
    results = [r["messages"][-1]["content"] for r in requests[1:]]
    times: list[float] = []
    for k in range(steps):
        started = time.perf_counter()
        content = await common.bare_turn(client, first, messages)
        if k < len(results):
            ids = [b["id"] for b in content if b["type"] == "tool_use"]
            blocks = [{**block, "tool_use_id": i} for block, i in zip(results[k], ids, strict=True)]
            messages.append({"role": "user", "content": blocks})
        times.append(time.perf_counter() - started)
    if own:
        await client.close()
    return times


def run(size: str = "full") -> dict[str, Any]:
    common.check_size(size)
    # 15 rounds: at 5, single runs of the same code gave ratios from 1.04 to 1.37
    steps, rounds = (5, 1) if size == "tiny" else (50, 15)
    harness_steps: list[list[float]] = []
    tool_steps: list[list[float]] = []
    bare_steps: list[list[float]] = []
    walls: list[float] = []
    load_before = common.loadavg()
    with common.git_identity(), common.scratch(NAME) as tmp:
        for n in range(rounds + 1):  # round 0 warms imports and caches; not counted
            repo = common.make_repo(tmp / f"repo{n}")
            harness = harness_round(repo, steps)
            bare = asyncio.run(bare_loop(harness["requests"], steps))
            if n == 0 and rounds > 1:
                continue
            harness_steps.append(harness["steps"])
            tool_steps.append(harness["tools"])
            bare_steps.append(bare)
            walls.append(harness["wall"])
        with common.fsync_off():
            what_if = harness_round(common.make_repo(tmp / "what-if"), steps)["steps"]
    all_harness = [t for r in harness_steps for t in r]
    all_tools = [t for r in tool_steps for t in r]
    all_bare = [t for r in bare_steps for t in r]
    added = [
        h - t - b
        for hs, ts, bs in zip(harness_steps, tool_steps, bare_steps, strict=True)
        for h, t, b in zip(hs, ts, bs, strict=False)
    ]
    harness_ms = common.median(all_harness) * 1000
    bare_ms = common.median(all_bare) * 1000
    harness_total = common.median([sum(r) for r in harness_steps])
    bare_total = common.median([sum(r) for r in bare_steps])
    # Per round, in ms a step: the harness's step, without its tool, the bare step, and
    # the median added time (harness - tool - bare, paired by step).
    per_step = [sum(r) / len(r) * 1000 for r in harness_steps]
    per_step_no_tool = [
        (sum(h) - sum(t)) / len(h) * 1000 for h, t in zip(harness_steps, tool_steps, strict=True)
    ]
    bare_per_step = [sum(r) / len(r) * 1000 for r in bare_steps]
    added_per_round = [
        common.median([h - t - b for h, t, b in zip(hs, ts, bs, strict=False)]) * 1000
        for hs, ts, bs in zip(harness_steps, tool_steps, bare_steps, strict=True)
    ]
    goals = {
        "step_model_turn": common.goal_figure(
            GOALS["step_model_turn"], per_step_no_tool, bare_per_step, unit="ms a step"
        ),
        "step_added_ms": common.goal_figure(
            GOALS["step_added_ms"],
            added_per_round,
            bare_per_step,
            unit="ms added a step (absolute, machine-bound); reference: the bare step",
            kind="absolute",
        ),
        "step_whole": common.goal_figure(
            GOALS["step_whole"], per_step, bare_per_step, unit="ms a step"
        ),
    }
    figures = {
        "benchmark": NAME,
        "size": size,
        "steps": steps,
        "rounds": rounds,
        "load_before": load_before,
        "load_after": common.loadavg(),
        "goals": goals,
        "harness_step_ms_p50": harness_ms,
        "bare_step_ms_p50": bare_ms,
        "ratio": harness_ms / bare_ms,
        "ratio_total": harness_total / bare_total,
        "ratio_excl_tools": (harness_total - common.median([sum(r) for r in tool_steps]))
        / bare_total,
        "tool_ms_p50": common.median(all_tools) * 1000,
        "added_ms_p50": common.median(added) * 1000,
        "added_ms_p95": common.percentile(added, 95) * 1000,
        "task_wall_s": common.median(walls),
        "what_if_no_fsync_step_ms_p50": common.median(what_if) * 1000,
    }
    return common.round_all(figures)


if __name__ == "__main__":
    sys.exit(common.main(run))
