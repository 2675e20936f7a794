"""Plans and best-of-N in a notebook, through IPython's shell and the widgets' traits (the
scripted fake model, real git): `%%delegate-plan` makes a draft shown in a PlanView and a
plan record; edits are validated by PlanSpec and their problems shown in the widget; Run,
Approve per subtask and Approve plan carry a plan to its integration, the graph following
it; `%%delegate --plan` shows the agent planning, then the draft; `%%delegate --attempts`
compares attempts side by side and Keep archives the others; bad input fails the cell with
one DelegateError line and creates nothing.

The widgets talk to a dummy comm here: a front end's message is handed to the widget as
ipywidgets hands it (`_handle_custom_msg`), and what is asserted is the trait state a
front end would be sent."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from conftest import CHECK, FIXED, Factory, until
from jupyter_delegate.errors import DelegateError, PlanError, UsageError
from jupyter_delegate.notebook.attempts_view import AttemptsView
from jupyter_delegate.notebook.graph import depths, graph_svg, layout
from jupyter_delegate.notebook.magics import DelegateMagics, MagicUsageError
from jupyter_delegate.notebook.plan_record import (
    PLAN_MIME,
    PlanState,
    fit,
    plan_bundle,
    plan_record,
)
from jupyter_delegate.notebook.plan_view import PlanView
from jupyter_delegate.planning import PLAN_STATES, plan_ids
from jupyter_delegate.workspace import Workspace

WIDGET = "application/vnd.jupyter.widget-view+json"
PLAN = """\
plan: Three files
checks: ["test -f one.txt && test -f two.txt && test -f three.txt"]
subtasks:
  - name: one
    goal: "Write one.txt"
    checks: ["test -f one.txt"]
  - name: two
    goal: "Write two.txt"
    checks: ["test -f two.txt"]
    depends_on: [one]
  - name: three
    goal: "Write three.txt"
    checks: ["test -f three.txt"]
    depends_on: [one]
"""
PROPOSAL = {
    "title": "Two files",
    "summary": "one, then two",
    "subtasks": [
        {"name": "one", "goal": "Write one.txt", "checks": ["test -f one.txt"], "scope": [],
         "budget_usd": 1, "depends_on": []},
        {"name": "two", "goal": "Write two.txt", "checks": ["test -f two.txt"], "scope": [],
         "budget_usd": 1, "depends_on": ["one"]},
    ],
}  # fmt: skip


def agent(latency_ms: int = 0) -> Any:
    """The scripted model: a planner (it has the propose_plan tool) proposes PROPOSAL; a
    subtask's agent writes the NAME.txt its goal names ("Write NAME.txt"), then finishes."""

    def script(body: dict[str, Any], index: int) -> dict[str, Any] | None:
        if any(tool.get("name") == "propose_plan" for tool in body.get("tools", [])):
            turns = [{"tools": [{"propose_plan": PROPOSAL}]}]
        else:
            first = body["messages"][0]["content"]
            text = first if isinstance(first, str) else first[0]["text"]
            found = re.search(r"Write (\w+)\.txt", text)
            name = found.group(1) if found else "x"
            turns = [
                {"tools": [{"write": {"file_path": f"{name}.txt", "content": f"{name}\n"}}]},
                {"tools": [{"finish": {"summary": f"wrote {name}.txt"}}]},
            ]
        return {**turns[index], "latency_ms": latency_ms} if index < len(turns) else None

    return script


@pytest.fixture
def shell(make_manager: Factory) -> Iterator[tuple[InteractiveShell, DelegateMagics, Any]]:
    ip = InteractiveShell.instance()
    manager, fake = make_manager(agent())
    magics = DelegateMagics(ip, manager=manager)
    ip.register_magics(magics)
    yield ip, magics, fake
    for view in list(magics.views.values()):
        view.close()
    for record in magics.plan_records.values():
        record.close()
    InteractiveShell.clear_instance()


def plan_cell(ip: InteractiveShell, line: str, body: str = PLAN) -> Any:
    with capture_output() as captured:
        ip.run_cell_magic("delegate-plan", line, body)
    return captured


def only_view(magics: DelegateMagics, kind: type) -> Any:
    (view,) = [v for v in magics.views.values() if isinstance(v, kind)]
    return view


def act(view: Any, **content: Any) -> None:
    """A click in the front end: a message to the widget; wait for its action."""
    view._handle_custom_msg(content, [])
    until(lambda: view.busy == "", what=f"{content['action']} to finish")


