"""The widgets of a delegated task: the live view under a `%%delegate` cell, the review in
place, and a board of many tasks (ipywidgets 8).

Here: `TaskView` (a header with state and cost and the live line below it, one anywidget
that ticks in the browser with what the task does now and a running command's last lines
(`live.py`), the agent's words and tool calls as they stream, the permission card while
the task waits, and in review the `ReviewView` of review.py (the bar with the verdict and
the approve / request-changes / reject actions, the diff, line comments, rounds) above
the checks, context and flags), `LiveLog` (the last entries of a task's log, in pages of
HTML), `Board` (one row per task, approve or reject from the row), and the pure functions
that render a task, a check or a diff to escaped HTML. Approve on a task that is not
proven (the API refuses it) merges nothing: it shows why, and a "Merge anyway" button,
the second, explicit click that forces it (in the ReviewView's bar, and on the board's
rows).

Not here: deciding anything (every button calls the `Task` API; the `DelegateError` it
raises is shown in the view, never raised from a handler), the header's HTML and the
early header a cell shows before its view draws (`header.py`), the notebook record output
and restore (`record.py`), the magics (`magics.py`), and any `display()`: the caller shows
the widget.

Threading (DESIGN principle 6, NOTES "Jupyter"): task events arrive on the engine thread
and buttons on the kernel's main thread, so the views only ever set traits (`value`,
`children`, `disabled`, the hiding class), under one lock per view, and never hold that
lock while calling the task (an approve waits on the engine, whose events take the lock).
The review, which runs git, is built on its own thread once per review round.

Cost in the kernel and the browser (bench/RESULTS.md, kernel responsiveness, issue 22):
every trait set is a comm message the engine thread serialises, and every new widget is a
comm open, and two more for its layout and style unless they are shared: the views share
their styles and every layout that nothing changes (`shared`; a widget is hidden by a
class, `show`, not by its layout), and the parts a view may never need (the permission
card, Cancel's question, the folded log's line) are made when it first does: a view opens
18 comms, not 90, and the front end makes that many models before it draws the view
(bench/ui_latency.py: the header after shift-enter). So the live part of a view is a fixed
set of widgets: the header and the live line, one model (`live.LiveStatus`: a push of
both is one message; its clock ticks in the browser, so time passing costs no message; a
running command's last lines come at most twice a second, engine/output_tail.py), and
the log with the words being streamed below it, one model too (`live.LogPages`). The log
is the last `LOG_PAGES` pages of `PAGE_ENTRIES` entries, one slot each, reused in turn
(earlier entries are counted in one line above them; a page is at most `LOG_CHARS` of
HTML, the most one message carries).
Why pages: a front end redraws a piece of HTML whole when it is set, which closes the
tool calls the user opened in it. A page's HTML depends on its entries only, so a page
that did not change is set to the value it has, which sends nothing: a push sends only
the page that changed (with the words, in one message), and a tool call opened elsewhere
stays open while the task runs.
Events only change the view's state; what they change is pushed soon (`_push_soon`: on
the loop's next turn when nothing was pushed in the last `FLUSH_S`, so a first word shows
as it arrives; batched, one push per `FLUSH_S`, only while events keep coming), and at
once when the task changes state, so the last word before review or the end is always
shown.
"""

from __future__ import annotations

import asyncio
import functools
import html
import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets
from ipywidgets import Layout
from ipywidgets.widgets.widget_bool import ToggleButtonStyle
from ipywidgets.widgets.widget_string import HTMLStyle, TextStyle

from ..check_output import failure_tail, printable, whole_output
from ..engine.tools import describe_input as brief
from ..errors import DelegateError, NotProven
from ..outcome import in_scope
from ..policy import PermissionRequest
from ..review import FEEDBACK_PREFIX
from ..task import CheckResult, Task, TaskEvent, TaskState
from .header import cost_text, header_html
from .live import Activity, LiveStatus, LogPages
from .record import badge, kernel_parent, publish_under

if TYPE_CHECKING:
    from .review import ReviewView

S = TaskState
log = logging.getLogger(__name__)
FLUSH_S = 0.1  # the most often a live view's changes are pushed to the front end, under load
QUICK_S = 0.02  # the wait for a second push after a push that followed an idle spell
PAGE_ENTRIES = 4  # entries of a page of the live log: a page is sent only when it changes
LOG_PAGES = len(LogPages.SLOTS)  # pages kept, the newest one maybe not yet full
LOG_ENTRIES = LOG_PAGES * PAGE_ENTRIES  # entries kept and shown at most; earlier ones counted
LOG_CHARS = 16_000  # a page shows its newest entries that fit in this much HTML: the most
# one message sends, and room for the words before the largest tool call (about 12,000)
INPUT_HEAD = 4000  # characters of a tool call's input shown in the log
MAX_DIFF_LINES = 5000  # lines of one file rendered at all; the rest is named
OUTPUT_TAIL = 8000  # characters of a tool's output shown in the log
SHOWS_REVIEW = frozenset({S.REVIEW, S.MERGED, S.REJECTED})

CSS = """<style>
.jd-header .jd-meta, .jd-note, .jd-thinking {color: #57606a; font-size: 90%}
.jd-badge {color: white; border-radius: 4px; padding: 0 6px; font-size: 90%}
.jd-text {white-space: pre-wrap; margin: 2px 0; line-height: 1.4}
.jd-tool summary {cursor: pointer; font-family: monospace}
.jd-tool pre, .jd-checks pre {max-height: 24em; overflow: auto; margin: 2px 0}
.jd-error {color: #cf222e; white-space: pre-wrap}
.jd-checks td, .jd-checks th {padding: 1px 8px; text-align: left; vertical-align: top}
.jd-checks pre.jd-tail {border-left: 3px solid #cf222e; padding: 2px 6px; white-space: pre-wrap;
  max-height: none}
.jd-hint {color: #9a6700; margin: 2px 0}
.jd-whole summary {cursor: pointer; color: var(--jp-ui-font-color2, #57606a); font-size: 90%}
.jd-pass {color: #1a7f37; font-weight: bold}
.jd-fail {color: #cf222e; font-weight: bold}
.jd-diff {font-family: monospace; font-size: 12px; overflow-x: auto}
.jd-diff div {white-space: pre; min-height: 1.2em; line-height: 1.35}
.jd-add {background: rgba(46, 160, 67, 0.18); color: var(--jp-content-font-color1, #1f2328)}
.jd-del {background: rgba(248, 81, 73, 0.18); color: var(--jp-content-font-color1, #1f2328)}
.jd-hunk {background: rgba(84, 174, 255, 0.15); color: var(--jp-content-font-color2, #0550ae)}
.jd-file {color: #57606a; font-weight: bold}
.jd-ask pre.jd-command {font-size: 13px; padding: 4px 8px; white-space: pre-wrap;
  background: var(--jp-layout-color2, #f6f8fa); color: var(--jp-content-font-color1, #1f2328)}
.jd-ask .jd-diff, .jd-ask pre {max-height: 20em; overflow: auto; margin: 4px 0}
.jd-grant code {font-weight: bold}
.jd-round {border-top: 2px solid var(--jp-border-color1, #d0d7de); margin: 10px 0 2px;
  padding-top: 2px; font-weight: bold; color: var(--jp-ui-font-color1, #1f2328)}
.jd-feedback {border-left: 3px solid var(--jp-brand-color1, #0969da); padding: 2px 8px;
  white-space: pre-wrap; margin: 2px 0}
.jd-log-summary, .jd-ask .jd-note, .jd-log-note {color: var(--jp-ui-font-color2, #57606a)}
.jd-hidden {display: none !important}
</style>"""

