"""Tasks that any process can see and steer: a real kernel (jupyter_client) holds or runs
a task, the CLI (a real process) decides about it, and the other way round. Judged from
outside: the states each process reads, the journal, `audit verify`, the merges."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest
from jupyter_client.manager import start_new_kernel

from conftest import CHECK, FIX_TURNS, SANDBOX, Factory
from jupyter_delegate import Outcome, TaskState, control
from jupyter_delegate.journal import Journal
from jupyter_delegate.manager import TaskManager, _held
from jupyter_delegate.runner import Round
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario

ASK = "Bash"
SLOW = "sleep 30"


def cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_delegate.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
        check=False,
    )


class Kernel:
    """A real kernel, and the text (or the error) of what it runs."""

    def __init__(self, cwd: Path) -> None:
        self.manager, self.client = start_new_kernel(kernel_name="python3", cwd=str(cwd))

    def run(self, code: str, timeout: float = 120) -> str:
        out: list[str] = []

        def collect(message: dict[str, Any]) -> None:
            content = message["content"]
            if message["msg_type"] == "stream":
                out.append(content["text"])
            elif message["msg_type"] == "error":
                out.append(f"{content['ename']}: {content['evalue']}")
            elif "data" in content:
                out.append(content["data"].get("text/plain", ""))

        self.client.execute_interactive(code, timeout=timeout, output_hook=collect)
        return "".join(out)

    def kill(self) -> None:
        if self.manager.is_alive():
            self.client.stop_channels()
            self.manager.shutdown_kernel(now=True)


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The fake model over loopback, for every process (kernel, CLI) of the test."""

    def serve(turns: list[dict[str, Any]]) -> FakeMessagesAPI:
        fake = FakeMessagesAPI(load_scenario({"name": "control", "turns": turns}))
        server = FakeServer(fake)
        server.__enter__()
        started.append(server)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        return fake

    started: list[FakeServer] = []
    yield serve
    for server in started:
        server.__exit__(None, None, None)


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[Any]:
    """Starts a kernel (after the test has set the environment up), killed at the end."""
    started: list[Kernel] = []

    def start() -> Kernel:
        started.append(Kernel(tmp_path))
        return started[-1]

    yield start
    for running in started:
        running.kill()


def submit_in(kernel: Kernel, repo: git.Repo, ask: str = "", name: str = "fix") -> str:
    """Start a task in the kernel (as a notebook would); returns its id."""
    code = (
        "import jupyter_delegate as jd\n"
        f"t = jd.delegate('Make add() add.', repo={repo.working_dir!r}, checks=[{CHECK!r}], "
        f"sandbox={SANDBOX!r}, name={name!r}, ask={[ask] if ask else []!r})\n"
        "print(t.id)"
    )
    return kernel.run(code).strip()


