"""A task's replay in the notebook: `ReplayView(replay)`, an anywidget whose front end is
the replay renderer shared with the offline page and the JupyterLab MIME renderer
(labextension/src/replay/replay.js, bundled into static/replay.js by `npm run build`).

The replay's data (`Replay.to_dict()`, without diffs) is the `data` trait. The front end
asks for the diff of a step whose tree it has no diff for ({"action": "diff", "index",
"tree"}); the kernel answers with `Replay.diff_at` on a thread of its own (git runs there),
as a custom message ({"kind": "diff", "tree", "diff"} or {..., "error"}).

Its display bundle also carries `REPLAY_MIME` with the data and every step's diff, so a
saved notebook shows the replay without a kernel: JupyterLab's MIME renderer
(labextension/src/replay-mime.ts) draws it, ranked before the widget view; front ends
without the extension draw the widget. Every diff of a long task takes seconds (about 5 ms
a worktree, bench/replay.py), so `show` draws a replay of more than `DIFFS_AT_ONCE`
worktrees at once without them (`diffs_pending` in its data) and updates the output with
them from a thread when they are made.

Not here: reading the journal (replaying.py), the `%delegate replay` magic (magics.py), the
offline HTML page (replay_page.py).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anywidget
import traitlets as t

from ..errors import DelegateError
from ..replaying import Replay

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
REPLAY_MIME = "application/vnd.jupyter-delegate.replay+json"
DIFFS_AT_ONCE = 100  # worktrees whose diffs a replay is shown with at once (about 0.5 s)
MISSING_FRONT_END = """export default { render({ el }) {
  el.textContent = "The replay's front end is not built: run `npm run build` in labextension/.";
} };
"""


def _static(name: str, fallback: str) -> str:
    path = STATIC / name
    return path.read_text(encoding="utf-8") if path.exists() else fallback


class ReplayView(anywidget.AnyWidget):
    """The replay of one task: a slider and a step list over its steps, and at each step
    what the agent said and did, what it cost, and the worktree's diff from the base."""

    _esm = t.Unicode(_static("replay.js", MISSING_FRONT_END)).tag(sync=True)
    _css = t.Unicode(_static("replay.css", "")).tag(sync=True)

    data = t.Dict().tag(sync=True)  # Replay.to_dict(): the task and its steps, no diffs

    def __init__(self, replay: Replay, **kwargs: Any) -> None:
        super().__init__(data=replay.to_dict(diffs=False), **kwargs)
        self.replay = replay
        self._with_diffs: dict[str, Any] | None = None  # the MIME data, once its diffs are made
        self.on_msg(self._on_msg)

    def show(self) -> None:
        """Display the replay in the notebook: at once with its diffs when it has few
        worktrees, else at once without them and again, from a thread, with them."""
        from IPython import display as ipython_display

        display: Any = ipython_display.display  # IPython's own is not typed
        trees = {step.tree for step in self.replay.steps if step.tree is not None}
        if len(trees) <= DIFFS_AT_ONCE:
            self._with_diffs = self.replay.to_dict(diffs=True)
            display(self)
            return
        handle = display(self, display_id=True)

        def make_diffs() -> None:
            try:
                self._with_diffs = self.replay.to_dict(diffs=True)
            except Exception:  # the widget still asks for each step's diff on its own
                log.exception("replay diffs of %s", self.replay.task.get("id"))
                return
            if handle is not None:
                handle.update(self)

        threading.Thread(target=make_diffs, daemon=True, name="ReplayView-diffs").start()

    def __repr__(self) -> str:
        task = self.replay.task
        label = task.get("name") or task.get("id")
        return f"Replay of task {label} ({task.get('state')}): {len(self.replay)} steps"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        shown = super()._repr_mimebundle_(**kwargs)
        data, metadata = shown if isinstance(shown, tuple) else (shown, {})
        if data is None:
            return None
        full = self._with_diffs
        if full is None and len(self.replay) <= DIFFS_AT_ONCE:
            full = self._with_diffs = self.replay.to_dict(diffs=True)
        shown_data = full if full is not None else {**self.data, "diffs_pending": True}
        data = {**data, "text/plain": repr(self), REPLAY_MIME: shown_data}
        return data, metadata

    def _on_msg(self, _widget: Any, content: Mapping[str, Any], _buffers: Any) -> None:
        if content.get("action") != "diff":
            return
        threading.Thread(
            target=self._send_diff,
            args=(content.get("index"), content.get("tree")),
            daemon=True,
            name="ReplayView-diff",
        ).start()

    def _send_diff(self, index: Any, tree: Any) -> None:
        try:
            if not isinstance(index, int):
                raise DelegateError(f"step {index!r} is not a step's index")
            self.send({"kind": "diff", "tree": tree, "diff": self.replay.diff_at(index)})
        except DelegateError as exc:
            self.send({"kind": "diff", "tree": tree, "error": str(exc)})
        except Exception as exc:  # a bug: shown in the diff pane, not lost in a log
            log.exception("replay diff of step %r failed", index)
            self.send({"kind": "diff", "tree": tree, "error": f"unexpected error: {exc!r}"})


__all__ = ["REPLAY_MIME", "ReplayView"]
