"""Where a round of a task's work runs: the `Runner` seam.

A decision that starts work (submit, request changes, resume) describes the round as a
`Round`: the repository and the task's id, plain data that pickles, because everything
else a round needs is in the task's journal. A runner carries it out: it holds the
task's lock for the round, runs it (rounds.py), writes through the journal, and serves
the task's control inbox meanwhile (control.py), so answers, pauses and cancels reach it
from any process.

- `EngineRunner` (the default) runs rounds on this process's engine thread, the
  manager's; the decision that starts a round holds the lock and hands it over.
- Anything else (`in_process = False`) gets the round after the decision let the lock
  go, and runs it wherever it likes by calling `run_round` there: another process, a
  Dask worker. The manager that decided follows the journal until the round ends.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from .manager import TaskManager
    from .task import TaskState


@dataclass(frozen=True)
class Round:
    """One round of a task's work, as any process can carry it out."""

    repo: str  # the user's checkout
    task_id: str
    why: str = ""  # "submitted", "changes requested", "resumed"


class Runner(Protocol):
    """Carries out rounds. `in_process`: the round runs in this process, under the lock
    the decision took; otherwise the runner's process takes the lock (`run_round`)."""

    in_process: bool

    def start(self, work: Round) -> None: ...


class EngineRunner:
    """Rounds on the manager's engine thread, in this process."""

    in_process = True

    def __init__(self, manager: TaskManager) -> None:
        self._manager = manager

    def start(self, work: Round) -> None:
        self._manager._launch(work)


def run_round(
    work: Round,
    manager: TaskManager | None = None,
    where: Mapping[str, Any] | None = None,
    note: str = "",
) -> TaskState:
    """Carry out `work` here: take the task's lock, run the round on this process's
    engine, and return the state it ended in (review, failed, paused, cancelled, ...).
    What a runner in another process or on another machine calls. `where`: the data of a
    `runner` event (events.RanOn) to journal first, under the lock: where the round runs.
    `note`: what the harness tells the agent then, as a user turn (a round taken over from
    a lost worker: what was lost with it)."""
    from .manager import TaskManager

    manager = manager or TaskManager(via="runner")
    task = manager.claim(work)
    if where is not None:
        manager._record(task, "runner", where)
    if note:
        manager._record(task, "user", {"content": [{"type": "text", "text": note}]})
    manager._launch(work)
    return manager.until_round_ends(task)
