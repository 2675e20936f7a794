"""Rounds in a worker process of this machine (runner.ProcessRunner, `runner="process"`):
the scripted fake model served over loopback to the worker, which inherits
`ANTHROPIC_BASE_URL`; the user's repository outside /tmp. Judged from the process that
submitted: the journal says where the round ran, the subscribers here hear the words as
they stream (once, not again from the journal), the review and merge work as ever, and a
worker that dies leaves its rounds interrupted and resumable, not hanging."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import git
import pytest

from conftest import CALC, CHECK, FIX_TURNS, SANDBOX
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate.errors import UsageError
from jupyter_delegate.journal import Journal
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.policy import Policy
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario
from jupyter_delegate.testing.fake_anthropic import OFFLINE_API_KEY
from jupyter_delegate.workspace import Workspace


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`served(turns, latency_s)`: the fake serving `turns` over loopback, reached through
    the environment a worker inherits."""
    made: list[FakeServer] = []

    def start(turns: list[dict[str, Any]], **options: Any) -> FakeMessagesAPI:
        fake = FakeMessagesAPI(load_scenario({"name": "process", "turns": turns}), **options)
        server = FakeServer(fake)
        made.append(server)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", OFFLINE_API_KEY)
        return fake

    yield start
    for server in made:
        server.close()


@pytest.fixture
def manager() -> Iterator[TaskManager]:
    made = TaskManager(sandbox=SANDBOX)
    yield made
    made.process_runner().close()


def test_a_round_runs_in_the_worker_and_streams_its_words_here(
    user_repo: git.Repo, served: Any, manager: TaskManager
) -> None:
    served(FIX_TURNS)
    task = manager.submit(
        Outcome("Make add() add.", checks=(CHECK,)), repo=user_repo.working_dir, runner="process"
    )
    heard: list[tuple[str, Any]] = []
    task.subscribe(lambda event: heard.append((event.kind, event.data)))
    assert task.wait(timeout=120) == TaskState.REVIEW, task.error
    assert manager.until_round_ends(task, timeout=30) == TaskState.REVIEW
    ran = [e for e in Journal(task.journal_path).events() if e.type == "runner"]
    assert ran and ran[0].data["runner"] == "process"
    assert ran[0].data["pid"] == manager.process_runner().pid != os.getpid()
    assert task.workers == []  # not a Dask worker: `show` and `list` name none
    # The words came streamed (the API's message id as their key), each message once.
    said = [data for kind, data in heard if kind == "text"]
    assert said and all(data["message"].startswith("msg_") for data in said), said
    words = "".join(data["delta"] for data in said)
    assert words.count("Running the test first.") == 1 and words.count("wrong.") == 1
    # What a view needs besides, in the order the round ran.
    kinds = [kind for kind, _ in heard]
    for kind in ("tool_call", "tool_result", "tool_output", "usage", "checks", "review"):
        assert kind in kinds, kinds
    calls = [data["name"] for kind, data in heard if kind == "tool_call"]
    assert calls == [data["name"] for kind, data in heard if kind == "tool_result"]
    assert task.checks and task.checks[0].passed
    assert "+    return a + b" in task.diff()
    task.approve()
    assert (Path(user_repo.working_dir) / "calc.py").read_text() == CALC.replace("a - b", "a + b")


def test_a_question_is_answered_from_here_and_changes_go_back_to_the_worker(
    user_repo: git.Repo, served: Any, manager: TaskManager
) -> None:
    docstring = {"old_string": "def add(a, b):\n", "new_string": 'def add(a, b):\n    """Add."""\n'}
    served(
        [
            *FIX_TURNS,
            {
                "text": "Adding the docstring.",
                "tools": [{"edit": {"file_path": "calc.py", **docstring}}],
            },
            {"tools": [{"finish": {"summary": "docstring added"}}]},
        ]
    )
    task = manager.submit(
        Outcome("Make add() add.", checks=(CHECK,)),
        repo=user_repo.working_dir,
        runner="process",
        policy=Policy.from_rules(ask=["Bash"]),
    )
    deadline = time.monotonic() + 120
    asked: list[str] = []
    while task.state != TaskState.REVIEW:  # each command asks; each is answered from here
        assert time.monotonic() < deadline and task.state.active, (task.state, task.error)
        for question in manager.pending(task):
            if question.request_id not in asked:
                asked.append(question.request_id)
                assert question.tool == "bash"
                task.answer(question.request_id, True)  # to the worker's round
        time.sleep(0.05)
    assert asked
    assert manager.until_round_ends(task, timeout=30) == TaskState.REVIEW
    said: list[str] = []
    task.subscribe(lambda event: said.append(event.data["delta"]) if event.kind == "text" else None)
    task.request_changes("Add a docstring.")
    assert task.wait(timeout=120) == TaskState.REVIEW, task.error
    assert manager.until_round_ends(task, timeout=30) == TaskState.REVIEW
    assert "".join(said).count("Adding the docstring.") == 1, said  # once, not per round
    ran = [e.data["pid"] for e in Journal(task.journal_path).events() if e.type == "runner"]
    assert len(ran) == 2 and ran[0] == ran[1] == manager.process_runner().pid  # kept warm
    assert task.summary == "docstring added" and '"""Add."""' in task.diff()


