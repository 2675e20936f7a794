"""Views that survive the kernel, in Chromium against a real JupyterLab and Notebook 7
(labextension/scripts/browser-restart.mjs): a kernel restarted while a task runs leaves no
broken widgets (the dead live view is hidden, the card unfolds), `%load_ext` in the new
kernel makes the card say `interrupted` with a Resume button, Resume continues the task in
that cell and the same card reaches review; the saved notebook holds one record per task,
and its nbconvert HTML shows the card, not widget reprs; a `%%delegate` cell typed by hand
is not auto-indented as Python; a saved notebook of records shows its cards without a
kernel. Screenshots in labextension/test-artifacts/ (`restart-*`, `nb7-*`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import git
import nbformat
import pytest
from browser import (
    ARTIFACTS,
    ROOT,
    jupyter_server,
    kernel_notebook,
    needs_chromium,
    needs_node,
    run_script,
)

from conftest import Factory
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate.notebook.record import MIME, bundle, compact_record
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer
from jupyter_delegate.testing.demo_repo import make_demo_repo

WIDGET = "application/vnd.jupyter.widget-view+json"
TURNS = [
    *(
        {"text": f"Reading, step {n}.", "tools": [{"read": {"file_path": "shop/cart.py"}}]}
        for n in range(8)
    ),
    {"tools": [{"finish": {"summary": "Read the cart."}}]},
]


def restart_notebook(url: str, repo: Path) -> Any:
    cells = [
        nbformat.v4.new_code_cell(f"import os\nos.environ['ANTHROPIC_BASE_URL'] = {url!r}"),
        nbformat.v4.new_code_cell("%load_ext jupyter_delegate"),
        nbformat.v4.new_code_cell(
            f"%%delegate --repo {repo} --name restart-me --max-steps 30 --sandbox none\n"
            "Read shop/cart.py and say what it does.\n"
            "check: python3 -c 'print(1)'"
        ),
    ]
    return kernel_notebook(cells)


def saved_records_notebook(repo: git.Repo, make_manager: Factory) -> Any:
    """A task's record as a notebook saves it, beside its live view without widget state."""
    task = make_manager()[0].submit(
        Outcome("Make add() add.", checks=("python3 -c 'print(1)'",)),
        repo=repo.working_dir,
        name="saved-one",
    )
    assert task.wait(timeout=60) == TaskState.REVIEW
    view = {
        WIDGET: {"version_major": 2, "version_minor": 0, "model_id": "0" * 32},
        "text/plain": f"Live view of delegated task {task.id} (shown while its kernel runs)",
    }
    outputs = [
        nbformat.v4.new_output("display_data", data=view),
        nbformat.v4.new_output("display_data", data=bundle(compact_record(task, name="saved-one"))),
    ]
    cell = nbformat.v4.new_code_cell(
        "%%delegate --name saved-one\nMake add() add.", outputs=outputs
    )
    notebook = nbformat.v4.new_notebook(cells=[cell])
    notebook.metadata = {}
    return notebook


def run_restart_flow(
    app: str, tmp_path: Path, repo: git.Repo, make_manager: Factory
) -> tuple[dict[str, Any], Path]:
    shop = make_demo_repo(tmp_path / "shop")
    fake = FakeMessagesAPI({"name": "restart", "turns": TURNS}, latency_ms=1500)
    with FakeServer(fake) as model, jupyter_server(tmp_path, app) as (base, root):
        nbformat.write(restart_notebook(model.url, Path(shop)), root / "restart.ipynb")
        nbformat.write(saved_records_notebook(repo, make_manager), root / "records.ipynb")
        spec = {"base": base, "app": app, "notebook": "restart.ipynb", "saved": "records.ipynb"}
        summary = run_script("browser-restart.mjs", spec, tmp_path, timeout=500)
        return summary, root / "restart.ipynb"


def check_saved(path: Path) -> None:
    """The notebook as the browser saved it: one record per task, in review, and views
    that leave one short line; its nbconvert HTML shows the card, not widget reprs."""
    from nbconvert import HTMLExporter

    notebook = nbformat.read(path, as_version=4)
    records = [
        o["data"][MIME]
        for c in notebook.cells
        for o in c.get("outputs", [])
        if MIME in o.get("data", {})
    ]
    assert [r["state"] for r in records] == ["review"], records
    plain = [
        o["data"].get("text/plain", "")
        for c in notebook.cells
        for o in c.get("outputs", [])
        if WIDGET in o.get("data", {})
    ]
    assert plain and all(p.startswith("Live view of delegated task") for p in plain), plain
    page, _ = HTMLExporter().from_notebook_node(notebook)
    assert "TaskView(" not in page and "HTML(value" not in page
    assert 'class="jupyter-delegate-record"' in page and "restart-me" in page


@needs_node
@needs_chromium
@pytest.mark.timeout(600)
def test_lab_restart_mid_task_shows_interrupted_and_resume_reaches_review_in_the_same_card(
    tmp_path: Path, repo: git.Repo, make_manager: Factory, node_modules: None
) -> None:
    if not (ROOT / "jupyter_delegate" / "labextension" / "package.json").exists():
        pytest.fail("the extension is not built: cd labextension && npm run build")
    summary, saved = run_restart_flow("jupyterlab", tmp_path, repo, make_manager)
    assert summary["beforeRestart"]["state"] == "running"
    assert summary["brokenAfterRestart"] == 0 and summary["staleHidden"] >= 1
    assert summary["interrupted"]["state"] == "interrupted" and summary["interrupted"]["resume"]
    assert summary["review"]["state"] == "review" and not summary["review"]["resume"]
    assert summary["brokenAfterResume"] == 0 and len(summary["cardsInNotebook"]) == 1
    assert summary["delegateCell"] == [
        "%%delegate --repo shop",
        "Fix the totals:",
        "check: pytest -q",
    ]
    assert [c["state"] for c in summary["savedCards"]] == ["review"]
    assert not summary["savedCards"][0]["folded"] and summary["savedBroken"] == 0
    assert "jp-icon3" in summary["sidebarIcon"] and "<rect" in summary["sidebarIcon"]
    check_saved(saved)
    for name in (
        "restart-after",
        "restart-interrupted",
        "restart-resumed-review-light",
        "restart-resumed-review-dark",
    ):
        assert (ARTIFACTS / f"{name}.png").exists(), name


@needs_node
@needs_chromium
@pytest.mark.timeout(600)
def test_notebook7_restart_resume_and_saved_records(
    tmp_path: Path, repo: git.Repo, make_manager: Factory, node_modules: None
) -> None:
    if not (ROOT / "jupyter_delegate" / "labextension" / "package.json").exists():
        pytest.fail("the extension is not built: cd labextension && npm run build")
    summary, saved = run_restart_flow("notebook", tmp_path, repo, make_manager)
    assert summary["brokenAfterRestart"] == 0 and summary["staleHidden"] >= 1
    assert summary["interrupted"]["state"] == "interrupted" and summary["interrupted"]["resume"]
    assert summary["review"]["state"] == "review"
    assert summary["brokenAfterResume"] == 0 and len(summary["cardsInNotebook"]) == 1
    assert summary["delegateCell"] == [
        "%%delegate --repo shop",
        "Fix the totals:",
        "check: pytest -q",
    ]
    assert [c["state"] for c in summary["savedCards"]] == ["review"]
    check_saved(saved)
    for name in ("nb7-restart-interrupted", "nb7-restart-resumed-review-light"):
        assert (ARTIFACTS / f"{name}.png").exists(), name
