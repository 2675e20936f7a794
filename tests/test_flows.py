"""End-to-end flows through the Python API: outcome -> agent (real SDK, scripted fake
model) -> harness checks -> review -> approve / reject / request changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import git
import pytest

from conftest import CHECK, FIX_TURNS, FIXED, Factory, commit_all, messages_sent, run_check
from jupyter_delegate import Budget, Outcome, Task, TaskState, delegate
from jupyter_delegate.errors import ReviewError, TaskNotFound
from jupyter_delegate.journal import Journal
from jupyter_delegate.manager import TaskManager


def submit(manager, repo: git.Repo, **kw):  # type: ignore[no-untyped-def]
    outcome = Outcome("Make add() add.", checks=(kw.pop("check", CHECK),), **kw)
    return manager.submit(outcome, repo=repo.working_dir)


@pytest.fixture
def in_review(repo: git.Repo, make_manager: Factory) -> Task:
    """The standard fix, run to review."""
    manager, _ = make_manager()
    task = submit(manager, repo)
    assert task.wait(timeout=60) == TaskState.REVIEW
    return task


def test_delegation_reaches_review_with_proven_checks_then_approve_merges(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, fake = make_manager()
    base = repo.head.commit.hexsha
    task = submit(manager, repo)
    assert task.wait(timeout=60) == TaskState.REVIEW

    assert [c.passed for c in task.checks] == [True]
    assert task.checks[0].command == CHECK and task.checks[0].exit_code == 0
    assert task.summary == "add() subtracted; it now adds."
    assert "+    return a + b" in task.diff() and "-    return a - b" in task.diff()
    assert task.usage.steps == 5 and task.usage.cost_usd > 0
    assert task.sandbox in ("bubblewrap", "none")
    # the user's checkout is untouched before approve
    assert (Path(repo.working_dir) / "calc.py").read_text() != FIXED
    assert repo.head.commit.hexsha == base
    # the harness committed with provenance trailers
    head = repo.commit(task.head_commit)
    assert f"Delegate-Task: {task.id}" in head.message
    assert "Delegate-Journal: " in head.message and "Delegate-Model: " in head.message
    # the first request carried the outcome, the tools and the cache breakpoint
    first = messages_sent(fake)[0].body
    assert "Make add() add." in first["system"] and CHECK in first["system"]
    assert {t["name"] for t in first["tools"]} == {
        "read",
        "write",
        "edit",
        "glob",
        "grep",
        "bash",
        "skill",  # the bundled skills are always there
        "finish",
    }
    assert first["cache_control"] == {"type": "ephemeral"}

    merged = task.approve()
    assert task.state == TaskState.MERGED
    assert repo.head.commit.hexsha == merged
    assert (Path(repo.working_dir) / "calc.py").read_text() == FIXED
    assert run_check(Path(repo.working_dir)) == 0
    assert not task.worktree.exists()
    assert task.branch not in [h.name for h in repo.heads]
    assert Journal(task.journal_path).verify().ok


def test_squash_approve_makes_one_commit_on_base(repo: git.Repo, make_manager: Factory) -> None:
    manager, _ = make_manager()
    base = repo.head.commit.hexsha
    task = submit(manager, repo)
    task.wait(timeout=60)
    merged = task.approve("squash")
    assert repo.commit(merged).parents[0].hexsha == base
    assert "Delegate-Task" in repo.commit(merged).message


def test_reject_archives_branch_and_keeps_base(repo: git.Repo, make_manager: Factory) -> None:
    manager, _ = make_manager()
    base = repo.head.commit.hexsha
    task = submit(manager, repo)
    task.wait(timeout=60)
    head = task.head_commit
    task.reject("not like this")
    assert task.state == TaskState.REJECTED
    assert repo.head.commit.hexsha == base
    assert repo.git.rev_parse(f"refs/delegate/archive/{task.id}") == head
    assert not task.worktree.exists()
    assert task.branch not in [h.name for h in repo.heads]
    with pytest.raises(ReviewError, match="only a task in review"):
        task.approve()


def test_request_changes_continues_the_same_conversation(
    repo: git.Repo, make_manager: Factory
) -> None:
    turns = [
        *FIX_TURNS,
        {"tools": [{"write": {"file_path": "NOTES.md", "content": "add() fixed\n"}}]},
        {"tools": [{"finish": {"summary": "Also wrote NOTES.md."}}]},
    ]
    manager, fake = make_manager(turns)
    task = submit(manager, repo)
    task.wait(timeout=60)
    task.request_changes("Please leave a note in NOTES.md.")
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert task.summary == "Also wrote NOTES.md."
    assert "NOTES.md" in task.diff()
    resumed = messages_sent(fake)[5].body["messages"]
    assert len([m for m in resumed if m["role"] == "assistant"]) == 5
    last = resumed[-1]["content"]
    assert last[0]["type"] == "tool_result"  # finish's result first, then the feedback
    assert "Please leave a note in NOTES.md." in last[-1]["text"]
    assert Journal(task.journal_path).verify().ok


def test_failing_check_command_that_does_not_exist_is_shown_failed(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager()
    task = submit(manager, repo, check="no-such-command --flag")
    assert task.wait(timeout=60) == TaskState.REVIEW
    (check,) = task.checks
    assert not check.passed and check.exit_code == 127
    assert "not found" in check.output_tail
    assert not task.checks_passed


def test_served_model_mismatch_is_flagged(repo: git.Repo, make_manager: Factory) -> None:
    turns = [{**FIX_TURNS[0], "served_model": "claude-haiku-4-5"}, *FIX_TURNS[1:]]
    manager, _ = make_manager(turns)
    task = submit(manager, repo)
    task.wait(timeout=60)
    assert "claude-haiku-4-5" in task.served_models
    assert any("differs from requested" in flag for flag in task.flags)


def test_step_budget_stops_the_agent_and_goes_to_review(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, fake = make_manager()
    outcome = Outcome("Make add() add.", checks=(CHECK,), budget=Budget(max_steps=2))
    task = manager.submit(outcome, repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert len(messages_sent(fake)) == 2
    assert "step budget" in task.summary
    assert any("step budget" in f for f in task.flags)
    assert not task.checks_passed


def test_end_turn_without_tools_ends_with_its_text_as_summary(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager([{"text": "Nothing needed: it already works."}])
    task = submit(manager, repo)
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert task.summary == "Nothing needed: it already works."
    assert task.head_commit == task.base_commit  # nothing to commit


def test_two_tasks_at_once_on_one_repo_both_merge(repo: git.Repo, make_manager: Factory) -> None:
    manager, _ = make_manager(
        lambda body, turn: [
            {"tools": [{"write": {"file_path": _name(body), "content": "x\n"}}]},
            {"tools": [{"finish": {"summary": "wrote " + _name(body)}}]},
        ][min(turn, 1)]
    )
    first = manager.submit(Outcome("Create a.txt", ("test -f a.txt",)), repo=repo.working_dir)
    second = manager.submit(Outcome("Create b.txt", ("test -f b.txt",)), repo=repo.working_dir)
    assert first.wait(timeout=60) == second.wait(timeout=60) == TaskState.REVIEW
    assert first.branch != second.branch and first.worktree != second.worktree
    first.approve()
    second.approve()  # base moved: brought in, checks re-run, merged
    root = Path(repo.working_dir)
    assert (root / "a.txt").exists() and (root / "b.txt").exists()
    assert repo.git.status("--porcelain") == ""


def _name(body: dict) -> str:  # type: ignore[type-arg]
    text = str(body["messages"][0]["content"])
    return "a.txt" if "Create a.txt" in text else "b.txt"


def test_delegate_api_uses_given_manager_and_budget_dict(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager()
    task = delegate(
        "Make add() add.",
        repo=repo.working_dir,
        checks=CHECK,
        budget={"max_steps": 10},
        manager=manager,
    )
    assert task.outcome.checks == (CHECK,) and task.outcome.budget.max_steps == 10
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert manager.get(task.id) is task
    assert manager.get(task.id, repo.working_dir) is task


def test_approve_refuses_dirty_base_files_and_keeps_user_changes(
    repo: git.Repo, in_review: Task
) -> None:
    task = in_review
    calc = Path(repo.working_dir) / "calc.py"
    calc.write_text("# my own work in progress\n" + calc.read_text())
    with pytest.raises(
        ReviewError, match=r"uncommitted changes in files this task changes: calc\.py"
    ):
        task.approve()
    assert task.state == TaskState.REVIEW
    assert calc.read_text().startswith("# my own work in progress")


def test_approve_with_unrelated_dirty_file_merges_and_keeps_it(
    repo: git.Repo, in_review: Task
) -> None:
    task = in_review
    readme = Path(repo.working_dir) / "README.md"
    readme.write_text("# proj\nmy notes\n")
    task.approve()
    assert readme.read_text() == "# proj\nmy notes\n"
    assert (Path(repo.working_dir) / "calc.py").read_text() == FIXED


def test_base_moved_cleanly_is_brought_in_and_rechecked(repo: git.Repo, in_review: Task) -> None:
    task = in_review
    (Path(repo.working_dir) / "other.txt").write_text("meanwhile\n")
    moved = commit_all(repo, "meanwhile")
    task.approve()
    assert repo.is_ancestor(moved, repo.head.commit)
    assert (Path(repo.working_dir) / "calc.py").read_text() == FIXED
    assert len(task.checks) == 1 and task.checks_passed


def test_base_moved_with_conflict_refuses_and_stays_in_review(
    repo: git.Repo, in_review: Task
) -> None:
    task = in_review
    (Path(repo.working_dir) / "calc.py").write_text("def add(a, b):\n    return b - a\n")
    moved = commit_all(repo, "conflicting")
    with pytest.raises(ReviewError, match=r"conflict.*calc\.py"):
        task.approve()
    assert task.state == TaskState.REVIEW
    assert repo.head.commit.hexsha == moved
    assert git.Repo(task.worktree).git.status("--porcelain") == ""


def test_base_moved_and_checks_fail_after_merge_refuses_unless_forced(
    repo: git.Repo, in_review: Task
) -> None:
    task = in_review
    test_file = Path(repo.working_dir) / "test_calc.py"
    test_file.write_text(test_file.read_text().replace("5)", "6)"))
    moved = commit_all(repo, "stricter test")
    with pytest.raises(ReviewError, match=r"checks fail.*Nothing was merged.*--force"):
        task.approve()
    assert task.state == TaskState.REVIEW and repo.head.commit.hexsha == moved
    # the task's own change is shown, not the user's stricter test it now contains
    assert "test_calc.py" not in task.diff() and "calc.py" in task.diff()
    with pytest.raises(ReviewError, match="not proven"):  # asked again: still refused
        task.approve()
    task.approve(force=True)
    assert task.state == TaskState.MERGED and task.forced
    assert _merged_events(task)[0]["reasons"] == [f"check `{CHECK}` failed (exit 1)"]
    assert "test_calc.py" not in task.diff()


def test_binary_files_are_named_in_the_diff_not_dumped(
    repo: git.Repo, make_manager: Factory
) -> None:
    turns = [
        {"tools": [{"bash": {"command": "printf 'PNG\\000\\001\\002' > logo.bin"}}]},
        {"tools": [{"finish": {"summary": "added a binary"}}]},
    ]
    manager, _ = make_manager(turns)
    task = manager.submit(Outcome("Add a logo"), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    diff = task.diff()
    assert "Binary files /dev/null and b/logo.bin differ" in diff
    assert "\x00" not in diff


def test_secrets_in_repo_content_reach_neither_model_history_nor_journal(
    repo: git.Repo, make_manager: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-do-not-leak-this-key-123456")
    root = Path(repo.working_dir)
    (root / "config.py").write_text(
        "KEY = 'sk-ant-api03-do-not-leak-this-key-123456'\nAWS = 'AKIAIOSFODNN7EXAMPLE'\n"
    )
    commit_all(repo, "config")
    turns = [
        {"tools": [{"read": {"file_path": "config.py"}}]},
        {"tools": [{"bash": {"command": "cat config.py; echo env=$ANTHROPIC_API_KEY"}}]},
        {"tools": [{"finish": {"summary": "read it"}}]},
    ]
    manager, fake = make_manager(turns)
    task = manager.submit(Outcome("Look at config"), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    sent = str([r.body for r in fake.requests])
    journal = task.journal_path.read_text()
    for leak in ("do-not-leak", "AKIAIOSFODNN7EXAMPLE"):
        assert leak not in sent and leak not in journal
    assert "[REDACTED]" in sent and "env=\\n" in str(messages_sent(fake)[2].body["messages"][-1])


# -- done is proven: approve merges only proven work, unless forced -------------------------
NOTE = {"write": {"file_path": "NOTES.md", "content": "what I tried\n"}}
GIVE_UP = [{"tools": [NOTE]}, {"tools": [{"finish": {"summary": "Could not fix it."}}]}]


def _merged_events(task: Task) -> list[dict]:  # type: ignore[type-arg]
    return [e.data for e in Journal(task.journal_path).events() if e.type == "merged"]


def test_approve_refuses_failing_checks_saying_why_and_how_to_override(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager(GIVE_UP)
    base = repo.head.commit.hexsha
    task = submit(manager, repo)
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert not task.proven
    with pytest.raises(ReviewError) as refused:
        task.approve()
    message = str(refused.value)
    assert f"check `{CHECK}` failed (exit 1)" in message
    assert "Nothing was merged" in message
    assert "approve(force=True)" in message and f"approve {task.id} --force" in message
    assert task.state == TaskState.REVIEW and repo.head.commit.hexsha == base
    assert task.branch in [h.name for h in repo.heads] and task.worktree.exists()
    assert _merged_events(task) == []


def test_force_merges_unproven_work_and_the_journal_records_why(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager(GIVE_UP)
    task = submit(manager, repo)
    task.wait(timeout=60)
    merged = task.approve(force=True)
    assert task.state == TaskState.MERGED and repo.head.commit.hexsha == merged
    (event,) = _merged_events(task)
    assert event["forced"] is True
    assert event["reasons"] == [f"check `{CHECK}` failed (exit 1)"]
    assert task.forced and task.to_record()["forced"] is True
    assert any("merged without proof (forced)" in flag for flag in task.flags)
    # another process folds the same fact from the journal
    again = TaskManager().get(task.id, repo.working_dir)
    assert again.forced and again.forced_reasons == event["reasons"]


def test_force_on_proven_work_is_an_ordinary_approve(repo: git.Repo, in_review: Task) -> None:
    in_review.approve(force=True)
    (event,) = _merged_events(in_review)
    assert event["forced"] is False and "reasons" not in event
    assert not in_review.forced


def test_a_task_without_checks_is_not_proven(repo: git.Repo, make_manager: Factory) -> None:
    manager, _ = make_manager([{"tools": [{"finish": {"summary": "done"}}]}])
    task = manager.submit(Outcome("Tidy the README."), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    with pytest.raises(ReviewError, match="it has no checks, so nothing proves it works"):
        task.approve()
    assert task.state == TaskState.REVIEW


def test_a_task_stopped_by_a_budget_is_not_proven_even_if_its_checks_pass(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager([{"tools": [NOTE]}, *FIX_TURNS])  # one step: a change
    outcome = Outcome("Make add() add.", checks=("true",), budget=Budget(max_steps=1))
    task = manager.submit(outcome, repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert task.checks_passed and not task.proven
    with pytest.raises(ReviewError, match=r"the step budget \(1 steps\) stopped the agent"):
        task.approve()
    task.approve(force=True)
    assert "step budget" in _merged_events(task)[0]["reasons"][0]


def test_after_the_base_moved_the_diff_is_the_tasks_own_change(
    repo: git.Repo, in_review: Task
) -> None:
    from jupyter_delegate.notebook.record import compact_record

    task = in_review
    root = Path(repo.working_dir)
    (root / "user.txt").write_text("the user's own work\n")
    commit_all(repo, "the user's commit, made while the task ran")
    assert "user.txt" not in task.diff() and "calc.py" in task.diff()
    task.approve()  # the base is brought in, the checks re-run, then merged
    assert (root / "user.txt").exists() and (root / "calc.py").read_text() == FIXED
    diff = task.diff()
    assert "user.txt" not in diff and "+    return a + b" in diff
    assert [row["file"] for row in compact_record(task)["diffstat"]] == ["calc.py"]


def test_a_protected_file_the_user_committed_to_the_moved_base_survives_the_next_round(
    repo: git.Repo, make_manager: Factory
) -> None:
    """The harness undoes the agent's changes to protected files; the user's, brought into
    the task with the moved base, are not the agent's and stay."""
    turns = [*FIX_TURNS, {"tools": [{"finish": {"summary": "Nothing more to do."}}]}]
    manager, _ = make_manager(turns)
    task = submit(manager, repo)
    assert task.wait(timeout=60) == TaskState.REVIEW
    root = Path(repo.working_dir)
    (root / ".gitlab-ci.yml").write_text("test: {script: [make test]}\n")
    test_file = root / "test_calc.py"
    test_file.write_text(test_file.read_text().replace("5)", "6)"))
    commit_all(repo, "the user's CI file, and a stricter test")
    with pytest.raises(ReviewError, match="not proven"):
        task.approve()  # the base is brought in; the stricter test fails
    task.request_changes("Look again.")
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert not any(".gitlab-ci.yml" in flag for flag in task.flags)
    task.approve(force=True)
    assert (root / ".gitlab-ci.yml").read_text() == "test: {script: [make test]}\n"


def test_a_name_this_process_gave_tasks_in_two_repositories_is_ambiguous_and_says_so(
    repo: git.Repo, make_manager: Factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_path = tmp_path / "other"
    shutil.copytree(repo.working_dir, other_path)
    manager, _ = make_manager([*FIX_TURNS, *FIX_TURNS])
    outcome = Outcome("Make add() add.", checks=(CHECK,))
    one = manager.submit(outcome, repo=repo.working_dir, name="fix")
    two = manager.submit(outcome, repo=other_path, name="fix")
    monkeypatch.chdir(tmp_path)  # no repository here: the name alone must say which
    with pytest.raises(TaskNotFound) as refused:
        manager.get("fix")
    message = str(refused.value)
    assert "2 tasks of this process are named 'fix'" in message
    assert f"{one.id} (in {one.repo})" in message and f"{two.id} (in {two.repo})" in message
    assert manager.get("fix", other_path) is two and manager.get(one.id, one.repo) is one
    for task in (one, two):
        task.wait(timeout=60)