# -- %%delegate-plan, the view and the record ----------------------------------------------
def test_a_plan_cell_shows_an_editable_draft_and_its_record_and_a_rerun_reattaches(
    shell: tuple, repo: git.Repo
) -> None:
    ip, magics, fake = shell
    captured = plan_cell(ip, f"--repo {repo.working_dir}")
    assert [WIDGET in o.data for o in captured.outputs] == [True, False]
    record = captured.outputs[1].data[PLAN_MIME]
    assert record["state"] == "draft" and record["title"] == "Three files"
    assert [(s["name"], s["state"]) for s in record["subtasks"]] == [
        ("one", "ready"),
        ("two", "planned"),
        ("three", "planned"),
    ]
    assert "Three files" in captured.outputs[1].data["text/plain"]
    assert 'class="jdg-node"' in captured.outputs[1].data["text/html"]
    view = only_view(magics, PlanView)
    assert view.state == "draft" and view.plan_id == record["id"]
    assert view.spec["subtasks"][1]["depends_on"] == ["one"]
    assert view.cell.startswith("%%delegate-plan --repo ") and "name: three" in view.cell
    assert view.graph.count('class="jdg-node"') == 3 and view.graph.count('class="jdg-edge"') == 2
    assert repr(view) == f"Live view of plan {view.plan_id} (shown while its kernel runs)"
    assert view.guide == "A draft: edit it below (Save edits), then Run plan."
    assert not fake.requests  # a draft runs nothing

    plan_cell(ip, f"--repo {repo.working_dir}")  # Run All again: the same plan
    assert plan_ids(Workspace(repo.working_dir)) == [view.plan_id]
    plan_cell(ip, f"--repo {repo.working_dir} --new --parallel 1 --stack")
    assert len(plan_ids(Workspace(repo.working_dir))) == 2
    newest = magics.plans[plan_ids(Workspace(repo.working_dir))[-1]]
    assert newest.spec is not None and (newest.spec.parallel, newest.spec.stack) == (1, True)


def test_an_edit_is_validated_its_problems_shown_and_a_good_one_saved(
    shell: tuple, repo: git.Repo
) -> None:
    ip, magics, _ = shell
    plan_cell(ip, f"--repo {repo.working_dir}")
    view = only_view(magics, PlanView)
    saved, revision = json.loads(json.dumps(view.spec)), view.revision

    cyclic = json.loads(json.dumps(saved))
    cyclic["subtasks"][0]["depends_on"] = ["three"]
    cyclic["subtasks"][2]["scope"] = ["../elsewhere.py"]
    act(view, action="edit", spec=cyclic)
    assert view.feedback["error"] and "nothing was saved" in view.feedback["text"]
    assert any("cycle: " in p for p in view.errors)
    assert any("outside the repository" in p for p in view.errors)
    assert view.spec == saved and view.revision == revision  # nothing saved

    edited = json.loads(json.dumps(saved))
    edited["subtasks"][1]["goal"] = "Write two.txt, twice as carefully"
    edited["subtasks"].append({"name": "four", "goal": "Write four.txt", "depends_on": ["two"]})
    act(view, action="edit", spec=edited)
    assert not view.feedback["error"] and view.feedback["text"] == "Saved: 4 subtasks."
    assert view.errors == [] and view.revision == revision + 1
    plan = magics.plans[view.plan_id]
    assert plan.spec.subtask("two").goal == "Write two.txt, twice as carefully"
    assert [s.name for s in plan.statuses()] == ["one", "two", "three", "four"]
    assert "name: four" in view.yaml and view.graph.count('class="jdg-node"') == 4


def test_run_approve_each_subtask_then_the_plan_integrates_and_the_view_follows(
    shell: tuple, repo: git.Repo
) -> None:
    ip, magics, _ = shell
    root = Path(repo.working_dir)
    captured = plan_cell(ip, f"--repo {root}")
    view = only_view(magics, PlanView)
    plan = magics.plans[view.plan_id]
    act(view, action="approve")  # not yet: one clear line in the widget, nothing merged
    assert view.feedback["error"]
    act(view, action="run")
    assert view.state == "running" and not view.feedback["error"], view.feedback
    seen: set[str] = set()

    def approve_what_is_in_review() -> bool:
        for row in view.subtasks:
            seen.add(row["state"])
            if row["state"] == "review":
                act(view, action="approve_task", name=row["name"])
                assert not view.feedback["error"], view.feedback
        return view.state == "ready"

    until(approve_what_is_in_review, 120, "the plan to be ready")
    assert {"review", "merged"} <= seen
    assert [s["state"] for s in view.subtasks] == ["merged"] * 3
    assert view.guide.startswith("Every subtask is approved: Approve plan merges them into main")
    assert view.graph.count('data-state="merged"') == 3
    assert all(s["task"] and s["checks"] == "1/1 passed" for s in view.subtasks)
    assert repo.head.commit.hexsha == plan.base_commit  # nothing on main yet
    act(view, action="approve")
    assert view.state == "integrated" and view.feedback["text"].startswith("Integrated into main")
    assert view.guide == f"Integrated into main as {view.integration['commit'][:10]}."
    for name in ("one", "two", "three"):
        assert (root / f"{name}.txt").read_text() == f"{name}\n"
    record = magics.plan_records[plan.id].record()
    assert record["state"] == "integrated" and record["integration"]["commit"]
    assert captured.outputs[1].data[PLAN_MIME]["id"] == plan.id
    with pytest.raises(PlanError, match="already integrated"):
        ip.run_line_magic("delegate", f"approve {plan.id}")


