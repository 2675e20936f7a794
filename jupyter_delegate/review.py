"""The review's data: line comments and rounds, and the text the agent receives.

`LineComment` is a reviewer's comment on lines of the diff (a file, a line or a range, on
the new side or the old); `ReviewRound` is one round of review, from the journal: round 1
is the agent's first work, each request-changes starts the next, with the feedback and
comments that started it and the commits its diff runs between. `feedback_text` writes a
request-changes as the agent receives it, as in a pull-request review: the feedback, then
each comment anchored `path:line` with the lines it is about, then the reviewer's own
edits since the agent's last round.

Not here: reading the lines from git (the manager gives `quote` a file's text), the
journal (events.py, task.py fold it), any widget.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from .errors import UsageError

Side = Literal["new", "old"]
SIDES: tuple[Side, ...] = ("new", "old")
EDIT_DIFF_LIMIT = 8000  # characters of the reviewer's edits shown to the agent


@dataclass(frozen=True)
class LineComment:
    """A comment on `line` (1-based; to `end_line` for a range) of `path` (repository
    relative, as in the diff), in the new file (`side` "new") or the old one ("old")."""

    path: str
    line: int
    body: str
    end_line: int | None = None
    side: Side = "new"

    def __post_init__(self) -> None:
        where = f"A line comment on {self.path!r}"
        if not isinstance(self.path, str) or not self.path.strip():
            raise UsageError("A line comment needs a path: the file, as the diff names it.")
        if not isinstance(self.line, int) or isinstance(self.line, bool) or self.line < 1:
            raise UsageError(f"{where} needs a line number from 1, not {self.line!r}.")
        if self.end_line is not None and (
            not isinstance(self.end_line, int)
            or isinstance(self.end_line, bool)
            or self.end_line < self.line
        ):
            raise UsageError(
                f"{where}: its range ends at line {self.end_line!r}, which is not a line "
                f"number at or after {self.line}."
            )
        if not isinstance(self.body, str) or not self.body.strip():
            raise UsageError(f"{where}, line {self.line}, says nothing: give it a text.")
        if self.side not in SIDES:
            raise UsageError(f"{where}: side is 'new' or 'old', not {self.side!r}.")

    @property
    def last_line(self) -> int:
        return self.end_line if self.end_line is not None else self.line

    @property
    def anchor(self) -> str:
        """`path:line` or `path:line-end_line`, as the agent and the CLI read it."""
        lines = f"{self.line}" if self.last_line == self.line else f"{self.line}-{self.last_line}"
        return f"{self.path}:{lines}"

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"path": self.path, "line": self.line, "body": self.body}
        if self.end_line is not None:
            data["end_line"] = self.end_line
        if self.side != "new":
            data["side"] = self.side
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LineComment:
        """A comment from its dict (`to_dict`, a front end's JSON); bad input raises
        UsageError saying what is wrong."""
        if isinstance(data, LineComment):
            return data
        if not isinstance(data, Mapping):
            raise UsageError(
                f"A line comment is a dict with path, line and body, not {type(data).__name__}."
            )
        unknown = set(data) - {"path", "line", "body", "end_line", "side"}
        if unknown:
            raise UsageError(
                f"A line comment has path, line, body, end_line and side; not "
                f"{', '.join(sorted(unknown))}."
            )
        missing = [key for key in ("path", "line", "body") if key not in data]
        if missing:
            raise UsageError(f"A line comment lacks {', '.join(missing)}.")
        return cls(
            path=data["path"],
            line=data["line"],
            body=data["body"],
            end_line=data.get("end_line"),
            side=data.get("side", "new"),
        )


def comments_of(comments: Sequence[LineComment | Mapping[str, Any]]) -> tuple[LineComment, ...]:
    """Comments given as objects or dicts, checked."""
    if isinstance(comments, (str, Mapping)):
        raise UsageError("comments= takes a list of line comments (LineComment or dicts).")
    return tuple(LineComment.from_dict(c) for c in comments)  # type: ignore[arg-type]


@dataclass(frozen=True)
class ReviewRound:
    """One round of review. `number` 1 is the agent's first work; `feedback` and
    `comments` started this round (about the previous round's code; empty for round 1);
    its diff runs from `base` (the task's base for round 1, the head reviewed in the round
    before for later ones) to `head`, the task's head when this round reached review
    (after the reviewer's own edits, if any; None while it runs)."""

    number: int
    feedback: str
    comments: tuple[LineComment, ...]
    base: str
    head: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "feedback": self.feedback,
            "comments": [c.to_dict() for c in self.comments],
            "base": self.base,
            "head": self.head,
        }


def quote(comment: LineComment, text: str | None, commit: str) -> str:
    """The lines `comment` is about, from `text` (the file as of `commit`); a file or line
    that is not there raises UsageError."""
    side = "new" if comment.side == "new" else "old (before the change)"
    if text is None:
        raise UsageError(
            f"The comment on {comment.anchor} is about a file that is not in the {side} "
            f"version ({commit[:10]}): name a file the diff shows."
        )
    lines = text.splitlines()
    if comment.last_line > len(lines):
        raise UsageError(
            f"The comment on {comment.anchor} is about a line that is not there: "
            f"{comment.path} has {len(lines)} lines in the {side} version ({commit[:10]})."
        )
    return "\n".join(lines[comment.line - 1 : comment.last_line])


# How a request for changes starts, as the agent and the journal see it (the log finds a
# new round by it).
FEEDBACK_PREFIX = "The reviewer requests changes:\n\n"


def feedback_text(
    feedback: str,
    comments: Sequence[tuple[LineComment, str]],
    edits: Sequence[Mapping[str, Any]] = (),
    edits_diff: str = "",
) -> str:
    """A request-changes as the agent receives it: the feedback, each comment with its
    anchor and quoted lines, and the reviewer's own edits (commits, files, diff)."""
    parts = [FEEDBACK_PREFIX.rstrip()]
    if feedback.strip():
        parts.append(feedback.strip())
    if comments:
        lines = [f"Comments on the code ({len(comments)}):"]
        for comment, quoted in comments:
            side = " (old side: the code before your change)" if comment.side == "old" else ""
            lines.append(f"\n{comment.anchor}{side}")
            lines += [f"> {line}" for line in quoted.splitlines()] or ["> "]
            lines.append(comment.body.strip())
        parts.append("\n".join(lines))
    if edits:
        files = sorted({f for edit in edits for f in edit.get("files", [])})
        commits = ", ".join(str(edit["commit"])[:10] for edit in edits)
        text = (
            f"The reviewer edited the code themselves since your last round (commits "
            f"{commits}) in: {', '.join(files)}. Keep their edits; this is their diff:"
        )
        diff = edits_diff
        if len(diff) > EDIT_DIFF_LIMIT:
            diff = diff[:EDIT_DIFF_LIMIT] + "\n[... cut: the rest is in `git log -p` ...]"
        parts.append(f"{text}\n\n```diff\n{diff.rstrip()}\n```")
    return "\n\n".join(parts)
