"""The review widget in Chromium against a real JupyterLab (and Notebook 7) with a kernel:
failing checks -> Approve asks "merge anyway?" -> Merge anyway merges; a line comment ->
Request changes -> the fake model receives the anchor and the quoted line -> round 2's
"changes since the last review" shows only its change; the dark theme's added lines are
readable (contrast >= 4.5:1); your own edit, saved and committed from the widget, is marked
yours. Screenshots in labextension/test-artifacts/.

The fake model is served from this process (FakeServer on loopback): the kernel's tasks
talk to it, and what it received is asserted here."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

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

from conftest import CALC, CHECK, FIX_TURNS, FIXED, TEST, commit_all
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer

STATIC = ROOT / "jupyter_delegate" / "notebook" / "static" / "review.js"
SUB = "\n\ndef sub(a, b):\n    return a - b\n"
# Each task talks to a fake model of its own. "failing" only writes a note (its check
# fails); "fixing" fixes add() (proven) and, sent back with a line comment, adds sub().
TURNS: dict[str, list[dict[str, Any]]] = {
    "failing": [
        {"tools": [{"write": {"file_path": "NOTES.md", "content": "add() later\n"}}]},
        {"tools": [{"finish": {"summary": "All tests pass."}}]},
    ],
    "fixing": [
        *FIX_TURNS,
        {"tools": [{"write": {"file_path": "calc.py", "content": FIXED + SUB}}]},
        {"tools": [{"finish": {"summary": "Added sub()."}}]},
    ],
}

SETUP = """\
import os
import jupyter_delegate as jd
from jupyter_delegate.notebook.review import ReviewView
"""
SHOW = """\
os.environ["ANTHROPIC_BASE_URL"] = {url!r}
task = jd.delegate("Make add() add.", repo={repo!r}, checks=[{check!r}], name={name!r},
                   sandbox="none")
assert task.wait(timeout=120) == "review"
ReviewView(task)
"""


def make_repo(path: Path) -> Path:
    import git

    path.mkdir()
    repo = git.Repo.init(path, initial_branch="main")
    (path / "calc.py").write_text(CALC)
    (path / "test_calc.py").write_text(TEST)
    (path / "README.md").write_text("# proj\n")
    commit_all(repo, "init")
    return path


def review_notebook(urls: dict[str, str], repos: dict[str, Path]) -> Any:
    cells = [nbformat.v4.new_code_cell(SETUP)]
    for name, repo in repos.items():
        code = SHOW.format(url=urls[name], repo=str(repo), check=CHECK, name=name)
        cells.append(nbformat.v4.new_code_cell(code))
    return kernel_notebook(cells)


def run_review(tmp_path: Path, app: str, prefix: str) -> tuple[dict[str, Any], FakeMessagesAPI]:
    if not STATIC.exists():
        done = subprocess.run(
            ["npm", "run", "build:review"], cwd=ROOT / "labextension", capture_output=True
        )
        assert done.returncode == 0, done.stderr
    fakes = {name: FakeMessagesAPI({"name": name, "turns": turns}) for name, turns in TURNS.items()}
    with (
        FakeServer(fakes["failing"]) as failing,
        FakeServer(fakes["fixing"]) as fixing,
        jupyter_server(tmp_path, app) as (base, root),
    ):
        repos = {name: make_repo(tmp_path / name) for name in TURNS}
        urls = {"failing": failing.url, "fixing": fixing.url}
        nbformat.write(review_notebook(urls, repos), root / "review.ipynb")
        summary = run_script(
            "browser-review.mjs",
            {
                "base": base,
                "notebook": "review.ipynb",
                "app": "lab" if app == "jupyterlab" else "notebook",
                "prefix": prefix,
            },
            tmp_path,
        )
    return summary, fakes["fixing"]


def check_summary(summary: dict[str, Any], fake: FakeMessagesAPI) -> None:
    # failing checks: the verdict, the flagged summary, "merge anyway?" naming why
    assert summary["failingVerdict"] == "checks fail"
    assert "FAIL" in summary["failingFlag"] and "claim" in summary["failingFlag"]
    assert summary["ask"].startswith("Not proven:") and f"check `{CHECK}` failed" in summary["ask"]
    assert "Merge anyway?" in summary["ask"] and summary["stateAfterApprove"] == "review"
    assert summary["decision"].startswith("Merged into main as")
    assert summary["failingState"] == "merged"
    assert summary["feedback"] == summary["decision"] and summary["feedbackNearClick"]
    # the line comment reached the model anchored, with the quoted line
    assert summary["fixingVerdict"] == "proven"
    assert summary["drafts"][0].startswith("calc.py:2 Keep this line exactly as it is.")
    bodies = [json.dumps(r.body) for r in fake.requests if r.kind != "models"]
    sent = [b for b in bodies if "Add a sub() too." in b]
    assert sent, "the request-changes never reached the model"
    assert "calc.py:2" in sent[0] and ">     return a + b" in sent[0]
    assert "Keep this line exactly as it is." in sent[0]
    # round 2: its own diff shows only its change; the comment is still beside its line
    assert "Round 2" in summary["roundText"] and "Add a sub() too." in summary["roundText"]
    assert "Keep this line exactly as it is." in summary["earlierComment"]
    added = "\n".join(summary["sinceAdded"])
    assert "def sub(a, b):" in added and "return a + b" not in added
    assert summary["sinceFiles"] == ["calc.py"] and summary["highlighted"] > 0
    assert summary["lightContrast"]["ratio"] >= 4.5
    # fix it yourself: saved in the worktree, committed as the reviewer, marked so
    assert summary["humanEdit"].startswith("your edit") and "My own touch" in summary["humanEdit"]
    assert "(calc.py)" in summary["humanEdit"]
    assert summary["afterEdit"].startswith("Your edits are committed as")


@needs_node
@needs_chromium
@pytest.mark.timeout(600)
def test_review_in_jupyterlab_asks_before_merging_failing_work_and_sends_line_comments(
    tmp_path: Path, node_modules: None
) -> None:
    for old in ARTIFACTS.glob("review-lab-*.png"):
        old.unlink()
    summary, fake = run_review(tmp_path, "jupyterlab", "review-lab")
    check_summary(summary, fake)
    assert summary["darkContrast"]["ratio"] >= 4.5, summary["darkContrast"]
    assert summary["split"] == 2


@needs_node
@needs_chromium
@pytest.mark.timeout(600)
def test_review_in_notebook_7(tmp_path: Path, node_modules: None) -> None:
    pytest.importorskip("notebook", reason="Notebook 7 is not installed")
    summary, fake = run_review(tmp_path, "notebook", "review-nb7")
    check_summary(summary, fake)
