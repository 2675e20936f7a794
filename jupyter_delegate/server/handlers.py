"""The HTTP side of the server extension: the REST API under `/delegate/api/` and the
phone page at `/delegate/`.

    GET  /delegate/api/tasks                  the tasks, what needs you first
    GET  /delegate/api/tasks/ID               one task: record, pending questions, diff
    POST /delegate/api/tasks/ID/ACTION        answer | approve | reject | request-changes
                                              | cancel | pause, with a JSON body
    GET  /delegate/api/plans                  the plans, running first: {"plans": [...]}
    GET  /delegate/api/plans/ID               one plan's record: its subtasks' states,
                                              tasks, costs, checks, why; `driven`
    POST /delegate/api/plans/ID/ACTION        approve (integrate) | restart {"name"} |
                                              cancel | resume | dispatch {"parallel",
                                              "stack"}: {"result", "plan"}

Every route is behind the Jupyter server's own authentication (`@web.authenticated`:
the token, or the login cookie) and its XSRF rule: a POST authenticated by cookie must
carry the `_xsrf` cookie's value in `X-XSRFToken`, as JupyterLab's requests do (one
authenticated by the token in its `Authorization` header needs none). Errors are JSON,
`{"error": "..."}`: 400 bad input, 404 an unknown task or plan (or one outside the roots),
409 a decision the task's or plan's state refuses (`"unproven": true` for an approve that
needs force; a plan another process runs, a plan not ready to integrate).

The work (journals, git, decisions that wait for another process) runs in worker
threads (`asyncio.to_thread`): the server's IO loop never waits on it.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from jupyter_server.base.handlers import APIHandler, JupyterHandler
from tornado import web

from ..errors import DelegateError, NotProven, PlanNotFound, TaskNotFound, UsageError
from .board import ACTIONS, PLAN_ACTIONS, Board

PAGE = Path(__file__).with_name("static") / "phone.html"


class _BoardHandler(APIHandler):
    """A handler of the API: the board, and errors as JSON."""

    @property
    def board(self) -> Board:
        board: Board = self.settings["jupyter_delegate_board"]
        return board

    async def _answer(self, work: Any, *args: Any) -> None:
        try:
            result = await asyncio.to_thread(work, *args)
        except (TaskNotFound, PlanNotFound) as exc:
            self._error(404, str(exc))
            return
        except NotProven as exc:
            self._error(409, str(exc), unproven=True)
            return
        except UsageError as exc:
            self._error(400, str(exc))
            return
        except DelegateError as exc:
            self._error(409, str(exc))
            return
        self.finish(json.dumps(result))

    def _error(self, status: int, message: str, **extra: Any) -> None:
        self.set_status(status)
        self.finish(json.dumps({"error": message, **extra}))


class TasksHandler(_BoardHandler):
    @web.authenticated
    async def get(self) -> None:
        await self._answer(lambda: {"tasks": self.board.tasks()})


class TaskHandler(_BoardHandler):
    @web.authenticated
    async def get(self, task_id: str) -> None:
        await self._answer(self.board.detail, task_id)


class ActionHandler(_BoardHandler):
    @web.authenticated
    async def post(self, task_id: str, action: str) -> None:
        body = self._body(action, ACTIONS)
        if body is None:
            return
        user = self.current_user.username

        def act() -> dict[str, Any]:
            result = self.board.act(task_id, action, body, user)
            return {"result": result, "task": self.board.detail(task_id)}

        await self._answer(act)

    def _body(self, action: str, actions: tuple[str, ...]) -> dict[str, Any] | None:
        """The request's JSON object (None: refused, the error answered)."""
        if action not in actions:
            self._error(404, f"Unknown action {action!r}: one of {', '.join(actions)}.")
            return None
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError as exc:
            self._error(400, f"The body is not JSON ({exc}).")
            return None
        if not isinstance(body, dict):
            self._error(400, 'The body is a JSON object, such as {"allow": true}.')
            return None
        return body


class PlansHandler(_BoardHandler):
    @web.authenticated
    async def get(self) -> None:
        await self._answer(lambda: {"plans": self.board.plans()})


class PlanHandler(_BoardHandler):
    @web.authenticated
    async def get(self, plan_id: str) -> None:
        await self._answer(self.board.plan_detail, plan_id)


class PlanActionHandler(ActionHandler):
    @web.authenticated
    async def post(self, plan_id: str, action: str) -> None:
        body = self._body(action, PLAN_ACTIONS)
        if body is None:
            return
        user = self.current_user.username

        def act() -> dict[str, Any]:
            result = self.board.act_on_plan(plan_id, action, body, user)
            return {"result": result, "plan": self.board.plan_detail(plan_id)}

        await self._answer(act)


class PageHandler(JupyterHandler):
    """The phone page: plain HTML and JS, reading the API above."""

    @web.authenticated
    def get(self) -> None:
        self.xsrf_token  # noqa: B018 (sets the `_xsrf` cookie the page's POSTs send back)
        self.set_header("Content-Type", "text/html; charset=utf-8")
        self.set_header("Cache-Control", "no-store")
        self.finish(PAGE.read_bytes())


def handlers(base_url: str) -> list[tuple[str, Any, dict[str, Any]]]:
    """The routes, under the server's base URL."""
    api = base_url.rstrip("/") + "/delegate/api/tasks"
    plans = base_url.rstrip("/") + "/delegate/api/plans"
    page = base_url.rstrip("/") + "/delegate"
    return [
        (api, TasksHandler, {}),
        (api + r"/([^/]+)", TaskHandler, {}),
        (api + r"/([^/]+)/([^/]+)", ActionHandler, {}),
        (plans, PlansHandler, {}),
        (plans + r"/([^/]+)", PlanHandler, {}),
        (plans + r"/([^/]+)/([^/]+)", PlanActionHandler, {}),
        (page, web.RedirectHandler, {"url": page + "/"}),
        (page + "/", PageHandler, {}),
    ]
