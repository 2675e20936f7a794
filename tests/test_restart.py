"""Views that survive the kernel (issue 16, problems 2 and 7), on real kernels: a new
kernel's `%load_ext` publishes each recorded task's state as an update of the record the
notebook holds (a task its dead kernel left running is interrupted), a resume from another
cell updates that record instead of showing a second one, and a saved notebook's live views
leave one short line, not a widget repr, without a kernel and in nbconvert's HTML."""

from __future__ import annotations

import os
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

from conftest import CHECK, FIX_TURNS, SANDBOX, marker_alive
from jupyter_delegate.notebook.header import EARLY_MIME
from jupyter_delegate.notebook.record import MIME
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario

WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesAPI]:
    marker = f"marker-{uuid.uuid4().hex}"
    turns = [{"tools": [{"bash": {"command": f"sleep 60; echo {marker}"}}]}, *FIX_TURNS]
    fake = FakeMessagesAPI(load_scenario({"name": "nb", "turns": turns}))
    fake.marker = marker  # type: ignore[attr-defined]
    with FakeServer(fake) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        yield fake


def execute(kc: Any, code: str, cell_id: str | None, timeout: float = 60) -> list[dict[str, Any]]:
    """Run `code` as the cell `cell_id` (the `cellId` JupyterLab sends in the request's
    metadata); the IOPub messages it caused, until the kernel is idle again."""
    content = {"code": code, "silent": False, "store_history": True, "user_expressions": {}}
    request = kc.session.msg(
        "execute_request", content, metadata={"cellId": cell_id} if cell_id else {}
    )
    kc.shell_channel.send(request)
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = kc.get_iopub_msg(timeout=max(0.1, deadline - time.monotonic()))
        if message["parent_header"].get("msg_id") != request["header"]["msg_id"]:
            continue
        messages.append(message)
        kind, state = message["msg_type"], message["content"].get("execution_state")
        if kind == "status" and state == "idle":
            return messages
    raise AssertionError(f"{code!r} did not finish in {timeout} s")


