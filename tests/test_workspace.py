"""Workspace: which git work waits for which, and the base read from HEAD."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import git
import pytest

from jupyter_delegate.errors import RepoError, ReviewError
from jupyter_delegate.workspace import Workspace, pinned_git


def _worktrees(repo: git.Repo, n: int) -> tuple[Workspace, list[Path]]:
    workspace = Workspace(repo.working_dir)
    base = workspace.resolve_base(None)[1]
    return workspace, [workspace.create(f"t{i}", "work", base).path for i in range(n)]


def test_base_is_a_branch_checked_out_or_named(repo: git.Repo) -> None:
    head = repo.head.commit.hexsha
    assert Workspace(repo.working_dir).resolve_base(None) == ("main", head)
    assert Workspace(repo.working_dir).resolve_base("refs/heads/main") == ("main", head)
    repo.git.checkout("--detach")
    with pytest.raises(RepoError, match="detached"):
        Workspace(repo.working_dir).resolve_base(None)
    assert Workspace(repo.working_dir).resolve_base("main") == ("main", head)


def test_the_base_read_from_heads_file_is_the_branch_git_names(repo: git.Repo) -> None:
    repo.git.checkout("-q", "-b", "feature/a-deep-name")
    head = repo.head.commit.hexsha
    assert Workspace(repo.working_dir).resolve_base(None) == ("feature/a-deep-name", head)
    assert repo.active_branch.name == "feature/a-deep-name"
    workspace = Workspace(repo.working_dir)  # opened, then its branch loses every commit
    repo.git.checkout("-q", "--orphan", "empty")
    with pytest.raises(RepoError, match=r"empty .* has no commits yet"):
        workspace.resolve_base(None)


def test_tasks_commit_side_by_side_while_the_repository_is_busy(repo: git.Repo) -> None:
    workspace, (first, second) = _worktrees(repo, 2)
    (first / "a.txt").write_text("a\n")
    (second / "b.txt").write_text("b\n")
    held, release = threading.Event(), threading.Event()

    def hold(lock: object) -> None:
        with lock:  # type: ignore[attr-defined]
            held.set()
            release.wait(30)

    # Someone holds the repository (say, creating a worktree): work inside a worktree
    # goes on.
    holder = threading.Thread(target=hold, args=(workspace.locked(),))
    holder.start()
    held.wait(10)
    done: list[object] = []

    def work() -> None:
        workspace.stage(first)
        done.append(workspace.commit(first, "first", {"Delegate-Task": "t0"}))
        done.append([c.path for c in workspace.stage(second).changes])

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    worker.join(20)
    finished_while_held = not worker.is_alive()
    release.set()
    holder.join()
    worker.join(20)
    assert finished_while_held
    assert done == [git.Repo(first).head.commit.hexsha, ["b.txt"]]
    # Someone works inside the second worktree: archiving it waits for them.
    held.clear()
    release.clear()
    holder = threading.Thread(target=hold, args=(workspace.worktree_locked(second),))
    holder.start()
    held.wait(10)
    archived = threading.Thread(
        target=workspace.archive, args=("t1", "delegate/t1-work", second), daemon=True
    )
    archived.start()
    archived.join(0.5)
    assert archived.is_alive() and second.exists()
    release.set()
    archived.join(10)
    holder.join()
    assert not second.exists()
    assert repo.git.rev_parse("refs/delegate/archive/t1")


def test_worktrees_created_at_once_all_succeed(repo: git.Repo) -> None:
    # `git worktree add` beside another one can fail (it reads the other's half-written
    # admin files), so git's records of a worktree are made one at a time; the files are
    # checked out after, many at once. Each task has its own Workspace, as in the manager
    # (a GitPython Repo is not shared between threads).
    root = Path(repo.working_dir)
    for n in range(200):  # enough files that the checkouts overlap
        folder = root / "src" / f"d{n // 50}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{n}.txt").write_text(f"file {n}\n")
    repo.git.add("-A")
    repo.index.commit("files")
    base = repo.head.commit.hexsha
    with ThreadPoolExecutor(16) as pool:
        made = list(
            pool.map(lambda i: Workspace(repo.working_dir).create(f"c{i}", "x", base), range(16))
        )
    listed = repo.git.worktree("list", "--porcelain").count("\nworktree ")
    assert listed == 16
    for i, worktree in enumerate(made):
        tree = git.Repo(worktree.path)
        assert tree.head.commit.hexsha == base
        assert tree.active_branch.name == f"delegate/c{i}-x" == worktree.branch
        assert tree.git.status("--porcelain") == ""  # index and files are the commit's
        assert (worktree.path / "src" / "d3" / "f199.txt").read_text() == "file 199\n"
        assert len(tree.git.ls_files().splitlines()) == 203


@pytest.mark.parametrize(
    ("path", "ignored"), [("out/data.txt", False), ("local.cfg", True), ("out/data.txt", True)]
)
def test_fast_forward_refuses_over_the_users_untracked_or_ignored_files(
    repo: git.Repo, path: str, ignored: bool
) -> None:
    # git's own merge overwrites an ignored file without a word, and names an untracked
    # one in a new folder only as a GitCommandError; either is the user's work.
    root = Path(repo.working_dir)
    tip = repo.head.commit.hexsha
    repo.git.checkout("-q", "-b", "side")
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text("the agent's\n")
    repo.git.add("-f", path)
    repo.git.commit("-q", "-m", "side")
    target = repo.head.commit.hexsha
    repo.git.checkout("-q", "main")
    (root / path).parent.mkdir(parents=True, exist_ok=True)
    (root / path).write_text("the user's\n")
    if ignored:
        (root / ".git" / "info" / "exclude").write_text(path + "\n")
    with pytest.raises(ReviewError, match=path):
        Workspace(root).fast_forward("main", tip, target)
    assert (root / path).read_text() == "the user's\n"
    assert repo.head.commit.hexsha == tip


def test_a_trees_git_fails_when_the_tree_is_gone_never_acting_on_the_current_folder(
    repo: git.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancel can remove a task's tree while its round is making it: the harness's
    `reset --hard` there must fail, not run in the process's current folder (GitPython
    runs a command whose folder is gone there), the user's checkout in a kernel."""
    calc = Path(repo.working_dir) / "calc.py"
    calc.write_text("work the user has not committed\n")
    monkeypatch.chdir(repo.working_dir)
    with pytest.raises(git.GitCommandError):
        pinned_git(tmp_path / "gone").reset("--hard", "-q")
    with pytest.raises(git.GitCommandError):
        pinned_git(tmp_path / "gone").merge("--abort")
    assert calc.read_text() == "work the user has not committed\n"
    assert repo.is_dirty()