esc = html.escape


# -- rendering: pure functions of a task, an event or a diff ------------------------------
def status_html(task: Task) -> str:
    """What the state means for the user, and what to do next."""
    state, tid = task.state, esc(task.id)
    if state == S.MERGED:
        commit = esc((task.merged_commit or "")[:10])
        merged = f"Merged into <code>{esc(task.base_branch or '')}</code> as <code>{commit}</code>"
        if task.forced:
            return f"{merged}, without proof (forced): {esc('; '.join(task.forced_reasons))}."
        return merged + "."
    if state == S.REJECTED:
        if task.archive_ref is None:
            return "Rejected; it had no work to archive."
        return f"Rejected; the work is archived at <code>{esc(task.archive_ref)}</code>."
    if state == S.FAILED:
        way_out = (
            f"The cause may pass: continue with <code>%delegate resume {tid}</code>, or "
            f"archive its work with <code>%delegate reject {tid}</code>."
            if task.transient
            else f"Archive its work with <code>%delegate reject {tid}</code> and delegate again."
        )
        return f'<div class="jd-error">Failed: {esc(task.error)}</div>{way_out}'
    if state == S.CANCELLED:
        return "Cancelled; the work so far is archived."
    if state in (S.INTERRUPTED, S.PAUSED):
        return f"{esc(str(state).capitalize())}. Continue with <code>%delegate resume {tid}</code>."
    if state == S.WAITING:
        return "Waiting for your permission."
    return ""


def text_html(text: str) -> str:
    return f'<div class="jd-text">{esc(text)}</div>'


def note_html(text: str, css: str = "") -> str:
    return f'<div class="jd-note{" " + css if css else ""}">{esc(text)}</div>'


def thinking_html(text: str) -> str:
    """The model's summarised reasoning, folded (redacted: it is journaled as the API sent
    it, signed, so it is redacted only where it is shown)."""
    from ..journal import redact

    shown = esc(redact(_tail(text)))
    return f'<details class="jd-thinking"><summary>reasoning</summary>{shown}</details>'


def round_html(number: int, feedback: str) -> str:
    """The divider of a new round of work, and the reviewer's feedback that began it."""
    said = (
        f'<div class="jd-feedback"><b>Your feedback</b>\n{esc(feedback)}</div>' if feedback else ""
    )
    return f'<div class="jd-round">round {number}</div>{said}'


def permission_note(data: Mapping[str, Any]) -> str:
    """What became of a permission question, for the log: who allowed or denied which
    call, what it granted for the task, and what the agent was told."""
    call = f"{data['tool']} {brief(data.get('input', {}))}".strip()
    status, by = data["status"], data.get("by", "human")
    who = {"human": "you", "timeout": "nobody answered in time:", "headless": "nobody to ask:"}
    if by in ("timeout", "headless"):
        return f"{who[by]} {call} {status}"
    text = f"{who.get(by, by)} {'allowed' if status == 'allowed' else 'denied'} {call}"
    if granted := data.get("granted"):
        text += f", and {' and '.join(granted)} for the rest of the task"
    elif status == "allowed":
        text += " once"
    if message := data.get("message"):
        text += f"; the agent is told: {message}"
    return text


EARLIER_SHOWN = 40  # entries "show earlier" renders at most


def journal_entries(lines: Iterable[Mapping[str, Any]]) -> list[LogEntry]:
    """The entries of the live log, rebuilt from the task's journal lines (`type`, `data`):
    the agent's words and reasoning, its tool calls with their results, the permission
    answers, the rounds and the compactions (notices, which are not journaled, are not)."""
    log = LiveLog(max_pages=None)
    round_ = 1
    for line in lines:
        kind, data = line.get("type"), line.get("data") or {}
        if kind == "assistant":
            for block in data.get("content", []):
                if block.get("type") == "text" and block.get("text"):
                    log.add_text(block["text"])
                elif block.get("type") == "thinking" and block.get("thinking"):
                    log.add_thinking(block["thinking"])
                elif block.get("type") == "tool_use" and block.get("name") != "finish":
                    log.add_call(block)
        elif kind == "tool_result":
            log.add_result(data)
        elif kind == "user":
            text = "".join(
                b.get("text", "") for b in data.get("content", []) if isinstance(b, dict)
            )
            if text.startswith(FEEDBACK_PREFIX):
                round_ += 1
                log.add_round(round_, text.removeprefix(FEEDBACK_PREFIX))
        elif kind == "permission" and data.get("decision") and data.get("by") != "policy":
            done = "allowed" if data["decision"] == "allow" else "denied"
            log.add_note(permission_note({**data, "status": done}), "jd-log-note")
        elif kind == "compacted":
            who = "the API" if data.get("by") == "server" else "the harness (a summary)"
            log.add_note(f"conversation compacted by {who}")
    return log.entries()


def earlier_entries_html(entries: Sequence[LogEntry], before: int, task_id: str) -> str:
    """The entries the live log no longer shows, `entries[:before]`: the last
    `EARLIER_SHOWN` of them, each bounded as in the live log, after a line counting the
    rest."""
    earlier = list(entries[: max(0, before)])
    shown = earlier[-EARLIER_SHOWN:]
    if not shown:
        return note_html("Nothing earlier in the journal.")
    rest = len(earlier) - len(shown)
    more = (
        note_html(f"… {rest} earlier still: `jupyter delegate show {task_id}` prints them all.")
        if rest
        else ""
    )
    return more + "".join(entry.lead + entry.html for entry in shown)


def error_html(message: str) -> str:
    return f'<div class="jd-error">{esc(message)}</div>'


def tool_html(call: Mapping[str, Any], result: Mapping[str, Any] | None) -> str:
    """A tool call, collapsed: its name and brief input; open: the input and output."""
    summary = f"{call['name']} {brief(call['input'])}"
    body = f"<pre>{esc(_head(json.dumps(call['input'], indent=2, ensure_ascii=False)))}</pre>"
    if result is None:
        mark = "…"
    else:
        mark = _result_mark(result)
        body += f"<pre>{esc(_tail(result.get('content', '')))}</pre>"
    return (
        f'<details class="jd-tool"><summary>{esc(summary)} '
        f'<span class="jd-note">{esc(mark)}</span></summary>{body}</details>'
    )


def _result_mark(result: Mapping[str, Any]) -> str:
    if result.get("denied"):
        return "denied"
    mark = "error" if result.get("is_error") else "ok"
    if "exit_code" in result:
        mark += f", exit {result['exit_code']}"
    if "duration_s" in result:
        mark += f", {result['duration_s']:.1f}s"
    return mark


def _tail(content: Any) -> str:
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if len(text) <= OUTPUT_TAIL:
        return text
    return f"[… {len(text) - OUTPUT_TAIL} characters before]\n" + text[-OUTPUT_TAIL:]


