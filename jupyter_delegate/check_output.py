"""A check's output as a person reads it in a review, and agent text made fit to print.

`failure_tail(output)`: the last lines of a failing check's output that say why it failed
(at most `TAIL_LINES`; for pytest, its "short test summary info" first). The CLI, the
review widget and the notebook record (hence the JupyterLab card) all show this one
selection. `whole_output(check, folder)`: everything the check printed, from its log file
in the task's folder, or the last 4000 characters the journal keeps when there is no log
(an older journal, a removed file). `printable(text)`: text the agent could influence
(its words, check output, file names) with what a terminal would act upon removed:
escape sequences, control characters but newline and tab, bidi overrides.

Not here: running checks and writing their logs (manager.py, sandbox.py), rendering (cli.py,
notebook/views.py, notebook/record.py, the card), and HTML escaping, which each HTML view
does itself.
"""

from __future__ import annotations

import re
from pathlib import Path

from .task import CheckResult

TAIL_LINES = 15  # lines of a failing check's output shown in a review
LINE_CHARS = 300  # a longer line is cut to this many characters
SCAN_CHARS = 100_000  # the tail is chosen from the end of the output this long (a log
# may hold 2 MB; a pytest summary of a thousand failures is about that long)
PYTEST_SUMMARY = "short test summary info"

_ESCAPE_SEQUENCE = re.compile(
    r"\x1b(?:"
    r"\[[0-?]*[ -/]*[@-~]"  # CSI: colours, cursor moves, erasing
    r"|[\]PX^_][^\x07\x1b\n]*(?:\x07|\x1b\\)?"  # OSC, DCS, SOS, PM, APC: titles, links
    r"|[ -/]*[0-~]"  # the other escapes (charsets, keypad modes, resets)
    r")?"
)
# C0 controls but tab and newline (CR too: it lets a line overwrite itself), DEL, C1
# controls (U+009B is a CSI to some terminals), and the bidi embeddings, overrides and
# isolates that reorder what is shown (U+202A-U+202E, U+2066-U+2069).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """`text` with terminal escape sequences, control characters (but newline and tab)
    and bidi overrides removed: what the CLI prints of anything the agent could
    influence, so it cannot move the cursor, retitle the terminal or reorder a line."""
    return _CONTROL.sub("", _ESCAPE_SEQUENCE.sub("", text))


def failure_tail(output: str, limit: int = TAIL_LINES) -> str:
    """The last lines of `output` that say why a check failed: at most `limit` lines,
    trailing blank lines dropped, made `printable`, each cut to `LINE_CHARS`.

    When pytest's "short test summary info" (one line per failed test, then the counts)
    does not fit in the last `limit` lines, its start and its last line are kept instead,
    with a line saying how many were left out: the first failures and the counts say
    more than the end of the last traceback."""
    if len(output) > SCAN_CHARS:
        output = output[-SCAN_CHARS:].split("\n", 1)[-1]
    lines = [_cut(line.rstrip()) for line in printable(output).splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    start = _pytest_summary(lines)
    if start is None or limit < 3 or len(lines) - start <= limit:
        return "\n".join(lines[-limit:]) if limit > 0 else ""
    summary = lines[start:]
    left_out = len(summary) - (limit - 1)
    return "\n".join([*summary[: limit - 2], f"[… {left_out} more lines]", summary[-1]])


def _pytest_summary(lines: list[str]) -> int | None:
    for at in range(len(lines) - 1, -1, -1):
        line = lines[at]
        if PYTEST_SUMMARY in line and line.startswith("="):
            return at
    return None


def _cut(line: str) -> str:
    return line if len(line) <= LINE_CHARS else line[: LINE_CHARS - 1] + "…"


def check_log(check: CheckResult, folder: Path | None) -> Path | None:
    """The file holding everything `check` printed, if it is still there. A relative
    `log` is in the task's `folder`; an absolute one that is gone (the repository moved)
    is looked for at the same place under the task's folder (named by the task's id)."""
    if not check.log:
        return None
    path = Path(check.log)
    candidates = [path] if path.is_absolute() else []
    if folder is not None and not path.is_absolute():
        candidates.append(folder / path)
    elif folder is not None and folder.name in path.parts:
        at = len(path.parts) - 1 - path.parts[::-1].index(folder.name)
        candidates.append(folder.joinpath(*path.parts[at + 1 :]))
    return next((c for c in candidates if c.is_file()), None)


def whole_output(check: CheckResult, folder: Path | None) -> str:
    """Everything `check` printed, as its log in the task's `folder` keeps it (redacted
    when written; for a flood, its head and tail), or, when there is no log, the last
    4000 characters the journal keeps."""
    log = check_log(check, folder)
    if log is None:
        return check.output_tail
    try:
        return log.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return check.output_tail
