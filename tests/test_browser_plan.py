"""A plan in Chromium against a real JupyterLab with a kernel: a `%%delegate-plan` cell's
draft is edited in the PlanView (a cycle refused and named in the widget, a goal changed
and saved, and that goal is what the subtask's agent receives), run, each subtask approved
from its row while the graph follows, the plan approved (integrated into main); Insert as
cell adds a `%%delegate-plan` cell of it below, and a task's id opens its view in a new
cell. Screenshots of the editor and of the graph in light and dark themes land in docs/
(the README's), the others in labextension/test-artifacts/.

The fake model is served from this process (FakeServer on loopback), so what the agents
were asked is asserted here. Needs node and /usr/bin/chromium (skipped, saying which is
missing, without them). The script is labextension/scripts/browser-plan.mjs."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
from browser import (
    ARTIFACTS,
    BUILT,
    ROOT,
    jupyter_server,
    kernel_notebook,
    needs_chromium,
    needs_node,
    run_script,
)

from conftest import commit_all
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.planning import plan_ids, plans
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario
from jupyter_delegate.workspace import Workspace

DOCS = ROOT / "docs"
GOAL = "Write left.txt, with a friendly first line"
PLAN = """\
plan: Shapes
checks: ["test -f base.txt && test -f left.txt && test -f right.txt && test -f join.txt"]
budget: {max_usd: 4}
parallel: 2
subtasks:
  - name: base
    goal: "Write base.txt"
    checks: ["test -f base.txt"]
  - name: left
    goal: "Write left.txt"
    checks: ["test -f left.txt"]
    scope: [left.txt]
    depends_on: [base]
  - name: right
    goal: "Write right.txt"
    checks: ["test -f right.txt"]
    depends_on: [base]
  - name: join
    goal: "Write join.txt"
    checks: ["test -f join.txt && test -f left.txt && test -f right.txt"]
    depends_on: [left, right]
