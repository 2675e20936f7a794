"""The live parts of a task's view, two anywidgets: the live line (`LiveStatus`: how long
the task has run, what it does now, and the last lines of a command still running; it
ticks in the browser, and shows the view's header above the line), and the log's pages
with the words being streamed below them (`LogPages`).

The kernel sends facts that do not age: when the task started and ended (epoch seconds)
and its current activity (`Activity`: kind, verb, subject, since). The front end
(static/live.js) redraws "2m 05s · now: running `pytest -q` (4 s)" every second from
them, so the clock moves with no message from the kernel, through a model turn, a
permission wait or a long command. `Activity` folds a task's events into that activity
(pure: no widgets, no lock; the view calls it under its own lock); `status_line` is the
line live.js draws, in Python (what tests read, and the same words).

`LogPages` holds the HTML views.LiveLog renders, one trait a slot, so that a push sends
only the slot whose page changed and the words, in one message (a page that did not
change is not sent, and a tool call opened in it stays open); static/log.js replaces a
slot's HTML only when it is sent.

Not here: the rest of the view (views.py) and when traits are pushed (the view's flush:
`FLUSH_S`). Clocks: the front end reads its own clock against the kernel's epoch times;
a kernel on another machine with a skewed clock shows a skewed elapsed time (clamped at 0).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anywidget
import traitlets

from ..engine.tools import describe_input

STATIC = Path(__file__).parent / "static"
SUBJECT_CHARS = 80  # characters of a command or path named in the live line

# What the agent does with each tool, in the live line's words.
VERBS = {
    "bash": "running",
    "read": "reading",
    "write": "writing",
    "edit": "editing",
    "glob": "listing",
    "grep": "searching",
    "skill": "loading the skill",
}


class LiveStatus(anywidget.AnyWidget):
    """The task's header and the live line under it (see the module docstring).
    `header`: the header's HTML (header.header_html: name, state, spending), in the same
    model as the line so that a push of both is one message (`hold_sync`); `activity` is
    `{"kind": "model" | "tool" | "waiting" | "", "verb", "subject", "since"}`; `tail` the
    last lines of the running command's output ("" when none)."""

    _esm = STATIC / "live.js"
    _css = STATIC / "live.css"
    header = traitlets.Unicode("").tag(sync=True)
    state = traitlets.Unicode("").tag(sync=True)
    started_at = traitlets.Float(0.0).tag(sync=True)  # epoch s; 0: not known
    ended_at = traitlets.Float(0.0).tag(sync=True)  # epoch s; 0: running, or not known
    activity = traitlets.Dict().tag(sync=True)
    tail = traitlets.Unicode("").tag(sync=True)
    # the task whose early header (header.py) this view takes the place of ("": none)
    early = traitlets.Unicode("").tag(sync=True)


class LogPages(anywidget.AnyWidget):
    """The live log's pages and the words being streamed below them, in one model: a push
    of both is one message. Slot i (its trait `SLOTS[i]`) shows page `order[i]` of the log
    (-1: none yet); the slots are shown in page order, so a slot taken over by a newer page
    moves below the others. `text`: the words of the turn being streamed ("" between
    turns). Every value is HTML the kernel escaped (views.page_html, views.text_html)."""

    SLOTS = ("page_0", "page_1", "page_2")
    _esm = STATIC / "log.js"
    _css = STATIC / "log.css"
    page_0 = traitlets.Unicode("").tag(sync=True)
    page_1 = traitlets.Unicode("").tag(sync=True)
    page_2 = traitlets.Unicode("").tag(sync=True)
    order = traitlets.List(traitlets.Int(), default_value=[-1] * len(SLOTS)).tag(sync=True)
    text = traitlets.Unicode("").tag(sync=True)

    def show_page(self, number: int, html: str) -> None:
        """Page `number` of the log, in the slot it takes (`number` mod the slots); only a
        change is sent."""
        slot = number % len(self.SLOTS)
        if self.order[slot] != number:
            self.order = [number if i == slot else n for i, n in enumerate(self.order)]
        setattr(self, self.SLOTS[slot], html)

    def pages_html(self) -> str:
        """The pages as shown, oldest first (without the words being streamed)."""
        slots = zip(self.order, self.SLOTS, strict=True)
        return "".join(getattr(self, slot) for number, slot in sorted(slots) if number >= 0)


