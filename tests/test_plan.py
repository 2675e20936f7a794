"""Plans (planning.py): subtasks run as a graph through the real SDK and the scripted fake;
refused plans; a parent changed after its dependent started; integration."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import git
import pytest

import jupyter_delegate as jd
from conftest import (
    CALC,
    CHECK,
    SANDBOX,  # noqa: F401 (the child process of a test imports it from here)
    Factory,
    messages_sent,
    until,
)
from jupyter_delegate import planning as plans
from jupyter_delegate.errors import PlanError
from jupyter_delegate.journal import Journal
from jupyter_delegate.outcome import Outcome
from jupyter_delegate.planning import Plan, create, plan_ids, propose
from jupyter_delegate.task import TaskState
from jupyter_delegate.workspace import Workspace

S = TaskState

DIAMOND = """\
plan: Shapes
checks: ["test -f base.txt && test -f left.txt && test -f right.txt && test -f join.txt"]
budget: {max_usd: 5}
parallel: 2
subtasks:
  - name: base
    goal: "Write base.txt"
    checks: ["test -f base.txt"]
  - name: left
    goal: "Write left.txt"
    checks: ["test -f left.txt && test -f base.txt"]
    depends_on: [base]
  - name: right
    goal: "Write right.txt"
    checks: ["test -f right.txt"]
    depends_on: [base]
  - name: join
    goal: "Write join.txt"
    checks: ["test -f left.txt && test -f right.txt && test -f join.txt"]
    depends_on: [left, right]
  - name: docs
    goal: "Write docs.txt"
    checks: ["test -f docs.txt"]
    depends_on: [join]
"""


def writer(latency_ms: int = 0) -> Any:
    """A scenario answering each subtask's agent: write NAME.txt (the goal says which),
    then finish; each turn takes `latency_ms`."""

    def script(body: dict[str, Any], index: int) -> dict[str, Any] | None:
        first = body["messages"][0]["content"]
        text = first if isinstance(first, str) else first[0]["text"]
        name = text.split("Write ", 1)[1].split(".txt", 1)[0] if "Write " in text else "x"
        turns = [
            {"tools": [{"write": {"file_path": f"{name}.txt", "content": f"{name}\n"}}]},
            {"tools": [{"finish": {"summary": f"wrote {name}.txt"}}]},
        ]
        if index >= len(turns):
            return None
        return {**turns[index], "latency_ms": latency_ms}

    return script


def approve_in_review(plan: Plan) -> list[str]:
    approved = []
    for name, task in plan.tasks().items():
        if task.state == S.REVIEW:
            task.approve()
            approved.append(name)
    return approved


def run_to_ready(plan: Plan, timeout: float = 120) -> None:
    def step() -> bool:
        approve_in_review(plan)
        return plan.refresh().state in ("ready", "failed")

    until(step, timeout, "the plan to be ready")


def test_diamond_plan_runs_as_a_graph_and_integrates(repo: git.Repo, make_manager: Factory) -> None:
    manager, _ = make_manager(writer(latency_ms=300))
    root = Path(repo.working_dir)
    base = repo.head.commit.hexsha
    plan = create(DIAMOND, root, manager=manager)
    assert plan.state == "draft" and [s.state for s in plan.statuses()] == [
        "ready",
        "planned",
        "planned",
        "planned",
        "planned",
    ]
    plan.dispatch()
    run_to_ready(plan)
    assert plan.state == "ready", plan.reason
    tasks = plan.tasks()
    assert all(t.state == S.MERGED for t in tasks.values())
    # left and right ran at the same time: their journals' intervals overlap
    spans = {}
    for name in ("left", "right"):
        times = [e.ts for e in Journal(manager.journal_path(tasks[name])).events()]
        spans[name] = (times[0], times[-1])
    assert spans["left"][0] < spans["right"][1] and spans["right"][0] < spans["left"][1]
    # join started from both parents' merged heads
    join = plan.started["join"]
    assert set(join.parents) == {"left", "right"}
    start = repo.commit(join.start_commit)
    for parent in ("left", "right"):
        assert repo.is_ancestor(repo.commit(tasks[parent].merged_commit), start)
    assert repo.head.commit.hexsha == base  # nothing reached main before the integration

    merged = plan.approve()
    assert plan.state == "integrated"
    assert repo.head.commit.hexsha == merged
    for name in ("base", "left", "right", "join", "docs"):
        assert (root / f"{name}.txt").read_text() == f"{name}\n"
    assert [r["passed"] for r in plan.integration["checks"]] == [True]
    assert plan.integration["order"] == ["base", "left", "right", "join", "docs"]
    assert Journal(plan.folder / "journal.jsonl").verify().ok
    audited = subprocess.run(
        ["jupyter-delegate", "audit", "verify", "--repo", str(root)], capture_output=True, text=True
    )
    assert audited.returncode == 0, audited.stdout + audited.stderr
    assert f"plan {plan.id}: audit verify: ok" in audited.stdout
    assert audited.stdout.count(": audit verify: ok") == 6  # five subtasks and the plan


@pytest.mark.parametrize(
    "change, named",
    [
        ({"depends_on": ["docs"], "index": 0}, "cycle: "),
        ({"depends_on": ["nowhere"], "index": 1}, "depends on 'nowhere'"),
        ({"scope": ["../elsewhere/x.py"], "index": 2}, "outside the repository"),
        ({"budget": {"max_usd": 9}, "index": 3}, "over the plan's"),
        ({"name": "left", "index": 2}, "used more than once"),
    ],
)
def test_a_bad_plan_is_refused_naming_the_problem_and_nothing_starts(
    repo: git.Repo, make_manager: Factory, change: dict[str, Any], named: str
) -> None:
    import yaml

    manager, fake = make_manager(writer())
    data = yaml.safe_load(DIAMOND)
    index = change.pop("index")
    data["subtasks"][index].update(change)
    with pytest.raises(PlanError, match="nothing was started") as refused:
        create(yaml.safe_dump(data), repo.working_dir, manager=manager)
    assert named in str(refused.value)
    assert plan_ids(Workspace(repo.working_dir)) == []
    assert [h.name for h in repo.heads] == ["main"] and not fake.requests


def test_a_budget_sum_over_the_plans_is_refused(repo: git.Repo, make_manager: Factory) -> None:
    manager, _ = make_manager(writer())
    text = DIAMOND
    for name in ("base", "left"):
        goal = f'goal: "Write {name}.txt"'
        text = text.replace(goal, goal + "\n    budget: {max_usd: 3}")
    with pytest.raises(PlanError, match=r"add up to \$6.00, over the plan's \$5.00"):
        create(text, repo.working_dir, manager=manager)


STACKED = """\
plan: Stacked
stack: true
subtasks:
  - name: base
    goal: "Write base.txt"
    checks: ["test -f base.txt"]
  - name: top
    goal: "Write top.txt"
    checks: ["test -f top.txt"]
    depends_on: [base]
