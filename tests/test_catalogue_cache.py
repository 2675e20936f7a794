"""The catalogue's answers kept on disk (`cache/models.json` in the user's delegate
folder): a fresh process submits a model already described without importing the SDK on
its thread or asking the endpoint; an old or corrupt file, another key, an unknown id and
the built-in table's answers all still go to the endpoint (or are never kept). Through the
real SDK against the fake served on loopback, as a kernel's manager talks to an endpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import git
import pytest
from test_models import OPUS, SMALL, NoCatalogue

from conftest import CHECK, FIX_TURNS, SANDBOX
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate.engine.catalogue import (
    FROM_API,
    FROM_TABLE,
    ModelInfo,
    keep_description,
    store_path,
    stored_description,
)
from jupyter_delegate.engine.model import Endpoint
from jupyter_delegate.errors import ModelConfigError
from jupyter_delegate.journal import Journal
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario

KEY = "sk-ant-cache-test-key"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    """The endpoint of every manager made without a client: its catalogue serves SMALL
    and OPUS."""
    scenario = {"name": "cache", "turns": FIX_TURNS, "models": [SMALL, OPUS]}
    with FakeServer(FakeMessagesAPI(load_scenario(scenario))) as running:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", running.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        yield running


def models_asked(server: FakeServer) -> int:
    return [r.kind for r in server.fake.requests].count("models")


def submit_and_finish(repo: git.Repo, model: str | None = None, name: str | None = None) -> Any:
    """A fresh manager (its own engine loop and client: nothing known in memory) submits."""
    task = TaskManager(sandbox=SANDBOX).submit(
        Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir, model=model, name=name
    )
    assert task.wait(timeout=60) == TaskState.REVIEW
    return task


def journaled_info(task: Any) -> dict[str, Any]:
    opening = next(iter(Journal(task.journal_path).events()))
    return dict(opening.data["model_info"])


def stored() -> dict[str, Any]:
    return dict(json.loads(store_path().read_text()))


def test_a_fresh_manager_submits_a_described_model_from_disk_without_asking(
    repo: git.Repo, server: FakeServer
) -> None:
    first = submit_and_finish(repo)
    assert models_asked(server) == 1
    text = store_path().read_text()
    assert KEY not in text  # a hash of the key names the endpoint, never the key
    (answers,) = stored()["answers"].values()
    assert answers["claude-sonnet-4-6"]["info"] == journaled_info(first)
    second = submit_and_finish(repo, name="second")
    assert models_asked(server) == 1
    # the same limits, the same journal entry, either way
    assert journaled_info(second) == journaled_info(first)
    assert second.model_info == first.model_info and first.model_info is not None
    assert (first.model_info.source, first.model_info.max_input_tokens) == (FROM_API, 100_000)
    assert second.compact_at == 60_000  # 60% of the catalogue's 100k window, not the table's


CHILD = """
import json, sys, threading
importers = []

class Watch:  # who imports the SDK first (later imports never reach a finder)
    def find_spec(self, name, path=None, target=None):
        if name == "anthropic":
            importers.append(threading.current_thread().name)
        return None

sys.meta_path.insert(0, Watch())
from jupyter_delegate import Outcome
from jupyter_delegate.manager import TaskManager