"""
SCREENSHOTS = ("plan-editor.png", "plan-graph.png", "plan-graph-dark.png", "attempts.png")
MODELS = ["claude-sonnet-4-6", "claude-opus-4-6"]
ATTEMPTS = (
    f"%%delegate --repo {{repo}} --attempts 2 --models {','.join(MODELS)} --sandbox none\n"
    "Write notes.txt\ncheck: test -f notes.txt"
)


def writer(body: dict[str, Any], index: int) -> dict[str, Any] | None:
    """Each subtask's agent writes the NAME.txt its goal names, then finishes; 3 s a turn,
    so the graph shows subtasks at work. On opus (the second attempt) it writes more."""
    first = body["messages"][0]["content"]
    text = first if isinstance(first, str) else first[0]["text"]
    found = re.search(r"Write (\w+)\.txt", text)
    name = found.group(1) if found else "x"
    more = "".join(f"line {n}\n" for n in range(3)) if body["model"] == MODELS[1] else ""
    turns = [
        {"tools": [{"write": {"file_path": f"{name}.txt", "content": f"{name}\n{more}"}}]},
        {"tools": [{"finish": {"summary": f"wrote {name}.txt"}}]},
    ]
    return {**turns[index], "latency_ms": 3000} if index < len(turns) else None


def make_repo(path: Path) -> Path:
    import git

    path.mkdir()
    repo = git.Repo.init(path, initial_branch="main")
    (path / "README.md").write_text("# shapes\n")
    commit_all(repo, "init")
    return path


def plan_notebook(url: str, repo: Path) -> Any:
    cells = [
        nbformat.v4.new_code_cell(
            f"import os\nos.environ['ANTHROPIC_BASE_URL'] = {url!r}\nrepo = {str(repo)!r}"
        ),
        nbformat.v4.new_code_cell("%load_ext jupyter_delegate"),
        nbformat.v4.new_code_cell("%%delegate-plan --repo {repo} --sandbox none\n" + PLAN),
        nbformat.v4.new_code_cell(ATTEMPTS),
    ]
    return kernel_notebook(cells)


@needs_node
@needs_chromium
@pytest.mark.timeout(600)
def test_a_plan_edited_run_and_integrated_from_its_widget_in_jupyterlab(
    tmp_path: Path, node_modules: None
) -> None:
    if not (BUILT / "package.json").exists():
        pytest.fail("the extension is not built: cd labextension && npm run build")
    for old in (*SCREENSHOTS, "plan-failure.png"):
        (DOCS / old).unlink(missing_ok=True)
        (ARTIFACTS / old).unlink(missing_ok=True)
    ARTIFACTS.mkdir(exist_ok=True)
    repo = make_repo(tmp_path / "shapes")
    fake = FakeMessagesAPI(load_scenario(writer))
    with FakeServer(fake) as server, jupyter_server(tmp_path, "jupyterlab") as (base, root):
        nbformat.write(plan_notebook(server.url, repo), root / "plan.ipynb")
        summary = run_script(
            "browser-plan.mjs",
            {"base": base, "notebook": "plan.ipynb", "docs": str(DOCS), "goal": GOAL},
            tmp_path,
            timeout=560,
        )

    assert summary["rows"] == ["base", "left", "right", "join"]
    assert summary["draftNodes"] == ["ready", "planned", "planned", "planned"]
    # the cycle, refused in the widget, named; nothing saved
    assert "cycle: " in summary["refused"] and "nothing was saved" in summary["refusedFeedback"]
    assert summary["goalKept"] == GOAL  # the refused save kept the edits
    # the edit, saved, and what the left subtask's agent was asked
    assert summary["unsaved"] == "unsaved edits"
    assert summary["saved"] == "Saved: 4 subtasks." and summary["errorsAfterSave"] == ""
    assert summary["savedGoal"] == GOAL
    asked = [json.dumps(r.body["messages"][0]) for r in fake.requests if r.kind != "models"]
    assert any(GOAL in text for text in asked), "the edited goal never reached the agent"
    # the graph followed the run; every subtask approved from its row; the plan integrated
    graph = summary["graphStates"]
    assert graph["base"] == "merged" and graph["join"] == "planned", graph
    assert summary["guide"].startswith("1 of 4 subtasks approved"), summary["guide"]
    assert set(summary["approved"]) == {"base", "left", "right", "join"}
    assert summary["finalNodes"] == ["merged"] * 4
    assert summary["integrated"].startswith("Integrated into main as")
    assert summary["themes"] == ["light", "dark", "light"]
    for name in ("base", "left", "right", "join"):
        assert (repo / f"{name}.txt").read_text() == f"{name}\n"
    (plan_id,) = plan_ids(Workspace(repo))
    (plan,) = plans(repo, manager=TaskManager())
    assert plan.id == plan_id and plan.state == "integrated"
    assert plan.spec is not None and plan.spec.subtask("left").goal == GOAL
    # Insert as cell, and a task's view opened from its id
    inserted = summary["inserted"]
    assert inserted.startswith(f"%%delegate-plan --repo {repo}") and f"goal: {GOAL}" in inserted
    assert summary["copyShown"] == 0  # the front end inserted it: nothing to copy
    assert summary["openedSource"] == f"%delegate show {summary['opened']}"
    # best-of-N: the smaller diff first, the difference of the two shown, the first kept
    ranked = summary["attempts"]
    assert [(r["index"], r["state"]) for r in ranked] == [("1", "review"), ("2", "review")]
    assert "line 2" in summary["attemptsDiff"] and "notes.txt" in summary["attemptsDiff"]
    assert summary["kept"].startswith("Kept attempt 1: merged into main as")
    assert summary["keptStates"] == {"1": "merged", "2": "rejected"}
    assert (repo / "notes.txt").read_text() == "notes\n"
    for screenshot in SCREENSHOTS:
        assert (DOCS / screenshot).exists(), screenshot
