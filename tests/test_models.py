"""Which model, and what it can do: the catalogue (the Models API, or the built-in table
when the endpoint has none), the model settings (call, environment, config), effort and
the compaction point, all through the real SDK and the scripted fake."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import git
import pytest

from conftest import CHECK, FIX_TURNS, SANDBOX, messages_sent
from jupyter_delegate import Outcome, TaskState, delegate
from jupyter_delegate.cli import main, print_review
from jupyter_delegate.engine.catalogue import FROM_API, FROM_TABLE
from jupyter_delegate.errors import ModelConfigError
from jupyter_delegate.home import user_dir
from jupyter_delegate.journal import Journal
from jupyter_delegate.manager import TaskManager
from jupyter_delegate.notebook.record import compact_record, text_plain
from jupyter_delegate.policy import PolicyError
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario
from jupyter_delegate.testing.fake_anthropic import Reply, error_reply
from jupyter_delegate.testing.validation import ApiError

SMALL = {  # a model with a 100k window, that compacts and thinks
    "id": "claude-sonnet-4-6",
    "max_input_tokens": 100_000,
    "max_tokens": 20_000,
    "compaction": True,
    "thinking": True,
}
PLAIN = {"id": "claude-haiku-4-5", "compaction": False, "thinking": False}  # no effort
OPUS = {"id": "claude-opus-4-8", "max_input_tokens": 200_000, "max_tokens": 64_000}


def catalogue(*models: Mapping[str, Any]) -> tuple[TaskManager, FakeMessagesAPI]:
    scenario = {"name": "models", "turns": FIX_TURNS, "models": [dict(m) for m in models]}
    fake = FakeMessagesAPI(load_scenario(scenario))
    return TaskManager(client=fake.async_client(), sandbox=SANDBOX), fake


def submit(manager: TaskManager, repo: git.Repo, **options: Any):  # type: ignore[no-untyped-def]
    return manager.submit(
        Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir, **options
    )


def nothing_created(repo: git.Repo) -> None:
    """No task folder, no journal, no worktree, no branch."""
    assert not (Path(repo.git_dir) / "delegate").exists()
    assert [h.name for h in repo.heads] == ["main"]
    assert len(repo.git.worktree("list").splitlines()) == 1


def write_config(text: str) -> None:
    user_dir().mkdir(parents=True, exist_ok=True)
    (user_dir() / "config.toml").write_text(text)


# -- the catalogue ----------------------------------------------------------------------------
def test_an_unknown_model_is_refused_before_anything_exists_listing_the_served_ids(
    repo: git.Repo,
) -> None:
    manager, fake = catalogue(SMALL, OPUS)
    with pytest.raises(ModelConfigError) as refused:
        submit(manager, repo, model="claude-nope-1")
    message = str(refused.value)
    assert "Unknown model 'claude-nope-1'" in message
    assert "the endpoint serves claude-sonnet-4-6, claude-opus-4-8" in message
    nothing_created(repo)
    assert {r.kind for r in fake.requests} == {"models"} and messages_sent(fake) == []


def test_the_catalogues_limits_are_journaled_and_kept_by_the_task_and_a_reload(
    repo: git.Repo,
) -> None:
    manager, fake = catalogue(SMALL)
    task = submit(manager, repo, effort="high", compact_at="50%")
    assert task.wait(timeout=60) == TaskState.REVIEW
    # What rounds.py hands the agent loop: the task's model_info, effort and compact_at.
    info = task.model_info
    assert info is not None and info.source == FROM_API
    assert (info.max_input_tokens, info.max_tokens, info.output_tokens) == (100_000, 20_000, 20_000)
    assert info.compaction and info.thinking and info.effort == ("low", "medium", "high", "max")
    assert (task.effort, task.compact_at) == ("high", 50_000)
    opening = next(iter(Journal(task.journal_path).events()))
    assert opening.type == "task"
    assert opening.data["model_info"] == info.to_dict()
    assert (opening.data["effort"], opening.data["compact_at"]) == ("high", 50_000)
    # another process (a new manager) reads the same from the journal
    again = TaskManager().get(task.id, repo.working_dir)
    assert (again.model_info, again.effort, again.compact_at) == (info, "high", 50_000)
    # asked once per client: a second task on the same endpoint uses the answer
    submit(manager, repo, name="second").wait(timeout=60)
    assert [r.kind for r in fake.requests].count("models") == 1


def test_the_catalogues_limits_reach_the_requests(repo: git.Repo) -> None:
    manager, fake = catalogue(SMALL)
    task = submit(manager, repo, compact_at="50%")
    assert task.wait(timeout=60) == TaskState.REVIEW
    first = messages_sent(fake)[0].body
    assert first["max_tokens"] == 20_000  # min(the model's max_tokens, 32000)
    edits = first["context_management"]["edits"]
    assert edits[0]["trigger"] == {"type": "input_tokens", "value": 50_000}


class NoCatalogue(FakeMessagesAPI):
    """An endpoint that serves the Messages API only (a proxy, say): the Models API's
    routes are not found there."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.asked: list[str] = []

    def reply(self, method: str, target: str, headers: Mapping[str, str], raw: bytes) -> Reply:
        if method == "GET":
            self.asked.append(target)
            return error_reply(
                ApiError(f"Not found: {target}", status=404, error_type="not_found_error")
            )
        return super().reply(method, target, headers, raw)


