"""Git, through GitPython: a worktree and branch per task, the diff, the harness's commit,
approve (merge or squash into the base branch) and reject (archive the branch).

The user's checkout is never put at risk: nothing here writes to the base branch before
an approve, an approve refuses when the user's uncommitted changes touch the task's
files, and a reject keeps the work under `refs/delegate/archive/<id>`. Git work on the
repository as a whole (creating and removing worktrees, moving branches other than a
task's own) is serialised by a lock shared by every task of the process: `git worktree
add` is not safe beside another one (it reads the other worktree's half-written admin
files). Only that part is: a new worktree's files are checked out after, outside it.
Work inside one worktree (stage, diff, commit on the task's branch) takes that
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
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import git

from .errors import MergeConflict, RepoError, ReviewError

if TYPE_CHECKING:
    from .sandbox import GitView

ARCHIVE_PREFIX = "refs/delegate/archive/"
_FALLBACK_IDENTITY = {
    "GIT_AUTHOR_NAME": "jupyter-delegate",
    "GIT_AUTHOR_EMAIL": "delegate@localhost",
    "GIT_COMMITTER_NAME": "jupyter-delegate",
    "GIT_COMMITTER_EMAIL": "delegate@localhost",
}
_locks: dict[Path, threading.RLock] = {}  # a repository's common dir, or a worktree
_locks_guard = threading.Lock()
_gitlinks_known: dict[str, tuple[tuple[str, str, str], ...]] = {}  # by commit (gitlinks)
# What committed_secrets read, by repository (its common folder): the history's shape
# then, the tips whose whole histories were read, and the values found in them.
_secrets_read: dict[Path, tuple[tuple[bytes, ...], frozenset[str], frozenset[str]]] = {}
_OBJECT_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # a full SHA-1 or SHA-256 id


@dataclass(frozen=True)
class Worktree:
    path: Path
    branch: str
    base_branch: str | None
    base_commit: str


@dataclass(frozen=True)
class Change:
    """One path a commit of the task's tree would change, as git's raw diff says it:
    `status` A(dded), M(odified), D(eleted) or T(ype changed); modes as git writes them
    (100644, 100755, 120000 a symlink, 160000 a gitlink); blob ids."""

    path: str
    status: str
    old_mode: str
    new_mode: str
    old_sha: str
    new_sha: str


@dataclass(frozen=True)
class Staged:
    """What `Workspace.stage` staged: HEAD, the staged tree, its changes against HEAD,
    the nested repositories left out, and the submodules HEAD records."""

    head: str
    tree: str
    changes: tuple[Change, ...]
    nested: tuple[str, ...]
    submodules: frozenset[str]


@dataclass(frozen=True)
class Merged:
    """What an approve did to the base branch: it is now at `commit`, which holds the
    task's change on top of `onto`, the base branch's tip before the approve."""

    commit: str
    onto: str


# What git leaves in a checkout's git dir while an operation waits for the user, and how
# to end it.
_IN_PROGRESS = (
    ("rebase-merge", "a rebase", "git rebase --continue", "git rebase --abort"),
    ("rebase-apply", "a rebase or `git am`", "git rebase --continue", "git rebase --abort"),
    ("MERGE_HEAD", "a merge", "git commit", "git merge --abort"),
    ("CHERRY_PICK_HEAD", "a cherry-pick", "git cherry-pick --continue", "git cherry-pick --abort"),
    ("REVERT_HEAD", "a revert", "git revert --continue", "git revert --abort"),
    ("BISECT_LOG", "a bisect", "git bisect reset", "git bisect reset"),
)


# Every git command the harness runs on a task's tree runs with this configuration on
# top of the repository's: nothing in that tree may make git run a program (an
# fsmonitor, a hook, a pager, an external diff, a credential helper) or step into a
# nested repository, whose own configuration the agent could have written. The tree's
# `.gitattributes` can only name drivers the repository's configuration defines, and
# that configuration is out of the agent's reach (read-only in the sandbox).
PINNED_CONFIG = (
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.pager=cat",
    "core.untrackedCache=false",
    "diff.ignoreSubmodules=all",
    "status.submoduleSummary=false",
    "submodule.recurse=false",
    "protocol.allow=never",
    "credential.helper=",
    "core.sshCommand=false",
)
PINNED_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_PAGER": "cat",
    "GIT_OPTIONAL_LOCKS": "0",
}
_UNSET_ENV = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_EXTERNAL_DIFF", "GIT_ASKPASS")
_DIFF = ("--no-ext-diff", "--no-textconv", "--ignore-submodules=all")
# Every ref, for `git log`; not `--all`, which takes in each worktree's HEAD, and a
# worktree being made at that moment has a HEAD that is not an object yet.
EVERY_REF = ("HEAD", "--branches", "--tags", "--remotes", "--glob=refs/delegate/*")
_ASSIGNMENT = re.compile(r"^\s*(?:export\s+)?[A-Za-z_][A-Za-z0-9_.-]*\s*[=:]\s*(.+?)\s*$")


def pinned_argv(*args: str) -> list[str]:
    """A git command line with PINNED_CONFIG, for what runs git directly (with stdin);
    run it with `pinned_env()`."""
    return ["git", *(arg for item in PINNED_CONFIG for arg in ("-c", item)), *args]


def pinned_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _UNSET_ENV}
    return {**env, **PINNED_ENV}


def commit_tree(
    runner: git.Git, tree: str, parents: Sequence[str], message: str, env: Mapping[str, str]
) -> str:
    """`git commit-tree` with the message on its standard input: as an argument, a message
    over the system's limit for one (128 KiB on Linux: a long goal or summary) fails."""
    with tempfile.TemporaryFile() as stream:
        stream.write(message.encode("utf-8", "surrogateescape"))
        stream.seek(0)
        made = runner.commit_tree(
            tree, *(arg for p in parents for arg in ("-p", p)), "-F", "-", istream=stream, env=env
        )
    return str(made).strip()