"""


def test_request_changes_on_a_parent_flags_its_started_dependent_which_restarts(
    repo: git.Repo, make_manager: Factory
) -> None:
    def script(body: dict[str, Any], index: int) -> dict[str, Any] | None:
        first = body["messages"][0]["content"]
        text = first if isinstance(first, str) else first[0]["text"]
        name = "base" if "base.txt" in text else "top"
        asked_again = len(body["messages"]) > 4  # the feedback round
        content = f"{name} v2\n" if asked_again else f"{name}\n"
        turns = [
            {"tools": [{"write": {"file_path": f"{name}.txt", "content": content}}]},
            {"tools": [{"finish": {"summary": f"wrote {name}.txt"}}]},
        ]
        position = index % 2 if asked_again else index
        return turns[position] if position < len(turns) else None

    manager, _ = make_manager(script)
    root = Path(repo.working_dir)
    plan = create(STACKED, root, manager=manager)
    plan.dispatch()
    until(
        lambda: "top" in plan.tasks() and plan.tasks()["top"].state == S.REVIEW,
        60,
        "top to be in review (started from base in review: stack)",
    )
    top = plan.tasks()["top"]
    first_start = plan.started["top"].start_commit
    base = plan.tasks()["base"]
    assert base.state == S.REVIEW
    base.request_changes("Write 'base v2' instead.")
    until(
        lambda: base.state == S.REVIEW and plan.refresh().flagged.get("top"),
        60,
        "top to be flagged once base changed",
    )
    status = {s.name: s for s in plan.statuses()}["top"]
    assert "base changed after it started" in status.stale
    new = plan.restart("top")
    assert new is not None and new.id != top.id
    assert manager.refresh(top).state == S.REJECTED
    assert plan.started["top"].start_commit != first_start
    assert new.base_commit == base.head_commit
    assert new.wait(60) == S.REVIEW
    base.approve()
    new.approve()
    until(lambda: plan.refresh().state == "ready", 30, "the plan to be ready")
    plan.approve()
    assert (root / "base.txt").read_text() == "base v2\n"
    assert (root / "top.txt").read_text() == "top\n"


def test_a_failed_parent_blocks_its_dependents_which_say_why(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager(writer())
    text = DIAMOND.replace('checks: ["test -f base.txt"]', 'checks: ["test -f nothing.txt"]')
    plan = create(text, repo.working_dir, manager=manager)
    plan.dispatch()
    until(lambda: plan.tasks().get("base") and plan.tasks()["base"].state == S.REVIEW, 60)
    plan.tasks()["base"].reject("not proven")
    until(lambda: {s.name: s.state for s in plan.statuses()}["left"] == "blocked", 30)
    statuses = {s.name: s for s in plan.statuses()}
    assert statuses["left"].why == "base is rejected"
    assert statuses["docs"].state == "blocked"
    with pytest.raises(PlanError, match="every subtask must be approved"):
        plan.approve()


def test_a_plan_proposed_by_the_agent_is_checked_then_becomes_a_draft(
    repo: git.Repo, make_manager: Factory
) -> None:
    bad = {
        "title": "Two",
        "summary": "",
        "subtasks": [
            {
                "name": "a",
                "goal": "A",
                "checks": [],
                "scope": [],
                "budget_usd": 1,
                "depends_on": ["b"],
            },
            {
                "name": "b",
                "goal": "B",
                "checks": [],
                "scope": [],
                "budget_usd": 1,
                "depends_on": ["a"],
            },
        ],
    }
    good = {**bad, "subtasks": [{**bad["subtasks"][0], "depends_on": []}, bad["subtasks"][1]]}
    turns = [
        {
            "tools": [
                {"glob": {"pattern": "*.py"}},
                {"write": {"file_path": "x.py", "content": "1"}},
            ]
        },
        {"tools": [{"propose_plan": bad}]},
        {"tools": [{"propose_plan": good}]},
    ]
    manager, fake = make_manager(turns)
    plan = propose(Outcome("Split the work", checks=("true",)), repo.working_dir, manager=manager)
    assert plan.state == "planning"
    until(lambda: plan.refresh().state == "draft", 60, "the proposal")
    assert plan.spec is not None and [s.name for s in plan.spec.subtasks] == ["a", "b"]
    assert plan.spec.subtasks[1].depends_on == ("a",) and plan.spec.checks == ("true",)
    tools = {t["name"]: t for t in fake.requests[-1].body["tools"]}
    assert "finish" not in tools and "bash" not in tools and tools["propose_plan"]["strict"]
    write = messages_sent(fake)[-1].body["messages"][2]["content"][1]
    assert write["is_error"] and "plan mode is read only" in str(write["content"])
    second = fake.requests[-1].body["messages"][-1]["content"][0]
    assert second["is_error"] and "cycle" in second["content"]
    planner = manager.get(plan.planner, repo.working_dir)
    assert planner.state == S.REJECTED  # its work is the plan
    assert not (Path(repo.working_dir) / "x.py").exists()
    assert repo.git.branch("--list", "delegate/*") == ""  # no branch left


def test_a_conflict_at_integration_names_the_files_leaves_the_base_and_restarts(
    repo: git.Repo, make_manager: Factory
) -> None:
    def script(body: dict[str, Any], index: int) -> dict[str, Any] | None:
        first = body["messages"][0]["content"]
        text = first if isinstance(first, str) else first[0]["text"]
        if "one way" in text:
            change = {
                "edit": {"file_path": "calc.py", "old_string": "a - b", "new_string": "a + b"}
            }
        else:
            change = {"write": {"file_path": "calc.py", "content": CALC.replace("a - b", "b + a")}}
        turns = [{"tools": [change]}, {"tools": [{"finish": {"summary": "fixed"}}]}]
        return turns[index] if index < len(turns) else None

    manager, _ = make_manager(script)
    spec = {
        "plan": "Two ways",
        "subtasks": [
            {"name": "one", "goal": "Fix add one way", "checks": [CHECK]},
            {"name": "two", "goal": "Fix add the other way", "checks": [CHECK]},
        ],
    }
    plan = plans.create(spec, repo.working_dir, manager=manager)
    base = repo.head.commit.hexsha
    plan.dispatch()
    run_to_ready(plan)
    with pytest.raises(PlanError, match=r"stopped at two: it conflicts with one in calc.py"):
        plan.approve()
    assert repo.head.commit.hexsha == base and plan.state == "ready"
    failure = dict(plan.failure)
    partial = failure.pop("partial")
    assert failure == {"subtask": "two", "conflicts": ["calc.py"], "merged": ["one"]}
    assert (Path(repo.working_dir) / "calc.py").read_text() == CALC
    with pytest.raises(PlanError, match="only one whose change conflicted"):
        plan.restart("one")
    two = plan.restart("two")  # from the work merged before it: one's change
    assert two is not None and two.base_commit == partial
    run_to_ready(plan)
    plan.approve()
    assert (Path(repo.working_dir) / "calc.py").read_text() == CALC.replace("a - b", "b + a")
    assert plan.integration["order"] == ["one", "two"]


def test_failing_plan_checks_on_the_integration_leave_the_base(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager(writer())
    spec = {
        "plan": "One",
        "checks": ["test -f base.txt", "test -f nowhere.txt"],
        "subtasks": [{"name": "base", "goal": "Write base.txt", "checks": ["test -f base.txt"]}],
    }
    plan = plans.create(spec, repo.working_dir, manager=manager)
    base = repo.head.commit.hexsha
    plan.dispatch()
    run_to_ready(plan)
    with pytest.raises(
        PlanError, match=r"checks fail on the integration .*: test -f nowhere.txt\."
    ):
        plan.approve()
    assert repo.head.commit.hexsha == base
    assert [c["passed"] for c in plan.failure["checks"]] == [True, False]
    branch = f"delegate/plan-{plan.id}"
    assert (repo.commit(branch).tree / "base.txt").data_stream.read() == b"base\n"


CHILD = """
import sys, time
sys.path.insert(0, sys.argv[2])
from test_plan import writer, SANDBOX
from jupyter_delegate import planning
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.testing import FakeMessagesAPI, load_scenario
fake = FakeMessagesAPI(load_scenario(writer(latency_ms=1500)))
manager = TaskManager(client=fake.async_client(max_retries=0), sandbox=SANDBOX)
plan = planning.create(open(sys.argv[3]).read(), sys.argv[1], manager=manager)
plan.dispatch()
print(plan.id, flush=True)
time.sleep(600)
"""


def test_a_plan_whose_process_died_shows_its_state_and_resumes_elsewhere(
    repo: git.Repo, make_manager: Factory, tmp_path: Path
) -> None:
    spec = tmp_path / "plan.yaml"
    spec.write_text(DIAMOND)
    tests = str(Path(__file__).parent)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, repo.working_dir, tests, str(spec)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        plan_id = child.stdout.readline().strip()
        manager, _ = make_manager(writer())
        plan = manager.plan(plan_id, repo.working_dir)
        until(lambda: "base" in plan.refresh().started, 60, "base to start in the child")
        time.sleep(0.5)  # its first model turn under way
    finally:
        child.kill()
        child.wait()
    plan.refresh()
    assert plan.state == "running"  # as its journal says; nobody runs it now
    assert {s.name: s.state for s in plan.statuses()}["base"] == "interrupted"
    plan.resume()
    run_to_ready(plan)
    assert plan.state == "ready", plan.reason
    plan.approve()
    assert plan.state == "integrated"
    assert (Path(repo.working_dir) / "docs.txt").read_text() == "docs\n"


def test_cancelling_a_plan_being_planned_stops_the_planner_and_it_stays_cancelled(
    repo: git.Repo, make_manager: Factory
) -> None:
    proposal = {
        "title": "One",
        "summary": "",
        "subtasks": [
            {"name": "a", "goal": "A", "checks": [], "scope": [], "budget_usd": 1, "depends_on": []}
        ],
    }
    turns = [
        {"tools": [{"glob": {"pattern": "*.py"}}], "latency_ms": 1500},
        {"tools": [{"propose_plan": proposal}]},
    ]
    manager, _ = make_manager(turns)
    plan = plans.propose(Outcome("Split the work"), repo.working_dir, manager=manager)
    plan.cancel()
    planner = manager.get(plan.planner, repo.working_dir)
    assert planner.wait(30) == S.CANCELLED
    time.sleep(0.5)  # the proposal's watcher has seen the planner end
    assert plan.refresh().state == "cancelled" and plan.spec is None


def test_jd_plan_and_jd_attempts_stay_functions_once_their_modules_are_imported(
    repo: git.Repo, make_manager: Factory
) -> None:
    import jupyter_delegate.best_of
    import jupyter_delegate.planning  # noqa: F401 (what the manager and the CLI import)

    assert callable(jd.plan) and callable(jd.attempts)
    manager, _ = make_manager(writer())
    made = jd.plan(spec=STACKED, repo=repo.working_dir, manager=manager)
    assert made.state == "draft" and jd.get_plan(made.id, repo.working_dir).id == made.id
    assert [p.id for p in jd.plans(repo.working_dir)] == [made.id]


@pytest.mark.parametrize(
    ("subtask", "named"),
    [
        ({"name": "model\n"}, "name 'model\\n'"),
        ({"scope": ["/abs/inside"]}, "Scope entry '/abs/inside'"),
        ({"scope": ["src/../shop"]}, "Scope entry 'src/../shop'"),
        ({"checks": ["pytest -q  # timeout=soon"]}, "timeout=soon"),
        ({"budget": {"max_usd": float("nan")}}, "max_usd must be a positive number"),
        ({"budget": {"max_steps": float("inf")}}, "max_steps must be a positive number"),
    ],
)
def test_a_subtask_its_task_would_refuse_is_refused_by_the_plans_check(
    tmp_path: Path, subtask: dict[str, Any], named: str
) -> None:
    # What passes the plan's check must start: a subtask whose outcome or budget its
    # task refuses would fail at dispatch, after other subtasks had started.
    root = tmp_path / "repo"
    root.mkdir()
    scope = subtask.get("scope", ())
    if scope and scope[0].startswith("/"):
        subtask = {**subtask, "scope": [str(root / "inside")]}
        named = named.replace("/abs/inside", str(root / "inside"))
    data = {"plan": "P", "subtasks": [{"name": "model", "goal": "g", **subtask}]}
    with pytest.raises(PlanError, match="nothing was started") as refused:
        plans.PlanSpec.from_dict(data).check(root)
    assert named in str(refused.value)


def test_a_yaml_alias_bomb_is_refused_quickly_with_a_short_message() -> None:
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n"
    for level in "bcdefghi":
        prev = chr(ord(level) - 1)
        bomb += f"{level}: &{level} [{', '.join([f'*{prev}'] * 9)}]\n"
    for key in ("checks", "parallel", "stack", "base", "budget"):
        text = bomb + f"plan: Bomb\n{key}: *i\nsubtasks:\n  - *i\n  - {{name: n, goal: *i}}\n"
        started = time.monotonic()
        with pytest.raises(PlanError) as refused:
            plans.PlanSpec.from_yaml(text)
        assert time.monotonic() - started < 5
        assert len(str(refused.value)) < 3000


def test_dispatch_runs_the_spec_another_process_edited_not_the_one_it_last_read(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager(writer())
    plan = create(DIAMOND, repo.working_dir, manager=manager)
    elsewhere = Plan(plan.workspace, plan.id, manager)  # another reader, as a CLI's
    narrowed = plans.PlanSpec.from_yaml(DIAMOND)
    narrowed = narrowed.edited(subtasks=narrowed.subtasks[:1], checks=())
    elsewhere.edit(narrowed)
    plan.dispatch()  # read the five-subtask draft before the edit
    plan.cancel()
    assert [s.name for s in plan.refresh()._spec().subtasks] == ["base"]
    assert [e.type for e in plan.journal.events()].count("edited") == 1


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("plan: x\ngoal: 2026-13-45\nsubtasks: [{name: a, goal: g}]", "month must be in 1..12"),
        ("plan: " + "[" * 5000 + "]" * 5000, "nested too deeply"),
    ],
)
def test_yaml_that_breaks_the_parser_is_one_plan_error(text: str, named: str) -> None:
    with pytest.raises(PlanError, match="not valid YAML") as refused:
        plans.PlanSpec.from_yaml(text)
    assert named in str(refused.value)


@pytest.mark.parametrize("subtasks", [5, {"a": 1}, "ab", None])
def test_a_proposal_whose_subtasks_are_no_list_is_answered_not_raised(
    tmp_path: Path, subtasks: Any
) -> None:
    answer = plans.check_proposal({"title": "T", "subtasks": subtasks}, tmp_path, {})
    assert answer is not None and "`subtasks:` must be a non-empty list" in answer


def test_a_long_goal_does_not_break_the_integrations_merge_commit(
    repo: git.Repo, make_manager: Factory
) -> None:
    # The goal goes into the merge commit's message: one argument to git, which the
    # system caps (128 KiB on Linux); the plan ran, so its integration must not fail.
    manager, _ = make_manager(writer())
    long = "Write two.txt\n\n" + "detail " * 30_000
    data = {
        "plan": "Long",
        "subtasks": [
            {"name": "one", "goal": "Write one.txt", "checks": ["test -f one.txt"]},
            {"name": "two", "goal": long, "checks": ["test -f two.txt"]},
        ],
    }
    plan = create(data, repo.working_dir, manager=manager)
    plan.dispatch()
    run_to_ready(plan)
    merged = plan.approve()
    assert repo.head.commit.hexsha == merged and len(repo.head.commit.parents) == 2
    assert "integrate two" in repo.head.commit.message


@pytest.mark.parametrize("text", ["Write\x00 it", "Write \x1b[2Jit", "Write\x7f"])
def test_control_characters_in_a_plans_texts_are_refused(tmp_path: Path, text: str) -> None:
    for where in ("goal", "checks", "scope"):
        subtask: dict[str, Any] = {"name": "a", "goal": "g", where: text}
        with pytest.raises(PlanError, match="control character"):
            plans.PlanSpec.from_dict({"plan": "P", "subtasks": [subtask]}).check(tmp_path)
    with pytest.raises(PlanError, match="control character"):
        plans.PlanSpec.from_dict({"plan": text, "subtasks": [{"name": "a", "goal": "g"}]})


def test_a_restarted_subtasks_old_task_still_counts_against_the_plans_budget(
    repo: git.Repo, make_manager: Factory
) -> None:
    manager, _ = make_manager(writer())
    data = {
        "plan": "Once more",
        "budget": {"max_usd": 1},
        "subtasks": [{"name": "one", "goal": "Write one.txt", "checks": ["test -f one.txt"]}],
    }
    plan = create(data, repo.working_dir, manager=manager)
    plan.dispatch()
    until(lambda: plan.tasks()["one"].state == S.REVIEW, 60, "one in review")
    old = plan.tasks()["one"]
    spent = old.usage.cost_usd
    assert spent > 0
    new = plan.restart("one")
    assert new is not None and new.wait(60) == S.REVIEW
    assert plan.cost_usd == pytest.approx(spent + new.usage.cost_usd, abs=1e-4)
    assert new.outcome.budget.max_usd == pytest.approx(1 - spent, abs=1e-3)
    plan.cancel()


def test_cancel_does_not_undo_an_integration_even_one_under_way(
    repo: git.Repo, make_manager: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    manager, _ = make_manager(writer())
    data = {
        "plan": "Done",
        "checks": ["test -f one.txt"],
        "subtasks": [{"name": "one", "goal": "Write one.txt", "checks": ["test -f one.txt"]}],
    }
    plan = create(data, repo.working_dir, manager=manager)
    plan.dispatch()
    run_to_ready(plan)
    checking, go_on = threading.Event(), threading.Event()
    real_check = Plan._check

    def slow_check(self: Plan, commit: str, commands: Any) -> Any:
        checking.set()
        go_on.wait(30)
        return real_check(self, commit, commands)

    monkeypatch.setattr(Plan, "_check", slow_check)
    approving = threading.Thread(target=plan.approve)
    approving.start()
    assert checking.wait(30)
    cancelled: list[BaseException | None] = []

    def cancel() -> None:
        try:
            plan.cancel()
            cancelled.append(None)
        except PlanError as exc:
            cancelled.append(exc)

    cancelling = threading.Thread(target=cancel)
    cancelling.start()
    time.sleep(0.5)
    go_on.set()
    approving.join(60)
    cancelling.join(60)
    assert plan.refresh().state == "integrated"
    assert isinstance(cancelled[0], PlanError) and "integrated" in str(cancelled[0])
    assert "cancelled" not in [e.data.get("state") for e in plan.journal.events()]
    with pytest.raises(PlanError, match="already integrated"):
        plan.cancel()


def test_a_plan_of_too_many_subtasks_is_refused_quickly(tmp_path: Path) -> None:
    many = [
        {"name": f"s{i}", "goal": "g", "depends_on": [f"s{i - 1}"] if i else []}
        for i in range(plans.MAX_SUBTASKS + 1)
    ]
    with pytest.raises(PlanError, match=f"at most {plans.MAX_SUBTASKS} subtasks"):
        plans.PlanSpec.from_dict({"plan": "Many", "subtasks": many}).check(tmp_path)
    chain = plans.PlanSpec.from_dict({"plan": "Chain", "subtasks": many[:-1]})
    started = time.monotonic()
    assert chain.order() == [f"s{i}" for i in range(plans.MAX_SUBTASKS)]
    assert time.monotonic() - started < 0.5
