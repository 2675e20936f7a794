"""The engine under stress: API faults, cancel mid-command, timeouts, floods of output,
and a process killed mid-task whose task resumes from its journal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import git
import pytest

from conftest import CHECK, FIX_TURNS, SANDBOX, Factory, marker_alive, marker_gone, messages_sent
from jupyter_delegate import Budget, Outcome, TaskState
from jupyter_delegate.journal import Journal
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario


def _outcome(**kw) -> Outcome:  # type: ignore[no-untyped-def]
    return Outcome("Make add() add.", checks=(CHECK,), **kw)


@pytest.mark.parametrize(
    "faults", [[{"status": 429, "retry_after": 0}], [{"status": 529}], [{"status": 500}]]
)
def test_retryable_api_errors_are_retried_by_the_sdk(
    repo: git.Repo, make_manager: Factory, faults: list
) -> None:  # type: ignore[type-arg]
    turns = [{**FIX_TURNS[0], "faults": faults}, *FIX_TURNS[1:]]
    manager, fake = make_manager(turns)
    task = manager.submit(_outcome(), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert [r.status for r in messages_sent(fake)[:2]] == [faults[0]["status"], 200]
    assert task.usage.steps == 5


@pytest.mark.parametrize("fault", [{"mid_stream_error": "overloaded_error"}, {"drop": True}])
def test_broken_stream_is_retried_once_from_the_journal(
    repo: git.Repo, make_manager: Factory, fault: dict
) -> None:  # type: ignore[type-arg]
    turns = [FIX_TURNS[0], {**FIX_TURNS[1], "faults": [fault]}, *FIX_TURNS[2:]]
    manager, fake = make_manager(turns)
    task = manager.submit(_outcome(), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    retried = [r.body["messages"] for r in messages_sent(fake) if r.turn == 1]
    assert len(retried) >= 2 and retried[0] == retried[-1]
    assert task.checks_passed
    # the broken turn left nothing half-written in the journal
    assert Journal(task.journal_path).verify().ok
    assistants = [e for e in Journal(task.journal_path).events() if e.type == "assistant"]
    assert len(assistants) == 5


def test_stream_broken_twice_fails_with_a_clear_message(
    repo: git.Repo, make_manager: Factory
) -> None:
    fault = {"mid_stream_error": "overloaded_error"}
    manager, _ = make_manager([{**FIX_TURNS[0], "faults": [fault, fault, fault]}])
    task = manager.submit(_outcome(), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.FAILED
    assert "model API failed" in task.error and "overloaded" in task.error


def test_auth_error_fails_at_once_saying_what_to_do(repo: git.Repo, make_manager: Factory) -> None:
    manager, fake = make_manager(api_key="the-right-key")
    manager._client = fake.async_client(api_key="a-wrong-key")
    task = manager.submit(_outcome(), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.FAILED
    assert "ANTHROPIC_API_KEY" in task.error
    assert len(messages_sent(fake)) == 1  # not retried


def test_cancel_during_a_long_command_leaves_no_process(
    repo: git.Repo, make_manager: Factory
) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    manager, _ = make_manager([{"tools": [{"bash": {"command": f"sleep 60; echo {marker}"}}]}])
    task = manager.submit(_outcome(), repo=repo.working_dir)
    deadline = time.monotonic() + 20
    while not marker_alive(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker_alive(marker)
    worktree = task.worktree
    task.cancel()
    assert task.wait(timeout=20) == TaskState.CANCELLED
    assert marker_gone(marker)
    assert not worktree.exists()
    assert repo.git.rev_parse(f"refs/delegate/archive/{task.id}")


def test_command_timeout_kills_and_reports(repo: git.Repo, make_manager: Factory) -> None:
    manager, fake = make_manager(
        [{"tools": [{"bash": {"command": "sleep 30", "timeout_ms": 300}}]}, FIX_TURNS[-1]]
    )
    task = manager.submit(_outcome(), repo=repo.working_dir)
    assert task.wait(timeout=30) == TaskState.REVIEW
    result = messages_sent(fake)[1].body["messages"][-1]["content"][0]
    assert result["is_error"] and "timed out after 0.3 s" in result["content"]


def test_huge_and_non_utf8_output_is_cut_and_survives(
    repo: git.Repo, make_manager: Factory
) -> None:
    command = "head -c 3000000 /dev/zero | tr '\\0' a; printf '\\xff\\xfe tail-end'"
    manager, fake = make_manager([{"tools": [{"bash": {"command": command}}]}, FIX_TURNS[-1]])
    task = manager.submit(_outcome(), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    content = messages_sent(fake)[1].body["messages"][-1]["content"][0]["content"]
    assert len(content) < 40_000 and "tail-end" in content and "\ufffd" in content
    assert "cut" in content
    assert Journal(task.journal_path).verify().ok


_CHILD = """
import sys, time
from jupyter_delegate import delegate
task = delegate("Make add() add.", repo=sys.argv[1], checks=[sys.argv[2]], sandbox=sys.argv[3])
print(task.id, flush=True)
time.sleep(120)
"""


def test_killed_process_leaves_an_interrupted_task_that_resumes_to_review(
    repo: git.Repo, tmp_path: Path
) -> None:
    marker = f"marker-{uuid.uuid4().hex}"
    turns = [{"tools": [{"bash": {"command": f"sleep 60; echo {marker}"}}]}, *FIX_TURNS]
    fake = FakeMessagesAPI(load_scenario({"name": "resume", "turns": turns}))
    with FakeServer(fake) as server:
        env = {**os.environ, "ANTHROPIC_BASE_URL": server.url}
        child = subprocess.Popen(
            [sys.executable, "-c", _CHILD, repo.working_dir, CHECK, SANDBOX],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            task_id = child.stdout.readline().strip()  # type: ignore[union-attr]
            deadline = time.monotonic() + 20
            while not marker_alive(marker) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert marker_alive(marker)
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
        subprocess.run(["pkill", "-f", marker], check=False)

        manager = TaskManager(client=fake.async_client(), sandbox=SANDBOX)
        task = manager.get(task_id, repo.working_dir)
        assert task.state == TaskState.INTERRUPTED
        assert task.worktree.exists()
        task.resume()
        assert task.wait(timeout=60) == TaskState.REVIEW
    assert task.checks_passed
    settled = messages_sent(fake)[1].body["messages"][-1]["content"][0]
    assert settled["is_error"] and "interrupted" in settled["content"]
    states = [e.data["state"] for e in Journal(task.journal_path).events() if e.type == "state"]
    assert states == ["queued", "running", "interrupted", "running", "review"]
    assert Journal(task.journal_path).verify().ok
    task.approve()
    assert json.loads(json.dumps(task.to_record()))["state"] == "merged"


def test_dollar_budget_counts_across_rounds(repo: git.Repo, make_manager: Factory) -> None:
    manager, fake = make_manager()
    task = manager.submit(_outcome(budget=Budget(max_usd=0.000001)), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert len(messages_sent(fake)) == 1 and "dollar budget" in task.summary


def test_steps_are_synced_in_the_background_and_human_facing_events_at_once(
    repo: git.Repo, make_manager: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    two_reads = {"tools": [{"read": {"file_path": "calc.py"}}, {"glob": {"pattern": "*.py"}}]}
    manager, _ = make_manager([two_reads, *FIX_TURNS])
    synced: list[tuple[str, int]] = []  # (thread, journal lines on disk) at each sync
    real_sync = os.fdatasync

    def sync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if path.endswith("journal.jsonl"):
            synced.append((threading.current_thread().name, path_lines(Path(path))))
        real_sync(fd)

    def path_lines(path: Path) -> int:
        return path.read_bytes().count(b"\n")

    monkeypatch.setattr(os, "fdatasync", sync)
    task = manager.submit(_outcome(), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    events = list(Journal(task.journal_path).events())
    assert sum(e.type == "assistant" for e in events) == 6
    assert sum(e.type == "tool_result" for e in events) == 7
    # The engine thread never waits for the disk: the steps are synced by the sync
    # thread, and the events someone acts upon (state, finish, checks, commit, context)
    # in worker threads, where the last line synced was such an event.
    assert not any(thread == "jupyter-delegate-engine" for thread, _ in synced)
    workers = {line for thread, line in synced if thread != "jupyter-delegate-journal-sync"}
    step_lines = {i for i, e in enumerate(events, 1) if e.type in ("assistant", "tool_result")}
    assert workers and not workers & step_lines
    assert any(thread == "jupyter-delegate-journal-sync" for thread, _ in synced)
    # In review, everything is on disk: the last sync covered the last line.
    assert max(line for _, line in synced) == len(events)


def test_every_prefix_of_a_journal_resumes_to_a_conversation_the_api_accepts(
    repo: git.Repo, make_manager: Factory
) -> None:
    """A machine crash keeps a prefix of the journal (steps are synced in the background,
    so the last ones may be missing): whichever line it ends at, the conversation rebuilt
    from it is one the real API accepts, so the resumed task can ask the model again."""
    from jupyter_delegate.journal import replay_messages
    from jupyter_delegate.testing.validation import validate_request

    two_reads = {"tools": [{"read": {"file_path": "calc.py"}}, {"glob": {"pattern": "*.py"}}]}
    manager, fake = make_manager([two_reads, *FIX_TURNS])
    task = manager.submit(_outcome(), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    events = list(Journal(task.journal_path).events())
    first = next(i for i, e in enumerate(events) if e.type == "user") + 1
    shape = {k: messages_sent(fake)[0].body[k] for k in ("model", "max_tokens", "system", "tools")}
    mid_step = 0  # cuts right after a turn whose tool results were lost
    for end in range(first, len(events) + 1):
        messages = replay_messages(events[:end])
        validate_request({**shape, "messages": messages})  # raises what the API would
        assert messages[-1]["role"] == "user", f"cut after line {end}: the model has no turn"
        last = events[end - 1]
        mid_step += last.type == "assistant" and any(
            b["type"] == "tool_use" for b in last.data["content"]
        )
    assert mid_step == 6


# -- every failure has a way out ----------------------------------------------------------------
DROPPED_TWICE = [FIX_TURNS[0], {**FIX_TURNS[1], "faults": [{"drop": True}, {"drop": True}]}]


def _states(task) -> list[str]:  # type: ignore[no-untyped-def]
    return [e.data["state"] for e in Journal(task.journal_path).events() if e.type == "state"]


def test_a_connection_dropped_twice_fails_transiently_and_resume_reaches_review(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, fake = make_manager([*DROPPED_TWICE, *FIX_TURNS[2:]])
    task = manager.submit(_outcome(), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.FAILED
    assert task.transient and "resume it when the connection is back" in task.error
    failed = [e.data for e in Journal(task.journal_path).events() if e.type == "state"][-1]
    assert failed["state"] == "failed" and failed["transient"] is True
    # another process sees the same, and resumes it from the journal
    again = TaskManager(client=fake.async_client(), sandbox=SANDBOX).get(task.id, repo.working_dir)
    assert again.state == TaskState.FAILED and again.transient
    again.resume()
    assert again.wait(timeout=60) == TaskState.REVIEW
    assert again.checks_passed and again.proven and not again.transient
    assert _states(again) == ["queued", "running", "failed", "running", "review"]
    assert Journal(again.journal_path).verify().ok
    again.approve()
    assert again.state == TaskState.MERGED


def test_a_failed_task_is_rejected_archiving_its_branch_and_removing_its_worktree(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager(DROPPED_TWICE)
    base = repo.head.commit.hexsha
    task = manager.submit(_outcome(), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.FAILED
    head = git.Repo(task.worktree).head.commit.hexsha
    task.reject("the API is down today")
    assert task.state == TaskState.REJECTED
    assert not task.worktree.exists()
    assert repo.git.rev_parse(f"refs/delegate/archive/{task.id}") == head
    assert task.branch not in [h.name for h in repo.heads]
    assert repo.head.commit.hexsha == base
    assert _states(task)[-2:] == ["failed", "rejected"]


def test_a_failure_that_retrying_cannot_fix_is_refused_by_resume_saying_what_to_do(
    repo: git.Repo, make_manager: Factory
) -> None:
    from jupyter_delegate.errors import ReviewError

    manager, fake = make_manager(api_key="the-right-key")
    manager._client = fake.async_client(api_key="a-wrong-key")
    task = manager.submit(_outcome(), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.FAILED
    assert not task.transient and "resume" not in task.error  # it promises no resume
    with pytest.raises(ReviewError, match=r"cannot resume.*Reject it.*refs/delegate/archive"):
        task.resume()
    assert task.state == TaskState.FAILED and len(messages_sent(fake)) == 1
    task.reject()
    assert task.state == TaskState.REJECTED and not task.worktree.exists()


@pytest.mark.parametrize(
    ("faults", "transient"),
    [
        ([{"status": 429, "retry_after": 0}] * 3, True),
        ([{"status": 529}] * 3, True),
        ([{"status": 503}] * 3, True),
        ([{"status": 400}], False),
    ],
)
def test_an_api_error_left_after_the_sdks_retries_is_transient_unless_a_bad_request(
    repo: git.Repo, make_manager: Factory, faults: list, transient: bool
) -> None:  # type: ignore[type-arg]
    manager, _ = make_manager([{**FIX_TURNS[0], "faults": faults}, *FIX_TURNS[1:]])
    task = manager.submit(_outcome(), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.FAILED
    assert task.transient is transient
    assert ("resume the task" in task.error) is transient


def test_sixteen_tasks_at_once_each_commit_their_fix_in_their_own_worktree(
    repo: git.Repo, make_manager: Factory
) -> None:
    # Worktrees made many at once (git's records one at a time, the files side by side),
    # the rounds' git work in its own threads: every task ends in review with its own
    # worktree, branch and commit; checks run for the tasks that have them, and a task
    # without checks is given no checkout for them.
    turns = [
        {"tools": [{"read": {"file_path": "calc.py"}}]},
        {
            "tools": [
                {"edit": {"file_path": "calc.py", "old_string": "a - b", "new_string": "a + b"}}
            ]
        },
        {"tools": [{"finish": {"summary": "add() now adds."}}]},
    ]
    manager, _ = make_manager(turns)
    tasks = [
        manager.submit(
            Outcome("Make add() add.", checks=(CHECK,) if n % 2 else ()), repo=repo.working_dir
        )
        for n in range(16)
    ]
    assert [task.wait(timeout=180) for task in tasks] == [TaskState.REVIEW] * 16
    base = repo.head.commit
    for n, task in enumerate(tasks):
        assert task.worktree is not None
        tree = git.Repo(task.worktree)
        assert tree.active_branch.name == task.branch
        head = tree.head.commit
        assert head.parents == (base,) and head.hexsha == task.head_commit
        assert "a + b" in (head.tree / "calc.py").data_stream.read().decode()
        assert tree.git.status("--porcelain") == ""
        checks = [e for e in manager._context(task).journal.events() if e.type == "checks"]
        if n % 2:
            assert [r["passed"] for r in checks[-1].data["results"]] == [True]
        else:
            assert checks[-1].data == {"results": [], "commit": head.hexsha, "environment": {}}
    listed = repo.git.worktree("list", "--porcelain").count("\nworktree ")
    assert listed == 16  # the tasks' own; every checkout for the checks is gone
    assert repo.head.commit == base and repo.git.status("--porcelain") == ""
