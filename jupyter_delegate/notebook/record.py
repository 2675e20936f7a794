"""The task record kept in the notebook: one output per task, updated in place.

Mime `application/vnd.jupyter-delegate.task+json` holds a compact record (outcome, state,
branch, base and head commits, diffstat, checks, summary, usage and cost, journal head),
at most 16 KB whatever the length of the run (a failing check keeps, as `failure_tail`,
the last lines of its output that `check_output.failure_tail` chose, fewer when the
record must shrink; not its whole output, which `%delegate checks ID` prints), with
`text/html` and `text/plain` fallbacks so JupyterLab, Notebook 7 and VS Code show it
without an extension. The output's `display_id` is updated at every state change, and
as the task spends (its usage: at most every `REPUBLISH_S`, less often when many tasks
run (`REPUBLISH_PER_S`), the last figure always), so
the card and the sidebar show the cost the live view shows; from
the engine thread the update is published under the kernel parent captured when the task
was submitted (ipykernel 7 routes output by parent; see NOTES.md), and from the kernel's
main thread (a decision made from Python in a later cell) under the running cell's.

One task, one record: the kernel remembers the cell that holds a task's record (the
`cellId` JupyterLab and Notebook 7 send with each execution, or the cell of a saved
notebook's record), and a record shown again from another cell (`%delegate resume ID`,
`show ID`) updates that one instead of adding a second. A kernel restarted or started anew
cannot reach an old output by its display_id (the front end forgets display ids with the
kernel): it publishes updates all the same, and our front end applies a record it hears to
every output of the same task (labextension/src/sync.ts).

Restore reads the records of a saved notebook with nbformat; the kernel never writes the
.ipynb (the front end owns it).
"""

from __future__ import annotations

import asyncio
import html
import json
import os
import threading
import time
import types
import typing
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from ..check_output import failure_tail, whole_output
from ..engine.model import PRICE_GUESSED, usd_text
from ..engine.tools import describe_input
from ..environment import ran_with
from ..errors import DelegateError, UsageError
from ..resources import text as resources_text
from ..task import RecordFields, Task, TaskEvent, TaskState

MIME = "application/vnd.jupyter-delegate.task+json"
RECORD_LIMIT = 16_000
RECORD_VERSION = 1
_UPDATE_ON = frozenset({"state", "checks", "review"})
REPUBLISH_S = 2.0  # the most often a task's spending republishes its record
# ... and all running tasks' records together at most this many times a second: each
# update lays the page out again (bench/RESULTS.md, 16 tasks streaming), so with more than
# four tasks running each record's spending is published less often (16 tasks: every 8 s).
REPUBLISH_PER_S = 2.0


class CheckRecord(TypedDict):
    """A check as the notebook record keeps it (see `_checks`)."""

    command: str
    exit_code: int
    passed: bool
    duration_s: float
    failure_tail: str
    hint: str


class DiffstatRow(TypedDict):
    file: str
    added: int | None  # None: a binary file
    removed: int | None


class HumanEditRecord(TypedDict):
    """A commit of the reviewer's own edits (`Task.human_edits`)."""

    commit: str
    files: list[str]
    message: str


class QuestionRecord(TypedDict):
    """The permission question a waiting task asks (the latest, when several): what the
    JupyterLab notification offers to allow or deny."""

    request_id: str
    tool: str
    command: str  # the command, path or pattern asked about
    reason: str


class NotebookRecord(RecordFields):
    """The record kept in a notebook output (MIME): the task record's facts, its checks as
    `CheckRecord`s, and what only the notebook shows. Its JSON schema (`record_schema`) is
    committed at labextension/schema/notebook-record.schema.json, and the front end's
    parser (labextension/src/model.ts) is tested against it. Cut to RECORD_LIMIT: a list
    it shortened says how long it was (`diffstat_files`, `preferences_count`)."""

    version: int
    checks: list[CheckRecord]
    # The plan ({"kind": "plan", "id", "name"}) or attempt group ({"kind": "attempts",
    # "id", "index", "of"}) the task is part of (Task.group); None: neither.
    group: dict[str, Any] | None
    diffstat: list[DiffstatRow]
    ran_with: list[str]
    repo_relative: NotRequired[str]  # the repository, from the notebook's folder
    diffstat_files: NotRequired[int]
    preferences_count: NotRequired[int]
    review_round: NotRequired[int]  # from round 2 on: the round of review it is in
    human_edits: NotRequired[list[HumanEditRecord]]  # the reviewer's own commits, if any
    question: NotRequired[QuestionRecord]  # while it waits: the question it asks


