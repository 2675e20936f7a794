"""A task's replay as one self-contained HTML file a teacher can hand out.

`replay_html(data)` takes the replay contract's data (`Replay.to_dict(diffs=True)`,
jupyter_delegate/replaying.py) and returns one page: the replay's front end (the same
renderer as the notebook widget and the JupyterLab MIME renderer,
labextension/src/replay/, bundled by `npm run build` into notebook/static/) and its
stylesheet inlined, the data embedded as JSON in a `<script type="application/json">`,
light or dark as the reader's system prefers. It opens from file:// and makes no network
request: a Content-Security-Policy forbids any.

Not here: reading a journal or computing diffs (replaying.py), the CLI's `--html FILE`
(cli.py), the notebook widget (notebook/replay_view.py).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any

from .errors import DelegateError

STATIC = Path(__file__).parent / "notebook" / "static"
SCRIPT = STATIC / "replay-page.js"  # page.js bundled (IIFE): reads the JSON, draws the replay
STYLE = STATIC / "replay.css"

# No request of any kind: scripts and styles only inline, images only as data: URLs.
CSP = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; base-uri 'none'; form-action 'none'"
)

# The theme variables replay.css reads (--jp-*, as JupyterLab names them), for a page with
# no JupyterLab around it: light, and dark where the reader's system prefers it.
THEME = """
:root {
  color-scheme: light dark;
  --jp-layout-color0: #ffffff; --jp-layout-color1: #f6f8fa; --jp-layout-color2: #eaeef2;
  --jp-content-font-color1: #1f2328; --jp-content-font-color2: #57606a;
  --jp-border-color1: #d0d7de; --jp-border-color2: #eaeef2;
  --jp-success-color1: #1a7f37; --jp-error-color1: #cf222e;
  --jp-warn-color1: #9a6700; --jp-brand-color1: #0969da;
}
@media (prefers-color-scheme: dark) {
  :root {
    --jp-layout-color0: #0d1117; --jp-layout-color1: #161b22; --jp-layout-color2: #21262d;
    --jp-content-font-color1: #e6edf3; --jp-content-font-color2: #8d96a0;
    --jp-border-color1: #30363d; --jp-border-color2: #21262d;
    --jp-success-color1: #3fb950; --jp-error-color1: #f85149;
    --jp-warn-color1: #d29922; --jp-brand-color1: #4493f8;
  }
}
html { background: var(--jp-layout-color0); }
body { margin: 0 auto; padding: 12px 16px 32px; max-width: 90em; }
.jd-footer {
  margin-top: 16px; font: 12px system-ui, sans-serif; color: var(--jp-content-font-color2);
}
"""


class FrontEndMissing(DelegateError):
    """The replay's front end (a built bundle) is not in the package."""


def _read(path: Path) -> str:
    if not path.exists():
        raise FrontEndMissing(
            f"The replay's front end is not built ({path.name} is missing from {path.parent}): "
            "run `npm run build` in labextension/ (node and npm needed), then export again."
        )
    return path.read_text(encoding="utf-8")


def embedded_json(data: Any) -> str:
    """`data` as JSON that is safe inside a `<script>` element: no `<`, `>` or `&` appears
    raw (each is a \\u escape, which JSON.parse reads back), so text such as `</script>`
    or `<!--` in the agent's words cannot end the element or open a comment."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _inline(code: str, element: str) -> str:
    """`code` made safe to inline in a `<script>` or `<style>`: an `</element` in it (in a
    string literal of the bundle) is written `<\\/element`, which reads the same."""
    return re.sub(rf"</({element})", r"<\\/\1", code, flags=re.IGNORECASE)


def replay_html(data: dict[str, Any]) -> str:
    """The replay of `data` (`Replay.to_dict(diffs=True)`) as one offline HTML page."""
    task = data.get("task") or {}
    label = str(task.get("name") or task.get("id") or "task")
    title = f"Replay of {label} — jupyter-delegate"
    steps = len(data.get("steps") or [])
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<meta name="generator" content="jupyter-delegate">
<title>{html.escape(title)}</title>
<style>{THEME}</style>
<style>{_inline(_read(STYLE), "style")}</style>
</head>
<body>
<main id="jd-replay"></main>
<noscript>This replay needs JavaScript to draw its {steps} steps.</noscript>
<p class="jd-footer">Replay of task {html.escape(str(task.get("id", "")))} exported by
jupyter-delegate: &larr; &rarr; or j k step, Home and End jump, space plays.</p>
<script type="application/json" id="jd-replay-data">{embedded_json(data)}</script>
<script>{_inline(_read(SCRIPT), "script")}</script>
</body>
</html>
"""
