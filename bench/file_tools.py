"""File tools off the engine's loop: what a `read` of a small file costs through
`Toolbox.call`, which runs the SDK's tool on the task's worker thread (its own asyncio
loop, awaited with a timeout), against the bare reference measured in the same run: the
same SDK tool awaited directly on the calling loop, as the toolbox did before.

Rounds alternate the two, so a busy machine weighs on both alike. The difference is the
thread hop (`run_coroutine_threadsafe`, `wrap_future`, `wait_for`) plus the toolbox's own
dispatch and path rewriting.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

NAME = "file_tools"
GOALS: dict[str, float] = {}  # reported, no goal: a model turn takes seconds


async def per_call(call: Any, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - started) / calls


def run(size: str = "full") -> dict[str, Any]:
    from anthropic.lib.tools.agent_toolset import AgentToolContext, beta_read_tool

    from jupyter_delegate.engine.tools import Toolbox

    common.check_size(size)
    rounds, calls = (3, 50) if size == "tiny" else (15, 2000)
    with common.scratch(NAME) as folder:
        (folder / common.SMALL_FILE).write_text(common.SMALL_TEXT)
        tool_input = {"file_path": common.SMALL_FILE}
        box = Toolbox(folder, None, command_timeout_s=120)  # type: ignore[arg-type]
        tool = beta_read_tool(AgentToolContext(workdir=str(folder.resolve())))

        async def ours() -> None:
            output = await box.call("read", tool_input)
            assert not output.is_error, output.content

        async def bare() -> None:
            await tool.call(tool_input)

        async def measure() -> tuple[list[float], list[float]]:
            await per_call(ours, 10)  # the worker made, the caches warm
            await per_call(bare, 10)
            worker, reference = [], []
            for _ in range(rounds):
                reference.append(await per_call(bare, calls))
                worker.append(await per_call(ours, calls))
            return worker, reference

        try:
            worker, reference = asyncio.run(measure())
        finally:
            box.close()
    ours_s, bare_s = common.median(worker), common.median(reference)
    return common.round_all(
        {
            "benchmark": NAME,
            "size": size,
            "calls": rounds * calls,
            "worker_read_us_p50": ours_s * 1e6,
            "bare_read_us_p50": bare_s * 1e6,
            "added_us_p50": (ours_s - bare_s) * 1e6,
            "ratio": ours_s / bare_s,
        }
    )


if __name__ == "__main__":
    sys.exit(common.main(run))
