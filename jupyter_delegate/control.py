"""The control inbox: how any process steers a task that another process runs.

Only the process holding a task's lock writes its journal (manager.py). Any other
process that wants something of the task (answer a permission question, approve,
reject, request changes, cancel, pause) posts a request: one JSON line appended to the
task's `inbox.jsonl`, `{request_id, action, args, by, posted}`, where `by` says who asked
(process id, host, user, and through what: the CLI, a notebook, Python, the Jupyter
server; for the server also `server_user`, the user it authenticated). The lock holder
reads new lines within a fraction of a second, journals the request as a `control`
event (`status: accepted`), acts exactly as if its own user had asked, and journals the
outcome (`status: done` with `result`, or `refused` with `error`). The requester follows
the journal for that outcome. When no process holds the lock (the task is in review,
or the process running it died), the requester takes the lock and acts itself, and
journals the same events.

Who may post: whoever can write the repository's git dir, where the inbox lives; a
request is authenticated by nothing else (SECURITY.md). Lines are appended with
O_APPEND, one write each, so concurrent posters never interleave.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ReviewError

ACTIONS = ("answer", "approve", "reject", "request_changes", "commit_edits", "cancel", "pause")
INBOX = "inbox.jsonl"


@dataclass(frozen=True)
class Request:
    """One control request, as posted."""

    request_id: str
    action: str
    args: Mapping[str, Any] = field(default_factory=dict)
    by: Mapping[str, Any] = field(default_factory=dict)
    posted: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "args": dict(self.args), "by": dict(self.by)}


VIAS = {"cli": "the CLI", "notebook": "a notebook", "server": "the Jupyter server"}


def requester(via: str, **extra: Any) -> dict[str, Any]:
    """Who is asking: this process, its host and user, and `via` (cli, notebook, python,
    server); `extra` adds what the process knows beyond that (the Jupyter server:
    `server_user`, the user it authenticated)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return {**extra, "pid": os.getpid(), "host": socket.gethostname(), "user": user, "via": via}


def describe(by: Mapping[str, Any]) -> str:
    """`by` in a few words: "the CLI (pid 4242 on host, user ada)"; through the server,
    "the Jupyter server (user alice; pid 4242 on host)"."""
    via = VIAS.get(str(by.get("via")), "Python")
    if by.get("server_user"):
        return f"{via} (user {by['server_user']}; pid {by.get('pid')} on {by.get('host')})"
    return f"{via} (pid {by.get('pid')} on {by.get('host')}, user {by.get('user')})"


def who(by: Mapping[str, Any]) -> str:
    """`by` as a review names it: "alice via the Jupyter server", "ada via the CLI"."""
    name = by.get("server_user") or by.get("user") or "someone"
    return f"{name} via {VIAS.get(str(by.get('via')), 'Python')}"


def post(folder: Path, action: str, args: Mapping[str, Any], by: Mapping[str, Any]) -> Request:
    """Append a request to the task's inbox; it is on disk when this returns."""
    if action not in ACTIONS:
        raise ReviewError(f"Unknown control action {action!r}: one of {', '.join(ACTIONS)}.")
    request = Request(secrets.token_hex(4), action, dict(args), dict(by), round(time.time(), 3))
    line = (json.dumps(request.to_dict(), sort_keys=True) + "\n").encode()
    fd = os.open(folder / INBOX, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return request


def read(folder: Path, offset: int = 0) -> tuple[list[Request], int]:
    """The requests posted from byte `offset` on, and the offset after the last whole line.
    A line that is not a request (a torn write) is skipped."""
    try:
        with (folder / INBOX).open("rb") as handle:
            handle.seek(offset)
            tail = handle.read()
    except FileNotFoundError:
        return [], offset
    found: list[Request] = []
    for line in tail.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        offset += len(line)
        try:
            raw = json.loads(line)
            request = Request(**raw)
        except (ValueError, TypeError):
            continue
        if request.action in ACTIONS and isinstance(request.args, dict):
            found.append(request)
    return found, offset
