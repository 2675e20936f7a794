"""Pause and handoff: a task paused in one clone of a repository is written to one bundle
file (`handoff ID -o FILE`) and continued in another clone by another process (`resume
--from FILE`), which verifies the journal's chain, the branch against the journal, and
that it has the base commit, refusing clearly when one fails. Judged from outside: the
states each clone reads, the diff, `audit verify`, the journal's record of the move."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest

from conftest import CHECK, FIX_TURNS, Factory, commit_all, messages_sent, until
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate.errors import DelegateError, RepoError
from jupyter_delegate.handoff import HandoffError
from jupyter_delegate.journal import Journal
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario

# The fix, with its last model turn (the check after the edit) slow: a pause lands there.
SLOW_AFTER_EDIT = [*FIX_TURNS[:3], {**FIX_TURNS[3], "latency_ms": 60_000}, FIX_TURNS[4]]


def cli(*argv: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_delegate.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
        check=False,
    )


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The fake model over loopback, for the other process (the CLI) of the test."""
    started: list[FakeServer] = []

    def serve(turns: list[dict[str, Any]]) -> FakeMessagesAPI:
        fake = FakeMessagesAPI(load_scenario({"name": "handoff", "turns": turns}))
        server = FakeServer(fake)
        started.append(server)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        return fake

    yield serve
    for server in started:
        server.close()


def clone(repo: git.Repo, path: Path) -> git.Repo:
    return git.Repo.clone_from(repo.working_dir, path)


def submit(manager: TaskManager, repo: git.Repo) -> Any:
    outcome = Outcome("Make add() add.", checks=(CHECK,))
    return manager.submit(outcome, repo=repo.working_dir, sandbox="none")


def paused_after_edit(make_manager: Factory, repo: git.Repo) -> Any:
    """A task paused in `repo` while its model turn after the edit is in flight."""
    manager, fake = make_manager(SLOW_AFTER_EDIT)
    task = submit(manager, repo)
    until(lambda: len(messages_sent(fake)) >= 4, what="the slow model turn")
    task.pause()
    assert task.wait(timeout=30) == TaskState.PAUSED
    return task


def in_review(make_manager: Factory, repo: git.Repo) -> Any:
    manager, _ = make_manager()
    task = submit(manager, repo)
    assert task.wait(timeout=90) == TaskState.REVIEW
    return task


def events_of(path: Path) -> list[Any]:
    return list(Journal(path).events())


def nothing_received(repo: git.Repo, task_id: str) -> None:
    state = Path(repo.git_dir) / "delegate"
    assert not (state / "tasks" / task_id / "journal.jsonl").exists()
    assert not [h for h in repo.heads if h.name.startswith(f"delegate/{task_id}")]
    assert not (state / "worktrees" / task_id).exists()


