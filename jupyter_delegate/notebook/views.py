"""The widgets of a delegated task: the live view under a `%%delegate` cell, the review in
place, and a board of many tasks (ipywidgets 8).

Here: `TaskView` (a header with state and cost, the agent's words and tool calls as they
stream, the permission card while the task waits, and in review the summary, checks,
per-file diff, flags and the approve / reject / request-changes actions), `LiveLog` (the
last entries of a task's log, in pages of HTML), `Board` (one row per task, approve or
reject from the row), and the pure functions that render a task, a check or a diff to
escaped HTML. Approve on a task that is not proven (the API refuses it) merges nothing: it
shows why, and a "Merge anyway" button, the second, explicit click that forces it.

Not here: deciding anything (every button calls the `Task` API; the `DelegateError` it
raises is shown in the view, never raised from a handler), the notebook record output and
restore (`record.py`), the magics (`magics.py`), and any `display()`: the caller shows
the widget.

Threading (DESIGN principle 6, NOTES "Jupyter"): task events arrive on the engine thread
and buttons on the kernel's main thread, so the views only ever set traits (`value`,
`children`, `disabled`, `layout.display`), under one lock per view, and never hold that
lock while calling the task (an approve waits on the engine, whose events take the lock).
The review, which runs git, is built on its own thread once per review round.

Cost in the kernel (bench/RESULTS.md, kernel responsiveness): every trait set is a comm
message the engine thread serialises, and every new widget is three comm opens (itself,
its layout, its style). So the live part of a view is a fixed set of widgets: the header,
the log and the text being streamed. The log is the last `LOG_PAGES` pages of
`PAGE_ENTRIES` entries, one HTML widget each, made once and reused in turn (earlier
entries are counted in one line above them; a page is at most `LOG_CHARS` of HTML, the
most one message carries).
Why pages: a front end redraws an HTML widget whole when its value is set, which closes
the tool calls the user opened in it. A page's HTML depends on its entries only, so a
page that did not change is set to the value it has, which sends nothing: only the page
that changed is sent, and a tool call opened elsewhere stays open while the task runs.
Events only change the view's state; what they change is pushed at most every `FLUSH_S`,
and at once when the task changes state, so the last word before review or the end is
always shown.
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
from typing import Any

import git
import ipywidgets as widgets

from ..check_output import failure_tail, printable, whole_output
from ..engine.model import PRICE_GUESSED
from ..engine.tools import describe_input as brief
from ..errors import DelegateError, NotProven
from ..outcome import in_scope
from ..policy import PermissionRequest
from ..task import CheckResult, Task, TaskEvent, TaskState
from .record import badge

S = TaskState
log = logging.getLogger(__name__)
FLUSH_S = 0.1  # the most often a live view's changes are pushed to the front end
LOG_ENTRIES = 12  # entries of the live log kept and shown at most; earlier ones are counted
PAGE_ENTRIES = 4  # entries of a page of the live log: a page is sent only when it changes
LOG_PAGES = LOG_ENTRIES // PAGE_ENTRIES  # pages kept, the newest one maybe not yet full
LOG_CHARS = 16_000  # a page shows its newest entries that fit in this much HTML: the most
# one message sends, and room for the words before the largest tool call (about 12,000)
INPUT_HEAD = 4000  # characters of a tool call's input shown in the log
EAGER_FILES = 10  # files of a diff rendered (and open) at once; later ones render on open
EAGER_LINES = 400  # a file with more lines than this renders only when opened
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
.jd-add {background: #e6ffec; color: #116329}
.jd-del {background: #ffebe9; color: #82071e}
.jd-hunk {background: #ddf4ff; color: #0550ae}
.jd-file {color: #57606a; font-weight: bold}
</style>"""

esc = html.escape


# -- rendering: pure functions of a task, an event or a diff ------------------------------
def cost_text(task: Task, short: bool = False) -> str:
    """The task's cost, marked when it rests on a price guessed from the model family
    (`short`: by a leading ~, where there is no room for words)."""
    cost = f"${task.usage.cost_usd:.4f}"
    if not task.price_guessed:
        return cost
    return f"~{cost}" if short else f"{cost} ({PRICE_GUESSED})"