def record_schema() -> dict[str, Any]:
    """The JSON schema of `NotebookRecord`, made from its type hints: what
    labextension/schema/notebook-record.schema.json holds (a test keeps them the same)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "NotebookRecord",
        "description": "A task record in a notebook output "
        f"({MIME}), written by jupyter_delegate.notebook.record.compact_record.",
        **_schema_of(NotebookRecord),
    }


_JSON_TYPES = {str: "string", bool: "boolean", int: "integer", float: "number"}


def _schema_of(hint: Any) -> dict[str, Any]:
    """The JSON schema of a type hint of the records: a TypedDict (no other keys), a
    literal, str, bool, int, float, None, a union of those, a list, a dict or Any."""
    if typing.is_typeddict(hint):
        # Not `__required_keys__`: under `from __future__ import annotations` it misses
        # NotRequired (Python 3.11).
        hints = typing.get_type_hints(hint, include_extras=True)
        optional = {k for k, v in hints.items() if typing.get_origin(v) is NotRequired}
        return {
            "type": "object",
            "properties": {
                key: _schema_of(typing.get_args(value)[0] if key in optional else value)
                for key, value in hints.items()
            },
            "required": [key for key in hints if key not in optional],
            "additionalProperties": False,
        }
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return {"type": "null"}
    if hint in _JSON_TYPES:
        return {"type": _JSON_TYPES[hint]}
    if origin is typing.Literal:
        return {"type": "string", "enum": list(args)}
    if origin in (types.UnionType, typing.Union):
        parts = [_schema_of(arg) for arg in args]
        if all(part.keys() == {"type"} for part in parts):
            return {"type": [part["type"] for part in parts]}
        return {"anyOf": parts}
    if origin is list:
        return {"type": "array", "items": _schema_of(args[0])}
    if origin is dict:
        return {"type": "object"}
    if hint is Any:
        return {}
    raise TypeError(f"no JSON schema for {hint!r}")


def display_id_for(task: Task) -> str:
    return f"jupyter-delegate-{task.id}"


def compact_record(
    task: Task, *, name: str | None = None, notebook_dir: Path | None = None
) -> NotebookRecord:
    """The record, cut to fit RECORD_LIMIT bytes of JSON."""
    facts: dict[str, Any] = dict(task.to_record())
    # Not in the notebook's record (its schema): where it ran is a line of `ran_with`.
    workers, resources = facts.pop("workers"), facts.pop("resources")
    where = [f"on Dask worker {workers[-1]}"] if workers else []
    if resources:
        where.append(f"declared: {resources_text(resources)}")
    record: NotebookRecord = {
        **facts,  # type: ignore[typeddict-item]  # mypy wants the NotRequired keys here too
        "version": RECORD_VERSION,
        "name": name,
        "diffstat": _diffstat(task),
        "checks": _checks(task),
        "ran_with": ran_with(task.check_environment) + where,
    }
    if notebook_dir is not None:
        record["repo_relative"] = os.path.relpath(task.repo, notebook_dir)
    if task.review_round > 1:
        record["review_round"] = task.review_round
    if task.human_edits:
        record["human_edits"] = [
            {"commit": e["commit"], "files": e["files"][:20], "message": e["message"][:200]}
            for e in task.human_edits[-10:]
        ]
    if task.state == "waiting" and task.asked:
        asked = list(task.asked.values())[-1]
        record["question"] = {
            "request_id": asked.request_id,
            "tool": asked.tool,
            "command": _clip(describe_input(asked.input), 200),
            "reason": _clip(asked.reason, 200),
        }
    for limits in ((4000, 1500, 200), (1000, 400, 50), (300, 120, 10), (100, 40, 3)):
        fitted = _cut(record, *limits)
        if len(json.dumps(fitted)) <= RECORD_LIMIT:
            return fitted
    return _cut(record, 60, 0, 0)


def _checks(task: Task) -> list[CheckRecord]:
    """The checks as the record keeps them: no log path (a path on this machine) and, for
    a failing one, the last lines of its output instead of its last 4000 characters, and
    the environment problem they show (`hint`, "" when none)."""
    try:
        folder: Path | None = task.folder
    except DelegateError:  # a task no manager knows: its journal's tail is all there is
        folder = None
    return [
        {
            "command": check.command,
            "exit_code": check.exit_code,
            "passed": check.passed,
            "duration_s": check.duration_s,
            "failure_tail": "" if check.passed else failure_tail(whole_output(check, folder)),
            "hint": check.hint,
        }
        for check in task.checks
    ]


def _cut(record: NotebookRecord, text: int, tail: int, files: int) -> NotebookRecord:
    item, count = min(200, text), (20 if text >= 1000 else 5)  # one line; how many lines
    cut = record.copy()
    cut["summary"] = _clip(record["summary"], text)
    cut["error"] = _clip(record["error"], text)
    outcome = record["outcome"].copy()
    outcome["goal"] = _clip(outcome["goal"], text)
    outcome["checks"] = [_clip(line, item) for line in outcome["checks"][:count]]
    outcome["scope"] = [_clip(line, item) for line in outcome["scope"][:count]]
    outcome["constraints"] = [_clip(line, item) for line in outcome["constraints"][:count]]
    cut["outcome"] = outcome
    cut["checks"] = [
        {
            **c,
            "command": _clip(c["command"], item),
            "failure_tail": _last_lines(c["failure_tail"], tail),
            "hint": _clip(c["hint"], text),
        }
        for c in record["checks"][:count]
    ]
    cut["ran_with"] = [_clip(line, item) for line in record["ran_with"][:count]]
    cut["diffstat"] = record["diffstat"][:files]
    cut["flags"] = [_clip(f, item) for f in record["flags"][:count]]
    cut["check_commands"] = [_clip(c, item) for c in record["check_commands"][:count]]
    cut["skills_used"] = record["skills_used"][:count]
    preferences = record["preferences"]
    cut["preferences"] = [_clip(p, item) for p in preferences[:count]]
    if len(preferences) > count:
        cut["preferences_count"] = len(preferences)
    if len(record["diffstat"]) > files:
        cut["diffstat_files"] = len(record["diffstat"])
    return cut


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(0, limit - 1)] + "…"


def _last_lines(text: str, limit: int) -> str:
    """The last whole lines of `text` within `limit` characters (the last line's end when
    it alone is longer)."""
    if len(text) <= limit:
        return text
    if limit <= 0:
        return ""
    kept = text[-limit:]
    newline = kept.find("\n")
    return kept[newline + 1 :] if newline != -1 else "…" + kept[1:]


_diffstats: dict[tuple[str, str, str], list[DiffstatRow]] = {}


def _diffstat(task: Task) -> list[DiffstatRow]:
    """The files of the task's own change (from `Task.diff_base`, so commits made to the
    base branch since the task started are not counted), with lines added and removed."""
    head = task.merged_commit or task.head_commit
    if not head or head == task.base_commit:
        return []
    start = task.diff_base()
    key = (task.id, start, head)
    if key not in _diffstats:
        import git

        numstat = git.Repo(task.repo).git.diff("--numstat", start, head)
        rows: list[DiffstatRow] = []
        for line in numstat.splitlines():
            added, removed, path = line.split("\t", 2)
            rows.append({"file": path, "added": _int(added), "removed": _int(removed)})
        _diffstats[key] = rows
    return _diffstats[key]


def _int(text: str) -> int | None:
    return int(text) if text.isdigit() else None  # "-" for binary files


# -- fallbacks -------------------------------------------------------------------------------
STATE_COLOURS = {
    "queued": "#6b7280",
    "running": "#2563eb",
    "waiting": "#d97706",
    "review": "#7c3aed",
    "merged": "#16a34a",
    "rejected": "#6b7280",
    "failed": "#dc2626",
    "cancelled": "#6b7280",
    "interrupted": "#d97706",
    "paused": "#d97706",
}


# A task in review takes its verdict's colour (task.Verdict): only a proven one is green.
VERDICT_COLOURS = {
    "proven": "#15803d",
    "checks fail": "#b91c1c",
    "stopped by budget": "#b45309",
    "no checks": "#b45309",
    "no changes": "#4b5563",
}


def state_label(state: str, verdict: str | None = None, forced: bool = False) -> str:
    """The state as every view says it: `review · checks fail`, `merged (forced)`."""
    if forced:
        return f"{state} (forced)"
    return f"{state} · {verdict}" if verdict else str(state)


def badge(state: str, verdict: str | None = None) -> str:
    """A state, with a task in review's verdict, as a coloured badge (HTML)."""
    colour = VERDICT_COLOURS.get(verdict or "") or STATE_COLOURS.get(str(state), "#6b7280")
    slug = f" jd-verdict-{verdict.replace(' ', '-')}" if verdict else ""
    return (
        f'<span class="jd-badge{slug}" style="background:{colour};color:white;'
        f'border-radius:4px;padding:0 6px">{html.escape(state_label(state, verdict))}</span>'
    )


