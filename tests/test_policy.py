"""Permission rules, and asks answered through the API and the CLI."""

from __future__ import annotations

import time
from pathlib import Path

import git
import pytest

from conftest import CHECK, FIX_TURNS, SANDBOX, Factory, messages_sent
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate.errors import ReviewError
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.policy import Policy, PolicyError
from jupyter_delegate.testing import FakeMessagesAPI, load_scenario


def _asking(make_manager: Factory, repo: git.Repo, **kw):  # type: ignore[no-untyped-def]
    manager, fake = make_manager(**kw)
    policy = Policy.from_rules(ask=["Bash"])
    task = manager.submit(Outcome("Fix", checks=(CHECK,)), repo=repo.working_dir, policy=policy)
    return manager, fake, task


def test_ask_waits_then_allow_with_remember_stops_asking(
    repo: git.Repo, make_manager: Factory
) -> None:
    _, _, task = _asking(make_manager, repo)
    assert task.wait(timeout=30) == TaskState.WAITING
    (request,) = task.pending()
    assert request.tool == "bash" and request.input == {"command": CHECK}
    task.answer(request.request_id, True, remember=True)
    assert task.wait(timeout=30) == TaskState.REVIEW  # the second bash was not asked
    assert task.checks_passed
    decisions = [e.data for e in _events(task) if e.type == "permission" and "decision" in e.data]
    assert [(d["decision"], d["by"], d["remember"]) for d in decisions] == [
        ("allow", "human", True)
    ]


def test_ask_answered_deny_returns_a_denial_to_the_model(
    repo: git.Repo, make_manager: Factory
) -> None:
    _, fake, task = _asking(make_manager, repo)
    task.wait(timeout=30)
    task.answer(task.pending()[0].request_id, False)
    assert task.wait(timeout=30) in (TaskState.WAITING, TaskState.REVIEW)
    result = messages_sent(fake)[1].body["messages"][-1]["content"][0]
    assert result["is_error"] and result["content"] == "Denied by the user."
    assert any(f.startswith("denied: bash") and "by human" in f for f in task.flags)
    with pytest.raises(ReviewError, match="no pending question 'nope'"):
        task.answer("nope", True)


def test_ask_never_answered_is_denied_after_the_timeout(repo: git.Repo) -> None:
    fake = FakeMessagesAPI(load_scenario({"name": "t", "turns": [FIX_TURNS[0], FIX_TURNS[-1]]}))
    manager = TaskManager(client=fake.async_client(), sandbox=SANDBOX, ask_timeout_s=0.3)
    policy = Policy.from_rules(ask=["Bash"])
    started = time.monotonic()
    task = manager.submit(Outcome("Fix"), repo=repo.working_dir, policy=policy)
    while task.state != TaskState.REVIEW and time.monotonic() - started < 30:
        time.sleep(0.05)
    result = messages_sent(fake)[1].body["messages"][-1]["content"][0]
    assert "nobody answered within 0.3 s" in result["content"]


def test_deny_rule_refuses_without_asking(repo: git.Repo, make_manager: Factory) -> None:
    manager, fake = make_manager()
    policy = Policy.from_rules(deny=["Edit(calc.py)"])
    task = manager.submit(Outcome("Fix", checks=(CHECK,)), repo=repo.working_dir, policy=policy)
    assert task.wait(timeout=30) == TaskState.REVIEW
    assert not task.checks_passed  # the edit never happened
    result = messages_sent(fake)[3].body["messages"][-1]["content"][0]
    expected = "Denied by the user's permission rules (rule edit(calc.py) matches calc.py)"
    assert expected in result["content"]


def _events(task):  # type: ignore[no-untyped-def]
    from jupyter_delegate.journal import Journal

    return list(Journal(task.journal_path).events())


