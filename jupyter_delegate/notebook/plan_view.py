"""The plan's widget (`PlanView`, an anywidget): a plan shown under its cell, live.

While the agent plans it, the view says so (the planner's steps and cost as they come).
A draft is an editable table of its subtasks (goal, checks, scope, budget, dependencies;
add, remove, move up or down) and of the plan's own settings; an edit is validated here,
by `PlanSpec` (the one validation there is), its problems shown in the widget, and saved
with `Plan.edit`. The graph of its subtasks (graph.py) is drawn from the same rows as the
plan's notebook record, coloured by state, and follows the plan as it runs. Buttons: Run
plan (`Plan.dispatch`, saving unsaved edits first), Approve plan (`Plan.approve`, the
integration), Cancel, Resume (a plan cut off by its kernel's death), and on a subtask's
row Restart (stale, failed, rejected), Approve (in review) and its task's id, which opens
its review in a new cell below (`%delegate show ID`). Insert as cell puts a
`%%delegate-plan` cell holding the plan's YAML below (the front end of labextension/ does
it on the `jd-insert-cell` DOM event; elsewhere the widget shows the YAML to copy).

The front end is one plain ES module, static/plan.js, themed by JupyterLab's variables.

Threading (DESIGN principle 6): the plan's changes arrive on its dispatcher's thread (or
on the thread that decided), which may hold the plan's lock: they only ask for a reading,
made on a thread of the view's own (`Later`), which sets the traits. The planner's events
arrive on the engine thread and only set traits.
A message from the front end arrives on the kernel's main thread; its action runs on a
thread of its own and says how it went by setting `feedback`.

Not here: the plan's notebook record (plan_record.py), the graph's drawing (graph.py),
deciding anything (every button is a call on `Plan` or `Task`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import traitlets as t

from ..engine.model import usd_text
from ..errors import DelegateError, PlanError
from ..planning import Plan, PlanSpec
from ..task import Task, TaskEvent
from .actions import ActionWidget
from .graph import colour, graph_svg
from .plan_record import Later, plan_record, state_words

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
# A subtask whose task is in one of these can be started again from its parents' heads.
RESTARTABLE = frozenset({"failed", "rejected", "cancelled", "interrupted", "paused"})


def problems_of(error: PlanError) -> tuple[str, list[str]]:
    """A refusal's first line (said of an edit: nothing saved) and each problem it names."""
    lines = str(error).splitlines()
    head = lines[0].replace("nothing was started", "nothing was saved")
    problems = [line.strip()[2:] for line in lines[1:] if line.strip().startswith("- ")]
    return head, problems


def guide(record: Mapping[str, Any]) -> str:
    """What the plan's state means for the user, and what to do next (one sentence or
    two, under the view's title)."""
    state, rows, base = record["state"], record["subtasks"], record["base_branch"]
    if record["cut_off"]:
        return "No process runs this plan any more (its kernel stopped): Resume takes it up here."
    if state == "draft":
        return "A draft: edit it below (Save edits), then Run plan."
    if state == "running":
        done = sum(1 for row in rows if row["state"] == "merged")
        said = [f"{done} of {len(rows)} subtasks approved"]
        review = [row["name"] for row in rows if row["state"] == "review"]
        if review:
            said.append(
                f"in review: {', '.join(review)} (Approve on its row, or its task id for its "
                "own review)"
            )
        stuck = [row["name"] for row in rows if row["state"] in RESTARTABLE or row["stale"]]
        if stuck:
            said.append(f"to restart: {', '.join(stuck)}")
        return "; ".join(said) + ". Approve plan integrates them once all are approved."
    if state == "ready":
        return (
            f"Every subtask is approved: Approve plan merges them into {base} in dependency "
            "order and runs the plan's checks there."
        )
    if state == "integrated" and record["integration"].get("commit"):
        return f"Integrated into {base} as {record['integration']['commit'][:10]}."
    failure, reason = record["failure"], record["reason"]
    if failure.get("conflicts"):
        return (
            f"Integration stopped at {failure.get('subtask')}: it conflicts in "
            f"{', '.join(failure['conflicts'])}. Restart it, then Approve plan again."
        )
    if failure.get("checks"):
        failing = [c["command"] for c in failure["checks"] if not c.get("passed")]
        return (
            f"The plan's checks fail on the integration: {', '.join(failing)}. Nothing was "
            f"merged into {base}."
        )
    return f"{state.capitalize()}: {reason}." if reason else ""


