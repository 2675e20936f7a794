"""The errors jupyter-delegate raises to its users.

Every error a user can meet is a `DelegateError`: its message says what was wrong and
what to do next. Magics, the CLI and the API all let it propagate (a notebook cell then
fails, so nbclient and papermill see it, and shows it as one red line); nothing prints an
error and carries on.
"""

from __future__ import annotations


class DelegateError(Exception):
    """Base class: something the user asked for cannot be done as asked."""

    def _render_traceback_(self) -> list[str]:
        """How IPython shows it in a notebook: one red line, its name and message, not a
        traceback (the message says what to do; the cell still fails)."""
        return [f"\x1b[0;31m{type(self).__name__}\x1b[0m: {self}"]


class OutcomeError(DelegateError):
    """The outcome (goal, checks, scope, budget) is malformed."""


class RepoError(DelegateError):
    """The repository is not usable as asked (not a repo, no commits, unknown base...)."""


class ReviewError(DelegateError):
    """An approve, reject or request-changes could not be carried out; nothing was lost."""


class NotProven(ReviewError):
    """An approve was refused: the task's checks did not all pass, it has none, or a
    budget stopped it. The message says why, and how to merge it anyway."""


class SandboxUnavailable(DelegateError):
    """Commands cannot be confined here; the message names the fix."""


class EnvironmentConfigError(DelegateError):
    """The declared environment ([environment], --env) is malformed; the message says
    where and how to fix it."""


class ModelConfigError(DelegateError):
    """No usable model endpoint: no API key and no fake server, or a bad model setting."""


class TaskNotFound(DelegateError):
    """No task with that id in this repository."""


class IllegalTransition(DelegateError):
    """A task was asked to move to a state it cannot reach from where it is."""


class JournalError(DelegateError):
    """A journal cannot be read or does not verify."""


class ContextError(DelegateError):
    """A skill, lock file or preference is malformed or cannot be found."""


class StaleJournal(JournalError):
    """Another process appended to the journal since this one last read it: nothing was
    written. Re-read the task (`Task.refresh()`) and decide again."""


class UsageError(DelegateError):
    """An argument is malformed (a line comment without a line, say): the message says
    which and how to write it."""


class NotifyConfigError(DelegateError):
    """The `[notify]` table of the user's config is malformed: the message says where and
    what it takes."""


class PlanError(DelegateError):
    """A plan that cannot be run or integrated as written: what is wrong, and the fix."""


class PlanNotFound(PlanError):
    """No plan with that id in this repository."""


class MergeConflict(ReviewError):
    """Commits that cannot be merged without a human: both changed the same lines."""

    def __init__(self, files: list[str]) -> None:
        super().__init__(f"they conflict in {', '.join(files) or 'some files'}")
        self.files = files