def _head(text: str) -> str:
    if len(text) <= INPUT_HEAD:
        return text
    return text[:INPUT_HEAD] + f"\n[… {len(text) - INPUT_HEAD} characters more]"


def earlier_html(hidden: Mapping[str, int]) -> str:
    """The line that stands for the log entries no longer shown."""
    words = {"tool": "tool call", "text": "message", "note": "note", "round": "round"}
    counts = [
        f"{n} earlier {word}{'s' if n != 1 else ''}"
        for kind, word in words.items()
        if (n := hidden.get(kind, 0))
    ]
    if not counts:
        return ""
    listed = ", ".join(counts[:-1]) + (" and " if len(counts) > 1 else "") + counts[-1]
    return note_html(f"… {listed} not shown here; “show earlier” reads them from the journal.")


def log_summary_html(log: LiveLog, rounds: int, task: Task) -> str:
    """The folded log in one line: how much the agent did, over how many rounds."""
    counts = log.counts()
    if not counts:  # the task ran before this view was made: its journal has the steps
        steps = f"{task.usage.steps} steps, not followed by this view"
        return f'<span class="jd-log-summary"><b>Agent log</b>: {esc(steps)}</span>'

    calls, texts = counts.get("tool", 0), counts.get("text", 0)
    parts = [
        f"{calls} tool call{'s' if calls != 1 else ''}",
        f"{texts} message{'s' if texts != 1 else ''}",
    ]
    if rounds > 1:
        parts.append(f"{rounds} rounds")
    return f'<span class="jd-log-summary"><b>Agent log</b>: {esc(", ".join(parts))}</span>'


@dataclass
class LogEntry:
    """One entry of the live log: the agent's words, a tool call, or a note; `lead`: the
    model's reasoning before it, folded."""

    kind: str  # "text", "tool", "note" or "round" (a divider and the feedback that began it)
    html: str
    call: Mapping[str, Any] | None = None
    lead: str = ""


def page_html(entries: Sequence[LogEntry]) -> str:
    """A page of the live log: its newest entries that fit in `LOG_CHARS` (the newest
    always), oldest first, after a line counting the rest of the page. It depends on the
    entries alone, so a page that did not change renders to the same string."""
    shown: list[str] = []
    size = 0
    for entry in reversed(entries):
        size += len(entry.lead) + len(entry.html)
        if shown and size > LOG_CHARS:
            break
        shown.append(entry.lead + entry.html)
    hidden = Counter(entry.kind for entry in entries[: len(entries) - len(shown)])
    return earlier_html(hidden) + "".join(reversed(shown))


class LiveLog:
    """The last entries of a task's log, in pages of HTML: what the agent said, the tool
    calls (collapsible, with their results once they arrive) and notes. Entries are
    numbered as they come, entry k on page k // `PAGE_ENTRIES`; the last `LOG_PAGES` pages
    are kept, and an older page is dropped whole, its entries only counted, so the HTML
    stays under `LOG_PAGES` x `LOG_CHARS` however long the task runs. A page is rendered from its
    own entries only: adding an entry or a result changes one page's HTML and no other
    (a view sends only that page). Pure: no widgets, no lock."""

    def __init__(self, max_pages: int | None = LOG_PAGES) -> None:
        self._max_pages = max_pages  # None: keep every page (a log rebuilt from a journal)
        self._pages: deque[list[LogEntry]] = deque()  # the pages kept, oldest first
        self._first_page = 0  # the number of the oldest page kept
        self._dropped: Counter[str] = Counter()  # entries no longer kept, by kind
        self._calls: dict[str, LogEntry] = {}  # tool calls waiting for their result
        self._thought = ""  # reasoning waiting for the entry it leads to

    def add_text(self, text: str) -> None:
        self._add(LogEntry("text", text_html(_tail(text))))

    def add_note(self, text: str, css: str = "") -> None:
        self._add(LogEntry("note", note_html(text, css)))

    def add_round(self, number: int, feedback: str) -> None:
        """A divider where a round of review starts again, with the feedback that began it."""
        self._add(LogEntry("round", round_html(number, feedback)))

    def kept(self) -> int:
        """How many entries the kept pages hold."""
        return sum(len(page) for page in self._pages)

    def counts(self) -> Counter[str]:
        """How many entries of each kind the log has had, kept or not."""
        return Counter(entry.kind for entry in self.entries()) + self._dropped

    def entries(self) -> list[LogEntry]:
        """The entries kept, oldest first."""
        return [entry for page in self._pages for entry in page]

    def add_thinking(self, text: str) -> None:
        """The model's reasoning: folded at the head of the entry that follows it (it
        takes no place of its own in the log)."""
        self._thought += thinking_html(text)

    def add_call(self, call: Mapping[str, Any]) -> None:
        entry = LogEntry("tool", tool_html(call, None), call)
        self._calls[call["id"]] = entry
        self._add(entry)

    def add_result(self, result: Mapping[str, Any]) -> None:
        entry = self._calls.pop(result["tool_use_id"], None)
        if entry is not None and entry.call is not None:
            entry.html = tool_html(entry.call, result)

    def _add(self, entry: LogEntry) -> None:
        entry.lead, self._thought = self._thought, ""
        if not self._pages or len(self._pages[-1]) == PAGE_ENTRIES:
            self._pages.append([])
            if self._max_pages is not None and len(self._pages) > self._max_pages:
                self._drop(self._pages.popleft())
        self._pages[-1].append(entry)

    def _drop(self, page: list[LogEntry]) -> None:
        """Count a page's entries; its tool calls will show no result any more."""
        self._first_page += 1
        for old in page:
            self._dropped[old.kind] += 1
            if old.call is not None:
                self._calls.pop(old.call["id"], None)

    def earlier(self) -> str:
        """The line counting the entries of the pages no longer kept."""
        return earlier_html(self._dropped)

    def pages(self) -> list[tuple[int, str]]:
        """The number and the HTML of each page kept, oldest first."""
        return [(self._first_page + i, page_html(page)) for i, page in enumerate(self._pages)]

    def html(self) -> str:
        """The whole log as shown: the line counting the earlier entries, then the pages."""
        return self.earlier() + "".join(page for _, page in self.pages())


WRITE_HEAD = 20  # lines of a file the agent asks to write, shown on the permission card
EDIT_LINES = 60  # lines of an edit's diff shown on the permission card


def permission_html(request: PermissionRequest, more: int) -> str:
    """The question, in the user's words: a command as a command, an edit as a small diff,
    a write as the new file's head; why it asks; and the rule "allow for this task" adds."""
    waiting = f" ({more} more after this one)" if more else ""
    tool = request.tool.lower()
    tool_input = request.input if isinstance(request.input, Mapping) else {}
    path = str(tool_input.get("file_path") or tool_input.get("path") or "")
    if tool == "bash" and isinstance(tool_input.get("command"), str):
        asks = "The agent asks to run a command"
        body = f'<pre class="jd-command">$ {esc(tool_input["command"])}</pre>'
    elif tool == "edit" and path:
        asks = f"The agent asks to edit <code>{esc(path)}</code>"
        body = edit_diff_html(tool_input)
    elif tool == "write" and path:
        asks = f"The agent asks to write <code>{esc(path)}</code>"
        body = file_head_html(str(tool_input.get("content", "")))
    else:
        asks = f"The agent asks to use <code>{esc(request.tool)}</code>"
        dumped = json.dumps(request.input, indent=2, ensure_ascii=False)
        body = f"<pre>{esc(_head(dumped))}</pre>"
    if request.rules:
        what = "this prefix" if tool == "bash" else "this file"
        rules = " and ".join(f"<code>{esc(rule)}</code>" for rule in request.rules)
        grant = f"“Allow {what} for the task” adds {rules}: such calls run without asking."
    else:
        grant = "This call can only be allowed once."
    return (
        f'<div class="jd-ask"><b>{asks}</b>{esc(waiting)}{body}'
        f'<div class="jd-note">Why it asks: {esc(request.reason)}</div>'
        f'<div class="jd-note jd-grant">{grant}</div></div>'
    )