def pinned_git(worktree: Path) -> git.Git:
    """A git command runner for a task's tree, with PINNED_CONFIG and PINNED_ENV. Git
    itself changes to the tree (`-C`), so a tree that is gone (removed by a cancel while a
    round was making it) fails the command: GitPython alone runs a command whose folder
    does not exist in the process's current folder, where `reset --hard` or `merge` would
    act on whatever checkout the user's kernel or shell is in."""
    runner = git.Git(worktree)
    runner.set_persistent_git_options(C=str(worktree), c=list(PINNED_CONFIG))
    runner.update_environment(**PINNED_ENV, **dict.fromkeys(_UNSET_ENV))
    return runner


def _tree_head(worktree: Path) -> str:
    """The commit a task's tree has checked out, read from its own HEAD. Git answers in
    the tree (`-C`): a tree that is gone fails, where a `git.Repo` of it would have run
    its commands in the process's current folder (see `pinned_git`)."""
    return str(pinned_git(worktree).rev_parse("--verify", "HEAD^{commit}")).strip()


def nested_repositories(worktree: Path, submodules: set[str] | frozenset[str]) -> list[str]:
    """The folders under `worktree` holding a `.git` of their own (a folder, or a file
    pointing anywhere), other than the `submodules` the tree records; not descended into
    and never a symlink followed."""
    found: list[str] = []
    for folder, dirs, files in os.walk(worktree):
        relative = os.path.relpath(folder, worktree)
        if relative != "." and (".git" in dirs or ".git" in files):
            if relative not in submodules:
                found.append(Path(relative).as_posix())
            dirs[:] = []
            continue
        dirs[:] = [d for d in dirs if not (relative == "." and d == ".git")]
    return sorted(found)


def gitlinks(cwd: Path, commit: str) -> tuple[tuple[str, str, str], ...]:
    """(mode, sha, path) of each submodule (gitlink) `commit` records, by `git ls-tree`
    in `cwd`. A commit's listing never changes, so one named by its full object id is
    kept: a round lists its base when it makes the worktree and HEAD when it stages,
    the same commit unless it committed (one `ls-tree -r` of the whole tree for both)."""
    if (known := _gitlinks_known.get(commit)) is not None:
        return known
    listing = subprocess.run(
        pinned_argv("ls-tree", "-r", "-z", commit),
        cwd=cwd,
        capture_output=True,
        check=True,
        env=pinned_env(),
    ).stdout.decode(errors="surrogateescape")
    found = []
    for entry in filter(None, listing.split("\0")):
        meta, path = entry.split("\t", 1)
        mode, kind, sha = meta.split()
        if kind == "commit":
            found.append((mode, sha, path))
    if _OBJECT_ID.fullmatch(commit):
        with _locks_guard:
            _gitlinks_known[commit] = tuple(found)
            while len(_gitlinks_known) > 256:
                del _gitlinks_known[next(iter(_gitlinks_known))]
    return tuple(found)


def _staged_gitlink(tree_git: git.Git, path: str) -> bool:
    staged = tree_git.ls_files("-s", "-z", "--", f":(literal){path}")
    return any(e.startswith("160000 ") for e in staged.split("\0") if e)


