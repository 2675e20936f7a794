"""Best-of-N (best_of.py): independent attempts at one outcome, ranked side by side;
keeping one archives the others, and the base gets that one's change only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import git
import pytest

from conftest import CALC, CHECK, FIXED, Factory, messages_sent
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate import best_of as attempts_
from jupyter_delegate.errors import ReviewError
from jupyter_delegate.options import attempt_options

S = TaskState
MODELS = ["claude-sonnet-4-6", "claude-opus-4-6", "claude-haiku-4-5"]


def by_model(body: dict[str, Any], index: int) -> dict[str, Any] | None:
    """Attempt 1 (sonnet) breaks the code; attempt 2 (opus) fixes it in one line;
    attempt 3 (haiku) fixes it and adds a file besides (a bigger diff)."""
    model = body["model"]
    edits: list[dict[str, Any]] = [
        {"edit": {"file_path": "calc.py", "old_string": "a - b", "new_string": "a * b"}}
        if model == MODELS[0]
        else {"edit": {"file_path": "calc.py", "old_string": "a - b", "new_string": "a + b"}}
    ]
    if model == MODELS[2]:
        edits.append({"write": {"file_path": "NOTES.md", "content": "add adds\nnow\n"}})
    turns = [{"tools": edits}, {"tools": [{"finish": {"summary": f"done by {model}"}}]}]
    return turns[index] if index < len(turns) else None


def test_best_of_three_ranks_the_passing_first_and_keeping_one_archives_the_others(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager(by_model)
    root = Path(repo.working_dir)
    group = attempts_.start(
        Outcome("Make add() add.", checks=(CHECK,)), 3, repo=root, models=MODELS, manager=manager
    )
    assert [t.group["index"] for t in group.tasks] == [1, 2, 3]
    assert [t.model for t in group.tasks] == MODELS
    assert all(state == S.REVIEW for state in group.wait(timeout=60))

    ranked = group.ranked()
    assert [r.index for r in ranked] == [2, 3, 1]
    best, second, failing = ranked
    assert best.proven and best.checks_passed == 1 and (best.added, best.removed) == (1, 1)
    assert second.proven and second.files == 2 and second.added == 3
    assert not failing.proven and failing.checks_passed == 0
    assert all(r.seconds is not None and r.seconds >= 0 for r in ranked)
    assert "-    return a * b" in group.diff(1, 2) and "+    return a + b" in group.diff(1, 2)
    assert "NOTES.md" in group.diff(2, 3)

    merged = group.keep(2)
    states = {t.group["index"]: manager.refresh(t).state for t in group.tasks}
    assert states == {1: S.REJECTED, 2: S.MERGED, 3: S.REJECTED}
    for index in (1, 3):
        task = group.attempt(index)
        assert repo.commit(f"refs/delegate/archive/{task.id}")  # archived, not deleted
        assert "another attempt was kept" in [
            e.data.get("reason") for e in manager._context(task).journal.events()
        ]
    assert repo.head.commit.hexsha == merged
    assert (root / "calc.py").read_text() == FIXED and not (root / "NOTES.md").exists()
    # every task knows its group, in list --json's record too
    assert group.attempt(3).to_record()["group"] == {
        "kind": "attempts",
        "id": group.id,
        "index": 3,
        "of": 3,
    }


def test_attempts_on_one_model_share_the_prompt_prefix(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, fake = make_manager(by_model)
    group = attempts_.start(
        Outcome("Make add() add.", checks=(CHECK,)),
        3,
        repo=repo.working_dir,
        models=[MODELS[1]],
        manager=manager,
    )
    group.wait(timeout=60)
    firsts = [r.body for r in messages_sent(fake) if len(r.body["messages"]) == 1]
    assert len(firsts) == 3
    # the same bytes before the conversation: system prompt and tools
    assert len({(str(b["system"]), str(b["tools"])) for b in firsts}) == 1
    reads = [t.usage.cache_read_tokens for t in group.tasks]
    assert sum(1 for r in reads if r > 0) == 3  # every attempt read cached prefix


def test_keeping_an_attempt_not_in_review_is_refused_and_nothing_changes(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager(by_model)
    group = attempts_.start(
        Outcome("Make add() add.", checks=(CHECK,)),
        2,
        repo=repo.working_dir,
        models=MODELS[:2],
        manager=manager,
    )
    group.wait(timeout=60)
    with pytest.raises(ReviewError, match="not proven"):
        group.keep(1)
    assert {manager.refresh(t).state for t in group.tasks} == {S.REVIEW}
    with pytest.raises(ReviewError, match="No attempt 7"):
        group.attempt(7)
    assert (Path(repo.working_dir) / "calc.py").read_text() == CALC


@pytest.mark.parametrize("count", [0, 9, True])
def test_a_count_out_of_range_starts_nothing(
    repo: git.Repo, make_manager: Factory, count: Any
) -> None:
    manager, fake = make_manager(by_model)
    with pytest.raises(ReviewError, match="from 1 to 8"):
        attempts_.start(Outcome("x"), count, repo=repo.working_dir, manager=manager)
    assert not fake.requests and not manager.tasks(repo.working_dir)


def test_models_without_attempts_are_refused() -> None:
    import argparse

    from jupyter_delegate.errors import UsageError

    with pytest.raises(UsageError, match="add --attempts N"):
        attempt_options(argparse.Namespace(attempts=None, models=["a", "b"], effort=None))


def test_a_second_attempt_is_not_merged_once_one_was_kept(
    repo: git.Repo, make_manager: Factory
) -> None:
    # The others are archived after the kept one is merged, as a second step; an attempt
    # that escaped it (one still running whose pause timed out, an approval racing from
    # another process) must not be merged into the base besides the kept one.
    manager, _ = make_manager(by_model)
    root = Path(repo.working_dir)
    group = attempts_.start(
        Outcome("Make add() add.", checks=(CHECK,)),
        2,
        repo=root,
        models=MODELS[1:],
        manager=manager,
    )
    assert all(state == S.REVIEW for state in group.wait(timeout=60))
    first = group.attempt(1)
    kept = manager.approve(first)  # merged; the archiving of the others not done yet
    with pytest.raises(ReviewError, match=f"attempt 1 .{first.id}. was already kept"):
        group.keep(2)
    assert repo.head.commit.hexsha == kept
    assert manager.refresh(group.attempt(2)).state == S.REVIEW
    assert not (root / "NOTES.md").exists()


def test_an_attempt_failing_to_submit_any_way_cancels_the_ones_started(
    repo: git.Repo, make_manager: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    manager, _ = make_manager(by_model)
    submitted: list[Any] = []
    real_submit = manager.submit

    def submit(*args: Any, **kwargs: Any) -> Any:
        if submitted:
            raise OSError("No space left on device")
        submitted.append(real_submit(*args, **kwargs))
        return submitted[-1]

    monkeypatch.setattr(manager, "submit", submit)
    with pytest.raises(OSError):
        attempts_.start(
            Outcome("Make add() add.", checks=(CHECK,)),
            2,
            repo=Path(repo.working_dir),
            models=MODELS[1:],
            manager=manager,
        )
    first = submitted[0]
    first.wait(timeout=60)
    assert manager.refresh(first).state == S.CANCELLED
