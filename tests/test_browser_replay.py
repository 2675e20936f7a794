"""The replay in JupyterLab, with a real task through the fake model:
- a saved notebook's replay output with no kernel: the output `%delegate replay` leaves
  (the widget view and the replay MIME type with every diff) is drawn by the extension's
  MIME renderer, not "Error displaying widget", in a trusted notebook too (where rank
  decides between the two); its slider moves the step, its cost and its diff, and j steps
  the replay instead of moving JupyterLab's cell selection;
- the extension disabled (as in a front end without it), a kernel running: anywidget
  draws the ReplayView, and the diff of the step shown comes from the kernel.

Needs node and /usr/bin/chromium. Script: labextension/scripts/browser-replay-lab.mjs;
screenshots in labextension/test-artifacts/ (replay-lab-*.png, replay-widget-*.png)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import git
import nbformat
from browser import jupyter_server, kernel_notebook, needs_chromium, needs_node, run_script
from test_replay_page import added_lines, changed_files, two_round_task

from conftest import Factory
from jupyter_delegate.notebook.replay_view import REPLAY_MIME, ReplayView
from jupyter_delegate.replaying import replay


@needs_node
@needs_chromium
def test_saved_replay_renders_without_a_kernel_through_the_mime_renderer(
    lab_server: tuple[str, Path],
    node_modules: None,
    repo: git.Repo,
    make_manager: Factory,
    tmp_path: Path,
) -> None:
    base, root = lab_server
    task = two_round_task(repo, make_manager)
    view = ReplayView(replay(task))
    bundle, _ = view._repr_mimebundle_()
    view.close()
    data = bundle[REPLAY_MIME]
    output = nbformat.v4.new_output("execute_result", data=bundle, execution_count=1)
    cell = nbformat.v4.new_code_cell("%delegate replay fix-add", outputs=[output])
    below = nbformat.v4.new_markdown_cell("The cell below the replay.")
    notebook = root / "replay.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[cell, below]), notebook)
    # Trusted, as the notebook's author's own: both renderers may draw; rank chooses.
    env = {**os.environ, "JUPYTER_DATA_DIR": str(tmp_path / "jupyter-data")}
    subprocess.run([sys.executable, "-m", "jupyter", "trust", str(notebook)], env=env, check=True)
    with urllib.request.urlopen(f"{base}/api/contents/replay.ipynb") as reply:
        saved = json.load(reply)["content"]
    assert saved["cells"][0]["metadata"].get("trusted") is True
    probe = next(s["index"] for s in data["steps"] if s["tool"] and s["tool"]["name"] == "write")
    summary = run_script(
        "browser-replay-lab.mjs",
        {"base": base, "notebook": "replay.ipynb", "probe": probe},
        tmp_path,
    )
    assert summary["errors"] == []
    assert summary["widgetError"] == 0
    # one output, drawn by the replay's renderer, not the widget's
    assert summary["outputs"] == [{"replay": True, "widget": False}]
    assert summary["count"] == len(data["steps"])
    step = data["steps"][probe]
    shown = summary["shown"]
    assert shown["position"] == f"step {probe + 1} of {len(data['steps'])}"
    assert shown["cost"] == f"${step['cost_usd']:.4f}"
    truth = data["diffs"][step["tree"]]
    assert shown["diffFiles"] == changed_files(truth) and "test_negative.py" in shown["diffFiles"]
    assert shown["added"] == added_lines(truth)
    assert summary["darkBackground"] != "rgb(255, 255, 255)"
    # j (list focused) and ArrowDown (slider focused) stepped the replay from step 1, and
    # JupyterLab's cell selection stayed on the replay's cell
    assert (summary["afterJ"], summary["afterDown"]) == (2, 3)
    assert summary["activeBefore"] == summary["activeAfter"] == 0


@needs_node
@needs_chromium
def test_replay_widget_asks_the_kernel_for_each_diff_where_the_extension_is_absent(
    node_modules: None, repo: git.Repo, make_manager: Factory, tmp_path: Path
) -> None:
    # JupyterLab without this package's extension, as VS Code or any front end without
    # it: anywidget draws the ReplayView, and each diff comes from the kernel on request.
    labconfig = tmp_path / "jupyter-config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"jupyter-delegate": True}})
    )
    task = two_round_task(repo, make_manager)
    data = replay(task).to_dict(diffs=True)
    with jupyter_server(tmp_path, "jupyterlab") as (base, root):
        cells = [
            nbformat.v4.new_code_cell("%load_ext jupyter_delegate"),
            nbformat.v4.new_code_cell(f"%delegate replay fix-add --repo {repo.working_dir}"),
        ]
        nbformat.write(kernel_notebook(cells), root / "live.ipynb")
        probe = next(
            s["index"] for s in data["steps"] if s["tool"] and s["tool"]["name"] == "write"
        )
        summary = run_script(
            "browser-replay-lab.mjs",
            {
                "base": base,
                "notebook": "live.ipynb",
                "probe": probe,
                "run": True,
                "prefix": "replay-widget",
            },
            tmp_path,
        )
    assert summary["errors"] == []
    # drawn by the widget (the extension's MIME renderer is disabled here)
    assert summary["outputs"] and not any(o["replay"] for o in summary["outputs"])
    assert summary["count"] == len(data["steps"])
    # the widget's data has no diffs: this one came from the kernel, asked when shown
    shown = summary["shown"]
    truth = data["diffs"][data["steps"][probe]["tree"]]
    assert shown["diffFiles"] == changed_files(truth) and "test_negative.py" in shown["diffFiles"]
    assert shown["added"] == added_lines(truth)
