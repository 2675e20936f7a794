"""The curriculum's notebooks (05 to 08, and the index 00) run in real kernels (nbclient),
offline against their bundled scenarios, and their "check your work" cell passes; with the
lesson's key step left out (the cell tagged `key-step`), that check cell fails, saying what
to fix. The index's links resolve to notebooks that exist."""

from __future__ import annotations

import copy
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from jupyter_delegate.sandbox import probe

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
BUBBLEWRAP = pytest.mark.skipif(
    not probe().available, reason="07 shows the real sandbox: it needs bubblewrap"
)


_FOLDERS: list[Path] = []


@pytest.fixture(autouse=True)
def _remove_the_notebooks_folders() -> Iterator[None]:
    """Each notebook makes a temporary folder of its own (under /tmp, or /var/tmp for 07)
    and prints its repository there: removed after the test's assertions."""
    yield
    while _FOLDERS:
        shutil.rmtree(_FOLDERS.pop(), ignore_errors=True)


def load(name: str) -> Any:
    return nbformat.read(NOTEBOOKS / name, as_version=4)


def run(notebook: Any, folder: Path) -> None:
    """Execute `notebook` in a fresh kernel (how long each takes: the index's table,
    measured by running them, not asserted here)."""
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    )
    try:
        client.execute()
    finally:
        for shown_repo in re.findall(r"^repository: (/\S+)$", outputs(notebook), re.M):
            made = Path(shown_repo).parent
            if made.parent in (Path("/tmp"), Path("/var/tmp")):
                _FOLDERS.append(made)


def tagged(notebook: Any, tag: str) -> list[int]:
    return [n for n, c in enumerate(notebook.cells) if tag in c.metadata.get("tags", [])]


