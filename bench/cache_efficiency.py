"""Cache efficiency: how much of each request the prompt cache serves.

A scripted task of N steps (reads, then `finish`) through the real engine against the
in-process fake, whose simulated prompt cache (`jupyter_delegate.testing.caching`)
reports `usage` as the API does. The cached share is cache-read input tokens over all
input tokens (uncached + cache writes + cache reads), summed over the task's requests
(from the journal's `assistant` events, which keep each turn's usage).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

NAME = "cache_efficiency"
GOALS = {"cached_share": 0.90}


def run(size: str = "full") -> dict[str, Any]:
    from jupyter_delegate import Budget, Outcome
    from jupyter_delegate.manager import TaskManager
    from jupyter_delegate.testing import FakeMessagesAPI

    common.check_size(size)
    steps = 5 if size == "tiny" else 30
    with common.git_identity(), common.scratch(NAME) as tmp:
        repo = common.make_repo(tmp / "repo")
        fake = FakeMessagesAPI(common.read_turns(steps, text="Reading the notes again."))
        manager = TaskManager(client=fake.async_client(), sandbox="none")
        task = manager.submit(
            Outcome("Read the notes.", budget=Budget(max_steps=steps + 5)), repo=repo
        )
        state = task.wait(timeout=300)
        if str(state) != "review":
            raise RuntimeError(f"the scripted task ended {state}: {task.error}")
        events = list(manager._context(task).journal.events())
    usages = [e.data["usage"] for e in events if e.type == "assistant"]
    uncached = sum(u["input_tokens"] for u in usages)
    written = sum(u["cache_write_tokens"] for u in usages)
    read = sum(u["cache_read_tokens"] for u in usages)
    total = uncached + written + read
    later = usages[1:]  # the first request can only write the cache
    later_total = sum(
        u["input_tokens"] + u["cache_write_tokens"] + u["cache_read_tokens"] for u in later
    )
    figures = {
        "benchmark": NAME,
        "size": size,
        "steps": len(usages),
        "input_tokens_total": total,
        "uncached_tokens": uncached,
        "cache_write_tokens": written,
        "cache_read_tokens": read,
        "cached_share": read / total if total else 0.0,
        "cached_share_after_first": (sum(u["cache_read_tokens"] for u in later) / later_total)
        if later_total
        else 0.0,
        "cost_usd": task.usage.cost_usd,
    }
    return common.round_all(figures, 4)


if __name__ == "__main__":
    sys.exit(common.main(run))
