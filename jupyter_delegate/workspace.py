"""Git, through GitPython: a worktree and branch per task, the diff, the harness's commit,
approve (merge or squash into the base branch) and reject (archive the branch).

The user's checkout is never put at risk: nothing here writes to the base branch before
an approve, an approve refuses when the user's uncommitted changes touch the task's
files, and a reject keeps the work under `refs/delegate/archive/<id>`. Git work on the
repository as a whole (creating and removing worktrees, moving branches other than a
task's own) is serialised by a lock shared by every task of the process: `git worktree
add` is not safe beside another one (it reads the other worktree's half-written admin
files). Work inside one worktree (stage, diff, commit on the task's branch) takes that
worktree's lock only, as git keeps worktrees' indexes and branches apart, so tasks that
finish together commit side by side. A method needing both takes the worktree's lock
first. The base branch is moved with an expected-old-value update so a concurrent move is
caught. This module knows nothing of agents, journals or checks.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import git

from .errors import RepoError, ReviewError

ARCHIVE_PREFIX = "refs/delegate/archive/"
_FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "jupyter-delegate",
    "GIT_AUTHOR_EMAIL": "delegate@localhost",
    "GIT_COMMITTER_NAME": "jupyter-delegate",
    "GIT_COMMITTER_EMAIL": "delegate@localhost",
}
_locks: dict[Path, threading.RLock] = {}  # a repository's common dir, or a worktree
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class Worktree:
    path: Path
    branch: str
    base_branch: str | None
    base_commit: str


@dataclass(frozen=True)
class MergeResult:
    commit: str
    base_moved: bool  # the base branch had moved; the task branch now contains it


def _lock_of(path: Path) -> threading.RLock:
    with _locks_guard:
        return _locks.setdefault(path, threading.RLock())


def slugify(text: str, limit: int = 32) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    slug = ""
    for word in words:
        candidate = f"{slug}-{word}" if slug else word
        if len(candidate) > limit:
            break
        slug = candidate
    return slug or "task"


class Workspace:
    """One repository as jupyter-delegate uses it."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        given = Path(path).expanduser()
        if not given.exists():
            raise RepoError(f"{given} does not exist. Pass repo= the path of a git repository.")
        try:
            self.repo = git.Repo(given, search_parent_directories=True)
        except (git.InvalidGitRepositoryError, git.NoSuchPathError):
            raise RepoError(
                f"{given} is not inside a git repository. Run `git init` there and commit "
                "something, or pass repo= the path of an existing repository."
            ) from None
        if self.repo.bare:
            raise RepoError(
                f"{given} is a bare repository; delegate needs one with a working tree. "
                "Clone it (`git clone <bare> <dir>`) and pass the clone."
            )
        try:
            self._head_commit()
        except ValueError:
            raise RepoError(
                f"The repository at {self.repo.working_dir} has no commits yet. Commit "
                "something first (`git add -A && git commit -m init`): the agent works "
                "on a branch from a commit."
            ) from None
        self.root = Path(self.repo.working_dir).resolve()
        self.common_dir = Path(self.repo.common_dir).resolve()
        self.state_dir = self.common_dir / "delegate"
        self._lock = _lock_of(self.common_dir)

    @contextmanager
    def locked(self, worktree: Path | None = None) -> Iterator[None]:
        """The repository's lock; with `worktree`, that worktree's lock first."""
        if worktree is None:
            with self._lock:
                yield
        else:
            with _lock_of(worktree.resolve()), self._lock:
                yield

    @contextmanager
    def worktree_locked(self, worktree: Path) -> Iterator[None]:
        """The lock of one worktree only: for work inside it."""
        with _lock_of(worktree.resolve()):
            yield

    # -- paths -------------------------------------------------------------------------
    def task_dir(self, task_id: str) -> Path:
        return self.state_dir / "tasks" / task_id

    def worktree_path(self, task_id: str) -> Path:
        return self.state_dir / "worktrees" / task_id

    def task_ids(self) -> list[str]:
        tasks = self.state_dir / "tasks"
        if not tasks.is_dir():
            return []
        found = [p for p in tasks.iterdir() if (p / "journal.jsonl").exists()]
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime)]

    # -- base --------------------------------------------------------------------------
    def _head_commit(self) -> str:
        """The commit HEAD names, read from the ref files: `repo.head.commit` would start
        a `git cat-file` process for each Workspace to learn the object's type, and a
        submit makes a Workspace. Raises ValueError when HEAD names no commit yet."""
        return git.SymbolicReference.dereference_recursive(self.repo, "HEAD")

    def resolve_base(self, base: str | None) -> tuple[str | None, str]:
        """(branch name or None when detached/a bare commit, commit sha) of the base."""
        if base is None:
            head = self._head_commit()
            if self.repo.head.is_detached:
                return None, head
            return self.repo.active_branch.name, head
        try:
            commit = self.repo.commit(base)
        except (git.BadName, ValueError, git.GitCommandError):
            branches = ", ".join(h.name for h in self.repo.heads) or "none"
            raise RepoError(
                f"Unknown base {base!r} in {self.root}. Pass a branch, tag or commit that "
                f"exists (branches: {branches})."
            ) from None
        is_branch = base in {h.name for h in self.repo.heads}
        return (base if is_branch else None), commit.hexsha

    # -- worktree ----------------------------------------------------------------------
    def create(self, task_id: str, slug: str, base: str | None) -> Worktree:
        base_branch, base_commit = self.resolve_base(base)
        branch = f"delegate/{task_id}-{slug}"
        path = self.worktree_path(task_id)
        with self.locked():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.repo.git.worktree("add", "-b", branch, str(path), base_commit)
        self.check_out_submodules(path, base_commit)
        return Worktree(path, branch, base_branch, base_commit)

    def check_out_submodules(self, worktree: Path, commit: str) -> list[str]:
        """Check out each submodule `commit` records, at the commit it records, from the
        user's own checkout of it (no network): a copy of its objects, never hard links
        (the agent owns the worktree's files). Returns the submodules left empty, because
        the user's checkout lacks them or that commit."""
        return _clone_submodules(self.root, worktree, commit)

    @contextmanager
    def check_copy(self, task_id: str, commit: str) -> Iterator[Path]:
        """A throw-away checkout of `commit` (with its submodules) for the checks to run
        in: what they write never reaches the task's worktree or its commits."""
        path = self.state_dir / "checks" / task_id
        if path.exists():  # left by a process that died while checks ran
            self.remove_worktree(path)
        with self.locked():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.repo.git.worktree("add", "--detach", "-f", str(path), commit)
        try:
            self.check_out_submodules(path, commit)
            yield path
        finally:
            self.remove_worktree(path)

    def remove_worktree(self, path: Path) -> None:
        """Remove a worktree and git's record of it. Git refuses a worktree holding
        submodules, and the agent may have left folders it cannot write: such a tree is
        removed file by file (never following a symlink), then git's record pruned."""
        with self.locked():
            if path.exists():
                try:
                    self.repo.git.worktree("remove", "--force", "--force", str(path))
                except git.GitCommandError:
                    _remove_tree(path)
            self.repo.git.worktree("prune")

    def repair_worktree(self, path: Path) -> None:
        """Mend git's links to a worktree after the repository was copied or moved. A copy
        still points at the original (where `git worktree repair` sees nothing wrong), so
        both links are set to this repository's own admin folder."""
        admin = self.common_dir / "worktrees" / path.name
        link = path / ".git"
        if not admin.is_dir() or not link.is_file():
            return
        with self.locked(path):
            if link.read_text().strip() != f"gitdir: {admin}":
                link.write_text(f"gitdir: {admin}\n")
                (admin / "gitdir").write_text(f"{link}\n")
            self.repo.git.worktree("repair", str(path))

    def _stage_all(self, wt: git.Repo) -> None:
        wt.git.add("-A")

    def diff(self, worktree: Path, base_commit: str, head: str | None = None) -> str:
        """The change from base to the worktree (or to `head` when the worktree is gone)."""
        if head is not None and not worktree.exists():
            return str(self.repo.git.diff(base_commit, head, "--stat=100", "--patch"))
        wt = git.Repo(worktree)
        with self.worktree_locked(worktree):
            self._stage_all(wt)
            return str(wt.git.diff("--cached", base_commit, "--stat=100", "--patch"))

    def changed_files(self, worktree: Path, base_commit: str) -> list[str]:
        wt = git.Repo(worktree)
        with self.worktree_locked(worktree):
            self._stage_all(wt)
            out = wt.git.diff("--cached", "--name-only", base_commit)
        return [line for line in out.splitlines() if line]

    def tracked_files(self, worktree: Path) -> list[str]:
        return [line for line in git.Repo(worktree).git.ls_files().splitlines() if line]

    def restore_paths(self, worktree: Path, base_commit: str, paths: list[str]) -> None:
        """Put `paths` back as they are at the base commit (removing those it lacks)."""
        wt = git.Repo(worktree)
        with self.worktree_locked(worktree):
            in_base = set(wt.git.ls_tree("-r", "--name-only", base_commit).splitlines())
            for path in paths:
                if path in in_base:
                    wt.git.checkout(base_commit, "--", path)
                else:
                    wt.git.rm("-q", "--cached", "--ignore-unmatch", "--", path)
                    (worktree / path).unlink(missing_ok=True)

    def commit(self, worktree: Path, message: str, trailers: Mapping[str, str]) -> str:
        """Commit everything in the worktree (the harness commits, never the agent).
        Returns the head commit; with nothing to commit, the head as it is."""
        wt = git.Repo(worktree)
        with self.worktree_locked(worktree):
            self._stage_all(wt)
            if not wt.git.status("--porcelain"):
                return str(wt.head.commit.hexsha)
            text = message.rstrip() + "\n\n" + "".join(f"{k}: {v}\n" for k, v in trailers.items())
            wt.git.commit("-q", "--no-verify", "-m", text, env=self._identity(wt))
            return str(wt.head.commit.hexsha)

    def _identity(self, repo: git.Repo) -> dict[str, str]:
        reader = repo.config_reader()
        has_identity = reader.has_option("user", "name") and reader.has_option("user", "email")
        return {} if has_identity else dict(_FALLBACK_IDENTITY)

    # -- approve -------------------------------------------------------------------------
    def bring_base_in(self, worktree: Path, base_branch: str) -> bool:
        """Merge the base branch's current tip into the task branch when it has moved.
        Returns whether it had moved. On conflict, aborts and raises ReviewError."""
        wt = git.Repo(worktree)
        with self.locked(worktree):
            tip = self.repo.commit(base_branch).hexsha
            if wt.is_ancestor(wt.commit(tip), wt.head.commit):
                return False
            try:
                wt.git.merge("--no-edit", "--no-verify", tip, env=self._identity(wt))
            except git.GitCommandError:
                conflicted = wt.git.diff("--name-only", "--diff-filter=U").split()
                wt.git.merge("--abort")
                raise ReviewError(
                    f"{base_branch} has moved since the task started and its changes "
                    f"conflict with the task's in: {', '.join(conflicted) or 'unknown files'}. "
                    "Nothing was merged. Request changes so the agent rebases its work, or "
                    "resolve by hand in the task's worktree."
                ) from None
            return True

    def integrate(self, worktree: Path, base_branch: str, strategy: str, message: str) -> str:
        """Move the base branch to include the task's head (fast-forward to it, or to a
        squash commit of it). The task branch must already contain the base tip."""
        if strategy not in ("merge", "squash"):
            raise ReviewError(f"Unknown strategy {strategy!r}: use 'merge' or 'squash'.")
        wt = git.Repo(worktree)
        with self.locked(worktree):
            tip = self.repo.commit(base_branch).hexsha
            head = wt.head.commit.hexsha
            if not self.repo.is_ancestor(self.repo.commit(tip), self.repo.commit(head)):
                raise ReviewError(f"{base_branch} moved during the approve; approve again.")
            target = head
            if strategy == "squash" and head != tip:
                tree = wt.head.commit.tree.hexsha
                target = self.repo.git.commit_tree(
                    tree, "-p", tip, "-m", message, env=self._identity(self.repo)
                )
            checkout = self._checkout_of(base_branch)
            if checkout is None:
                self.repo.git.update_ref(f"refs/heads/{base_branch}", target, tip)
                return target
            self._refuse_dirty_overlap(checkout, tip, target, base_branch)
            git.Repo(checkout).git.merge("--ff-only", "-q", target)
            return target

    def _checkout_of(self, branch: str) -> Path | None:
        """The working tree where `branch` is checked out, if any."""
        ref = f"refs/heads/{branch}"
        current: Path | None = None
        for line in self.repo.git.worktree("list", "--porcelain").splitlines():
            if line.startswith("worktree "):
                current = Path(line[len("worktree ") :])
            elif line == f"branch {ref}":
                return current
        return None

    def _refuse_dirty_overlap(self, checkout: Path, tip: str, target: str, branch: str) -> None:
        user = git.Repo(checkout)
        dirty = set()
        for line in user.git.status("--porcelain", "-z").split("\0"):
            if len(line) > 3:
                dirty.add(line[3:])
        touched = set(self.repo.git.diff("--name-only", tip, target).splitlines())
        overlap = sorted(dirty & touched)
        if overlap:
            raise ReviewError(
                f"Your checkout of {branch} at {checkout} has uncommitted changes in files "
                f"this task changes: {', '.join(overlap)}. Nothing was merged. Commit or "
                "stash them, then approve again."
            )

    # -- reject ------------------------------------------------------------------------
    def archive(self, task_id: str, branch: str, worktree: Path) -> str:
        """Keep the branch's work under refs/delegate/archive/<id>; remove branch and
        worktree. Returns the archive ref."""
        ref = ARCHIVE_PREFIX + task_id
        with self.locked(worktree):
            if worktree.exists():
                wt = git.Repo(worktree)
                self._stage_all(wt)
                if wt.git.status("--porcelain"):
                    wt.git.commit(
                        "-q",
                        "--no-verify",
                        "-m",
                        "delegate: work in progress at reject",
                        env=self._identity(wt),
                    )
            head = self.repo.commit(branch).hexsha
            self.repo.git.update_ref(ref, head)
            self.remove_worktree(worktree)
            self.repo.git.branch("-D", branch)
        return ref

    def finish_merged(self, branch: str, worktree: Path) -> None:
        """After an approve: the work is in the base branch, so branch and worktree go."""
        with self.locked(worktree):
            self.remove_worktree(worktree)
            self.repo.git.branch("-D", branch)


