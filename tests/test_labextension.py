"""The JupyterLab / Notebook 7 extension (labextension/): its vitest suite, its install, and
a real browser (Debian's Chromium, driven by playwright-core) against a real JupyterLab
server: a saved notebook of task records renders without a kernel, the Delegations
sidebar lists its tasks, the tutorial run from the browser is followed to `merged`, and a
tool call opened in a running task's live log stays open while later steps arrive.

Needs node (and npm) and /usr/bin/chromium; skipped, saying which is missing, without them.
Screenshots land in labextension/test-artifacts/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import git
import nbformat
import pytest
from browser import (
    ARTIFACTS,
    CHROMIUM,
    LABEXTENSION,
    NPM,
    ROOT,
    kernel_notebook,
    needs_chromium,
    needs_node,
    npm,
)

from conftest import CHECK, Factory
from jupyter_delegate import Outcome, Task, TaskState
from jupyter_delegate.notebook.record import bundle, compact_record, record_schema


@needs_node
@pytest.mark.timeout(300)
def test_vitest_suite_of_card_and_sidebar_passes(node_modules: None) -> None:
    done = npm("test")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "failed" not in done.stdout.split("Test Files")[-1]


def test_extension_is_installed_enabled_and_ok() -> None:
    if not (ROOT / "jupyter_delegate" / "labextension" / "package.json").exists():
        pytest.skip("the front end was not built (pip install -e . ran without node)")
    listed = subprocess.run(
        [str(Path(sys.executable).parent / "jupyter-labextension"), "list"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = (listed.stdout + listed.stderr).splitlines()
    line = next((line for line in lines if "jupyter-delegate" in line), "")
    assert "enabled" in line and "OK" in line, listed.stdout + listed.stderr


# -- the browser test --------------------------------------------------------------------
SCREENSHOTS = (
    "records-no-kernel.png",
    "failing-check-light.png",
    "failing-check-dark.png",
    "review-failing-check-light.png",
    "review-failing-check-dark.png",
    "tutorial-merged.png",
    "live-log-open.png",
)


def submit(manager: Any, repo: git.Repo, name: str, *checks: str) -> Task:
    task: Task = manager.submit(
        Outcome("Make add() add.", checks=checks or (CHECK,)), repo=repo.working_dir, name=name
    )
    return task


# 40 lines of progress, then a traceback whose message holds markup the card must not parse.
FAILING_CHECK = (
    "python3 -u -c \"[print(f'checking item {n}') for n in range(40)]; "
    "assert 2 + 2 == 5, 'the <b>total</b> is off'\""
)


# Fails with an environment problem the card names (the check's hint).
MISSING_MODULE = "python3 -c 'import humanize_is_not_here'"


def task_records(repo: git.Repo, make_manager: Factory) -> list[dict[str, Any]]:
    """Records of real tasks (the scripted model, real git and checks) in five states."""
    records = []
    in_review = submit(make_manager()[0], repo, "in-review")
    failing = submit(make_manager()[0], repo, "failing-check", FAILING_CHECK, MISSING_MODULE)
    rejected = submit(make_manager()[0], repo, "rejected-one")
    started = submit(make_manager()[0], repo, "cut-off")
    records.append(compact_record(started, name="cut-off"))  # saved while at work
    for task in (in_review, failing, rejected, started):
        assert task.wait(timeout=60) == TaskState.REVIEW
    rejected.reject("not needed")
    merged = submit(make_manager()[0], repo, "merged-one")
    assert merged.wait(timeout=60) == TaskState.REVIEW
    merged.approve("merge")
    for task in (in_review, failing, rejected, merged):
        records.append(compact_record(task, name=task.name))
    return records


# -- the record's contract: its type, its schema, the records the front end is tested on ---
SCHEMA = LABEXTENSION / "schema" / "notebook-record.schema.json"
# Records of real tasks, for labextension/tests/record-schema.test.ts. Written anew by
# `JD_UPDATE_FIXTURES=1 pytest tests/test_labextension.py -k schema`.
PYTHON_RECORDS = LABEXTENSION / "tests" / "fixtures" / "python-records.json"


def test_the_committed_schema_is_the_notebook_records_type() -> None:
    if os.environ.get("JD_UPDATE_FIXTURES"):
        SCHEMA.parent.mkdir(exist_ok=True)
        SCHEMA.write_text(json.dumps(record_schema(), indent=2, ensure_ascii=False) + "\n")
    assert json.loads(SCHEMA.read_text()) == record_schema(), (
        "NotebookRecord changed: JD_UPDATE_FIXTURES=1 pytest tests/test_labextension.py -k "
        "schema writes its schema, then make labextension/src/model.ts read it"
    )


def test_records_of_real_tasks_match_the_schema_the_front_end_is_tested_against(
    repo: git.Repo, make_manager: Factory
) -> None:
    import jsonschema

    validator = jsonschema.Draft202012Validator(record_schema())
    records = json.loads(json.dumps(task_records(repo, make_manager)))
    for record in records:
        validator.validate(record)
    if os.environ.get("JD_UPDATE_FIXTURES"):
        PYTHON_RECORDS.write_text(json.dumps(records, indent=2, ensure_ascii=False) + "\n")
    fixture = json.loads(PYTHON_RECORDS.read_text())
    for record in fixture:
        validator.validate(record)
    every = set(record_schema()["required"])
    assert every <= set().union(*fixture), "the fixture no longer shows every field"
    assert {r["state"] for r in fixture} == {r["state"] for r in records}


PLAN_SCHEMA = LABEXTENSION / "schema" / "plan-record.schema.json"


def test_the_committed_plan_schema_is_the_plan_records_type() -> None:
    from jupyter_delegate.notebook.plan_record import plan_record_schema

    if os.environ.get("JD_UPDATE_FIXTURES"):
        PLAN_SCHEMA.write_text(
            json.dumps(plan_record_schema(), indent=2, ensure_ascii=False) + "\n"
        )
    assert json.loads(PLAN_SCHEMA.read_text()) == plan_record_schema(), (
        "PlanRecord changed: JD_UPDATE_FIXTURES=1 pytest tests/test_labextension.py -k schema "
        "writes its schema"
    )


def records_notebook(records: list[dict[str, Any]]) -> Any:
    """What the magics leave in a notebook, saved and reopened with no kernel."""
    cells = [nbformat.v4.new_markdown_cell("# Delegated tasks, reopened without a kernel")]
    for record in records:
        source = f"%%delegate --repo proj --name {record['name']}\nMake add() add."
        output = nbformat.v4.new_output("display_data", data=bundle(record))
        cells.append(nbformat.v4.new_code_cell(source, outputs=[output]))
    notebook = nbformat.v4.new_notebook(cells=cells)
    notebook.metadata = {}  # no kernelspec: the front end starts no kernel
    return notebook


LIVE_SETUP = """\
import os
import tempfile
from pathlib import Path