def tool_activity(name: str, tool_input: Any) -> tuple[str, str]:
    """A tool call as the live line names it: (verb, subject), e.g. ("running", "pytest -q")."""
    subject = describe_input(tool_input) if name != "skill" else ""
    if name == "skill" and isinstance(tool_input, Mapping):
        subject = str(tool_input.get("name", ""))
    if name == "bash" and isinstance(tool_input, Mapping):
        subject = str(tool_input.get("command", "")).strip()
    first = subject.splitlines()[0] if subject else ""
    if len(first) > SUBJECT_CHARS or first != subject:
        first = first[: SUBJECT_CHARS - 1] + "…"
    return VERBS.get(name, f"calling {name}"), first


class Activity:
    """What the task does now, folded from its events: the model at work (working,
    thinking, writing), a tool call running, or a wait for the user's permission; and
    since when (epoch seconds). Pure; `now` is passed in."""

    def __init__(self) -> None:
        self.kind = ""  # "model", "tool", "waiting" or "" (nothing: the task is not at work)
        self.verb = ""
        self.subject = ""
        self.since = 0.0
        self.tail = ""  # the last lines of the running command's output
        self._call: tuple[str, str, str] | None = None  # (id, verb, subject) running

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "verb": self.verb, "subject": self.subject, "since": self.since}

    def on_event(self, kind: str, data: Mapping[str, Any], now: float) -> None:
        if kind == "state":
            self._on_state(str(data["state"]), now)
        elif kind == "thinking":
            self._model("thinking", now)
        elif kind == "text":
            self._model("writing", now)
        elif kind == "tool_call" and data["name"] != "finish":
            verb, subject = tool_activity(data["name"], data["input"])
            self._call = (data["id"], verb, subject)
            self.tail = ""
            self._set("tool", verb, subject, now)
        elif kind == "tool_output" and self._call and data["tool_use_id"] == self._call[0]:
            self.tail = data["tail"]
        elif kind == "tool_result" and self._call and data["tool_use_id"] == self._call[0]:
            self._call, self.tail = None, ""
            self._set("model", "working", "", now)

    def _on_state(self, state: str, now: float) -> None:
        if state == "running":
            if self._call is not None:  # a permission was answered: the call runs now
                self._set("tool", self._call[1], self._call[2], now)
            else:
                self._set("model", "working", "", now)
        elif state == "waiting":
            self._set("waiting", "waiting for your permission", "", now)
        elif state == "queued":
            self._set("waiting", "queued", "", now)
        else:
            self._call, self.tail = None, ""
            self._set("", "", "", now)

    def _model(self, verb: str, now: float) -> None:
        if self.kind == "model":  # the same turn: its time runs on
            self.verb = verb
        else:
            self._set("model", verb, "", now)

    def _set(self, kind: str, verb: str, subject: str, now: float) -> None:
        if (kind, verb, subject) != (self.kind, self.verb, self.subject):
            self.kind, self.verb, self.subject, self.since = kind, verb, subject, now


def duration_text(seconds: float) -> str:
    """2m 05s, 5s: as the header has always said an elapsed time (and live.js says it)."""
    minutes, secs = divmod(max(0, int(seconds)), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def status_line(started_at: float, ended_at: float, activity: Mapping[str, Any], now: float) -> str:
    """The line live.js draws at `now`, as text: "2m 05s · now: running `pytest -q` (4 s)";
    "took 2m 05s" once the task stopped; "" when its start is not known."""
    if not started_at:
        return ""
    if ended_at:
        return f"took {duration_text(ended_at - started_at)}"
    line = duration_text(now - started_at)
    kind = activity.get("kind", "")
    if not kind:
        return line
    what = activity.get("verb", "")
    if kind == "model":
        what = f"the model is {what}"
    if activity.get("subject"):
        what += f" `{activity['subject']}`"
    return f"{line} · now: {what} ({since_text(now - activity.get('since', now))})"


def since_text(seconds: float) -> str:
    """How long the current activity has lasted: 4 s, 1m 05s."""
    return f"{max(0, int(seconds))} s" if seconds < 60 else duration_text(seconds)
