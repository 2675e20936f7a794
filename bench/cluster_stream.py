"""How to stream journal lines from a Dask worker home (cluster.py): a `distributed.Queue`
versus worker events (`log_event` / `subscribe_topic`). Prints, for each, the time from
the first put to the last line received and the mean per line, on a LocalCluster of
worker processes. Pub/Sub is gone from distributed 2026.x, so it is not measured.

    python bench/cluster_stream.py [LINES] [BYTES]
"""

from __future__ import annotations

import sys
import threading
import time

from distributed import Client, LocalCluster, Queue, get_worker


def through_queue(name: str, lines: int, size: int) -> float:
    queue = Queue(name)
    start = time.perf_counter()
    for i in range(lines):
        queue.put(f"{i:08d}" + "x" * size)
    return start


def through_events(topic: str, lines: int, size: int) -> float:
    worker = get_worker()
    start = time.perf_counter()
    for i in range(lines):
        worker.log_event(topic, f"{i:08d}" + "x" * size)
    return start


def main() -> None:
    lines = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    local = LocalCluster(n_workers=1, processes=True, threads_per_worker=1)
    with local as cluster, Client(cluster) as client:
        # queue
        queue = Queue("bench-q", client=client)
        future = client.submit(through_queue, "bench-q", lines, size, pure=False)
        t0 = time.perf_counter()
        got = [queue.get(timeout=30) for _ in range(lines)]
        elapsed = time.perf_counter() - t0
        future.result()
        assert [int(g[:8]) for g in got] == list(range(lines))
        print(
            f"Queue:  {lines} lines of {size} B in {elapsed:.2f} s "
            f"({elapsed / lines * 1e3:.2f} ms/line), in order"
        )
        # events
        seen: list[str] = []
        done = threading.Event()

        def handler(event: tuple[float, str]) -> None:
            seen.append(event[1])
            if len(seen) == lines:
                done.set()

        client.subscribe_topic("bench-e", handler)
        t0 = time.perf_counter()
        future = client.submit(through_events, "bench-e", lines, size, pure=False)
        done.wait(60)
        elapsed = time.perf_counter() - t0
        future.result()
        ordered = [int(g[:8]) for g in seen] == list(range(lines))
        print(
            f"events: {len(seen)} lines of {size} B in {elapsed:.2f} s "
            f"({elapsed / lines * 1e3:.2f} ms/line), in order: {ordered}"
        )


if __name__ == "__main__":
    main()