def test_pause_stops_at_the_next_step_boundary_and_resume_goes_on(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, fake = make_manager([{"tools": [{"bash": {"command": "sleep 3"}}]}, *FIX_TURNS])
    task = submit(manager, repo)
    calls: list[str] = []
    task.subscribe(lambda e: calls.append(e.data["name"]) if e.kind == "tool_call" else None)
    until(lambda: calls, what="the agent's first command")
    time.sleep(1)  # into it
    task.pause()  # while the command runs: it finishes, and the task stops after it
    assert task.wait(timeout=30) == TaskState.PAUSED
    events = events_of(task.journal_path)
    result = next(e.data for e in events if e.type == "tool_result")
    assert result["exit_code"] == 0 and not result["is_error"], result  # not killed
    assert events[-1].data["reason"].startswith("paused by the user at a step boundary")
    assert len(messages_sent(fake)) == 1  # no model turn after the boundary
    task.resume()
    assert task.wait(timeout=90) == TaskState.REVIEW and task.checks_passed
    told = messages_sent(fake)[1].body["messages"][-1]["content"][0]
    assert told["type"] == "tool_result" and not told.get("is_error"), told


def test_a_paused_task_moves_to_another_clone_and_reaches_review_there(
    repo: git.Repo, make_manager: Factory, tmp_path: Path, served: Any
) -> None:
    other = clone(repo, tmp_path / "other")
    task = paused_after_edit(make_manager, repo)
    assert task.head_commit is None  # paused before the harness committed anything
    bundle = tmp_path / "task.delegate"
    out = cli("handoff", task.id, "-o", str(bundle), "--repo", repo.working_dir)
    assert out.returncode == 0, out.stderr
    assert f"Handed off task {task.id} (paused) to {bundle}" in out.stdout
    with tarfile.open(bundle) as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("manifest.json").read())  # type: ignore[union-attr]
    assert {"manifest.json", "journal.jsonl", "branch.bundle", "record.json"} <= names
    assert manifest["task"] == task.id and manifest["base_commit"] == task.base_commit
    assert manifest["from"]["path"] == str(Path(repo.working_dir).resolve())
    moved_out = events_of(task.journal_path)[-1]
    assert moved_out.type == "handoff" and moved_out.data["direction"] == "out"
    assert moved_out.data["file"] == str(bundle) and manifest["journal_head"] == moved_out.hash
    # The agent's uncommitted edit went with the branch, committed at the handoff.
    assert manifest["head"] == moved_out.data["head"] != task.base_commit
    with pytest.raises(DelegateError, match=r"was handed off to .*task\.delegate"):
        task.refresh().resume()
    shown = cli("show", task.id, "--repo", repo.working_dir)
    assert f"Handed off to {bundle}: it continues where that file is received" in shown.stdout

    served(FIX_TURNS)  # the other machine's model answers from the check after the edit on
    out = cli("resume", "--from", str(bundle), "--repo", other.working_dir, "--no-approve")
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"Received task {task.id}" in out.stdout and "PASS " + CHECK in out.stdout

    there = TaskManager(sandbox="none").get(task.id, other.working_dir)
    assert there.state == TaskState.REVIEW and there.checks_passed
    assert there.summary == "add() subtracted; it now adds."
    diff = there.diff()
    assert "-    return a - b" in diff and "+    return a + b" in diff
    moved = [e.data for e in events_of(there.journal_path) if e.type == "handoff"]
    assert [m["direction"] for m in moved] == ["out", "in"]
    assert moved[1]["source"]["path"] == str(Path(repo.working_dir).resolve())
    assert moved[1]["target"]["path"] == str(Path(other.working_dir).resolve())
    assert moved[1]["at"] and moved[1]["file"] == str(bundle)
    assert any(f.startswith("handed off from ") for f in there.flags), there.flags
    for clone_ in (other, repo):
        audited = cli("audit", "verify", "--repo", clone_.working_dir)
        assert audited.returncode == 0, audited.stdout + audited.stderr
    # The same bundle received again: the same task, nothing written twice.
    lines = len(events_of(there.journal_path))
    again = TaskManager(sandbox="none").receive(bundle, other.working_dir, review_only=True)
    assert again.id == task.id and len(events_of(there.journal_path)) == lines


def rewrite(bundle: Path, target: Path, **members: bytes) -> Path:
    """A copy of `bundle` with some members replaced."""
    with tarfile.open(bundle) as tar:
        kept = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    kept.update(members)
    with tarfile.open(target, "w") as tar:
        for name, data in kept.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return target


def test_a_tampered_bundle_is_refused_naming_what_failed(
    repo: git.Repo, make_manager: Factory, tmp_path: Path
) -> None:
    other = clone(repo, tmp_path / "other")
    task = in_review(make_manager, repo)
    bundle = task.handoff(tmp_path / "task.delegate")
    receiver = TaskManager(sandbox="none")

    with tarfile.open(bundle) as tar:
        journal = tar.extractfile("journal.jsonl").read().decode()  # type: ignore[union-attr]
    lines = journal.splitlines(keepends=True)
    lines[2] = lines[2].replace("Make add() add.", "Make add() multiply.")
    edited = rewrite(
        bundle, tmp_path / "edited.delegate", **{"journal.jsonl": "".join(lines).encode()}
    )
    with pytest.raises(HandoffError, match="journal does not verify: line 3: content does not"):
        receiver.receive(edited, other.working_dir)
    nothing_received(other, task.id)

    # A branch that is somewhere else than the journal's last commit.
    elsewhere = clone(repo, tmp_path / "elsewhere")
    elsewhere.git.checkout("-q", "-b", task.branch, task.base_commit)
    (Path(elsewhere.working_dir) / "calc.py").write_text("def add(a, b):\n    return 5\n")
    commit_all(elsewhere, "not the agent's")
    moved = tmp_path / "moved.bundle"
    elsewhere.git.bundle("create", str(moved), f"refs/heads/{task.branch}", f"^{task.base_commit}")
    swapped = tmp_path / "swapped.delegate"
    rewrite(bundle, swapped, **{"branch.bundle": moved.read_bytes()})
    out = cli("resume", "--from", str(swapped), "--repo", other.working_dir)
    assert out.returncode == 2 and out.stdout == "", out.stdout + out.stderr
    assert "branch head mismatch" in out.stderr and (task.head_commit or "")[:10] in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
    nothing_received(other, task.id)
    # Another task of the same id here (its journal is not this one's): refused.
    folder = Path(other.git_dir) / "delegate" / "tasks" / task.id
    folder.mkdir(parents=True)
    (folder / "journal.jsonl").write_text("".join(lines))
    with pytest.raises(HandoffError, match=f"A task {task.id} already exists .* it is not the"):
        receiver.receive(bundle, other.working_dir)
    shutil.rmtree(folder)
    assert receiver.receive(bundle, other.working_dir, review_only=True).state == TaskState.REVIEW


