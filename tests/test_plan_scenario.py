"""The bundled `plan` scenario (the tutorial "Breaking a problem down"): on the demo shop,
`jd.plan` through the real harness and SDK against the scripted fake. The planner
proposes three subtasks through its strict `propose_plan` tool, two run at once, the
third starts from both once they are approved, each proven by its own check, and the
plan integrates with the whole suite passing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import git

import jupyter_delegate as jd
from conftest import SANDBOX, until
from jupyter_delegate.journal import Journal
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.task import TaskState
from jupyter_delegate.testing import FakeMessagesAPI, load_scenario
from jupyter_delegate.testing.demo_repo import CHECK, make_demo_repo

S = TaskState
# The tutorial's goal, word for word (the scenario's planner conversation matches it).
GOAL = (
    "Print a receipt for a cart: one line per item, then the subtotal, the discount and "
    "the total to pay."
)
CART_CHECK = "python3 -m unittest -q tests/test_cart.py"
RECEIPT_CHECK = "python3 -m unittest -q tests/test_receipt.py"


def passes(repo: Path, command: str) -> bool:
    return subprocess.run(command.split(), cwd=repo, capture_output=True).returncode == 0


def test_the_plan_scenario_plans_runs_and_integrates_receipts_on_the_demo_shop(
    tmp_path: Path,
) -> None:
    shop = make_demo_repo(tmp_path / "shop")
    base = git.Repo(shop).head.commit.hexsha
    assert not passes(shop, CHECK)  # the discount bug
    fake = FakeMessagesAPI(load_scenario("plan"), latency_ms=0)
    manager = TaskManager(client=fake.async_client(), sandbox=SANDBOX)

    plan = jd.plan(GOAL, repo=shop, checks=[CHECK], manager=manager)
    assert plan.wait(["draft", "failed"], timeout=120) == "draft", plan.reason
    assert plan.spec is not None
    assert plan.spec.title == "Receipts for the shop" and plan.spec.checks == (CHECK,)
    subtasks = {s.name: s for s in plan.spec.subtasks}
    assert list(subtasks) == ["fix-discount", "receipt-line", "receipt"]
    assert subtasks["fix-discount"].checks == (CART_CHECK,)
    assert subtasks["receipt-line"].checks == subtasks["receipt"].checks == (RECEIPT_CHECK,)
    assert subtasks["receipt"].depends_on == ("fix-discount", "receipt-line")
    assert [s.state for s in plan.statuses()] == ["ready", "ready", "planned"]
    proposal = next(r for r in fake.requests if "propose_plan" in str(r.body.get("tools")))
    assert {t["name"]: t.get("strict") for t in proposal.body["tools"]}["propose_plan"] is True

    plan.dispatch()
    approved: list[str] = []

    def approve_proven() -> bool:
        for name, task in plan.tasks().items():
            if task.state == S.REVIEW:
                assert [(c.command, c.passed) for c in task.checks] == [
                    (subtasks[name].checks[0], True)
                ], (name, task.checks)
                task.approve()
                approved.append(name)
        return plan.refresh().state in ("ready", "failed")

    until(approve_proven, 300, "every subtask to be proven and approved")
    assert plan.state == "ready", plan.reason
    assert sorted(approved[:2]) == ["fix-discount", "receipt-line"] and approved[2] == "receipt"
    tasks = plan.tasks()
    assert {name: t.state for name, t in tasks.items()} == dict.fromkeys(subtasks, S.MERGED)
    assert all("(scenario has no more turns)" not in t.summary for t in tasks.values())
    # the two independent subtasks ran at the same time
    spans = {}
    for name in ("fix-discount", "receipt-line"):
        times = [e.ts for e in Journal(manager.journal_path(tasks[name])).events()]
        spans[name] = (times[0], times[-1])
    (a0, a1), (b0, b1) = spans.values()
    assert a0 < b1 and b0 < a1
    # receipt started from both parents' work merged together
    repo = git.Repo(shop)
    start = repo.commit(plan.started["receipt"].start_commit)
    for parent in ("fix-discount", "receipt-line"):
        assert repo.is_ancestor(repo.commit(tasks[parent].merged_commit), start)
    assert repo.head.commit.hexsha == base  # nothing reached main before the integration

    merged = plan.approve()
    assert plan.state == "integrated"
    assert repo.head.commit.hexsha == merged
    assert [(r["command"], r["passed"]) for r in plan.integration["checks"]] == [(CHECK, True)]
    assert plan.integration["order"] == ["fix-discount", "receipt-line", "receipt"]
    assert passes(shop, CHECK)
    receipt = subprocess.run(
        [
            "python3",
            "-c",
            "from shop.receipt import receipt; print(receipt([('tea', 2.0, 3)], percent=50))",
        ],
        cwd=shop,
        capture_output=True,
        text=True,
    )
    assert receipt.stdout.splitlines() == [
        "3 x tea @ 2.00 = 6.00",
        "Subtotal: 6.00",
        "Discount: 50% (-3.00)",
        "Total: 3.00",
    ]


def test_the_plan_scenario_is_real_code_and_the_receipt_test_needs_the_discount_fix(
    tmp_path: Path,
) -> None:
    """Played by hand on the demo shop: each subtask's edits apply exactly once, its
    check passes, and the receipt's test fails without the discount fix."""
    scenario = load_scenario("plan")
    conversations = {c.name: c for c in scenario.conversations}
    assert list(conversations) == ["planner", "fix-discount", "receipt-line", "receipt"]
    assert conversations["planner"].match in GOAL
    planner_tools = [c.name for t in conversations["planner"].turns for c in t.tools]
    assert planner_tools == ["glob", "read", "read", "propose_plan"]  # it reads, then plans
    proposed = conversations["planner"].turns[-1].tools[0].input["subtasks"]
    for subtask in proposed:  # each subtask's agent is found by its goal
        assert conversations[subtask["name"]].match in subtask["goal"]

    def play(name: str, shop: Path, run: bool = True) -> None:
        """Apply the conversation's writes and edits; run its commands, which must pass."""
        for turn in conversations[name].turns:
            for call in turn.tools:
                args = call.input
                if call.name == "write":
                    (shop / args["file_path"]).write_text(args["content"])
                elif call.name == "edit":
                    target = shop / args["file_path"]
                    source = target.read_text()
                    assert source.count(args["old_string"]) == 1, (name, args["old_string"])
                    target.write_text(source.replace(args["old_string"], args["new_string"]))
                elif call.name == "bash" and run:
                    assert passes(shop, args["command"]), (name, args["command"])

    without_fix = make_demo_repo(tmp_path / "without-fix")
    play("receipt-line", without_fix)
    play("receipt", without_fix, run=False)
    assert not passes(without_fix, RECEIPT_CHECK)  # Total: 0.00, not 4.50

    shop = make_demo_repo(tmp_path / "shop")
    for name in ("fix-discount", "receipt-line", "receipt"):
        play(name, shop)
    assert passes(shop, CHECK)
