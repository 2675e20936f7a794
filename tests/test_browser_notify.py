"""Notifications in a real JupyterLab with a kernel (Chromium): a task asks for a command,
the JupyterLab notification appears with Allow, Deny and Open, the Delegations sidebar's
bell (and its tab's badge) counts it; a click on Allow lets the task go on to review (by
the notebook's kernel, where the server has no API route), whose notification follows;
the webhook receiver (loopback, in this process, named by the user's config.toml) got one
well-formed POST for the question. Screenshots in the light and dark theme
(labextension/test-artifacts/notify-*.png)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from browser import ARTIFACTS, BUILT, kernel_notebook, needs_chromium, needs_node, run_script
from test_notify import Receiver, configure, receiver  # noqa: F401 (the receiver fixture)

from conftest import until

SETUP = """\
import os
import tempfile
from pathlib import Path

from jupyter_delegate.testing import FakeMessagesAPI, FakeServer
from jupyter_delegate.testing.demo_repo import make_demo_repo

repo = make_demo_repo(Path(tempfile.mkdtemp(prefix="notify-")) / "shop")
turns = [
    {"text": "Looking at the files.", "tools": [{"bash": {"command": "ls -la shop"}}]},
    {"tools": [{"finish": {"summary": "Looked at the shop."}}]},
]
model_server = FakeServer(FakeMessagesAPI({"name": "notify", "turns": turns}, latency_ms=300))
os.environ["ANTHROPIC_BASE_URL"] = model_server.url
"""


def notify_notebook() -> nbformat.NotebookNode:
    cells = [
        nbformat.v4.new_code_cell(SETUP),
        nbformat.v4.new_code_cell("%load_ext jupyter_delegate"),
        nbformat.v4.new_code_cell(
            "%%delegate --repo {repo} --name ask-me --ask Bash --sandbox none\n"
            "Say what the shop holds.\n"
            "check: true"
        ),
    ]
    return kernel_notebook(cells)


@needs_node
@needs_chromium
@pytest.mark.timeout(420)
def test_browser_notification_allow_lets_the_task_go_on_and_the_webhook_hears_it(
    lab_server: tuple[str, Path],
    node_modules: None,
    tmp_path: Path,
    receiver: Receiver,  # noqa: F811
) -> None:
    if not (BUILT / "package.json").exists():
        pytest.fail("the extension is not built: run `pip install -e .` with node installed")
    # The kernel reads the user's config (JUPYTER_DELEGATE_HOME, set for every test and
    # passed to the server and its kernels) when the task asks.
    configure(f'[notify]\nwebhooks = ["{receiver.url}/hook"]\n')
    base, root = lab_server
    for old in ARTIFACTS.glob("notify-*.png"):
        old.unlink()
    nbformat.write(notify_notebook(), root / "notify.ipynb")
    summary = run_script("browser-notify.mjs", {"base": base, "notebook": "notify.ipynb"}, tmp_path)
    assert summary["question"].startswith("ask-me asks to run bash: ls -la shop")
    assert summary["actions"] == ["Allow", "Deny", "Open"]
    assert summary["bellWaiting"] == "1" and summary["badgeWaiting"] == "1"
    assert summary["bellIcon"] == 1
    assert summary["review"].startswith("ask-me is ready for review (no changes)")
    assert summary["reviewActions"] == ["Open", "Approve"]
    assert summary["stateAfterAllow"] == "review"
    # Without the server's route the kernel answered (with it, the server does).
    assert summary["answerStatus"] in (200, 202, 404)
    assert summary["bellReview"] == "1"  # in review, it still needs you
    until(lambda: len(receiver.posts) == 2, 30, "the review's POST")
    questions = [body for _, body in receiver.posts if body["event"] == "question"]
    assert len(questions) == 1
    (question,) = questions
    assert question["name"] == "ask-me" and question["state"] == "waiting"
    assert question["question"]["tool"] == "bash"
    assert question["question"]["command"] == "ls -la shop"
    assert question["task_id"] == summary["taskId"]
    for name in ("question-light", "question-dark", "review-dark", "review-light"):
        assert (ARTIFACTS / f"notify-{name}.png").stat().st_size > 0