def _clone_submodules(source_root: Path, worktree: Path, commit: str) -> list[str]:
    listing = subprocess.run(
        ["git", "-c", "core.fsmonitor=false", "ls-tree", "-r", "-z", commit],
        cwd=worktree,
        capture_output=True,
        check=True,
    ).stdout.decode(errors="surrogateescape")
    empty: list[str] = []
    for entry in filter(None, listing.split("\0")):
        meta, path = entry.split("\t", 1)
        _mode, kind, sha = meta.split()
        if kind != "commit":
            continue
        source, target = source_root / path, worktree / path
        if not (source / ".git").exists():
            empty.append(path)
            continue
        target.mkdir(parents=True, exist_ok=True)
        cloned = subprocess.run(
            ["git", "clone", "-q", "--no-checkout", "--no-hardlinks", str(source), str(target)],
            capture_output=True,
            check=False,
        )
        checked_out = cloned.returncode == 0 and (
            subprocess.run(
                ["git", "-c", "core.fsmonitor=false", "checkout", "-q", "--detach", sha],
                cwd=target,
                capture_output=True,
                check=False,
            ).returncode
            == 0
        )
        if not checked_out:
            _remove_tree(target)
            target.mkdir(parents=True, exist_ok=True)
            empty.append(path)
            continue
        empty += [f"{path}/{inner}" for inner in _clone_submodules(source, target, sha)]
    return empty


def _remove_tree(path: Path) -> None:
    """Remove a folder whatever modes its content has; symlinks are removed, not followed."""

    def writable_then_retry(function: object, failed: str, _: object) -> None:
        parent = os.path.dirname(failed)
        os.chmod(parent, stat.S_IRWXU)
        if os.path.isdir(failed) and not os.path.islink(failed):
            os.chmod(failed, stat.S_IRWXU)
            shutil.rmtree(failed, onerror=writable_then_retry)
        else:
            os.unlink(failed)

    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.exists():
        shutil.rmtree(path, onerror=writable_then_retry)
