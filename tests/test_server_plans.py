"""The plans routes of the server extension in a real Jupyter server (pytest-jupyter, as
test_server.py): the API lists and shows the plans under its roots; dispatch makes the
server the process running a plan, which starts dependents as their parents are approved
through the API; approve integrates; each decision names the server's user in the plan's
journal; bad requests and decisions the plan refuses get a clear error and change
nothing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import git
from test_cli_plans import serve  # noqa: F401 (the fixture: the fake model on loopback)
from test_plan import STACKED, writer
from test_server import Fetch, api, inside, jp_server_config, make_repo, roots  # noqa: F401

from conftest import Factory
from jupyter_delegate.journal import Journal
from jupyter_delegate.planning import create

pytest_plugins = ["pytest_jupyter.jupyter_server"]

CHAIN = STACKED.replace("stack: true\n", "checks: [test -f base.txt && test -f top.txt]\n")


async def plans_api(fetch: Fetch, *parts: str, body: Any = None, **kw: Any) -> tuple[int, Any]:
    """(status, JSON) of a request to the plans API; a POST when `body` is given."""
    if body is not None:
        kw.update(method="POST", body=json.dumps(body))
    response = await fetch("delegate", "api", "plans", *parts, raise_error=False, **kw)
    return response.code, json.loads(response.body or b"null")


async def until_plan(fetch: Fetch, plan_id: str, done: Any, timeout: float = 90) -> Any:
    """The plan as the API shows it, once `done(plan)` holds (polling the server)."""
    deadline = time.monotonic() + timeout
    while True:
        status, plan = await plans_api(fetch, plan_id)
        if status == 200 and done(plan):
            return plan
        if time.monotonic() > deadline:
            raise AssertionError(f"plan {plan_id} never got there: {plan}")
        await asyncio.sleep(0.2)


def states(plan: Any) -> dict[str, str]:
    return {s["name"]: s["state"] for s in plan["subtasks"]}


async def test_the_api_runs_a_plan_in_the_server_as_its_subtasks_are_approved_then_integrates(
    jp_fetch: Fetch,
    inside: git.Repo,  # noqa: F811
    tmp_path: Path,
    make_manager: Factory,
    serve: Any,  # noqa: F811
) -> None:
    manager, _ = make_manager(writer())
    made = create(CHAIN, inside.working_dir, manager=manager)  # a draft: nobody runs it
    make_repo(tmp_path / "elsewhere")  # not under the roots: its plans are not shown
    elsewhere = create(CHAIN, tmp_path / "elsewhere", manager=manager)

    status, listed = await plans_api(jp_fetch)
    assert status == 200 and [p["id"] for p in listed["plans"]] == [made.id]
    (plan,) = listed["plans"]
    assert (plan["title"], plan["state"], plan["driven"]) == ("Stacked", "draft", False)
    assert states(plan) == {"base": "ready", "top": "planned"}
    assert [s["depends_on"] for s in plan["subtasks"]] == [[], ["base"]]
    status, answer = await plans_api(jp_fetch, elsewhere.id)
    assert status == 404 and "No plan" in answer["error"]

    serve(writer())  # the server's own subtasks ask the fake on loopback
    status, sent = await plans_api(jp_fetch, made.id, "dispatch", body={"parallel": 1})
    assert status == 200, sent
    assert sent["plan"]["state"] == "running" and sent["plan"]["driven"] is True
    plan = await until_plan(jp_fetch, made.id, lambda p: states(p)["base"] == "review")
    (base,) = [s for s in plan["subtasks"] if s["name"] == "base"]
    assert base["verdict"] == "proven" and base["checks"] == "1/1 passed"
    assert states(plan)["top"] == "planned"  # not stacked: it waits for base's approval

    status, refused = await plans_api(jp_fetch, made.id, "approve", body={})
    assert status == 409 and "every subtask must be approved" in refused["error"]
    status, approved = await api(jp_fetch, base["task"], "approve", body={})
    assert status == 200, approved
    plan = await until_plan(jp_fetch, made.id, lambda p: states(p)["top"] == "review")
    (top,) = [s["task"] for s in plan["subtasks"] if s["name"] == "top"]
    status, approved = await api(jp_fetch, top, "approve", body={})
    assert status == 200, approved
    await until_plan(jp_fetch, made.id, lambda p: p["state"] == "ready")

    status, integrated = await plans_api(jp_fetch, made.id, "approve", body={})
    assert status == 200, integrated
    assert integrated["plan"]["state"] == "integrated"
    assert inside.head.commit.hexsha == integrated["result"]
    assert (Path(inside.working_dir) / "top.txt").read_text() == "top\n"
    journal = Path(inside.common_dir) / "delegate" / "plans" / made.id / "journal.jsonl"
    assert Journal(journal).verify().ok
    by = {e.type: e.data["by"] for e in Journal(journal).events() if "by" in e.data}
    assert {kind: (who["server_user"], who["via"]) for kind, who in by.items()} == {
        "dispatched": ("alice", "server"),
        "integrated": ("alice", "server"),
    }


async def test_plan_requests_the_plan_refuses_get_a_clear_error_and_change_nothing(
    jp_fetch: Fetch,
    inside: git.Repo,  # noqa: F811
    make_manager: Factory,
) -> None:
    manager, _ = make_manager(writer(latency_ms=2000))
    draft = create(CHAIN, inside.working_dir, manager=manager)
    cases = [
        ("p000000", "cancel", {}, 404, "No plan 'p000000'"),
        ("..%2F..%2Fetc", "cancel", {}, 404, "a plan id is p and six hex digits"),
        (draft.id, "merge", {}, 404, "Unknown action 'merge'"),
        (draft.id, "restart", {}, 400, "`name` is a text"),
        (draft.id, "dispatch", {"parallel": "two"}, 400, "`parallel` is a whole number"),
        (draft.id, "dispatch", {"stack": "yes"}, 400, "`stack` is true or false"),
        (draft.id, "approve", {}, 409, "cannot be integrated yet"),
        (draft.id, "restart", {"name": "nope"}, 409, "has no subtask 'nope'"),
        (draft.id, "resume", {}, 200, None),  # a draft: nothing to take up
    ]
    for plan_id, action, body, code, words in cases:
        status, answer = await plans_api(jp_fetch, plan_id, action, body=body)
        assert status == code, (action, answer)
        assert words is None or words in answer["error"], (action, answer)
    response = await jp_fetch(
        "delegate", "api", "plans", draft.id, "cancel", method="POST", body="[", raise_error=False
    )
    assert response.code == 400 and "not JSON" in json.loads(response.body)["error"]
    status, plan = await plans_api(jp_fetch, draft.id)
    assert plan["state"] == "draft" and plan["driven"] is False

    # A plan run by another process (here: the test's manager) is that process's to decide.
    draft.dispatch()
    plan = await until_plan(jp_fetch, draft.id, lambda p: p["driven"])
    for action, body in (("cancel", {}), ("restart", {"name": "base"}), ("dispatch", {})):
        status, answer = await plans_api(jp_fetch, draft.id, action, body=body)
        assert status == 409, (action, answer)
    status, answer = await plans_api(jp_fetch, draft.id, "cancel", body={})
    assert "being run by another process" in answer["error"]
    status, plan = await plans_api(jp_fetch, draft.id)
    assert plan["state"] == "running"
    draft.cancel()
