"""`jupyter delegate demo`: the whole product offline, in under a minute.

Creates a small shop repository with a real bug and a failing test, starts the scripted
fake Messages API on loopback, and runs the bundled `demo` scenario through the real
`anthropic` SDK and the real engine: the agent runs the test, reads, edits, runs it
again, finishes; the harness proves the check, the demo approves, and the journal is
verified. The model is scripted; the rest is what a real run does.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import TextIO

DEMO_CHECK = "python3 -m unittest discover -s tests -q"
APT_LINE = "sudo apt-get install -y bubblewrap"


def run_demo(directory: Path | None, out: TextIO) -> int:
    from anthropic import AsyncAnthropic

    from .cli import EXIT_FAILED, EXIT_OK, follow, print_review
    from .journal import Journal
    from .manager import TaskManager
    from .outcome import Budget, Outcome
    from .sandbox import probe
    from .testing import FakeMessagesAPI, FakeServer, load_scenario
    from .testing.demo_repo import make_demo_repo

    root = directory or Path(tempfile.mkdtemp(prefix="delegate-demo-"))
    repo = make_demo_repo(root / "shop")
    out.write(
        "jupyter-delegate demo: the model is SCRIPTED (a fake Messages API on loopback, "
        "reached through the real anthropic SDK).\nFor a real run: export "
        "ANTHROPIC_API_KEY=sk-ant-... and `jupyter delegate run GOAL --repo PATH --check CMD`."
        f"\n\nSample repository: {repo}\n"
    )
    before = subprocess.run(DEMO_CHECK.split(), cwd=repo, capture_output=True, text=True)
    verdict = "passes" if before.returncode == 0 else "FAILS"
    out.write(f"Before: `{DEMO_CHECK}` {verdict} (exit {before.returncode}).\n\n")

    sandbox = "auto"
    found = probe()
    if not found.available:
        sandbox = "none"
        out.write(
            f"bubblewrap cannot run here ({found.reason}). Fix: {found.fix or APT_LINE}\n"
            "The demo's scripted commands run unconfined; real tasks refuse to until "
            "bubblewrap works or you pass --sandbox none.\n\n"
        )
    with FakeServer(FakeMessagesAPI(load_scenario("demo"))) as server:
        manager = TaskManager(
            client=AsyncAnthropic(api_key="demo-offline", base_url=server.url),
            sandbox=sandbox,
        )
        outcome = Outcome(
            "Fix the discount calculation in shop/cart.py so the cart tests pass.",
            checks=(DEMO_CHECK,),
            scope=("shop/",),
            budget=Budget(max_steps=20, max_usd=1.0),
        )
        task = manager.submit(outcome, repo=repo)
        out.write(f"Task {task.id} on branch {task.branch}\n")
        follow(task, out)
        if task.state != "review":
            out.write(f"The demo task ended {task.state}: {task.error}\n")
            return EXIT_FAILED
        print_review(task, out)
        commit = task.approve()
        out.write(f"\nApproved: {task.base_branch} of {repo} is now at {commit[:10]}.\n")
    after = subprocess.run(DEMO_CHECK.split(), cwd=repo, capture_output=True, text=True)
    verdict = "passes" if after.returncode == 0 else "FAILS"
    out.write(f"After: `{DEMO_CHECK}` {verdict} on the merged branch.\n")
    verification = Journal(task.journal_path).verify()
    out.write(f"audit verify: {'ok' if verification.ok else verification}\n")
    return EXIT_OK if after.returncode == 0 and verification.ok else EXIT_FAILED
