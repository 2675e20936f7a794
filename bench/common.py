"""What every benchmark shares: scratch repositories, scripted scenarios, statistics,
resident memory, machine facts and the one-JSON-line report.

Here: helpers only, and the one shape of a goal's figure (`goal_figure`: the harness's
values, the bare reference's, their ratio, each as min / median / max over the rounds).
Not here: any figure or goal; each benchmark module owns its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import git

SIZES = ("tiny", "full")
SMALL_FILE = "notes.txt"
SMALL_TEXT = "a small file the scripted agent reads\n"


def check_size(size: str) -> str:
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(SIZES)}, got {size!r}")
    return size


@contextlib.contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary directory on the same disk as the user's repositories (not tmpfs:
    fsync cost is part of the harness), removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix=f"bench-{prefix}-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def git_identity() -> Iterator[None]:
    """A throwaway global git config with an identity, so commits work anywhere."""
    saved = os.environ.get("GIT_CONFIG_GLOBAL")
    with tempfile.NamedTemporaryFile("w", suffix=".gitconfig", delete=False) as handle:
        handle.write("[user]\n\tname = Bench\n\temail = bench@example.com\n")
    os.environ["GIT_CONFIG_GLOBAL"] = handle.name
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("GIT_CONFIG_GLOBAL", None)
        else:
            os.environ["GIT_CONFIG_GLOBAL"] = saved
        os.unlink(handle.name)


def make_repo(path: Path, files: int = 0) -> Path:
    """A git repository on `main` with one commit: a small file the agent reads, and
    `files` more small files spread over directories of 100."""
    path.mkdir(parents=True, exist_ok=True)
    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as config:
        config.set_value("user", "name", "Bench")
        config.set_value("user", "email", "bench@example.com")
    (path / SMALL_FILE).write_text(SMALL_TEXT)
    for n in range(files):
        folder = path / "src" / f"d{n // 100:03d}"
        if n % 100 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{n:05d}.txt").write_text(f"file {n}\n")
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    subprocess.run(["git", "commit", "-q", "-m", "init"], cwd=path, check=True)
    return path


def read_turns(steps: int, *, text: str | None = None) -> dict[str, Any]:
    """A scenario of `steps` model turns: `steps - 1` reads of the small file, then
    `finish`. Tool work is a few microseconds, so what is left is the harness."""
    turns: list[dict[str, Any]] = [
        {"text": text, "tools": [{"read": {"file_path": SMALL_FILE}}]}
        if text
        else {"tools": [{"read": {"file_path": SMALL_FILE}}]}
        for _ in range(steps - 1)
    ]
    turns.append({"tools": [{"finish": {"summary": "Read the notes; nothing to change."}}]})
    return {"name": f"bench-{steps}", "turns": turns}


# What a request carries besides its messages, beyond model, max_tokens, system and tools:
# adaptive thinking, the effort, the API's compaction. The bare loop sends what the
# harness sent, so that the model (here the fake, in the same process) does the same work.
REQUEST_OPTIONS = ("thinking", "output_config", "context_management")


async def bare_turn(
    client: Any, shape: Mapping[str, Any], messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """One model turn of a bare loop: the harness's SDK call with the request's `model`,
    `max_tokens`, `system`, `tools` and options (REQUEST_OPTIONS) from `shape` (a request
    the harness sent), the stream read to its end and nothing else. Appends the assistant
    turn to `messages` and returns its content."""
    options = {key: shape[key] for key in REQUEST_OPTIONS if key in shape}
    if "context_management" in options:
        from jupyter_delegate.engine.loop import COMPACTION_BETA

        options["betas"] = [COMPACTION_BETA]
    async with client.beta.messages.stream(
        model=shape["model"],
        max_tokens=shape["max_tokens"],
        system=shape["system"],
        messages=messages,
        tools=shape["tools"],
        cache_control={"type": "ephemeral"},
        **options,
    ) as stream:
        async for _event in stream:
            pass
        final = await stream.get_final_message()
    content = [block.model_dump(mode="json", exclude_none=True) for block in final.content]
    messages.append({"role": "assistant", "content": content})
    return content


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between the closest ranks."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def spread(values: Sequence[float]) -> dict[str, float]:
    """min, median and max of `values` (the rounds of one figure)."""
    return {"min": min(values), "median": median(values), "max": max(values)}


def goal_figure(
    goal: float,
    harness: Sequence[float],
    reference: Sequence[float],
    *,
    unit: str,
    kind: str = "ratio",
    ratios: Sequence[float] | None = None,
) -> dict[str, Any]:
    """One goal's figure as every benchmark prints it: the harness's value and the bare
    reference's, round by round, and their ratio per round, each as min / median / max.
    `kind` "ratio": the goal bounds the ratio of two figures measured in the same run
    (comparable across machines); "absolute": the goal bounds the harness's own value
    (machine-bound), the reference is the floor measured beside it. `ratios` when a round's
    ratio is not harness / reference (a ratio of ratios, say)."""
    if len(harness) != len(reference):
        raise ValueError(f"{len(harness)} harness rounds against {len(reference)} references")
    if ratios is not None:
        per_round = list(ratios)
    else:  # a reference of zero (memory that did not grow) has no ratio
        per_round = [h / r for h, r in zip(harness, reference, strict=True) if r > 0]
    measured = median(per_round) if kind == "ratio" else median(harness)
    return {
        "goal": goal,
        "kind": kind,
        "unit": unit,
        "rounds": len(harness),
        "harness": _rounded(spread(harness)),
        "reference": _rounded(spread(reference)),
        "ratio": _rounded(spread(per_round)) if per_round else None,
        "measured": round(measured, 4),
        "met": measured <= goal,
    }


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 4) for k, v in values.items()}


def loadavg() -> str:
    """/proc/loadavg's three load averages now (the machine is shared: print it beside
    every run)."""
    try:
        with open("/proc/loadavg") as handle:
            return " ".join(handle.read().split()[:3])
    except OSError:
        return ""


def rss_bytes() -> int:
    """This process's resident set size now (from /proc/self/statm)."""
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(fn: Callable[[], Any]) -> float:
    """Seconds `fn()` takes."""
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory_kb = 0
    with contextlib.suppress(OSError), open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemTotal:"):
                memory_kb = int(line.split()[1])
                break
    return {
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(memory_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def report(result: dict[str, Any]) -> dict[str, Any]:
    """Print the figures as one JSON object on one line (the last line of the output)."""
    print(json.dumps(result, sort_keys=True), flush=True)
    return result


def as_installed() -> None:
    """Compile the package's bytecode, as `pip install` does, before anything is timed.
    An editable install (this checkout's) leaves it to the first import, and with
    PYTHONDONTWRITEBYTECODE (set on the machines these figures come from) every process
    compiled the package's ~70 modules again: 90-110 ms of each `%load_ext`, say, that a
    user's install never pays. Stale bytecode is recompiled by its source's mtime."""
    import compileall

    package = Path(__file__).resolve().parent.parent / "jupyter_delegate"
    compileall.compile_dir(package, quiet=1)


def main(run: Callable[[str], dict[str, Any]], argv: Sequence[str] | None = None) -> int:
    """The `__main__` of a benchmark module: `[tiny|full]`, full by default."""
    as_installed()
    args = list(sys.argv[1:] if argv is None else argv)
    size = check_size(args[0] if args else "full")
    report(run(size))
    return 0


def round_all(values: dict[str, Any], digits: int = 3) -> dict[str, Any]:
    return {k: round(v, digits) if isinstance(v, float) else v for k, v in values.items()}


@contextlib.contextmanager
def kernel(env: dict[str, str] | None = None, cwd: Path | None = None) -> Iterator[Any]:
    """A fresh python3 kernel (jupyter_client) and a ready client; shut down after."""
    from jupyter_client.manager import KernelManager

    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env={**os.environ, **(env or {})}, cwd=str(cwd or Path.cwd()))
    client = manager.client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def kernel_run(client: Any, code: str, timeout: float = 120) -> str:
    """Execute `code` in the kernel; its stdout. Raises if the cell fails."""
    out: list[str] = []
    errors: list[str] = []

    def hook(msg: dict[str, Any]) -> None:
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream" and content.get("name") == "stdout":
            out.append(content["text"])
        elif kind == "error":
            errors.append("\n".join(content.get("traceback", [])) or content.get("evalue", ""))

    reply = client.execute_interactive(code, timeout=timeout, output_hook=hook)
    if reply["content"]["status"] != "ok" or errors:
        raise RuntimeError(f"kernel cell failed: {code[:80]!r}: {''.join(errors)[-2000:]}")
    return "".join(out)


def kernel_round_trip(client: Any, code: str = "1+1", timeout: float = 30) -> float:
    """Seconds from sending an execute request to its execute_reply."""
    started = time.perf_counter()
    msg_id = client.execute(code, store_history=False)
    while True:
        reply = client.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return time.perf_counter() - started


@contextlib.contextmanager
def fsync_off() -> Iterator[None]:
    """What-if only: `os.fsync` and `os.fdatasync` no-ops in this process, to show how
    much of a figure is the journal's sync on the engine thread (the bound of moving it off
    that thread). Never used for the figures that are compared with the goals."""
    saved = os.fsync, os.fdatasync
    os.fsync = os.fdatasync = lambda fd: None
    try:
        yield
    finally:
        os.fsync, os.fdatasync = saved