def test_without_a_catalogue_the_table_answers_and_the_review_and_card_say_so(
    repo: git.Repo,
) -> None:
    fake = NoCatalogue(load_scenario({"name": "proxy", "turns": FIX_TURNS}))
    manager = TaskManager(client=fake.async_client(), sandbox=SANDBOX)
    # a model id the price table does not name: its price is its family's, a guess
    task = submit(manager, repo, model="claude-sonnet-9")
    assert task.wait(timeout=60) == TaskState.REVIEW
    assert fake.asked[0] == "/v1/models/claude-sonnet-9" and fake.asked[1].startswith("/v1/models?")
    assert task.model_info is not None and task.model_info.source == FROM_TABLE
    assert task.compact_at == 120_000  # 60% of the table's 200k window
    out = io.StringIO()
    print_review(task, out)
    review = out.getvalue()
    assert "(price guessed from the model family) over 5 steps" in review
    assert (
        "  model: claude-sonnet-9: window 200,000 tokens, output 64,000 (32,000 a turn), "
        "compacted at 120,000 (server-side), effort: the model's default; limits from the "
        "built-in table\n"
    ) in review
    record = compact_record(task)
    assert record["price_guessed"] is True
    assert "(price guessed from the model family)" in text_plain(record)


def test_a_known_price_is_not_marked_as_guessed(repo: git.Repo) -> None:
    manager, _ = catalogue(SMALL)
    task = submit(manager, repo)
    assert task.wait(timeout=60) == TaskState.REVIEW
    out = io.StringIO()
    print_review(task, out)
    assert "guessed" not in out.getvalue() and not compact_record(task)["price_guessed"]
    assert "limits from the Models API" in out.getvalue()


# -- effort and the compaction point ------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message", "asked"),
    [
        (
            {"effort": "extreme"},
            "effort must be one of low, medium, high, max, not 'extreme'",
            False,
        ),
        (
            {"effort": "low", "model": "claude-haiku-4-5"},
            "Model claude-haiku-4-5 takes no effort setting (as the Models API says)",
            True,
        ),
        ({"compact_at": "lots"}, "compact_at is a number of input tokens (120000)", False),
        (
            {"compact_at": "150%"},
            "compact_at '150%' is 150000 tokens; it must be above 0 and "
            "below the window of claude-sonnet-4-6, 100000 input tokens",
            True,
        ),
        ({"compact_at": 100_000}, "below the window of claude-sonnet-4-6", True),
        ({"compact_at": "0"}, "is 0 tokens; it must be above 0", True),
    ],
)
def test_effort_and_compact_at_the_model_cannot_take_are_refused_before_anything_exists(
    repo: git.Repo, options: dict[str, Any], message: str, asked: bool
) -> None:
    manager, fake = catalogue(SMALL, PLAIN)
    with pytest.raises(ModelConfigError) as refused:
        submit(manager, repo, **options)
    assert message in str(refused.value)
    nothing_created(repo)
    assert messages_sent(fake) == [] and bool(fake.requests) == asked


