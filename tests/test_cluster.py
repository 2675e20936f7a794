"""Tasks run on a Dask cluster (cluster.py): a LocalCluster of two worker processes, the
scripted fake model served to them over loopback (`ANTHROPIC_BASE_URL`, set before the
cluster starts), the user's repository outside /tmp. Judged from outside: where the
journal says the round ran, the state and checks the user's process reads, the merge in
the user's repository, `audit verify`, the mirror against the worker's own journal, and
what is refused when the stream or the result is tampered with."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import git
import pytest

from conftest import CALC, CHECK, FIX_TURNS, SANDBOX
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate.journal import Journal
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario

distributed = pytest.importorskip("distributed")
from jupyter_delegate.cluster import DaskRunner, Result, runner_for  # noqa: E402

DOCSTRING = {"old_string": "def add(a, b):\n", "new_string": 'def add(a, b):\n    """Add."""\n'}
DOCSTRING_TURNS: list[dict[str, Any]] = [
    {"tools": [{"edit": {"file_path": "calc.py", **DOCSTRING}}]},
    {"tools": [{"finish": {"summary": "docstring added"}}]},
]
SECRET_KEY = "sk-ant-api03-cluster-test-key-never-travels-0123456789"


def cli(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "jupyter_delegate.cli", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=os.environ.copy(),
        check=False,
    )


@pytest.fixture
def cluster(outside_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`cluster(turns)`: the fake serving `turns`, a LocalCluster whose workers see it,
    and a client of that cluster."""
    made: list[Any] = []

    def start(turns: list[dict[str, Any]]) -> tuple[Any, FakeMessagesAPI]:
        fake = FakeMessagesAPI(load_scenario({"name": "cluster", "turns": turns}))
        server = FakeServer(fake)
        made.append(server)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET_KEY)
        workers = outside_tmp / "workers"
        monkeypatch.setenv("JUPYTER_DELEGATE_WORKER_DIR", str(workers))
        local = distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None
        )
        made.append(local)
        client = distributed.Client(local)
        made.append(client)
        return client, fake

    yield start
    for thing in reversed(made):
        thing.close()


def submit(manager: TaskManager, repo: git.Repo) -> Any:
    return manager.submit(Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir)


