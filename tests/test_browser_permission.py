"""The permission card in a real JupyterLab with a kernel (Chromium): a task asks for a
command, the card shows it and the rule "Allow this prefix for the task" adds, the click
lets a later same-prefix command run unasked, another command asks again and is denied
with a reason; screenshots of the card in the light and dark theme
(labextension/test-artifacts/permission-*.png)."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from browser import ARTIFACTS, BUILT, kernel_notebook, needs_chromium, needs_node, run_script

SETUP = """\
import os
import tempfile
from pathlib import Path

from jupyter_delegate.testing import FakeMessagesAPI, FakeServer
from jupyter_delegate.testing.demo_repo import make_demo_repo

repo = make_demo_repo(Path(tempfile.mkdtemp(prefix="permission-")) / "shop")
turns = [
    {"text": "Looking at the files.", "tools": [{"bash": {"command": "ls -la shop"}}]},
    {"tools": [{"bash": {"command": "ls shop/cart.py"}}]},  # same prefix: not asked
    {"tools": [{"bash": {"command": "wc -l shop/cart.py"}}]},  # another: asked, denied
    {"text": "Reading it instead.", "tools": [{"read": {"file_path": "shop/cart.py"}}]},
    {"tools": [{"finish": {"summary": "Looked at the cart."}}]},
]
model_server = FakeServer(FakeMessagesAPI({"name": "permission", "turns": turns}, latency_ms=300))
os.environ["ANTHROPIC_BASE_URL"] = model_server.url
"""


def permission_notebook() -> nbformat.NotebookNode:
    cells = [
        nbformat.v4.new_code_cell(SETUP),
        nbformat.v4.new_code_cell("%load_ext jupyter_delegate"),
        nbformat.v4.new_code_cell(
            "%%delegate --repo {repo} --name ask-me --ask Bash --sandbox none\n"
            "Say how long shop/cart.py is.\n"
            "check: true"
        ),
    ]
    return kernel_notebook(cells)


@needs_node
@needs_chromium
@pytest.mark.timeout(420)
def test_browser_permission_card_allow_prefix_then_deny_with_a_reason(
    lab_server: tuple[str, Path], node_modules: None, tmp_path: Path
) -> None:
    if not (BUILT / "package.json").exists():
        pytest.fail("the extension is not built: run `pip install -e .` with node installed")
    base, root = lab_server
    for old in ARTIFACTS.glob("permission-*.png"):
        old.unlink()
    nbformat.write(permission_notebook(), root / "permission.ipynb")
    summary = run_script(
        "browser-permission.mjs", {"base": base, "notebook": "permission.ipynb"}, tmp_path
    )
    assert "bash(ls:*)" in summary["firstCard"] and "$ ls -la shop" in summary["firstCard"]
    assert any(c.startswith("bash ls shop/cart.py") for c in summary["callsBeforeSecondCard"])
    assert "the agent is told: count lines with the read tool" in summary["denied"]
    assert "tool calls" in summary["folded"]
    for name in ("light", "dark", "second-dark"):
        assert (ARTIFACTS / f"permission-card-{name}.png").stat().st_size > 0
