"""Best-of-N attempts compared side by side (`AttemptsView`, an anywidget).

One row per attempt, best first as `Attempts.ranked` orders them (rank, attempt, model,
effort, state, checks passed, lines added and removed, files, cost, time), live while
they run; Keep on an attempt in review approves it (its change merged into the base) and
the others are archived (best_of.py); an attempt that is not proven asks "keep anyway?"
first, naming why. Two selectors pick two attempts, and the difference between their
heads is shown, rendered as the task views render a diff (views.diff_lines_html), file
by file. An attempt's task id opens its own view in a new cell below (`%delegate show
ID`, by the `jd-insert-cell` event the notebook's front end answers).

The front end is one plain ES module, static/attempts.js.

Threading (DESIGN principle 6): the attempts' events arrive on the engine thread and only
schedule a new reading (at most every `READ_S`, on a thread: ranking runs git); a
message from the front end runs its action on a thread of its own; the diff is read on a
thread too. All of them only set traits.

Not here: ranking, keeping and archiving (best_of.py), each attempt's own review
(review.py, through its task's view).
"""

from __future__ import annotations

import html
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import traitlets as t

from ..best_of import Attempts
from ..engine.model import usd_text
from ..errors import DelegateError, NotProven
from ..task import TaskEvent
from .actions import ActionWidget
from .live import duration_text
from .record import STATE_COLOURS, VERDICT_COLOURS
from .views import CSS, diff_lines_html, split_diff

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
READ_S = 0.5  # the most often the attempts' events make the view read them again
DIFF_LINES = 6000  # lines of the difference rendered at all; the files after are named


def _styles() -> str:
    """The task views' diff styles (views.CSS) and the comparison's own."""
    shared = CSS.strip().removeprefix("<style>").removesuffix("</style>")
    return shared + "\n" + (STATIC / "attempts.css").read_text()


def difference_html(diff: str) -> str:
    """`git diff A B` of two attempts as HTML: file by file, each named with its counts
    (escaped; at most DIFF_LINES lines rendered, the files after named)."""
    _stat, files = split_diff(diff)
    if not files:
        return '<div class="jda-same">No difference: the two attempts have the same files.</div>'
    parts, shown = [], 0
    for file in files:
        title = (
            f"<code>{html.escape(file.path)}</code> "
            f'<span class="jd-pass">+{file.added}</span> '
            f'<span class="jd-fail">−{file.removed}</span>'
        )
        if shown >= DIFF_LINES:
            parts.append(f'<div class="jda-file jda-unshown">{title} (not shown)</div>')
            continue
        shown += len(file.lines)
        parts.append(
            f'<details open class="jda-file"><summary>{title}</summary>'
            f"{diff_lines_html(file.lines)}</details>"
        )
    return "".join(parts)


