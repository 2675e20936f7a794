"""Bad input at every entry point fails clearly, at once, and loses nothing."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import git
import pytest

from conftest import CHECK, FIX_TURNS, Factory, commit_all, messages_sent
from jupyter_delegate import Budget, Outcome, TaskState, delegate
from jupyter_delegate.errors import DelegateError, ModelConfigError, OutcomeError, RepoError
from jupyter_delegate.manager import TaskManager


def test_not_a_repo_is_refused_with_what_to_do(tmp_path: Path, make_manager: Factory) -> None:
    manager, fake = make_manager()
    with pytest.raises(RepoError, match=r"not inside a git repository.*git init"):
        manager.submit(Outcome("x"), repo=tmp_path)
    assert fake.requests == [] and list(tmp_path.iterdir()) == []


def test_missing_path_is_refused(tmp_path: Path, make_manager: Factory) -> None:
    manager, _ = make_manager()
    with pytest.raises(RepoError, match="does not exist"):
        manager.submit(Outcome("x"), repo=tmp_path / "nope")


def test_repo_without_commits_is_refused(tmp_path: Path, make_manager: Factory) -> None:
    git.Repo.init(tmp_path)
    manager, _ = make_manager()
    with pytest.raises(RepoError, match="no commits yet"):
        manager.submit(Outcome("x"), repo=tmp_path)
    with pytest.raises(RepoError, match=r"Unknown base 'main'.*branches: none"):
        manager.submit(Outcome("x"), repo=tmp_path, base="main")
    assert not (tmp_path / ".git" / "delegate").exists()


def test_bare_repo_is_refused(tmp_path: Path, make_manager: Factory) -> None:
    git.Repo.init(tmp_path / "b.git", bare=True)
    manager, _ = make_manager()
    with pytest.raises(RepoError, match="bare repository"):
        manager.submit(Outcome("x"), repo=tmp_path / "b.git")


def test_unknown_base_is_refused_naming_the_branches(repo: git.Repo, make_manager: Factory) -> None:
    manager, _ = make_manager()
    with pytest.raises(RepoError, match=r"Unknown base 'nope'.*branches: main"):
        manager.submit(Outcome("x"), repo=repo.working_dir, base="nope")
    assert not (Path(repo.git_dir) / "delegate").exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"goal": "  "}, "no goal"),
        ({"goal": "x", "checks": ("",)}, "non-empty string"),
        ({"goal": "x", "scope": ("../etc",)}, "relative to the repository root"),
        ({"goal": "x", "scope": ("/abs",)}, "relative to the repository root"),
    ],
)
def test_malformed_outcome_is_refused(kwargs: dict, message: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(OutcomeError, match=message):
        Outcome(**kwargs)


@pytest.mark.parametrize("bad", [{"max_steps": 0}, {"max_usd": -1}, {"max_steps": True}])
def test_bad_budget_is_refused(bad: dict) -> None:  # type: ignore[type-arg]
    with pytest.raises(OutcomeError, match="positive number"):
        Budget(**bad)


def test_unknown_budget_field_is_named() -> None:
    with pytest.raises(OutcomeError, match=r"Unknown budget field.*max_dollars"):
        Budget.from_dict({"max_dollars": 2})


def test_cell_format_parses_and_refuses_empty_keywords() -> None:
    outcome = Outcome.from_cell(
        "Add CSV export.\n\ncheck: pytest -q\ncheck: ruff check .\nscope: shop/, tests/\n"
    )
    assert outcome.goal == "Add CSV export."
    assert outcome.checks == ("pytest -q", "ruff check .")
    assert outcome.scope == ("shop/", "tests/")
    with pytest.raises(OutcomeError, match="Line 2: 'check:' has nothing after it"):
        Outcome.from_cell("Do it\ncheck:")
    with pytest.raises(OutcomeError, match="states no goal"):
        Outcome.from_cell("check: pytest")


def test_no_api_key_and_no_fake_server_says_how_to_fix(repo: git.Repo) -> None:
    manager = TaskManager(sandbox="none")
    with pytest.raises(ModelConfigError, match=r"ANTHROPIC_API_KEY.*jupyter delegate demo"):
        manager.submit(Outcome("x"), repo=repo.working_dir)
    assert not (Path(repo.git_dir) / "delegate").exists()


def test_unknown_sandbox_tier_is_refused(repo: git.Repo, make_manager: Factory) -> None:
    from jupyter_delegate.errors import SandboxUnavailable

    manager, _ = make_manager()
    with pytest.raises(SandboxUnavailable, match="none"):
        delegate("x", repo=repo.working_dir, sandbox="docker", manager=manager)


def test_three_malformed_tool_inputs_in_a_row_fail_the_task(
    repo: git.Repo, make_manager: Factory
) -> None:
    bad = {"tools": [{"edit": {"file_path": "calc.py"}}]}
    manager, fake = make_manager([bad, bad, bad, FIX_TURNS[-1]])
    task = manager.submit(Outcome("x", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.FAILED
    assert "malformed tool input 3 times in a row" in task.error
    second = messages_sent(fake)[1].body["messages"][-1]["content"][0]
    assert second["is_error"] and "invalid input" in second["content"]


def test_malformed_input_goes_back_to_the_model_which_recovers(
    repo: git.Repo, make_manager: Factory
) -> None:
    turns = [
        {"tools": [{"bash": {"timeout_ms": 5}}]},
        {"tools": [{"nonexistent_tool": {"x": 1}}]},
        *FIX_TURNS,
    ]
    manager, fake = make_manager(turns)
    task = manager.submit(Outcome("x", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    results = [messages_sent(fake)[i].body["messages"][-1]["content"][0] for i in (1, 2)]
    assert "'command' must be a non-empty string" in results[0]["content"]
    assert "Unknown tool 'nonexistent_tool'" in results[1]["content"]
    assert task.checks_passed


def test_paths_and_symlinks_escaping_the_worktree_are_refused(
    repo: git.Repo, make_manager: Factory, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    root = Path(repo.working_dir)
    (root / "link").symlink_to(secret)
    repo.git.add("-A")
    repo.git.commit("-q", "-m", "link")
    turns = [
        {"tools": [{"read": {"file_path": "../../../secret.txt"}}]},
        {"tools": [{"read": {"file_path": str(secret)}}]},
        {"tools": [{"read": {"file_path": "link"}}]},
        {"tools": [{"write": {"file_path": "link", "content": "overwritten"}}]},
        {"tools": [{"write": {"file_path": ".git", "content": "gitdir: /tmp/evil"}}]},
        {"tools": [{"finish": {"summary": "tried"}}]},
    ]
    manager, fake = make_manager(turns)
    task = manager.submit(Outcome("x"), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    results = [messages_sent(fake)[i].body["messages"][-1]["content"][0] for i in range(1, 6)]
    assert all(r.get("is_error") for r in results), results
    assert all("top secret" not in str(r["content"]) for r in results)
    assert secret.read_text() == "top secret"
    assert "outside the repository" in results[0]["content"]
    assert ".git is a protected file" in results[4]["content"]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ('[environment]\ninclude = "build"\n', "include must be a list of strings"),
        ('[environment]\ninclude = ["~/.ssh"]\n', "only paths inside the repository"),
        ('[environment]\npass_env = ["NOT A NAME"]\n', "is not a variable name"),
        ('[environment]\npassenv = ["X"]\n', "unknown key(s) in [environment]: passenv"),
        ("environment = 3\n", "[environment] must be a table"),
    ],
)
def test_a_malformed_environment_declaration_is_refused_at_submit(
    repo: git.Repo, make_manager: Factory, config: str, message: str
) -> None:
    Path(repo.working_dir, ".jupyter-delegate.toml").write_text(config)
    manager, fake = make_manager()
    with pytest.raises(DelegateError, match=re.escape(message)):
        manager.submit(Outcome("Goal.", checks=("true",)), repo=repo.working_dir)
    assert fake.requests == []
    assert not (Path(repo.git_dir) / "delegate" / "tasks").exists()


def test_an_include_of_a_folder_holding_tracked_files_is_refused_at_submit(
    repo: git.Repo, make_manager: Factory
) -> None:
    """Submit no longer discovers the whole environment; what discovery would refuse in a
    declaration still fails there, before anything is made."""
    Path(repo.working_dir, "src").mkdir()
    Path(repo.working_dir, "src", "lib.py").write_text("X = 1\n")
    commit_all(repo, "src")
    Path(repo.working_dir, ".jupyter-delegate.toml").write_text(
        '[environment]\ninclude = ["src"]\n'
    )
    manager, fake = make_manager()
    with pytest.raises(DelegateError, match=re.escape("src/ holds tracked files (src/lib.py")):
        manager.submit(Outcome("Goal.", checks=("true",)), repo=repo.working_dir)
    assert fake.requests == []
    assert not (Path(repo.git_dir) / "delegate" / "tasks").exists()


def test_a_repository_made_again_at_the_same_path_is_read_afresh_at_submit(
    tmp_path: Path, make_manager: Factory
) -> None:
    path = tmp_path / "again"

    def make(text: str) -> str:
        path.mkdir()
        made = git.Repo.init(path, initial_branch="main")
        (path / "notes.txt").write_text(text)
        return commit_all(made, text)

    first = make("first\n")
    manager, _ = make_manager()
    task = manager.submit(Outcome("x", checks=("true",)), repo=path)
    assert task.wait(timeout=60) == TaskState.REVIEW and task.base_commit == first
    shutil.rmtree(path)
    second = make("second\n")
    again = manager.submit(Outcome("x", checks=("true",)), repo=path)
    assert again.base_commit == second != first
    assert again.wait(timeout=60) == TaskState.REVIEW


# -- a base that cannot be merged into is refused at submit, before any model call -----------
def _nothing_created(repo: git.Repo, fake, branches: set[str]) -> None:  # type: ignore[no-untyped-def]
    assert fake.requests == []
    assert not (Path(repo.git_dir) / "delegate").exists()  # no task folder, no worktree
    assert {h.name for h in repo.heads} == branches
    assert repo.git.worktree("list", "--porcelain").count("worktree ") == 1


def test_detached_head_is_refused_saying_to_check_out_a_branch_or_pass_base(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, fake = make_manager()
    repo.git.checkout("--detach")
    with pytest.raises(RepoError, match=r"detached.*git switch BRANCH.*base=BRANCH.*--base BRANCH"):
        manager.submit(Outcome("x", checks=(CHECK,)), repo=repo.working_dir)
    _nothing_created(repo, fake, {"main"})
    # Naming the branch works: the task starts from it and is merged into it.
    task = manager.submit(Outcome("x", checks=(CHECK,)), repo=repo.working_dir, base="main")
    assert task.wait(timeout=60) == TaskState.REVIEW and task.base_branch == "main"
    merged = task.approve()
    assert repo.heads.main.commit.hexsha == merged and repo.head.is_detached


@pytest.mark.parametrize("kind", ["tag", "commit"])
def test_a_base_that_is_not_a_branch_is_refused_with_what_to_do(
    repo: git.Repo, make_manager: Factory, kind: str
) -> None:
    manager, fake = make_manager()
    repo.create_tag("v1")
    base = "v1" if kind == "tag" else repo.head.commit.hexsha[:12]
    what = "is a tag" if kind == "tag" else "is not a branch"
    with pytest.raises(RepoError, match=rf"{what}.*nothing to merge into.*git branch NAME {base}"):
        manager.submit(Outcome("x"), repo=repo.working_dir, base=base)
    _nothing_created(repo, fake, {"main"})


def _stop_in_the_middle_of(repo: git.Repo, operation: str) -> None:
    """Leave the checkout in a conflicted merge, rebase or cherry-pick."""
    root = Path(repo.working_dir)
    repo.git.checkout("-q", "-b", "other")
    (root / "README.md").write_text("# theirs\n")
    repo.git.commit("-q", "-am", "theirs")
    repo.git.checkout("-q", "main")
    (root / "README.md").write_text("# ours\n")
    repo.git.commit("-q", "-am", "ours")
    command = {"merge": ["merge"], "rebase": ["rebase"], "cherry-pick": ["cherry-pick"]}
    target = "main" if operation == "rebase" else "other"
    if operation == "rebase":
        repo.git.checkout("-q", "other")
    with pytest.raises(git.GitCommandError):
        repo.git.execute(["git", *command[operation], target])


@pytest.mark.parametrize(
    ("operation", "fix"),
    [
        ("merge", "git merge --abort"),
        ("rebase", "git rebase --abort"),
        ("cherry-pick", "git cherry-pick --abort"),
    ],
)
def test_a_checkout_in_the_middle_of_an_operation_is_refused(
    repo: git.Repo, make_manager: Factory, operation: str, fix: str
) -> None:
    _stop_in_the_middle_of(repo, operation)
    manager, fake = make_manager()
    with pytest.raises(RepoError, match=rf"{operation}.* is in progress.*`{fix}`"):
        manager.submit(Outcome("x"), repo=repo.working_dir)
    with pytest.raises(RepoError, match="in progress"):  # even when a branch is named
        manager.submit(Outcome("x"), repo=repo.working_dir, base="main")
    _nothing_created(repo, fake, {"main", "other"})
