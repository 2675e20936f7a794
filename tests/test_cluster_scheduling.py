"""Scheduling on a Dask cluster (cluster.py, resources.py): a task's declared `cpus` and
`memory` become Dask worker resources, refused when malformed or when no worker declares
them; best-of-N attempts and a plan's subtasks spread over the workers; the board, the CLI
and the record say which worker ran what. A LocalCluster of two worker processes, each
declaring one CPU, and the scripted fake model over loopback, as in test_cluster.py."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest

from conftest import CHECK, SANDBOX
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate.errors import UsageError
from jupyter_delegate.journal import Journal
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.resources import declared, parse_memory
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario

distributed = pytest.importorskip("distributed")
from test_cluster import cli  # noqa: E402

from jupyter_delegate import best_of  # noqa: E402
from jupyter_delegate.cluster import ClusterError  # noqa: E402
from jupyter_delegate.planning import create  # noqa: E402

# A turn that takes long enough for both rounds to be on the cluster at once.
SLOW_FINISH = {"latency_ms": 1500, "tools": [{"finish": {"summary": "done"}}]}


@pytest.fixture
def cluster(outside_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`cluster(turns)`: the fake serving `turns`, and a client of a LocalCluster of two
    worker processes that declare one CPU and 2 GB each."""
    made: list[Any] = []

    def start(turns: list[dict[str, Any]]) -> Any:
        server = FakeServer(FakeMessagesAPI(load_scenario({"name": "sched", "turns": turns})))
        made.append(server)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-scheduling-test-0123456789")
        monkeypatch.setenv("JUPYTER_DELEGATE_WORKER_DIR", str(outside_tmp / "workers"))
        local = distributed.LocalCluster(
            n_workers=2,
            processes=True,
            threads_per_worker=2,  # two threads: only the resources keep rounds apart
            dashboard_address=None,
            resources={"cpus": 1, "memory": 2e9},
        )
        made.append(local)
        client = distributed.Client(local)
        made.append(client)
        return client

    yield start
    for thing in reversed(made):
        thing.close()


def test_malformed_resources_are_refused_before_anything_is_made(user_repo: git.Repo) -> None:
    assert declared(2, "4GB") == {"cpus": 2, "memory": 4_000_000_000}
    assert declared("0.5", "512MiB") == {"cpus": 0.5, "memory": 512 * 2**20}
    assert parse_memory(1024) == 1024 and declared() == {}
    manager = TaskManager(sandbox=SANDBOX)
    tasks = Path(user_repo.git_dir) / "delegate" / "tasks"
    for cpus, memory, said in [
        (0, None, "--cpus takes a number of CPUs above 0"),
        ("two", None, "--cpus takes a number"),
        (None, "lots", "--memory takes a size such as 4GB"),
        (None, "4 parsecs", "--memory takes a size"),
        (None, "0GB", "--memory must be more than nothing"),
    ]:
        with pytest.raises(UsageError, match=said):
            manager.submit(
                Outcome("x", checks=(CHECK,)),
                repo=user_repo.working_dir,
                cpus=cpus,
                memory=memory,
            )
    assert not tasks.exists() or not any(tasks.iterdir())
    done = cli("run", "x", "--check", "true", "--repo", user_repo.working_dir, "--memory", "lots")
    assert done.returncode != 0 and "--memory takes a size" in done.stdout + done.stderr


def test_resources_no_worker_declares_are_refused_at_submit(
    user_repo: git.Repo, cluster: Any
) -> None:
    client = cluster([SLOW_FINISH])
    manager = TaskManager(sandbox=SANDBOX)
    with pytest.raises(ClusterError, match="No worker of the cluster declares 4 CPUs") as err:
        manager.submit(
            Outcome("x", checks=(CHECK,)), repo=user_repo.working_dir, runner=client, cpus=4
        )
    assert "cpus=1, memory=2e+09" in str(err.value) and "--resources" in str(err.value)
    with pytest.raises(ClusterError, match="No worker"):
        manager.submit(
            Outcome("x", checks=(CHECK,)),
            repo=user_repo.working_dir,
            runner=client,
            memory="16GB",
        )
    assert not manager.tasks(user_repo.working_dir)