class AttemptsView(ActionWidget):
    """The attempts of one group, side by side: see the module docstring."""

    _esm = STATIC / "attempts.js"
    _css = t.Unicode(_styles()).tag(sync=True)

    group_id = t.Unicode("").tag(sync=True)
    goal = t.Unicode("").tag(sync=True)
    rows = t.List(t.Dict()).tag(sync=True)  # best first: Standing fields and how to show them
    compare = t.List(t.Int()).tag(sync=True)  # [a, b]: the attempts whose difference shows
    diff = t.Unicode("").tag(sync=True)  # difference_html of `compare`
    diff_error = t.Unicode("").tag(sync=True)
    asking = t.Int(0).tag(sync=True)  # the attempt "keep anyway?" is asked of (0: none)
    reasons = t.List(t.Unicode()).tag(sync=True)  # why that one is not proven
    kept = t.Int(0).tag(sync=True)  # the attempt kept (0: none yet)

    def __init__(self, attempts: Attempts, **kwargs: Any) -> None:
        first = attempts.tasks[0] if attempts.tasks else None
        super().__init__(group_id=attempts.id, goal=first.outcome.goal if first else "", **kwargs)
        self.attempts = attempts
        self._lock = threading.Lock()  # one reading at a time
        self._due_lock = threading.Lock()  # the engine thread's: never held while reading
        self._due = False
        self._closed = False
        self.read()
        self.observe(self._on_compare, names="compare")
        self._unsubscribes = [task.subscribe(self._on_event) for task in attempts.tasks]

    def __repr__(self) -> str:
        # A notebook saved without widget state shows this line; each attempt's task
        # record beside it tells its state.
        count, group = len(self.attempts.tasks), self.attempts.id
        return f"{count} attempts of group {group}, compared (live while its kernel runs)"

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            for unsubscribe in self._unsubscribes:
                unsubscribe()
        super().close()

    # -- the attempts' facts ------------------------------------------------------------------
    def read(self) -> None:
        """Rank the attempts again and show them."""
        with self._lock:
            ranked = self.attempts.ranked()
            tasks = {task.id: task for task in self.attempts.tasks}
            rows = []
            for standing in ranked:
                task = tasks[standing.task]
                verdict = task.verdict or ""
                rows.append(
                    {
                        **standing.to_dict(),
                        "name": task.name or "",
                        "verdict": verdict,
                        "colour": VERDICT_COLOURS.get(verdict)
                        or STATE_COLOURS.get(standing.state, "#6b7280"),
                        "cost": usd_text(standing.cost_usd),
                        "time": duration_text(standing.seconds)
                        if standing.seconds is not None
                        else "",
                        "has_commit": bool(task.merged_commit or task.head_commit),
                    }
                )
            self.rows = rows
            merged = [r["index"] for r in rows if r["state"] == "merged"]
            self.kept = merged[0] if merged else 0
            with_commits = [r["index"] for r in rows if r["has_commit"]]
            if not self.compare and len(with_commits) >= 2:
                self.compare = with_commits[:2]  # the best two, until the user picks

    def _on_event(self, event: TaskEvent) -> None:
        if self._closed or event.kind not in ("state", "checks", "usage", "review"):
            return
        with self._due_lock:
            if self._due:
                return
            self._due = True
        timer = threading.Timer(READ_S, self._read_due)
        timer.daemon = True
        timer.start()

    def _read_due(self) -> None:
        with self._due_lock:
            self._due = False
        if self._closed:
            return
        try:
            self.read()
        except Exception:  # a view never stops the engine that told it
            log.exception("the attempts view of %s could not read them", self.attempts.id)

    # -- the difference of two attempts -------------------------------------------------------
    def _on_compare(self, change: Mapping[str, Any]) -> None:
        threading.Thread(target=self._read_diff, daemon=True, name="attempts-diff").start()

    def _read_diff(self) -> None:
        wanted = list(self.compare)
        if len(wanted) != 2:
            self.diff, self.diff_error = "", ""
            return
        try:
            shown, problem = difference_html(self.attempts.diff(*wanted)), ""
        except DelegateError as exc:
            shown, problem = "", str(exc)
        except Exception as exc:  # git's errors: one line where the diff would be
            shown, problem = "", f"The difference cannot be shown: {exc}"
        if wanted == list(self.compare):  # the user picked others meanwhile: theirs shows
            self.diff, self.diff_error = shown, problem

    # -- the front end's requests -------------------------------------------------------------
    def _after(self) -> None:
        self.read()

    def _do_keep(self, content: Mapping[str, Any]) -> str:
        """Keep one: approve it (the others are archived). Not proven, it asks first."""
        index = int(content.get("index", 0))
        force = bool(content.get("force"))
        task = self.attempts.attempt(index)
        try:
            commit = self.attempts.keep(index, force=force)
        except NotProven:
            self.asking, self.reasons = index, list(task.unproven_reasons)
            return ""
        self.asking, self.reasons = 0, []
        how = " without proof (recorded)" if force else ""
        return (
            f"Kept attempt {index}: merged into {task.base_branch} as {commit[:10]}{how}; "
            "the others are archived."
        )

    def _do_not_now(self, content: Mapping[str, Any]) -> str:
        self.asking, self.reasons = 0, []
        return ""
