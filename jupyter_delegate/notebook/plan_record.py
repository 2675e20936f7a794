"""The plan record kept in the notebook: one output per plan, updated in place.

Mime `application/vnd.jupyter-delegate.plan+json` holds a compact record of a plan (its
title, state, subtasks with their state, task, checks and cost, its spec, the
integration), at most `RECORD_LIMIT` bytes of JSON, with `text/html` (the graph of
graph.py and a table) and `text/plain` fallbacks, so a notebook reopened without a kernel
or our extension still shows the plan. The output's display_id is
`jupyter-delegate-plan-ID`, updated whenever the plan changes (`Plan.subscribe`: from the
thread that changed it, under the parent of the cell that showed it, as task records are).

After a kernel restart, `%load_ext jupyter_delegate` reads a saved notebook's plan records
(`read_records(path, PLAN_MIME)`), finds each plan from its journal and publishes its
state now: a plan its dead kernel was running says so (`cut_off`: running, but no process
dispatches it; `%delegate resume ID` takes it up).

Not here: the plan's widget (plan_view.py), the task records (record.py), deciding
anything.
"""

from __future__ import annotations

import html
import json
import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NotRequired, TypedDict

from ..engine.model import usd_text
from .graph import colour, graph_svg
from .record import RECORD_LIMIT, _schema_of, publish_under, running_cell_id

if TYPE_CHECKING:  # planning imports yaml: 40 ms of `%load_ext`, which shows no plan
    from ..planning import Plan

log = logging.getLogger(__name__)
PLAN_MIME = "application/vnd.jupyter-delegate.plan+json"
PLAN_RECORD_VERSION = 1

PlanState = Literal["planning", "draft", "running", "ready", "integrated", "failed", "cancelled"]


class PlanSubtaskRecord(TypedDict):
    """One subtask as the plan record keeps it (planning.Status, and its goal)."""

    name: str
    goal: str
    state: str  # planned, ready, blocked, or its task's state
    task: str | None  # its task's id, once started
    why: str  # why it is blocked, or why its task failed
    stale: str  # a parent changed after it started: restart it
    cost_usd: float
    checks: str  # "2/2 passed", "" before its checks ran
    depends_on: list[str]


class PlanRecord(TypedDict):
    """The record of a plan kept in a notebook output (PLAN_MIME): `Plan.to_record`'s
    facts, the subtasks as `PlanSubtaskRecord`s, and what only the notebook needs. Its
    JSON schema (`plan_record_schema`) is committed at
    labextension/schema/plan-record.schema.json."""

    version: int
    id: str
    title: str
    state: PlanState
    reason: str
    cut_off: bool  # running, but no process dispatches it: `%delegate resume ID`
    repo: str
    repo_relative: NotRequired[str]  # the repository, from the notebook's folder
    base_branch: str
    base_commit: str
    planner: str | None  # the task of the agent that proposed it
    spec: dict[str, Any] | None  # the plan's YAML form as a dict; None while planning
    subtasks: list[PlanSubtaskRecord]
    cost_usd: float  # the subtasks' and the planner's
    integration: dict[str, Any]  # commit, onto, branch, order, checks: once integrated
    failure: dict[str, Any]  # why the last integration stopped
    journal_head: str
    created: str


def plan_record_schema() -> dict[str, Any]:
    """The JSON schema of `PlanRecord`: what labextension/schema/plan-record.schema.json
    holds (tests/test_labextension.py keeps them the same)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "PlanRecord",
        "description": "A plan record in a notebook output "
        f"({PLAN_MIME}), written by jupyter_delegate.notebook.plan_record.plan_record.",
        **_schema_of(PlanRecord),
    }


def display_id_for(plan: Plan) -> str:
    return f"jupyter-delegate-plan-{plan.id}"


def plan_record(plan: Plan, *, notebook_dir: Path | None = None) -> PlanRecord:
    """The plan's record as it is now (read from its journals), cut to fit RECORD_LIMIT."""
    facts = plan.to_record()
    goals = {s.name: s.goal for s in plan.spec.subtasks} if plan.spec else {}
    record: PlanRecord = {
        "version": PLAN_RECORD_VERSION,
        "id": facts["id"],
        "title": facts["title"],
        "state": facts["state"],
        "reason": facts["reason"],
        "cut_off": plan.is_cut_off(),
        "repo": facts["repo"],
        "base_branch": facts["base_branch"],
        "base_commit": facts["base_commit"],
        "planner": facts["planner"],
        "spec": facts["spec"],
        "subtasks": [
            {
                "name": s["name"],
                "goal": goals.get(s["name"], ""),
                "state": s["state"],
                "task": s["task"],
                "why": s["why"],
                "stale": s["stale"],
                "cost_usd": s["cost_usd"],
                "checks": s["checks"],
                "depends_on": list(s["depends_on"]),
            }
            for s in facts["subtasks"]
        ],
        "cost_usd": facts["cost_usd"],
        "integration": facts["integration"],
        "failure": facts["failure"],
        "journal_head": facts["journal_head"],
        "created": facts["created"],
    }
    if notebook_dir is not None:
        record["repo_relative"] = os.path.relpath(plan.repo, notebook_dir)
    return fit(record)


