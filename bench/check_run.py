"""Check run: what proving a check costs the harness, beside running it bare.

A generated repository of N small files (one commit) with an ignored `.venv/` folder and
an ignored generated `_version.py` beside tracked code. Each round times, for one
check (`true`):

- ours: what the harness does per round of checks: a throw-away checkout of the commit
  (`Workspace.check_copy`), the environment found (`discover`) and put in it
  (`furnish`), the sandbox built, the check run, the checkout removed;
- git: the raw `git worktree add --detach` + `git worktree remove --force` alone;
- bare: `bash -c true` in the user's checkout (what the user's shell pays).

Rounds alternate; medians are reported, with the parts of ours.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

NAME = "check_run"
GOALS = {"added_ms_p50": 500.0}


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def run(size: str = "full") -> dict[str, Any]:
    from jupyter_delegate.environment import Declared, discover, furnish
    from jupyter_delegate.sandbox import Sandbox, probe
    from jupyter_delegate.workspace import Workspace

    common.check_size(size)
    files, rounds = (200, 2) if size == "tiny" else (6_000, 7)
    tier = "bubblewrap" if probe().available else "none"
    copy_s, env_s, check_s, remove_s, ours_s, git_s, bare_s = [], [], [], [], [], [], []
    with common.git_identity(), common.scratch(NAME) as tmp:
        repo = common.make_repo(tmp / "repo", files=files)
        (repo / ".gitignore").write_text(".venv/\nsrc/_version.py\n")
        (repo / "src" / "__init__.py").write_text("from ._version import version\n")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "package")
        (repo / "src" / "_version.py").write_text("version = '1'\n")
        (repo / ".venv" / "bin").mkdir(parents=True)
        (repo / ".venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
        workspace = Workspace(repo)
        commit = workspace.repo.head.commit.hexsha
        for n in range(rounds + 1):  # round 0 warms the page cache; not counted
            started = time.perf_counter()
            checkout = workspace.check_copy(f"b{n}", commit)
            copy = checkout.__enter__()
            copied = time.perf_counter()
            environment = furnish(discover(repo, Declared()), copy, mounts=tier != "none")
            sandbox = Sandbox(
                copy,
                tier=tier,
                seen_at=repo,
                environment=environment,
                git_view=workspace.git_view(copy),
            )
            found = time.perf_counter()
            result = asyncio.run(sandbox.run("true"))
            assert result.exit_code == 0, result.output
            checked = time.perf_counter()
            checkout.__exit__(None, None, None)
            removed = time.perf_counter()

            raw = tmp / "raw"
            git_started = time.perf_counter()
            git(repo, "worktree", "add", "-q", "--detach", str(raw), commit)
            git(repo, "worktree", "remove", "--force", str(raw))
            git_done = time.perf_counter()
            bare = common.timed(
                lambda: subprocess.run(["bash", "-c", "true"], cwd=repo, check=True)
            )
            if n == 0:
                continue
            copy_s.append(copied - started)
            env_s.append(found - copied)
            check_s.append(checked - found)
            remove_s.append(removed - checked)
            ours_s.append(removed - started)
            git_s.append(git_done - git_started)
            bare_s.append(bare)
    ours, bare_p50 = common.median(ours_s), common.median(bare_s)
    figures = {
        "benchmark": NAME,
        "size": size,
        "files": files,
        "rounds": rounds,
        "tier": tier,
        "ours_ms_p50": ours * 1000,
        "copy_ms_p50": common.median(copy_s) * 1000,
        "environment_ms_p50": common.median(env_s) * 1000,
        "check_ms_p50": common.median(check_s) * 1000,
        "remove_ms_p50": common.median(remove_s) * 1000,
        "raw_git_ms_p50": common.median(git_s) * 1000,
        "bare_ms_p50": bare_p50 * 1000,
        "added_ms_p50": (ours - bare_p50) * 1000,
    }
    return common.round_all(figures)


if __name__ == "__main__":
    sys.exit(common.main(run))
