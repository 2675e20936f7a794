"""The curriculum's notebooks, run by nbclient in real kernels against their bundled
scenarios: each reaches its "check your work" cell (tagged `check`) and that cell passes;
and each check cell fails, saying what to fix, when the lesson's key step (the cell tagged
`key-step`) is skipped or done the weak way, which proves the check can fail."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from jupyter_delegate.notebook.record import MIME
from jupyter_delegate.testing import load_scenario

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
CHECKS = "03-checks-that-prove-done.ipynb"
REVIEWING = "04-reviewing.ipynb"


def load(name: str) -> Any:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def tagged(notebook: Any, tag: str) -> int:
    """The index of the one cell carrying `tag`."""
    found = [i for i, c in enumerate(notebook.cells) if tag in c.metadata.get("tags", [])]
    assert len(found) == 1, f"one cell tagged {tag!r} expected, found {found}"
    return found[0]


def execute(notebook: Any, folder: Path) -> Any:
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    client.execute()
    return notebook


def text(cell: Any) -> str:
    """What a code cell printed or returned."""
    return "".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
        for output in cell.get("outputs", [])
    )


def printed(notebook: Any) -> str:
    return "".join(text(c) for c in notebook.cells if c.cell_type == "code")


def states(notebook: Any) -> dict[str, str]:
    """Each task's last state, as its record in the notebook says it."""
    return {
        output["data"][MIME]["name"]: output["data"][MIME]["state"]
        for cell in notebook.cells
        for output in cell.get("outputs", [])
        if MIME in output.get("data", {})
    }


def fails_at_check_cell(notebook: Any, folder: Path, message: str) -> None:
    """Run `notebook`: every cell before its check cell passes, and the check cell raises
    an AssertionError whose message holds `message`."""
    check = tagged(notebook, "check")
    with pytest.raises(CellExecutionError) as raised:
        execute(notebook, folder)
    errors = [
        (i, output)
        for i, cell in enumerate(notebook.cells)
        for output in cell.get("outputs", [])
        if output.get("output_type") == "error"
    ]
    assert [i for i, _ in errors] == [check], [(i, o["ename"], o["evalue"]) for i, o in errors]
    assert errors[0][1]["ename"] == "AssertionError"
    assert message in errors[0][1]["evalue"], errors[0][1]["evalue"]
    assert message in str(raised.value)


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True
    ).stdout


def test_curriculum_scenarios_have_a_name_and_a_description() -> None:
    for name in ("checks-gamed", "review-rounds"):
        scenario = load_scenario(name)
        assert scenario.name == name and scenario.description.strip()


# -- 03: checks that prove done -------------------------------------------------------------
def test_checks_notebook_a_weak_check_is_gamed_and_the_strong_one_catches_the_same_agent(
    tmp_path: Path,
) -> None:
    notebook = execute(load(CHECKS), tmp_path)
    assert "Well done" in text(notebook.cells[tagged(notebook, "check")])
    assert states(notebook) == {"discount-weak": "rejected", "discount-strong": "merged"}
    shown = printed(notebook)
    # The weak check passes before any fix, and passes the gamed work, which is wrong.
    assert "exit code before any fix: 0" in shown
    assert (
        "verdict: proven" in shown
        and "+        self.assertAlmostEqual(apply_discount(200.0, 10), 20.0)" in shown
    )
    assert "10% off 200 on the agent's branch: 20.0" in shown
    # The strong one fails before the fix, and catches the same agent's same move.
    assert "exit code before any fix: 1" in shown
    assert "verdict: checks fail" in shown
    assert "not committed: tests/test_cart.py (your rule edit(tests/**) forbids" in shown
    assert "AssertionError: 20.0 != 180.0" in shown
    assert "approve refused: Task" in shown and "is not proven" in shown
    # Sent back, the honest round passes the same check; main is right.
    assert "10% off 200 on main now: 180.0" in shown


WEAK_CHECK = 'check: python3 -c "import shop.cart"'
STRONG_CHECK = "check: python3 -m unittest -q tests/test_cart.py"
PROTECT = ' --deny "Edit(tests/**)"'


def weak_check(source: str) -> str:
    """The key cell without the strengthening: the weak check, nothing protected."""
    return source.replace(STRONG_CHECK, WEAK_CHECK).replace(PROTECT, "")


def unprotected(source: str) -> str:
    """The key cell with the strong check, but the tests left in the agent's reach."""
    return source.replace(PROTECT, "")


@pytest.mark.parametrize(
    ("skip", "then"),
    [
        (weak_check, "discount-strong is merged"),  # the honest round passes it too
        (unprotected, "still not proven: check `python3 -m unittest -q tests/test_cart.py` failed"),
    ],
    ids=["weak_check", "unprotected"],
)
def test_checks_notebook_check_cell_fails_when_the_check_is_not_strengthened(
    tmp_path: Path, skip: Callable[[str], str], then: str
) -> None:
    notebook = load(CHECKS)
    key = notebook.cells[tagged(notebook, "key-step")]
    assert STRONG_CHECK in key.source and PROTECT in key.source
    key.source = skip(key.source)
    fails_at_check_cell(
        notebook, tmp_path, "Your check passed the agent's first round, where 10% off 200 was 20.0"
    )
    shown = printed(notebook)
    # The gamed round was proven; unprotected, the bent test then fails the honest fix.
    assert "Proven: your check passed the agent's bent test" in shown
    assert then in shown


# -- 04: reviewing --------------------------------------------------------------------------
def test_reviewing_notebook_line_comments_start_round_two_and_its_answer_is_merged(
    tmp_path: Path,
) -> None:
    notebook = execute(load(REVIEWING), tmp_path)
    assert "Well done" in text(notebook.cells[tagged(notebook, "check")])
    assert states(notebook) == {"receipt-line": "merged"}
    shown = printed(notebook)
    # Round 1 is proven, yet wrong: the review finds it by running the line.
    assert "3 x pear @ 0.1 = 0.30000000000000004" in shown
    # What the agent received: each comment anchored, the line quoted.
    assert 'shop/receipt.py:6\n>     return f"{qty} x {name} @ {price} = {price * qty}"' in shown
    assert "tests/test_receipt.py:7-8\n>     def test_format_line(self):" in shown
    # Round 2's own diff is the answer to the comments, not the whole change again.
    assert (
        "round 2 started by comments on ['shop/receipt.py:6', 'tests/test_receipt.py:7-8']" in shown
    )
    since = shown.split("round 2 started by", 1)[1].split("edited", 1)[0]
    assert '+    return f"{qty} x {name} @ {price:.2f} = {price * qty:.2f}"' in since
    assert "new file mode" not in since
    # The reviewer's edit is committed as a human edit, the checks still pass, all on main.
    assert "human edit " in shown and "(Say what a receipt line holds)" in shown
    assert "Delegate-Edit: human" in shown
    assert shown.rstrip().endswith("its answer and your edit are on main.")
    assert "3 x pear @ 0.10 = 0.30" in shown


def test_reviewing_notebook_check_cell_fails_without_the_line_comments(tmp_path: Path) -> None:
    notebook = load(REVIEWING)
    del notebook.cells[tagged(notebook, "key-step")]
    fails_at_check_cell(
        notebook, tmp_path, "No round of review was started by a line comment on shop/receipt.py"
    )
    # Without the comments the unformatted line went to main, approved as proven.
    assert "(no changes requested yet)" in printed(notebook)
    assert states(notebook) == {"receipt-line": "merged"}
