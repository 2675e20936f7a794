"""The buttons of our widgets (review, plan, attempts): one way to run what they ask.

The front end sends `{"action": NAME, ...}`; `_do_NAME(content)` runs on a thread of its
own (a decision may take seconds: a merge, checks), `busy` names it meanwhile, and the
sentence it returns, or the error it raised, shows beside the button (`feedback`). A
`DelegateError` is the user's to read (`_refused` may say it better); anything else is a
bug, logged and shown where the user clicked rather than lost. `_after` re-reads what
the widget shows, whatever happened.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

import anywidget
import traitlets as t

from ..errors import DelegateError

log = logging.getLogger(__name__)
Handler = Callable[[Mapping[str, Any]], str]


class ActionWidget(anywidget.AnyWidget):
    """An anywidget whose buttons run `_do_<action>` methods (module docstring)."""

    busy = t.Unicode("").tag(sync=True)  # the action running
    feedback = t.Dict().tag(sync=True)  # {"action", "text", "error": bool}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.on_msg(self._on_msg)

    def _on_msg(self, _widget: Any, content: Mapping[str, Any], _buffers: Any) -> None:
        action = str(content.get("action", ""))
        handler: Handler | None = getattr(self, f"_do_{action}", None)
        if handler is None:
            self.feedback = {"action": action, "text": f"Unknown action {action!r}", "error": True}
            return
        self.busy = action
        self.feedback = {}
        name = f"{type(self).__name__}-{action}"
        threading.Thread(
            target=self._run, args=(action, handler, content), daemon=True, name=name
        ).start()

    def _run(self, action: str, handler: Handler, content: Mapping[str, Any]) -> None:
        try:
            text, error = handler(content), False
        except DelegateError as exc:
            text, error = self._refused(exc), True
        except Exception as exc:  # a bug: shown where the user clicked, not lost in a log
            log.exception("%s action %s failed", type(self).__name__, action)
            text, error = f"Unexpected error (please report it): {exc!r}", True
        try:
            self._after()
        except Exception:
            log.exception("%s could not read what it shows", type(self).__name__)
        self.busy = ""
        if text:
            self.feedback = {"action": action, "text": text, "error": error}

    def _refused(self, exc: DelegateError) -> str:
        """What a refusal says in the widget (default: its message)."""
        return str(exc)

    def _after(self) -> None:
        """Re-read what the widget shows, after an action (default: nothing)."""
