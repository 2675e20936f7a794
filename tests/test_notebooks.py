"""Real kernels (nbclient, jupyter_client): the tutorials run offline to a merge, a kernel
killed mid-task leaves a task the next kernel restores and resumes, and a notebook opened
beside a copy of its repository on another path re-attaches there."""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from nbclient import NotebookClient

from conftest import CHECK, FIX_TURNS, FIXED, SANDBOX, Factory, marker_alive
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate.errors import UsageError
from jupyter_delegate.notebook.header import EARLY_MIME
from jupyter_delegate.notebook.record import MIME, compact_record, read_records, recorded_cells
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario
from jupyter_delegate.testing.demo_repo import CHECK as SHOP_CHECK

ROOT = Path(__file__).resolve().parent.parent


def records(notebook: Any) -> list[dict[str, Any]]:
    return [
        output["data"][MIME]
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if MIME in output.get("data", {})
    ]


def run(notebook: Any, folder: Path) -> Any:
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute()
    return notebook


def delegate_cell(name: str, goal: str = "Make add() add.", repo: str = "proj") -> str:
    return f"%%delegate --repo {repo} --name {name} --sandbox {SANDBOX}\n{goal}\ncheck: {CHECK}"


def new_notebook(*sources: str) -> Any:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources])


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesAPI]:
    marker = f"marker-{uuid.uuid4().hex}"
    turns = [{"tools": [{"bash": {"command": f"sleep 60; echo {marker}"}}]}, *FIX_TURNS]
    fake = FakeMessagesAPI(load_scenario({"name": "nb", "turns": turns}))
    fake.marker = marker  # type: ignore[attr-defined]
    with FakeServer(fake) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        yield fake


def test_tutorial_runs_offline_to_merged(tmp_path: Path) -> None:
    notebook = nbformat.read(ROOT / "notebooks" / "01-first-delegation.ipynb", as_version=4)
    run(notebook, tmp_path)
    saved = records(notebook)
    assert saved and {r["state"] for r in saved} == {"merged"}
    assert saved[0]["checks"][0]["passed"] and saved[0]["merged_commit"]
    outputs = "".join(str(o.get("text", "")) for c in notebook.cells for o in c.get("outputs", []))
    assert "exit code after the merge: 0" in outputs and "ok (" in outputs
    # The line comment started round 2; its own diff is the range check alone.
    assert "round 2 after: ['shop/cart.py:11']" in outputs
    since = outputs.split("round 2 after:", 1)[1]
    assert "+    if not 0 <= percent <= 100:" in since and "/ 10\n" not in since
    assert saved[0].get("review_round") == 2


def shown(cell: Any) -> str:
    """The text a code cell printed or returned."""
    return "".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
        for output in cell.get("outputs", [])
    )


def test_teaching_tutorial_uses_agents_md_check_trusted_skill_and_remembered_preference(
    tmp_path: Path,
) -> None:
    notebook = nbformat.read(ROOT / "notebooks" / "02-teaching-the-agent.ipynb", as_version=4)
    run(notebook, tmp_path)
    saved = {r["name"]: r for r in records(notebook)}
    assert {name: r["state"] for name, r in saved.items()} == {
        "fix-discount": "merged",
        "discount-range": "merged",
    }
    first, following = saved["fix-discount"], saved["discount-range"]
    # No check: line in the outcome, so the test command AGENTS.md names is the check.
    assert not first["outcome"]["checks"] and first["check_commands"] == [SHOP_CHECK]
    assert [(c["command"], c["passed"]) for c in first["checks"]] == [(SHOP_CHECK, True)]
    assert (
        f"checks offered by AGENTS.md, used as the outcome has none: `{SHOP_CHECK}`"
        in first["flags"]
    )
    # `skills check` before and after trusting the repository's skill.
    before, after = (
        next(line for line in shown(c).splitlines() if "shop-conventions (repo" in line)
        for c in notebook.cells
        if c.source.startswith("%delegate skills check")
    )
    assert before.startswith("NEW ") and "not trusted yet" in before
    assert after.startswith("ok ") and after.endswith(": trusted")
    assert first["skills_used"] == ["shop-conventions"]
    assert following["skills_used"] == ["shop-conventions"]
    # The feedback remembered in the first task is in force in the next one, not before.
    mine = "Keep changes small: no edits beyond what the outcome needs."
    remembered = "Add a test that fails without your change."
    assert first["preferences"] == [mine]
    assert f"remembered as a preference (repo): {remembered}" in first["flags"]
    assert following["preferences"] == [mine, remembered]
    assert "test_percent_outside_0_to_100_is_refused" in following["summary"]
    # The notebook kept its skills and preferences in its own folder, not the reader's.
    assert not Path(os.environ["JUPYTER_DELEGATE_HOME"]).exists()