task = TaskManager(sandbox=sys.argv[3]).submit(
    Outcome("Make add() add.", checks=(sys.argv[2],)), repo=sys.argv[1]
)
state = task.wait(timeout=60)
print(json.dumps({"importers": importers, "state": str(state), "id": task.id}))
"""


def test_a_new_process_submits_without_importing_the_sdk_on_its_thread(
    repo: git.Repo, server: FakeServer
) -> None:
    first = submit_and_finish(repo)
    assert models_asked(server) == 1
    done = subprocess.run(
        [sys.executable, "-c", CHILD, repo.working_dir, CHECK, SANDBOX],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
    )
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout.splitlines()[-1])
    assert child["state"] == str(TaskState.REVIEW)
    # submit answered from disk: the SDK came in only for the round, on the engine thread
    assert child["importers"] == ["jupyter-delegate-engine"]
    assert models_asked(server) == 1
    task = TaskManager().get(child["id"], repo.working_dir)
    assert journaled_info(task) == journaled_info(first)


def test_an_answer_older_than_a_day_is_asked_again_and_renewed(
    repo: git.Repo, server: FakeServer
) -> None:
    submit_and_finish(repo)
    store = stored()
    (answers,) = store["answers"].values()
    old = datetime.now(UTC) - timedelta(hours=25)
    answers["claude-sonnet-4-6"]["learned"] = old.isoformat(timespec="seconds")
    store_path().write_text(json.dumps(store))
    submit_and_finish(repo, name="again")
    assert models_asked(server) == 2
    (answers,) = stored()["answers"].values()
    learned = datetime.fromisoformat(answers["claude-sonnet-4-6"]["learned"])
    assert datetime.now(UTC) - learned < timedelta(minutes=5)


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"\xff\xfe", b"[1, 2]", b'{"format": 1, "answers": {"x": []}}'],
    ids=["truncated", "empty", "not-utf8", "a-list", "malformed-entries"],
)
def test_a_corrupt_file_is_ignored_asked_again_and_rewritten(
    repo: git.Repo, server: FakeServer, content: bytes
) -> None:
    store_path().parent.mkdir(parents=True, exist_ok=True)
    store_path().write_bytes(content)
    task = submit_and_finish(repo)
    assert models_asked(server) == 1
    (answers,) = (v for k, v in stored()["answers"].items() if k != "x")
    assert answers["claude-sonnet-4-6"]["info"] == journaled_info(task)


def test_an_unknown_id_still_fails_the_submit_listing_the_served_ids(
    repo: git.Repo, server: FakeServer
) -> None:
    submit_and_finish(repo)  # the disk knows claude-sonnet-4-6 now
    with pytest.raises(ModelConfigError) as refused:
        TaskManager(sandbox=SANDBOX).submit(
            Outcome("Make add() add."), repo=repo.working_dir, model="claude-nope-1"
        )
    assert "the endpoint serves claude-sonnet-4-6, claude-opus-4-8" in str(refused.value)
    (answers,) = stored()["answers"].values()
    assert set(answers) == {"claude-sonnet-4-6"}


def test_another_key_on_the_same_endpoint_asks_for_itself(
    repo: git.Repo, server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    submit_and_finish(repo)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-another-organisation")
    submit_and_finish(repo, name="theirs")
    assert models_asked(server) == 2
    assert len(stored()["answers"]) == 2


def test_the_built_in_tables_answer_is_never_kept(
    repo: git.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    with FakeServer(NoCatalogue(load_scenario({"name": "proxy", "turns": FIX_TURNS}))) as proxy:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", proxy.url)
        task = submit_and_finish(repo)
        assert task.model_info is not None and task.model_info.source == FROM_TABLE
        assert not store_path().exists()
        submit_and_finish(repo, name="again")  # asked again, as before: nothing kept
        assert proxy.fake.asked.count("/v1/models/claude-sonnet-4-6") == 2  # type: ignore[attr-defined]
    table = ModelInfo("claude-sonnet-4-6", 200_000, 64_000)  # keep_description's own guard
    keep_description(Endpoint("http://127.0.0.1:9", KEY), table)
    assert not store_path().exists()


def test_a_client_passed_to_the_manager_neither_reads_nor_writes_the_disk(
    repo: git.Repo, make_manager: Any
) -> None:
    manager, _ = make_manager()  # in-process fakes share one base URL: never kept
    task = manager.submit(Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert not store_path().exists()


def test_writers_at_once_keep_every_answer_and_the_file_whole() -> None:
    endpoint = Endpoint("http://127.0.0.1:9", KEY)
    models = [f"claude-sonnet-{n}" for n in range(12)]
    start = threading.Barrier(len(models))

    def write(model: str) -> None:
        start.wait()
        keep_description(endpoint, ModelInfo(model, 100_000, 8_000, source=FROM_API))

    threads = [threading.Thread(target=write, args=(m,)) for m in models]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for model in models:
        found = stored_description(endpoint, model)
        assert found is not None and (found.id, found.source) == (model, FROM_API)
    assert [p.name for p in store_path().parent.iterdir() if p.name.endswith(".tmp")] == []