def test_run_from_the_cell_and_the_plan_subcommands(shell: tuple, repo: git.Repo) -> None:
    ip, magics, _ = shell
    plan_cell(ip, f"--repo {repo.working_dir} --run --parallel 1")
    plan = magics.plans[only_view(magics, PlanView).plan_id]
    assert plan.state == "running" and plan.spec.parallel == 1
    waited = ip.run_line_magic("delegate", f"wait {plan.id} --timeout 60")
    assert waited == {plan.id: "running"}  # every subtask started needs a human
    assert repr(waited) == f"plan {plan.id} (Three files): running"
    one = plan.tasks()["one"]
    assert one.state == "review"
    one.reject("not like that")
    with capture_output() as captured:
        ip.run_line_magic("delegate", f"restart {plan.id} one")
    assert "one started again from its parents' heads as task" in captured.stdout
    assert plan.tasks()["one"].id != one.id
    with capture_output():
        ip.run_line_magic("delegate", f"show {plan.id}")
    ip.run_line_magic("delegate", f"cancel {plan.id}")
    assert plan.refresh().state == "cancelled"
    assert magics.plan_records[plan.id].record()["state"] == "cancelled"


def test_the_agent_plans_live_then_the_draft_shows(shell: tuple, repo: git.Repo) -> None:
    ip, magics, _ = shell
    with capture_output() as captured:
        ip.run_cell_magic(
            "delegate", f"--repo {repo.working_dir} --plan --parallel 1", "Write two files.\n"
        )
    record = next(o.data[PLAN_MIME] for o in captured.outputs if PLAN_MIME in o.data)
    assert record["state"] == "planning" and record["planner"]
    view = only_view(magics, PlanView)
    until(lambda: view.state == "draft", 60, "the proposal")
    assert [s["name"] for s in view.subtasks] == ["one", "two"]
    assert view.planner == {} and view.title == "Two files"
    assert view.run_options == {"parallel": 1}
    assert magics.plan_records[view.plan_id].record()["state"] == "draft"


# -- bad input: one line, nothing created ---------------------------------------------------
BAD_YAML = "plan: Broken\nsubtasks:\n  - name: one\n    goal: [unclosed\n"
CYCLE = PLAN.replace('goal: "Write one.txt"', 'goal: "Write one.txt"\n    depends_on: [two]')


@pytest.mark.parametrize(
    ("magic", "line", "body", "error", "message"),
    [
        ("delegate-plan", "--repo {repo}", BAD_YAML, PlanError, "not valid YAML at line"),
        ("delegate-plan", "--repo {repo}", CYCLE, PlanError, "cycle: "),
        ("delegate-plan", "--repo {repo}", "Just a goal", PlanError, "A plan is a mapping"),
        ("delegate-plan", "--repo {repo} --paralel 2", PLAN, MagicUsageError, "--parallel"),
        ("delegate", "--repo {repo} --models a,b", "Do it", UsageError, "add --attempts N"),
        ("delegate", "--repo {repo} --effort low,high", "Do it", UsageError, "--attempts"),
        ("delegate", "--repo {repo} --parallel 2", "Do it", MagicUsageError, "add --plan"),
        ("delegate", "--repo {repo} --plan --attempts 2", "Do", MagicUsageError, "not go"),
        ("delegate", "--repo {repo} --attempts 9", "Do it", MagicUsageError, "from 1 to 8"),
    ],
)
def test_bad_input_fails_the_cell_with_one_line_and_creates_nothing(
    shell: tuple, repo: git.Repo, magic: str, line: str, body: str, error: type, message: str
) -> None:
    ip, magics, fake = shell
    result = ip.run_cell(f"%%{magic} {line.replace('{repo}', repo.working_dir)}\n{body}")
    assert isinstance(result.error_in_exec, error), result.error_in_exec
    assert message in str(result.error_in_exec)
    assert isinstance(result.error_in_exec, DelegateError)
    shown = result.error_in_exec._render_traceback_()
    assert len(shown) == 1 and shown[0].startswith("\x1b[0;31m")
    assert plan_ids(Workspace(repo.working_dir)) == [] and not magics.manager.tasks()
    assert not fake.requests and not magics.views


