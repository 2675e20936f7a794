"""A task's header (its name, state and spending, one line at the top of its live view),
and the early header: the same line shown as plain HTML the moment a task is submitted,
before the live view's widgets exist.

Why an early header: a live view is widgets, and the front end draws it only after it has
made every one of their models (`views.py`), which takes longer than the cell's own work
(bench/ui_latency.py, issue 22). An HTML output is drawn as soon as it arrives, as
`print`'s is. So `%%delegate` shows the header first, as a display of its own, then makes
and shows the view, whose header takes the early one's place when the view draws:
- its front end (static/live.js) hides the early header at once, in the view's first
  draw, and asks the page to empty it by a bubbling `jd-live-shown` DOM event, which our
  JupyterLab / Notebook 7 extension answers by emptying that output in the notebook's
  model (labextension/src/restart.ts), so a saved notebook keeps no stale header;
- it tells the kernel (a widget message), which empties the output by its display_id,
  for front ends that apply such an update after the cell has finished (VS Code).
  JupyterLab does not (an update reaches an output only while its cell's request is
  live), hence the extension's part.
A view that never draws (no widget front end: nbclient, papermill) leaves the early
header as its record is left: brought up to date from a later cell, `%delegate wait` or a
decision, which empties it once the task has stopped working (those front ends apply the
display updates of the running cell only).

Here only what needs no widgets, so that the early header is out before the first cell
of a kernel imports ipywidgets for the view.
"""

from __future__ import annotations

import html
import time
from typing import Any
from xml.sax.saxutils import quoteattr

from ..engine.model import PRICE_GUESSED, usd_text
from ..task import Task
from .record import badge

# In the early header's bundle beside its HTML: which task's view takes its place (the
# extension finds the output by it) and when it was shown (epoch s). Our extension renders
# it (labextension/src/mime.ts: the HTML as it is, not typeset), and only while it is
# early, `EARLY_FOR_S` after it was shown: one saved before its view drew (a notebook run
# by nbclient, saved within that moment) is stale when the notebook is opened again.
EARLY_MIME = "application/vnd.jupyter-delegate.early-header+json"
EARLY_FOR_S = 60
# The look of the header's facts, which the view's stylesheet gives the live header: the
# early header's own, inline (a <style> in an output would restyle the whole page twice,
# as it comes and as it goes, while the view's widgets are being made).
META_STYLE = "color: #57606a; font-size: 90%"

esc = html.escape


def cost_text(task: Task, short: bool = False) -> str:
    """The task's cost, marked when it rests on a price guessed from the model family
    (`short`: by a leading ~, where there is no room for words)."""
    cost = usd_text(task.usage.cost_usd)
    if not task.price_guessed:
        return cost
    return f"~{cost}" if short else f"{cost} ({PRICE_GUESSED})"


def header_html(task: Task, name: str, meta_style: str = "") -> str:
    """The task's name, state and spending. How long it has run, and what it does now,
    are on the live line below (`live.LiveStatus`), which ticks in the browser.
    `meta_style`: an inline style of the facts (the early header's)."""
    usage = task.usage
    facts = [
        f"{usage.steps} step" + ("" if usage.steps == 1 else "s"),
        f"{usage.input_tokens} in / {usage.cache_read_tokens} cached / "
        f"{usage.output_tokens} out tokens",
        cost_text(task),
        ", ".join(task.served_models) or task.model,
        f"sandbox {task.sandbox}" if task.sandbox else "",
    ]
    return (
        f'<div class="jd-header"><code>{esc(task.id)}</code> <b>{esc(name)}</b> '
        f"{badge(task.state, task.verdict)} "
        f'<span class="jd-meta"{f" style={quoteattr(meta_style)}" if meta_style else ""}>'
        f"{esc(' · '.join(f for f in facts if f))}</span></div>"
    )


def early_header(task: Task, name: str) -> dict[str, Any]:
    """The early header's mime bundle: the header as HTML, marked with its task."""
    return {
        "text/html": (
            f'<div class="jd-early" data-task="{esc(task.id)}">'
            f"{header_html(task, name, META_STYLE)}</div>"
        ),
        "text/plain": f"delegate task {task.id} [{task.state}] {name}",
        EARLY_MIME: {"task": task.id, "at": round(time.time(), 3)},
    }
