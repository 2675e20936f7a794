"""The review of one task as an anywidget: the review bar (verdict, counts, actions), the
diff rendered by diff2html in the front end, line comments, rounds and the reviewer's own
edits. It works wherever anywidget does (JupyterLab, Notebook 7, VS Code): its front end is
one ES module, `static/review.js`, bundled with diff2html by `npm run build`
(labextension/src/review/).

Here: `ReviewView` (the traits the front end draws, and the messages it sends: approve,
force, keep, reject, request_changes, page, since, whole_file, edit, save, commit_edits),
`changed_files` (a `git diff --patch` cut into files, each named added, deleted, renamed
or binary) and `pages` (files grouped into pages of at most `PAGE_LINES` lines: a large
diff is sent a page at a time, never whole in one trait).

Not here: deciding anything (every action is a call on the `Task` API, what it raises is
shown as one red line beside the click), what the agent receives from a request-changes
(`jupyter_delegate.review`), the live log and the header (`views.py`).

Threading (DESIGN principle 6): a message from the front end arrives on the kernel's main
thread; its action runs on a thread of its own (an approve waits on the engine), and the
result is shown by setting traits. Task events arrive on the engine thread and only set
traits; the diff, which runs git, is read on a thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import traitlets as t

from ..errors import DelegateError, NotProven
from ..review import LineComment
from ..task import Task, TaskEvent, TaskState
from .actions import ActionWidget
from .header import cost_text
from .views import FileDiff, split_diff

S = TaskState
log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
PAGE_LINES = 3000  # lines of diff sent in one page; a file longer than this is cut
WHOLE_FILE_CHARS = 500_000  # the most of a file "whole file" or "edit" sends
MISSING_FRONT_END = """export default { render({ el }) {
  el.textContent = "The review's front end is not built: run `npm run build` in labextension/.";
} };
"""


def _static(name: str, fallback: str) -> str:
    path = STATIC / name
    return path.read_text() if path.exists() else fallback


# -- the diff, cut into files and pages -------------------------------------------------------
@dataclass(frozen=True)
class ChangedFile:
    """One file of a diff as the file list shows it. `status`: added, deleted, renamed,
    binary or modified; `old_path` differs from `path` for a rename."""

    path: str
    old_path: str
    status: str
    added: int
    removed: int
    text: str  # its part of the patch
    lines: int

    def to_dict(self, page: int) -> dict[str, Any]:
        return {
            "path": self.path,
            "old_path": self.old_path,
            "status": self.status,
            "added": self.added,
            "removed": self.removed,
            "page": page,
            "cut": max(0, self.lines - PAGE_LINES),  # lines of its patch not sent
        }


def _status(lines: Sequence[str]) -> tuple[str, str]:
    old_path = ""
    status = "modified"
    for line in lines:
        if line.startswith("rename from "):
            old_path, status = line[len("rename from ") :], "renamed"
        elif line.startswith("new file mode"):
            status = "added"
        elif line.startswith("deleted file mode"):
            status = "deleted"
        elif line.startswith(("Binary files ", "GIT binary patch")):
            return "binary", old_path
        elif line.startswith("@@"):
            break
    return status, old_path


def changed_files(diff: str) -> list[ChangedFile]:
    """Each file of `diff` (a `git diff --stat --patch`; the stat is dropped), named."""
    _stat, files = split_diff(diff)
    return [_changed(file) for file in files]


def _changed(file: FileDiff) -> ChangedFile:
    status, old_path = _status(file.lines)
    return ChangedFile(
        path=file.path,
        old_path=old_path or file.path,
        status=status,
        added=file.added,
        removed=file.removed,
        text="\n".join(file.lines[:PAGE_LINES]) + "\n",
        lines=len(file.lines),
    )


def pages(files: Sequence[ChangedFile]) -> list[list[ChangedFile]]:
    """The files in pages of at most `PAGE_LINES` lines (a longer file alone, cut)."""
    result: list[list[ChangedFile]] = [[]]
    size = 0
    for file in files:
        if result[-1] and size + file.lines > PAGE_LINES:
            result.append([])
            size = 0
        result[-1].append(file)
        size += file.lines
    return result


# -- the widget --------------------------------------------------------------------------------
class ReviewView(ActionWidget):
    """The review of `task`: in review, its bar offers Approve, Request changes and Reject;
    merged or rejected, it shows what was decided, read-only."""

    _esm = t.Unicode(_static("review.js", MISSING_FRONT_END)).tag(sync=True)
    _css = t.Unicode(_static("review.css", "")).tag(sync=True)

    task_id = t.Unicode("").tag(sync=True)
    name = t.Unicode("").tag(sync=True)  # the task's name, or its title
    state = t.Unicode("").tag(sync=True)
    verdict = t.Unicode("").tag(sync=True)  # Task.verdict, "" outside review
    reasons = t.List(t.Unicode()).tag(sync=True)  # why it is not proven
    summary = t.Unicode("").tag(sync=True)
    counts = t.Dict().tag(sync=True)  # files, added, removed, checks_passed/failed, cost
    checks = t.List(t.Dict()).tag(sync=True)  # command, passed, exit_code, duration_s, tail
    show_checks = t.Bool(True).tag(sync=True)  # False where the checks are shown in full
    worktree = t.Unicode("").tag(sync=True)
    base_branch = t.Unicode("").tag(sync=True)
    # the diff: every file named, one page of patch text at a time
    files = t.List(t.Dict()).tag(sync=True)
    page = t.Int(0).tag(sync=True)
    page_count = t.Int(1).tag(sync=True)
    page_diff = t.Unicode("").tag(sync=True)
    page_files = t.List(t.Unicode()).tag(sync=True)  # the paths of this page, in order
    diff_error = t.Unicode("").tag(sync=True)
    since = t.Unicode("").tag(sync=True)  # "" all changes, else the commit the diff is from
    shown_since = t.Unicode("").tag(sync=True)  # the `since` of the diff the pages are of
    diff_style = t.Unicode("line-by-line").tag(sync=True)  # or "side-by-side"
    viewed = t.List(t.Unicode()).tag(sync=True)  # paths ticked "viewed"
    # rounds and comments
    rounds = t.List(t.Dict()).tag(sync=True)  # ReviewRound.to_dict()
    draft_comments = t.List(t.Dict()).tag(sync=True)  # LineComment dicts not yet sent
    human_edits = t.List(t.Dict()).tag(sync=True)
    # what the user did: a confirmation asked, the result beside the click, the decision
    asking = t.Unicode("").tag(sync=True)  # "force" while "merge anyway?" is asked
    decision = t.Unicode("").tag(sync=True)  # what was decided, as a sentence

    def __init__(self, task: Task, **kwargs: Any) -> None:
        super().__init__(task_id=task.id, name=task.name or task.title, **kwargs)
        self.task = task
        self._lock = threading.Lock()
        self._files: list[ChangedFile] = []
        self._pages: list[list[ChangedFile]] = [[]]
        self._closed = False
        self._read_task()
        self._load_diff()
        self.observe(self._on_page, names="page")
        self.observe(self._on_since, names="since")
        self._unsubscribe = task.subscribe(self._on_event)

    def close(self) -> None:
        self._closed = True
        self._unsubscribe()
        super().close()

    # -- the task's facts -----------------------------------------------------------------
    def _read_task(self) -> None:
        task = self.task
        self.state = str(task.state)
        self.verdict = task.verdict or ""
        self.reasons = list(task.unproven_reasons) if task.state == S.REVIEW else []
        self.summary = task.summary or ""
        self.checks = [
            {
                "command": c.command,
                "passed": c.passed,
                "exit_code": c.exit_code,
                "duration_s": c.duration_s,
                "tail": c.output_tail[-2000:],
            }
            for c in task.checks
        ]
        self.worktree = str(task.worktree or "")
        self.base_branch = task.base_branch or ""
        try:
            self.rounds = [r.to_dict() for r in task.review_rounds()]
        except (DelegateError, OSError) as exc:
            log.warning("review rounds of %s: %s", task.id, exc)
        self.human_edits = [dict(edit) for edit in task.human_edits]
        self._count()

    def _count(self) -> None:
        self.counts = {
            "files": len(self._files),
            "added": sum(f.added for f in self._files),
            "removed": sum(f.removed for f in self._files),
            "checks_passed": sum(c.passed for c in self.task.checks),
            "checks_failed": sum(not c.passed for c in self.task.checks),
            "cost": cost_text(self.task, short=True),
        }

    def _load_diff(self) -> None:
        """Read the diff (all changes, or since `self.since`) and show its first page;
        a diff read for a `since` changed meanwhile is dropped (its newer read shows)."""
        since = self.since
        try:
            text = self.task.diff(since=since or None)
            problem = ""
        except Exception as exc:  # git's errors too: one line where the diff would be
            text, problem = "", f"The diff cannot be shown: {exc}"
        files = changed_files(text)
        with self._lock:
            if since != self.since:
                return
            self._files, self._pages = files, pages(files)
            self.diff_error = problem
            self.files = [f.to_dict(n) for n, page in enumerate(self._pages) for f in page]
            self.page_count = len(self._pages)
            self._count()
            self._show_page(0)
            self.shown_since = since  # last: the front end knows the pages are this diff's

    def _show_page(self, number: int) -> None:
        number = max(0, min(number, len(self._pages) - 1))
        shown = self._pages[number]
        self.page_files = [f.path for f in shown]
        self.page_diff = "".join(f.text for f in shown)
        self.page = number

    # -- events (engine thread) ---------------------------------------------------------------
    def _on_event(self, event: TaskEvent) -> None:
        if self._closed:
            return
        if event.kind == "state":
            self._read_task()
            if event.data.get("state") == S.REVIEW:  # a new round: last round's words go
                self.since, self.asking, self.feedback = "", "", {}
                threading.Thread(target=self._load_diff, daemon=True).start()
        elif event.kind in ("checks", "usage"):
            self._read_task()

    # -- the front end's requests -------------------------------------------------------------
    def _on_page(self, change: Mapping[str, Any]) -> None:
        with self._lock:
            if change["new"] != change["old"]:
                self._show_page(change["new"])

    def _on_since(self, change: Mapping[str, Any]) -> None:
        threading.Thread(target=self._load_diff, daemon=True).start()

    def _after(self) -> None:
        self._read_task()

    # Each `_do_<action>` runs on its own thread and returns the sentence to show.
    def _do_approve(self, content: Mapping[str, Any]) -> str:
        """Merge a proven task; an unproven one is refused by the API, and the view asks
        "merge anyway?" naming why (the `asking` trait)."""
        try:
            commit = self.task.approve(str(content.get("strategy") or "merge"))
        except NotProven:
            self.asking = "force"
            return ""
        return self._merged(commit)

    def _do_force(self, content: Mapping[str, Any]) -> str:
        """The second, explicit click: merge the unproven task anyway (recorded)."""
        commit = self.task.approve(str(content.get("strategy") or "merge"), force=True)
        self.asking = ""
        return self._merged(commit, forced=True)

    def _merged(self, commit: str, forced: bool = False) -> str:
        how = " without proof (recorded)" if forced else ""
        self.decision = f"Merged into {self.task.base_branch} as {commit[:10]}{how}."
        return self.decision

    def _do_keep(self, content: Mapping[str, Any]) -> str:
        self.asking = ""
        return ""

    def _do_reject(self, content: Mapping[str, Any]) -> str:
        reason = str(content.get("reason") or "").strip()
        self.task.reject(reason or None)
        self.decision = f"Rejected: {reason}." if reason else "Rejected."
        return f"{self.decision} The branch is archived."

    def _do_request_changes(self, content: Mapping[str, Any]) -> str:
        comments = [LineComment.from_dict(c) for c in content.get("comments", ())]
        feedback = str(content.get("feedback") or "")
        remember = str(content.get("remember") or "") or None
        self.task.request_changes(feedback, remember=remember, comments=comments)
        self.draft_comments = []
        said = f" and {len(comments)} line comments" if comments else ""
        return f"Changes requested: the agent continues with your feedback{said}."

    def _do_page(self, content: Mapping[str, Any]) -> str:
        with self._lock:
            self._show_page(int(content.get("page", 0)))
        return ""

    def _do_whole_file(self, content: Mapping[str, Any]) -> str:
        path = str(content["path"])
        self.send({"kind": "whole_file", "path": path, "text": self._file_text(path)})
        return ""

    def _do_edit(self, content: Mapping[str, Any]) -> str:
        path = str(content["path"])
        self.send({"kind": "edit", "path": path, "text": self._file_text(path)})
        return ""

    def _do_save(self, content: Mapping[str, Any]) -> str:
        path = str(content["path"])
        self.task.worktree_file(path).write_text(str(content["text"]))
        return f"Saved {path} in the task's worktree; commit your edits to re-run the checks."

    def _do_commit_edits(self, content: Mapping[str, Any]) -> str:
        commit = self.task.commit_edits(str(content.get("message") or ""))
        self._load_diff()
        return f"Your edits are committed as {commit[:10]}; the checks ran again."

    def _file_text(self, path: str) -> str:
        file = self.task.worktree_file(path)
        if not file.exists():
            return ""
        return file.read_text(errors="replace")[:WHOLE_FILE_CHARS]