def test_a_worker_that_dies_leaves_its_round_interrupted_and_resumable(
    user_repo: git.Repo, served: Any, manager: TaskManager
) -> None:
    served([{"tools": [{"bash": {"command": "sleep 30"}}]}, *FIX_TURNS])
    task = manager.submit(
        Outcome("Make add() add.", checks=(CHECK,)), repo=user_repo.working_dir, runner="process"
    )
    deadline = time.monotonic() + 60
    while not any(call["name"] == "bash" for call in _calls(task)):
        assert time.monotonic() < deadline, task.state
        time.sleep(0.05)
    pid = manager.process_runner().pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    assert task.wait(timeout=30) == TaskState.INTERRUPTED
    states = [e.data for e in Journal(task.journal_path).events() if e.type == "state"]
    assert states[-1]["state"] == "interrupted"
    assert states[-1]["reason"] == "the worker process running it stopped (exit code -9)"
    assert manager.until_round_ends(task, timeout=30) == TaskState.INTERRUPTED
    task.resume()  # on a new worker, from the journal
    assert task.wait(timeout=120) == TaskState.REVIEW, task.error
    assert manager.process_runner().pid not in (None, pid)


def test_the_worker_ends_with_the_process_that_started_it(
    user_repo: git.Repo, served: Any, outside_tmp: Path
) -> None:
    served([{"tools": [{"bash": {"command": "sleep 30"}}]}, *FIX_TURNS])
    code = (
        "import sys, time\n"
        "from jupyter_delegate import Outcome\n"
        "from jupyter_delegate.manager import TaskManager\n"
        f"m = TaskManager(sandbox={SANDBOX!r})\n"
        f"t = m.submit(Outcome('x'), repo={user_repo.working_dir!r}, runner='process')\n"
        "print(m.process_runner().pid, flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    worker = int(parent.stdout.readline())
    assert _alive(worker)
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 15
    while _alive(worker):
        assert time.monotonic() < deadline, "the worker outlived the process that started it"
        time.sleep(0.05)


def test_a_client_object_cannot_go_to_a_worker(user_repo: git.Repo) -> None:
    fake = FakeMessagesAPI(load_scenario({"name": "x", "turns": FIX_TURNS}))
    manager = TaskManager(client=fake.async_client(), sandbox=SANDBOX)
    with pytest.raises(UsageError, match="ANTHROPIC_BASE_URL"):
        manager.submit(Outcome("x"), repo=user_repo.working_dir, runner="process")
    assert Workspace(user_repo.working_dir).task_ids() == []  # nothing made


def _calls(task: Any) -> list[Mapping[str, Any]]:
    return [
        block
        for event in Journal(task.journal_path).events()
        if event.type == "assistant"
        for block in event.data["content"]
        if block.get("type") == "tool_use"
    ]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("setting", ["", 'runner = "kernel"', 'runner = "elsewhere"'])
def test_a_notebook_runs_its_rounds_where_its_config_says(
    user_repo: git.Repo, served: Any, tmp_path: Path, setting: str
) -> None:
    from test_control import Kernel

    served(FIX_TURNS)
    home = Path(os.environ["JUPYTER_DELEGATE_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f"[notebook]\n{setting}\n" if setting else "")
    kernel = Kernel(tmp_path)
    try:
        loaded = kernel.run("%load_ext jupyter_delegate")
        cell = (
            "import os, jupyter_delegate as jd\n"
            f"t = jd.delegate('Make add() add.', repo={user_repo.working_dir!r}, "
            f"checks=[{CHECK!r}], sandbox={SANDBOX!r})\n"
            "print(t.wait(timeout=120), os.getpid(), t.journal_path)"
        )
        state, pid, journal = kernel.run(cell).split()
    finally:
        kernel.kill()
    assert state == "review"
    ran = [e.data for e in Journal(Path(journal)).events() if e.type == "runner"]
    if setting == "":  # the default: a worker process
        assert ran and ran[0]["runner"] == "process" and ran[0]["pid"] != int(pid)
        assert loaded.strip() == ""
    else:  # in the kernel itself, as set; or, for a bad setting, said in one line
        assert ran == []
    if setting == 'runner = "elsewhere"':
        assert loaded.count("\n") == 1 and '[notebook] runner must be "process"' in loaded
        assert "Tasks run in the kernel meanwhile." in loaded


def test_an_endpoint_set_after_the_worker_started_reaches_its_rounds(
    user_repo: git.Repo, served: Any, manager: TaskManager
) -> None:
    first = served(FIX_TURNS)
    manager.process_runner().warm()  # it inherits the first endpoint
    second = served(FIX_TURNS)  # as a cell would: os.environ changed afterwards
    task = manager.submit(
        Outcome("Make add() add.", checks=(CHECK,)), repo=user_repo.working_dir, runner="process"
    )
    assert task.wait(timeout=120) == TaskState.REVIEW, task.error
    assert [r for r in first.requests if r.kind != "models"] == []
    assert len([r for r in second.requests if r.kind != "models"]) == len(FIX_TURNS)


def test_a_command_in_the_worker_holds_none_of_its_descriptors(
    user_repo: git.Repo, served: Any, manager: TaskManager
) -> None:
    # The worker's socket carries the kernel's environment (the API key): no command of
    # the agent may inherit it, nor any other descriptor of the worker.
    fake = served([{"tools": [{"bash": {"command": "ls /proc/self/fd"}}]}, FIX_TURNS[-1]])
    task = manager.submit(Outcome("x"), repo=user_repo.working_dir, runner="process")
    assert task.wait(timeout=120) == TaskState.REVIEW, task.error
    sent = [r for r in fake.requests if r.kind != "models"]
    output = sent[1].body["messages"][-1]["content"][0]["content"]
    listed = [word for word in output.split() if word.isdigit()][1:]  # after the exit code
    assert listed == ["0", "1", "2", "3"], output  # 3: ls's own listing of the folder