def test_killed_kernel_then_new_kernel_restores_and_resumes(
    repo: git.Repo, model: FakeMessagesAPI, tmp_path: Path
) -> None:
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    shown: list[dict[str, Any]] = []

    def collect(message: dict[str, Any]) -> None:
        data = message["content"].get("data", {})
        if MIME in data:
            shown.append(data[MIME])

    try:
        kc.execute_interactive("%load_ext jupyter_delegate", timeout=60)
        kc.execute_interactive(
            delegate_cell("slow", repo=repo.working_dir),
            timeout=60,
            output_hook=collect,
        )
        deadline = time.monotonic() + 30
        while not marker_alive(model.marker) and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.1)
        assert marker_alive(model.marker)  # type: ignore[attr-defined]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)  # SIGKILL: the kernel dies mid-command
    assert shown and shown[0]["name"] == "slow"
    saved = tmp_path / "work.ipynb"
    cell = nbformat.v4.new_code_cell(
        "%%delegate ...", outputs=[nbformat.v4.new_output("display_data", data={MIME: shown[-1]})]
    )
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), saved)

    notebook = new_notebook(
        "%load_ext jupyter_delegate",
        f"%delegate restore {saved}",
        "%delegate resume slow",
        "%delegate wait slow --timeout 60",
    )
    run(notebook, tmp_path)
    restored = notebook.cells[1].outputs[0]["data"]["text/plain"]
    assert " slow  interrupted " in restored and "{" not in restored
    waited = notebook.cells[3].outputs[0]["data"]["text/plain"]
    assert " slow  review (proven) " in waited and "{" not in waited
    assert records(notebook)[-1]["state"] == "review"


def test_notebook_beside_a_copy_of_the_repo_reattaches_there(
    repo: git.Repo, model: FakeMessagesAPI, tmp_path: Path
) -> None:
    first = new_notebook(
        "%load_ext jupyter_delegate",
        delegate_cell("fix"),
        "%delegate wait fix --timeout 90",
    )
    run(first, tmp_path)
    assert records(first)[-1]["state"] == "review"
    nbformat.write(first, tmp_path / "work.ipynb")

    copy = tmp_path.parent / f"{tmp_path.name}-copy"
    shutil.copytree(tmp_path, copy, symlinks=True)
    second = new_notebook(
        "%load_ext jupyter_delegate",
        f"%delegate restore {copy / 'work.ipynb'}",
        "%delegate approve fix",
    )
    run(second, copy)
    assert (copy / "proj" / "calc.py").read_text() == FIXED
    assert (Path(repo.working_dir) / "calc.py").read_text() != FIXED  # the original is untouched


