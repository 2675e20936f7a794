"""The offline replay page (replay_page.replay_html): one self-contained HTML file that
opens in headless Chromium from file:// with no server, makes no request, and steps
through a real task (two rounds through the fake model, real git): the slider, the step
list and the keys change the step shown, its cost and its diff, which is the task's own
`git diff` base..tree. The embedded JSON cannot break out of its <script>, and a replay of
1,000 steps opens (how fast: bench/replay_page.py). Screenshots: docs/replay.png and
docs/replay-dark.png."""

from __future__ import annotations

import io
import json
import re
import subprocess
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import git
import pytest
from browser import ROOT, needs_chromium, needs_node, run_script
from replay_data import HOSTILE, synthetic_replay

from conftest import CHECK, FIX_TURNS, Factory
from jupyter_delegate.cli import main
from jupyter_delegate.outcome import Outcome
from jupyter_delegate.replay_page import SCRIPT, embedded_json, replay_html
from jupyter_delegate.replaying import replay
from jupyter_delegate.task import TaskState

pytestmark = pytest.mark.skipif(
    not SCRIPT.exists(), reason="the replay's front end is not built: npm run build:replay"
)
DOCS = ROOT / "docs"
NEG_TEST = (
    "import unittest\nfrom calc import add\n\n\n"
    "class N(unittest.TestCase):\n    def test_negative(self):\n"
    "        self.assertEqual(add(-2, -3), -5)\n"
)
# Round 1 fixes add(); the reviewer asks for a test of negative numbers; round 2 adds one.
TWO_ROUNDS: list[dict[str, Any]] = [
    *FIX_TURNS,
    {
        "text": "Adding the test you asked for.",
        "tools": [{"write": {"file_path": "test_negative.py", "content": NEG_TEST}}],
    },
    {"tools": [{"bash": {"command": "python3 -m unittest -q test_negative"}}]},
    {"tools": [{"finish": {"summary": "add() adds; a test covers negative numbers."}}]},
]


def two_round_task(repo: git.Repo, make_manager: Factory) -> Any:
    manager, _ = make_manager(TWO_ROUNDS)
    task = manager.submit(
        Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir, name="fix-add"
    )
    assert task.wait(timeout=60) == TaskState.REVIEW
    task.request_changes("Also test negative numbers.")
    time.sleep(0.2)
    assert task.wait(timeout=60) == TaskState.REVIEW
    return task


