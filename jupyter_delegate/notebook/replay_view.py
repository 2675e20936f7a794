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
without the extension draw the widget.

Not here: reading the journal (replay.py), the `%delegate replay` magic (magics.py), the
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
from ..replay import Replay

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
REPLAY_MIME = "application/vnd.jupyter-delegate.replay+json"
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
        self.on_msg(self._on_msg)

    def __repr__(self) -> str:
        task = self.replay.task
        label = task.get("name") or task.get("id")
        return f"Replay of task {label} ({task.get('state')}): {len(self.replay)} steps"

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        shown = super()._repr_mimebundle_(**kwargs)
        data, metadata = shown if isinstance(shown, tuple) else (shown, {})
        if data is None:
            return None
        data = {**data, "text/plain": repr(self), REPLAY_MIME: self.replay.to_dict(diffs=True)}
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