def fit(record: PlanRecord) -> PlanRecord:
    """The record within RECORD_LIMIT bytes of JSON: its texts clipped shorter and
    shorter (goals, reasons, check output), never its structure."""
    cut: PlanRecord = record
    for limit in (4000, 1000, 300, 100, 40, 12):
        cut = _clipped(record, limit)
        if len(json.dumps(cut)) <= RECORD_LIMIT:
            break
    return cut


# What identifies, links or restores: never clipped.
_WHOLE = frozenset(
    {
        "id", "name", "task", "state", "repo", "repo_relative", "base_branch", "base_commit",
        "journal_head", "planner", "created", "depends_on", "commit", "onto", "branch",
        "order", "version", "passed", "exit_code", "duration_s",
    }
)  # fmt: skip


def _clipped(value: Any, limit: int) -> Any:
    if isinstance(value, str):
        return value if len(value) <= limit else value[: max(0, limit - 1)] + "…"
    if isinstance(value, Mapping):
        return {k: (v if k in _WHOLE else _clipped(v, limit)) for k, v in value.items()}
    if isinstance(value, list):
        return [_clipped(v, limit) for v in value]
    return value


# -- fallbacks -----------------------------------------------------------------------------
def state_words(record: Mapping[str, Any]) -> str:
    """The plan's state as the views say it: `running (cut off: ...)`."""
    if record.get("cut_off"):
        return f"{record['state']} · cut off: no process runs it"
    return str(record["state"])


def text_plain(record: Mapping[str, Any]) -> str:
    lines = [f"delegate plan {record['id']} [{state_words(record)}] {record['title']}"]
    if record.get("reason"):
        lines.append(f"  {record['reason']}")
    for subtask in record["subtasks"]:
        task = f" task {subtask['task']}" if subtask.get("task") else ""
        checks = f", checks {subtask['checks']}" if subtask.get("checks") else ""
        after = f" (after {', '.join(subtask['depends_on'])})" if subtask["depends_on"] else ""
        lines.append(f"  {subtask['name']}: {subtask['state']}{task}{checks}{after}")
        for note in (subtask.get("why"), subtask.get("stale")):
            if note:
                lines.append(f"    {note}")
    if record["integration"].get("commit"):
        lines.append(
            f"  integrated into {record['base_branch']} as {record['integration']['commit'][:10]}"
        )
    lines.append(f"  {usd_text(record['cost_usd'])}")
    if record.get("cut_off"):
        lines.append(f"  %delegate resume {record['id']} takes it up")
    return "\n".join(lines)


def pill(state: str) -> str:
    return (
        f'<span class="jd-badge" style="background:{colour(state)};color:white;'
        f'border-radius:4px;padding:0 6px">{html.escape(state)}</span>'
    )