def edit_diff_html(tool_input: Mapping[str, Any]) -> str:
    """An edit's `old_string` -> `new_string` as a small unified diff (escaped)."""
    import difflib

    old, new = str(tool_input.get("old_string", "")), str(tool_input.get("new_string", ""))
    lines = list(
        difflib.unified_diff(old.splitlines(), new.splitlines(), "before", "after", lineterm="")
    )[2:]  # the ---/+++ header names nothing the card does not say
    shown = lines[:EDIT_LINES]
    body = "".join(f'<div class="{_line_class(line)}">{esc(line) or " "}</div>' for line in shown)
    if len(lines) > len(shown):
        body += note_html(f"… {len(lines) - len(shown)} more lines of the diff")
    every = note_html("every occurrence") if tool_input.get("replace_all") else ""
    return f'<div class="jd-diff">{body}</div>{every}'


def file_head_html(content: str) -> str:
    """The first lines of a file the agent asks to write."""
    lines = content.splitlines()
    head = "\n".join(lines[:WRITE_HEAD])
    more = f"… {len(lines) - WRITE_HEAD} more lines" if len(lines) > WRITE_HEAD else ""
    size = f"{len(lines)} line{'s' if len(lines) != 1 else ''}"
    return f"<pre>{esc(head)}</pre>" + note_html(more or size)


def unproven_html(reasons: str) -> str:
    """The confirmation an Approve of an unproven task asks for."""
    if not reasons:
        return ""
    return (
        f'<div class="jd-error"><b>Not proven</b>: {esc(reasons)}. Nothing was merged.</div>'
        + note_html(
            "Merge anyway? The journal records that it was merged without proof, and why. "
            "Or request changes so the agent fixes it."
        )
    )


def checks_html(task: Task) -> str:
    """The checks as a table; under a failing one, the last lines of its output, the
    environment problem they show (if any) and, folded, all of it (the last `OUTPUT_TAIL`
    characters; the magic prints the rest)."""
    if not task.checks:
        return note_html("No checks were given.")
    folder = task.folder
    rows = "".join(
        _check_row(task, number, check, folder) for number, check in enumerate(task.checks, 1)
    )
    from ..environment import ran_with

    environment = "".join(note_html(line) for line in ran_with(task.check_environment))
    return (
        '<table class="jd-checks"><tr><th>check</th><th>result</th><th>time</th>'
        f"<th>output</th></tr>{rows}</table>{environment}"
    )


def _check_row(task: Task, number: int, check: CheckResult, folder: Path) -> str:
    def row(verdict: str, output: str) -> str:
        return (
            f"<tr><td><code>{esc(check.command)}</code></td><td>{verdict}</td>"
            f"<td>{check.duration_s:.1f}s</td><td>{output}</td></tr>"
        )

    if check.passed:
        output = (
            f"<details><summary>exit {check.exit_code}</summary>"
            f"<pre>{esc(printable(check.output_tail))}</pre></details>"
        )
        return row('<span class="jd-pass">PASS</span>', output)
    whole = printable(whole_output(check, folder))
    tail = failure_tail(whole)
    if not tail:
        hint = f"; {check.hint}" if check.hint else ""
        return row(
            '<span class="jd-fail">FAIL</span>', esc(f"exit {check.exit_code}, no output{hint}")
        )
    everything = (
        f'<details class="jd-whole"><summary>all of its output</summary><pre>{esc(_tail(whole))}'
        f"</pre>{note_html(f'`%delegate checks {task.id} {number}` prints it whole.')}</details>"
    )
    hint = f'<div class="jd-hint">{esc(check.hint)}</div>' if check.hint else ""
    return row('<span class="jd-fail">FAIL</span>', f"exit {check.exit_code}") + (
        '<tr class="jd-check-output"><td colspan="4">'
        f'<pre class="jd-tail">{esc(tail)}</pre>{hint}{everything}</td></tr>'
    )


def summary_html(task: Task) -> str:
    return f"<b>Summary</b>{text_html(task.summary or '(none)')}"


def flags_html(flags: Sequence[str]) -> str:
    if not flags:
        return ""
    items = "".join(f"<li>{esc(flag)}</li>" for flag in flags)
    return f"<b>Worth a look</b><ul>{items}</ul>"


# -- diffs -------------------------------------------------------------------------------
@dataclass(frozen=True)
class FileDiff:
    """One file's part of a `git diff --patch`, from its `diff --git` line."""

    path: str
    lines: tuple[str, ...]
    added: int
    removed: int

    @property
    def title(self) -> str:
        return f"{self.path}  +{self.added} −{self.removed}"


def split_diff(text: str) -> tuple[str, list[FileDiff]]:
    """The diffstat before the first file, and each file's part."""
    stat: list[str] = []
    sections: list[list[str]] = []
    for line in text.splitlines():
        if line.startswith("diff --git "):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            stat.append(line)
    return "\n".join(stat).strip("\n"), [_file_diff(section) for section in sections]


def _file_diff(lines: list[str]) -> FileDiff:
    in_hunks = False
    added = removed = 0
    for line in lines:
        in_hunks = in_hunks or line.startswith("@@")
        added += in_hunks and line.startswith("+")
        removed += in_hunks and line.startswith("-")
    return FileDiff(_path_of(lines), tuple(lines), added, removed)


def _path_of(lines: list[str]) -> str:
    """The file's path: from `+++ b/` (or `--- a/` when deleted), else the header."""
    for prefix in ("+++ b/", "--- a/", "rename to "):
        for line in lines:
            if line.startswith(prefix):
                return line[len(prefix) :]
    header = lines[0].removeprefix("diff --git ")
    return header.split(" b/", 1)[-1]


def _line_class(line: str) -> str:
    if line.startswith("@@"):
        return "jd-hunk"
    if line.startswith(("diff --git", "index ", "+++", "---", "new file", "deleted file")):
        return "jd-file"
    return {"+": "jd-add", "-": "jd-del"}.get(line[:1], "")


def diff_lines_html(lines: Sequence[str]) -> str:
    shown = lines[:MAX_DIFF_LINES]
    body = "".join(f'<div class="{_line_class(line)}">{esc(line)}</div>' for line in shown)
    if len(lines) > len(shown):
        more = len(lines) - len(shown)
        body += note_html(f"… {more} more lines: `jupyter delegate diff ID` shows them all.")
    return f'<div class="jd-diff">{body}</div>'