def records_in(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [
        m["content"]["data"][MIME]
        for m in messages
        if m["msg_type"] == kind and MIME in m["content"].get("data", {})
    ]


def errors_in(messages: list[dict[str, Any]]) -> list[str]:
    return [m["content"]["evalue"] for m in messages if m["msg_type"] == "error"]


def test_new_kernel_shows_interrupted_in_the_old_record_and_resume_updates_it(
    repo: git.Repo, model: FakeMessagesAPI, tmp_path: Path
) -> None:
    cell = f"%%delegate --repo {repo.working_dir} --name slow --sandbox {SANDBOX}\n"
    cell += f"Make add() add.\ncheck: {CHECK}"
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        execute(kc, "%load_ext jupyter_delegate", "cell-load")
        started = execute(kc, cell, "cell-task")
        deadline = time.monotonic() + 30
        while not marker_alive(model.marker) and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.1)
        assert marker_alive(model.marker)  # type: ignore[attr-defined]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)  # the kernel dies mid-command, its task "running"
    # The notebook as the front end saved it: the early header (header.py: a front end
    # with our extension empties it when the view draws; kept here as a saved one that was
    # not), the live view and the record, in their cell.
    outputs = [
        nbformat.v4.new_output("display_data", data=m["content"]["data"])
        for m in started
        if m["msg_type"] == "display_data"
    ]
    assert [WIDGET in o["data"] for o in outputs] == [False, True, False]
    assert EARLY_MIME in outputs[0]["data"]
    (saved,) = (o["data"][MIME] for o in outputs if MIME in o["data"])
    # As first shown: its round starts in the worker process soon after (a front end
    # would save the updates too); active either way when the kernel died.
    assert saved["state"] in ("queued", "running")
    cells = [
        nbformat.v4.new_code_cell("%load_ext jupyter_delegate"),
        nbformat.v4.new_code_cell(cell),
    ]
    cells[0].id, cells[1].id, cells[1].outputs = "cell-load", "cell-task", outputs
    path = tmp_path / "work.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)

    # A new kernel of that notebook (jupyter_server names it in JPY_SESSION_NAME).
    km, kc = start_new_kernel(
        kernel_name="python3", cwd=str(tmp_path), env={**os.environ, "JPY_SESSION_NAME": str(path)}
    )
    try:
        loaded = execute(kc, "%load_ext jupyter_delegate", "cell-load")
        assert not errors_in(loaded)
        assert records_in(loaded, "display_data") == []  # no second record
        (update,) = records_in(loaded, "update_display_data")
        assert update["id"] == saved["id"] and update["state"] == "interrupted"
        (sent,) = [m for m in loaded if m["msg_type"] == "update_display_data"]
        assert sent["content"]["transient"]["display_id"] == f"jupyter-delegate-{saved['id']}"

        # `%delegate resume` in a new cell: a live view there, the record updated where it is.
        resumed = execute(kc, "%delegate resume slow", "cell-new")
        assert not errors_in(resumed)
        assert records_in(resumed, "display_data") == []
        assert any(
            m["msg_type"] == "display_data" and WIDGET in m["content"]["data"] for m in resumed
        )
        assert records_in(resumed, "update_display_data")[-1]["state"] in ("running", "queued")
        waited = execute(kc, "%delegate wait slow --timeout 90", "cell-wait", timeout=120)
        assert not errors_in(waited)
        assert records_in(waited, "display_data") == []
        assert records_in(waited, "update_display_data")[-1]["state"] == "review"

        # Shown again from the cell that holds the record (its re-run, or the card's
        # Resume): the record is shown there again, as the cell's output was cleared.
        again = execute(kc, "%delegate show slow", "cell-task")
        assert [r["state"] for r in records_in(again, "display_data")] == ["review"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_new_kernel_asks_the_front_end_for_the_records_it_shows(
    repo: git.Repo, model: FakeMessagesAPI, tmp_path: Path
) -> None:
    """A notebook not saved since its task started (or one the kernel cannot name): the
    kernel asks our front end on a comm, and the records it answers are re-attached."""
    cell = f"%%delegate --repo {repo.working_dir} --name unsaved --sandbox {SANDBOX}\n"
    cell += f"Make add() add.\ncheck: {CHECK}"
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        execute(kc, "%load_ext jupyter_delegate", "cell-load")
        started = execute(kc, cell, "cell-task")
        deadline = time.monotonic() + 30
        while not marker_alive(model.marker) and time.monotonic() < deadline:  # type: ignore[attr-defined]
            time.sleep(0.1)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    (shown,) = records_in(started, "display_data")

    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        loaded = execute(kc, "%load_ext jupyter_delegate", "cell-load")
        assert records_in(loaded, "update_display_data") == []  # no notebook file to read
        (opened,) = [m for m in loaded if m["msg_type"] == "comm_open"]
        assert opened["content"]["target_name"] == "jupyter_delegate.records"
        answer = {
            "comm_id": opened["content"]["comm_id"],
            "data": {
                "records": [
                    {"id": shown["id"], "repo": shown["repo"], "repo_relative": "", "cell_id": "c"}
                ]
            },
        }
        request = kc.session.msg("comm_msg", answer)
        kc.shell_channel.send(request)
        deadline, heard = time.monotonic() + 30, []
        while time.monotonic() < deadline and not heard:
            message = kc.get_iopub_msg(timeout=30)
            if message["msg_type"] == "update_display_data":
                heard = records_in([message], "update_display_data")
        assert [(r["id"], r["state"]) for r in heard] == [(shown["id"], "interrupted")]
        # Shown again from another cell: the record the front end named is updated, not
        # shown twice.
        again = execute(kc, "%delegate show unsaved", "cell-other")
        assert records_in(again, "display_data") == []
        assert records_in(again, "update_display_data")[-1]["id"] == shown["id"]
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


def test_saved_live_views_leave_one_short_line_and_nbconvert_html_shows_the_card(
    repo: git.Repo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nbconvert import HTMLExporter

    server = FakeServer(FakeMessagesAPI(load_scenario({"name": "quick", "turns": FIX_TURNS})))
    monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("%load_ext jupyter_delegate"),
            nbformat.v4.new_code_cell(
                f"%%delegate --repo {repo.working_dir} --name quick --sandbox {SANDBOX}\n"
                f"Make add() add.\ncheck: {CHECK}"
            ),
            nbformat.v4.new_code_cell("%delegate wait quick --timeout 60"),
            nbformat.v4.new_code_cell("%delegate board"),
        ]
    )
    client = NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    try:
        client.execute()
    finally:
        server.close()
    notebook.metadata.pop("widgets", None)  # saved without widget state (JupyterLab's default)
    views = [
        output["data"]["text/plain"]
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if WIDGET in output.get("data", {})
    ]
    assert len(views) == 2, views
    task_id = next(
        o["data"][MIME]["id"]
        for c in notebook.cells
        for o in c.outputs
        if MIME in o.get("data", {})
    )
    assert views == [
        f"Live view of delegated task {task_id} (shown while its kernel runs)",
        "Board of 1 delegated tasks (live while its kernel runs)",
    ]
    page, _ = HTMLExporter().from_notebook_node(notebook)
    assert "TaskView(" not in page and "children=" not in page and "HTML(value" not in page
    assert 'class="jupyter-delegate-record"' in page and "[review" not in page
    assert "quick" in page and "review" in page
