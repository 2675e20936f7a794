"""The %delegate magics through IPython's shell: cells become tasks, decisions are made by
name, bad cells fail the cell with a clear DelegateError, and records are restored."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import nbformat
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from conftest import CHECK, FIX_TURNS, FIXED, Factory, messages_sent
from jupyter_delegate import TaskState
from jupyter_delegate.errors import DelegateError, OutcomeError, RepoError
from jupyter_delegate.notebook.header import EARLY_MIME
from jupyter_delegate.notebook.magics import DelegateMagics, MagicUsageError, restore
from jupyter_delegate.notebook.record import MIME, RECORD_LIMIT, bundle, compact_record


@pytest.fixture
def shell(make_manager: Factory) -> Iterator[tuple[InteractiveShell, Any]]:
    ip = InteractiveShell.instance()
    manager, fake = make_manager()
    ip.register_magics(DelegateMagics(ip, manager=manager))
    yield ip, fake
    InteractiveShell.clear_instance()


def cell(ip: InteractiveShell, line: str, body: str) -> Any:
    with capture_output() as captured:
        ip.run_cell_magic("delegate", line, body)
    return captured


def magic(ip: InteractiveShell, line: str) -> Any:
    return ip.run_line_magic("delegate", line)


BODY = "Make add() add.\ncheck: {check}\nscope: calc.py\n"


def test_cell_to_merge_by_name(shell: tuple, repo: git.Repo) -> None:  # type: ignore[type-arg]
    ip, _ = shell
    ip.user_ns["check"] = CHECK
    captured = cell(ip, f"--repo {repo.working_dir} --name fix --max-steps 9", BODY)
    records = [o.data[MIME] for o in captured.outputs if MIME in o.data]
    assert records and records[0]["name"] == "fix" and records[0]["id"]
    # The early header first (header.py), then the live view, then the record.
    early, view, record = captured.outputs[:3]
    marks = early.data[EARLY_MIME]
    assert marks["task"] == records[0]["id"] and abs(marks["at"] - time.time()) < 60
    html = early.data["text/html"]
    assert f'class="jd-early" data-task="{records[0]["id"]}"' in html
    assert '<div class="jd-header">' in html and "<b>fix</b>" in html
    assert early.transient["display_id"]
    assert "application/vnd.jupyter.widget-view+json" in view.data and MIME in record.data
    assert magic(ip, "wait fix") == {"fix": "review"}
    task = ip.magics_manager.registry["DelegateMagics"].manager.get("fix")
    assert task.outcome.checks == (CHECK,) and task.outcome.scope == ("calc.py",)
    assert task.outcome.budget.max_steps == 9
    assert [row["state"] for row in magic(ip, "list")] == ["review"]
    commit = magic(ip, "approve fix")
    assert task.state == TaskState.MERGED and repo.head.commit.hexsha == commit
    assert (Path(repo.working_dir) / "calc.py").read_text() == FIXED


def test_rerunning_the_cell_reattaches_and_new_starts_another(
    shell: tuple,
    repo: git.Repo,  # type: ignore[type-arg]
) -> None:
    ip, fake = shell
    ip.user_ns["check"] = CHECK
    line = f"--repo {repo.working_dir} --name fix"
    cell(ip, line, BODY)
    magic(ip, "wait all")
    requests = len(messages_sent(fake))
    cell(ip, line, BODY)  # "Run All" again
    manager = ip.magics_manager.registry["DelegateMagics"].manager
    assert len(manager.tasks()) == 1 and len(messages_sent(fake)) == requests
    cell(ip, line + " --new", BODY)
    assert len(manager.tasks()) == 2


def test_line_form_and_interpolation_escapes(shell: tuple, repo: git.Repo) -> None:  # type: ignore[type-arg]
    ip, _ = shell
    ip.user_ns["fn"] = "add"
    cell(ip, f"--repo {repo.working_dir}", "Make {fn}() add; keep {{braces}}.\ncheck: true")
    manager = ip.magics_manager.registry["DelegateMagics"].manager
    assert manager.tasks()[0].outcome.goal == "Make add() add; keep {braces}."
    with capture_output():
        magic(ip, f"Fix it in one line --repo {repo.working_dir} --name one")
    assert manager.get("one").outcome.goal == "Fix it in one line"
    magic(ip, "wait all")


@pytest.mark.parametrize(
    ("line", "body", "error", "message"),
    [
        ("--repo {repo}", "check: pytest", OutcomeError, "states no goal"),
        ("--repo {repo}", "Do it\ncheck:", OutcomeError, "'check:' has nothing after it"),
        ("--repo {repo} --bogus", "Do it", MagicUsageError, "unknown option --bogus"),
        ("--repo {repo} --max-usd lots", "Do it", MagicUsageError, "invalid float value"),
        ("--repo {repo} --max-usd 0", "Do it", OutcomeError, "max_usd must be a positive"),
        ("--repo /no/such/repo", "Do it", RepoError, "does not exist"),
        ("--repo {repo}", "Use {undefined_var}", MagicUsageError, "names no notebook variable"),
        ("--repo {repo} stray words", "Do it", MagicUsageError, "unexpected words"),
    ],
)
def test_bad_cells_raise_a_delegate_error_and_start_nothing(
    shell: tuple,
    repo: git.Repo,
    line: str,
    body: str,
    error: type,
    message: str,  # type: ignore[type-arg]
) -> None:
    ip, fake = shell
    with pytest.raises(error, match=message):
        cell(ip, line.replace("{repo}", repo.working_dir), body)
    assert fake.requests == []
    assert not (Path(repo.git_dir) / "delegate" / "worktrees").exists()


def test_a_failing_magic_fails_the_cell(shell: tuple, repo: git.Repo) -> None:  # type: ignore[type-arg]
    ip, _ = shell
    result = ip.run_cell(f"%%delegate --repo {repo.working_dir}\ncheck: x\n")
    assert isinstance(result.error_in_exec, DelegateError)
    result = ip.run_cell("%delegate approve nosuchtask")
    assert isinstance(result.error_in_exec, DelegateError)


def test_checks_shows_each_check_with_its_whole_output_and_refuses_a_bad_number(
    shell: tuple,  # type: ignore[type-arg]
    repo: git.Repo,
) -> None:
    ip, _ = shell
    ip.user_ns["check"] = "seq 1 30; echo '<b>no</b>'; exit 1"
    cell(ip, f"--repo {repo.working_dir} --name fix", BODY)
    assert magic(ip, "wait fix") == {"fix": "review"}
    task = ip.magics_manager.registry["DelegateMagics"].manager.get("fix")
    shown = magic(ip, "checks fix")
    text = repr(shown)
    assert text.startswith(f"Task {task.id} (review): Make add() add.")
    assert "check 1 of 1: FAIL seq 1 30; echo '<b>no</b>'; exit 1 (exit 1," in text
    assert text.endswith("\n".join([*(str(n) for n in range(1, 31)), "<b>no</b>"]))
    page = shown._repr_html_()
    assert "&lt;b&gt;no&lt;/b&gt;" in page and "<b>no</b>" not in page and ">1\n2\n" in page
    assert repr(magic(ip, f"checks {task.id} 1")) == text
    with pytest.raises(DelegateError, match="has no check 2: it ran one check, number 1"):
        magic(ip, "checks fix 2")
    with pytest.raises(DelegateError, match="'all' is not a check number"):
        magic(ip, "checks fix all")
    with pytest.raises(MagicUsageError, match="required: ID"):
        magic(ip, "checks")
    with pytest.raises(MagicUsageError, match="unexpected '2 3'"):
        magic(ip, "checks fix 1 2 3")


def test_the_record_keeps_a_failing_checks_last_lines_within_16_kb(
    repo: git.Repo, make_manager: Factory
) -> None:
    from jupyter_delegate import Outcome

    turns = [
        {"tools": [{"write": {"file_path": "NOTES.md", "content": "later\n"}}]},
        {"tools": [{"finish": {"summary": "done"}}]},
    ]
    one = make_manager(turns)[0].submit(
        Outcome("x", checks=("seq 1 3000; exit 1", "true", "python3 -c 'import not_here'")),
        repo=repo.working_dir,
    )
    one.wait(timeout=60)
    record = compact_record(one)
    failing, passing, missing = record["checks"]
    assert failing["failure_tail"] == "\n".join(str(n) for n in range(2986, 3001))
    assert not failing["passed"] and failing["exit_code"] == 1
    assert passing["failure_tail"] == "" and passing["passed"]
    assert failing["hint"] == "" and missing["hint"].startswith("`not_here` is not importable")
    assert "output_tail" not in failing and "log" not in failing  # no path of this machine
    plain, page = bundle(record)["text/plain"], bundle(record)["text/html"]
    assert "    | 3000" in plain and "2986\n" in page

    many = make_manager(turns)[0].submit(
        Outcome("x", checks=tuple(f"seq {i} 3000; exit 1" for i in range(20))),
        repo=repo.working_dir,
    )
    many.wait(timeout=120)
    record = compact_record(many)
    assert len(json.dumps(record)) <= RECORD_LIMIT
    assert all(c["failure_tail"].endswith("2999\n3000") for c in record["checks"])


def test_help_is_real() -> None:
    doc = DelegateMagics.delegate.__doc__ or ""
    for word in (
        "check: CMD",
        "scope:",
        "approve ID",
        "--force",
        "wait ID|all",
        "restore",
        "--new",
    ):
        assert word in doc


def test_record_stays_under_16_kb_for_a_long_run(repo: git.Repo, make_manager: Factory) -> None:
    long_text = "word " * 4000
    turns = [{"text": long_text, "tools": [{"bash": {"command": "echo hi"}}]}] * 30
    turns = [*turns, {"tools": [{"finish": {"summary": long_text}}]}]
    manager, _ = make_manager(turns)
    from jupyter_delegate import Budget, Outcome, prefer

    for i in range(40):
        prefer(f"preference {i} " + "p" * 480)
    outcome = Outcome(
        "x" * 5000,
        checks=tuple(f"echo {i} {'c' * 400}" for i in range(25)),
        budget=Budget(max_usd=100),
    )
    task = manager.submit(outcome, repo=repo.working_dir)
    task.wait(timeout=60)
    record = compact_record(task, name="long")
    assert len(json.dumps(record)) <= RECORD_LIMIT
    assert record["state"] == "review" and record["usage"]["steps"] == 31
    assert record["preferences"] and record["preferences_count"] == 40


def test_restore_reattaches_tasks_recorded_in_a_saved_notebook(
    repo: git.Repo, make_manager: Factory, tmp_path: Path
) -> None:
    from jupyter_delegate import Outcome

    manager, _ = make_manager()
    task = manager.submit(Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir)
    task.wait(timeout=60)
    notebook = nbformat.v4.new_notebook()
    output = nbformat.v4.new_output(
        "display_data", data={MIME: compact_record(task), "text/plain": "task"}
    )
    notebook.cells.append(nbformat.v4.new_code_cell("%%delegate\nx", outputs=[output]))
    path = tmp_path / "saved.ipynb"
    nbformat.write(notebook, path)
    before = path.read_bytes()

    fresh, _ = make_manager(FIX_TURNS)
    (restored,) = restore(fresh, path)
    assert restored is not task and restored.id == task.id
    assert restored.state == TaskState.REVIEW and restored.checks_passed
    assert path.read_bytes() == before  # read, never written
    restored.approve()
    assert (Path(repo.working_dir) / "calc.py").read_text() == FIXED


@pytest.mark.parametrize("how", ["JPY_SESSION_NAME", "__vsc_ipynb_file__"])
def test_load_ext_restores_the_notebook_the_front_end_named(
    repo: git.Repo,
    make_manager: Factory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    from jupyter_delegate import Outcome, load_ipython_extension

    manager, _ = make_manager()
    task = manager.submit(Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir)
    task.wait(timeout=60)
    output = nbformat.v4.new_output("display_data", data={MIME: compact_record(task)})
    path = tmp_path / "named.ipynb"
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x", outputs=[output])])
    nbformat.write(notebook, path)
    ip = InteractiveShell.instance()
    try:
        if how == "JPY_SESSION_NAME":
            monkeypatch.setenv("JPY_SESSION_NAME", str(path))
        else:
            monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
            ip.user_ns["__vsc_ipynb_file__"] = str(path)
        load_ipython_extension(ip)
        rows = {row["id"]: row["state"] for row in ip.run_line_magic("delegate", "list")}
        assert rows[task.id] == "review"
    finally:
        InteractiveShell.clear_instance()


def test_approve_of_unproven_work_fails_the_cell_and_force_merges_it(
    shell: tuple,  # type: ignore[type-arg]
    repo: git.Repo,
) -> None:
    from jupyter_delegate.errors import ReviewError

    ip, _ = shell
    cell(ip, f"--repo {repo.working_dir} --name failing", "Make add() add.\ncheck: false\n")
    assert magic(ip, "wait failing") == {"failing": "review"}
    base = repo.head.commit.hexsha
    result = ip.run_cell("%delegate approve failing")
    assert isinstance(result.error_in_exec, ReviewError)
    assert "check `false` failed (exit 1)" in str(result.error_in_exec)
    assert "%delegate approve" in str(result.error_in_exec) and "--force" in str(
        result.error_in_exec
    )
    assert repo.head.commit.hexsha == base
    with pytest.raises(MagicUsageError, match=r"unknown option --forse\. Did you mean --force\?"):
        magic(ip, "approve failing --forse")
    commit = magic(ip, "approve failing --force")
    task = ip.magics_manager.registry["DelegateMagics"].manager.get("failing")
    assert task.state == TaskState.MERGED and task.forced and repo.head.commit.hexsha == commit
    assert [(row["state"], row["forced"]) for row in magic(ip, "list")] == [("merged", True)]


# -- strict subcommands: what the magic does not know fails the cell ---------------------------
def one_red_line(ip: InteractiveShell, source: str) -> tuple[BaseException | None, str]:
    """Run a cell as a notebook does: the error it failed with, and what it showed."""
    with capture_output() as captured:
        result = ip.run_cell(source)
    return result.error_in_exec, captured.stdout + captured.stderr


@pytest.mark.parametrize(
    ("line", "unknown", "valid"),
    [
        ("approve fix --sqash", "--sqash", "--squash, --force"),
        ("reject fix --reson too big", "--reson", "--reason"),
        ("request-changes fix Rename it --remmeber", "--remmeber", "--remember"),
        ("cancel fix --force", "--force", "--repo"),
        ("resume fix --yes", "--yes", "--repo"),
        ("show fix --json", "--json", "--repo"),
        ("checks fix --all", "--all", "--repo"),
        ("wait fix --timout 3", "--timout", "--timeout"),
        ("prefer Use pathlib --rpo .", "--rpo", "--repo"),
        ("prefs --jsn", "--jsn", "--repo"),
        ("Fix the test --repo {repo} --scop src/", "--scop", "--scope, --constraint, --name"),
        ("--repo {repo} --constrain x\nFix the test", "--constrain", "--constraint"),
    ],
)
def test_each_unknown_magic_flag_fails_the_cell_with_the_valid_options(
    shell: tuple,  # type: ignore[type-arg]
    repo: git.Repo,
    line: str,
    unknown: str,
    valid: str,
) -> None:
    ip, fake = shell
    source = line.replace("{repo}", repo.working_dir)
    error, shown = one_red_line(ip, ("%%delegate " if "\n" in source else "%delegate ") + source)
    assert isinstance(error, MagicUsageError)
    assert f"unknown option {unknown}." in str(error) and valid in str(error)
    red = f"\x1b[0;31mMagicUsageError\x1b[0m: {error}"
    assert shown.strip().splitlines() == [red]  # one red line, no traceback
    assert fake.requests == []
    assert not (Path(repo.git_dir) / "delegate" / "worktrees").exists()


def test_a_misspelled_squash_merges_nothing_and_squash_squashes(
    shell: tuple,  # type: ignore[type-arg]
    repo: git.Repo,
) -> None:
    ip, _ = shell
    ip.user_ns["check"] = CHECK
    cell(ip, f"--repo {repo.working_dir} --name fix", BODY)
    assert magic(ip, "wait fix") == {"fix": "review"}
    base = repo.head.commit.hexsha
    with pytest.raises(MagicUsageError, match=r"unknown option --sqash\. Did you mean --squash\?"):
        magic(ip, "approve fix --sqash")
    task = ip.magics_manager.registry["DelegateMagics"].manager.get("fix")
    assert task.state == TaskState.REVIEW and repo.head.commit.hexsha == base
    commit = magic(ip, "approve fix --squash")
    assert task.state == TaskState.MERGED and repo.head.commit.hexsha == commit
    assert [p.hexsha for p in repo.head.commit.parents] == [base]  # one squashed commit


def test_reject_keeps_the_whole_reason(shell: tuple, repo: git.Repo) -> None:  # type: ignore[type-arg]
    from jupyter_delegate.journal import Journal

    ip, _ = shell
    ip.user_ns["check"] = CHECK
    for name in ("fix", "other"):
        cell(ip, f"--repo {repo.working_dir} --name {name} --new", BODY)
    magic(ip, "wait all")
    magic(ip, "reject fix too big")
    magic(ip, "reject other --reason not what I asked")
    manager = ip.magics_manager.registry["DelegateMagics"].manager
    for name, reason in (("fix", "too big"), ("other", "not what I asked")):
        task = manager.get(name)
        rejected = [e.data for e in Journal(task.journal_path).events() if e.type == "rejected"]
        assert task.state == TaskState.REJECTED and rejected[0]["reason"] == reason


def test_a_misspelled_remember_is_refused_not_sent_as_feedback(
    shell: tuple,  # type: ignore[type-arg]
    repo: git.Repo,
) -> None:
    from jupyter_delegate import preferences

    ip, fake = shell
    ip.user_ns["check"] = CHECK
    cell(ip, f"--repo {repo.working_dir} --name fix", BODY)
    assert magic(ip, "wait fix") == {"fix": "review"}
    sent = len(messages_sent(fake))
    with pytest.raises(
        MagicUsageError, match=r"unknown option --remmeber\. Did you mean --remember\?"
    ):
        magic(ip, "request-changes fix Add docstrings --remmeber")
    task = ip.magics_manager.registry["DelegateMagics"].manager.get("fix")
    assert task.state == TaskState.REVIEW and len(messages_sent(fake)) == sent
    assert preferences(repo.working_dir) == []


def test_pause_stops_a_running_task_at_the_step_boundary_and_resume_continues_it(
    make_manager: Factory, repo: git.Repo
) -> None:
    ip = InteractiveShell.instance()
    slow = {"tools": [{"bash": {"command": "sleep 4"}}]}  # it ends, then the task pauses
    manager, _ = make_manager([slow, *FIX_TURNS])
    ip.register_magics(DelegateMagics(ip, manager=manager))
    try:
        ip.user_ns["check"] = CHECK
        cell(ip, f"--repo {repo.working_dir} --name fix", BODY)
        task = manager.get("fix")
        deadline = time.monotonic() + 30
        while not task.usage.output_tokens and time.monotonic() < deadline:
            time.sleep(0.05)  # into the slow command
        magic(ip, "pause fix")
        assert magic(ip, "wait fix --timeout 30") == {"fix": "paused"}
        assert task.worktree is not None and task.worktree.exists()  # nothing archived
        magic(ip, "resume fix")
        assert magic(ip, "wait fix --timeout 60") == {"fix": "review"}
        assert task.checks[0].passed
    finally:
        InteractiveShell.clear_instance()


# -- the verdict: what a task in review amounts to, everywhere a state is shown ------------------
NO_CHANGE_TURNS = [{"tools": [{"finish": {"summary": "Nothing needed changing."}}]}]


@pytest.mark.parametrize(
    ("turns", "checks", "max_steps", "verdict"),
    [
        (FIX_TURNS, (CHECK,), 60, "proven"),
        (FIX_TURNS, ("false",), 60, "checks fail"),
        (FIX_TURNS, (CHECK,), 4, "stopped by budget"),
        (FIX_TURNS, (), 60, "no checks"),
        (NO_CHANGE_TURNS, ("true",), 60, "no changes"),
    ],
)
def test_each_verdict_is_shown_by_cli_record_view_and_board(
    repo: git.Repo,
    make_manager: Factory,
    turns: list[dict[str, Any]],
    checks: tuple[str, ...],
    max_steps: int,
    verdict: str,
) -> None:
    from jupyter_delegate import Budget, Outcome, cli
    from jupyter_delegate.notebook.header import header_html
    from jupyter_delegate.notebook.record import text_html, text_plain
    from jupyter_delegate.notebook.views import BoardRow, shown

    manager, _ = make_manager(turns)
    outcome = Outcome("Make add() add.", checks=checks, budget=Budget(max_steps=max_steps))
    task = manager.submit(outcome, repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert task.verdict == verdict
    assert cli.state_text(task) == f"review ({verdict})"
    record = compact_record(task)
    assert record["verdict"] == verdict
    assert f"[review · {verdict}]" in text_plain(record)
    assert f"review · {verdict}</span>" in text_html(record)
    assert f"review · {verdict}</span>" in header_html(task, "fix")
    row = BoardRow(task)
    approve = row.approve_button
    offered = shown(approve)
    if verdict == "proven":
        assert offered and approve.description == "Approve"
    elif verdict == "no changes":
        assert not offered  # nothing to merge: Reject only
    else:
        assert offered and approve.description == "Approve anyway…"
        approve.click()  # asks: nothing merged, Merge anyway offered
        assert task.state == TaskState.REVIEW and "Not proven" in row.error.value
        assert shown(row.force_button) and not shown(approve)
    assert shown(row.reject_button)
    row.close()


def test_approving_a_task_with_no_changes_is_refused_even_forced(
    repo: git.Repo, make_manager: Factory
) -> None:
    from jupyter_delegate import Outcome
    from jupyter_delegate.errors import ReviewError

    manager, _ = make_manager(NO_CHANGE_TURNS)
    task = manager.submit(Outcome("Make add() add.", checks=("true",)), repo=repo.working_dir)
    task.wait(timeout=60)
    base = repo.head.commit.hexsha
    for force in (False, True):
        with pytest.raises(ReviewError, match="nothing to merge") as refused:
            task.approve(force=force)
        assert "reject it" in str(refused.value) and "Nothing was merged" in str(refused.value)
    assert task.state == TaskState.REVIEW and repo.head.commit.hexsha == base
    task.reject()
    assert task.state == TaskState.REJECTED


def test_list_restore_and_wait_show_tables_not_dicts(
    shell: tuple,  # type: ignore[type-arg]
    repo: git.Repo,
) -> None:
    ip, _ = shell
    ip.user_ns["check"] = CHECK
    cell(ip, f"--repo {repo.working_dir} --name fix", BODY)
    for line in ("wait fix", "list"):
        with capture_output() as captured:
            ip.run_cell(f"%delegate {line}")
        text = captured.stdout.replace("Out[0]:", "").strip().splitlines()
        assert text[0].split() == ["id", "name", "state", "cost", "title"]
        assert text[1].split()[1:4] == ["fix", "review", "(proven)"] and "{" not in captured.stdout
    listed = magic(ip, "list")
    assert "<table" in listed._repr_html_() and "review · proven" in listed._repr_html_()


@pytest.mark.parametrize(
    ("source", "kind", "says"),
    [
        ("%delegate Fix it --repo {repo} --max-usd two", MagicUsageError, "invalid float value"),
        ("%delegate Fix it --repo {repo}/missing", RepoError, "missing"),
        ("%delegate approve fix", DelegateError, "already merged"),
    ],
)
def test_mistakes_show_one_red_line(
    shell: tuple,  # type: ignore[type-arg]
    repo: git.Repo,
    source: str,
    kind: type[BaseException],
    says: str,
) -> None:
    ip, _ = shell
    ip.user_ns["check"] = CHECK
    cell(ip, f"--repo {repo.working_dir} --name fix", BODY)
    magic(ip, "wait fix")
    magic(ip, "approve fix")
    error, shown = one_red_line(ip, source.replace("{repo}", repo.working_dir))
    assert isinstance(error, kind) and says in str(error)
    red = f"\x1b[0;31m{type(error).__name__}\x1b[0m: {error}"
    assert shown.strip().splitlines() == [red]  # one red line, no traceback