def outside_scope(paths: Iterable[str], scope: Sequence[str]) -> list[str]:
    """The paths outside the scope (none when it names no scope), by `Outcome.in_scope`."""
    return [p for p in paths if not in_scope(p, scope)]


def review_flags(task: Task, paths: Iterable[str]) -> list[str]:
    flags = list(task.flags)
    flags += [f"outside the scope: {path}" for path in paths if not task.outcome.in_scope(path)]
    return flags


class LazySection(widgets.Accordion):  # type: ignore[misc]  # ipywidgets is untyped
    """A collapsible section whose HTML is made when it is first opened."""

    def __init__(self, title: str, render: Callable[[], str], *, open_now: bool = False) -> None:
        self.render = render
        self.body = html_widget()
        super().__init__(children=(self.body,), titles=(title,), layout=shared(Layout))
        self.observe(self._on_open, names="selected_index")
        if open_now:
            self.selected_index = 0

    def _on_open(self, change: Mapping[str, Any]) -> None:
        if change["new"] is not None and not self.body.value:
            try:
                self.body.value = self.render()
            except (DelegateError, OSError) as exc:
                self.body.value = error_html(f"Cannot show this: {exc}")


# -- context: skills, preferences, AGENTS.md ---------------------------------------------------
def model_html(task: Task) -> str:
    """The model's limits and where they came from, the effort and the compaction point."""
    return f"<b>Model</b><div>{esc(task.model_text)}</div>"


def context_html(task: Task) -> str:
    """What the agent was told beyond the outcome, for the review."""
    rows = []
    if task.agents_md:
        rows.append(f"AGENTS.md read: {esc(', '.join(task.agents_md))}")
    offered = [s["name"] for s in task.skills]
    if offered:
        used = esc(", ".join(task.skills_used)) if task.skills_used else "none"
        rows.append(f"Skills used: {used} <span class='jd-note'>(of {len(offered)} offered)</span>")
    if task.preferences:
        items = "".join(
            f"<li>{esc(p['text'])} <i>({esc(p['scope'])})</i></li>" for p in task.preferences
        )
        rows.append(f"Preferences in force:<ul>{items}</ul>")
    return "<b>Context</b><div>" + "<br>".join(rows) + "</div>" if rows else ""


def skill_drift_html(task: Task, skipped: Mapping[str, Any]) -> str:
    """Why a skill was not loaded, with the diff of its changed text files."""
    from ..context.skills import scan

    parts = [f"<div>{esc(skipped['why'])}</div>"]
    if skipped["trust"] == "changed" and task.worktree is not None and task.worktree.exists():
        for status in scan(task.worktree, task.repo):
            if status.name == skipped["name"] and status.source == skipped["source"]:
                parts.append(diff_lines_html(status.diff().splitlines()))
    return "".join(parts)


def skills_not_loaded(task: Task) -> list[LazySection]:
    sections = []
    for skipped in task.skills_not_loaded:
        changed = [
            *skipped.get("changed", []),
            *skipped.get("added", []),
            *skipped.get("removed", []),
        ]
        what = f"{skipped['trust']}: {', '.join(changed)}" if changed else skipped["trust"]
        title = f"skill {skipped['name']} ({skipped['source']}) not loaded, {what}"
        sections.append(LazySection(title, functools.partial(skill_drift_html, task, skipped)))
    return sections


# -- widget plumbing -------------------------------------------------------------------------
HIDDEN = "jd-hidden"  # the class that hides a widget (CSS: the views' stylesheet)


def show(widget: widgets.DOMWidget, visible: bool) -> None:
    """Show or hide a widget by its class (its layout may be shared): one message, and
    none when it is already so."""
    if visible:
        widget.remove_class(HIDDEN)
    else:
        widget.add_class(HIDDEN)


def shown(widget: widgets.DOMWidget) -> bool:
    """Whether `show` left the widget visible."""
    return HIDDEN not in widget._dom_classes


_SHARED: dict[tuple[Any, ...], widgets.Widget] = {}
_SHARED_LOCK = threading.Lock()


def shared(kind: type[widgets.Widget], **traits: str) -> Any:
    """The one `kind` (a layout or a style) with these traits that every view's widgets
    share: a comm open saved per widget. Nothing may change it after it is made (a
    widget whose layout changes has its own); made again if it was closed."""
    key = (kind, *sorted(traits.items()))
    with _SHARED_LOCK:
        made = _SHARED.get(key)
        if made is None or made.comm is None:
            made = _SHARED[key] = kind(**traits)
        return made


def html_widget(value: str = "", *, layout: widgets.Layout | None = None) -> widgets.HTML:
    """An HTML widget with the shared style, and the shared layout unless given one."""
    return widgets.HTML(
        value, style=shared(HTMLStyle), layout=layout if layout is not None else shared(Layout)
    )


def box(children: Iterable[widgets.Widget] = (), kind: Any = None, **layout: str) -> Any:
    """A VBox (or `kind`) of `children` with a shared layout of these traits."""
    return (kind or widgets.VBox)(tuple(children), layout=shared(Layout, **layout))


def close_tree(widget: widgets.Widget) -> None:
    """Close a widget and everything inside it (ipywidgets closes only the one), and its
    layout and style unless the views share them."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
    for part in (getattr(widget, "layout", None), getattr(widget, "style", None)):
        if isinstance(part, widgets.Widget) and not any(part is one for one in _SHARED.values()):
            part.close()
    widgets.Widget.close(widget)  # not an override: TaskView.close comes here


def call_later(delay_s: float, callback: Callable[[], None]) -> None:
    """On the running event loop (the engine's, for a view's pushes), else on a timer thread."""
    try:
        asyncio.get_running_loop().call_later(delay_s, callback)
    except RuntimeError:
        timer = threading.Timer(delay_s, callback)
        timer.daemon = True
        timer.start()


def attempt(error: widgets.HTML, action: Callable[[], object]) -> bool:
    """Run a user's action; what it raises is shown in `error`, never raised further."""
    error.value = ""
    try:
        action()
    except DelegateError as exc:
        error.value = error_html(str(exc))
        return False
    except Exception as exc:  # a bug: shown where the user clicked, not lost in a log
        log.exception("task action failed")
        error.value = error_html(f"Unexpected error (please report it): {exc!r}")
        return False
    return True


def button(description: str, style: str = "", icon: str = "", **layout: str) -> widgets.Button:
    """A button with the shared style and a shared layout of these traits."""
    return widgets.Button(
        description=description,
        button_style=style,
        icon=icon,
        style=shared(widgets.ButtonStyle),
        layout=shared(Layout, **layout),
    )