def text_html(record: Mapping[str, Any]) -> str:
    e = html.escape
    cell = 'style="padding:2px 8px;text-align:left;vertical-align:top"'
    rows = "".join(
        f"<tr><td {cell}><b>{e(s['name'])}</b></td><td {cell}>{pill(s['state'])}</td>"
        f"<td {cell}><code>{e(s.get('task') or '')}</code></td>"
        f"<td {cell}>{e(s.get('checks') or '')}</td>"
        f"<td {cell}>{e(usd_text(s.get('cost_usd') or 0)) if s.get('task') else ''}</td>"
        f"<td {cell}>{e(s.get('goal') or '')}"
        + "".join(
            f'<div style="color:#b45309">{e(note)}</div>'
            for note in (s.get("why"), s.get("stale"))
            if note
        )
        + "</td></tr>"
        for s in record["subtasks"]
    )
    head = "".join(
        f"<th {cell}>{h}</th>" for h in ("subtask", "state", "task", "checks", "cost", "goal")
    )
    table = (
        f'<table style="border-collapse:collapse"><thead><tr>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
        if rows
        else ""
    )
    resume = (
        f"<div>No process runs it any more: <code>%delegate resume {e(record['id'])}</code> "
        "takes it up.</div>"
        if record.get("cut_off")
        else ""
    )
    integrated = (
        f"<div>Integrated into <code>{e(record['base_branch'])}</code> as "
        f"<code>{e(record['integration']['commit'][:10])}</code>.</div>"
        if record["integration"].get("commit")
        else ""
    )
    graph = graph_svg(record["subtasks"])
    return (
        '<div class="jupyter-delegate-plan-record" style="border:1px solid '
        "var(--jp-border-color2, #ddd);border-radius:6px;padding:6px 10px;"
        'font-family:var(--jp-ui-font-family, sans-serif);font-size:13px">'
        f"<b>Plan: {e(record['title'])}</b> {pill(str(record['state']))} "
        f"<code>{e(record['id'])}</code> · {e(usd_text(record['cost_usd']))}"
        + (f"<div>{e(record['reason'])}</div>" if record.get("reason") else "")
        + resume
        + integrated
        + (f'<div style="overflow-x:auto;margin:6px 0">{graph}</div>' if graph else "")
        + table
        + "</div>"
    )


def plan_bundle(record: Mapping[str, Any]) -> dict[str, Any]:
    return {PLAN_MIME: record, "text/html": text_html(record), "text/plain": text_plain(record)}


class Later:
    """Run `work` soon after `poke()`, on a thread of its own: the poking thread (a plan's
    dispatcher, which may hold the plan's lock) never waits on a view, and a view never
    calls the plan from inside the plan's callback (DESIGN principle 6). Pokes while it
    runs make it run once more, never twice at once."""

    def __init__(self, work: Callable[[], None], name: str) -> None:
        self._work, self._name = work, name
        self._lock = threading.Lock()
        self._due = self._running = False

    def poke(self) -> None:
        with self._lock:
            self._due = True
            if self._running:
                return
            self._running = True
        threading.Thread(target=self._loop, daemon=True, name=self._name).start()

    def _loop(self) -> None:
        while True:
            with self._lock:
                if not self._due:
                    self._running = False
                    return
                self._due = False
            try:
                self._work()
            except Exception:  # a view's failure never reaches the plan
                log.exception("%s failed", self._name)


class PlanRecordDisplay:
    """One plan's record output: shown once, then updated in place by display_id
    whenever the plan changes. `cell_id`: the cell holding the output (None: not known)."""

    def __init__(
        self, plan: Plan, *, notebook_dir: Path | None = None, cell_id: str | None = None
    ) -> None:
        from IPython.core.getipython import get_ipython

        self.plan, self.notebook_dir, self.cell_id = plan, notebook_dir, cell_id
        shell = get_ipython()
        self._shell = shell
        self._parent = (
            shell.get_parent() if shell is not None and hasattr(shell, "get_parent") else None
        )
        self._lock = threading.Lock()
        self._last = ""
        self._closed = False
        self._later = Later(self._publish, f"plan-record-{plan.id}")
        self._unsubscribe = plan.subscribe(self._on_change)

    def record(self) -> PlanRecord:
        return plan_record(self.plan, notebook_dir=self.notebook_dir)

    def show(self) -> None:
        """Show the record in the running cell, unless another cell holds it already:
        then that one is updated (one record per plan in a notebook)."""
        from IPython import display as ipython_display

        here = running_cell_id(self._shell)
        if here is not None and self.cell_id is not None and here != self.cell_id:
            self.refresh()
            return
        show: Any = ipython_display.display
        with self._lock:
            record = self.record()
            self._last = json.dumps(record, sort_keys=True)
            show(plan_bundle(record), raw=True, display_id=display_id_for(self.plan))
        self.cell_id = here

    def refresh(self, force: bool = True) -> None:
        """Publish the record as it is now from the calling thread's cell (`force=False`:
        only if it changed since the last publication)."""
        from IPython import display as ipython_display

        update: Any = ipython_display.update_display
        with self._lock:
            record = self.record()
            key = json.dumps(record, sort_keys=True)
            if not force and key == self._last:
                return
            self._last = key
            update(plan_bundle(record), raw=True, display_id=display_id_for(self.plan))

    def _on_change(self, _plan: Plan) -> None:
        if not self._closed:
            self._later.poke()

    def _publish(self) -> None:
        if not self._closed:
            publish_under(self._shell, self._parent, lambda: self.refresh(force=False))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._unsubscribe()
