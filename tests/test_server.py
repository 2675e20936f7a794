"""The server extension in a real Jupyter server (pytest-jupyter: the server in this
process, requests over loopback): the REST API lists and shows the tasks of the
repositories under its roots, hides the others, refuses requests without the token or,
authenticated by cookie, without XSRF, and its decisions steer a task that runs in
another process (a kernel) through the control inbox, naming the server's user in the
journal and the review."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any

import git
import pytest
from jupyter_server.auth.identity import IdentityProvider, User
from test_control import Kernel, audit_ok, cli, kernel, served, submit_in  # noqa: F401
from tornado.httpclient import AsyncHTTPClient, HTTPResponse
from tornado.web import RequestHandler

from conftest import CALC, CHECK, FIX_TURNS, TEST, Factory, commit_all, until
from jupyter_delegate import Outcome, TaskState
from jupyter_delegate.journal import Journal
from jupyter_delegate.policy import Policy
from jupyter_delegate.server.board import find_repos

pytest_plugins = ["pytest_jupyter.jupyter_server"]

ROOT = Path(__file__).resolve().parent.parent
Fetch = Callable[..., Any]


def make_repo(path: Path) -> git.Repo:
    """A repository like conftest's `repo` (add() subtracts; its test fails) at `path`."""
    path.mkdir(parents=True)
    repo = git.Repo.init(path, initial_branch="main")
    (path / "calc.py").write_text(CALC)
    (path / "test_calc.py").write_text(TEST)
    commit_all(repo, "init")
    return repo


@pytest.fixture
def roots(tmp_path: Path) -> Path:
    """The folder the server shows tasks under; a repository two levels down in it."""
    return tmp_path / "work"


@pytest.fixture
def inside(roots: Path) -> git.Repo:
    return make_repo(roots / "team" / "shop")


class Alice(IdentityProvider):
    """The token's user is alice (by default each token request is a new anonymous user)."""

    def generate_anonymous_user(self, handler: RequestHandler) -> User:
        return User(username="alice", name="Alice")


@pytest.fixture
def jp_server_config(roots: Path) -> dict[str, Any]:
    return {
        "ServerApp": {
            "jpserver_extensions": {"jupyter_delegate": True},
            "identity_provider_class": Alice,
        },
        "DelegateServer": {"roots": [str(roots)]},
    }


