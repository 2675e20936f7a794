"""Run the benchmarks: `python -m bench [NAME ...] [tiny|full]` or `python bench/run.py`.

Each benchmark runs in its own process (imports, kernels and memory figures stay
independent); its JSON line is echoed, and the last line of this program's output is one
JSON object holding every benchmark's figures by name.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import BENCHMARKS, common

ROOT = Path(__file__).resolve().parent.parent


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    size = "full"
    if args and args[-1] in common.SIZES:
        size = args.pop()
    unknown = [name for name in args if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; known: {', '.join(BENCHMARKS)}")
        return 2
    names = args or list(BENCHMARKS)
    common.as_installed()
    if len(names) == 1:  # alone: in this process, its own JSON line last
        module = __import__(f"bench.{names[0]}", fromlist=["run"])
        common.report(module.run(size))
        return 0
    figures: dict[str, object] = {"machine": common.machine(), "size": size}
    failed = []
    for name in names:
        done = subprocess.run(
            [sys.executable, "-m", "bench", name, size],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0 or not lines:
            failed.append(name)
            print(f"{name}: FAILED\n{done.stderr[-3000:]}", flush=True)
            continue
        print(lines[-1], flush=True)
        figures[name] = json.loads(lines[-1])
    common.report(figures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
