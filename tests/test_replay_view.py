"""The replay in the notebook: `ReplayView` (its data trait, the diff a front end asks for
answered from `Replay.diff_at`, its display bundle carrying the replay MIME type with
every diff) and `%delegate replay NAME` in a real kernel (nbclient): the widget and the
MIME bundle shown, from a task's name or its journal file; an unknown task is one red
line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import git
import nbformat
import pytest
from nbclient import NotebookClient
from replay_data import synthetic_replay

from conftest import CHECK, FIX_TURNS, Factory, until
from jupyter_delegate.notebook.replay_view import REPLAY_MIME, ReplayView
from jupyter_delegate.outcome import Outcome
from jupyter_delegate.replaying import replay
from jupyter_delegate.task import Task, TaskState

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


@pytest.fixture
def task(repo: git.Repo, make_manager: Factory) -> Task:
    manager, _ = make_manager(FIX_TURNS)
    made: Task = manager.submit(
        Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir, name="fix"
    )
    assert made.wait(timeout=60) == TaskState.REVIEW
    return made


def test_view_syncs_the_steps_and_answers_a_diff_request_from_diff_at(
    task: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    the_replay = replay(task)
    view = ReplayView(the_replay)
    try:
        assert [s["index"] for s in view.data["steps"]] == list(range(len(the_replay)))
        assert "diffs" not in view.data  # asked for when shown, not all sent up front
        sent: list[dict[str, Any]] = []
        monkeypatch.setattr(view, "send", sent.append)
        edit = next(s for s in the_replay.steps if s.tool and s.tool.name == "edit")
        view._handle_custom_msg({"action": "diff", "index": edit.index, "tree": edit.tree}, [])
        until(lambda: sent, what="the diff's answer")
        assert sent == [{"kind": "diff", "tree": edit.tree, "diff": the_replay.diff_at(edit.index)}]
        assert "+    return a + b" in sent[0]["diff"]
        view._handle_custom_msg({"action": "diff", "index": 999, "tree": "x"}, [])
        until(lambda: len(sent) == 2, what="the refusal")
        assert sent[1]["kind"] == "diff" and "give an index from 0" in sent[1]["error"]
    finally:
        view.close()


def test_display_bundle_carries_the_replay_with_its_diffs(task: Task) -> None:
    the_replay = replay(task)
    view = ReplayView(the_replay)
    try:
        data, _metadata = view._repr_mimebundle_()
        assert data[WIDGET_MIME]["model_id"] == view.model_id
        assert data["text/plain"] == f"Replay of task fix (review): {len(the_replay)} steps"
        shown = data[REPLAY_MIME]
        assert shown == json.loads(json.dumps(the_replay.to_dict(diffs=True)))
        trees = {s["tree"] for s in shown["steps"] if s["tree"]}
        assert trees and trees <= set(shown["diffs"])
    finally:
        view.close()


def test_a_long_replay_is_shown_at_once_and_its_diffs_follow_as_an_update(
    task: Task, monkeypatch: pytest.MonkeyPatch
) -> None:
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output

    from jupyter_delegate.notebook import replay_view

    monkeypatch.setattr(replay_view, "DIFFS_AT_ONCE", 0)  # every replay counts as long
    InteractiveShell.instance()
    the_replay = replay(task)
    view = ReplayView(the_replay)
    try:
        with capture_output() as captured:
            view.show()
            until(lambda: len(captured.outputs) == 2, what="the update with the diffs")
        first, then = captured.outputs
        assert first.data[REPLAY_MIME]["diffs_pending"] is True
        assert "diffs" not in first.data[REPLAY_MIME] and not first.update
        assert then.update and then.transient == first.transient  # the same output, updated
        assert then.data[REPLAY_MIME] == json.loads(json.dumps(the_replay.to_dict(diffs=True)))
    finally:
        view.close()
        InteractiveShell.clear_instance()


def test_magic_shows_the_replay_widget_and_mime_bundle_and_unknown_task_is_one_red_line(
    task: Task, repo: git.Repo, tmp_path: Path
) -> None:
    notebook = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("%load_ext jupyter_delegate"),
            nbformat.v4.new_code_cell(f"%delegate replay fix --repo {repo.working_dir}"),
            nbformat.v4.new_code_cell(f"%delegate replay nosuch --repo {repo.working_dir}"),
            nbformat.v4.new_code_cell(f"%delegate replay {task.journal_path}"),
        ]
    )
    NotebookClient(
        notebook,
        timeout=120,
        kernel_name="python3",
        allow_errors=True,
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    (shown,) = notebook.cells[1].outputs
    assert shown["output_type"] == "display_data"
    data = shown["data"]
    assert WIDGET_MIME in data
    replayed = data[REPLAY_MIME]
    assert replayed["task"]["id"] == task.id and replayed["task"]["name"] == "fix"
    assert len(replayed["steps"]) == len(replay(task))
    last = replayed["steps"][-1]
    assert "+    return a + b" in replayed["diffs"][last["tree"]]
    (error,) = notebook.cells[2].outputs
    assert error["output_type"] == "error" and error["ename"] == "TaskNotFound"
    assert len(error["traceback"]) == 1  # one red line, no traceback
    assert "No task 'nosuch'" in error["traceback"][0]
    # a journal file (copied from another machine, say) replays the same steps
    (from_journal,) = notebook.cells[3].outputs
    assert from_journal["data"][REPLAY_MIME]["steps"] == replayed["steps"]


def test_hand_made_replay_data_has_the_shape_of_a_real_one(task: Task) -> None:
    """The front-end tests' data (tests/replay_data.py, and the vitest suite's fixture made
    from it) has the keys a real replay has, so they test what the front ends will meet."""
    real = replay(task).to_dict(diffs=True)
    made = synthetic_replay(8)
    assert set(made) | {"warnings"} == set(real)
    assert set(made["task"]) == set(real["task"])
    assert set(made["steps"][0]) | {"reconstructed"} == set(real["steps"][0])
    real_result = next(s["result"] for s in real["steps"] if s["result"])
    assert set(made["steps"][0]["result"]) == set(real_result)
    fixture = Path(__file__).parent.parent / "labextension/tests/fixtures/replay.json"
    assert json.loads(fixture.read_text()) == made  # regenerate it if synthetic_replay changes
