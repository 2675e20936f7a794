"""The phone page in Chromium at 390x844 against a real Jupyter server with the server
extension on: a task running in a notebook's kernel asks to run a command, the page
shows the question and Allow lets the task go on; the page shows its review (summary,
checks, a diff that wraps at 390 px) and Approve merges it; `audit verify` is ok and the
journal names the decisions as the server's. Screenshots in light and dark
(labextension/test-artifacts/phone-*.png)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import git
import nbformat
import pytest
from browser import (
    ARTIFACTS,
    BUILT,
    jupyter_server,
    kernel_notebook,
    needs_chromium,
    needs_node,
    run_script,
)

from jupyter_delegate.journal import Journal

SETUP = """\
import os
from pathlib import Path

from jupyter_delegate.testing import FakeMessagesAPI, FakeServer
from jupyter_delegate.testing.demo_repo import make_demo_repo

repo = make_demo_repo(Path.cwd() / "shop")  # under the server's root: the page shows it
LONG = "A line far wider than a phone: " + "total, discount, tax; " * 8
NOTES = "# Notes\\n\\nThe cart is short.\\n" + LONG + "\\n"
turns = [
    {"text": "Counting the cart's lines.", "tools": [{"bash": {"command": "wc -l shop/cart.py"}}]},
    {"tools": [{"write": {"file_path": "NOTES.md", "content": NOTES}}]},
    {"tools": [{"finish": {"summary": "Wrote NOTES.md with what the cart is like."}}]},
]
model_server = FakeServer(FakeMessagesAPI({"name": "phone", "turns": turns}, latency_ms=300))
os.environ["ANTHROPIC_BASE_URL"] = model_server.url
"""


def phone_notebook() -> nbformat.NotebookNode:
    cells = [
        nbformat.v4.new_code_cell(SETUP),
        nbformat.v4.new_code_cell("%load_ext jupyter_delegate"),
        nbformat.v4.new_code_cell(
            "%%delegate --repo {repo} --name phone --ask Bash --sandbox none\n"
            "Write NOTES.md saying what the cart is like.\n"
            "check: true"
        ),
    ]
    return kernel_notebook(cells)


@needs_node
@needs_chromium
@pytest.mark.timeout(420)
def test_phone_page_answers_a_question_of_a_kernel_task_then_approves_its_review(
    node_modules: None, tmp_path: Path
) -> None:
    if not (BUILT / "package.json").exists():
        pytest.fail("the extension is not built: run `pip install -e .` with node installed")
    # The server extension, enabled as its install does (the checkout is not installed).
    enabled = tmp_path / "jupyter-config" / "jupyter_server_config.d" / "jupyter_delegate.json"
    enabled.parent.mkdir(parents=True)
    enabled.write_text(
        json.dumps({"ServerApp": {"jpserver_extensions": {"jupyter_delegate": True}}})
    )
    for old in ARTIFACTS.glob("phone-*.png"):
        old.unlink()
    with jupyter_server(tmp_path, "jupyterlab") as (base, root):
        nbformat.write(phone_notebook(), root / "phone.ipynb")
        summary = run_script(
            "browser-phone.mjs", {"base": base, "notebook": "phone.ipynb"}, tmp_path
        )
    assert "$ wc -l shop/cart.py" in summary["question"]
    assert summary["after"][0][:2] == ["phone", "merged"]
    shop = git.Repo(root / "shop")
    assert (root / "shop" / "NOTES.md").read_text().startswith("# Notes\n\nThe cart is short.\n")
    assert shop.active_branch.name == "main"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jupyter_delegate.cli",
            "audit",
            "verify",
            "--repo",
            str(root / "shop"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0 and "audit verify: ok" in done.stdout, done.stdout + done.stderr
    (task_dir,) = (Path(shop.common_dir) / "delegate" / "tasks").iterdir()
    events = [e.data for e in Journal(task_dir / "journal.jsonl").events()]
    answered = [e for e in events if e.get("decision") == "allow" and e.get("request_id")]
    assert [e["from"]["via"] for e in answered] == ["server"]
    assert answered[0]["from"]["server_user"]  # the user the server authenticated
    approved = [e for e in events if e.get("action") == "approve" and e.get("status") == "done"]
    assert [e["by"]["via"] for e in approved] == ["server"]
    decisions = summary["after"][0][2]
    assert any(
        d.startswith("approved by ") and d.endswith("via the Jupyter server") for d in decisions
    )
    for name in ("question-light", "question-dark", "review-light", "review-dark"):
        assert (ARTIFACTS / f"phone-{name}.png").stat().st_size > 0