def test_two_attempts_run_on_two_workers_and_the_board_says_which(
    user_repo: git.Repo, cluster: Any
) -> None:
    client = cluster([SLOW_FINISH, SLOW_FINISH])
    manager = TaskManager(sandbox=SANDBOX)
    group = best_of.start(
        Outcome("Make add() add.", checks=(CHECK,)),
        2,
        repo=user_repo.working_dir,
        manager=manager,
        runner=client,
        cpus=1,
        memory="1GB",
    )
    for task in group.tasks:
        assert task.wait(timeout=180) == TaskState.REVIEW, task.error
    workers = set(client.scheduler_info()["workers"])
    ran = [task.workers for task in group.tasks]
    assert all(len(w) == 1 and w[0] in workers for w in ran), ran
    assert ran[0] != ran[1]  # one CPU each: the two attempts went to the two workers
    for task in group.tasks:
        first = next(Journal(task.journal_path).events())
        assert first.data["resources"] == {"cpus": 1, "memory": 1_000_000_000}
        record = task.to_record()
        assert record["workers"] == task.workers and record["resources"]["cpus"] == 1
    # The CLI (another process, from the journals) and the board's record say it too.
    listed = cli("list", "--repo", user_repo.working_dir)
    for task in group.tasks:
        assert f"on {task.workers[0]}" in listed.stdout, listed.stdout
    shown = cli("show", group.tasks[0].id, "--repo", user_repo.working_dir)
    assert f"ran on: {group.tasks[0].workers[0]}" in shown.stdout, shown.stdout
    assert "needs: 1 CPU, 1.0 GB" in shown.stdout
    as_json = json.loads(cli("list", "--json", "--repo", user_repo.working_dir).stdout)
    assert {r["workers"][0] for r in as_json} == set(w[0] for w in ran)
    from jupyter_delegate.notebook.record import compact_record
    from jupyter_delegate.server.board import Board

    notebook = compact_record(group.tasks[0])  # the notebook's record: a line of ran_with
    assert f"on Dask worker {group.tasks[0].workers[0]}" in notebook["ran_with"]
    assert "declared: 1 CPU, 1.0 GB" in notebook["ran_with"] and "workers" not in notebook
    board = Board.__new__(Board)
    record = board.summary(group.tasks[1])  # the REST record of a task
    assert record["workers"] == group.tasks[1].workers


PLAN = """\
goal: "Two files"
parallel: 2
subtasks:
  - name: left
    goal: "Write left.txt"
    checks: ["true"]
  - name: right
    goal: "Write right.txt"
    checks: ["true"]
"""


def test_a_plans_subtasks_spread_over_the_workers(user_repo: git.Repo, cluster: Any) -> None:
    client = cluster([SLOW_FINISH, SLOW_FINISH])
    manager = TaskManager(sandbox=SANDBOX)
    plan = create(PLAN, user_repo.working_dir, manager=manager)
    plan.dispatch(runner=client, cpus=1)
    deadline = time.monotonic() + 60
    subtasks: list[Any] = []
    while len(subtasks) < 2 and time.monotonic() < deadline:
        subtasks = [t for t in manager.tasks(user_repo.working_dir) if t.group]
        time.sleep(0.2)
    assert len(subtasks) == 2
    for task in subtasks:
        assert task.wait(timeout=180) == TaskState.REVIEW, task.error
    ran = {task.workers[0] for task in subtasks}
    assert ran <= set(client.scheduler_info()["workers"]) and len(ran) == 2
    dispatched = [e for e in plan_events(plan) if e["type"] == "dispatched"]
    assert dispatched[0]["data"]["options"]["cpus"] == 1
    plan.cancel()


def plan_events(plan: Any) -> list[dict[str, Any]]:
    path = Path(plan.folder) / "journal.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_cluster_model_runs_and_names_where_the_bottleneck_moves() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from bench.cluster_sim import Params, simulate

    limited = simulate(Params(tasks=100, workers=10, rpm=400, otpm=40_000))
    assert limited["bottleneck"] == "model rate limit"
    ample = simulate(Params(tasks=100, workers=2, rpm=1e6, otpm=1e9))
    assert ample["bottleneck"] == "worker slots" and ample["queue_wait_p95_s"] > 0
    # Each of 100 tasks makes 20 requests; the cost is the model's, plus slot time.
    assert limited["model_usd"] == ample["model_usd"] > 0
