"""Done is proven on real project layouts: the checks test the agent's committed code, in
the user's environment, as the user's shell would run them.

Each test makes a small real package on the fly (src layout, `pyproject.toml`), installs
it editable with pip from the local files into a real virtualenv (no index: loopback
only), and has the scripted agent change it. The user's repository and venvs live
outside /tmp (the sandbox's private /tmp would hide them and make a check fail, or an
attack pass, for the wrong reason).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import git
import pytest

from conftest import SANDBOX, Factory, commit_all, messages_sent
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate.cli import main
from jupyter_delegate.notebook.record import compact_record
from jupyter_delegate.notebook.views import checks_html
from jupyter_delegate.sandbox import probe

BROKEN = 'def ordinal(n):\n    return f"{n}th"\n'
needs_bwrap = pytest.mark.skipif(not probe().available, reason="bubblewrap cannot run here")
TIERS = pytest.mark.parametrize("tier", [pytest.param("auto", marks=needs_bwrap), "none"])

INIT = '''from ._version import __version__ as __version__


def ordinal(n):
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st."""
    if 10 <= n % 100 <= 20:
        return f"{n}th"
    return f"{n}" + {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
'''
TEST = """import unittest

import humanize


class Ordinal(unittest.TestCase):
    def test_ordinal(self):
        self.assertEqual([humanize.ordinal(n) for n in (1, 2, 3, 4, 11, 21)],
                         ["1st", "2nd", "3rd", "4th", "11th", "21st"])

    def test_imports_the_code_under_test(self):
        print("imported from", humanize.__file__)
"""
PYPROJECT = """[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "humanize-mini"
version = "0.1.0"

[tool.setuptools.packages.find]
where = ["src"]
"""
CHECK = "python -m unittest discover -s tests -v"


def make_project(
    root: Path, *, venv_inside: bool = False, layout: str = "src"
) -> tuple[git.Repo, Path]:
    """A package with a generated, git-ignored `_version.py`, and a venv (outside the
    repo, or `.venv` inside it, ignored) where it is installed editable. Layout "src"
    (setuptools writes a `.pth` naming src/) or "flat" (an `__editable__` finder)."""
    repo_dir = root / "humanize"
    package = repo_dir / "src" / "humanize" if layout == "src" else repo_dir / "humanize"
    package.mkdir(parents=True)
    (repo_dir / "tests").mkdir()
    (package / "__init__.py").write_text(INIT)
    (package / "_version.py").write_text('__version__ = "0.1.0"\n')
    (repo_dir / "tests" / "test_ordinal.py").write_text(TEST)
    pyproject = PYPROJECT if layout == "src" else PYPROJECT.split("[tool")[0]
    if layout == "flat":
        pyproject += '[tool.setuptools]\npackages = ["humanize"]\n'
    (repo_dir / "pyproject.toml").write_text(pyproject)
    version_file = package.relative_to(repo_dir).as_posix() + "/_version.py"
    (repo_dir / ".gitignore").write_text(
        f"{version_file}\n.venv/\n*.egg-info/\n__pycache__/\nbuild/\n"
    )
    repo = git.Repo.init(repo_dir, initial_branch="main")
    commit_all(repo, "init")
    venv = repo_dir / ".venv" if venv_inside else root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # Offline: no index and no build isolation, so the build backend (setuptools with
    # its own bdist_wheel) comes from the test environment, only for this install.
    build_env = {**os.environ, "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-index",
            "--no-build-isolation",
            "-e",
            str(repo_dir),
        ],
        check=True,
        capture_output=True,
        env=build_env,
    )
    return repo, venv


def on_path(monkeypatch: pytest.MonkeyPatch, venv: Path) -> None:
    """The venv activated in the user's shell: first on PATH, VIRTUAL_ENV set."""
    monkeypatch.setenv("PATH", f"{venv / 'bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("VIRTUAL_ENV", str(venv))


INIT_PATH = {"src": "src/humanize/__init__.py", "flat": "humanize/__init__.py"}


def edit(old: str, new: str, layout: str = "src") -> dict[str, Any]:
    """An edit of the package's `__init__.py`, wherever the layout puts it."""
    path = INIT_PATH[layout]
    return {"tools": [{"edit": {"file_path": path, "old_string": old, "new_string": new}}]}


def finish(summary: str = "done") -> dict[str, Any]:
    return {"tools": [{"finish": {"summary": summary}}]}


def break_ordinal(layout: str) -> dict[str, Any]:
    return edit(
        '        return f"{n}th"\n    return', '        return f"{n}th"\n    return "0" or', layout
    )


def run_task(make_manager: Factory, repo: git.Repo, turns: list[dict[str, Any]], **kw: Any):  # type: ignore[no-untyped-def]
    manager, fake = make_manager(turns)
    checks = kw.pop("checks", (CHECK,))
    task = manager.submit(
        Outcome("Change ordinal.", checks=tuple(checks)),
        repo=repo.working_dir,
        sandbox=kw.pop("tier", SANDBOX),
        **kw,
    )
    assert task.wait(timeout=120) == TaskState.REVIEW, task.error
    return task, fake


def user_suite(repo: git.Repo, venv: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(venv / "bin" / "python"), "-m", "unittest", "discover", "-s", "tests"],
        cwd=repo.working_dir,
        capture_output=True,
        text=True,
    )


@TIERS
@pytest.mark.parametrize("layout", ["src", "flat"])
def test_a_broken_function_fails_its_check_in_an_editable_install(
    outside_tmp: Path,
    make_manager: Factory,
    monkeypatch: pytest.MonkeyPatch,
    tier: str,
    layout: str,
) -> None:
    repo, venv = make_project(outside_tmp, layout=layout)
    on_path(monkeypatch, venv)
    assert user_suite(repo, venv).returncode == 0  # the user's checkout passes
    task, _ = run_task(
        make_manager, repo, [break_ordinal(layout), finish("ordinal simplified")], tier=tier
    )
    (check,) = task.checks
    assert not check.passed, check.output_tail
    assert "FAIL: test_ordinal" in check.output_tail
    # The check imported the agent's code, seen where the user's checkout is (sandboxed),
    # or from the worktree itself (unsandboxed, its editable install pointed there).
    imported = next(line for line in check.output_tail.splitlines() if "imported from" in line)
    if task.sandbox == "bubblewrap":
        assert imported.startswith(f"imported from {repo.working_dir}/"), imported
    else:
        assert "/delegate/checks/" in imported, imported
    assert not task.checks_passed
    assert user_suite(repo, venv).returncode == 0  # nothing of the agent's reached the user


@TIERS
def test_a_fix_passes_its_check_and_approve_merges_it(
    outside_tmp: Path, make_manager: Factory, monkeypatch: pytest.MonkeyPatch, tier: str
) -> None:
    repo, venv = make_project(outside_tmp)
    on_path(monkeypatch, venv)
    init = Path(repo.working_dir, INIT_PATH["src"])
    init.write_text(init.read_text().replace("10 <= n % 100 <= 20", "n > 10"))
    commit_all(repo, "a bug: 21 -> 21th")
    assert user_suite(repo, venv).returncode != 0
    task, _ = run_task(
        make_manager, repo, [edit("n > 10", "10 <= n % 100 <= 20"), finish("fixed")], tier=tier
    )
    assert [c.passed for c in task.checks] == [True], task.checks[0].output_tail
    task.approve()
    assert task.state == TaskState.MERGED
    assert user_suite(repo, venv).returncode == 0


@TIERS
def test_a_venv_inside_the_repo_and_a_generated_version_file_need_no_declaration(
    outside_tmp: Path, make_manager: Factory, tier: str
) -> None:
    repo, _ = make_project(outside_tmp, venv_inside=True)
    task, _ = run_task(
        make_manager,
        repo,
        [finish("nothing to change")],
        checks=[".venv/bin/python -m unittest discover -s tests -v"],
        tier=tier,
    )
    (check,) = task.checks
    assert check.passed, check.output_tail
    ran_with = task.check_environment["items"]
    assert {"path": ".venv", "kind": "virtualenv", "how": "read-only"} in ran_with
    assert (
        "checks ran with: .venv (read-only), src/humanize/_version.py (copied)"
        in compact_record(task)["ran_with"]
    )
    assert {"path": "src/humanize/_version.py", "kind": "generated", "how": "copied"} in ran_with
    # nothing of the environment lands in the task's commit
    changed = repo.git.diff("--name-only", task.base_commit, task.head_commit)
    assert changed == ""


def test_a_check_that_writes_a_report_leaves_nothing_in_the_commit(
    repo: git.Repo, make_manager: Factory
) -> None:
    turns = [
        {
            "tools": [
                {"write": {"file_path": "calc.py", "content": "def add(a, b):\n    return a + b\n"}}
            ]
        },
        finish(),
    ]
    task, _ = run_task(
        make_manager,
        repo,
        turns,
        checks=[
            "python3 -m unittest -q test_calc && echo '<testsuite/>' > report.xml "
            "&& mkdir -p .coverage-data && touch .coverage-data/x"
        ],
    )
    assert [c.passed for c in task.checks] == [True], task.checks[0].output_tail
    files = repo.git.show("--name-only", "--format=", task.head_commit).split()
    assert files == ["calc.py"]
    assert task.worktree is not None and not (task.worktree / "report.xml").exists()
    task.approve()
    assert not Path(repo.working_dir, "report.xml").exists()
    assert "Ran 1 test" in Path(task.checks[0].log).read_text()


def test_a_submodule_the_check_needs_is_checked_out(
    outside_tmp: Path, make_manager: Factory
) -> None:
    lib_dir = outside_tmp / "lib"
    lib_dir.mkdir()
    lib = git.Repo.init(lib_dir, initial_branch="main")
    (lib_dir / "libmod.py").write_text("ANSWER = 42\n")
    commit_all(lib, "lib")
    app_dir = outside_tmp / "app"
    app_dir.mkdir()
    app = git.Repo.init(app_dir, initial_branch="main")
    (app_dir / "main.py").write_text(
        "import sys\nsys.path.insert(0, 'vendor/lib')\nimport libmod\n"
    )
    app.git.execute(
        [
            "git",
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            str(lib_dir),
            "vendor/lib",
        ]
    )
    commit_all(app, "app with a submodule")
    check = "python3 -c 'import main, libmod; assert libmod.ANSWER == 42; print(\"ok\")'"
    task, _ = run_task(make_manager, app, [finish()], checks=[check])
    assert [c.passed for c in task.checks] == [True], task.checks[0].output_tail
    assert task.worktree is not None
    assert (task.worktree / "vendor" / "lib" / "libmod.py").read_text() == "ANSWER = 42\n"
    assert app.git.diff("--name-only", task.base_commit, task.head_commit) == ""


def test_declared_variables_reach_the_check_and_credentials_never_do(
    repo: git.Repo, make_manager: Factory, outside_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Path(repo.working_dir, ".jupyter-delegate.toml").write_text(
        '[environment]\npass_env = ["PYTHONPATH", "DEPLOY_TOKEN"]\n'
    )
    commit_all(repo, "config")
    (outside_tmp / "extra").mkdir()
    (outside_tmp / "extra" / "helper_mod.py").write_text("VALUE = 'from PYTHONPATH'\n")
    monkeypatch.setenv("PYTHONPATH", str(outside_tmp / "extra"))
    monkeypatch.setenv("DEPLOY_TOKEN", "tok-1234567890")
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "site.settings")
    check = (
        'python3 -c \'import os; print(sorted(k for k in os.environ if "TOKEN" in k));'
        ' print(os.environ.get("PYTHONPATH")); print(os.environ.get("MODE"))\' && env'
    )
    task, _ = run_task(
        make_manager, repo, [finish()], checks=[check], env=["MODE=ci", "SECOND_TOKEN=x"]
    )
    (result,) = task.checks
    assert result.passed, result.output_tail
    lines = result.output_tail.splitlines()
    assert lines[:3] == ["[]", str(outside_tmp / "extra"), "ci"]
    assert "tok-1234567890" not in Path(result.log).read_text()
    ran_with = task.check_environment
    assert ran_with["withheld"] == ["DEPLOY_TOKEN", "SECOND_TOKEN"]
    assert "DJANGO_SETTINGS_MODULE" in ran_with["not_passed"]
    assert "PYTHONPATH" in ran_with["variables"] and "MODE" in ran_with["variables"]
    # the review says it, in the terminal and in the notebook
    out = io.StringIO()
    assert main(["show", task.id, "--repo", repo.working_dir], out=out) == 0
    shown = out.getvalue()
    assert "checks ran with: the task's files only" in shown
    assert "withheld as credentials: DEPLOY_TOKEN, SECOND_TOKEN" in shown
    assert "not passed: " in shown and "DJANGO_SETTINGS_MODULE" in shown
    assert "withheld as credentials: DEPLOY_TOKEN, SECOND_TOKEN" in checks_html(task)


def test_a_missing_module_is_named_as_an_environment_problem(
    outside_tmp: Path, make_manager: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, venv = make_project(outside_tmp)
    # The user's shell has the venv on PATH, but the check names the system python.
    on_path(monkeypatch, venv)
    task, _ = run_task(
        make_manager, repo, [finish()], checks=["/usr/bin/python3 -c 'import humanize'"]
    )
    (check,) = task.checks
    assert not check.passed
    assert "`humanize` is not importable in the checks' environment" in check.hint, check.hint


@needs_bwrap
def test_the_agent_sees_its_worktree_at_the_checkout_path_and_nothing_of_the_checkout(
    outside_tmp: Path, make_manager: Factory
) -> None:
    root = outside_tmp / "proj"
    root.mkdir()
    repo = git.Repo.init(root, initial_branch="main")
    (root / "calc.py").write_text("VERSION = 'base'\n")
    commit_all(repo, "init")
    (root / "calc.py").write_text("VERSION = 'the user is editing this'\n")  # uncommitted
    (root / ".env.local").write_text("API_KEY=user-only-value\n")  # untracked
    turns = [
        {"tools": [{"write": {"file_path": "calc.py", "content": "VERSION = 'agent'\n"}}]},
        {"tools": [{"bash": {"command": "pwd; cat calc.py; cat .env.local; git status --short"}}]},
        {"tools": [{"read": {"file_path": f"{root}/calc.py"}}]},
        finish(),
    ]
    _task, fake = run_task(make_manager, repo, turns, checks=["true"], tier="auto")
    results = [
        block
        for request in messages_sent(fake)[2:4]
        for block in request.body["messages"][-1]["content"]
        if block["type"] == "tool_result"
    ]
    bash, read = results[-2]["content"], results[-1]["content"]
    assert bash.startswith(f"exit code 0\n{root}\nVERSION = 'agent'\n"), bash
    assert "No such file or directory" in bash and "user-only-value" not in bash
    assert " M calc.py" in bash  # git works inside, on the task's own tree
    assert "VERSION = 'agent'" in str(read)
    assert (root / "calc.py").read_text() == "VERSION = 'the user is editing this'\n"
