"""Git view: what making a worktree's git view costs (the git commands see: its HEAD,
its index, and a store of only the objects reachable from what tasks started from or
made), beside `git worktree add` of the same commit, which every task already pays.

A generated repository with a history of N commits (each touching a few of its files),
made with `git fast-import`. Three figures: the first view of a repository (the store
copies the whole history with a local fetch), the view after one new commit (the store
fetches only what is new), and a view whose commit the store holds (the folder only).
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

NAME = "git_view"
GOALS = {"ratio_next": 1.0}


def git(repo: Path, *args: str, stdin: bytes | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, input=stdin)
    return done.stdout.decode()


def history(commits: int, files: int) -> bytes:
    """A fast-import stream: `commits` commits on main, commit n changing 3 of `files`."""
    out = []
    for n in range(commits):
        out.append(f"commit refs/heads/main\nmark :{n + 1}\n")
        out.append(f"committer Bench <b@example.com> {1_700_000_000 + n} +0000\n")
        message = f"change {n}"
        out.append(f"data {len(message)}\n{message}\n")
        if n:
            out.append(f"from :{n}\n")
        for k in range(3 if n else files):
            path = f"src/d{(n * 7 + k) % files // 100:03d}/f{(n * 7 + k) % files:05d}.txt"
            body = f"file {(n * 7 + k) % files} version {n}\n"
            out.append(f"M 100644 inline {path}\ndata {len(body)}\n{body}")
        out.append("\n")
    return "".join(out).encode()


def run(size: str = "full") -> dict[str, Any]:
    from jupyter_delegate.workspace import Workspace

    common.check_size(size)
    commits, files, rounds = (200, 100, 2) if size == "tiny" else (10_000, 2_000, 5)
    first, nxt, same, raw = [], [], [], []
    with common.git_identity(), common.scratch(NAME) as tmp:
        for n in range(rounds):
            repo = tmp / f"repo{n}"
            repo.mkdir()
            git(repo, "init", "-q", "-b", "main")
            git(repo, "fast-import", "--quiet", stdin=history(commits, files))
            git(repo, "reset", "-q", "--hard", "main")
            workspace = Workspace(repo)
            created = workspace.create(f"b{n}", "bench", None)
            started = time.perf_counter()
            workspace.git_view(created.path)
            first.append(time.perf_counter() - started)
            git(created.path, "commit", "-q", "--allow-empty", "-m", "the task's work")
            started = time.perf_counter()
            workspace.git_view(created.path)
            nxt.append(time.perf_counter() - started)
            started = time.perf_counter()
            workspace.git_view(created.path)
            same.append(time.perf_counter() - started)
            commit = git(repo, "rev-parse", "HEAD").strip()
            started = time.perf_counter()
            git(repo, "worktree", "add", "-q", "--detach", str(tmp / f"raw{n}"), commit)
            raw.append(time.perf_counter() - started)
    worktree_add = common.median(raw)
    return common.round_all(
        {
            "benchmark": NAME,
            "size": size,
            "commits": commits,
            "files": files,
            "first_view_ms_p50": common.median(first) * 1000,
            "next_view_ms_p50": common.median(nxt) * 1000,
            "same_view_ms_p50": common.median(same) * 1000,
            "worktree_add_ms_p50": worktree_add * 1000,
            "ratio_first": common.median(first) / worktree_add,
            "ratio_next": common.median(nxt) / worktree_add,
        }
    )


if __name__ == "__main__":
    sys.exit(common.main(run))