def test_model_settings_come_from_the_call_the_environment_then_the_config(
    repo: git.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_config('[model]\ndefault = "claude-opus-4-8"\neffort = "max"\ncompact_at = "50%"\n')
    manager, _ = catalogue(SMALL, OPUS, PLAIN)
    task = submit(manager, repo)
    assert (task.model, task.effort, task.compact_at) == ("claude-opus-4-8", "max", 100_000)
    monkeypatch.setenv("JUPYTER_DELEGATE_MODEL", "claude-sonnet-4-6")
    task = submit(manager, repo, effort="low", compact_at=30_000)
    assert (task.model, task.effort, task.compact_at) == ("claude-sonnet-4-6", "low", 30_000)
    # a configured effort the model does not take is left out: the model's own default
    task = submit(manager, repo, model="claude-haiku-4-5")
    assert (task.effort, task.compact_at) == (None, 100_000)
    for other in manager.tasks():
        other.wait(timeout=60)


@pytest.mark.parametrize(
    ("config", "error", "message"),
    [
        ('[model]\neffort = "hard"\n', ModelConfigError, "[model] effort must be one of low"),
        ("[model]\ncompact_at = true\n", ModelConfigError, "[model] compact_at is a number"),
        ('[model]\nmodle = "x"\n', ModelConfigError, "in [model]: modle; known: default"),
        ('[model]\ndefault = ""\n', ModelConfigError, "[model] default must be a model id"),
        ("[model\n", PolicyError, "is not valid TOML"),
    ],
)
def test_a_malformed_model_config_is_refused_naming_the_file(
    repo: git.Repo, config: str, error: type[Exception], message: str
) -> None:
    write_config(config)
    manager, fake = catalogue(SMALL)
    with pytest.raises(error) as refused:
        submit(manager, repo)
    assert str(user_dir() / "config.toml") in str(refused.value)
    assert message in str(refused.value)
    assert fake.requests == []
    nothing_created(repo)


def test_delegate_takes_effort_and_compact_at(repo: git.Repo) -> None:
    manager, _ = catalogue(SMALL)
    task = delegate(
        "Make add() add.",
        repo=repo.working_dir,
        checks=[CHECK],
        effort="medium",
        compact_at="40000",
        manager=manager,
        sandbox=SANDBOX,
    )
    assert (task.effort, task.compact_at) == ("medium", 40_000)
    assert task.wait(timeout=60) == TaskState.REVIEW


# -- the command line ----------------------------------------------------------------------------
@pytest.fixture
def small_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    scenario = {"name": "cli", "turns": FIX_TURNS, "models": [SMALL]}
    with FakeServer(FakeMessagesAPI(load_scenario(scenario))) as running:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", running.url)
        yield running


def run(repo: git.Repo, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    argv = ["run", "Make add() add.", "--repo", repo.working_dir, "--check", CHECK]
    code = main([*argv, "--sandbox", SANDBOX, *extra], out=out)
    return code, out.getvalue()


def test_the_cli_refuses_an_unknown_model_in_one_line_with_exit_2(
    repo: git.Repo, small_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(repo, "--model", "claude-nope-1") == (2, "")
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("jupyter delegate run: Unknown model 'claude-nope-1': the endpoint ")
    assert "serves claude-sonnet-4-6." in err
    nothing_created(repo)


def test_the_cli_takes_effort_and_compact_at_and_the_review_says_them(
    repo: git.Repo, small_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, text = run(repo, "--effort", "high", "--compact-at", "60%")
    assert code == 0, text
    assert (
        "  model: claude-sonnet-4-6: window 100,000 tokens, output 20,000 (20,000 a turn), "
        "compacted at 60,000 (server-side), effort high; limits from the Models API\n"
    ) in text
    with pytest.raises(SystemExit) as bad:  # argparse's usage error
        run(repo, "--effort", "hard")
    assert bad.value.code == 2 and "'hard': effort is one of low, medium" in capsys.readouterr().err
    assert run(repo, "--compact-at", "100%")[0] == 2
    assert "below the window of claude-sonnet-4-6" in capsys.readouterr().err


# -- journals from before the catalogue --------------------------------------------------------
def test_a_journal_without_model_info_loads_with_the_table(repo: git.Repo) -> None:
    from test_events import FORMAT_1_ID, installed

    installed(repo)
    task = TaskManager().get(FORMAT_1_ID, repo.working_dir)
    assert task.state == TaskState.MERGED
    assert task.model_info is not None and task.model_info.source == FROM_TABLE
    assert (task.effort, task.compact_at) == (None, 120_000)
    assert task.model_text.endswith("limits from the built-in table")
    assert json.loads(json.dumps(task.to_record()))["price_guessed"] is False
