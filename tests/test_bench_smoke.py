"""The benchmarks still run: each one at its tiny size returns its figures.

Not a performance test: the goals are in bench/RESULTS.md and are not asserted here; only
that every benchmark runs end to end and reports the figures it promises, as positive
numbers (differences of two timings excepted: at a tiny size noise can make them
negative).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import BENCHMARKS

ROOT = Path(__file__).resolve().parent.parent
EXPECTED = {
    "step_overhead": ("harness_step_ms_p50", "bare_step_ms_p50", "ratio", "tool_ms_p50"),
    "concurrency": (
        *("one_task_wall_s", "many_tasks_wall_s", "wall_ratio", "bare_many_wall_s"),
        *("cpu_harness_cpu_s", "cpu_harness_fake_cpu_s", "cpu_bare_fake_cpu_s"),
        *("cpu_harness_voluntary_switches", "paced_wall_s", "paced_bare_wall_s"),
    ),
    "kernel_responsiveness": (
        "idle_ms_p95",
        "busy_ms_p95",
        "p95_ratio",
        "outside_busy_ms_p95",
        "process_busy_ms_p95",
    ),
    "submit": (
        *("submit_one_ms_p50", "floor_one_ms_p50"),
        *("submit_many_s", "floor_many_s", "submit_many_cpu_s", "submit_many_worker_process_s"),
    ),
    "cache_efficiency": ("cached_share", "cache_read_tokens", "input_tokens_total"),
    "notebook_footprint": ("record_kb", "ipynb_growth_kb", "journal_kb"),
    "worktree": ("create_ms_p50", "remove_ms_p50", "raw_add_ms_p50", "ratio"),
    "extension_load": ("load_ms_p50", "load_named_ms_p50", "importtime_magics_ms"),
    "journal": ("append_us_p50", "append_us_p99", "append_background_us_p50", "replay_ms_p50"),
    "check_run": ("ours_ms_p50", "copy_ms_p50", "raw_git_ms_p50", "bare_ms_p50"),
    "redaction": ("own_patterns_us_per_4kb", "with_detectors_us_per_4kb", "ratio"),
    "long_task": ("window", "cached_share", "reached_review"),
    "control": ("round_trip_ms_p50", "round_trip_ms_p95", "local_ms_p50", "tasks"),
    "git_view": ("first_view_ms_p50", "next_view_ms_p50", "worktree_add_ms_p50", "ratio_next"),
    "file_tools": ("worker_read_us_p50", "bare_read_us_p50", "ratio"),
    "live_output": ("flood_told_ms_p50", "flood_bare_ms_p50", "flood_tellings_p50"),
    "replay": ("snapshot_ms_p50", "write_tree_ms_p50", "open_ms_p50", "open_rebuilt_ms_p50"),
}
# Harness time minus bare time, step by step: below zero when a tiny run is noisy.
DIFFERENCES = {"added_ms_p50", "added_ms_p95", "added_us_p50"}
# The goals of issue 21, each printed with its bare reference and ratio (bench/RESULTS.md).
GOALS = {
    "step_overhead": ("step_model_turn", "step_added_ms", "step_whole"),
    "concurrency": ("concurrency_wall", "concurrency_wall_worker_process", "memory_mb_per_task"),
    "kernel_responsiveness": ("kernel_p95", "kernel_p95_worker_process"),
    "submit": ("submit_one_ms_p50", "submit_many_s", "submit_many_s_worker_process"),
}


def test_every_benchmark_has_expectations() -> None:
    assert set(EXPECTED) == set(BENCHMARKS)
    assert set(GOALS) <= set(BENCHMARKS)


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", BENCHMARKS)
def test_benchmark_runs_tiny_and_reports_positive_figures(name: str) -> None:
    figures = importlib.import_module(f"bench.{name}").run("tiny")
    assert figures["benchmark"] == name
    assert figures["size"] == "tiny"
    for key in EXPECTED[name]:
        assert isinstance(figures[key], int | float), key
        assert figures[key] > 0, (key, figures[key])
    for key, value in figures.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            assert key in DIFFERENCES or value >= 0, (key, value)
    for goal in GOALS.get(name, ()):
        assert_goal_figure(figures["goals"][goal], goal)
    if name == "concurrency":  # the CPU by kind of thread: the engine's is there
        assert figures["cpu_by_thread"]["jupyter-delegate-engine"]["cpu_s"] > 0
    json.dumps(figures)  # one JSON object, printable on one line


def assert_goal_figure(figure: dict[str, Any], goal: str) -> None:
    """A goal's figure carries the harness's value, its bare reference and their ratio,
    each as the spread over the rounds, and says whether it is a same-run ratio or an
    absolute (machine-bound) figure."""
    assert figure["kind"] in ("ratio", "absolute"), goal
    assert isinstance(figure["goal"], float) and figure["goal"] > 0, goal
    assert isinstance(figure["rounds"], int) and figure["rounds"] >= 1, goal
    for part in ("harness", "reference", "ratio"):
        spread = figure[part]
        if part == "ratio" and spread is None:  # only when no reference was above zero
            assert figure["reference"]["max"] == 0 and figure["kind"] == "absolute", goal
            continue
        assert isinstance(spread, dict), (goal, part)
        assert set(spread) == {"min", "median", "max"}, (goal, part)
        assert spread["min"] <= spread["median"] <= spread["max"], (goal, part, spread)
    if figure["kind"] == "ratio":  # two timings of the same run, both positive
        assert figure["harness"]["min"] > 0 and figure["reference"]["min"] > 0, goal
    assert figure["met"] == (figure["measured"] <= figure["goal"]), goal


@pytest.mark.timeout(120)
def test_a_benchmark_runs_as_a_script_and_prints_json_last() -> None:
    done = subprocess.run(
        [sys.executable, "bench/journal.py", "tiny"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["benchmark"] == "journal"
    assert figures["replay_ms_p50"] > 0