def plan_cell(plan: Plan, cwd: Path | None = None) -> str:
    """A `%%delegate-plan` cell that writes this plan anew (its YAML), in the same
    repository (from the kernel's folder when it is below it)."""
    if plan.spec is None:
        return ""
    here = (cwd or Path.cwd()).resolve()
    repo = plan.repo
    shown = os.path.relpath(repo, here) if repo == here or here in repo.parents else str(repo)
    quoted = f'"{shown}"' if " " in shown else shown
    return f"%%delegate-plan --repo {quoted}\n{plan.spec.to_yaml()}"


class PlanView(ActionWidget):
    """A plan, live: see the module docstring. `run_options` are what Run plan passes to
    `Plan.dispatch` (the magic's --parallel, --stack, --model, --sandbox...)."""

    _esm = STATIC / "plan.js"
    _css = STATIC / "plan.css"

    plan_id = t.Unicode("").tag(sync=True)
    title = t.Unicode("").tag(sync=True)
    state = t.Unicode("").tag(sync=True)
    state_text = t.Unicode("").tag(sync=True)  # the state as said: "running · cut off: ..."
    reason = t.Unicode("").tag(sync=True)
    guide = t.Unicode("").tag(sync=True)  # what the state means, and what to do next
    cut_off = t.Bool(False).tag(sync=True)
    base_branch = t.Unicode("").tag(sync=True)
    cost = t.Unicode("").tag(sync=True)
    spec = t.Dict().tag(sync=True)  # the plan's dict form (PlanSpec.to_dict); {} planning
    revision = t.Int(0).tag(sync=True)  # counts the spec's saves: the front end's draft is
    # dropped for the saved spec when it changes
    subtasks = t.List(t.Dict()).tag(sync=True)  # PlanSubtaskRecord rows, with their colour
    graph = t.Unicode("").tag(sync=True)  # graph.graph_svg of the rows
    yaml = t.Unicode("").tag(sync=True)
    cell = t.Unicode("").tag(sync=True)  # the `%%delegate-plan` cell "Insert as cell" adds
    planner = t.Dict().tag(sync=True)  # while planning: task, state, steps, cost
    integration = t.Dict().tag(sync=True)
    failure = t.Dict().tag(sync=True)
    errors = t.List(t.Unicode()).tag(sync=True)  # the problems of the last edit refused

    def __init__(
        self, plan: Plan, *, run_options: Mapping[str, Any] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(plan_id=plan.id, **kwargs)
        self.plan = plan
        self.run_options = dict(run_options or {})
        self._reading = threading.Lock()  # one reading at a time; never held by the plan
        self._later = Later(self._read_later, f"plan-view-{plan.id}")
        self._closed = False
        self._planner_lock = threading.Lock()  # the planner's events and the reading's
        self._planner_task: Task | None = None
        self._unsubscribe_planner: Callable[[], None] | None = None
        self.read()
        self._unsubscribe = plan.subscribe(self._on_change)

    def __repr__(self) -> str:
        # What a notebook saved without widget state, or nbconvert's HTML, shows in the
        # view's place: one line; the plan record beside it tells the plan's state.
        return f"Live view of plan {self.plan.id} (shown while its kernel runs)"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._unsubscribe()
            self._follow_planner(None)
        super().close()

    # -- the plan's facts -------------------------------------------------------------------
    def read(self) -> None:
        """Set every trait from the plan as its journals say now."""
        with self._reading:
            plan = self.plan.refresh()
            record = plan_record(plan)
            rows = [{**row, "colour": colour(row["state"])} for row in record["subtasks"]]
            spec = plan.spec.to_dict() if plan.spec else {}
            if spec != self.spec:
                self.spec = spec
                self.revision += 1
            # the planner first: a view never says "draft" beside the planner's line
            planner = None
            if plan.state == "planning" and plan.planner:
                try:
                    planner = plan.manager.get(plan.planner, plan.repo)
                except DelegateError:
                    planner = None
            self._follow_planner(planner)
            self.title = record["title"]
            self.state = record["state"]
            self.state_text = state_words(record)
            self.reason = record["reason"]
            self.guide = guide(record)
            self.cut_off = record["cut_off"]
            self.base_branch = record["base_branch"]
            self.cost = usd_text(record["cost_usd"])
            self.subtasks = rows
            self.graph = graph_svg(rows)
            self.yaml = plan.spec.to_yaml() if plan.spec else ""
            self.cell = plan_cell(plan)
            self.integration = dict(record["integration"])
            self.failure = dict(record["failure"])

    def _on_change(self, _plan: Plan) -> None:
        if not self._closed:
            self._later.poke()

    def _read_later(self) -> None:
        if not self._closed:
            self.read()

    def _follow_planner(self, task: Task | None) -> None:
        """While the agent plans: its steps and cost, as they come (engine thread)."""
        with self._planner_lock:
            if task is self._planner_task:
                if task is not None:
                    self._planner_facts(task)
                return
            if self._unsubscribe_planner is not None:
                self._unsubscribe_planner()
                self._unsubscribe_planner = None
            self._planner_task = task
            if task is None:
                self.planner = {}
                return
            self._planner_facts(task)

        def heard(event: TaskEvent) -> None:
            if self._closed or event.kind not in ("usage", "state", "tool_call"):
                return
            with self._planner_lock:
                if self._planner_task is task:  # not once the plan is proposed
                    self._planner_facts(task)

        self._unsubscribe_planner = task.subscribe(heard)

    def _planner_facts(self, task: Task) -> None:
        self.planner = {
            "task": task.id,
            "state": str(task.state),
            "steps": task.usage.steps,
            "cost": usd_text(task.usage.cost_usd),
        }

    # -- the front end's requests -------------------------------------------------------------
    def _refused(self, exc: DelegateError) -> str:
        """A plan that cannot run lists its problems in the widget, beside the editor."""
        if isinstance(exc, PlanError):
            head, problems = problems_of(exc)
            if problems:
                self.errors = problems
                return head
        return str(exc)

    def _after(self) -> None:
        self.read()

    # Each `_do_<action>` runs on its own thread and returns the sentence to show.
    def _save(self, data: Any) -> PlanSpec:
        """Validate the edited spec (PlanSpec: every problem named) and save it."""
        spec = PlanSpec.from_dict(data).check(self.plan.repo)
        self.plan.edit(spec)
        self.errors = []
        return spec

    def _do_edit(self, content: Mapping[str, Any]) -> str:
        spec = self._save(content.get("spec"))
        count = len(spec.subtasks)
        return f"Saved: {count} subtask{'s' if count != 1 else ''}."

    def _do_run(self, content: Mapping[str, Any]) -> str:
        saved = ""
        if content.get("spec"):
            self._save(content["spec"])
            saved = "Your edits are saved. "
        self.plan.dispatch(**self.run_options)
        ready = sum(1 for s in self.plan.statuses() if s.state in ("ready", "queued", "running"))
        return f"{saved}Running: {ready} subtask{'s' if ready != 1 else ''} can start now."

    def _do_approve(self, content: Mapping[str, Any]) -> str:
        commit = self.plan.approve()
        return f"Integrated into {self.plan.base_branch} as {commit[:10]}."

    def _do_cancel(self, content: Mapping[str, Any]) -> str:
        self.plan.cancel()
        return "Cancelled: its running subtasks are cancelled, none starts any more."

    def _do_resume(self, content: Mapping[str, Any]) -> str:
        self.plan.resume()
        return f"Resumed: the plan is {self.plan.state}."

    def _do_restart(self, content: Mapping[str, Any]) -> str:
        name = str(content.get("name", ""))
        task = self.plan.restart(name)
        if task is None:
            return f"{name} starts again once its parents are settled."
        return f"{name} started again from its parents' heads as task {task.id}."

    def _do_approve_task(self, content: Mapping[str, Any]) -> str:
        name = str(content.get("name", ""))
        task = self.plan.task(name)
        commit = task.approve()
        return f"{name} approved: merged into {task.base_branch} as {commit[:10]}."

    def _do_discard(self, content: Mapping[str, Any]) -> str:
        self.errors = []
        return ""
