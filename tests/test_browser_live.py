"""Live is live, in a real browser (issue 16, items 4 and 5): a task's live line ticks in
JupyterLab with no message from the kernel, names the command running and shows its last
lines before it ends, and the cost is the same in the live view, the folded card and the
Delegations sidebar, as the task spends and at review. The early header (header.py) shows
first and gives way to the view's, never both at once, and is not kept in the saved
notebook.

A real JupyterLab server and kernel; the model is the scripted fake over loopback. Needs
node and /usr/bin/chromium (skipped, saying which is missing, without them). The script is
labextension/scripts/browser-live.mjs; screenshots land in labextension/test-artifacts/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nbformat
import pytest
from browser import ARTIFACTS, BUILT, kernel_notebook, needs_chromium, needs_node, run_script

from jupyter_delegate.notebook.header import EARLY_MIME

# About 7 s: four lines, a silent spell (no output, so no event: the clock must tick on
# its own), then the last lines.
COMMAND = (
    "for n in 1 2 3 4; do echo counted line $n; sleep 0.3; done; sleep 5.5; "
    "echo counted line 5; echo all counted"
)
SETUP = f"""\
import os
import tempfile
from pathlib import Path

from jupyter_delegate.testing import FakeMessagesAPI, FakeServer
from jupyter_delegate.testing.demo_repo import make_demo_repo

repo = make_demo_repo(Path(tempfile.mkdtemp(prefix="live-clock-")) / "shop")
turns = [
    {{"text": "Counting.", "tools": [{{"bash": {{"command": {COMMAND!r}}}}}]}},
    {{"tools": [{{"finish": {{"summary": "Counted to five."}}}}]}},
]
# A slow model (2.5 s a turn): the live line says the model is at work meanwhile.
model_server = FakeServer(FakeMessagesAPI({{"name": "clock", "turns": turns}}, latency_ms=2500))
os.environ["ANTHROPIC_BASE_URL"] = model_server.url
"""
SCREENSHOTS = (
    "live-model-working.png",
    "live-running-light.png",
    "live-running-dark.png",
    "live-review-costs.png",
    "live-review-header.png",
)


def clock_notebook() -> Any:
    cells = [
        nbformat.v4.new_code_cell(SETUP),
        nbformat.v4.new_code_cell("%load_ext jupyter_delegate"),
        nbformat.v4.new_code_cell(
            "%%delegate --repo {repo} --name live-clock --sandbox none\n"
            "Count to five.\n"
            "check: python3 -c 'print(5)'"
        ),
    ]
    return kernel_notebook(cells)


@needs_node
@needs_chromium
@pytest.mark.timeout(420)
def test_live_line_ticks_names_the_command_shows_its_tail_and_one_cost_everywhere(
    lab_server: tuple[str, Path], node_modules: None, tmp_path: Path
) -> None:
    if not (BUILT / "package.json").exists():
        pytest.fail("the extension is not built: cd labextension && npm run build")
    base, root = lab_server
    for old in (*SCREENSHOTS, "live-failure.png"):
        (ARTIFACTS / old).unlink(missing_ok=True)
    nbformat.write(clock_notebook(), root / "clock.ipynb")
    summary = run_script("browser-live.mjs", {"base": base, "notebook": "clock.ipynb"}, tmp_path)

    # The clock moved 2+ s between two readings 2+ s apart, and the kernel sent nothing.
    ticks = summary["ticks"]
    assert ticks["later_s"] - ticks["first_s"] >= 2, ticks
    assert ticks["frames"] == 0, ticks
    assert ticks["now"].startswith("now: running") and "counted line" in ticks["now"], ticks
    subject = summary["subject"]  # a long command is named by its start
    assert subject.endswith("…") and COMMAND.startswith(subject[:-1]) and len(subject) > 40
    # The command's lines, before it ended: the first four, not the last.
    tail = summary["tailWhileRunning"]
    assert "counted line 4" in tail and "all counted" not in tail, tail
    assert summary["modelWorking"].startswith("now: the model is"), summary["modelWorking"]
    # One cost: the sidebar follows the live view while the task runs, and at review the
    # view, the folded card and the sidebar say the same.
    running = summary["runningCosts"]
    assert running["view"] == running["sidebar"] != "$0.0000", running
    costs = summary["reviewCosts"]
    assert costs["view"] == costs["card"] == costs["sidebar"] == costs["total"], costs
    assert costs["view"] != "$0.0000"
    assert summary["themes"] == ["light", "dark", "light"]
    # The early header showed first, gave way to the live view's with no moment showing
    # both, and the saved notebook keeps it empty (no stale "queued" header).
    early = summary["early"]
    assert early["early"] > 0 and early["live"] > 0 and early["both"] == 0, early
    assert early["left"] == 0, early
    saved = nbformat.read(root / "clock.ipynb", as_version=4)
    outputs = [o for cell in saved.cells for o in cell.get("outputs", [])]
    assert any(o["output_type"] == "display_data" and not o.get("data") for o in outputs)
    assert not any(EARLY_MIME in o.get("data", {}) for o in outputs), outputs
    assert not any("jd-early" in str(o.get("data", {})) for o in outputs)
    for screenshot in SCREENSHOTS:
        assert (ARTIFACTS / screenshot).exists(), screenshot