def shown(cell: Any) -> str:
    """The text a code cell printed or returned."""
    return "".join(
        str(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
        for output in cell.get("outputs", [])
    )


def outputs(notebook: Any) -> str:
    return "".join(shown(cell) for cell in notebook.cells if cell.cell_type == "code")


def check_passed(notebook: Any) -> str:
    (check,) = tagged(notebook, "check")
    assert check == len(notebook.cells) - 2, "the check is the last code cell, before a summary"
    return shown(notebook.cells[check])


def without_key_step(notebook: Any, replacement: str | None = None) -> Any:
    """The notebook with its key step left out (or replaced by `replacement`)."""
    skipped = copy.deepcopy(notebook)
    (key,) = tagged(skipped, "key-step")
    if replacement is None:
        del skipped.cells[key]
    else:
        skipped.cells[key].source = replacement
    return skipped


def assert_check_fails(notebook: Any, folder: Path, message: str) -> None:
    """Running `notebook` fails in its check cell (no earlier), with `message`."""
    with pytest.raises(CellExecutionError) as failed:
        run(notebook, folder)
    errors = [n for n, c in enumerate(notebook.cells) if _errored(c)]
    assert errors == tagged(notebook, "check"), (errors, str(failed.value)[-2000:])
    assert failed.value.ename == "AssertionError"
    assert message in str(failed.value), str(failed.value)[-2000:]


def _errored(cell: Any) -> bool:
    return any(o.get("output_type") == "error" for o in cell.get("outputs", []))


# -- 07 safety --------------------------------------------------------------------------------
@BUBBLEWRAP
@pytest.mark.parametrize("allow", [False, True])
def test_safety_notebook_shows_each_guard_and_catches_the_tampered_journal(
    tmp_path: Path, allow: bool
) -> None:
    notebook = load("07-safety.ipynb")
    if allow:  # the learner's other answer to the question
        (decision,) = [c for c in notebook.cells if "ALLOW = False" in c.source]
        decision.source = decision.source.replace("ALLOW = False", "ALLOW = True")
    run(notebook, tmp_path)
    assert "All checks passed" in check_passed(notebook)
    text = outputs(notebook)
    assert "aws_secret_access_key = FAKE-SECRET" in text  # the host can read it
    assert "cat: ../home/.aws/credentials: No such file or directory" in text  # the agent cannot
    assert "read  deny by policy: ../home/.aws/credentials is outside the repository" in text
    assert "edit  deny by policy: AGENTS.md is a protected file" in text
    assert "edit  ASKS YOU: README.md is outside the scope (shop/)" in text
    assert re.search(r"audit verify: ok \(\d+ events", text)
    forged = "'deny'" if allow else "'allow'"
    match = re.search(rf"line (\d+): the human's answer now says {forged}", text)
    assert match, text
    assert f"audit verify: line {match[1]}: content does not match its hash" in text
    shop = Path(text.split("repository: ", 1)[1].split()[0])
    assert ("10% off" in (shop / "README.md").read_text()) == allow


@BUBBLEWRAP
def test_safety_check_fails_when_the_journal_is_not_tampered_with(tmp_path: Path) -> None:
    assert_check_fails(
        without_key_step(load("07-safety.ipynb")),
        tmp_path,
        "audit verify found nothing wrong: run the cell under 'Tamper with it'",
    )


# -- 05 breaking a problem down ---------------------------------------------------------------
def test_breaking_down_check_passes_on_the_plan_and_its_integration(tmp_path: Path) -> None:
    notebook = load("05-breaking-a-problem-down.ipynb")
    run(notebook, tmp_path)
    assert "All checks passed: planned, reviewed, run as a graph, integrated." in check_passed(
        notebook
    )
    assert "exit code after the integration: 0" in outputs(notebook)


def test_breaking_down_check_fails_when_the_plan_is_not_integrated(tmp_path: Path) -> None:
    assert_check_fails(
        without_key_step(load("05-breaking-a-problem-down.ipynb")),
        tmp_path,
        "not integrated: approve it (`%delegate approve p",
    )


# -- 06 parallel attempts ---------------------------------------------------------------------
@pytest.mark.parametrize("keep", [None, 2])
def test_attempts_notebook_ranks_three_and_keeps_the_chosen_one(
    tmp_path: Path, keep: int | None
) -> None:
    notebook = load("06-parallel-attempts.ipynb")
    if keep is not None:  # the learner's other choice: the bigger fix with its test
        (decision,) = [c for c in notebook.cells if c.source.startswith("KEEP = ")]
        decision.source = f"KEEP = {keep}\n" + decision.source.split("\n", 1)[1]
    run(notebook, tmp_path)
    kept = keep or 1
    assert f"All checks passed: attempt {kept} kept" in check_passed(notebook)
    text = outputs(notebook)
    ranking = text.split("rank  attempt", 1)[1].splitlines()[1:4]
    assert [line.split()[1:4] for line in ranking] == [
        ["1", "claude-sonnet-4-6", "1/1"],
        ["2", "claude-opus-4-6", "1/1"],
        ["3", "claude-haiku-4-5", "0/1"],
    ]
    assert "AssertionError: 190.0 != 180.0" in text  # the failing attempt's check, shown
    assert "+    def test_percent_outside_0_to_100_is_refused(self):" in text  # diff(1, 2)
    assert "exit code after keeping one: 0" in text
    states = re.findall(r"attempt (\d) \(\w+\): (\w+)", text)
    assert states == [(str(n), "merged" if n == kept else "rejected") for n in (1, 2, 3)]


def test_attempts_check_fails_when_no_attempt_is_kept(tmp_path: Path) -> None:
    assert_check_fails(
        without_key_step(load("06-parallel-attempts.ipynb")),
        tmp_path,
        "No attempt was kept: run the cell under 'Keep one'",
    )


def test_conversations_of_one_goal_are_told_apart_by_model() -> None:
    from jupyter_delegate.testing import ScenarioError, load_scenario

    scenario = load_scenario("attempts")
    goal = "Fix the discount calculation in shop/cart.py."

    def answering(model: str) -> str:
        body = {"model": model, "messages": [{"role": "user", "content": goal}]}
        found = scenario.conversation_for(body)
        return found.name if found else ""

    assert [answering(m) for m in ("claude-sonnet-4-6", "claude-opus-4-6")] == ["sonnet", "opus"]
    with pytest.raises(ScenarioError, match="no conversation matches this request"):
        answering("claude-other")
    same = {"match": "x", "turns": [{"text": "hi"}]}
    with pytest.raises(ScenarioError, match="can never be chosen"):
        load_scenario({"name": "s", "conversations": [same, {**same, "model": "m"}]})
    load_scenario({"name": "s", "conversations": [{**same, "model": "m"}, same]})  # fine


# -- 08 away from the notebook ----------------------------------------------------------------
ANSWER_AT_THE_NOTEBOOK = """import jupyter_delegate as jd

jd.get_task("away").answer(question["request_id"], allow=ALLOW)"""


@pytest.mark.parametrize("allow", [True, False])
def test_away_notebook_notifies_answers_from_the_phone_and_hands_off(
    tmp_path: Path, allow: bool
) -> None:
    notebook = load("08-away-from-the-notebook.ipynb")
    if not allow:
        (decision,) = [c for c in notebook.cells if c.source.startswith("ALLOW = True")]
        decision.source = decision.source.replace("ALLOW = True", "ALLOW = False")
    run(notebook, tmp_path)
    assert "All checks passed: notified, answered from the phone" in check_passed(notebook)
    text = outputs(notebook)
    assert '"event": "question"' in text and '"tool": "edit"' in text  # the notice, shown
    assert "'via': 'server'" in text  # the journal names the phone's route
    assert f"answer: {'allow' if allow else 'deny'} from:" in text
    assert ("+    def test_quarter_off(self):" in text) == allow
    assert re.search(r"Received task \w+ from .*away\.task into .*laptop-shop \(review\)", text)
    assert re.search(r"Approved task \w+: main is now at", text)
    assert re.search(r"audit verify: ok \(\d+ events", text)
    assert "exit code on the laptop after approving: 0" in text
    assert "server stopped: True" in text


def test_away_check_fails_when_the_answer_is_given_at_the_notebook(tmp_path: Path) -> None:
    assert_check_fails(
        without_key_step(load("08-away-from-the-notebook.ipynb"), ANSWER_AT_THE_NOTEBOOK),
        tmp_path,
        "not the phone: answer through the server",
    )


# -- 00 the index -----------------------------------------------------------------------------
def index_links() -> list[str]:
    """The notebooks the index's text links to, in order of first appearance."""
    text = "".join(c.source for c in load("00-index.ipynb").cells if c.cell_type == "markdown")
    return list(dict.fromkeys(re.findall(r"\]\(([^)\s]+)\)", text)))


def test_index_links_resolve_to_notebooks_01_to_08_and_its_check_passes(tmp_path: Path) -> None:
    links = index_links()
    assert [link[:2] for link in links] == ["01", "02", "03", "04", "05", "06", "07", "08"]
    missing = [link for link in links if not (NOTEBOOKS / link).is_file()]
    assert not missing, missing
    notebook = load("00-index.ipynb")
    run(notebook, NOTEBOOKS)  # where its relative links are read from
    assert "All checks passed: 8 notebooks" in check_passed(notebook)
    # each row says how long its notebook runs, as measured
    table = next(c.source for c in notebook.cells if c.source.startswith("| # |"))
    rows = [line for line in table.splitlines() if re.match(r"\| \d \|", line)]
    assert len(rows) == 8 and all(re.search(r"\| \d+ s \|$", r) for r in rows)


def test_index_check_fails_naming_a_notebook_that_is_not_there(tmp_path: Path) -> None:
    for link in index_links():  # a copy of the folder without notebook 07
        if not link.startswith("07"):
            (tmp_path / link).write_bytes((NOTEBOOKS / link).read_bytes())
    (tmp_path / "00-index.ipynb").write_bytes((NOTEBOOKS / "00-index.ipynb").read_bytes())
    assert_check_fails(load("00-index.ipynb"), tmp_path, "['07-safety.ipynb']. Fix the link")
