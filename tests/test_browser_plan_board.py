"""The plans on the phone page in Chromium at 390x844, against a real Jupyter server with
the server extension on, its model the scripted fake on loopback: a draft plan of five
subtasks shows as a graph; Run makes the server run it; the nodes change live; tapping a
node shows its task, whose Approve starts the dependents; a subtask whose checks fail is
restarted from its node; Integrate merges the plan into main. The plan's journal names
the server's decisions; `audit verify` is ok. Screenshots of the board in light and dark
(labextension/test-artifacts/plan-*.png; docs/plan-board*.png are copies of them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import git
import pytest
from browser import ARTIFACTS, jupyter_server, needs_chromium, needs_node, run_script

from conftest import commit_all
from jupyter_delegate.journal import Journal
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.planning import create
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario

PLAN = """\
plan: CSV export of the orders report
checks: ["test -f model.txt && test -f csv.txt && test -f api.txt && test -f ui.txt"]
budget: {max_usd: 4}
subtasks:
  - name: model
    goal: "Write model.txt: the report's rows"
    checks: ["test -f model.txt"]
  - name: csv
    goal: "Write csv.txt: the rows as CSV"
    checks: ["test -f csv.txt"]
    depends_on: [model]
  - name: api
    goal: "Write api.txt: the export endpoint"
    checks: ["test -f api.txt"]
    depends_on: [model]
  - name: ui
    goal: "Write ui.txt: the export button"
    checks: ["test -f ui.txt"]
    depends_on: [csv, api]
  - name: docs
    goal: "Write docs.txt: how to export"
    checks: ["grep -q final docs.txt"]
"""


def scripted() -> Any:
    """Each subtask's agent writes NAME.txt and finishes; api takes its time (the board
    shows it running while csv is in review); docs' first agent writes a draft, which
    its check refuses, and the one restarted writes it final."""
    started: dict[str, int] = {}

    def script(body: dict[str, Any], index: int) -> dict[str, Any] | None:
        first = body["messages"][0]["content"]
        text = first if isinstance(first, str) else first[0]["text"]
        name = text.split("Write ", 1)[1].split(".txt", 1)[0]
        if index == 0:
            started[name] = started.get(name, 0) + 1
        content = "draft\n" if name == "docs" and started[name] == 1 else "final\n"
        turns = [
            {"tools": [{"write": {"file_path": f"{name}.txt", "content": content}}]},
            {"tools": [{"finish": {"summary": f"Wrote {name}.txt."}}]},
        ]
        if index >= len(turns):
            return None
        return {**turns[index], "latency_ms": 6000 if name == "api" else 300}

    return script


@needs_node
@needs_chromium
@pytest.mark.timeout(420)
def test_the_plan_board_page_runs_approves_restarts_and_integrates_a_plan(
    node_modules: None, tmp_path: Path
) -> None:
    enabled = tmp_path / "jupyter-config" / "jupyter_server_config.d" / "jupyter_delegate.json"
    enabled.parent.mkdir(parents=True)
    enabled.write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_delegate": True}}})
    )
    for old in ARTIFACTS.glob("plan-*.png"):
        old.unlink()
    fake = FakeMessagesAPI(load_scenario(scripted()))
    with FakeServer(fake) as model:
        served = {"ANTHROPIC_BASE_URL": model.url}
        with jupyter_server(tmp_path, "jupyter_server", extra_env=served) as (base, root):
            shop = root / "shop"
            shop.mkdir()
            repo = git.Repo.init(shop, initial_branch="main")
            (shop / "README.md").write_text("# shop\n")
            commit_all(repo, "init")
            plan = create(PLAN, shop, manager=TaskManager())  # a draft: the page runs it
            summary = run_script(
                "browser-plan-board.mjs", {"base": base, "plan": plan.id}, tmp_path
            )
    assert summary["after"] == [[plan.id, "integrated", ["merged"] * 5]]
    tasks = sorted((name, state) for _, state, name in summary["tasks"])
    assert tasks == [  # restarted once, docs has one new task (its first archived)
        ("api", "merged"),
        ("csv", "merged"),
        ("docs", "merged"),
        ("docs", "rejected"),
        ("model", "merged"),
        ("ui", "merged"),
    ]
    assert summary["cards"] == [plan.id]  # nothing else needs you
    assert summary["edges"] == ["api->ui", "csv->ui", "model->api", "model->csv"]
    for name in ("model", "csv", "api", "ui"):
        assert (shop / f"{name}.txt").read_text() == "final\n"
    assert (shop / "docs.txt").read_text() == "final\n"  # the restarted one
    assert repo.active_branch.name == "main" and not repo.is_dirty()

    journal = Path(repo.common_dir) / "delegate" / "plans" / plan.id / "journal.jsonl"
    events = list(Journal(journal).events())
    by = [(e.type, e.data["by"]["via"]) for e in events if "by" in e.data]
    assert by == [("dispatched", "server"), ("restarted", "server"), ("integrated", "server")]
    done = subprocess.run(
        [sys.executable, "-m", "jupyter_delegate.cli", "audit", "verify", "--repo", str(shop)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and f"plan {plan.id}: audit verify: ok" in done.stdout, (
        done.stdout + done.stderr
    )
    for name in ("board-light", "board-dark", "page-light", "integrated-light"):
        assert (ARTIFACTS / f"plan-{name}.png").stat().st_size > 0
