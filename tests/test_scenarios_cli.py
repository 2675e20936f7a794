"""Scenarios as teaching material: `jupyter delegate scenarios` lists the bundled ones from
their folder, and `scenario-from` turns a real task's journal (run through the real
harness and SDK against the scripted fake) into a scenario that, played again on a fresh
copy of the same starting repository, makes the same tool calls and the same diff:
across rounds of review, compactions, a planner's proposal, with secrets the journal
kept in signed blocks redacted."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import git
import pytest
import yaml

import jupyter_delegate as jd
from conftest import CHECK, FIX_TURNS, FIXED, SANDBOX, Factory, until
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate.cli import main
from jupyter_delegate.journal import REDACTED, Journal, looks_secret
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.testing import FakeMessagesAPI, load_scenario, scenario_from
from jupyter_delegate.testing.from_journal import ScenarioFromError, record
from jupyter_delegate.testing.scenario import bundled_folder

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
KEY = "sk-ant-api03-" + "Q7x" * 15  # a key the redactor knows
SUB = "\n\ndef sub(a, b):\n    return a - b\n"
NOTES = "# Notes\n\nadd() subtracted.\n  Fixed by the agent.\n"
GOAL = "Make add() add.\n\nKeep the README's title."
FEEDBACK = "Add a sub() too, and say so in the README."
TWO_ROUNDS: list[dict[str, Any]] = [
    # -- round 1: a read, an edit, a write, a bash command that changes a file
    {
        "text": "Reading the code first.",
        "thinking": f"The test wants add(2, 3) == 5. The user's key {KEY} is none of my business.",
        "tools": [{"read": {"file_path": "calc.py"}}],
    },
    {
        "text": "The operator is wrong.",
        "tools": [{"edit": {"file_path": "calc.py", "old_string": "a - b", "new_string": "a + b"}}],
    },
    {"tools": [{"write": {"file_path": "NOTES.md", "content": NOTES}}]},
    {
        "text": "Recording the check in the README, then running it.",
        "tools": [{"bash": {"command": f"printf '\\nChecked: add.\\n' >> README.md && {CHECK}"}}],
    },
    {"tools": [{"finish": {"summary": "add() subtracted; it now adds."}}]},
    # -- round 2, after request-changes: the same conversation goes on
    {
        "text": "Adding sub().",
        "tools": [{"write": {"file_path": "calc.py", "content": FIXED + SUB}}],
    },
    {"tools": [{"bash": {"command": "sed -i 's/^Checked: add.$/Checked: add, sub./' README.md"}}]},
    {"tools": [{"finish": {"summary": "Added sub(), and the README says so."}}]},
]


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def tool_calls(task: Any) -> list[tuple[str, Any]]:
    """Every tool call the model made, in order, as the journal holds it."""
    return [
        (block["name"], block["input"])
        for event in Journal(task.journal_path).events()
        if event.type == "assistant"
        for block in event.data["content"]
        if block["type"] == "tool_use"
    ]


def fresh_copy(repo: git.Repo, where: Path) -> Path:
    """The starting repository as it is now (before any task), somewhere else."""
    return Path(shutil.copytree(repo.working_dir, where))


def replayer(path: Path | dict[str, Any]) -> tuple[TaskManager, FakeMessagesAPI]:
    fake = FakeMessagesAPI(load_scenario(path))
    return TaskManager(client=fake.async_client(max_retries=2), sandbox=SANDBOX), fake


def run_two_rounds(manager: TaskManager, repo: str | Path) -> Any:
    task = manager.submit(Outcome(GOAL, checks=(CHECK,)), repo=str(repo))
    assert task.wait(timeout=90) == TaskState.REVIEW, task.error
    task.request_changes(FEEDBACK)
    assert task.wait(timeout=90) == TaskState.REVIEW, task.error
    return task


# -- scenarios -------------------------------------------------------------------------------
def test_scenarios_lists_every_bundled_scenario_with_its_description_and_notebooks() -> None:
    files = sorted(bundled_folder().glob("*.yaml"))
    assert files
    code, text = cli("scenarios")
    assert code == 0
    flat = " ".join(text.split())
    code, raw = cli("scenarios", "--json")
    listed = {entry["name"]: entry for entry in json.loads(raw)}
    assert sorted(listed) == sorted(f.stem for f in files)
    uses: dict[str, set[str]] = {}
    for notebook in NOTEBOOKS.glob("*.ipynb"):
        for name in re.findall(r'FakeServer\(\\"([\w.-]+)\\"\)', notebook.read_text()):
            uses.setdefault(name, set()).add(notebook.name)
    for file in files:
        description = " ".join(str(yaml.safe_load(file.read_text())["description"]).split())
        assert description, f"{file} has no description"
        assert listed[file.stem]["description"] == description
        assert re.search(rf"^{re.escape(file.stem)}  \(", text, re.MULTILINE)
        assert description in flat
        assert uses.get(file.stem, set()) <= set(listed[file.stem]["notebooks"]), file.stem
    assert any(uses.values())  # the notebooks do name scenarios: the search was tried


def test_scenarios_checks_given_files_and_names_a_malformed_one_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "lesson.yaml"
    good.write_text("name: lesson\ndescription: A short lesson.\nturns:\n  - text: Done.\n")
    code, text = cli("scenarios", str(good))
    assert code == 0 and "1 scenario given:\n\nlesson  (1 turns)\n  A short lesson.\n" in text
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: broken\nturns:\n  - text: [unclosed\n    tools: x\n")
    assert cli("scenarios", str(good), str(bad)) == (2, "")
    line = one_line(capsys.readouterr().err)
    assert str(bad) in line and "not valid YAML at line" in line
    # a malformed bundled scenario (another lesson being written) stops the listing too
    folder = tmp_path / "bundled"
    folder.mkdir()
    shutil.copy(good, folder / "lesson.yaml")
    (folder / "odd.yaml").write_text("name: odd\nturns:\n  - {txt: hi}\n")
    monkeypatch.setattr("jupyter_delegate.testing.scenario.bundled_folder", lambda: folder)
    assert cli("scenarios") == (2, "")
    line = one_line(capsys.readouterr().err)
    assert str(folder / "odd.yaml") in line and "unknown key(s) ['txt']" in line


# -- scenario-from -----------------------------------------------------------------------------
def test_a_two_round_task_becomes_a_scenario_that_replays_to_the_same_diff(
    repo: git.Repo, make_manager: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fresh = fresh_copy(repo, tmp_path / "fresh")
    manager, _ = make_manager(TWO_ROUNDS)
    task = run_two_rounds(manager, repo.working_dir)
    assert KEY in Journal(task.journal_path).path.read_text()  # a signed block keeps it

    out = tmp_path / "lesson.yaml"
    code, text = cli("scenario-from", task.id, "--repo", repo.working_dir, "-o", str(out))
    assert code == 0, capsys.readouterr().err
    assert f"to {out}" in text and "8 turns, 2 rounds" in text and f"from task {task.id}" in text
    written = out.read_text()
    assert KEY not in written and not looks_secret(written)
    scenario = yaml.safe_load(written)
    assert scenario["name"] == f"task-{task.id}" and scenario["model"] == task.model
    assert scenario["description"].startswith("Make add() add. (recorded from task ")
    assert "#   Keep the README's title.\n" in written  # the whole goal, in the header
    assert f"# -- round 2, after request-changes: {FEEDBACK}\n- text: Adding sub()." in written
    turns = scenario["turns"]
    assert [list(t) for t in turns[:2]] == [["text", "thinking", "tools"], ["text", "tools"]]
    assert turns[0]["thinking"].endswith(f"The user's key {REDACTED} is none of my business.")
    assert [t.get("tools") for t in turns] == [t["tools"] for t in TWO_ROUNDS]
    assert [t.get("text") for t in turns] == [t.get("text") for t in TWO_ROUNDS]
    assert scenario_from(task) == scenario  # the Python API gives what the file holds

    replay_manager, _ = replayer(out)
    again = run_two_rounds(replay_manager, fresh)
    assert again.diff() == task.diff()
    assert "def sub(a, b)" in again.diff() and "+Checked: add, sub." in again.diff()
    assert tool_calls(again) == tool_calls(task)
    assert scenario_from(again)["turns"] == turns
    assert [c.passed for c in again.checks] == [c.passed for c in task.checks] == [True]


@pytest.mark.parametrize("by", ["server", "harness"])
def test_compactions_come_out_where_the_fake_looks_for_them(
    repo: git.Repo, tmp_path: Path, by: str
) -> None:
    fresh = fresh_copy(repo, tmp_path / "fresh")
    big = "python3 -c \"print('log line ' * 700)\""  # about 7 KB of output
    fix = {"file_path": "calc.py", "old_string": "a - b", "new_string": "a + b"}
    calls = [*[{"bash": {"command": big}}] * 4, {"edit": fix}, {"finish": {"summary": "Fixed."}}]
    # each turn says what its compaction's summary is, if one falls there
    turns = [{"tools": [c], "compaction": f"Summary {n}."} for n, c in enumerate(calls, 1)]
    model = {"id": "claude-sonnet-4-6", "compaction": by == "server"}
    original, _ = replayer({"name": "long", "models": [model], "turns": turns})
    outcome = Outcome("Fix add.", checks=(CHECK,))
    task = original.submit(outcome, repo=repo.working_dir, compact_at=4_000)
    assert task.wait(timeout=120) == TaskState.REVIEW, task.error
    compacted = [e.data for e in Journal(task.journal_path).events() if e.type == "compacted"]
    assert compacted and {c["by"] for c in compacted} == {by}

    recorded = scenario_from(task)
    summaries = [t.get("compaction") for t in recorded["turns"]]
    assert len([s for s in summaries if s]) == len(compacted)
    assert all(s is None or re.fullmatch(r"Summary \d\.", s) for s in summaries)
    recorded["models"] = [model]  # the same window, so the compactions fall where they did
    replay, _ = replayer(recorded)
    again = replay.submit(outcome, repo=str(fresh), compact_at=4_000)
    assert again.wait(timeout=120) == TaskState.REVIEW, again.error
    assert again.diff() == task.diff() and tool_calls(again) == tool_calls(task)
    assert scenario_from(again)["turns"] == recorded["turns"]


def test_a_paused_turn_and_its_continuation_become_one_turn_that_replays_the_same(
    repo: git.Repo, make_manager: Factory, tmp_path: Path
) -> None:
    fresh = fresh_copy(repo, tmp_path / "fresh")
    manager, _ = make_manager([{"text": "Looking.", "stop_reason": "pause_turn"}, *FIX_TURNS])
    task = manager.submit(Outcome("Fix add.", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW, task.error
    assistant = [e for e in Journal(task.journal_path).events() if e.type == "assistant"]
    assert assistant[1].data.get("continues") is True  # the journal holds two events

    recorded = scenario_from(task)
    first = recorded["turns"][0]
    assert first["text"].startswith("Looking.") and first["tools"] == FIX_TURNS[0]["tools"]
    assert "stop_reason" not in first and len(recorded["turns"]) == len(assistant) - 1
    replay, _ = replayer(recorded)
    again = replay.submit(Outcome("Fix add.", checks=(CHECK,)), repo=str(fresh))
    assert again.wait(timeout=60) == TaskState.REVIEW, again.error
    assert again.diff() == task.diff() and tool_calls(again) == tool_calls(task)


def run_plan(scenario: Any, shop: Path) -> Any:
    """The receipts plan on the demo shop, from its goal to its integration, every
    subtask approved as it reaches review."""
    from jupyter_delegate.testing.demo_repo import CHECK as SHOP_CHECK

    fake = FakeMessagesAPI(load_scenario(scenario), latency_ms=0)
    manager = TaskManager(client=fake.async_client(), sandbox=SANDBOX)
    plan = jd.plan(PLAN_GOAL, repo=shop, checks=[SHOP_CHECK], manager=manager)
    assert plan.wait(["draft", "failed"], timeout=120) == "draft", plan.reason
    plan.dispatch()

    def approve_all() -> bool:
        for task in plan.tasks().values():
            if task.state == TaskState.REVIEW:
                task.approve()
        return plan.refresh().state in ("ready", "failed")

    until(approve_all, 300, "every subtask to be approved")
    plan.approve()
    assert plan.state == "integrated", plan.reason
    return plan


PLAN_GOAL = (
    "Print a receipt for a cart: one line per item, then the subtotal, the discount and "
    "the total to pay."
)


def test_a_plan_becomes_a_conversation_per_agent_and_replays_to_the_same_integration(
    tmp_path: Path,
) -> None:
    from jupyter_delegate.testing.demo_repo import make_demo_repo

    shop = make_demo_repo(tmp_path / "shop")
    fresh = Path(shutil.copytree(shop, tmp_path / "fresh"))
    base = git.Repo(shop).head.commit.hexsha
    plan = run_plan("plan", shop)
    bundled = {c.name: c for c in load_scenario("plan").conversations}

    # the planner alone, from the Python API: its proposal as the bundled plan wrote it
    planner = TaskManager(sandbox=SANDBOX).get(plan.planner or "", shop)
    alone = load_scenario(scenario_from(planner, name="planner", description="The planner."))
    assert (alone.name, alone.description) == ("planner", "The planner.")
    assert [(t.text, t.tools) for t in alone.turns] == [
        (t.text, t.tools) for t in bundled["planner"].turns
    ]
    assert alone.turns[-1].tools[0].name == "propose_plan"

    # the whole plan, from the command line: a conversation per agent
    out = tmp_path / "receipts.yaml"
    code, text = cli("scenario-from", plan.id, "--repo", str(shop), "-o", str(out))
    assert code == 0 and f"4 agents, from plan {plan.id}" in text
    made = load_scenario(out)
    assert [c.name for c in made.conversations] == [
        "fix-discount",
        "receipt-line",
        "receipt",
        "planner",
    ]
    for conversation in made.conversations:
        scripted = bundled[conversation.name].turns
        assert [(t.text, t.tools) for t in conversation.turns] == [
            (t.text, t.tools) for t in scripted
        ]

    again = run_plan(out, fresh)
    assert again.spec == plan.spec
    for name, task in again.tasks().items():
        assert task.diff() == plan.tasks()[name].diff(), name
    fresh_repo, shop_repo = git.Repo(fresh), git.Repo(shop)
    assert fresh_repo.git.diff(base, "main") == shop_repo.git.diff(base, "main")


def test_bad_input_is_one_line_saying_what_to_do(
    repo: git.Repo, make_manager: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    at = ("--repo", repo.working_dir)
    assert cli("scenario-from", "nope", *at) == (2, "")
    assert "No task 'nope'" in one_line(capsys.readouterr().err)

    # a task the model never answered: refused at its first turn
    manager, _ = make_manager([{"text": "never sent", "faults": [{"status": 400}]}])
    failed = manager.submit(Outcome("Fix add.", checks=(CHECK,)), repo=repo.working_dir)
    assert failed.wait(timeout=60) == TaskState.FAILED
    assert cli("scenario-from", failed.id, *at) == (2, "")
    line = one_line(capsys.readouterr().err)
    assert f"Task {failed.id} has no model turns" in line and "failed" in line
    with pytest.raises(ScenarioFromError, match="nothing to replay"):
        record(failed)

    manager, _ = make_manager()
    task = manager.submit(Outcome("Fix add.", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    missing = tmp_path / "no-such-folder" / "lesson.yaml"
    assert cli("scenario-from", task.id, *at, "-o", str(missing)) == (2, "")
    line = one_line(capsys.readouterr().err)
    assert f"{missing.parent} does not exist" in line and not missing.parent.exists()
    assert cli("scenario-from", task.id, *at, "-o", str(tmp_path)) == (2, "")
    assert "is a folder" in one_line(capsys.readouterr().err)
    with pytest.raises(ScenarioFromError, match="no such journal"):
        scenario_from(tmp_path / "journal.jsonl")
    not_a_journal = tmp_path / "journal.jsonl"
    not_a_journal.write_text("{}\n")
    with pytest.raises(ScenarioFromError, match=r"journal\.jsonl: an event after seq 0 cannot"):
        scenario_from(not_a_journal)