def test_approve_reads_a_gone_tree_as_gone_never_the_current_folders_repository(
    repo: git.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Which commit a task's tree holds is asked of git in the tree (`-C`): with the tree
    gone the approve fails with git's error. A `git.Repo` of the tree made before it went
    ran its commands in the current folder: here another repository."""
    workspace = Workspace(repo.working_dir)
    tree = workspace.create("t1", "read", None)
    elsewhere = git.Repo.init(tmp_path / "elsewhere", initial_branch="main")
    (tmp_path / "elsewhere" / "x").write_text("x\n")
    elsewhere.index.add(["x"])
    elsewhere.index.commit("not the task's")
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert workspace.bring_base_in(tree.path, "main") is False  # the tree there: its answer
    shutil.rmtree(tree.path)  # as a cancel racing the approve would leave it
    with pytest.raises(git.GitCommandError):
        workspace.bring_base_in(tree.path, "main")
    with pytest.raises(git.GitCommandError):
        workspace.integrate(tree.path, "main", "squash", "squash")


def test_stage_and_commit_follow_head_when_it_moves_to_a_commit_with_a_submodule(
    repo: git.Repo,
) -> None:
    """A commit's submodules are listed once and kept (workspace.gitlinks); a tree whose
    HEAD moves to a commit with a gitlink is staged by that commit's, and committing
    what stage staged needs nothing asked of git again."""
    workspace, (tree,) = _worktrees(repo, 1)
    first = workspace.stage(tree)
    assert first.submodules == frozenset() and first.changes == ()
    assert workspace.commit(tree, "nothing", {}, staged=first) == first.head  # no commit made
    # The tree's HEAD moves to a commit recording a gitlink (as a commit of its own would).
    tree_git = pinned_git(tree)
    tree_git.update_index("--add", "--cacheinfo", f"160000,{first.head},vendor/lib")
    with_link = tree_git.commit_tree(tree_git.write_tree(), "-p", first.head, "-m", "link")
    tree_git.update_ref("HEAD", with_link)
    (tree / "notes.txt").write_text("new\n")
    second = workspace.stage(tree)
    assert second.head == with_link
    assert second.submodules == frozenset({"vendor/lib"})
    assert [c.path for c in second.changes] == ["notes.txt"]
    made = workspace.commit(tree, "notes", {"Delegate-Task": "t0"}, staged=second)
    assert made != with_link
    assert repo.commit(made).parents[0].hexsha == with_link
    assert repo.git.ls_tree("-r", "--name-only", made).split() == [
        "README.md",
        "calc.py",
        "notes.txt",
        "test_calc.py",
        "vendor/lib",
    ]
    assert pinned_git(tree).rev_parse("HEAD") == made


def test_secrets_committed_later_are_found_by_reading_only_what_is_new(
    repo: git.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    """committed_secrets keeps what it read of a repository's history and reads only the
    commits new tips reach; a tip it read that git no longer has is read again in full."""
    root = Path(repo.working_dir)
    workspace = Workspace(root)
    asked: list[list[str]] = []
    read = Workspace._secrets_in

    def recorded(self: Workspace, revisions: list[str]) -> frozenset[str]:
        asked.append(list(revisions))
        return read(self, revisions)

    monkeypatch.setattr(Workspace, "_secrets_in", recorded)
    assert workspace.committed_secrets() == []
    first_tip = repo.head.commit.hexsha
    assert workspace.committed_secrets() == [] and len(asked) == 1  # nothing new: no read
    (root / ".env").write_text("DATABASE_URL=postgres://first-secret@db\n")
    repo.git.add(".env")
    repo.git.commit("-q", "-m", "a secret")
    assert workspace.committed_secrets() == ["postgres://first-secret@db"]
    assert asked[-1] == [repo.head.commit.hexsha, f"^{first_tip}"]  # only what is new
    repo.git.switch("-q", "-c", "side")
    (root / ".env").write_text("API_KEY=second-secret-value\n")
    repo.git.commit("-q", "-am", "another")
    assert Workspace(root).committed_secrets() == [  # by the repository, not the object
        "postgres://first-secret@db",
        "second-secret-value",
    ]
    # The branch goes and its commit with it: what was read is read again, in full.
    repo.git.switch("-q", "main")
    repo.git.branch("-q", "-D", "side")
    repo.git.reflog("expire", "--expire=now", "--all")
    repo.git.gc("-q", "--prune=now")
    (root / "notes.txt").write_text("a new tip\n")
    repo.git.add("notes.txt")
    repo.git.commit("-q", "-m", "moves main")
    assert workspace.committed_secrets() == ["postgres://first-secret@db"]


def test_a_shallow_clone_deepened_has_its_older_secrets_found(
    repo: git.Repo, tmp_path: Path
) -> None:
    """The history under the same tips grows when a shallow clone is deepened: what was
    kept of it is read again."""
    source = Path(repo.working_dir)
    (source / ".env").write_text("API_KEY=an-old-secret-value\n")
    repo.git.add(".env")
    repo.git.commit("-q", "-m", "a secret")
    repo.git.rm("-q", ".env")
    repo.git.commit("-q", "-m", "gone (it stays in the history)")
    clone = tmp_path / "clone"
    git.Repo.clone_from(f"file://{source}", clone, depth=1)
    workspace = Workspace(clone)
    assert workspace.committed_secrets() == []  # beyond the shallow boundary
    git.Repo(clone).git.fetch("-q", "--unshallow")
    assert workspace.committed_secrets() == ["an-old-secret-value"]