@pytest.mark.parametrize(
    ("line", "error", "message"),
    [
        ("show p123456 --repo {repo}", PlanError, "No plan 'p123456'"),
        ("resume p123456 --repo {repo}", PlanError, "No plan 'p123456'"),
        ("approve p123456 --repo {repo}", PlanError, "No plan 'p123456'"),
        ("approve p123456 --squash", MagicUsageError, "integrates a plan"),
        ("restart abc123 one", MagicUsageError, "no plan id"),
        ("restart p123456", MagicUsageError, "required: NAME"),
    ],
)
def test_plan_subcommands_refuse_unknown_plans_with_one_line(
    shell: tuple, repo: git.Repo, line: str, error: type, message: str
) -> None:
    ip, magics, _ = shell
    result = ip.run_cell(f"%delegate {line.replace('{repo}', repo.working_dir)}")
    assert isinstance(result.error_in_exec, error), result.error_in_exec
    assert message in str(result.error_in_exec)
    assert not magics.views


# -- best-of-N -------------------------------------------------------------------------------
MODELS = ["claude-sonnet-4-6", "claude-opus-4-6"]


def by_model(body: dict[str, Any], index: int) -> dict[str, Any] | None:
    """The sonnet attempt breaks add(); the opus one fixes it."""
    wrong = body["model"] == MODELS[0]
    edit = {
        "file_path": "calc.py",
        "old_string": "a - b",
        "new_string": "a * b" if wrong else "a + b",
    }
    turns = [{"tools": [{"edit": edit}]}, {"tools": [{"finish": {"summary": "done"}}]}]
    return turns[index] if index < len(turns) else None


def test_attempts_side_by_side_diff_and_keep_archives_the_others(
    repo: git.Repo, make_manager: Factory
) -> None:
    ip = InteractiveShell.instance()
    manager, _ = make_manager(by_model)
    magics = DelegateMagics(ip, manager=manager)
    ip.register_magics(magics)
    try:
        with capture_output() as captured:
            ip.run_cell_magic(
                "delegate",
                f"--repo {repo.working_dir} --attempts 2 --models {','.join(MODELS)}",
                f"Make add() add.\ncheck: {CHECK}",
            )
        kinds = [WIDGET in o.data for o in captured.outputs]
        assert kinds == [True, False, False]  # the comparison, then each attempt's record
        view = only_view(magics, AttemptsView)
        assert "2 attempts of group" in repr(view)
        until(lambda: [r["state"] for r in view.rows] == ["review", "review"], 60, "both in review")
        until(lambda: view.diff != "", 30, "the difference of the best two")
        best, worst = view.rows
        assert (best["index"], best["model"], best["checks_passed"]) == (2, MODELS[1], 1)
        assert (worst["index"], worst["checks_passed"], worst["verdict"]) == (1, 0, "checks fail")
        assert best["rank"] == 1 and best["added"] == 1 and best["cost"].startswith("$")
        view.compare = [1, 2]
        until(lambda: "return a + b" in view.diff, 30, "attempt 2 against attempt 1")
        assert "jd-add" in view.diff and "calc.py" in view.diff

        act(view, action="keep", index=1)  # not proven: asks, merges nothing
        assert view.asking == 1 and any("failed" in r for r in view.reasons)
        assert view.kept == 0
        act(view, action="not_now")
        assert view.asking == 0
        act(view, action="keep", index=2)
        assert not view.feedback["error"], view.feedback
        assert view.kept == 2 and "the others are archived" in view.feedback["text"]
        until(lambda: {r["index"]: r["state"] for r in view.rows} == {1: "rejected", 2: "merged"})
        assert (Path(repo.working_dir) / "calc.py").read_text() == FIXED
        with capture_output() as again:  # Run All again: the same attempts, not two more
            ip.run_cell_magic(
                "delegate",
                f"--repo {repo.working_dir} --attempts 2 --models {','.join(MODELS)}",
                f"Make add() add.\ncheck: {CHECK}",
            )
        assert len(manager.tasks()) == 2 and WIDGET in again.outputs[0].data
    finally:
        for view in list(magics.views.values()):
            view.close()
        InteractiveShell.clear_instance()