def test_realpath_answers_as_os_realpath(tmp_path: Path) -> None:
    import os

    from jupyter_delegate.policy import realpath, resolve

    root = tmp_path / "wt"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "pkg" / "a.py").write_text("x")
    (root / "up").symlink_to("..")
    (root / "src" / "rel").symlink_to("pkg/a.py")
    (root / "abs").symlink_to(root / "src")
    (root / "chain").symlink_to("abs")
    (root / "dangling").symlink_to("nowhere/else")
    (root / "loop1").symlink_to("loop2")
    (root / "loop2").symlink_to("loop1")
    (tmp_path / "outside.txt").write_text("y")
    (root / "escape").symlink_to(tmp_path / "outside.txt")
    paths = [
        "src/pkg/a.py",
        "src/rel",
        "abs/pkg/../pkg/a.py",
        "chain/rel",
        "up/outside.txt",
        "escape",
        "src/pkg/",
        "src/pkg/a.py/",
        "src/pkg/new.py",
        "new/dir/file",
        "dangling",
        "dangling/x",
        "loop1",
        "loop1/x",
        ".",
        "..",
        "src/./pkg//a.py",
    ]
    for path in paths:
        full = os.path.join(str(root), path)
        assert realpath(full) == os.path.realpath(full), path
    assert realpath(str(root / "abs")) == str(root / "src")
    # resolve: the path inside the worktree, as pathlib would say it, or None outside
    for path in [*paths, str(root / "src/pkg/a.py"), str(tmp_path / "outside.txt"), "/"]:
        real = Path(os.path.realpath(os.path.join(str(root), path)))
        try:
            expected: str | None = real.relative_to(root).as_posix()
        except ValueError:
            expected = None
        assert resolve(root, path) == expected, path
    assert resolve(root, "up/wt/src") == "src" and resolve(root, "escape") is None


# -- scope: one rule for the policy and the review ---------------------------------------------
@pytest.mark.parametrize(
    ("entry", "path", "inside"),
    [
        ("src/*.py", "src/a.py", True),
        ("src/*.py", "src/sub/a.py", False),
        ("src/*.py", "src/a.txt", False),
        ("src/**", "src/sub/a.py", True),
        ("src/**", "srcx/a.py", False),
        ("**/x.py", "x.py", True),
        ("**/x.py", "a/b/x.py", True),
        ("**/x.py", "a/b/y.py", False),
        ("docs/", "docs/guide/a.md", True),
        ("docs", "docs/a.md", True),
        ("docs/", "docsx/a.md", False),
        ("docs/", "shop/docs/a.md", False),  # entries start at the repository root
        ("calc.py", "calc.py", True),
        ("calc.py", "shop/calc.py", False),
        ("*.md", "README.md", True),
        ("*.md", "docs/a.md", False),
        ("./src", "src/a.py", True),
        ("Src/", "src/a.py", True),  # case: a case-insensitive disk has one file
        ("src/*.PY", "SRC/A.py", True),
        ("src/a.py", "SRC/A.PY", True),
    ],
)
def test_each_scope_form_is_read_the_same_by_the_policy_and_the_review(
    entry: str, path: str, inside: bool
) -> None:
    from types import SimpleNamespace

    from jupyter_delegate.notebook.views import review_flags

    outcome = Outcome("Change what is in scope.", scope=(entry,))
    asked = Policy().decide("write", {"file_path": path}, scope=outcome.scope)
    review = review_flags(SimpleNamespace(flags=[], outcome=outcome), [path])  # type: ignore[arg-type]
    assert outcome.in_scope(path) is inside
    assert asked.action == ("allow" if inside else "ask"), asked.reason
    assert review == ([] if inside else [f"outside the scope: {path}"])


def test_without_a_scope_every_path_is_in_it() -> None:
    from types import SimpleNamespace

    from jupyter_delegate.notebook.views import review_flags

    outcome = Outcome("Anything goes.")
    assert outcome.in_scope("any/where.py")
    assert Policy().decide("write", {"file_path": "any/where.py"}).action == "allow"
    assert review_flags(SimpleNamespace(flags=[], outcome=outcome), ["any/where.py"]) == []  # type: ignore[arg-type]


def test_a_call_that_reads_config_once_reads_each_file_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A submit reads the user's and the repository's config for several tables: within
    one (`reads_config_once`) each file is read once, and a caller changing what it was
    given changes nothing the next reader sees; outside one, every read sees the file."""
    from jupyter_delegate.policy import read_toml, reads_config_once

    path = tmp_path / "config.toml"
    path.write_text('[model]\neffort = "low"\n')
    opened: list[Path] = []
    real = Path.read_text

    def read_text(self: Path, *args: object, **kwargs: object) -> str:
        opened.append(self)
        return real(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "read_text", read_text)

    @reads_config_once
    def submit() -> list[object]:
        first = read_toml(path)
        first["model"]["effort"] = "changed by a caller"
        path.write_text('[model]\neffort = "high"\n')  # the file changes mid-call
        return [read_toml(path), read_toml(tmp_path / "missing.toml")]

    second, missing = submit()
    assert second == {"model": {"effort": "low"}} and missing == {}
    assert opened == [path, tmp_path / "missing.toml"]
    assert read_toml(path) == {"model": {"effort": "high"}}  # outside: read as it is
    path.write_text("[model\n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        submit()