def audit_ok(repo: git.Repo) -> None:
    done = cli("audit", "verify", "--repo", repo.working_dir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "audit verify: ok" in done.stdout


def test_a_task_runs_on_a_worker_reaches_review_and_merges_into_the_users_repo(
    user_repo: git.Repo, cluster: Any
) -> None:
    client, fake = cluster([*FIX_TURNS, *DOCSTRING_TURNS])
    runner = DaskRunner(client, keep_worker_folders=True)
    manager = TaskManager(sandbox=SANDBOX, runner=runner)
    task = submit(manager, user_repo)
    heard: list[tuple[str, Any]] = []
    task.subscribe(lambda event: heard.append((event.kind, event.data)))
    assert task.wait(timeout=180) == TaskState.REVIEW, task.error
    assert task.checks and task.checks[0].passed, task.checks
    # Its subscribers here heard the round as it ran there, in the order it ran.
    kinds = [kind for kind, _ in heard]
    for kind in ("context", "usage", "tool_call", "tool_result", "checks", "review"):
        assert kind in kinds, kinds
    calls = [data["name"] for kind, data in heard if kind == "tool_call"]
    results = [data["name"] for kind, data in heard if kind == "tool_result"]
    assert calls == results and "edit" in calls and calls[-1] == "finish", heard
    assert kinds.index("tool_call") < kinds.index("tool_result") < kinds.index("checks")
    states = [data["state"] for kind, data in heard if kind == "state"]
    assert states[-1] == "review" and "running" in states, states
    # It ran on a worker of the cluster, which the journal names.
    workers = set(client.scheduler_info()["workers"])
    assert task.workers and task.workers[0] in workers
    ran = [e for e in Journal(task.journal_path).events() if e.type == "runner"]
    assert ran[0].data["pid"] != os.getpid() and ran[0].data["runner"] == "dask"
    # In a folder of the worker's own: its clone and worktree, never the user's. (The
    # round's bookkeeping here ends after its last event: wait for the round's end.)
    assert manager.until_round_ends(task, timeout=30) == TaskState.REVIEW
    (result,) = runner.results[task.id]
    assert isinstance(result, Result) and result.state == "review"
    home_worktree = Path(user_repo.git_dir) / "delegate" / "worktrees" / task.id
    assert Path(result.worktree) != home_worktree
    assert Path(result.worktree).is_relative_to(result.folder)
    assert Path(result.folder).is_relative_to(os.environ["JUPYTER_DELEGATE_WORKER_DIR"])
    first = next(Journal(task.journal_path).events())
    assert first.data["worktree"] == str(home_worktree)  # the client's path, as journaled
    # The mirror is the worker's journal, byte for byte.
    worker_journal = Path(result.folder) / "repo" / ".git" / "delegate" / "tasks" / task.id
    assert task.journal_path.read_bytes() == (worker_journal / "journal.jsonl").read_bytes()
    # Review works unchanged here: the branch and worktree were made from the bundle.
    assert task.worktree == home_worktree and (home_worktree / "calc.py").read_text() == (
        CALC.replace("a - b", "a + b")
    )
    assert "+    return a + b" in task.diff()
    first_head = task.head_commit
    # A second round (changes requested) goes to the cluster from the branch as it is here.
    task.request_changes("Add a docstring.")
    assert task.wait(timeout=180) == TaskState.REVIEW, task.error
    assert manager.until_round_ends(task, timeout=30) == TaskState.REVIEW
    assert task.summary == "docstring added" and len(runner.results[task.id]) == 2
    assert task.head_commit != first_head and len(task.workers) == 2
    assert git.Repo(home_worktree).head.commit.hexsha == task.head_commit  # moved on here
    task.approve()
    assert task.state == TaskState.MERGED
    merged = (Path(user_repo.working_dir) / "calc.py").read_text()
    assert "a + b" in merged and '"""Add."""' in merged
    audit_ok(user_repo)
    assert len([r for r in fake.requests if r.kind != "models"]) == len(FIX_TURNS) + 2


def test_the_payload_carries_no_api_key(user_repo: git.Repo, cluster: Any) -> None:
    client, _ = cluster([{"tools": [{"finish": {"summary": "nothing to do"}}]}])
    runner = DaskRunner(client)
    sent: list[bytes] = []
    submit_ = runner.submit
    runner.submit = lambda payload: (sent.append(pickle.dumps(payload)), submit_(payload))[1]  # type: ignore[method-assign]
    manager = TaskManager(sandbox=SANDBOX, runner=runner)
    task = manager.submit(Outcome("Nothing.", checks=("true",)), repo=user_repo.working_dir)
    assert task.wait(timeout=180) == TaskState.REVIEW, task.error
    assert sent and SECRET_KEY.encode() not in sent[0]
    assert os.environ["ANTHROPIC_API_KEY"] == SECRET_KEY  # it was there to leak


class TamperedStream(DaskRunner):
    """The network between worker and home changes the agent's finish summary."""

    def received(self, line: str) -> str:
        raw = json.loads(line)
        if raw["type"] == "finish":
            return line.replace("it now adds", "it now adds, and all is well")
        return line


def nothing_fetched(repo: git.Repo, task: Any) -> None:
    assert not [h for h in repo.heads if h.name.startswith(f"delegate/{task.id}")]
    assert not (Path(repo.git_dir) / "delegate" / "worktrees" / task.id).exists()


def test_a_tampered_stream_line_is_refused_and_the_task_fails(
    user_repo: git.Repo, cluster: Any
) -> None:
    client, _ = cluster(FIX_TURNS)
    manager = TaskManager(sandbox=SANDBOX, runner=TamperedStream(client))
    task = submit(manager, user_repo)
    assert task.wait(timeout=180) == TaskState.FAILED
    assert "refused what the worker sent" in task.error
    assert "does not match its hash" in task.error, task.error
    assert Journal(task.journal_path).verify().ok  # the tampered line never got in
    assert not any(e.type == "finish" for e in Journal(task.journal_path).events())
    nothing_fetched(user_repo, task)
    audit_ok(user_repo)


def test_a_tampered_result_bundle_is_refused_and_nothing_is_fetched(
    user_repo: git.Repo, cluster: Any, outside_tmp: Path
) -> None:
    """The result comes back with a forged branch: the task's branch name, at a commit made
    elsewhere that names a journal head the mirror never saw."""
    forger = git.Repo.clone_from(user_repo.working_dir, outside_tmp / "forger")
    client, _ = cluster(FIX_TURNS)

    class Forging(DaskRunner):
        def returned(self, result: Result) -> Result:
            branch = next(e for e in Journal(task.journal_path).events()).data["branch"]
            forger.git.checkout("-q", "-b", branch)
            (Path(forger.working_dir) / "calc.py").write_text("import os\n")
            forger.git.add("-A")
            forger.git.commit("-q", "-m", "evil\n\nDelegate-Journal: " + "f" * 64)
            out = outside_tmp / "forged.bundle"
            base = user_repo.head.commit.hexsha
            forger.git.bundle("create", str(out), f"refs/heads/{branch}", f"^{base}")
            forged = forger.head.commit.hexsha
            return replace(result, bundle=out.read_bytes(), tip=forged)

    manager = TaskManager(sandbox=SANDBOX, runner=Forging(client))
    task = submit(manager, user_repo)
    assert task.wait(timeout=180) == TaskState.FAILED
    assert "refused what the worker sent" in task.error, task.error
    assert "but the journal's last commit is" in task.error, task.error
    nothing_fetched(user_repo, task)
    assert Journal(task.journal_path).verify().ok
    audit_ok(user_repo)


def test_cli_run_with_cluster_runs_there_and_approves(user_repo: git.Repo, cluster: Any) -> None:
    client, _ = cluster(FIX_TURNS)
    address = client.scheduler.address
    done = cli(
        "run",
        "Make add() add.",
        "--check",
        CHECK,
        "--cluster",
        address,
        "--sandbox",
        SANDBOX,
        "--approve",
        "--repo",
        user_repo.working_dir,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "a + b" in (Path(user_repo.working_dir) / "calc.py").read_text()
    (task_id,) = [p.name for p in (Path(user_repo.git_dir) / "delegate" / "tasks").iterdir()]
    journal = Path(user_repo.git_dir) / "delegate" / "tasks" / task_id / "journal.jsonl"
    ran = [e.data for e in Journal(journal).events() if e.type == "runner"]
    assert ran and ran[0]["worker"] in client.scheduler_info()["workers"]
    audit_ok(user_repo)


def test_the_config_names_the_cluster_for_delegate(user_repo: git.Repo, cluster: Any) -> None:
    from jupyter_delegate import delegate

    client, _ = cluster([{"tools": [{"finish": {"summary": "nothing to do"}}]}])
    home = Path(os.environ["JUPYTER_DELEGATE_HOME"])
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(f'[cluster]\naddress = "{client.scheduler.address}"\n')
    manager = TaskManager(sandbox=SANDBOX)
    task = delegate("Nothing.", checks=["true"], repo=user_repo.working_dir, manager=manager)
    assert task.wait(timeout=180) == TaskState.REVIEW, task.error
    assert task.workers and task.workers[0] in client.scheduler_info()["workers"]
    runner_for(client.scheduler.address).close()


def test_without_dask_a_cluster_runner_says_how_to_install_it(
    user_repo: git.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_delegate.cluster import ClusterError

    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed fails
    manager = TaskManager(sandbox=SANDBOX)
    with pytest.raises(ClusterError, match=r"pip install 'jupyter-delegate\[dask\]'"):
        manager.submit(
            Outcome("x", checks=("true",)), repo=user_repo.working_dir, runner="tcp://127.0.0.1:1"
        )
    assert not (Path(user_repo.git_dir) / "delegate" / "tasks").exists()  # nothing created


def wait_for(predicate: Any, timeout: float = 120) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def journaled(task: Any, type_: str) -> list[Any]:
    return [e for e in Journal(task.journal_path).events() if e.type == type_]


FIX_EDIT = {"old_string": "a - b", "new_string": "a + b"}
LOST_OR_KEPT = "grep -q 'a - b' calc.py && echo EDIT-LOST || echo EDIT-KEPT"


def test_a_worker_killed_mid_round_is_taken_over_by_another_and_the_task_merges(
    user_repo: git.Repo, cluster: Any
) -> None:
    """The worker is SIGKILLed while the agent waits for a slow model turn, after its edit
    was journaled (and mirrored) but never committed: another worker goes on from the
    mirrored journal and the base, the agent is told its edit was lost (and finds it so),
    redoes it, and the task reaches review on the second worker and merges."""
    import signal

    fixed = CALC.replace("a - b", "a + b")
    turns: list[dict[str, Any]] = [
        {"tools": [{"edit": {"file_path": "calc.py", **FIX_EDIT}}]},
        {"latency_ms": 4000, "tools": [{"bash": {"command": LOST_OR_KEPT}}]},
        {"tools": [{"write": {"file_path": "calc.py", "content": fixed}}]},
        {"tools": [{"finish": {"summary": "add() adds again"}}]},
    ]
    client, fake = cluster(turns)
    runner = DaskRunner(client)
    manager = TaskManager(sandbox=SANDBOX, runner=runner)
    task = submit(manager, user_repo)
    wait_for(lambda: journaled(task, "runner") and journaled(task, "tool_result"))
    (first,) = journaled(task, "runner")
    os.kill(first.data["pid"], signal.SIGKILL)  # mid-turn: the model's answer is 4 s away
    assert task.wait(timeout=240) == TaskState.REVIEW, task.error
    assert task.checks and task.checks[0].passed, task.checks
    ran = journaled(task, "runner")
    assert len(ran) == 2 and ran[1].data["moved_from"] == first.data["worker"]
    assert ran[1].data["pid"] != first.data["pid"]
    assert task.workers == [first.data["worker"], ran[1].data["worker"]]
    assert any(f.startswith("moved workers: " + first.data["worker"]) for f in task.flags)
    # The agent was told, in the conversation, and the files said the same.
    (note,) = [e for e in journaled(task, "user") if "[harness]" in json.dumps(e.data)]
    text = note.data["content"][0]["text"]
    assert first.data["worker"] in text and "were lost with it" in text
    assert note.seq == ran[1].seq + 1
    looked = next(e for e in journaled(task, "tool_result") if e.seq > note.seq)
    assert "EDIT-LOST" in json.dumps(looked.data["content"])  # `a - b` is back
    assert any("were lost with it" in json.dumps(r.body) for r in fake.requests)
    assert Journal(task.journal_path).verify().ok
    task.approve()
    assert task.state == TaskState.MERGED
    assert "a + b" in (Path(user_repo.working_dir) / "calc.py").read_text()
    audit_ok(user_repo)


CLIENT = """
import sys, time
from jupyter_delegate import Outcome
from jupyter_delegate.cluster import DaskRunner
from jupyter_delegate.manager import TaskManager

address, repo, sandbox, check = sys.argv[1:]
manager = TaskManager(sandbox=sandbox, runner=DaskRunner(address))
task = manager.submit(Outcome("Make add() add.", checks=(check,)), repo=repo)
print(task.id, flush=True)
time.sleep(600)
"""


def test_a_client_killed_mid_round_is_reattached_by_another_process_which_finishes_it(
    user_repo: git.Repo, cluster: Any
) -> None:
    """The process that submitted (a kernel) is SIGKILLed mid-round; the round goes on on
    the cluster; `TaskManager.get` in another process takes the mirror up (never marking
    the task interrupted), catches up from the queue, verifies and fetches the result."""
    import signal

    turns: list[dict[str, Any]] = [
        {"tools": [{"edit": {"file_path": "calc.py", **FIX_EDIT}}]},
        {"latency_ms": 3000, "tools": [{"bash": {"command": CHECK}}]},
        {"tools": [{"read": {"file_path": "calc.py"}}]},
        {"tools": [{"finish": {"summary": "add() adds"}}]},
    ]
    client, _ = cluster(turns)
    argv = [client.scheduler.address, user_repo.working_dir, SANDBOX, CHECK]
    first = subprocess.Popen(
        [sys.executable, "-c", CLIENT, *argv],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ.copy(),
    )
    try:
        assert first.stdout is not None
        task_id = first.stdout.readline().strip()
        assert task_id, first.communicate(timeout=30)
        folder = Path(user_repo.git_dir) / "delegate" / "tasks" / task_id
        journal = Journal(folder / "journal.jsonl")
        wait_for(lambda: any(e.type == "tool_result" for e in journal.events()))
        assert (folder / "cluster.json").exists()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    # As if it died after it took its last lines from the queue and spooled them, before
    # writing them: they are in the spool, not in the journal.
    lines = journal.path.read_bytes().splitlines(keepends=True)
    while json.loads(lines[-1])["type"] not in ("assistant", "tool_result"):
        lines.pop()  # (the kill may have come after other lines: keep those out of it)
    cut = [line.decode() for line in lines[-2:]]
    assert all(json.loads(line)["type"] in ("assistant", "tool_result") for line in cut)
    journal.path.write_bytes(b"".join(lines[:-2]))
    spool = folder / "cluster-spool.jsonl"
    with spool.open("a") as handle:
        handle.write(json.dumps({"lines": cut}) + "\n")
    mirrored = len(list(journal.events()))
    manager = TaskManager(sandbox=SANDBOX)
    task = manager.get(task_id, user_repo.working_dir)
    assert task.state == TaskState.RUNNING  # taken up, not interrupted
    assert task.wait(timeout=240) == TaskState.REVIEW, task.error
    assert task.checks and task.checks[0].passed, task.checks
    events = list(Journal(task.journal_path).events())
    assert len(events) > mirrored + 3  # the rest came from the queue
    assert not [e for e in events if e.type == "state" and e.data["state"] == "interrupted"]
    assert len([e for e in events if e.type == "runner"]) == 1  # the same worker, all along
    assert Journal(task.journal_path).verify().ok
    assert manager.until_round_ends(task, timeout=30) == TaskState.REVIEW
    assert not (folder / "cluster.json").exists()
    assert not client.list_datasets()
    assert not (folder / "cluster-spool.jsonl").exists()
    task.approve()
    assert task.state == TaskState.MERGED
    assert "a + b" in (Path(user_repo.working_dir) / "calc.py").read_text()
    audit_ok(user_repo)
    runner_for(client.scheduler.address).close()  # the runner `get` took the round up with


@pytest.mark.skipif(SANDBOX != "auto", reason="bubblewrap does not work on this machine")
def test_a_worker_without_bubblewrap_refuses_to_run_commands_unconfined(
    user_repo: git.Repo, cluster: Any, outside_tmp: Path
) -> None:
    """The task asks for the sandbox (`auto`, which this machine has); its workers have no
    bwrap on their PATH: the round fails there as it would on a local machine without it,
    saying so, and no command runs unconfined."""
    bin_dir = outside_tmp / "bin-without-bwrap"
    bin_dir.mkdir()
    for program in Path("/usr/bin").iterdir():
        if program.name != "bwrap":
            (bin_dir / program.name).symlink_to(program)

    def hide_bwrap(bin_dir: str) -> str | None:
        import os
        import shutil

        from jupyter_delegate import sandbox

        usr_bin = os.path.realpath("/usr/bin")
        keep = [p for p in os.environ["PATH"].split(os.pathsep) if os.path.realpath(p) != usr_bin]
        os.environ["PATH"] = os.pathsep.join([bin_dir, *keep])
        sandbox.probe(refresh=True)
        return shutil.which("bwrap")

    client, fake = cluster([{"tools": [{"bash": {"command": "touch ran-unconfined"}}]}])
    assert set(client.run(hide_bwrap, str(bin_dir)).values()) == {None}
    manager = TaskManager(sandbox="auto", runner=DaskRunner(client))
    task = submit(manager, user_repo)
    assert task.wait(timeout=180) == TaskState.FAILED
    assert "bubblewrap cannot confine commands here" in task.error, task.error
    assert "not installed" in task.error and not task.transient
    assert task.sandbox == "bubblewrap" and task.workers  # decided at home; refused there
    assert not journaled(task, "tool_result")  # nothing ran, confined or not
    assert not [r for r in fake.requests if r.kind == "turn"]  # the agent never started
    assert Journal(task.journal_path).verify().ok


WATCH_CELL = """
import json, time
magics = get_ipython().magics_manager.registry["DelegateMagics"]
(view,) = magics.views.values()
task = view.task
heard = []
task.subscribe(lambda event: heard.append(event.kind))
seen = []
deadline = time.monotonic() + 150
while task.state.active and time.monotonic() < deadline:
    now = {k: view.live.activity.get(k, "") for k in ("kind", "verb", "subject")}
    if not seen or seen[-1] != now:
        seen.append(now)
    time.sleep(0.02)
"""
REPORT_CELL = """
# the events come from the worker on their own stream: `wait` may return on the state
# before the review's own event has reached the view
deadline = time.monotonic() + 20
while "review" not in heard and time.monotonic() < deadline:
    time.sleep(0.05)
print(json.dumps({
    "id": task.id, "state": str(task.state), "workers": task.workers, "heard": heard,
    "seen": seen, "now": dict(view.live.activity), "log": dict(view._log.counts()),
    "html": view.live_log_html,
}))
"""


def test_a_notebook_task_on_the_cluster_streams_live_events_to_its_view(
    user_repo: git.Repo, cluster: Any, outside_tmp: Path
) -> None:
    """A real kernel (nbclient): `%%delegate --cluster ADDRESS` runs the task on a worker of
    a LocalCluster the test started; the view in the kernel follows it live (its log fills
    with the agent's calls, its live line says the command running on the worker), it
    reaches review, `%delegate approve` merges it, and the audit verifies."""
    import nbformat
    from nbclient import NotebookClient

    slow = {"tools": [{"bash": {"command": "sleep 3; echo slept"}}]}
    client, _ = cluster([slow, *FIX_TURNS])
    address = client.scheduler.address
    repo = user_repo.working_dir
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell(source)
            for source in (
                "%load_ext jupyter_delegate",
                f"%%delegate --repo {repo} --name on-cluster --sandbox {SANDBOX} "
                f"--cluster {address}\nMake add() add.\ncheck: {CHECK}",
                WATCH_CELL,
                "%delegate wait {task.id} --timeout 120",
                REPORT_CELL,
                "%delegate approve {task.id}",
                "print(task.state)",
            )
        ]
    )
    NotebookClient(
        notebook,
        timeout=240,
        kernel_name="python3",
        resources={"metadata": {"path": str(outside_tmp)}},
    ).execute()
    printed = "".join(o.get("text", "") for o in notebook.cells[4].outputs)
    report = json.loads(printed)
    assert report["state"] == "review", report
    # It ran on a worker of the cluster the test started, which its record names.
    assert report["workers"] and report["workers"][0] in client.scheduler_info()["workers"]
    # The view heard the round as it ran there: the agent's calls in its log, and its live
    # line naming the command running on the worker while it ran.
    assert {"tool_call", "tool_result", "checks", "review"} <= set(report["heard"]), report
    assert report["log"].get("tool", 0) == 5 and report["log"].get("text", 0) >= 2, report["log"]
    assert "sleep 3; echo slept" in report["html"] and "The operator is wrong." in report["html"]
    running = {"kind": "tool", "verb": "running", "subject": "sleep 3; echo slept"}
    assert running in report["seen"], report["seen"]
    assert report["now"]["kind"] == "", report["now"]  # in review: at rest
    # Approved in the notebook: merged into the user's repository, and the audit agrees.
    assert "merged" in "".join(o.get("text", "") for o in notebook.cells[6].outputs)
    assert (Path(repo) / "calc.py").read_text() == CALC.replace("a - b", "a + b")
    audit_ok(user_repo)