def audit_ok(repo: git.Repo) -> None:
    done = cli("audit", "verify", "--repo", repo.working_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit verify: ok" in done.stdout


@pytest.mark.parametrize(
    ("argv", "state"),
    [
        (("approve",), "merged"),
        (("reject", "--reason", "not now"), "rejected"),
        (("request-changes", "Also add a docstring.", "--no-approve"), "review"),
    ],
)
def test_a_decision_from_the_cli_is_seen_by_the_notebook_and_a_stale_one_refused(
    repo: git.Repo, served: Any, kernel: Any, argv: tuple[str, ...], state: str
) -> None:
    served([*FIX_TURNS, {"tools": [{"finish": {"summary": "docstring added"}}]}])
    kernel = kernel()
    task_id = submit_in(kernel, repo)
    assert kernel.run("print(t.wait(timeout=90))").strip() == "review"
    verb, *rest = argv
    done = cli(verb, "fix", *rest, "--repo", repo.working_dir)  # by its name, elsewhere
    assert done.returncode in (0, 1), done.stdout + done.stderr  # 1: a review printed
    if verb != "request-changes":  # the notebook still holds its stale copy
        refused = kernel.run("t.reject('stale')")
        assert f"Task {task_id} was {state} by another process at " in refused, refused
        assert "nothing was done" in refused
    assert kernel.run("print(t.refresh().state)").strip() == state
    if verb == "request-changes":  # the notebook then approves what the CLI's round made
        assert kernel.run("print(t.wait(timeout=90)); print(t.approve())").startswith("review")
        assert kernel.run("print(t.state)").strip() == "merged"
    audit_ok(repo)
    events = [e.type for e in Journal(Path(kernel.run("print(t.journal_path)").strip())).events()]
    assert events.count("merged") == (0 if verb == "reject" else 1)


def test_roles_swapped_the_cli_runs_the_notebook_decides(
    repo: git.Repo, served: Any, kernel: Any
) -> None:
    served(FIX_TURNS)
    kernel = kernel()
    run = cli(
        "run", "Make add() add.", "--repo", repo.working_dir, "--check", CHECK,
        "--sandbox", SANDBOX, "--no-approve",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    listed = json.loads(cli("list", "--json", "--repo", repo.working_dir).stdout)
    task_id = listed[-1]["id"]
    code = f"import jupyter_delegate as jd\nt = jd.get_task({task_id!r}, {repo.working_dir!r})"
    kernel.run(code)
    assert kernel.run("print(t.approve()[:7])").strip() == repo.head.commit.hexsha[:7]
    refused = cli("reject", task_id, "--repo", repo.working_dir)
    assert refused.returncode == 2
    assert f"Task {task_id} is merged; only a task in review can be rejected" in refused.stderr
    audit_ok(repo)


def test_a_question_asked_in_a_kernel_is_answered_from_the_cli(
    repo: git.Repo, served: Any, kernel: Any
) -> None:
    served(FIX_TURNS)
    kernel = kernel()
    task_id = submit_in(kernel, repo, ask=ASK)
    assert kernel.run("print(t.wait(timeout=60))").strip() == "waiting"
    listed = cli("pending", "--json", "--repo", repo.working_dir)
    questions = json.loads(listed.stdout)
    assert [(q["task"], q["tool"]) for q in questions] == [(task_id, "bash")], listed.stdout
    text = cli("pending", task_id, "--repo", repo.working_dir).stdout
    assert questions[0]["request_id"] in text and CHECK in text
    assert "--remember (grants bash(python3 -m unittest:*))" in text
    answered = cli("answer", "fix", "allow", "--remember", "--repo", repo.working_dir)
    assert answered.returncode == 0, answered.stdout + answered.stderr
    assert kernel.run("print(t.wait(timeout=90))").strip() == "review"
    journal = Path(kernel.run("print(t.journal_path)").strip())
    decided = [
        e.data
        for e in Journal(journal).events()
        if e.type == "permission" and e.data.get("decision")
    ]
    assert decided[0]["decision"] == "allow" and decided[0]["by"] == "human"
    assert decided[0]["granted"] == ["bash(python3 -m unittest:*)"]  # the rule shown, no more
    who = decided[0]["from"]
    assert who["via"] == "cli" and who["pid"] != int(kernel.run("import os; print(os.getpid())"))
    assert {"host", "user"} <= set(who)
    controls = [e.data for e in Journal(journal).events() if e.type == "control"]
    assert [c["status"] for c in controls] == ["accepted", "done"]
    audit_ok(repo)


def test_cancel_and_pause_from_the_cli_stop_a_task_the_kernel_runs(
    repo: git.Repo, served: Any, kernel: Any
) -> None:
    served(
        [{"tools": [{"bash": {"command": "sleep 4"}}]}, {"tools": [{"bash": {"command": SLOW}}]}]
    )
    kernel = kernel()
    task_id = submit_in(kernel, repo)
    time.sleep(1.5)  # into the first command
    paused = cli("pause", task_id, "--repo", repo.working_dir)
    assert paused.returncode == 0, paused.stderr
    assert kernel.run("print(t.wait(timeout=30))").strip() == "paused"
    # At the step boundary: the command ran to its end, its result journaled.
    journal = Path(kernel.run("print(t.journal_path)").strip())
    results = [e.data for e in Journal(journal).events() if e.type == "tool_result"]
    assert [r.get("exit_code") for r in results] == [0], results
    kernel.run("t.resume()")
    time.sleep(1.5)
    cancelled = cli("cancel", "fix", "--repo", repo.working_dir)
    assert cancelled.returncode == 0, cancelled.stderr
    assert kernel.run("print(t.wait(timeout=30))").strip() == "cancelled"
    audit_ok(repo)


def test_a_killed_kernel_with_a_question_pending_leaves_a_task_the_cli_can_reject(
    repo: git.Repo, served: Any, kernel: Any
) -> None:
    served(FIX_TURNS)
    kernel = kernel()
    task_id = submit_in(kernel, repo, ask=ASK)
    assert kernel.run("print(t.wait(timeout=60))").strip() == "waiting"
    kernel.kill()  # SIGKILL, the question unanswered
    assert json.loads(cli("pending", "--json", "--repo", repo.working_dir).stdout) == []
    rejected = cli("reject", task_id, "--repo", repo.working_dir)
    assert rejected.returncode == 0, rejected.stderr
    assert f"refs/delegate/archive/{task_id}" in rejected.stdout
    audit_ok(repo)


def test_requests_left_by_a_process_that_stopped_are_closed_when_the_task_runs_again(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager([*FIX_TURNS, {"tools": [{"finish": {"summary": "again"}}]}])
    close = manager._close_left_requests

    def slow_close(*args: Any) -> None:  # the inbox server gets every chance to race it
        time.sleep(0.5)
        close(*args)

    manager._close_left_requests = slow_close  # type: ignore[method-assign]
    task = manager.submit(Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=90) == TaskState.REVIEW
    # A poster that died before it could act (nobody held the task): its request stays.
    left = control.post(task.folder, "pause", {}, control.requester("cli"))
    task.request_changes("One more look.")
    assert task.wait(timeout=90) == TaskState.REVIEW
    events = list(Journal(task.journal_path).events())
    controls = [e.data for e in events if e.type == "control"]
    closed = [c for c in controls if c["request_id"] == left.request_id]
    # The request for changes, made here under the lock, is journaled with who made it.
    decided = [c for c in controls if c["request_id"] != left.request_id]
    assert [(c["action"], c["status"], c["by"]["via"]) for c in decided] == [
        ("request_changes", "done", "python")
    ]
    assert closed == [
        {
            "request_id": left.request_id,
            "action": "pause",
            "status": "refused",
            "error": closed[0]["error"],
        }
    ]
    assert "to a process that stopped before acting on it; nothing was done" in closed[0]["error"]
    assert any("a pause from the CLI (pid" in flag for flag in task.flags), task.flags


RACER = """
import sys
from jupyter_delegate.errors import DelegateError
from jupyter_delegate.manager import TaskManager
manager = TaskManager(via="cli")
for task_id in sys.argv[2:]:
    try:
        manager.get(task_id, sys.argv[1]).approve()
        print("merged", task_id, flush=True)
    except DelegateError as exc:
        print("refused", task_id, str(exc).replace(chr(10), " "), flush=True)
"""


@pytest.mark.timeout(600)
def test_two_processes_racing_to_approve_merge_each_task_once(
    repo: git.Repo, make_manager: Factory
) -> None:
    rounds = 50
    note = {"write": {"file_path": "NOTES.md", "content": "looked\n"}}
    manager, _ = make_manager([{"tools": [note]}, {"tools": [{"finish": {"summary": "a note"}}]}])
    ids = []
    for n in range(rounds):
        task = manager.submit(Outcome(f"Look {n}.", checks=("true",)), repo=repo.working_dir)
        ids.append(task.id)
        assert task.wait(timeout=60) == TaskState.REVIEW, task.error
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, repo.working_dir, *ids],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [racer.communicate(timeout=500) for racer in racers]
    lines = [line.split(" ", 2) for out, _ in outputs for line in out.splitlines()]
    if any(racer.returncode for racer in racers):
        pytest.fail("\n".join(err for _, err in outputs))
    for task_id in ids:
        said = sorted(line[0] for line in lines if line[1] == task_id)
        assert said == ["merged", "refused"], (task_id, said)
    refusals = {line[2].split(";")[0] for line in lines if line[0] == "refused"}
    assert all("merged" in text for text in refusals), refusals
    for task_id in ids:
        journal = Journal(repo_journal(repo, task_id))
        assert journal.verify().ok
        assert [e.type for e in journal.events()].count("merged") == 1
    audit_ok(repo)


def repo_journal(repo: git.Repo, task_id: str) -> Path:
    return Path(repo.git_dir) / "delegate" / "tasks" / task_id / "journal.jsonl"


def test_a_name_given_in_one_process_resolves_in_another_and_an_ambiguous_one_lists(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager([{"tools": [{"finish": {"summary": "ok"}}]}] * 3)
    first = manager.submit(Outcome("One.", checks=("true",)), repo=repo.working_dir, name="alpha")
    assert first.wait(timeout=60) == TaskState.REVIEW
    shown = cli("show", "alpha", "--json", "--repo", repo.working_dir)
    assert json.loads(shown.stdout)["id"] == first.id
    twin = manager.submit(Outcome("Two.", checks=("true",)), repo=repo.working_dir, name="alpha")
    assert twin.wait(timeout=60) == TaskState.REVIEW
    ambiguous = cli("show", "alpha", "--repo", repo.working_dir)
    assert ambiguous.returncode == 2
    assert f"2 tasks in {repo.working_dir} are named 'alpha': " in ambiguous.stderr
    assert first.id in ambiguous.stderr and twin.id in ambiguous.stderr


class SubprocessRunner:
    """A runner that is not this process: each round in a new Python process, from the
    pickled round description alone (as a Dask worker would get it)."""

    in_process = False

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, work: Round) -> None:
        code = (
            "import pickle, sys\n"
            "from jupyter_delegate.runner import run_round\n"
            "print(run_round(pickle.loads(bytes.fromhex(sys.argv[1]))))"
        )
        self.started.append(
            subprocess.Popen(
                [sys.executable, "-c", code, pickle.dumps(work).hex()],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )


def test_a_round_runs_in_another_process_through_the_runner_seam(
    repo: git.Repo, served: Any
) -> None:
    served([*FIX_TURNS, {"tools": [{"finish": {"summary": "docstring added"}}]}])
    runner = SubprocessRunner()
    manager = TaskManager(sandbox=SANDBOX, runner=runner)
    task = manager.submit(Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir)
    seen: list[str] = []
    task.subscribe(lambda event: seen.append(str(event.data.get("state"))))
    assert task.wait(timeout=120) == TaskState.REVIEW, task.error
    # Waiting for the round's end here waits for the other process to let the task go.
    assert manager.until_round_ends(task, timeout=30) == TaskState.REVIEW
    assert not _held(task.folder)
    out, err = runner.started[0].communicate(timeout=30)
    assert out.strip() == "review", err  # the round ran there, and ended there in review
    assert runner.started[0].pid != os.getpid()
    assert task.checks and task.checks[0].passed and "running" in seen and "review" in seen
    task.request_changes("Add a docstring.")  # a second round, in a second process
    assert task.wait(timeout=120) == TaskState.REVIEW
    assert runner.started[1].communicate(timeout=30)[0].strip() == "review"
    assert task.summary == "docstring added"
    task.approve()  # no process holds it now: this one decides, under the lock
    assert task.state == TaskState.MERGED
    audit_ok(repo)


def engine_wakes(manager: TaskManager, seconds: float) -> int:
    """How often the manager's engine thread gave up its core in `seconds` (from its
    /proc status): an idle loop sleeps through them."""

    def switches() -> int:
        assert manager._thread is not None and manager._thread.native_id is not None
        status = Path(f"/proc/self/task/{manager._thread.native_id}/status").read_text()
        return int(status.split("\nvoluntary_ctxt_switches:")[1].split()[0])

    before = switches()
    time.sleep(seconds)
    return switches() - before


def test_an_idle_engine_sleeps_and_the_next_round_still_hears_its_inbox(
    repo: git.Repo, make_manager: Factory
) -> None:
    slow_reads = [{"tools": [{"read": {"file_path": "calc.py"}}], "latency_ms": 400}] * 6
    manager, fake = make_manager(
        [*FIX_TURNS, *slow_reads, {"tools": [{"finish": {"summary": "x"}}]}]
    )
    task = manager.submit(Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=90) == TaskState.REVIEW
    time.sleep(0.3)  # the inbox server's last look
    # Nothing runs: the loop is not woken ten times a second to look at inboxes.
    assert engine_wakes(manager, 1.0) < 5
    asked = len(fake.requests)
    task.request_changes("Read it again, slowly.")
    deadline = time.monotonic() + 30
    while len(fake.requests) == asked and time.monotonic() < deadline:  # the round runs
        time.sleep(0.05)
    # The second round hears a pause posted by another process to its inbox.
    control.post(task.folder, "pause", {}, control.requester("cli"))
    assert task.wait(timeout=90) == TaskState.PAUSED
    controls = [e.data for e in Journal(task.journal_path).events() if e.type == "control"]
    pauses = [c for c in controls if c["action"] == "pause"]
    assert [c["status"] for c in pauses] == ["accepted", "done"]
    assert pauses[0]["by"]["via"] == "cli"
