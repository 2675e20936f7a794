"""Per-step snapshots of a task's worktree: the git tree after each tool call that can
change files, for replay (replaying.py) to show the diff as of every step.

`Snapshots.take()` stages the whole worktree into the task's own index file (its folder's
`steps.index`, first copied from the worktree's index so git's stat cache spares it from
reading every file) and writes the tree: two git processes. `flush()`, at the end of each
round and every FLUSH_EVERY new trees, makes them reachable from
`refs/delegate/steps/<task id>`: a commit (the previous one, or the base, as parent; no
trailer) whose tree holds them as folders 00001, 00002, ... So git's gc never drops them
(until a flush they are loose objects, which gc keeps for two weeks, gc.pruneExpire) and
a handoff bundle carries them. The agent loop journals each tree in the call's
`tool_result` (`tree`). The cost per step is measured in bench/replay.py.

What it stages is what `Workspace.stage` would, but the bytes as they are in the worktree:
nested repositories and submodules are left out (git would work in them, under their own
configuration), and no filter runs. It never runs what the agent could have written:
git is pointed at the worktree's admin folder as git's own records name it (never through
the worktree's `.git` file, which a write could redirect), runs with
workspace.PINNED_CONFIG (no fsmonitor, no hooks), and with every filter driver that the
configuration defines emptied, so a `.gitattributes` naming one (`* filter=x`) runs
nothing; `commit-tree` signs nothing. It does not touch what the harness commits (another
index, another ref), the review, or the agent's git (its index and its view of the
objects: sandbox.GitView holds only what tasks started from or made).

Not here: when snapshots are taken (engine/loop.py, after each write, edit and bash),
reading them (replaying.py).
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from pathlib import Path

from .workspace import PINNED_CONFIG, Workspace, nested_repositories, pinned_env

log = logging.getLogger(__name__)
STEPS_PREFIX = "refs/delegate/steps/"
FLUSH_EVERY = 20  # trees taken before they are made reachable (and at the end of a round)
# Beside PINNED_CONFIG: nothing writes shared index files or runs maintenance.
_QUIET = ("core.splitIndex=false", "gc.auto=0", "maintenance.auto=false", "commit.gpgSign=false")


class SnapshotError(Exception):
    """A snapshot could not be taken (git failed); the step is journaled without a tree."""


class Snapshots:
    """The snapshots of one task's worktree (see the module). Safe to call from threads."""

    def __init__(self, workspace: Workspace, task_id: str, worktree: Path, base: str) -> None:
        self.worktree = worktree.resolve()
        self.ref = STEPS_PREFIX + task_id
        self.index = workspace.task_dir(task_id) / "steps.index"
        self.base = base
        self._admin = workspace.admin_of(self.worktree)
        self._identity = workspace._identity()  # the repository's user, else a fallback
        self._lock = threading.Lock()
        self._options: list[str] | None = None  # the git options, once the filters are known
        self._submodules: list[tuple[str, str, str]] | None = None  # (mode, sha, path) of HEAD
        self._last: str | None = None  # the last tree taken
        self._pending: list[str] = []  # trees taken, not yet reachable from `ref`
        self._head: str | None = None  # the ref's commit ("" none), once read

    def take(self) -> str:
        """The tree of the worktree now, kept reachable under `ref`. Raises SnapshotError."""
        with self._lock:
            if self._admin is None:
                raise SnapshotError(f"{self.worktree} is not a worktree of this repository")
            if not self.index.exists():
                self._start_index()
            submodules = self._gitlinks()
            paths = {path for _, _, path in submodules}
            nested = nested_repositories(self.worktree, paths)
            excluded = [f":(exclude,literal,top){p}" for p in [*nested, *sorted(paths)]]
            self._git("add", "-A", "--", ".", *excluded)
            for path in nested:  # staged as a gitlink by an earlier snapshot
                staged = self._git("ls-files", "-s", "-z", "--", f":(literal){path}")
                if any(e.startswith("160000 ") for e in staged.split("\0") if e):
                    self._git("update-index", "--force-remove", "--", path)
            for mode, sha, path in submodules:
                self._git("update-index", "--cacheinfo", f"{mode},{sha},{path}")
            tree = self._git("write-tree").strip()
            if tree != self._last:
                self._last = tree
                self._pending.append(tree)
                if len(self._pending) >= FLUSH_EVERY:
                    self._flush()
            return tree

    def take_or_none(self) -> str | None:
        """`take`, or None when it failed (logged): the step is journaled without a tree."""
        try:
            return self.take()
        except (SnapshotError, OSError) as exc:
            log.warning("no snapshot of %s: %s", self.worktree, exc)
            return None

    def flush(self) -> None:
        """Make the trees taken since the last flush reachable from `ref` (at the end of
        a round, and every FLUSH_EVERY trees); failures are logged."""
        with self._lock:
            try:
                self._flush()
            except (SnapshotError, OSError) as exc:
                log.warning("snapshots of %s not kept: %s", self.worktree, exc)

    def _flush(self) -> None:
        """One commit onto `ref` whose tree holds the pending trees as folders named by
        their order (00001, ...): three git processes for many steps."""
        if not self._pending:
            return
        if self._head is None:
            try:
                self._head = self._git("rev-parse", "--verify", "--quiet", self.ref).strip()
            except SnapshotError:
                self._head = ""
        entries = "".join(f"040000 tree {t}\t{n:05d}\n" for n, t in enumerate(self._pending, 1))
        holder = self._git("mktree", stdin=entries).strip()
        message = f"delegate: steps of task {self.ref.removeprefix(STEPS_PREFIX)}\n"
        parent = self._head or self.base
        commit = self._git(
            "commit-tree", holder, "-p", parent, "-m", message, env=self._identity
        ).strip()
        self._git("update-ref", "-m", "delegate: steps", self.ref, commit, self._head)
        self._head, self._pending = commit, []

    def _start_index(self) -> None:
        """The task's index, from the worktree's (its stat cache: unchanged files are not
        read again), else from HEAD."""
        assert self._admin is not None
        self.index.parent.mkdir(parents=True, exist_ok=True)
        source = self._admin / "index"
        if source.is_file():
            shutil.copyfile(source, self.index)
        else:
            self._git("read-tree", "HEAD")

    def _gitlinks(self) -> list[tuple[str, str, str]]:
        """HEAD's submodules (fixed during a round: the harness alone commits)."""
        if self._submodules is None:
            listing = self._git("ls-tree", "-r", "-z", "HEAD")
            found = []
            for entry in filter(None, listing.split("\0")):
                meta, path = entry.split("\t", 1)
                mode, kind, sha = meta.split()
                if kind == "commit":
                    found.append((mode, sha, path))
            self._submodules = found
        return self._submodules

    def _git(self, *args: str, env: dict[str, str] | None = None, stdin: str = "") -> str:
        argv = ["git", *self._git_options(), *args]
        return _run(argv, self.worktree, {**self._env(), **(env or {})}, stdin)

    def _env(self) -> dict[str, str]:
        return {**pinned_env(), "GIT_INDEX_FILE": str(self.index)}

    def _git_options(self) -> list[str]:
        """Where git works (the admin folder, the worktree), the pinned configuration, and
        every configured filter driver emptied."""
        if self._options is None:
            assert self._admin is not None
            where = [f"--git-dir={self._admin}", f"--work-tree={self.worktree}"]
            pinned = [a for item in (*PINNED_CONFIG, *_QUIET) for a in ("-c", item)]
            try:
                listed = _run(
                    ["git", *where, *pinned, "config", "--name-only", "--get-regexp", r"^filter\."],
                    self.worktree,
                    pinned_env(),
                )
            except SnapshotError:
                listed = ""  # none configured (git says so with status 1)
            drivers = sorted(
                {n[len("filter.") :].rsplit(".", 1)[0] for n in listed.split() if "." in n[7:]}
            )
            emptied = [
                a
                for d in drivers
                for key in ("clean=", "smudge=", "process=", "required=false")
                for a in ("-c", f"filter.{d}.{key}")
            ]
            self._options = [*where, *pinned, *emptied]
        return self._options


def _run(argv: list[str], cwd: Path, env: dict[str, str], stdin: str = "") -> str:
    done = subprocess.run(
        argv, cwd=cwd, env=env, input=stdin.encode(), capture_output=True, check=False
    )
    if done.returncode != 0:
        what = next(a for a in argv[1:] if not a.startswith("-") and "=" not in a)
        problem = done.stderr.decode(errors="replace").strip()[:300]
        raise SnapshotError(f"git {what} failed ({done.returncode}): {problem}")
    return done.stdout.decode("utf-8", errors="surrogateescape")
