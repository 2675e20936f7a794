"""Benchmarks of the jupyter-delegate harness: it costs nothing next to the model, and
scales to many tasks at once.

Each module measures one thing and exposes `run(size: str = "full") -> dict`; run as a
program it prints its figures as one JSON object on its last line. `size="tiny"` runs in
a couple of seconds (the smoke test, `tests/test_bench_smoke.py`, uses it so the
benchmarks cannot rot). The figures and the goals live in `bench/RESULTS.md`; goals are
not asserted anywhere.

    python -m bench                      # all of them, full size
    python -m bench step_overhead tiny   # one, at a size
    python bench/step_overhead.py        # the same, as a script
"""

from __future__ import annotations

BENCHMARKS = (
    "step_overhead",
    "concurrency",
    "kernel_responsiveness",
    "submit",
    "cache_efficiency",
    "notebook_footprint",
    "worktree",
    "extension_load",
    "journal",
    "check_run",
    "redaction",
    "git_view",
    "control",
    "file_tools",
    "live_output",
    "long_task",
    "replay",
)