def test_two_tasks_at_once_in_one_notebook(
    repo: git.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMessagesAPI(load_scenario({"name": "two", "turns": FIX_TURNS}))
    with FakeServer(fake) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        notebook = new_notebook(
            "%load_ext jupyter_delegate",
            delegate_cell("one"),
            delegate_cell("two", "Make add() add, again."),
            "%delegate wait all --timeout 90",
            "%delegate approve one",
        )
        run(notebook, tmp_path)
    waited = notebook.cells[3].outputs[0]["data"]["text/plain"].splitlines()
    assert [line.split()[1:4] for line in waited[1:]] == [
        ["one", "review", "(proven)"],
        ["two", "review", "(proven)"],
    ]
    states = {r["name"]: r["state"] for r in records(notebook)}
    assert states == {"one": "merged", "two": "review"}
    # Each task's early header (header.py) came first and was emptied when its task
    # stopped working (nbclient draws no view): none is saved still saying "queued".
    for delegated in notebook.cells[1:3]:
        first = delegated.outputs[0]
        assert first["output_type"] == "display_data" and not first["data"], first
    saved = [o for c in notebook.cells for o in c.get("outputs", [])]
    assert not any(EARLY_MIME in o.get("data", {}) for o in saved)


def test_decisions_from_python_in_a_later_cell_update_the_saved_record(
    repo: git.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeMessagesAPI(load_scenario({"name": "two", "turns": FIX_TURNS}))
    with FakeServer(fake) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        notebook = new_notebook(
            "%load_ext jupyter_delegate",
            delegate_cell("one"),
            delegate_cell("two", "Make add() add, again."),
            "%delegate wait all --timeout 90",
            "import jupyter_delegate as jd\njd.get_task('one', 'proj').approve()",
            "jd.get_task('two', 'proj').reject('not needed')",
        )
        run(notebook, tmp_path)
    saved = records(notebook)
    assert len(saved) == 2  # updated in place, never a second record
    assert {r["name"]: r["state"] for r in saved} == {"one": "merged", "two": "rejected"}
    waited = shown(notebook.cells[3])  # a table, not a dict
    assert waited.splitlines()[0].split() == ["id", "name", "state", "cost", "title"]
    assert "review (proven)" in waited and "{" not in waited


def test_breaking_down_tutorial_plans_edits_runs_and_integrates_offline(tmp_path: Path) -> None:
    from jupyter_delegate.notebook.plan_record import PLAN_MIME

    notebook = nbformat.read(ROOT / "notebooks" / "05-breaking-a-problem-down.ipynb", as_version=4)
    run(notebook, tmp_path)
    plans = [
        output["data"][PLAN_MIME]
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if PLAN_MIME in output.get("data", {})
    ]
    assert plans and {p["state"] for p in plans} == {"integrated"}
    subtasks = {s["name"]: s for s in plans[0]["subtasks"]}
    assert list(subtasks) == ["fix-discount", "receipt-line", "receipt"]
    assert {s["state"] for s in subtasks.values()} == {"merged"}
    outputs = "".join(shown(cell) for cell in notebook.cells)
    # the edit held, the cycle was refused naming it, the dependent started from both
    assert "Build the item lines with format_line" in outputs
    assert "the dependencies make a cycle: fix-discount -> receipt -> fix-discount" in outputs
    assert "merging ['fix-discount', 'receipt-line']" in outputs
    assert "exit code after the integration: 0" in outputs


def _kernel_in(folder: Path, notebook: str) -> Any:
    """A kernel in `folder` told it runs `notebook`, as Jupyter's server tells it."""
    env = {**os.environ, "JPY_SESSION_NAME": notebook}
    return start_new_kernel(kernel_name="python3", cwd=str(folder), env=env)


LOAD = "%load_ext jupyter_delegate"
HEAVY = "import sys; print(sorted(m for m in {} if m in sys.modules))".format(
    ("nbformat", "jsonschema", "yaml", "anthropic", "ipywidgets")
)


def test_load_ext_in_a_notebook_the_kernel_names_reattaches_its_tasks_and_imports_little(
    repo: git.Repo, make_manager: Factory, tmp_path: Path
) -> None:
    manager, _ = make_manager()
    task = manager.submit(Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    record = compact_record(task, name="saved", notebook_dir=tmp_path)
    output = nbformat.v4.new_output("display_data", data={MIME: dict(record)})
    cell = nbformat.v4.new_code_cell("%%delegate ...", outputs=[output])
    nbformat.write(nbformat.v4.new_notebook(cells=[cell]), tmp_path / "work.ipynb")
    shown: list[dict[str, Any]] = []
    printed: list[str] = []

    def collect(message: dict[str, Any]) -> None:
        content = message["content"]
        if MIME in content.get("data", {}):
            shown.append(content["data"][MIME])
        if message["msg_type"] == "stream" and content["name"] == "stdout":
            printed.append(content["text"])

    km, kc = _kernel_in(tmp_path, "work.ipynb")
    try:
        reply = kc.execute_interactive(LOAD, timeout=60, output_hook=collect)
        kc.execute_interactive(HEAVY, timeout=60, output_hook=collect)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert reply["content"]["status"] == "ok"
    assert [(r["id"], r["state"]) for r in shown] == [(task.id, "review")]
    # read as JSON: nbformat (with jsonschema) took 1.3-2 s of the load; no SDK, no widgets
    assert printed == ["[]\n"]


def test_load_ext_in_a_notebook_that_is_not_json_still_loads(tmp_path: Path) -> None:
    (tmp_path / "broken.ipynb").write_text('{"cells": [ cut short')
    errors: list[str] = []

    def collect(message: dict[str, Any]) -> None:
        if message["msg_type"] == "error":
            errors.append(message["content"]["evalue"])

    km, kc = _kernel_in(tmp_path, "broken.ipynb")
    try:
        loaded = kc.execute_interactive(LOAD, timeout=60, output_hook=collect)
        listed = kc.execute_interactive("%delegate list", timeout=60, output_hook=collect)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    assert loaded["content"]["status"] == listed["content"]["status"] == "ok", errors
    assert errors == []


def test_records_are_read_from_the_notebooks_json_each_cell_id_naming_one_cell(
    tmp_path: Path,
) -> None:
    def cell(cell_id: str | None, *tasks: str) -> dict[str, Any]:
        outputs = [{"output_type": "display_data", "data": {MIME: {"id": t}}} for t in tasks]
        return {"cell_type": "code", "outputs": outputs, **({"id": cell_id} if cell_id else {})}

    cells = [cell("a", "t1", "t1"), cell("a", "t2"), cell(None, "t3"), "junk", cell("b")]
    path = tmp_path / "copied.ipynb"
    path.write_text(json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5}))
    assert [r["id"] for r in read_records(path)] == ["t1", "t1", "t2", "t3"]
    # the second cell "a" (a copied cell) names no cell: an update there could land in the first
    assert recorded_cells(path) == {"t1": "a", "t2": None, "t3": None}
    with pytest.raises(UsageError, match=r"cannot be read \(No such file"):
        list(read_records(tmp_path / "gone.ipynb"))
    (tmp_path / "cut.ipynb").write_text('{"cells": [')
    with pytest.raises(UsageError, match=r"not a notebook's JSON.*ipynb_checkpoints"):
        list(read_records(tmp_path / "cut.ipynb"))
