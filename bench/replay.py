"""Replay: what a per-step snapshot of the worktree costs the engine, and how long a replay
of a long task takes to open.

Snapshots (snapshots.py) against the alternative, rebuilding each step's worktree from the
journal's `write` and `edit` inputs: that costs the engine nothing but misses what `bash`
changed; a snapshot is exact and costs git processes after every call that can change
files. Measured on a generated repository of N files in a worktree made by the harness:

- `snapshot_ms_p50/p95`: `Snapshots.take()` after an edit of one file (stage into the
  task's own index, write the tree, commit it onto the steps ref);
- `write_tree_ms_p50`: the bare `git write-tree` of an index already up to date, the floor
  of any snapshot; `add_write_tree_ms_p50`: plain `git add -A && git write-tree` on the
  same worktree (no pinning, no steps ref), what a naive snapshot costs;
- `open_ms_p50`: `replay()` of a journal of S steps (each an assistant turn with one tool
  call and its result, every third a `bash`), with a snapshot tree per changing step;
  `open_rebuilt_ms_p50`: the same journal without trees, rebuilt from the file tools;
  `diff_ms_p50`: one step's diff, computed when asked; `to_dict_diffs_ms`: every diff;
  `notebook_shown_ms`: `%delegate replay`'s widget and first display bundle (no diffs yet).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

NAME = "replay"
GOALS = {"open_ms_p50": 1000.0}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def make_repo(path: Path, files: int) -> Path:
    """A repository of `files` small text files in folders of 100."""
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    for n in range(files):
        folder = path / "src" / f"d{n // 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{n:05d}.py").write_text(f"def f{n}():\n    return {n}\n")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "init")
    return path


def run(size: str = "full") -> dict[str, Any]:
    from jupyter_delegate.outcome import Outcome
    from jupyter_delegate.replaying import replay
    from jupyter_delegate.snapshots import Snapshots
    from jupyter_delegate.workspace import Workspace

    common.check_size(size)
    files, steps, edits = (200, 60, 10) if size == "tiny" else (5_000, 1_000, 40)
    with common.git_identity(), common.scratch(NAME) as tmp:
        repo = make_repo(tmp / "repo", files)
        workspace = Workspace(repo)
        task_id = "b1"
        made = workspace.create(task_id, "bench", None)
        snapshots = Snapshots(workspace, task_id, made.path, made.base_commit)
        snapshots.take()  # the first copies the worktree's index
        snapshot, bare, naive = [], [], []
        for n in range(edits):
            target = made.path / "src" / f"d{n // 100:03d}" / f"f{n:05d}.py"
            target.write_text(target.read_text() + f"# edit {n}\n")
            started = time.perf_counter()
            snapshots.take()
            snapshot.append(time.perf_counter() - started)
            started = time.perf_counter()
            git(made.path, "write-tree")
            bare.append(time.perf_counter() - started)
            started = time.perf_counter()
            git(made.path, "add", "-A")
            git(made.path, "write-tree")
            naive.append(time.perf_counter() - started)
        journal = workspace.task_dir(task_id) / "journal.jsonl"
        trees = write_journal(journal, made, snapshots, steps, Outcome("bench").to_dict())
        rebuilt = journal.with_name("rebuilt.jsonl")
        write_without_trees(journal, rebuilt)
        opened, opened_rebuilt, diffs = [], [], []
        for _ in range(5):
            started = time.perf_counter()
            found = replay(journal, repo)
            opened.append(time.perf_counter() - started)
            started = time.perf_counter()
            found.diff_at(len(found) // 2)
            diffs.append(time.perf_counter() - started)
            started = time.perf_counter()
            replay(rebuilt, repo)
            opened_rebuilt.append(time.perf_counter() - started)
        started = time.perf_counter()
        data = found.to_dict(diffs=True)
        to_dict_s = time.perf_counter() - started
        # `%delegate replay` on it: the journal read, the widget made and its first
        # display bundle (the diffs of a long replay follow from a thread)
        from jupyter_delegate.notebook.replay_view import ReplayView

        started = time.perf_counter()
        view = ReplayView(replay(journal, repo))
        view._repr_mimebundle_()
        shown_s = time.perf_counter() - started
        view.close()
        journal_kb = journal.stat().st_size / 1024
    return common.round_all(
        {
            "benchmark": NAME,
            "size": size,
            "files": files,
            "snapshot_ms_p50": common.median(snapshot) * 1000,
            "snapshot_ms_p95": common.percentile(snapshot, 95) * 1000,
            "write_tree_ms_p50": common.median(bare) * 1000,
            "add_write_tree_ms_p50": common.median(naive) * 1000,
            "ratio_to_naive": common.median(snapshot) / common.median(naive),
            "steps": len(found),
            "snapshot_trees": trees,
            "journal_kb": journal_kb,
            "open_ms_p50": common.median(opened) * 1000,
            "open_rebuilt_ms_p50": common.median(opened_rebuilt) * 1000,
            "diff_ms_p50": common.median(diffs) * 1000,
            "to_dict_diffs_ms": to_dict_s * 1000,
            "notebook_shown_ms": shown_s * 1000,
            "diffs": len(data["diffs"]),
        }
    )


def write_journal(
    path: Path, made: Any, snapshots: Any, steps: int, outcome: dict[str, Any]
) -> int:
    """A task's journal of `steps` steps: writes, edits and bash commands in turn, each
    changing a file of the worktree, snapshotted as the engine does. Returns the trees."""
    from jupyter_delegate.journal import Journal

    journal = Journal(path)
    journal.append(
        "task",
        {
            "outcome": outcome,
            "branch": made.branch,
            "base_commit": made.base_commit,
            "model": "claude-sonnet-4-6",
            "worktree": str(made.path),
            "format": 2,
        },
    )
    journal.append("state", {"state": "running", "reason": "the agent is working"})
    trees = set()
    usage = {"input_tokens": 3, "output_tokens": 80, "cache_read_tokens": 4000, "cost_usd": 0.003}
    for n in range(steps):
        name = ("write", "edit", "bash")[n % 3]
        file = f"notes/n{n % 50:02d}.md"
        target = made.path / file
        if name == "write" or not target.exists():
            name, tool_input = "write", {"file_path": file, "content": f"note {n}\n"}
            target.parent.mkdir(exist_ok=True)
            target.write_text(f"note {n}\n")
        elif name == "edit":
            old = target.read_text()
            tool_input = {"file_path": file, "old_string": old, "new_string": old + "more\n"}
            target.write_text(old + "more\n")
        else:
            tool_input = {"command": f"echo {n} >> {file}"}
            target.write_text(target.read_text() + f"{n}\n")
        tree = snapshots.take()
        trees.add(tree)
        call = {"type": "tool_use", "id": f"toolu_{n:05d}", "name": name, "input": tool_input}
        turn = {"content": [{"type": "text", "text": f"Step {n}."}, call], "usage": usage}
        result = {"tool_use_id": call["id"], "name": name, "content": "ok", "tree": tree}
        if name == "bash":
            result |= {"content": "exit code 0\n", "exit_code": 0, "sandbox": "bubblewrap"}
        journal.append_many([("assistant", turn), ("tool_result", result)], sync=False)
    journal.close()
    snapshots.flush()
    return len(trees)


def write_without_trees(source: Path, target: Path) -> None:
    from jupyter_delegate.journal import GENESIS, chain_hash

    prev, lines = GENESIS, []
    for line in source.read_text().splitlines():
        raw = json.loads(line)
        raw["data"].pop("tree", None)
        body = {k: raw[k] for k in ("seq", "ts", "type", "data")} | {"prev": prev}
        prev = chain_hash(prev, body)
        lines.append(json.dumps({**body, "hash": prev}))
    target.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(common.main(run))
