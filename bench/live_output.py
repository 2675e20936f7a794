"""A running command's output told live (`OutputTail`, issue 16): what it costs next to
the bare command, and how often it tells, which bounds the views' messages to the front end.

Two commands, each run through `Sandbox.run` (tier "none": the sandbox's own cost is not
the question here) bare, and with the tail fed as the agent loop feeds it (each telling
redacted, as the loop redacts it before the views hear it):
- a flood (`FLOOD_MB` of 100-character lines as fast as the pipe takes them): the wall
  time of both, rounds alternated so a busy machine weighs on both alike;
- a paced command (a line every 20 ms for about 2 s): lines written against tellings.
A telling sets at most one trait of a live view (the `tail` of `live.LiveStatus`), and a
view pushes at most every `FLUSH_S`: the tellings are an upper bound of the kernel's
messages for a command's output.
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

NAME = "live_output"
GOALS: dict[str, float] = {}  # reported: a flood's tail must cost little next to it


def run(size: str = "full") -> dict[str, Any]:
    from jupyter_delegate.engine.output_tail import OutputTail
    from jupyter_delegate.journal import load_detectors, redact, secret_values
    from jupyter_delegate.sandbox import Sandbox

    common.check_size(size)
    rounds, flood_mb, paced_lines = (1, 2, 20) if size == "tiny" else (7, 50, 100)
    flood = f"head -c {flood_mb * 1000 * 1000} /dev/zero | tr '\\0' x | fold -w 99"
    paced = f"for n in $(seq 1 {paced_lines}); do echo line $n; sleep 0.02; done"
    load_detectors()
    secrets = secret_values()
    with common.scratch(NAME) as folder:
        sandbox = Sandbox(folder, tier="none")

        async def bare(command: str) -> tuple[float, int]:
            started = time.perf_counter()
            result = await sandbox.run(command, timeout_s=600)
            assert result.exit_code == 0, result.output[-500:]
            return time.perf_counter() - started, 0

        async def told(command: str) -> tuple[float, int]:
            tellings: list[str] = []
            tail = OutputTail(lambda text: tellings.append(redact(text, secrets)))
            started = time.perf_counter()
            try:
                result = await sandbox.run(command, timeout_s=600, on_output=tail.feed)
            finally:
                tail.close()
            assert result.exit_code == 0, result.output[-500:]
            return time.perf_counter() - started, len(tellings)

        async def measure() -> dict[str, Any]:
            ours, reference, tellings = [], [], []
            for _ in range(rounds):
                reference.append((await bare(flood))[0])
                wall, count = await told(flood)
                ours.append(wall)
                tellings.append(count)
            paced_wall, paced_told = await told(paced)
            return {
                "flood_told_ms_p50": common.median(ours) * 1e3,
                "flood_bare_ms_p50": common.median(reference) * 1e3,
                "flood_ratio": common.median(ours) / common.median(reference),
                "flood_tellings_p50": common.median(tellings),
                "paced_lines": paced_lines,
                "paced_tellings": paced_told,
                "paced_tellings_per_s": paced_told / paced_wall,
            }

        figures = asyncio.run(measure())
    return common.round_all({"benchmark": NAME, "size": size, "flood_mb": flood_mb, **figures})


if __name__ == "__main__":
    sys.exit(common.main(run))