def _entries(tree_git: git.Git, treeish: str, paths: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(mode, blob id) of each of `paths` in `treeish` that has it."""
    if not paths:
        return {}
    specs = [f":(literal){p}" for p in paths]
    listing = tree_git.ls_tree("-r", "-z", "--full-tree", treeish, "--", *specs)
    found = {}
    for entry in filter(None, listing.split("\0")):
        meta, path = entry.split("\t", 1)
        mode, _kind, sha = meta.split()
        found[path] = (mode, sha)
    return found


def _parse_raw(raw: str) -> list[Change]:
    """`git diff-tree -r -z --raw --no-renames` output: `:old new oldsha newsha S\0path\0`."""
    fields = raw.split("\0")
    changes = []
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        if not meta.startswith(":"):
            continue
        old_mode, new_mode, old_sha, new_sha, status = meta[1:].split()
        changes.append(Change(path, status[0], old_mode, new_mode, old_sha, new_sha))
    return changes


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


def _admin_candidates(admins: Path, name: str) -> Iterator[Path]:
    """The admin folder git names after the worktree, then (only if that one is not it)
    every admin folder: a listing per call would grow with the tasks of the repository."""
    yield admins / name
    if admins.is_dir():
        yield from sorted(admins.iterdir())


class Workspace:
    """One repository as jupyter-delegate uses it."""

    def __init__(self, path: str | os.PathLike[str], *, check_head: bool = True) -> None:
        """Open the repository at (or above) `path`. RepoError when it is none, is bare,
        or (`check_head`) its HEAD names no commit yet; a caller that resolves the base
        next (`resolve_base`, which says the same) passes False and reads HEAD once."""
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
            if check_head:
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

    def _branch_checked_out(self) -> str | None:
        """The branch HEAD names, from HEAD's own file (`ref: refs/heads/NAME`); None when
        it names anything else (detached, say) or cannot be read: ask GitPython then."""
        try:
            text = (Path(self.repo.git_dir) / "HEAD").read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None
        name = text.removeprefix("ref: refs/heads/")
        return name if name != text and name else None

    def resolve_base(self, base: str | None) -> tuple[str, str]:
        """(branch name, commit sha) of the base a task starts from: the branch checked out
        here, or `base`. An approved task is merged into that branch, so a base that is no
        branch (a detached HEAD, a tag, a commit) is refused, as is a checkout in the middle
        of a merge, rebase, cherry-pick, revert or bisect (its HEAD is not what the user
        will have). RepoError says what to do; nothing is created."""
        self._refuse_operation_in_progress()
        if base is None and (branch := self._branch_checked_out()) is not None:
            try:  # the common case: HEAD's file read, no listing
                return branch, self._head_commit()
            except ValueError:
                raise RepoError(
                    f"The branch {branch} checked out in {self.root} has no commits yet. "
                    "Commit something first, or check out a branch that has commits."
                ) from None
        branches = [h.name for h in self.repo.heads]
        listed = ", ".join(branches) or "none"
        if base is None:
            head = self._head_commit()
            if self.repo.head.is_detached:
                raise RepoError(
                    f"HEAD in {self.root} is detached (at {head[:10]}), so an approved task "
                    "would have no branch to be merged into. Check out a branch first "
                    "(`git switch BRANCH`), or pass base=BRANCH (`--base BRANCH`) to start "
                    f"from one (branches: {listed})."
                )
            return self.repo.active_branch.name, head
        name = base.removeprefix("refs/heads/")
        if name in branches:
            return name, git.SymbolicReference.dereference_recursive(
                self.repo, f"refs/heads/{name}"
            )
        try:
            commit = self.repo.commit(base).hexsha
        except (git.BadName, ValueError, git.GitCommandError):
            raise RepoError(
                f"Unknown base {base!r} in {self.root}. Pass a branch that exists "
                f"(branches: {listed})."
            ) from None
        what = "a tag" if base in {t.name for t in self.repo.tags} else "not a branch"
        raise RepoError(
            f"Base {base!r} is {what} (commit {commit[:10]}): an approved task is merged into "
            f"its base branch, so there would be nothing to merge into. Pass base= a branch "
            f"(branches: {listed}), or make one there first: `git branch NAME {base}`, then "
            "base=NAME (`--base NAME`)."
        )

    def _refuse_operation_in_progress(self) -> None:
        try:  # one listing, not a stat a marker: a submit onto a busy engine pays per call
            present = set(os.listdir(self.repo.git_dir))
        except OSError:
            present = set()
        for marker, what, go_on, abort in _IN_PROGRESS:
            if marker in present:
                raise RepoError(
                    f"{what.capitalize()} is in progress in {self.root}, so its HEAD is not "
                    f"settled. Finish it (`{go_on}`) or abort it (`{abort}`), then delegate "
                    "again."
                )

    def has_branch(self, branch: str) -> bool:
        return branch in {h.name for h in self.repo.heads}

    def change_start(self, base_commit: str, base_branch: str | None, head: str | None) -> str:
        """Where a task's own change starts: the merge base of its base branch's tip and
        its head commit, as in `git diff BASE...TASK`. Commits made to the base branch
        since the task started, and brought into the task by an approve, are then not
        counted as the task's. `base_commit` when the task has no commit of its own yet,
        the branch is gone, or they share no history."""
        if head is None or base_branch is None or not self.has_branch(base_branch):
            return base_commit
        try:
            return str(self.repo.git.merge_base(f"refs/heads/{base_branch}", head))
        except git.GitCommandError:
            return base_commit

    def changes(self, start: str, head: str) -> bool:
        """Whether `head`'s tree differs from `start`'s (a task with commits that undo each
        other has none)."""
        return bool(self.repo.git.diff("--name-only", start, head))

    # -- worktree ----------------------------------------------------------------------
    def create(self, task_id: str, slug: str, base: str | None) -> Worktree:
        """A worktree on a new branch at `base` (a branch, tag or commit; default HEAD)."""
        if base and _OBJECT_ID.fullmatch(base):  # a round's: the commit its task started from
            base_commit = base  # (GitPython would start a `git cat-file` to learn its type)
        else:
            base_commit = self.repo.commit(base).hexsha if base else self._head_commit()
        base_branch = base if base is not None and self.has_branch(base) else None
        branch = f"delegate/{task_id}-{slug}"
        path = self.worktree_path(task_id)
        # Only git's records of the worktree (its admin folder, the branch, HEAD) are made
        # under the repository's lock; the files are checked out beside other tasks'
        # (what `git worktree add` would run itself: a reset of the new tree).
        with self.locked():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.repo.git.worktree("add", "--no-checkout", "-b", branch, str(path), base_commit)
        with self.worktree_locked(path):
            pinned_git(path).reset("--hard", "--no-recurse-submodules", "-q")
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

    def git_view(self, worktree: Path) -> GitView | None:
        """The git `worktree`'s commands see (sandbox.GitView): its HEAD and index, and a
        store holding only the objects reachable from commits tasks started from or made,
        so `git log`, `git diff` and `git status` work while other branches, the stash,
        reflogs, notes and the repository's config stay out of reach. The store is shared
        by the repository's tasks and grows by a local fetch of the worktree's HEAD (the
        first one copies that history, about 1 s for 6,500 commits: bench/git_view.py;
        the next ones only what is new). None when the worktree is not one of this
        repository's."""
        from .sandbox import OBJECTS_IN_SANDBOX, GitView

        admin = self.admin_of(worktree)
        if admin is None:
            return None
        head = (admin / "HEAD").read_text().strip()
        branch = head.removeprefix("ref: ") if head.startswith("ref: refs/heads/") else None
        commit = self.repo.git.rev_parse("--verify", f"{branch or head}^{{commit}}")
        store = self._object_store(commit)
        folder = self.state_dir / "views" / admin.name
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "objects" / "info").mkdir(parents=True)
        (folder / "refs" / "heads").mkdir(parents=True)
        (folder / "objects" / "info" / "alternates").write_text(f"{OBJECTS_IN_SANDBOX}\n")
        (folder / "config").write_text(self._view_config())
        if branch is None:
            (folder / "HEAD").write_text(f"{commit}\n")
        else:
            ref = folder / branch
            ref.parent.mkdir(parents=True, exist_ok=True)
            ref.write_text(f"{commit}\n")
            (folder / "HEAD").write_text(f"ref: {branch}\n")
        index = admin / "index"
        if index.is_file():
            (folder / "index").touch()  # where the worktree's own index is bound
        return GitView(folder, store / "objects", index if index.is_file() else None)

    def admin_of(self, worktree: Path) -> Path | None:
        """Git's admin folder of one of this repository's worktrees, found from git's own
        records (never from the worktree's `.git` file, which the agent could rewrite)."""
        admins = self.common_dir / "worktrees"
        link = str(worktree.resolve() / ".git")
        for admin in _admin_candidates(admins, worktree.name):
            try:
                if (admin / "gitdir").read_text().strip() == link:
                    return admin
            except OSError:
                continue
        return None

    def _object_store(self, commit: str) -> Path:
        """The shared store of what commands may read, with `commit` and its history."""
        store = self.state_dir / "objects.git"
        seen = store / "refs" / "seen" / commit
        if seen.exists():
            return store
        with _lock_of(store):
            if not (store / "objects").is_dir():
                subprocess.run(
                    pinned_argv("init", "--quiet", "--bare", str(store)),
                    env=pinned_env(),
                    check=True,
                    capture_output=True,
                )
            subprocess.run(
                pinned_argv(
                    *("-c", "protocol.file.allow=always", "-c", "gc.auto=0"),
                    *("-c", "maintenance.auto=false", "-C", str(store), "fetch", "--quiet"),
                    *("--no-tags", "--no-write-fetch-head", "--no-recurse-submodules"),
                    str(self.common_dir),
                    f"{commit}:refs/seen/{commit}",
                ),
                env=pinned_env(),
                check=True,
                capture_output=True,
            )
        return store

    def _view_config(self) -> str:
        """A git dir's config for commands: the repository's format and how its files are
        stored, nothing that names a program, a remote or a credential."""
        reader = self.repo.config_reader("repository")
        lines = ["[core]", "\tbare = false"]
        for key in ("filemode", "symlinks", "ignorecase", "precomposeunicode"):
            if reader.has_option("core", key):
                lines.append(f"\t{key} = {reader.get_value('core', key)}")
        version = reader.get_value("core", "repositoryformatversion", 0)
        lines.append(f"\trepositoryformatversion = {version}")
        if reader.has_option("extensions", "objectformat"):
            lines += [
                "[extensions]",
                f"\tobjectformat = {reader.get_value('extensions', 'objectformat')}",
            ]
        return "\n".join(lines) + "\n"

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
            views = self.state_dir / "views"
            if views.is_dir():  # the views of worktrees that are gone
                for view in views.iterdir():
                    if not (self.common_dir / "worktrees" / view.name).is_dir():
                        shutil.rmtree(view, ignore_errors=True)

    def repair_worktree(self, path: Path) -> None:
        """Mend git's links to a worktree after the repository was copied or moved. A copy
        still points at the original (where `git worktree repair` sees nothing wrong), so
        both links are set to this repository's own admin folder."""
        admin = self.common_dir / "worktrees" / path.name
        link = path / ".git"
        if not admin.is_dir() or not link.is_file():
            return
        with self.locked(path):
            try:
                if link.read_text().strip() != f"gitdir: {admin}":
                    link.write_text(f"gitdir: {admin}\n")
                    (admin / "gitdir").write_text(f"{link}\n")
                self.repo.git.worktree("repair", str(path))
            except (OSError, git.GitCommandError):
                return  # removed meanwhile (another process merged or rejected the task)

    def committed_secrets(self) -> list[str]:
        """The values in every version of every secret file (`.env*`) ever committed to
        any ref: commands can read the history (`git show HEAD~3:.env`), so these are
        redacted like the environment's credentials. Longest first. Every round asks, and
        reading a long history is seconds (4.7 s for 20,000 commits), so what was read is
        kept for the repository: under the same tips the same commits are reachable, and
        the next call reads only the commits its new tips reach (`git log NEW --not
        READ`). Unless what makes a history other than its tips changed: a shallow
        clone deepened, grafts, replace refs (`_history_shape`); then all of it again."""
        tips = frozenset(self.repo.git.rev_parse(*EVERY_REF).split())
        shape = self._history_shape()
        with _locks_guard:
            kept = _secrets_read.get(self.common_dir)
        read, known = (
            (kept[1], kept[2]) if kept and kept[0] == shape else (frozenset(), frozenset())
        )
        if read and tips <= read:
            return sorted(known, key=len, reverse=True)
        try:
            found = self._secrets_in([*sorted(tips - read), *(f"^{tip}" for tip in sorted(read))])
        except git.GitCommandError:  # a tip read before is gone from the store: read all
            known = frozenset()
            found = self._secrets_in(sorted(tips))
        values = known | found
        with _locks_guard:  # the tips now (what older ones reached is in `values` already)
            _secrets_read[self.common_dir] = (shape, tips, values)
        return sorted(values, key=len, reverse=True)

    def _history_shape(self) -> tuple[bytes, ...]:
        """What, besides its tips, decides which commits a repository's history holds:
        the shallow boundary, grafts and the replace refs (loose and packed)."""
        parts = []
        for name in ("shallow", "info/grafts", "packed-refs"):
            try:
                text = (self.common_dir / name).read_bytes()
            except OSError:
                text = b""
            if name == "packed-refs":  # only its replace refs
                text = b"\n".join(line for line in text.splitlines() if b" refs/replace/" in line)
            parts.append(text)
        replace = self.common_dir / "refs" / "replace"
        if replace.is_dir():
            for path in sorted(replace.rglob("*")):
                parts.append(
                    str(path).encode() + b"=" + (path.read_bytes() if path.is_file() else b"")
                )
        return tuple(parts)

    def _secrets_in(self, revisions: Sequence[str]) -> frozenset[str]:
        """The values `committed_secrets` looks for, in the commits `revisions` (given as
        `git log --stdin` takes them) reach."""
        with tempfile.TemporaryFile() as stream:
            stream.write("".join(f"{revision}\n" for revision in revisions).encode())
            stream.seek(0)
            patch = self.repo.git.log(
                "--stdin", "-p", "--format=", *_DIFF, "--", ":(glob,icase)**/.env*", istream=stream
            )
        values = set()
        for line in patch.splitlines():
            if line[:1] not in "+-" or line.startswith(("+++", "---")):
                continue
            match = _ASSIGNMENT.match(line[1:])
            if match:
                value = match.group(1).strip().strip("'\"")
                if len(value) >= 8:
                    values.add(value)
        return frozenset(values)

    # -- the task's tree: staged, guarded, committed by the harness ----------------------
    def stage(self, worktree: Path) -> Staged:
        """Stage everything in the worktree except nested repositories (a folder with its
        own `.git`) and submodules (what they hold stays as HEAD records it: the agent
        cannot move a submodule), and return the staged tree's changes
        against HEAD, read from git's raw NUL-separated output with renames not collapsed:
        the exact paths, modes and blobs a commit would hold."""
        tree_git = pinned_git(worktree)
        with self.worktree_locked(worktree):
            head = tree_git.rev_parse("HEAD")
            submodules = {path for _, _, path in gitlinks(worktree, head)}
            nested = nested_repositories(worktree, submodules)
            # Submodules are never staged either: staging a moved one makes git work in
            # it, under its own configuration, which the agent can write.
            kept_out = [*nested, *sorted(submodules)]
            excluded = [f":(exclude,literal,top){path}" for path in kept_out]
            tree_git.add("-A", "--", ".", *excluded)
            for path in nested:  # an older stage may have recorded it as a gitlink
                if _staged_gitlink(tree_git, path):
                    tree_git.update_index("--force-remove", "--", path)
            for path, (mode, sha) in _entries(tree_git, head, sorted(submodules)).items():
                tree_git.update_index("--cacheinfo", f"{mode},{sha},{path}")
            tree = tree_git.write_tree()
            raw = tree_git.diff_tree("-r", "-z", "--no-renames", "--raw", f"{head}^{{tree}}", tree)
        return Staged(head, tree, tuple(_parse_raw(raw)), tuple(nested), frozenset(submodules))

    def blob_size(self, worktree: Path, sha: str) -> int:
        return int(pinned_git(worktree).cat_file("-s", sha))

    def blob_text(self, worktree: Path, sha: str, limit: int = 4096) -> str:
        data = pinned_git(worktree).cat_file("blob", sha, stdout_as_string=False)
        return bytes(data[:limit]).decode("utf-8", errors="replace")

    def commit(
        self,
        worktree: Path,
        message: str,
        trailers: Mapping[str, str],
        revert: Sequence[str] = (),
        identity: Mapping[str, str] | None = None,
        staged: Staged | None = None,
    ) -> str:
        """Commit what `stage` staged (the harness commits, never the agent), with the
        paths in `revert` put back as HEAD has them, in the commit and in the worktree.
        `identity`: the author and committer (`user_identity`; default: the repository's
        configured user). `staged`: what that `stage` returned, when nothing touched the
        index since: its HEAD, tree and changes are not asked of git again. Returns the
        new head; with nothing to commit, the head as it is."""
        tree_git = pinned_git(worktree)
        with self.worktree_locked(worktree):
            entries: dict[str, tuple[str, str]] = {}
            if staged is not None and not revert:
                head, tree, unchanged = staged.head, staged.tree, not staged.changes
            else:
                head = tree_git.rev_parse("HEAD")
                entries = _entries(tree_git, head, revert)
                for path in revert:
                    if path in entries:
                        mode, sha = entries[path]
                        tree_git.update_index("--add", "--cacheinfo", f"{mode},{sha},{path}")
                    else:
                        tree_git.update_index("--force-remove", "--", path)
                tree = tree_git.write_tree()
                unchanged = tree == tree_git.rev_parse(f"{head}^{{tree}}")
            if unchanged:
                commit = head
            else:
                text = message.rstrip() + "\n\n"
                text += "".join(f"{k}: {v}\n" for k, v in trailers.items())
                env = dict(identity) if identity is not None else self._identity()
                commit = commit_tree(tree_git, tree, [head], text, env)
                tree_git.update_ref("-m", "delegate: commit", "HEAD", commit, head)
            for path in revert:  # the worktree agrees with the commit again
                target = worktree / path
                if path in entries and entries[path][0] != "160000":
                    tree_git.checkout(commit, "--", path)
                elif target.is_symlink() or target.is_file():
                    target.unlink()
            return str(commit)

    def diff(self, worktree: Path, base_commit: str, head: str | None = None) -> str:
        """The change from `base_commit` to the worktree, its uncommitted files included
        (or to `head` when the worktree is gone). For a task's own change, pass where it
        starts (`change_start`)."""
        if head is not None and not worktree.exists():
            return str(self.repo.git.diff(*_DIFF, base_commit, head, "--stat=100", "--patch"))
        staged = self.stage(worktree)
        return str(
            pinned_git(worktree).diff(*_DIFF, base_commit, staged.tree, "--stat=100", "--patch")
        )

    def commit_diff(self, worktree: Path, start: str, end: str) -> str:
        """The change between two commits of the task's tree (nothing uncommitted)."""
        return str(pinned_git(worktree).diff(*_DIFF, start, end, "--stat=100", "--patch"))

    def file_at(self, worktree: Path, commit: str, path: str) -> str | None:
        """The text of `path` as `commit` has it; None when it has no such file."""
        try:
            data = pinned_git(worktree).cat_file("blob", f"{commit}:{path}", stdout_as_string=False)
        except git.GitCommandError:
            return None
        return bytes(data).decode("utf-8", errors="replace")

    def resolve_commit(self, worktree: Path | None, rev: str) -> str:
        """The commit `rev` names, or ReviewError when it names none."""
        runner = pinned_git(worktree) if worktree is not None and worktree.exists() else None
        try:
            if runner is not None:
                return str(runner.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}"))
            return str(self.repo.git.rev_parse("--verify", "--quiet", f"{rev}^{{commit}}"))
        except git.GitCommandError:
            raise ReviewError(
                f"{rev!r} is not a commit of this repository: give one a review round names "
                "(`Task.review_rounds()`), or leave it out for the task's whole change."
            ) from None

    def user_identity(self) -> dict[str, str] | None:
        """The user's git identity (user.name, user.email as git reads them for the user's
        checkout: its configuration and the user's, never the task's tree) as author and
        committer, or None when it has none."""
        runner = pinned_git(self.root)
        try:
            name = str(runner.config("--get", "user.name")).strip()
            email = str(runner.config("--get", "user.email")).strip()
        except git.GitCommandError:
            return None
        if not name or not email:
            return None
        return {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }

    def tracked_files(self, worktree: Path) -> list[str]:
        listing = pinned_git(worktree).ls_files("-z")
        return [line for line in listing.split("\0") if line]

    def _identity(self) -> dict[str, str]:
        reader = self.repo.config_reader()
        has_identity = reader.has_option("user", "name") and reader.has_option("user", "email")
        return {} if has_identity else dict(_FALLBACK_IDENTITY)

    # -- approve -------------------------------------------------------------------------
    def bring_base_in(self, worktree: Path, base_branch: str) -> bool:
        """Merge the base branch's current tip into the task branch when it has moved.
        Returns whether it had moved. On conflict, aborts and raises ReviewError."""
        tree_git = pinned_git(worktree)
        with self.locked(worktree):
            tip = self.repo.commit(base_branch).hexsha
            if self.repo.is_ancestor(self.repo.commit(tip), self.repo.commit(_tree_head(worktree))):
                return False
            try:
                tree_git.merge("--no-edit", "--no-verify", tip, env=self._identity())
            except git.GitCommandError:
                conflicted = tree_git.diff("--name-only", "--diff-filter=U").split()
                tree_git.merge("--abort")
                raise ReviewError(
                    f"{base_branch} has moved since the task started and its changes "
                    f"conflict with the task's in: {', '.join(conflicted) or 'unknown files'}. "
                    "Nothing was merged. Request changes so the agent rebases its work, or "
                    "resolve by hand in the task's worktree."
                ) from None
            return True

    def integrate(self, worktree: Path, base_branch: str, strategy: str, message: str) -> Merged:
        """Move the base branch to include the task's head (fast-forward to it, or to a
        squash commit of it). The task branch must already contain the base tip."""
        if strategy not in ("merge", "squash"):
            raise ReviewError(f"Unknown strategy {strategy!r}: use 'merge' or 'squash'.")
        with self.locked(worktree):
            tip = self.repo.commit(base_branch).hexsha
            head = _tree_head(worktree)
            if not self.repo.is_ancestor(self.repo.commit(tip), self.repo.commit(head)):
                raise ReviewError(f"{base_branch} moved during the approve; approve again.")
            target = head
            if strategy == "squash" and head != tip:
                tree = self.repo.commit(head).tree.hexsha
                target = commit_tree(self.repo.git, tree, [tip], message, self._identity())
            return self._fast_forward(base_branch, tip, target)

    def fast_forward(self, branch: str, tip: str, target: str) -> Merged:
        """Move `branch` from `tip` to `target`, which contains it: in the checkout that
        has it checked out (refused, nothing changed, when that checkout's uncommitted
        changes touch files the move changes), else by its ref."""
        with self.locked():
            if self.repo.commit(branch).hexsha != tip:
                raise ReviewError(f"{branch} moved meanwhile; try again.")
            return self._fast_forward(branch, tip, target)

    def _fast_forward(self, branch: str, tip: str, target: str) -> Merged:
        checkout = self._checkout_of(branch)
        if checkout is None:
            self.repo.git.update_ref(f"refs/heads/{branch}", target, tip)
            return Merged(target, tip)
        self._refuse_dirty_overlap(checkout, tip, target, branch)
        git.Repo(checkout).git.merge("--ff-only", "-q", target)
        return Merged(target, tip)

    def merge_commits(self, commits: Sequence[str], message: str) -> str:
        """One commit holding every commit of `commits` merged together, made in git's
        object store alone (no checkout, the user's untouched): the first when it already
        contains the others, a fast-forward to one that contains all before it, else merge
        commits. Raises MergeConflict naming the files two of them both changed. Runs with
        the pinned configuration: the trees merged are the agent's."""
        runner = pinned_git(self.root)
        current = commits[0]
        for other in commits[1:]:
            if self.repo.is_ancestor(self.repo.commit(other), self.repo.commit(current)):
                continue
            if self.repo.is_ancestor(self.repo.commit(current), self.repo.commit(other)):
                current = other
                continue
            try:
                out = runner.merge_tree(
                    "--write-tree", "--name-only", "--no-messages", current, other
                )
            except git.GitCommandError as exc:
                if exc.status != 1:
                    raise
                lines = str(exc.stdout).strip().strip("'").splitlines()
                files = [line.strip() for line in lines[1:] if line.strip()]
                raise MergeConflict(files) from None
            tree = out.splitlines()[0].strip()
            current = commit_tree(runner, tree, [current, other], message, self._identity())
        return current

    def set_branch(self, name: str, commit: str) -> None:
        """Create or move branch `name` to `commit` (a branch of the harness's own)."""
        with self.locked():
            self.repo.git.update_ref(f"refs/heads/{name}", commit)

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
        touched = set(
            filter(None, self.repo.git.diff("--name-only", "-z", tip, target).split("\0"))
        )
        # A file the move adds that the checkout has untracked (status names a new folder,
        # not its files) or ignored (status is silent, and git's merge overwrites it).
        added = self.repo.git.diff("--name-only", "-z", "--diff-filter=A", tip, target)
        dirty |= {p for p in added.split("\0") if p and os.path.lexists(checkout / p)}
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
                staged = self.stage(worktree)
                self.commit(worktree, "delegate: work in progress at reject", {}, staged=staged)
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
    empty: list[str] = []
    for _mode, sha, path in gitlinks(worktree, commit):
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
                pinned_argv("checkout", "-q", "--detach", sha),
                cwd=target,
                capture_output=True,
                check=False,
                env=pinned_env(),
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


DEFAULT_MAX_FILE_MB = 25.0


def leads_outside(path: str, target: str) -> bool:
    """Whether a symlink at `path` (in the repository) to `target` leads out of it."""
    if not target or target.startswith("/") or "\0" in target:
        return True
    joined = os.path.normpath(os.path.join(os.path.dirname(path), target))
    return joined == ".." or joined.startswith("../") or os.path.isabs(joined)


def max_file_mb(root: Path) -> float:
    """The largest file the harness commits, in MB: `[commit] max_file_mb` of the user's
    config.toml (default 25), which the repository's .jupyter-delegate.toml can only lower."""
    from .home import user_dir
    from .policy import REPO_CONFIG, PolicyError, read_toml

    def declared(path: Path) -> float | None:
        table = read_toml(path).get("commit", {})
        value = table.get("max_file_mb") if isinstance(table, Mapping) else None
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise PolicyError(f"{path}: [commit] max_file_mb must be a positive number of MB.")
        return float(value)

    limit = declared(user_dir() / "config.toml") or DEFAULT_MAX_FILE_MB
    repo = declared(root / REPO_CONFIG)
    return min(limit, repo) if repo is not None else limit