class _Scripts(HTMLParser):
    """The <script> elements of a page (their attributes and text), and every tag's
    attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.attributes: list[tuple[str, str]] = []
        self._open: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.attributes += [(tag, name) for name, _ in attrs]
        if tag == "script":
            self._open = dict(attrs)
            self.scripts.append((self._open, ""))

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._open = None


def test_embedded_json_cannot_end_its_script_element() -> None:
    data = synthetic_replay(6)
    assert data["steps"][-1]["text"] == HOSTILE
    page = replay_html(data)
    parser = _Scripts()
    parser.feed(page)
    # Two scripts, as written: the data and the code; the agent's </script> made no third.
    assert [attrs.get("type") for attrs, _ in parser.scripts] == ["application/json", None]
    assert json.loads(parser.scripts[0][1]) == data
    assert "<" not in embedded_json({"t": "</script><!--"})
    assert page.count("</script>") == 2


def test_page_is_self_contained() -> None:
    page = replay_html(synthetic_replay(3))
    parser = _Scripts()
    parser.feed(page)
    # Nothing to fetch: no tag with a src or href, no url() but data:, a CSP of none.
    assert not [(tag, name) for tag, name in parser.attributes if name in ("src", "href")]
    assert not re.search(r"url\((?!\s*['\"]?data:)", page)
    assert "default-src 'none'" in page


@needs_node
@needs_chromium
def test_offline_page_steps_through_a_real_task_from_file_url(
    repo: git.Repo, make_manager: Factory, tmp_path: Path
) -> None:
    task = two_round_task(repo, make_manager)
    data = replay(task).to_dict(diffs=True)
    steps = data["steps"]
    assert data["task"]["rounds"] == 2 and len(steps) >= 7
    page = tmp_path / "replay.html"  # written as a teacher would
    argv = ["replay", "fix-add", "--repo", repo.working_dir, "--html", str(page)]
    assert main(argv, out=io.StringIO()) == 0
    assert page.read_text(encoding="utf-8") == replay_html(data)
    edit = next(s["index"] for s in steps if s["tool"] and s["tool"]["name"] == "edit")
    write = next(s["index"] for s in steps if s["tool"] and s["tool"]["name"] == "write")
    probe = [0, edit, write, len(steps) - 1]
    summary = run_script(
        "browser-replay-page.mjs",
        {
            "page": str(page),
            "probe": probe,
            "screenshot_step": write,
            "screenshots": {
                "light": str(DOCS / "replay.png"),
                "dark": str(DOCS / "replay-dark.png"),
            },
        },
        tmp_path,
    )
    # No server and no request beyond the file itself (once per colour scheme).
    assert set(summary["requests"]) == {page.as_uri()}, summary["requests"]
    assert summary["errors"] == []
    assert summary["count"] == len(steps)
    for index in probe:
        shown = summary["steps"][f"slider-{index}"]
        step = steps[index]
        assert shown["step"] == index and shown["selected"] == [index]
        assert shown["position"] == f"step {index + 1} of {len(steps)}"
        assert shown["cost"] == f"${step['cost_usd']:.4f}"
        # The diff shown is the step's, file by file and line by line: what git says
        # changed from the base to the worktree's snapshot at that step.
        truth = data["diffs"][step["tree"]]
        assert shown["diffFiles"] == changed_files(truth)
        assert shown["added"] == added_lines(truth)
        if not step["reconstructed"]:
            assert truth == git_diff(repo, data["task"]["base"], step["tree"])
    assert summary["steps"][f"slider-{edit}"]["added"] == ["    return a + b"]
    assert "test_negative.py" in summary["steps"][f"slider-{write}"]["diffFiles"]
    assert summary["steps"]["slider-0"]["diffEmpty"] == "No changes from the base yet."
    # At the end, what git says the task's branch changed.
    last = summary["steps"][f"slider-{len(steps) - 1}"]
    branch = git_diff(repo, data["task"]["base"], task.branch)
    assert last["diffFiles"] == changed_files(branch) == ["calc.py", "test_negative.py"]
    assert last["added"] == added_lines(branch)
    # A drag to the end, a click in the list, and the keys.
    assert summary["dragged"]["step"] == len(steps) - 1
    assert summary["clicked"]["step"] == 3 and summary["clicked"]["slider"] == 3
    assert (summary["afterJ"], summary["afterKK"], summary["afterRight"]) == (4, 2, 3)
    assert summary["afterEnd"]["step"] == len(steps) - 1
    # Light and dark follow the reader's system.
    assert summary["light_background"] == "rgb(255, 255, 255)"
    assert summary["dark_background"] == "rgb(13, 17, 23)"


def git_diff(repo: git.Repo, base: str, head: str) -> str:
    return subprocess.run(
        ["git", "diff", "--no-color", base, head],
        cwd=repo.working_dir,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def changed_files(diff: str) -> list[str]:
    return re.findall(r"^diff --git a/\S+ b/(\S+)$", diff, flags=re.MULTILINE)


def added_lines(diff: str) -> list[str]:
    return [
        line[1:]
        for line in diff.splitlines()
        if line.startswith("+") and not line.startswith("+++")
    ]


@needs_node
@needs_chromium
def test_a_thousand_steps_open_and_step_and_the_text_stays_text(
    tmp_path: Path,
) -> None:
    data = synthetic_replay(1000, rounds=3)
    page = tmp_path / "big.html"
    page.write_text(replay_html(data), encoding="utf-8")
    summary = run_script(
        "browser-replay-page.mjs",
        {"page": str(page), "probe": [500, 999], "schemes": ["light"]},
        tmp_path,
    )
    drawn = summary["light_drawn_ms"]  # from the navigation's start to the replay drawn
    print(f"1,000 steps: {page.stat().st_size:,} bytes; drawn {drawn:.0f} ms after opening")
    assert summary["count"] == 1000 and summary["errors"] == []
    assert summary["sweep"]["redraws"] > 0  # how fast: bench/replay_page.py, not a test
    last = summary["steps"]["slider-999"]
    assert last["words"] == "The agent says" + HOSTILE  # shown as text, never run
    assert summary["pwned"] is False