def elapsed_text(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def header_html(task: Task, name: str, elapsed_s: float | None) -> str:
    usage = task.usage
    facts = [
        elapsed_text(elapsed_s) if elapsed_s is not None else "",
        f"{usage.steps} steps",
        f"{usage.input_tokens} in / {usage.cache_read_tokens} cached / "
        f"{usage.output_tokens} out tokens",
        cost_text(task),
        ", ".join(task.served_models) or task.model,
        f"sandbox {task.sandbox}" if task.sandbox else "",
    ]
    return (
        f'<div class="jd-header"><code>{esc(task.id)}</code> <b>{esc(name)}</b> '
        f"{badge(task.state, task.verdict)} "
        f'<span class="jd-meta">{esc(" · ".join(f for f in facts if f))}</span></div>'
    )


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


def note_html(text: str) -> str:
    return f'<div class="jd-note">{esc(text)}</div>'


def thinking_html(text: str) -> str:
    """The model's summarised reasoning, folded (redacted: it is journaled as the API sent
    it, signed, so it is redacted only where it is shown)."""
    from ..journal import redact

    shown = esc(redact(_tail(text)))
    return f'<details class="jd-thinking"><summary>reasoning</summary>{shown}</details>'


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
    words = {"tool": "tool call", "text": "message", "note": "note"}
    counts = [
        f"{n} earlier {word}{'s' if n != 1 else ''}"
        for kind, word in words.items()
        if (n := hidden.get(kind, 0))
    ]
    if not counts:
        return ""
    listed = ", ".join(counts[:-1]) + (" and " if len(counts) > 1 else "") + counts[-1]
    return note_html(f"… {listed} not shown here; the task's journal keeps every step.")


@dataclass
class LogEntry:
    """One entry of the live log: the agent's words, a tool call, or a note; `lead`: the
    model's reasoning before it, folded."""

    kind: str  # "text", "tool" or "note"
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

    def __init__(self) -> None:
        self._pages: deque[list[LogEntry]] = deque()  # the pages kept, oldest first
        self._first_page = 0  # the number of the oldest page kept
        self._dropped: Counter[str] = Counter()  # entries no longer kept, by kind
        self._calls: dict[str, LogEntry] = {}  # tool calls waiting for their result
        self._thought = ""  # reasoning waiting for the entry it leads to

    def add_text(self, text: str) -> None:
        self._add(LogEntry("text", text_html(_tail(text))))

    def add_note(self, text: str) -> None:
        self._add(LogEntry("note", note_html(text)))

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
            if len(self._pages) > LOG_PAGES:
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


def permission_html(request: PermissionRequest, more: int) -> str:
    tool_input = json.dumps(request.input, indent=2, ensure_ascii=False)
    waiting = f" ({more} more after this one)" if more else ""
    return (
        f"<b>The agent asks to run <code>{esc(request.tool)}</code>{esc(waiting)}</b>"
        f"<pre>{esc(tool_input)}</pre>"
        f'<div class="jd-note">Why it asks: {esc(request.reason)}</div>'
    )


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
        self.body = widgets.HTML()
        super().__init__(children=(self.body,), titles=(title,))
        self.observe(self._on_open, names="selected_index")
        if open_now:
            self.selected_index = 0

    def _on_open(self, change: Mapping[str, Any]) -> None:
        if change["new"] is not None and not self.body.value:
            try:
                self.body.value = self.render()
            except (DelegateError, OSError) as exc:
                self.body.value = error_html(f"Cannot show this: {exc}")


class FileDiffView(LazySection):
    """One file of a diff, collapsible; its lines are rendered when it is first opened."""

    def __init__(self, file: FileDiff, *, open_now: bool) -> None:
        self.file = file
        super().__init__(file.title, lambda: diff_lines_html(file.lines), open_now=open_now)


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


def review_parts(task: Task) -> tuple[list[widgets.Widget], dict[str, FileDiffView]]:
    """The review's widgets (summary, checks, flags, diffstat, files). Runs git."""
    try:
        stat, files = split_diff(task.diff())
        problem = ""
    except (DelegateError, git.GitError, OSError) as exc:
        stat, files, problem = "", [], f"The diff cannot be shown: {exc}"
    views = {
        f.path: FileDiffView(f, open_now=i < EAGER_FILES and len(f.lines) <= EAGER_LINES)
        for i, f in enumerate(files)
    }
    parts: list[widgets.Widget] = [
        widgets.HTML(summary_html(task)),
        widgets.HTML(f"<b>Checks</b> (run by the harness){checks_html(task)}"),
        widgets.HTML(context_html(task)),
        widgets.HTML(model_html(task)),
        widgets.HTML(flags_html(review_flags(task, views))),
        widgets.HTML(f"<b>Changes</b><pre>{esc(stat)}</pre>" + error_html(problem)),
        *views.values(),
    ]
    return parts, views


# -- widget plumbing -------------------------------------------------------------------------
def show(widget: widgets.DOMWidget, visible: bool) -> None:
    display = "" if visible else "none"
    if widget.layout.display != display:
        widget.layout.display = display


def close_tree(widget: widgets.Widget) -> None:
    """Close a widget and everything inside it (ipywidgets closes only the one)."""
    for child in getattr(widget, "children", ()):
        close_tree(child)
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


def button(description: str, style: str = "", icon: str = "") -> widgets.Button:
    return widgets.Button(description=description, button_style=style, icon=icon)


# -- the task view ---------------------------------------------------------------------------
class TaskView(widgets.VBox):  # type: ignore[misc]  # ipywidgets is untyped
    """A task, live: header, streamed log, permission card, review and actions."""

    def __init__(self, task: Task, *, name: str | None = None) -> None:
        self.task = task
        self.name = name or task.name or task.title
        self._lock = threading.RLock()
        self._closed = False
        self._log = LiveLog()
        self._text: list[str] = []  # the agent's words in the turn being streamed
        self._thinking: list[str] = []  # its summarised reasoning in that turn
        self._push_at: float | None = None  # when the pending push is due
        self._ended_at: datetime | None = None
        self._seen_active = False
        self._review_round = self._built_round = 0
        self._asking: PermissionRequest | None = None
        self._unproven = ""  # why an approve was refused; "" when not asking to force
        self.files: dict[str, FileDiffView] = {}

        self.header = widgets.HTML()
        self.status = widgets.HTML()
        self.context_box = widgets.VBox(skills_not_loaded(task))
        self.live_earlier = widgets.HTML()  # the line counting the pages no longer kept
        # The pages of the log (LiveLog), one widget each for the view's life: page p is
        # shown by slot p % LOG_PAGES, which the next page to need it takes over.
        self.live_pages = tuple(widgets.HTML() for _ in range(LOG_PAGES))
        self.live_text = widgets.HTML()  # the words being streamed, below the log
        pages = widgets.VBox(self.live_pages)  # its own flex column: `order` sorts the pages
        self.log_box = widgets.VBox((self.live_earlier, pages, self.live_text))
        self.cancel_button = button("Cancel", "warning", "stop")
        self.permission = self._permission_card()
        self.review = self._review_section()
        self.error = widgets.HTML()
        super().__init__(
            children=(
                widgets.HTML(CSS),
                self.header,
                self.status,
                self.context_box,
                self.log_box,
                self.cancel_button,
                self.permission,
                self.review,
                self.error,
            )
        )
        self.cancel_button.on_click(lambda _: attempt(self.error, self.task.cancel))
        with self._lock:
            self._unsubscribe = task.subscribe(self._on_event)
            if task.state in SHOWS_REVIEW:
                self._review_round = 1
            self._render_state()
        if self._review_round == 1:
            self._build_review(1)  # here, at once: a view made for a finished task

    def __repr__(self) -> str:
        # What a notebook saved without widget state, or nbconvert's HTML, shows in the
        # view's place: one line; the task record beside it tells the task's state.
        return f"Live view of delegated task {self.task.id} (shown while its kernel runs)"

    def _permission_card(self) -> widgets.VBox:
        self.permission_text = widgets.HTML()
        self.allow_button = button("Allow", "success", "check")
        self.deny_button = button("Deny", "danger", "times")
        self.remember = widgets.Checkbox(False, description="remember for this task", indent=False)
        self.allow_button.on_click(lambda _: self._answer(True))
        self.deny_button.on_click(lambda _: self._answer(False))
        actions = widgets.HBox((self.allow_button, self.deny_button, self.remember))
        return widgets.VBox((self.permission_text, actions))

    def _review_section(self) -> widgets.VBox:
        self.review_content = widgets.VBox()
        self.approve_button = button("Approve", "success", "check")
        self.strategy = widgets.Dropdown(options=["merge", "squash"], value="merge")
        self.reject_button = button("Reject", "danger", "times")
        self.reject_reason = widgets.Text(placeholder="reason (optional)")
        self.changes_text = widgets.Textarea(placeholder="What should change?")
        self.remember_choice = widgets.Dropdown(
            options=[
                ("don't remember it", ""),
                ("remember as a preference for this repository", "repo"),
                ("remember as a preference everywhere", "user"),
            ],
            value="",
        )
        self.request_button = button("Request changes", "info", "undo")
        # Shown when Approve was refused because the task is not proven.
        self.force_text = widgets.HTML()
        self.force_button = button("Merge anyway", "danger", "exclamation-triangle")
        self.keep_button = button("Keep in review")
        self.force_box = widgets.VBox(
            (self.force_text, widgets.HBox((self.force_button, self.keep_button)))
        )
        self.approve_button.on_click(lambda _: self._decide(self._approve))
        self.force_button.on_click(lambda _: self._decide(self._force))
        self.keep_button.on_click(lambda _: self._set_unproven(""))
        self.reject_button.on_click(lambda _: self._decide(self._reject))
        self.request_button.on_click(lambda _: self._decide(self._request_changes))
        self.review_actions = widgets.VBox(
            (
                widgets.HBox((self.approve_button, self.strategy)),
                self.force_box,
                widgets.HBox((self.reject_button, self.reject_reason)),
                widgets.HBox((self.changes_text, self.remember_choice, self.request_button)),
            )
        )
        return widgets.VBox((self.review_content, self.review_actions))

    def close(self) -> None:
        """Stop following the task and close every widget of the view."""
        with self._lock:
            self._closed = True
            self._unsubscribe()
            close_tree(self)

    # -- events (engine thread) ----------------------------------------------------------
    def _on_event(self, event: TaskEvent) -> None:
        """Fold the event into the view's state; push it soon (at once for a state)."""
        with self._lock:
            if self._closed:
                return
            if event.kind == "text":
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
        now = time.monotonic()
        # a push still pending is coming, unless its loop stopped before running it
        if self._push_at is not None and now < self._push_at + 1:
            return
        self._push_at = now + FLUSH_S
        call_later(FLUSH_S, self._push)

    def _push(self) -> None:
        with self._lock:
            self._push_at = None
            if not self._closed:
                self._render_live()

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
            self._on_notice({"text": f"{data['tool']}: {data['status']}"})
        self._render_permission()

    def _on_state(self, data: Mapping[str, Any]) -> None:
        if data["state"] == S.REVIEW:
            self._review_round += 1
            round_ = self._review_round
            threading.Thread(target=self._build_review, args=(round_,), daemon=True).start()
        self._render_state()

    # -- rendering (under the lock) --------------------------------------------------------
    def _render_live(self) -> None:
        """The log, the streamed words and the header as they are now. A trait set to
        the value it has already sends nothing: of the log, only the pages that changed
        are sent, and the tool calls opened in the others stay open."""
        self.live_earlier.value = self._log.earlier()
        for number, page in self._log.pages():
            slot = self.live_pages[number % LOG_PAGES]
            slot.layout.order = str(number)  # a reused slot moves below the newer pages
            slot.value = page
        self.live_text.value = text_html(_tail("".join(self._text))) if self._text else ""
        self.header.value = header_html(self.task, self.name, self._elapsed_s())

    @property
    def live_log_html(self) -> str:
        """The log as shown now, in one piece: the earlier line, then the pages in order."""
        with self._lock:
            pages = sorted(self.live_pages, key=lambda slot: int(slot.layout.order or -1))
            return "".join((self.live_earlier.value, *(slot.value for slot in pages)))

    def _elapsed_s(self) -> float | None:
        try:
            created = datetime.fromisoformat(self.task.created)
        except ValueError:
            return None
        if self.task.state.active:
            return (datetime.now(UTC) - created).total_seconds()
        if self._ended_at is None:
            return None  # it stopped before this view saw it run: when is not known
        return (self._ended_at - created).total_seconds()

    def _render_state(self) -> None:
        state = self.task.state
        if state.active:
            self._seen_active, self._ended_at = True, None
        elif self._seen_active and self._ended_at is None:
            self._ended_at = datetime.now(UTC)
        self._render_live()
        self.status.value = status_html(self.task)
        show(self.cancel_button, state.active)
        self._render_permission()
        built = self._built_round == self._review_round
        show(self.review, state in SHOWS_REVIEW and built)
        show(self.review_actions, state == S.REVIEW)
        if state != S.REVIEW:
            self._unproven = ""
        self.force_text.value = unproven_html(self._unproven)
        show(self.force_box, bool(self._unproven))

    def _render_permission(self) -> None:
        pending = self._pending() if self.task.state == S.WAITING else []
        self._asking = pending[0] if pending else None
        show(self.permission, self._asking is not None)
        if self._asking is not None:
            self.permission_text.value = permission_html(self._asking, len(pending) - 1)
            self.allow_button.disabled = self.deny_button.disabled = False

    def _pending(self) -> list[PermissionRequest]:
        try:
            return self.task.pending()
        except DelegateError:  # a task no manager runs here asks nothing
            return []

    def _build_review(self, round_: int) -> None:
        parts, files = review_parts(self.task)  # git runs here, outside the lock
        with self._lock:
            if self._closed or round_ != self._review_round:
                for part in parts:
                    close_tree(part)
                return
            for old in self.review_content.children:
                close_tree(old)
            self.review_content.children = tuple(parts)
            self.files = files
            self._built_round = round_
            self._render_state()

    # -- what the user does (main thread; never under the lock) ------------------------
    def _answer(self, allow: bool) -> None:
        request = self._asking
        if request is None:
            return
        remember = self.remember.value
        if attempt(self.error, lambda: self.task.answer(request.request_id, allow, remember)):
            self.allow_button.disabled = self.deny_button.disabled = True
            self.remember.value = False

    def _decide(self, action: Callable[[], object]) -> None:
        actions = (self.approve_button, self.force_button, self.reject_button, self.request_button)
        for b in actions:
            b.disabled = True
        try:
            attempt(self.error, action)
        finally:
            for b in actions:
                b.disabled = False

    def _approve(self) -> None:
        """Merge a proven task. An unproven one is refused by the API: nothing is merged,
        and the view asks to confirm (`Merge anyway`)."""
        try:
            self.task.approve(self.strategy.value)
        except NotProven:
            self._set_unproven("; ".join(self.task.unproven_reasons) or "its checks fail")

    def _force(self) -> None:
        """The second, explicit click: merge the unproven task anyway (recorded)."""
        self.task.approve(self.strategy.value, force=True)
        self._set_unproven("")

    def _set_unproven(self, reasons: str) -> None:
        with self._lock:
            self._unproven = reasons
            self._render_state()

    def _reject(self) -> None:
        self.task.reject(self.reject_reason.value.strip() or None)

    def _request_changes(self) -> None:
        remember = self.remember_choice.value or None
        self.task.request_changes(self.changes_text.value, remember=remember)
        self.changes_text.value = ""
        self.remember_choice.value = ""


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
    return {key: widgets.HTML(values[key], layout={"width": width}) for key, width in COLUMNS}


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
        self.error = widgets.HTML()
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
            )
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
            children=(widgets.HTML(CSS), widgets.HBox(tuple(titles.values())), *self.rows.values())
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
