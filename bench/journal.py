"""Journal: the cost of the truth.

Append: N events of the sizes a task writes (a short state change, an assistant turn
with a tool call, a tool result of ~1 KB), each through `Journal.append` (redaction,
hash chain, write, fsync), timed one by one (p50, p99 in microseconds); the same with
the fsync alone (a bare `os.write` + `os.fsync` of the same line to another file on the
same disk) as the floor. The same events appended as the agent loop appends its steps
(`sync=False`: written at once, synced by the background thread) are timed too: that is
what a step waits for now; the time until the background thread has synced them all is
reported beside it. Replay: a 1,000-event journal read back (`Journal.events`) and
folded into the conversation (`replay_messages`), median of several runs; opening a
`Journal` (which reads it to find its head) is timed too. Last, the cost of a
concurrency run's fsyncs (64 journals x 20 appends): one after another, as the engine
thread did them before steps were synced in the background, and from one thread per
journal.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

NAME = "journal"
GOALS = {"replay_ms_p50": 50.0}
RESULT_TEXT = "line of a file the agent read\n" * 34  # about 1 KB


def events_of_a_task(count: int) -> list[tuple[str, dict[str, Any]]]:
    """`count` events shaped like a task's: turns and results, a state change now and then."""
    out: list[tuple[str, dict[str, Any]]] = [
        ("user", {"content": [{"type": "text", "text": "Read the notes and summarise them."}]})
    ]
    n = 0
    while len(out) < count:
        n += 1
        tool_id = f"toolu_{n:024x}"
        usage = {
            "input_tokens": 12,
            "output_tokens": 40,
            "cache_read_tokens": 900 * n,
            "cache_write_tokens": 300,
            "cost_usd": 0.0012,
        }
        out.append(
            (
                "assistant",
                {
                    "content": [
                        {"type": "text", "text": "Reading the next part of the notes."},
                        {
                            "type": "tool_use",
                            "id": tool_id,
                            "name": "read",
                            "input": {"file_path": f"notes/{n}.txt"},
                        },
                    ],
                    "model": "claude-sonnet-4-5",
                    "stop_reason": "tool_use",
                    "usage": usage,
                    "request_id": f"req_{n:024x}",
                },
            )
        )
        out.append(
            (
                "tool_result",
                {"tool_use_id": tool_id, "name": "read", "content": RESULT_TEXT, "is_error": False},
            )
        )
        if n % 10 == 0:
            out.append(("state", {"state": "running", "reason": "still working"}))
    return out[:count]


def synced_appends(path: Path, lines: Iterable[bytes]) -> list[float]:
    """Append each line to `path` through one descriptor, each written and fdatasync'd
    (as Journal does); returns each append's microseconds."""
    took = []
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        for line in lines:
            started = time.perf_counter()
            os.write(fd, line)
            os.fdatasync(fd)
            took.append((time.perf_counter() - started) * 1e6)
    finally:
        os.close(fd)
    return took


def fsync_lines(path: Path, count: int, line: bytes) -> None:
    """`count` synced appends of `line` to `path`."""
    synced_appends(path, [line] * count)


def serial_vs_parallel(folder: Path, journals: int, appends: int) -> tuple[float, float]:
    """Seconds for `journals` x `appends` fsync'd appends done one after another (as the
    engine thread did them before the background sync) and from one thread per journal."""
    from concurrent.futures import ThreadPoolExecutor

    line = b"x" * 600 + b"\n"
    folder.mkdir()
    started = time.perf_counter()
    for n in range(journals):
        fsync_lines(folder / f"s{n}.jsonl", appends, line)
    serial = time.perf_counter() - started
    started = time.perf_counter()
    with ThreadPoolExecutor(journals) as pool:
        for n in range(journals):
            pool.submit(fsync_lines, folder / f"p{n}.jsonl", appends, line)
    return serial, time.perf_counter() - started


def run(size: str = "full") -> dict[str, Any]:
    from jupyter_delegate.journal import Journal, canonical, replay_messages

    common.check_size(size)
    appends, replay_events, rounds = (50, 100, 3) if size == "tiny" else (1000, 1000, 15)
    with common.scratch(NAME) as tmp:
        journal = Journal(tmp / "append" / "journal.jsonl")
        append_us = []
        for type_, data in events_of_a_task(appends):
            started = time.perf_counter()
            journal.append(type_, data)
            append_us.append((time.perf_counter() - started) * 1e6)
        background = Journal(tmp / "background" / "journal.jsonl")
        unsynced_us = []
        for type_, data in events_of_a_task(appends):
            started = time.perf_counter()
            background.append(type_, data, sync=False)
            unsynced_us.append((time.perf_counter() - started) * 1e6)
        started = time.perf_counter()
        while background.unsynced:
            time.sleep(0.0005)
        drained_ms = (time.perf_counter() - started) * 1000
        floor_us = []
        floor_path = tmp / "floor.jsonl"
        lines = [
            (canonical({"type": type_, "data": data}) + "\n").encode()
            for type_, data in events_of_a_task(appends)
        ]
        floor_us.extend(synced_appends(floor_path, lines))

        path = tmp / "replay" / "journal.jsonl"
        source = Journal(path)
        for type_, data in events_of_a_task(replay_events):
            source.append(type_, data)
        replay_ms, open_ms, verify_ms = [], [], []
        messages: list[dict[str, Any]] = []
        for _ in range(rounds):
            started = time.perf_counter()
            messages = replay_messages(list(Journal(path).events()))
            open_and_replay = time.perf_counter() - started
            started = time.perf_counter()
            messages = replay_messages(list(source.events()))
            replay_ms.append((time.perf_counter() - started) * 1000)
            open_ms.append((open_and_replay * 1000) - replay_ms[-1])
            started = time.perf_counter()
            source.verify()
            verify_ms.append((time.perf_counter() - started) * 1000)
        journal_kb = path.stat().st_size / 1024
        journals, each = (4, 5) if size == "tiny" else (64, 20)
        serial_s, parallel_s = serial_vs_parallel(tmp / "many", journals, each)
    figures = {
        "benchmark": NAME,
        "size": size,
        "appends": appends,
        "append_us_p50": common.percentile(append_us, 50),
        "append_us_p99": common.percentile(append_us, 99),
        "append_background_us_p50": common.percentile(unsynced_us, 50),
        "append_background_us_p99": common.percentile(unsynced_us, 99),
        "background_synced_after_ms": drained_ms,
        "fsync_floor_us_p50": common.percentile(floor_us, 50),
        "fsync_floor_us_p99": common.percentile(floor_us, 99),
        "replay_events": replay_events,
        "replay_journal_kb": journal_kb,
        "replay_messages": len(messages),
        "replay_ms_p50": common.median(replay_ms),
        "open_ms_p50": max(common.median(open_ms), 0.0),
        "verify_ms_p50": common.median(verify_ms),
        "fsyncs_many": journals * each,
        "fsync_serial_s": serial_s,
        "fsync_parallel_s": parallel_s,
    }
    return common.round_all(figures)


if __name__ == "__main__":
    sys.exit(common.main(run))