def text_plain(record: Mapping[str, Any]) -> str:
    state = state_label(record["state"], record.get("verdict"), bool(record.get("forced")))
    lines = [f"delegate task {record['id']} [{state}] {record['title']}"]
    lines.append(f"  branch {record['branch']} from {record['base_commit'][:10]}")
    for check in record["checks"]:
        lines.append(f"  {'PASS' if check['passed'] else 'FAIL'} {check['command']}")
        lines += [f"    | {line}" for line in check.get("failure_tail", "").splitlines()]
        lines += [f"    hint: {check['hint']}"] if check.get("hint") else []
    if record["summary"]:
        lines.append(f"  summary: {record['summary']}")
    usage = record["usage"]
    lines.append(f"  {cost_of(record)}, {usage['steps']} steps")
    return "\n".join(lines)


def text_html(record: Mapping[str, Any]) -> str:
    e = html.escape
    checks = "".join(
        f"<li>{'✅' if c['passed'] else '❌'} <code>{e(c['command'])}</code>"
        + (
            f'<pre style="margin:2px 0;white-space:pre-wrap">{e(c["failure_tail"])}</pre>'
            if c.get("failure_tail")
            else ""
        )
        + (f"<div>{e(c['hint'])}</div>" if c.get("hint") else "")
        + "</li>"
        for c in record["checks"]
    )
    files = "".join(
        f"<li><code>{e(d['file'])}</code> +{d['added'] or 0} −{d['removed'] or 0}</li>"
        for d in record["diffstat"]
    )
    usage = record["usage"]
    return (
        '<div class="jupyter-delegate-record" style="border:1px solid #ddd;border-radius:6px;'
        'padding:6px 10px;font-family:sans-serif;font-size:13px">'
        f"<b>{e(record.get('name') or record['title'])}</b> "
        f"{badge(record['state'], record.get('verdict'))} <code>{e(record['id'])}</code>"
        + (" <b>merged without proof (forced)</b>" if record.get("forced") else "")
        + f"<div>branch <code>{e(record['branch'])}</code></div>"
        + (f"<div>{e(record['summary'])}</div>" if record["summary"] else "")
        + (f"<ul>{checks}</ul>" if checks else "")
        + (f"<ul>{files}</ul>" if files else "")
        + f"<div>{e(cost_of(record))} · {usage['steps']} steps · "
        f"{e(', '.join(record['served_models']) or record['model'])}</div></div>"
    )


