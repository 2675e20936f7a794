"""Shared fixtures: small real git repositories, and managers wired to the scripted fake
Messages API through the real SDK (in-process transport)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import git
import pytest
from browser import lab_server, node_modules  # noqa: F401 (fixtures of the browser tests)

from jupyter_delegate.manager import TaskManager
from jupyter_delegate.sandbox import probe
from jupyter_delegate.testing import FakeMessagesAPI, load_scenario
from jupyter_delegate.testing.fake_anthropic import RecordedRequest

CALC = "def add(a, b):\n    return a - b\n"
FIXED = "def add(a, b):\n    return a + b\n"
TEST = (
    "import unittest\nfrom calc import add\n\n\n"
    "class T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n"
)
CHECK = "python3 -m unittest -q test_calc"
SANDBOX = "auto" if probe().available else "none"


def commit_all(repo: git.Repo, message: str) -> str:
    repo.git.add("-A")
    repo.git.commit("-q", "-m", message)
    return str(repo.head.commit.hexsha)


@pytest.fixture(autouse=True)
def _isolated_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    for key in ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    config = tmp_path_factory.mktemp("config") / "gitconfig"
    config.write_text("[user]\n\tname = Test User\n\temail = t@example.com\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(config))
    # The user's own skills, preferences and config never reach a test.
    monkeypatch.setenv("JUPYTER_DELEGATE_HOME", str(config.parent / "delegate-home"))


@pytest.fixture
def outside_tmp() -> Iterator[Path]:
    """A folder outside /tmp (under /var/tmp), for a user's repository or home that the
    sandbox's private /tmp must not be what hides."""
    path = Path(tempfile.mkdtemp(prefix="jd-test-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def repo(tmp_path: Path) -> git.Repo:
    """A repo on branch main with a real bug (add subtracts) and a failing test."""
    path = tmp_path / "proj"
    path.mkdir()
    r = git.Repo.init(path, initial_branch="main")
    (path / "calc.py").write_text(CALC)
    (path / "test_calc.py").write_text(TEST)
    (path / "README.md").write_text("# proj\n")
    commit_all(r, "init")
    return r


@pytest.fixture
def user_repo(outside_tmp: Path) -> git.Repo:
    """The user's repository (outside /tmp: the sandbox has a private one), with the bug."""
    path = outside_tmp / "proj"
    path.mkdir()
    r = git.Repo.init(path, initial_branch="main")
    (path / "calc.py").write_text(CALC)
    (path / "test_calc.py").write_text(TEST)
    commit_all(r, "init")
    return r


FIX_TURNS: list[dict[str, Any]] = [
    {"text": "Running the test first.", "tools": [{"bash": {"command": CHECK}}]},
    {"tools": [{"read": {"file_path": "calc.py"}}]},
    {
        "text": "The operator is wrong.",
        "tools": [{"edit": {"file_path": "calc.py", "old_string": "a - b", "new_string": "a + b"}}],
    },
    {"tools": [{"bash": {"command": CHECK}}]},
    {"tools": [{"finish": {"summary": "add() subtracted; it now adds."}}]},
]


Factory = Callable[..., tuple[TaskManager, FakeMessagesAPI]]


@pytest.fixture
def make_manager() -> Iterator[Factory]:
    def make(turns: Any = None, **fake_kw: Any) -> tuple[TaskManager, FakeMessagesAPI]:
        scenario = turns if callable(turns) else {"name": "t", "turns": turns or FIX_TURNS}
        fake = FakeMessagesAPI(load_scenario(scenario), **fake_kw)
        return TaskManager(client=fake.async_client(max_retries=2), sandbox=SANDBOX), fake

    yield make


def run_check(path: Path) -> int:
    return subprocess.run(CHECK.split(), cwd=path, capture_output=True).returncode


def marker_alive(marker: str) -> bool:
    """Whether any process has `marker` in its command line."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "cmdline").read_bytes():
                return True
        except OSError:
            continue
    return False


def marker_gone(marker: str, within: float = 10) -> bool:
    """Whether every process with `marker` in its command line is gone within `within`
    seconds. The kernel kills a sandbox's processes when its pid namespace's first process
    dies: at once, though on a loaded machine the dying can take a moment to show."""
    deadline = time.monotonic() + within
    while marker_alive(marker):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def messages_sent(fake: FakeMessagesAPI) -> list[RecordedRequest]:
    """The Messages API requests the fake received, in order: not the Models API's (a
    submit asks it what the model can do first)."""
    return [request for request in fake.requests if request.kind != "models"]


def until(predicate: Callable[[], object], timeout: float = 60, what: str = "") -> None:
    """Wait for `predicate` to hold (polling every 20 ms); fail saying `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        time.sleep(0.02)
