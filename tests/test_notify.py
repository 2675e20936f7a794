"""Notifications away from the notebook (notify.py): a loopback receiver gets one
well-formed POST per event (a question, the review with its verdict) in each format
(json, ntfy, slack); a receiver that fails is retried with backoff and the failure is
journaled; a receiver that hangs does not hold the task; the command gets the notice on
stdin; secrets never leave; a malformed `[notify]` is refused at submit."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import git
import pytest

from conftest import Factory, until
from jupyter_delegate.errors import NotifyConfigError
from jupyter_delegate.home import user_dir
from jupyter_delegate.notify import Notifier, notify_settings
from jupyter_delegate.outcome import Outcome
from jupyter_delegate.policy import Policy

ASK_BASH = Policy.from_rules(ask=["Bash"])
TOKEN = "ghp_" + "Zq8xW2vN4rT6yU1iO3pA5sD7fG9hJ0kL2mNb"  # token-like: never sent
ASKING = [
    {"text": "Listing.", "tools": [{"bash": {"command": "ls"}}]},
    {"tools": [{"finish": {"summary": "Listed the files."}}]},
]
FINISHING = [{"tools": [{"finish": {"summary": "Nothing to do."}}]}]


@dataclass
class Receiver:
    """A webhook receiver on 127.0.0.1: records each POST (path, JSON body), answers
    `status`, or, with `hang`, holds every request until `release` is set."""

    status: int = 200
    hang: bool = False
    posts: list[tuple[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    url: str = ""

    def bodies(self, path: str) -> list[Any]:
        return [body for at, body in list(self.posts) if at == path]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    got = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            raw = self.rfile.read(length)
            got.posts.append((self.path, json.loads(raw)))
            if got.hang:
                got.release.wait(60)
            self.send_response(got.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    got.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield got
    finally:
        got.release.set()
        server.shutdown()
        server.server_close()


def configure(text: str) -> Path:
    path = user_dir() / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def outcome() -> Outcome:
    return Outcome("List the files.", checks=("true",))


def test_one_well_formed_post_per_event_in_each_format(
    make_manager: Factory, repo: git.Repo, receiver: Receiver
) -> None:
    configure(
        "[notify]\n"
        f'webhooks = ["{receiver.url}/plain", {{url = "{receiver.url}/ntfy/my-topic", '
        f'format = "ntfy"}}, {{url = "{receiver.url}/slack", format = "slack"}}]\n'
        'link_base = "https://box.example:8888/"\n'
    )
    manager, _ = make_manager(ASKING)
    task = manager.submit(outcome(), repo=repo.working_dir, policy=ASK_BASH, name="lister")
    assert task.wait(60) == "waiting"
    until(lambda: len(receiver.posts) == 3, 30, "the question's three POSTs")
    (question,) = receiver.bodies("/plain")
    request = manager.pending(task)[0]
    assert question["event"] == "question" and question["state"] == "waiting"
    assert question["task_id"] == task.id and question["name"] == "lister"
    assert question["repo"] == str(task.repo)
    assert question["question"] == {
        "request_id": request.request_id,
        "tool": "bash",
        "command": "ls",
        "reason": request.reason,
    }
    assert question["link"] == f"https://box.example:8888/delegate/#{task.id}"
    (ntfy,) = receiver.bodies("/ntfy/")  # ntfy's JSON publishing: the topic in the body
    assert ntfy["topic"] == "my-topic"
    assert ntfy["title"] == f"Task {task.id} asks to run bash: lister"
    assert ntfy["message"].startswith("bash: ls (")
    assert ntfy["click"] == question["link"]
    assert ntfy["actions"] == [{"action": "view", "label": "Open", "url": question["link"]}]
    (slack,) = receiver.bodies("/slack")
    assert list(slack) == ["text"] and f"Task {task.id} asks to run bash" in slack["text"]

    task.answer(request.request_id, True)
    assert task.wait(60) == "review"
    until(lambda: len(receiver.posts) == 6, 30, "the review's three POSTs")
    review = receiver.bodies("/plain")[1]
    assert review["event"] == "review" and review["verdict"] == "no changes"
    assert review["question"] is None
    assert "ready for review (no changes)" in receiver.bodies("/slack")[1]["text"]
    assert receiver.bodies("/ntfy/")[1]["tags"] == ["eyes"]


def test_a_failing_receiver_is_retried_then_the_journal_says_so(
    make_manager: Factory, repo: git.Repo, receiver: Receiver
) -> None:
    receiver.status = 500
    configure(f'[notify]\nwebhooks = ["{receiver.url}/hook?token=s3cret-in-the-url"]\n')
    manager, _ = make_manager(FINISHING)
    manager.notifier = Notifier(backoff=(0.05, 0.1, 0.2))
    task = manager.submit(outcome(), repo=repo.working_dir)
    assert task.wait(60) == "review"

    def noted() -> list[dict[str, Any]]:
        manager.refresh(task)
        lines = task.journal_path.read_text().splitlines()
        return [e["data"] for e in map(json.loads, lines) if e["type"] == "notify_failed"]

    until(noted, 30, "the failed delivery journaled")
    assert len(receiver.posts) == 4  # the first try and three retries
    assert noted() == [
        {
            "event": "review",
            "target": "webhook 127.0.0.1 (json)",
            "error": "HTTP 500 Internal Server Error",
            "attempts": 4,
        }
    ]
    assert "s3cret-in-the-url" not in task.journal_path.read_text()
    flag = "a notification (review) did not reach webhook 127.0.0.1 (json): HTTP 500"
    # The line is on disk a moment before the task folds it (on the delivery's thread).
    until(lambda: any(f.startswith(flag) for f in task.flags), 10, "the review's flag")


def test_a_hanging_receiver_does_not_hold_the_task(
    make_manager: Factory, repo: git.Repo, receiver: Receiver
) -> None:
    receiver.hang = True
    configure(f'[notify]\nwebhooks = ["{receiver.url}/hook"]\ntimeout_s = 60\n')
    manager, _ = make_manager(ASKING)
    task = manager.submit(outcome(), repo=repo.working_dir, policy=ASK_BASH)
    assert task.wait(60) == "waiting"
    until(lambda: receiver.posts, 30, "the question's POST")
    task.answer(manager.pending(task)[0].request_id, True)
    assert task.wait(60) == "review"
    assert not receiver.release.is_set()  # the question's POST still hangs
    receiver.release.set()
    until(lambda: len(receiver.posts) == 2, 30, "the review's POST")
    assert [body["event"] for _, body in receiver.posts] == ["question", "review"]


def test_the_command_gets_the_notice_on_stdin(
    make_manager: Factory, repo: git.Repo, tmp_path: Path
) -> None:
    out = tmp_path / "notices"
    out.mkdir()
    script = tmp_path / "keep.py"
    script.write_text(
        "import json, pathlib, sys\n"
        "notice = json.load(sys.stdin)\n"
        f"pathlib.Path({str(out)!r}, notice['event'] + '.json').write_text(json.dumps(notice))\n"
    )
    configure(f"[notify]\ncommand = \"{sys.executable} '{script}'\"\n")
    manager, _ = make_manager(FINISHING)
    task = manager.submit(outcome(), repo=repo.working_dir, name="quiet")
    assert task.wait(60) == "review"
    until(lambda: (out / "review.json").exists(), 30, "the command's notice")
    notice = json.loads((out / "review.json").read_text())
    assert notice["event"] == "review" and notice["task_id"] == task.id
    assert notice["name"] == "quiet" and notice["verdict"] == "no changes"
    assert notice["link"] is None  # no link_base: no link


def test_secrets_never_reach_the_receiver_or_the_command(
    make_manager: Factory,
    repo: git.Repo,
    receiver: Receiver,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SHOP_API_KEY", "pa55-from-the-env-0123")
    stdin = tmp_path / "stdin.json"
    script = tmp_path / "keep.py"
    script.write_text(f"import sys\nopen({str(stdin)!r}, 'a').write(sys.stdin.read())\n")
    configure(
        "[notify]\n"
        f'webhooks = ["{receiver.url}/plain", {{url = "{receiver.url}/t/x", format = "ntfy"}}, '
        f'{{url = "{receiver.url}/slack", format = "slack"}}]\n'
        f"command = \"{sys.executable} '{script}'\"\n"
    )
    command = f"curl -H 'Authorization: token {TOKEN}' -u me:pa55-from-the-env-0123 https://x"
    turns = [
        {"tools": [{"bash": {"command": command}}]},
        {"tools": [{"finish": {"summary": "Gave up."}}]},
    ]
    manager, _ = make_manager(turns)
    task = manager.submit(outcome(), repo=repo.working_dir, policy=ASK_BASH)
    assert task.wait(60) == "waiting"
    until(lambda: len(receiver.posts) == 3 and stdin.exists(), 30, "the question's notices")
    task.answer(manager.pending(task)[0].request_id, False)
    assert task.wait(60) == "review"
    sent = json.dumps(receiver.posts) + stdin.read_text()
    assert "curl -H" in sent  # the question is told...
    assert TOKEN not in sent and "pa55-from-the-env-0123" not in sent  # ...its secrets not


@pytest.mark.parametrize(
    ("config", "says"),
    [
        ('[notify]\nwebhooks = ["ftp://example.com/x"]\n', "url must be an http(s) URL"),
        (
            '[notify]\nwebhooks = [{url = "https://x.example", format = "teams"}]\n',
            "format must be one of json, ntfy, slack, not 'teams'",
        ),
        ('[notify]\nwebhook = ["https://x.example"]\n', "unknown key(s) in [notify]: webhook"),
        ('[notify]\ncommand = ""\n', "[notify] command must be a command line"),
        ('[notify]\nlink_base = "box:8888"\n', "link_base must be your Jupyter server's"),
        ("[notify]\ntimeout_s = 0\n", "timeout_s must be a number of seconds above 0"),
    ],
)
def test_a_malformed_notify_table_is_refused_at_submit(
    make_manager: Factory, repo: git.Repo, config: str, says: str
) -> None:
    path = configure(config)
    with pytest.raises(NotifyConfigError) as refused:
        notify_settings()
    assert str(refused.value).startswith(f"{path}: ") and says in str(refused.value)
    assert "\n" not in str(refused.value)
    manager, _ = make_manager(FINISHING)
    with pytest.raises(NotifyConfigError):
        manager.submit(outcome(), repo=repo.working_dir)
    assert manager.tasks() == []  # nothing created