# -- the graph and the record ------------------------------------------------------------
DIAMOND = [
    {"name": "base", "state": "merged", "depends_on": [], "task": "aaaaaa", "cost_usd": 0.5,
     "checks": "1/1 passed"},
    {"name": "left", "state": "review", "depends_on": ["base"], "task": "bbbbbb", "checks": ""},
    {"name": "right", "state": "running", "depends_on": ["base"], "task": "cccccc",
     "stale": "base changed after it started"},
    {"name": "join", "state": "blocked", "depends_on": ["left", "right"], "why": "right is failed"},
    {"name": "docs", "state": "planned", "depends_on": ["join"]},
]  # fmt: skip


def test_the_graph_puts_subtasks_in_columns_by_depth_with_an_edge_per_dependency() -> None:
    assert depths(DIAMOND) == {"base": 0, "left": 1, "right": 1, "join": 2, "docs": 3}
    places = layout(DIAMOND)
    assert places["left"] == (1, 0) and places["right"] == (1, 1) and places["join"] == (2, 0)
    svg = graph_svg(DIAMOND)
    assert svg.startswith("<svg") and svg.count('class="jdg-edge"') == 5
    assert 'data-from="left" data-to="join"' in svg
    node = re.search(r'<g class="jdg-node" data-name="right".*?</g>', svg, re.DOTALL)
    assert node and 'data-stale="1"' in node.group(0) and ">stale<" in node.group(0)
    assert "checks 1/1 · $0.5000" in svg
    assert "var(--jp-ui-font-color1" in svg  # the theme's text colour
    # a cycle (refused by PlanSpec anyway) still draws, and nothing unescaped gets through
    odd = [
        {"name": "<a>", "state": "x", "depends_on": ["<b>"]},
        {"name": "<b>", "depends_on": ["<a>"]},
    ]
    drawn = graph_svg(odd)
    assert "<a>" not in drawn and "&lt;a&gt;" in drawn
    assert graph_svg([]) == ""


def test_the_plan_record_matches_its_schema_and_fits_16_kb(
    repo: git.Repo, make_manager: Factory
) -> None:
    import typing

    import jsonschema

    from jupyter_delegate.notebook.plan_record import plan_record_schema
    from jupyter_delegate.planning import create

    assert set(typing.get_args(PlanState)) == set(PLAN_STATES)
    manager, _ = make_manager(agent())
    long_goal = "Write one.txt " + "with care " * 2000
    plan = create(PLAN.replace('"Write one.txt"', json.dumps(long_goal)), repo.working_dir,
                  manager=manager)  # fmt: skip
    record = plan_record(plan, notebook_dir=Path(repo.working_dir).parent)
    jsonschema.Draft202012Validator(plan_record_schema()).validate(json.loads(json.dumps(record)))
    from jupyter_delegate.notebook.record import RECORD_LIMIT

    assert len(json.dumps(record)) <= RECORD_LIMIT
    assert record["repo_relative"] == "proj" and record["repo"] == str(plan.repo)
    assert record["subtasks"][0]["goal"].endswith("…") and record["id"] == plan.id
    assert fit(record) == record
    bundle = plan_bundle(record)
    assert set(bundle) == {PLAN_MIME, "text/html", "text/plain"}
    assert bundle["text/plain"].startswith(f"delegate plan {plan.id} [draft] Three files")


def test_a_new_kernel_restores_the_plans_its_front_end_shows(
    shell: tuple, repo: git.Repo, make_manager: Factory
) -> None:
    """What restart.ts answers on the records comm (the plan records the notebook shows)
    re-attaches each plan in a new kernel, and publishes its state now as an update."""
    ip, _, _ = shell
    captured = plan_cell(ip, f"--repo {repo.working_dir}")
    shown = captured.outputs[1].data[PLAN_MIME]
    later, _ = make_manager(agent())  # another process's manager: it reads the journal
    fresh = DelegateMagics(ip, manager=later)
    with capture_output() as heard:
        fresh._on_front_end_records(
            {
                "content": {
                    "data": {
                        "records": [],
                        "plans": [
                            {"id": shown["id"], "repo": shown["repo"], "cell_id": "cell-plan"},
                            {"id": "p000000", "repo": shown["repo"]},  # gone: left out
                        ],
                    }
                }
            }
        )
    published = [o.data[PLAN_MIME] for o in heard.outputs if PLAN_MIME in o.data]
    assert [(r["id"], r["state"]) for r in published] == [(shown["id"], "draft")]
    assert list(fresh.plans) == [shown["id"]]
    assert fresh.plan_records[shown["id"]].cell_id == "cell-plan"
    fresh.plan_records[shown["id"]].close()