def cost_of(record: Mapping[str, Any]) -> str:
    """The record's cost, marked when its price was guessed from the model family."""
    guessed = f" ({PRICE_GUESSED})" if record.get("price_guessed") else ""
    return f"{usd_text(record['usage']['cost_usd'])}{guessed}"


def bundle(record: Mapping[str, Any]) -> dict[str, Any]:
    return {MIME: record, "text/html": text_html(record), "text/plain": text_plain(record)}


def running_cell_id(shell: Any) -> str | None:
    """The notebook cell whose execution is running (the `cellId` the front end sends in
    the request's metadata; None from nbclient, the terminal and tests)."""
    parent = shell.get_parent() if shell is not None and hasattr(shell, "get_parent") else None
    metadata = (parent or {}).get("metadata") or {}
    cell = metadata.get("cellId")
    return cell if isinstance(cell, str) and cell else None


class RecordDisplay:
    """One task's record output: shown once, then updated in place by display_id.

    `cell_id` is the cell that holds the output (None: not known, or not shown yet)."""

    _open: typing.ClassVar[weakref.WeakSet[RecordDisplay]] = weakref.WeakSet()

    @classmethod
    def spending_interval(cls) -> float:
        """How often a record's spending is republished now: `REPUBLISH_S`, or less
        often when so many tasks run that their records together would exceed
        `REPUBLISH_PER_S` updates a second."""
        running = sum(1 for shown in list(cls._open) if shown.task.state == TaskState.RUNNING)
        return max(REPUBLISH_S, running / REPUBLISH_PER_S)

    def __init__(
        self,
        task: Task,
        *,
        name: str | None = None,
        notebook_dir: Path | None = None,
        cell_id: str | None = None,
    ):
        self.task, self.name, self.notebook_dir = task, name, notebook_dir
        self.cell_id = cell_id
        self._shell, self._parent = kernel_parent()
        self._lock = threading.Lock()
        self._published_at = float("-inf")  # time.monotonic() of the last publication
        self._published_usage: tuple[int, float] | None = None  # (steps, cost) it showed
        self._spend_due = False  # a publication of the spending is scheduled
        self._closed = False
        self._unsubscribe = task.subscribe(self._on_event)
        RecordDisplay._open.add(self)

    def record(self) -> NotebookRecord:
        return compact_record(self.task, name=self.name, notebook_dir=self.notebook_dir)

    def show(self) -> None:
        """Show the record in the running cell, unless another cell holds it already:
        then that one is updated (one record per task in a notebook)."""
        from IPython import display as ipython_display

        here = running_cell_id(self._shell)
        # Without cell ids (nbclient, papermill, a terminal) every show is a display.
        if here is not None and self.cell_id is not None and here != self.cell_id:
            self.refresh()
            return
        show: Any = ipython_display.display
        show(bundle(self.record()), raw=True, display_id=display_id_for(self.task))
        self.cell_id = here

    def refresh(self) -> None:
        """Publish the current record from the calling thread's cell."""
        from IPython import display as ipython_display

        update: Any = ipython_display.update_display
        with self._lock:
            record = self.record()
            self._published_at = time.monotonic()
            self._published_usage = (record["usage"]["steps"], record["usage"]["cost_usd"])
            update(bundle(record), raw=True, display_id=display_id_for(self.task))

    def _on_spending(self) -> None:
        """The task spent (a model turn's usage): publish now if the last publication is
        `spending_interval()` old, else once it is (what it spent by then)."""
        if self._spend_due:
            return
        wait = self._published_at + self.spending_interval() - time.monotonic()
        if wait <= 0:
            self._publish()
            return
        self._spend_due = True
        try:
            asyncio.get_running_loop().call_later(wait, self._publish_spending)
        except RuntimeError:  # not on the engine's loop (a test feeding events)
            timer = threading.Timer(wait, self._publish_spending)
            timer.daemon = True
            timer.start()

    def _publish_spending(self) -> None:
        self._spend_due = False
        if self._closed:
            return
        usage = self.task.usage
        if (usage.steps, round(usage.cost_usd, 6)) != self._published_usage:
            self._publish()

    def _on_event(self, event: TaskEvent) -> None:
        """Publish the record again. A decision made from Python (`task.approve()` in a
        later cell) is heard on the kernel's main thread: published from the running cell,
        as a magic would, since nbclient and papermill drop output of a cell that has
        finished. The engine thread's events go out under the submitting cell's parent."""
        if event.kind == "usage":
            self._on_spending()
        elif event.kind in _UPDATE_ON:
            self._publish()

    def _publish(self) -> None:
        """Publish the record from the thread's cell (see `_on_event`)."""
        publish_under(self._shell, self._parent, self.refresh)

    def close(self) -> None:
        self._closed = True
        self._unsubscribe()
        RecordDisplay._open.discard(self)


