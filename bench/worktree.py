"""Worktree: creating and removing a task's worktree, beside raw git.

A generated repository of N small files (one commit). Each round times
`Workspace.create` + `Workspace.remove_worktree` (what a task costs) and, beside it,
raw `git worktree add -b BRANCH PATH COMMIT` + `git worktree remove --force PATH`
(what git alone costs); rounds alternate and the medians are compared. Branches are
deleted between rounds (untimed) so every round starts alike.
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

NAME = "worktree"
GOALS = {"ratio": 1.2}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def run(size: str = "full") -> dict[str, Any]:
    from jupyter_delegate.workspace import Workspace

    common.check_size(size)
    files, rounds = (200, 2) if size == "tiny" else (20_000, 5)
    ours_add, ours_remove, raw_add, raw_remove = [], [], [], []
    with common.git_identity(), common.scratch(NAME) as tmp:
        repo = common.make_repo(tmp / "repo", files=files)
        workspace = Workspace(repo)
        commit = workspace.repo.head.commit.hexsha
        for n in range(rounds + 1):  # round 0 warms the page cache; not counted
            task_id = f"b{n:04d}"
            started = time.perf_counter()
            created = workspace.create(task_id, "bench", None)
            add_s = time.perf_counter() - started
            started = time.perf_counter()
            workspace.remove_worktree(created.path)
            remove_s = time.perf_counter() - started
            git(repo, "branch", "-D", created.branch)

            raw_path = tmp / "raw" / task_id
            raw_path.parent.mkdir(exist_ok=True)
            started = time.perf_counter()
            git(repo, "worktree", "add", "-q", "-b", f"raw/{task_id}", str(raw_path), commit)
            raw_add_s = time.perf_counter() - started
            started = time.perf_counter()
            git(repo, "worktree", "remove", "--force", str(raw_path))
            raw_remove_s = time.perf_counter() - started
            git(repo, "branch", "-D", f"raw/{task_id}")
            if n == 0:
                continue
            ours_add.append(add_s)
            ours_remove.append(remove_s)
            raw_add.append(raw_add_s)
            raw_remove.append(raw_remove_s)
    ours = common.median([a + r for a, r in zip(ours_add, ours_remove, strict=True)])
    raw = common.median([a + r for a, r in zip(raw_add, raw_remove, strict=True)])
    figures = {
        "benchmark": NAME,
        "size": size,
        "files": files,
        "rounds": rounds,
        "create_ms_p50": common.median(ours_add) * 1000,
        "remove_ms_p50": common.median(ours_remove) * 1000,
        "raw_add_ms_p50": common.median(raw_add) * 1000,
        "raw_remove_ms_p50": common.median(raw_remove) * 1000,
        "ours_ms_p50": ours * 1000,
        "raw_ms_p50": raw * 1000,
        "ratio": ours / raw,
        "ratio_create": common.median(ours_add) / common.median(raw_add),
        "ratio_remove": common.median(ours_remove) / common.median(raw_remove),
    }
    return common.round_all(figures)


if __name__ == "__main__":
    sys.exit(common.main(run))