from jupyter_delegate.testing import FakeMessagesAPI, FakeServer
from jupyter_delegate.testing.demo_repo import make_demo_repo

repo = make_demo_repo(Path(tempfile.mkdtemp(prefix="live-log-")) / "shop")
turns = [
    {"text": f"Reading, step {n}.", "tools": [{"read": {"file_path": "shop/cart.py"}}]}
    for n in range(16)
]
turns.append({"tools": [{"finish": {"summary": "Read the cart."}}]})
# A slow model (1.5 s a turn), so the browser can open a tool call while the task runs,
# even on a loaded machine where the page draws seconds behind the kernel.
model_server = FakeServer(FakeMessagesAPI({"name": "live", "turns": turns}, latency_ms=1500))
os.environ["ANTHROPIC_BASE_URL"] = model_server.url
"""


# The live task's check: fails, printing markup the review must show as text.
REVIEW_CHECK = "python3 -u -c \"print('<i>checked</i>'); raise SystemExit('cart total is off')\""


def live_notebook() -> Any:
    """A notebook that runs one slow task of many tool calls with its live view."""
    cells = [
        nbformat.v4.new_code_cell(LIVE_SETUP),
        nbformat.v4.new_code_cell("%load_ext jupyter_delegate"),
        nbformat.v4.new_code_cell(
            "%%delegate --repo {repo} --name live-log --max-steps 24 --sandbox none\n"
            "Read shop/cart.py and say what it does.\n"
            f"check: {REVIEW_CHECK}"
        ),
    ]
    return kernel_notebook(cells)


@needs_node
@needs_chromium
@pytest.mark.timeout(420)
def test_browser_cards_without_kernel_and_sidebar_follows_tutorial_to_merged(
    repo: git.Repo,
    make_manager: Factory,
    lab_server: tuple[str, Path],
    node_modules: None,
    tmp_path: Path,
) -> None:
    if not (ROOT / "jupyter_delegate" / "labextension" / "package.json").exists():
        pytest.fail("the extension is not built: run `pip install -e .` with node installed")
    base, root = lab_server
    for old in (*SCREENSHOTS, "failure.png"):
        (ARTIFACTS / old).unlink(missing_ok=True)
    records = task_records(repo, make_manager)
    nbformat.write(records_notebook(records), root / "records.ipynb")
    shutil.copy(ROOT / "notebooks" / "01-first-delegation.ipynb", root / "tutorial.ipynb")
    nbformat.write(live_notebook(), root / "live.ipynb")
    expected = {r["id"]: r["state"] for r in records}
    assert {"review", "rejected", "merged"} <= set(expected.values())
    assert expected[records[0]["id"]] in ("queued", "running")
    spec = {
        "base": base,
        "artifacts": str(ARTIFACTS),
        "chromium": str(CHROMIUM),
        "records": "records.ipynb",
        "expected": expected,
        "tutorial": "tutorial.ipynb",
        "live": "live.ipynb",
        "failing": records[2]["id"],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    assert NPM is not None
    done = subprocess.run(
        ["node", "scripts/browser-test.mjs", str(tmp_path / "spec.json")],
        cwd=LABEXTENSION,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(summary, indent=1))  # shown by pytest -rP
    failing = next(c for c in summary["cards"] if c["id"] == records[2]["id"])
    assert failing["fail"] == 2 and failing["pass"] == 0
    tail = failing["tail"].splitlines()
    assert tail == records[2]["checks"][0]["failure_tail"].splitlines() and len(tail) == 15
    at = tail.index("Traceback (most recent call last):")  # the last 15 lines: the progress
    assert tail[:at] == [f"checking item {n}" for n in range(40 - at, 40)]  # ends, then the
    assert tail[-1] == "AssertionError: the <b>total</b> is off"  # traceback, as text
    assert not failing["markup"]
    assert failing["seeAll"] == f"all of its output: %delegate checks {records[2]['id']} 1"
    assert failing["hint"].startswith("`humanize_is_not_here` is not importable")
    assert summary["themes"] == ["light", "dark", "light"]
    assert summary["tutorialStates"][-1] == "merged"
    review = summary["reviewTail"]
    assert review == {"text": "<i>checked</i>\ncart total is off", "markup": 0, "whole": True}
    opened = summary["liveLog"][0]
    assert opened["open"] and len(summary["liveLog"]) >= 3
    for screenshot in SCREENSHOTS:
        assert (ARTIFACTS / screenshot).exists(), screenshot