async def api(fetch: Fetch, *parts: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    """(status, JSON) of a request to the API; a POST when `body` is given."""
    if body is not None:
        kw.update(method="POST", body=json.dumps(body))
    response = await fetch("delegate", "api", "tasks", *parts, raise_error=False, **kw)
    return response.code, json.loads(response.body or b"null")


def review_task(make_manager: Factory, repo: git.Repo) -> str:
    """A task run to review in this process (the fake model in process); its id."""
    manager, _ = make_manager()
    task = manager.submit(Outcome("Make add() add.", checks=(CHECK,)), repo=repo.working_dir)
    assert task.wait(timeout=90) == TaskState.REVIEW
    return task.id


async def test_the_api_lists_and_shows_the_tasks_under_its_roots_and_no_others(
    jp_fetch: Fetch, inside: git.Repo, tmp_path: Path, make_manager: Factory
) -> None:
    shown = review_task(make_manager, inside)
    hidden = review_task(make_manager, make_repo(tmp_path / "elsewhere" / "shop"))

    status, listed = await api(jp_fetch)
    assert status == 200
    assert [(t["id"], t["state"], t["verdict"]) for t in listed["tasks"]] == [
        (shown, "review", "proven")
    ]
    assert listed["tasks"][0]["repo"] == str(Path(inside.working_dir).resolve())

    status, task = await api(jp_fetch, shown)
    assert status == 200
    assert "-    return a - b\n+    return a + b" in task["diff"]
    assert task["checks"][0]["passed"] is True and task["pending"] == []

    for unknown in (hidden, "no-such-task", "..%2F..%2Fetc"):
        status, answer = await api(jp_fetch, unknown)
        assert status == 404, (unknown, answer)
        assert "No task" in answer["error"]
    status, answer = await api(jp_fetch, hidden, "approve", body={})
    assert status == 404 and "No task" in answer["error"]
    assert Journal(Path(inside.common_dir) / "delegate" / "tasks" / shown / "journal.jsonl")


async def test_bad_requests_get_a_clear_error_and_change_nothing(
    jp_fetch: Fetch, inside: git.Repo, make_manager: Factory
) -> None:
    task_id = review_task(make_manager, inside)
    head = inside.head.commit.hexsha
    cases = [
        ("merge", {}, 404, "Unknown action 'merge'"),
        ("answer", {"request_id": "abc"}, 400, "`allow`: true or false"),
        ("approve", {"force": "yes"}, 400, "`force` is true or false"),
        ("request-changes", {"feedback": 3}, 400, "`feedback` is a text"),
        ("request-changes", {"comments": "x"}, 400, "`comments` is a list"),
        ("answer", {"request_id": "abc", "allow": True}, 409, "no pending question"),
    ]
    for action, body, code, words in cases:
        status, answer = await api(jp_fetch, task_id, action, body=body)
        assert (status, words in answer["error"]) == (code, True), (action, answer)
    response = await jp_fetch(
        "delegate", "api", "tasks", task_id, "reject", method="POST", body="{", raise_error=False
    )
    assert response.code == 400 and "not JSON" in json.loads(response.body)["error"]
    _, task = await api(jp_fetch, task_id)
    assert task["state"] == "review" and inside.head.commit.hexsha == head


async def test_without_the_token_refused_and_by_cookie_without_xsrf_refused(
    jp_fetch: Fetch,
    jp_http_port: int,
    jp_base_url: str,
    jp_serverapp: Any,
    inside: git.Repo,
    make_manager: Factory,
) -> None:
    task_id = review_task(make_manager, inside)
    base = f"http://127.0.0.1:{jp_http_port}{jp_base_url}delegate/"
    client = AsyncHTTPClient()

    async def fetch(url: str, **kw: Any) -> HTTPResponse:
        return await client.fetch(url, raise_error=False, follow_redirects=False, **kw)

    nobody = await fetch(base + "api/tasks")
    assert nobody.code == 403 and task_id not in nobody.body.decode()
    refused = await fetch(base + f"api/tasks/{task_id}/reject", method="POST", body="{}")
    assert refused.code == 403
    page = await fetch(base)
    assert page.code == 302 and "login" in page.headers["Location"]

    # The page, opened with the token once, sets the login cookie and the XSRF cookie.
    token = jp_serverapp.identity_provider.token
    opened = await fetch(base + f"?token={token}")
    assert opened.code == 200 and b"Delegations" in opened.body
    cookies: SimpleCookie = SimpleCookie()
    for header in opened.headers.get_list("Set-Cookie"):
        cookies.load(header)
    assert "_xsrf" in cookies
    jar = "; ".join(f"{k}={v.value}" for k, v in cookies.items())
    listed = await fetch(base + "api/tasks", headers={"Cookie": jar})
    assert listed.code == 200 and task_id in listed.body.decode()
    no_xsrf = await fetch(
        base + f"api/tasks/{task_id}/reject", method="POST", body="{}", headers={"Cookie": jar}
    )
    assert no_xsrf.code == 403
    _, task = await api(jp_fetch, task_id)
    assert task["state"] == "review"
    with_xsrf = await fetch(
        base + f"api/tasks/{task_id}/reject",
        method="POST",
        body=json.dumps({"reason": "not now"}),
        headers={"Cookie": jar, "X-XSRFToken": cookies["_xsrf"].value},
    )
    assert with_xsrf.code == 200, with_xsrf.body
    assert json.loads(with_xsrf.body)["task"]["state"] == "rejected"


async def test_a_question_of_a_task_in_a_kernel_answered_and_its_review_approved_by_api(
    jp_fetch: Fetch,
    inside: git.Repo,
    served: Any,  # noqa: F811 (the fixture of test_control)
    kernel: Any,  # noqa: F811
) -> None:
    served([*FIX_TURNS])
    running = kernel()
    task_id = submit_in(running, inside, ask="Bash")
    me = json.loads((await jp_fetch("api", "me")).body)["identity"]["username"]
    assert me == "alice"

    task = await until_state(jp_fetch, task_id, "waiting")
    (question,) = task["pending"]
    assert question["tool"] == "bash" and question["input"]["command"] == CHECK
    body = {"request_id": question["request_id"], "allow": True, "reason": ""}
    status, answered = await api(jp_fetch, task_id, "answer", body=body, request_timeout=120)
    assert status == 200, answered
    # The kernel goes on: the next command asks again (ask=Bash), allowed the same way.
    while (task := await until_state(jp_fetch, task_id, "waiting", "review"))["state"] != "review":
        for question in task["pending"]:
            body = {"request_id": question["request_id"], "allow": True}
            status, answered = await api(jp_fetch, task_id, "answer", body=body)
            assert status == 200, answered
    assert running.run("print(t.state)").strip() == "review"  # the kernel sees it too

    status, approved = await api(jp_fetch, task_id, "approve", body={"force": False})
    assert status == 200, approved
    assert approved["task"]["state"] == "merged"
    assert inside.head.commit.hexsha == approved["result"]
    assert "a + b" in (Path(inside.working_dir) / "calc.py").read_text()
    audit_ok(inside)

    journal = Path(inside.common_dir) / "delegate" / "tasks" / task_id / "journal.jsonl"
    events = [e.data for e in Journal(journal).events()]
    answers = [e for e in events if e.get("decision") and e.get("request_id")]
    assert answers and all(e["from"]["server_user"] == me for e in answers)
    assert all(e["from"]["via"] == "server" for e in answers)
    approvals = [e for e in events if e.get("action") == "approve" and e.get("status") == "done"]
    assert [(e["by"]["server_user"], e["by"]["via"]) for e in approvals] == [(me, "server")]
    shown = cli("show", task_id, "--repo", inside.working_dir)
    assert f"allowed bash by {me} via the Jupyter server" in shown.stdout, shown.stdout
    assert f"approved by {me} via the Jupyter server" in shown.stdout, shown.stdout
    assert f"approved by {me} via the Jupyter server" in approved["task"]["decisions"]


async def until_state(fetch: Fetch, task_id: str, *states: str, timeout: float = 90) -> Any:
    """The task as the API shows it, once it is in one of `states` (polling, not blocking
    the server's loop)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        status, task = await api(fetch, task_id)
        if status == 200 and task["state"] in states:
            return task
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} never reached {states}: {task}")
        await asyncio.sleep(0.2)


def test_repositories_are_found_a_bounded_walk_down(tmp_path: Path) -> None:
    make_repo(tmp_path / "a")
    make_repo(tmp_path / "x" / "y" / "b")
    make_repo(tmp_path / "x" / "y" / "z" / "w" / "too-deep")
    make_repo(tmp_path / ".hidden" / "c")
    make_repo(tmp_path / "a" / "nested")  # inside a repository: not walked into
    assert find_repos([tmp_path]) == [tmp_path / "a", tmp_path / "x" / "y" / "b"]


def test_the_server_extension_is_enabled_on_install_like_the_labextension() -> None:
    shared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"][
        "targets"
    ]["wheel"]["shared-data"]
    source = "jupyter-config/server-config/jupyter_delegate.json"
    assert shared[source] == "etc/jupyter/jupyter_server_config.d/jupyter_delegate.json"
    config = json.loads((ROOT / source).read_text())
    assert config == {"ServerApp": {"jpserver_extensions": {"jupyter_delegate": True}}}
    # The package says where its extension is, and importing it stays light.
    code = (
        "import sys, jupyter_delegate as jd\n"
        "print(jd._jupyter_server_extension_points())\n"
        "print(any(m.startswith(('jupyter_server', 'tornado', 'anthropic')) for m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split("\n")[:2] == ["[{'module': 'jupyter_delegate.server'}]", "False"]


async def test_a_denial_with_a_reason_from_the_api_reaches_the_agent(
    jp_fetch: Fetch, inside: git.Repo, make_manager: Factory
) -> None:
    manager, fake = make_manager()  # runs the task here, on its engine thread, holding it
    policy = Policy.from_rules(ask=["Bash"])
    task = manager.submit(
        Outcome("Make add() add.", checks=(CHECK,)), repo=inside.working_dir, policy=policy
    )
    until(lambda: task.state == TaskState.WAITING, what="the first question")
    question = (await until_state(jp_fetch, task.id, "waiting"))["pending"][0]
    allow_with_reason = {"request_id": question["request_id"], "allow": True, "reason": "why"}
    status, refused = await api(jp_fetch, task.id, "answer", body=allow_with_reason)
    assert status == 400 and "goes with a denial" in refused["error"]
    deny = {"request_id": question["request_id"], "allow": False, "reason": "run no tests yet"}
    status, denied = await api(jp_fetch, task.id, "answer", body=deny, request_timeout=60)
    assert status == 200, denied
    task = await until_state(jp_fetch, task.id, "waiting", "review")
    assert "denied bash by alice via the Jupyter server" in task["decisions"]
    told = [
        block
        for request in fake.requests
        for message in (request.body or {}).get("messages", [])
        if isinstance(message.get("content"), list)
        for block in message["content"]
        if block.get("type") == "tool_result"
    ]
    assert any("run no tests yet" in json.dumps(block) for block in told), told


async def test_changes_requested_from_the_api_to_a_task_nobody_runs_start_its_next_round(
    jp_fetch: Fetch,
    inside: git.Repo,
    make_manager: Factory,
    served: Any,  # noqa: F811
) -> None:
    task_id = review_task(make_manager, inside)  # its round over: no process holds it
    again = {"tools": [{"finish": {"summary": "Looked again; nothing else to change."}}]}
    served([*FIX_TURNS, again])  # the fake answers by the turns in the conversation
    status, empty = await api(jp_fetch, task_id, "request-changes", body={"feedback": " "})
    assert status == 409 and "Say what should change" in empty["error"]
    body = {"feedback": "Look again.", "comments": [{"path": "calc.py", "line": 2, "body": "ok?"}]}
    status, sent = await api(jp_fetch, task_id, "request-changes", body=body)
    assert status == 200, sent
    task = await until_state(jp_fetch, task_id, "review")
    assert task["summary"] == "Looked again; nothing else to change."
    assert task["review_round"] == 2
    assert "sent back for changes by alice via the Jupyter server" in task["decisions"]
    audit_ok(inside)