def kernel_parent() -> tuple[Any, Any]:
    """The IPython shell (None outside IPython) and the header of the request it runs
    now: the cell an output shown now belongs to, for `publish_under`."""
    from IPython.core.getipython import get_ipython

    shell = get_ipython()
    parent = shell.get_parent() if shell is not None and hasattr(shell, "get_parent") else None
    return shell, parent


def publish_under(shell: Any, parent: Any, publish: Callable[[], None]) -> None:
    """Call `publish` (which displays): from the kernel's main thread as it is, in the
    running cell; from another thread under `parent`, the header of the cell that showed
    the output (ipykernel 7 routes a thread's output by its parent; NOTES.md)."""
    publisher: Any = getattr(shell, "display_pub", None)
    on_main = threading.current_thread() is threading.main_thread()
    if on_main or parent is None or not hasattr(publisher, "set_thread_parent"):
        publish()
        return
    token = publisher.set_thread_parent(parent)
    try:
        publish()
    finally:
        publisher.reset_thread_parent(token)


Saved = str | os.PathLike[str] | Mapping[str, Any]  # a notebook's path, or its JSON read


def read_notebook(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A saved notebook's JSON, to look for records in more than once. Read as the JSON it
    is, not through nbformat: records are only read, and nbformat's import (jsonschema and
    its format checkers) took 1.3 to 2 s of a `%load_ext` in a notebook the kernel can
    name."""
    where = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            notebook = json.load(handle)
    except OSError as exc:
        raise UsageError(
            f"{where} cannot be read ({exc.strerror or exc}); no task records were read from it."
        ) from exc
    except ValueError as exc:
        raise UsageError(
            f"{where} is not a notebook's JSON ({exc}); no task records were read from it. A "
            "save cut short leaves it so: Jupyter keeps the last checkpoint in "
            ".ipynb_checkpoints/ beside it."
        ) from exc
    return notebook if isinstance(notebook, dict) else {}


def read_records(saved: Saved, mime: str = MIME) -> Iterator[dict[str, Any]]:
    """Every task record (or record of `mime`) in a saved notebook, newest output of each
    task last."""
    for record, _cell in _records_and_cells(saved, mime):
        yield record


def recorded_cells(saved: Saved, mime: str = MIME) -> dict[str, str | None]:
    """The cell (its id; None in notebooks before nbformat 4.5) holding each task's (or
    record of `mime`'s) first record in a saved notebook: the one its later records
    update."""
    cells: dict[str, str | None] = {}
    for record, cell in _records_and_cells(saved, mime):
        cells.setdefault(record["id"], cell)
    return cells


def _records_and_cells(
    saved: Saved, mime: str = MIME
) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Each record of `mime` (a task's, or plan_record.PLAN_MIME) in a saved notebook,
    with the id of the cell holding it. A cell id that an earlier cell has too (a copied
    notebook's) names no cell: an update there could land in the wrong one."""
    notebook = saved if isinstance(saved, Mapping) else read_notebook(saved)
    cells = notebook.get("cells")
    owners: dict[object, int] = {}  # each cell id -> the first cell that has it
    for index, cell in enumerate(cells if isinstance(cells, list) else []):
        if not isinstance(cell, dict):
            continue
        cell_id = cell.get("id") if isinstance(cell.get("id"), str) else None
        if owners.setdefault(cell_id, index) != index:
            cell_id = None
        outputs = cell.get("outputs")
        for output in outputs if isinstance(outputs, list) else []:
            data = output.get("data") if isinstance(output, dict) else None
            record = data.get(mime) if isinstance(data, dict) else None
            if isinstance(record, dict) and record.get("id"):
                yield dict(record), cell_id
