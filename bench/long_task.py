"""Long task: a 300-step task with ~6 KB tool results, against a model whose window is
100,000 tokens, through the real SDK and the scripted fake (which counts tokens by its
documented rule and refuses a prompt past the window, as the API does).

Three runs of the same task: with the API's compaction (the model has the capability),
with the harness's (the model lacks it: a summarising turn of the same model), and with
compaction off (`compact_at=0`, the reference: where it fails, and at which step). For
each: whether it reached review, the peak request size in tokens (goal: never above the
window), the billed input-token equivalents (cache writes at 1.25, reads at 0.1) and the
dollars, and the cached share of the input (goal >= 80% across compactions).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

NAME = "long_task"
GOALS = {"peak_over_window": 0.0, "cached_share": 0.8}
WINDOW = 100_000
MODEL = "claude-sonnet-4-6"


def turns(steps: int) -> list[dict[str, Any]]:
    read = {"bash": {"command": f"head -c 6000 {common.SMALL_FILE}.big"}}
    return [{"tools": [read]} for _ in range(steps - 1)] + [
        {"tools": [{"finish": {"summary": "Read everything; nothing to change."}}]}
    ]


def one_run(repo: Path, steps: int, compaction: bool, off: bool) -> dict[str, Any]:
    from jupyter_delegate import Outcome
    from jupyter_delegate.journal import Journal
    from jupyter_delegate.manager import TaskManager
    from jupyter_delegate.outcome import Budget
    from jupyter_delegate.testing import FakeMessagesAPI, load_scenario
    from jupyter_delegate.testing.caching import count_tokens

    spec = {
        "name": "long",
        "models": [{"id": MODEL, "max_input_tokens": WINDOW, "compaction": compaction}],
        "turns": turns(steps),
    }
    fake = FakeMessagesAPI(load_scenario(spec))
    manager = TaskManager(client=fake.async_client(max_retries=0), sandbox="none")
    started = time.perf_counter()
    budget = Budget(max_steps=steps + 20, max_usd=1000, max_minutes=60)
    task = manager.submit(
        Outcome("Read the notes.", checks=("true",), budget=budget),
        repo=repo,
        model=MODEL,
        compact_at="off" if off else None,
    )
    task.wait(timeout=1800)
    wall = time.perf_counter() - started
    served = [r for r in fake.requests if r.kind in ("turn", "summary") and r.status == 200]
    peak = max((count_tokens(r.body) for r in served), default=0)
    usage = task.usage
    fresh, written, read = usage.input_tokens, usage.cache_write_tokens, usage.cache_read_tokens
    total = fresh + written + read
    steps_done = sum(1 for e in Journal(task.journal_path).events() if e.type == "assistant")
    return {
        "state": str(task.state),
        "steps": steps_done,
        "compactions": task.compactions,
        "peak_request_tokens": peak,
        "billed_input_equivalents": round(fresh + 1.25 * written + 0.1 * read),
        "usd": round(usage.cost_usd, 4),
        "cached_share": round(read / total, 3) if total else 0.0,
        "wall_s": round(wall, 1),
        "error": task.error[:160],
    }


def run(size: str = "full") -> dict[str, Any]:
    common.check_size(size)
    steps = 40 if size == "tiny" else 300
    with common.git_identity(), common.scratch(NAME) as tmp:
        repo = common.make_repo(tmp / "repo")
        (repo / f"{common.SMALL_FILE}.big").write_text(("notes " * 2000)[:12000])
        subprocess.run(["git", "add", "-A"], cwd=repo, check=True)
        subprocess.run(["git", "commit", "-q", "-m", "big notes"], cwd=repo, check=True)
        server = one_run(repo, steps, compaction=True, off=False)
        harness = one_run(repo, steps, compaction=False, off=False)
        off = one_run(repo, steps, compaction=False, off=True)
    return {
        "benchmark": NAME,
        "size": size,
        "window": WINDOW,
        "server": server,
        "harness": harness,
        "off": off,
        "peak_over_window": max(
            0, max(server["peak_request_tokens"], harness["peak_request_tokens"]) - WINDOW
        ),
        "cached_share": min(server["cached_share"], harness["cached_share"]),
        "reached_review": int(server["state"] == "review") + int(harness["state"] == "review"),
    }


if __name__ == "__main__":
    sys.exit(common.main(run))
