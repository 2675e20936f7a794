"""A plan outlives its kernel (real kernels, the scripted fake over loopback): a plan run
from a `%%delegate-plan` cell, its kernel killed while its first subtask works; a new
kernel of the saved notebook, at `%load_ext`, publishes the plan's true state as an update
of the record the notebook holds (running, cut off: no process runs it; the subtask
interrupted), and `%delegate resume PLAN` takes it up to the end: every subtask approved,
the plan integrated into main."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import nbformat
import pytest
from jupyter_client.manager import start_new_kernel
from test_restart import errors_in, execute

from conftest import SANDBOX, messages_sent
from jupyter_delegate.notebook.plan_record import PLAN_MIME
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario

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
APPROVE_ALL = """\
import time
import jupyter_delegate as jd

plan = jd.get_plan({plan_id!r}, {repo!r})
deadline = time.monotonic() + 120
while plan.refresh().state == "running" and time.monotonic() < deadline:
    for task in plan.tasks().values():
        if task.state == "review":
            task.approve()
    time.sleep(0.2)
print("plan", plan.state)
"""


def slow_writer(body: dict[str, Any], index: int) -> dict[str, Any] | None:
    """Each subtask's agent writes the NAME.txt its goal names, then finishes; each turn
    takes 2.5 s (the kernel is killed inside the first)."""
    first = body["messages"][0]["content"]
    text = first if isinstance(first, str) else first[0]["text"]
    found = re.search(r"Write (\w+)\.txt", text)
    name = found.group(1) if found else "x"
    turns = [
        {"tools": [{"write": {"file_path": f"{name}.txt", "content": f"{name}\n"}}]},
        {"tools": [{"finish": {"summary": f"wrote {name}.txt"}}]},
    ]
    return {**turns[index], "latency_ms": 2500} if index < len(turns) else None


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeMessagesAPI]:
    fake = FakeMessagesAPI(load_scenario(slow_writer))
    with FakeServer(fake) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        yield fake


def plan_records(messages: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [
        m["content"]["data"][PLAN_MIME]
        for m in messages
        if m["msg_type"] == kind and PLAN_MIME in m["content"].get("data", {})
    ]


@pytest.mark.timeout(400)
def test_a_plan_cut_off_by_its_kernel_shows_its_state_and_resumes_to_integrated(
    repo: git.Repo, model: FakeMessagesAPI, tmp_path: Path
) -> None:
    cell = f"%%delegate-plan --repo {repo.working_dir} --run --sandbox {SANDBOX}\n{PLAN}"
    km, kc = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        assert not errors_in(execute(kc, "%load_ext jupyter_delegate", "cell-load"))
        started = execute(kc, cell, "cell-plan")
        assert not errors_in(started), errors_in(started)
        deadline = time.monotonic() + 60
        while not messages_sent(model) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert messages_sent(model), "the first subtask never asked the model"
        time.sleep(0.5)
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)  # the plan's dispatcher and its first subtask die
    outputs = [
        nbformat.v4.new_output("display_data", data=m["content"]["data"])
        for m in started
        if m["msg_type"] == "display_data"
    ]
    assert [WIDGET in o["data"] for o in outputs] == [True, False]  # the view, the record
    (saved,) = plan_records(started, "display_data")
    assert saved["state"] == "running" and not saved["cut_off"]
    plan_id = saved["id"]
    cells = [
        nbformat.v4.new_code_cell("%load_ext jupyter_delegate"),
        nbformat.v4.new_code_cell(cell),
    ]
    cells[0].id, cells[1].id, cells[1].outputs = "cell-load", "cell-plan", outputs
    path = tmp_path / "plan.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=cells), path)

    km, kc = start_new_kernel(
        kernel_name="python3", cwd=str(tmp_path), env={**os.environ, "JPY_SESSION_NAME": str(path)}
    )
    try:
        loaded = execute(kc, "%load_ext jupyter_delegate", "cell-load")
        assert not errors_in(loaded)
        assert plan_records(loaded, "display_data") == []  # no second record
        (update,) = plan_records(loaded, "update_display_data")
        (sent,) = [m for m in loaded if PLAN_MIME in m["content"].get("data", {})]
        assert sent["content"]["transient"]["display_id"] == f"jupyter-delegate-plan-{plan_id}"
        assert update["id"] == plan_id and update["state"] == "running" and update["cut_off"]
        states = {s["name"]: s["state"] for s in update["subtasks"]}
        assert states == {"one": "interrupted", "two": "planned", "three": "planned"}
        html = sent["content"]["data"]["text/html"]
        assert f"%delegate resume {plan_id}</code>" in html and 'data-state="interrupted"' in html

        resumed = execute(kc, f"%delegate resume {plan_id}", "cell-resume")
        assert not errors_in(resumed), errors_in(resumed)
        assert any(
            m["msg_type"] == "display_data" and WIDGET in m["content"]["data"] for m in resumed
        )
        assert plan_records(resumed, "display_data") == []  # the record updated, not shown
        now = plan_records(resumed, "update_display_data")[-1]
        assert now["state"] == "running" and not now["cut_off"]

        approving = APPROVE_ALL.format(plan_id=plan_id, repo=repo.working_dir)
        done = execute(kc, approving, "cell-approve", timeout=180)
        assert not errors_in(done), errors_in(done)
        printed = "".join(m["content"].get("text", "") for m in done if m["msg_type"] == "stream")
        assert "plan ready" in printed, printed
        integrated = execute(kc, f"%delegate approve {plan_id}", "cell-integrate", timeout=120)
        assert not errors_in(integrated), errors_in(integrated)
        last = plan_records(integrated, "update_display_data")[-1]
        assert last["state"] == "integrated" and last["integration"]["commit"]
        assert [s["state"] for s in last["subtasks"]] == ["merged"] * 3
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
    root = Path(repo.working_dir)
    assert repo.head.commit.hexsha == last["integration"]["commit"]
    for name in ("one", "two", "three"):
        assert (root / f"{name}.txt").read_text() == f"{name}\n"