# -- the task view ---------------------------------------------------------------------------
class TaskView(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """A task, live: header, streamed log, permission card, review and actions."""

    def __init__(self, task: Task, *, name: str | None = None, early: Any = None) -> None:
        """`early`: the display handle of the task's early header (`header.py`), emptied
        once this view has drawn in its place (or `empty_early_if_stopped`, or closed)."""
        self.task = task
        self.name = name or task.name or task.title
        self._lock = threading.RLock()
        self._closed = False
        self._early = early
        self._shell: Any = None
        self._parent: Any = None
        if early is not None:
            self._shell, self._parent = kernel_parent()
        self._log = LiveLog()
        self._text: list[str] = []  # the agent's words in the turn being streamed
        self._thinking: list[str] = []  # its summarised reasoning in that turn
        self._push_at: float | None = None  # when the pending push is due
        self._pushed_at = -FLUSH_S  # when the view last pushed (time.monotonic())
        self._after_idle = False  # the last push followed an idle spell: a quick one may follow
        self._idle_pending = False  # the pending push is such a push
        self._ended_at: datetime | None = None
        self._seen_active = False
        self._review_round = self._built_round = 0
        self._asking: PermissionRequest | None = None
        self._text_key: tuple[Any, ...] | None = None  # the message and block being streamed
        self._round = 1  # the round of work the log is in (a request for changes starts one)
        self._round_marked = False  # this round's divider is in the log
        self._last_state: TaskState | None = None
        self.review_view: ReviewView | None = None  # made when the task reaches review
        self._asking_cancel = False  # Cancel was clicked: the view asks to confirm

        self._activity = Activity()  # what the task does now (the live line)
        # the header (name, state, spending) and the live line below it (elapsed time,
        # activity, output tail): one model, so a push of both is one message
        self.live = LiveStatus(layout=shared(Layout), early=task.id if early is not None else "")
        if early is not None:
            self.live.on_msg(self._on_live_message)
        self.status = html_widget()
        self.context_box = box(skills_not_loaded(task))
        # the line counting the pages no longer kept; `order`: above the pages
        self.live_earlier = html_widget(layout=shared(Layout, order="-2"))
        # The pages of the log (LiveLog) and the words being streamed below them, one
        # model: page p is shown by slot p % LOG_PAGES, which the next page takes over.
        self.log_pages = LogPages(layout=shared(Layout))
        # "show earlier": the entries the log no longer keeps, read from the journal; above
        # the pages (`order`), after them in `children`.
        self.earlier_box = html_widget(layout=shared(Layout, order="-3"))
        self.earlier_button = button(
            "show earlier", "", "angle-double-up", width="auto", order="-1"
        )
        self.earlier_button.on_click(lambda _: self._on_show_earlier())
        self.log_box = box(
            (self.live_earlier, self.log_pages, self.earlier_box, self.earlier_button)
        )
        # The parts a view may never need are empty boxes until it does (`_log_bar`,
        # `_cancel_box`, `_permission_card`): each widget is a model the front end makes
        # before it draws the view, so the view shows sooner with fewer.
        # The log folds into one line when the review opens; the toggle unfolds it.
        self.log_bar = box(kind=widgets.HBox)
        self.agent_log = box((self.log_bar, self.log_box))
        self.cancel_button = button("Cancel…", "warning", "stop")
        # Cancel asks first: the task stops for good (pause keeps it resumable).
        self.cancel_box = box(kind=widgets.HBox)
        show(self.cancel_box, False)
        self.permission = box()
        self.review = self._review_section()
        self.error = html_widget()
        super().__init__(
            layout=shared(Layout),
            children=(
                html_widget(CSS),
                self.live,
                self.status,
                self.context_box,
                self.agent_log,
                self.cancel_button,
                self.cancel_box,
                self.permission,
                self.review,
                self.error,
            ),
        )
        self.cancel_button.on_click(lambda _: self._ask_cancel(True))
        with self._lock:
            self._unsubscribe = task.subscribe(self._on_event)
            # what it does now, as far as its state tells (a view made after it started)
            self._activity.on_event("state", {"state": task.state}, time.time())
            self._on_context({})  # a context event told before it subscribed
            if task.state in SHOWS_REVIEW:
                self._review_round = 1
            self._render_state()
        if self._review_round == 1:
            self._build_review(1)  # here, at once: a view made for a finished task

    def __repr__(self) -> str:
        # What a notebook saved without widget state, or nbconvert's HTML, shows in the
        # view's place: one line; the task record beside it tells the task's state.
        return f"Live view of delegated task {self.task.id} (shown while its kernel runs)"

    def _log_bar(self) -> None:
        """The folded log's line and its toggle, made in `log_bar` when it first folds."""
        if self.log_bar.children:
            return
        self.log_summary = html_widget()
        self.log_toggle = widgets.ToggleButton(
            False,
            description="show the agent log",
            style=shared(ToggleButtonStyle),
            layout=shared(Layout, width="auto"),
        )
        self.log_toggle.observe(lambda _: self._render_fold(), names="value")
        self.log_bar.children = (self.log_summary, self.log_toggle)

    def _cancel_box(self) -> None:
        """The question Cancel asks, made in `cancel_box` when it is first clicked."""
        if self.cancel_box.children:
            return
        self.cancel_text = html_widget()
        self.cancel_confirm = button("Yes, cancel it", "danger", "stop")
        self.cancel_keep = button("Keep it running")
        self.cancel_keep.on_click(lambda _: self._ask_cancel(False))
        self.cancel_confirm.on_click(lambda _: self._cancel())
        self.cancel_box.children = (self.cancel_text, self.cancel_confirm, self.cancel_keep)

    def _permission_card(self) -> None:
        """The question: what the agent asks, in the user's words (`permission_html`), and
        Allow once / Allow this prefix (or file) for the task / Deny, with a reason the
        agent receives; made in `permission` when the task first asks."""
        if self.permission.children:
            return
        self.permission_text = html_widget()
        self.allow_button = button("Allow once", "success", "check", width="auto")
        self.allow_rule_button = button(
            "Allow this prefix for the task", "info", "check-circle", width="auto"
        )
        self.deny_button = button("Deny", "danger", "times", width="auto")
        self.deny_reason = widgets.Text(
            placeholder="why (optional; the agent is told)",
            style=shared(TextStyle),
            layout=shared(Layout, width="22em"),
        )
        self.allow_button.on_click(lambda _: self._answer(True))
        self.allow_rule_button.on_click(lambda _: self._answer(True, remember=True))
        self.deny_button.on_click(lambda _: self._answer(False))
        actions = box(
            (self.allow_button, self.allow_rule_button, self.deny_button, self.deny_reason),
            widgets.HBox,
            flex_flow="row wrap",
        )
        self.permission.children = (self.permission_text, actions)

    def _review_section(self) -> widgets.VBox:
        """The review: `ReviewView` (its bar with the verdict, counts and actions, the
        diff with line comments, rounds and your edits), made when the task first reaches
        review, above what the agent was told and the checks in full (`review_content`)."""
        self.review_content = box()
        return box((self.review_content,))

    def close(self) -> None:
        """Stop following the task and close every widget of the view."""
        with self._lock:
            self._closed = True
            self._unsubscribe()
            self._empty_early()
            if self.review_view is not None:
                self.review_view.close()
            close_tree(self)

    # -- events (engine thread) ----------------------------------------------------------
    def _on_event(self, event: TaskEvent) -> None:
        """Fold the event into the view's state; push it soon (at once for a state)."""
        with self._lock:
            if self._closed:
                return
            self._activity.on_event(event.kind, event.data, time.time())
            if event.kind == "text":
                key = (event.data.get("message"), event.data.get("block"))
                if self._text and key != self._text_key:
                    self._end_text()  # a new message (or block) is a new entry
                self._text_key = key
                self._text.append(event.data["delta"])
            elif event.kind == "thinking":
                self._thinking.append(event.data["delta"])
            else:
                self._end_text()
                handler = getattr(self, f"_on_{event.kind}", None)
                if handler is not None:
                    handler(event.data)
            if event.kind != "state":  # _on_state has pushed everything already
                self._push_soon()

    def _end_text(self) -> None:
        """The streamed words end at any other event: they join the log there."""
        if self._thinking:
            self._log.add_thinking("".join(self._thinking))
            self._thinking.clear()
        if self._text:
            self._log.add_text("".join(self._text))
            self._text.clear()

    def _push_soon(self) -> None:
        """Push on the loop's next turn if nothing was pushed in the last `FLUSH_S` (the
        events that arrive together go together); `QUICK_S` after a push that followed an
        idle spell (a model's reply comes in a burst: its start, then its first words);
        else when the `FLUSH_S` interval ends. Under load, one push per interval, as a
        fixed delay made; when idle, none waits."""
        now = time.monotonic()
        # a push still pending is coming, unless its loop stopped before running it
        if self._push_at is not None and now < self._push_at + 1:
            return
        self._idle_pending = now - self._pushed_at >= FLUSH_S
        if self._idle_pending:
            delay = 0.0
        else:
            wait = QUICK_S if self._after_idle else FLUSH_S
            delay = max(0.0, self._pushed_at + wait - now)
        self._push_at = now + delay
        call_later(delay, self._push)

    def _push(self) -> None:
        with self._lock:
            self._push_at = None
            if not self._closed:
                self._render_live()
                self._after_idle = self._idle_pending

    def _on_tool_call(self, data: Mapping[str, Any]) -> None:
        if data["name"] != "finish":
            self._log.add_call(data)

    def _on_tool_result(self, data: Mapping[str, Any]) -> None:
        self._log.add_result(data)

    def _on_context(self, data: Mapping[str, Any]) -> None:
        if not self.context_box.children and self.task.skills_not_loaded:
            self.context_box.children = tuple(skills_not_loaded(self.task))

    def _on_notice(self, data: Mapping[str, Any]) -> None:
        self._log.add_note(data["text"])

    def _on_compacted(self, data: Mapping[str, Any]) -> None:
        who = "the API" if data["by"] == "server" else "the harness (a summary)"
        before, after = data["tokens_before"], data["tokens_after"]
        self._log.add_note(f"conversation compacted by {who}: {before:,} -> {after:,} tokens")

    def _on_permission(self, data: Mapping[str, Any]) -> None:
        if data["status"] != "asked":
            self._log.add_note(permission_note(data), "jd-log-note")
        self._render_permission()

    def _on_feedback(self, data: Mapping[str, Any]) -> None:
        """Changes were requested: a new round, its divider and the feedback in the log."""
        self._round += 1
        self._round_marked = True
        self._log.add_round(self._round, data.get("text", ""))

    def _on_state(self, data: Mapping[str, Any]) -> None:
        state = TaskState(data["state"])
        if state == S.RUNNING and self._last_state == S.REVIEW and not self._round_marked:
            self._round += 1  # changes requested by a process that told no feedback here
            self._log.add_round(self._round, "")
        if state == S.REVIEW:
            self._round_marked = False
            if self.log_bar.children:
                self.log_toggle.value = False  # the log folds when the review opens
        self._last_state = state
        if data["state"] == S.REVIEW:
            self._review_round += 1
            round_ = self._review_round
            threading.Thread(target=self._build_review, args=(round_,), daemon=True).start()
        self._render_state()

    def _on_live_message(self, _widget: Any, content: Any, _buffers: Any) -> None:
        """live.js drew the view in the early header's place (kernel's main thread)."""
        if isinstance(content, dict) and content.get("shown"):
            with self._lock:
                self._empty_early()

    def empty_early_if_stopped(self) -> None:
        """Empty the early header once the task has stopped working (`%delegate wait`,
        a decision: from the running cell, whose display updates nbclient and papermill
        apply, as they do its record's), so a view that never drew leaves none behind."""
        with self._lock:
            if not self.task.state.active:
                self._empty_early()

    def _empty_early(self) -> None:
        """Empty the early header's output by its display_id (see header.py: the front
        ends that apply it), once. Under the lock."""
        early, self._early = self._early, None
        if early is not None:
            publish_under(self._shell, self._parent, lambda: early.update({}, raw=True))

    # -- rendering (under the lock) --------------------------------------------------------
    def _render_live(self) -> None:
        """The log, the streamed words and the header as they are now. A trait set to
        the value it has already sends nothing: of the log, only the pages that changed
        are sent, and the tool calls opened in the others stay open."""
        self._pushed_at, self._after_idle = time.monotonic(), False
        self.live_earlier.value = self._log.earlier()
        unfollowed = not self._log.counts() and self.task.usage.steps > 0  # ran before this view
        show(self.earlier_button, bool(self.live_earlier.value) or unfollowed)
        with self.log_pages.hold_sync():  # the pages that changed and the words: one message
            for number, page in self._log.pages():
                self.log_pages.show_page(number, page)
            self.log_pages.text = text_html(_tail("".join(self._text))) if self._text else ""
        with self.live.hold_sync():  # the header and the live line: one message
            self.live.header = header_html(self.task, self.name)
            self._render_activity()

    @property
    def live_log_html(self) -> str:
        """The log as shown now, in one piece: the earlier line, then the pages in order."""
        with self._lock:
            return str(self.live_earlier.value) + self.log_pages.pages_html()

    def _render_activity(self) -> None:
        """The live line's facts (it redraws itself every second from them): when the
        task started and stopped, what it does now, and a running command's last lines."""
        live = self.live
        try:
            started = datetime.fromisoformat(self.task.created).timestamp()
        except ValueError:
            started = 0.0  # not known: the line hides
        ended = 0.0
        if not self.task.state.active:
            # it stopped before this view saw it run: when is not known
            ended = self._ended_at.timestamp() if self._ended_at is not None else 0.0
            started = started if ended else 0.0
        live.state = str(self.task.state)
        live.started_at, live.ended_at = started, ended
        live.activity = self._activity.as_dict()
        live.tail = self._activity.tail

    def _render_state(self) -> None:
        state = self.task.state
        if state.active:
            self._seen_active, self._ended_at = True, None
        elif self._seen_active and self._ended_at is None:
            self._ended_at = datetime.now(UTC)
        self._render_live()
        self._render_fold()
        self.status.value = status_html(self.task)
        show(self.cancel_button, state.active and not self._asking_cancel)
        show(self.cancel_box, state.active and self._asking_cancel)
        self._render_permission()
        built = self._built_round == self._review_round
        show(self.review, state in SHOWS_REVIEW and built)

    def _ask_cancel(self, asking: bool) -> None:
        with self._lock:
            self._asking_cancel = asking
            self._cancel_box()
            self.cancel_text.value = (
                f"<b>Cancel task {esc(self.task.id)}?</b> The agent stops for good; its work "
                f"so far is kept under <code>refs/delegate/archive/{esc(self.task.id)}</code>."
            )
            self._render_state()

    def _cancel(self) -> None:
        self._ask_cancel(False)
        attempt(self.error, self.task.cancel)

    def _render_fold(self) -> None:
        """Folded to one line while the review shows (unless the user unfolds it)."""
        with self._lock:
            folded = self.task.state in SHOWS_REVIEW
            show(self.log_bar, folded)
            if folded:
                self._log_bar()
                self.log_summary.value = log_summary_html(self._log, self._round, self.task)
            unfolded = bool(self.log_bar.children) and self.log_toggle.value
            show(self.log_box, not folded or unfolded)
            if self.log_bar.children:
                self.log_toggle.description = (
                    "hide the agent log" if unfolded else "show the agent log"
                )

    def _render_permission(self) -> None:
        pending = self._pending() if self.task.state == S.WAITING else []
        self._asking = pending[0] if pending else None
        if self._asking is not None:  # the card filled in, then shown
            self._permission_card()
            request = self._asking
            self.permission_text.value = permission_html(request, len(pending) - 1)
            what = "prefix" if request.tool.lower() == "bash" else "file"
            self.allow_rule_button.description = f"Allow this {what} for the task"
            self.allow_rule_button.tooltip = ", ".join(request.rules)
            show(self.allow_rule_button, bool(request.rules))
            for b in (self.allow_button, self.allow_rule_button, self.deny_button):
                b.disabled = False
        show(self.permission, self._asking is not None)

    def _pending(self) -> list[PermissionRequest]:
        try:
            return self.task.pending()
        except DelegateError:  # a task no manager runs here asks nothing
            return []

    def _build_review(self, round_: int) -> None:
        from .review import ReviewView

        # git runs here, outside the lock; the ReviewView follows later rounds itself
        review_view = self.review_view or ReviewView(self.task, show_checks=False)
        paths = [f["path"] for f in review_view.files]
        parts = [
            html_widget(f"<b>Checks</b> (run by the harness){checks_html(self.task)}"),
            html_widget(context_html(self.task)),
            html_widget(model_html(self.task)),
            html_widget(flags_html(review_flags(self.task, paths))),
        ]
        with self._lock:
            if self._closed or round_ != self._review_round:
                for part in parts:
                    close_tree(part)
                if review_view is not self.review_view:
                    review_view.close()
                return
            for old in self.review_content.children:
                close_tree(old)
            self.review_content.children = tuple(parts)
            if self.review_view is None:
                self.review_view = review_view
                self.review.children = (review_view, self.review_content)
            self._built_round = round_
            self._render_state()

    # -- what the user does (main thread; never under the lock) ------------------------
    def _answer(self, allow: bool, remember: bool = False) -> None:
        """Allow once, allow what the card shows for the task (`remember`: exactly its
        rules), or deny with the reason typed beside Deny."""
        request = self._asking
        if request is None:
            return
        reason = None if allow else self.deny_reason.value.strip() or None
        buttons = (self.allow_button, self.allow_rule_button, self.deny_button)

        def answer() -> None:
            self.task.answer(
                request.request_id,
                allow,
                rule=list(request.rules) if remember else None,
                reason=reason,
            )

        if attempt(self.error, answer):
            for b in buttons:
                b.disabled = True
            self.deny_reason.value = ""

    def _on_show_earlier(self) -> None:
        attempt(self.error, self._show_earlier)

    def _show_earlier(self) -> None:
        """Render the entries the live log no longer keeps, read from the journal (the
        last `EARLIER_SHOWN` of them). On the main thread: it reads a file, never the
        engine's."""
        lines = []
        with open(self.task.journal_path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    lines.append(json.loads(line))
                except ValueError:
                    break  # a line still being written
        entries = journal_entries(lines)
        with self._lock:
            before = len(entries) - self._log.kept()
        self.earlier_box.value = earlier_entries_html(entries, before, self.task.id)


# -- the board -------------------------------------------------------------------------------
COLUMNS = (("id", "7em"), ("title", "22em"), ("state", "14em"), ("steps", "5em"), ("cost", "7em"))


def row_cells(task: Task) -> dict[str, str]:
    return {
        "id": f"<code>{esc(task.id)}</code>",
        "title": esc(task.name or task.title),
        "state": badge(task.state, task.verdict) + (note_html("forced") if task.forced else ""),
        "steps": str(task.usage.steps),
        "cost": cost_text(task, short=True),
    }


def cells(values: Mapping[str, str]) -> dict[str, widgets.HTML]:
    return {
        key: html_widget(values[key], layout=shared(Layout, width=width)) for key, width in COLUMNS
    }


class BoardRow(widgets.HBox):  # type: ignore[misc]  # ipywidgets is untyped
    """One task on the board, with Approve / Reject while it is in review. A row that is
    not proven never offers a plain Approve: its button says "Approve anyway…", and a
    click shows why it is not proven and a second button, Merge anyway. A row with no
    changes offers no approve at all (there is nothing to merge), only Reject."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self._lock = threading.Lock()
        self._unproven = False
        self.cells = cells(row_cells(task))
        self.approve_button = button("Approve", "success", "check")
        self.force_button = button("Merge anyway", "danger", "exclamation-triangle")
        self.reject_button = button("Reject", "danger", "times")
        self.error = html_widget()
        self.approve_button.on_click(lambda _: attempt(self.error, self._approve))
        self.force_button.on_click(lambda _: attempt(self.error, self._force))
        self.reject_button.on_click(lambda _: attempt(self.error, self.task.reject))
        super().__init__(
            children=(
                *self.cells.values(),
                self.approve_button,
                self.force_button,
                self.reject_button,
                self.error,
            ),
            layout=shared(Layout),
        )
        self.refresh()

    def _approve(self) -> None:
        try:
            self.task.approve()
        except NotProven:
            self._unproven = True
            self.error.value = unproven_html("; ".join(self.task.unproven_reasons))
            self.refresh()

    def _force(self) -> None:
        self.task.approve(force=True)
        self._unproven = False
        self.refresh()

    def refresh(self) -> None:
        with self._lock:
            for key, value in row_cells(self.task).items():
                self.cells[key].value = value
            in_review = self.task.state == S.REVIEW
            verdict = self.task.verdict
            proven = verdict == "proven"
            self._unproven = self._unproven and in_review
            self.approve_button.description = "Approve" if proven else "Approve anyway…"
            self.approve_button.button_style = "success" if proven else "warning"
            show(self.approve_button, in_review and verdict != "no changes" and not self._unproven)
            show(self.force_button, self._unproven)
            show(self.reject_button, in_review)

    def on_event(self, event: TaskEvent) -> None:
        if event.kind in ("state", "usage"):
            self.refresh()


class Board(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """Many tasks at a glance: id, name, state, steps, cost; approve or reject a row."""

    def __init__(self, tasks: Sequence[Task]) -> None:
        self.rows = {task.id: BoardRow(task) for task in tasks}
        titles = cells({key: f"<b>{key}</b>" for key, _ in COLUMNS})
        super().__init__(
            children=(html_widget(CSS), box(titles.values(), widgets.HBox), *self.rows.values()),
            layout=shared(Layout),
        )
        self._unsubscribes = [row.task.subscribe(row.on_event) for row in self.rows.values()]

    def __repr__(self) -> str:
        # The text a notebook saved without widget state shows (and nbconvert's HTML).
        return f"Board of {len(self.rows)} delegated tasks (live while its kernel runs)"

    def close(self) -> None:
        """Stop following the tasks and close every widget of the board."""
        for unsubscribe in self._unsubscribes:
            unsubscribe()
        close_tree(self)