def test_a_clone_without_the_base_commit_is_refused(
    repo: git.Repo, make_manager: Factory, tmp_path: Path
) -> None:
    behind = clone(repo, tmp_path / "behind")
    (Path(repo.working_dir) / "README.md").write_text("# proj\n\nMoved on.\n")
    base = commit_all(repo, "a commit the other clone has not fetched")
    task = in_review(make_manager, repo)
    assert task.base_commit == base
    bundle = task.handoff(tmp_path / "task.delegate")
    with pytest.raises(RepoError, match=f"base commit {base[:10]} .*Fetch the branch main first"):
        TaskManager(sandbox="none").receive(bundle, behind.working_dir)
    nothing_received(behind, task.id)
    behind.git.pull("-q", "origin", "main")  # fetched: now it is received
    received = TaskManager(sandbox="none").receive(bundle, behind.working_dir)
    assert received.state == TaskState.REVIEW and "+    return a + b" in received.diff()


def test_a_running_task_cannot_be_handed_off(
    repo: git.Repo, make_manager: Factory, tmp_path: Path
) -> None:
    manager, fake = make_manager(SLOW_AFTER_EDIT)
    task = submit(manager, repo)
    until(lambda: len(messages_sent(fake)) >= 4, what="the slow model turn")
    with pytest.raises(HandoffError, match=f"Task {task.id} is running: it runs, so it cannot"):
        task.handoff(tmp_path / "task.delegate")
    out = cli("handoff", task.id, "-o", str(tmp_path / "task.delegate"), "--repo", repo.working_dir)
    assert out.returncode == 2 and "so it cannot be handed off" in out.stderr, out.stderr
    assert not (tmp_path / "task.delegate").exists()
    assert not [e for e in events_of(task.journal_path) if e.type == "handoff"]
    task.cancel()
    assert task.wait(timeout=30) == TaskState.CANCELLED
    with pytest.raises(HandoffError, match="it is finished, so it cannot be handed off"):
        task.handoff(tmp_path / "task.delegate")


def test_the_magics_hand_off_and_receive_for_review(
    repo: git.Repo, make_manager: Factory, tmp_path: Path
) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from jupyter_delegate.notebook.magics import DelegateMagics

    other = clone(repo, tmp_path / "other")
    task = in_review(make_manager, repo)
    ip = InteractiveShell.instance()
    ip.register_magics(DelegateMagics(ip, manager=TaskManager(sandbox="none")))
    bundle = tmp_path / "task.delegate"
    try:
        with capture_output() as captured:
            ip.run_line_magic(
                "delegate", f"handoff {task.id} -o {bundle} --repo {repo.working_dir}"
            )
            ip.run_line_magic(
                "delegate", f"resume --from {bundle} --repo {other.working_dir} --review-only"
            )
        assert f"Handed off to {bundle}" in captured.stdout
        there = TaskManager(sandbox="none").get(task.id, other.working_dir)
        assert there.state == TaskState.REVIEW and "+    return a + b" in there.diff()
        with pytest.raises(DelegateError, match="Give one of the two"):
            ip.run_line_magic("delegate", f"resume {task.id} --from {bundle}")
    finally:
        InteractiveShell.clear_instance()
