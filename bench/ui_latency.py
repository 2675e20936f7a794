"""Latency in the browser (issue 22): how soon a `%%delegate` cell shows its live view, and
the model's words, in a real JupyterLab, against `print('x')` in the same run.

Headless Chromium (/usr/bin/chromium, playwright-core from labextension/node_modules)
drives JupyterLab on loopback; the script is labextension/scripts/ui-latency.mjs. The
model is the scripted fake, served from this process (300 ms a turn) with every send of a
`text_delta` stamped on the epoch clock; the page stamps what it sees with a
MutationObserver on the same clock (performance.timeOrigin + performance.now()).

- `header_ms`: shift-enter on a `%%delegate` cell -> the live view's header in the DOM
  (a kernel that has run a task already), beside `print_ms`: shift-enter on
  `print('x')` -> its output, the cells alternated; `header_ratio` the ratio of medians;
- `first_header_ms`: the same, for the first `%%delegate` after a kernel restart (and
  `%load_ext jupyter_delegate` in that kernel: `load_ext_ms`, shift-enter -> done);
- `text_ms`: the model's first text delta leaves the fake endpoint -> that text in the
  cell's output, over every task (`text_warm_ms`: the tasks of the warm kernel;
  `text_first_ms`: each the first task of a restarted kernel);
- `comm_opens_live`: widget comms opened by the `%%delegate` cell (the live view and the
  record); `comm_opens_task`: all a task opened by the end of its review.

Each figure: min, median (p50), max (and p95 of `text_ms`) over `reps` tasks.
`python bench/ui_latency.py [tiny|full] [REPS]`: full is 12 warm and 10 fresh kernels.
Needs node, the extension built, and /usr/bin/chromium.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # tests/browser.py: the Jupyter server on loopback

NAME = "ui_latency"
GOALS = {
    "header_ms_p50": 200.0,
    "header_ratio": 1.6,
    "first_header_ms_p50": 400.0,
    "text_ms_p50": 50.0,
    "text_ms_p95": 100.0,
    "text_warm_ms_p50": 50.0,
    "text_warm_ms_p95": 100.0,
    "load_ext_ms_p50": 300.0,  # the load as timed in the kernel is bench/extension_load.py
}
MARKER = "Quokka"  # the first word the model streams
COUNTER = """\
import json, ipywidgets
_jd_opens, _jd_marks = [0], []
_jd_open = ipywidgets.Widget.open
def _jd_count(self):
    _jd_opens[0] += 1
    return _jd_open(self)
ipywidgets.Widget.open = _jd_count
get_ipython().events.register('post_run_cell', lambda result: _jd_marks.append(_jd_opens[0]))
"""
REPORT = """\
%delegate wait all
import time; time.sleep(1)
print('JDCOUNT', json.dumps({'marks': _jd_marks, 'total': _jd_opens[0]}))
"""


def delegate_cell(name: str) -> str:
    return (
        f"%%delegate --repo repo --name {name} --sandbox none --new\nRead the notes.\ncheck: true"
    )


def notebooks(reps: int) -> tuple[Any, Any]:
    import nbformat
    from browser import kernel_notebook

    code = nbformat.v4.new_code_cell
    warm = [code("%load_ext jupyter_delegate"), code(COUNTER), code(delegate_cell("warmup"))]
    for rep in range(reps):
        warm += [code("print('x')"), code(delegate_cell(f"rep{rep}"))]
    warm.append(code(REPORT))
    fresh = [code("%load_ext jupyter_delegate"), code(delegate_cell("fresh"))]
    return kernel_notebook(warm), kernel_notebook(fresh)


class DeltaClock:
    """Stamps (epoch s) when the fake server has written the first text delta of a reply."""

    def __init__(self) -> None:
        self.sent: list[float] = []
        self._lock = threading.Lock()

    def install(self) -> None:
        from jupyter_delegate.testing import fake_anthropic

        handler: Any = fake_anthropic._Handler
        original = handler._send
        clock = self

        def _send(self: Any, reply: Any) -> None:
            raw, seen = self.wfile, [False]

            class Stamping:
                def write(self, data: bytes) -> int:
                    count = raw.write(data)
                    if not seen[0] and b'"text_delta"' in data:
                        seen[0] = True
                        with clock._lock:
                            clock.sent.append(time.time())
                    return int(count or 0)

                def flush(self) -> None:
                    raw.flush()

            self.wfile = Stamping()
            try:
                original(self, reply)
            finally:
                self.wfile = raw

        handler._send = _send


def spread(values: list[float], name: str) -> dict[str, float]:
    if not values:
        return {}
    return {
        f"{name}_min": min(values),
        f"{name}_p50": common.median(values),
        f"{name}_max": max(values),
    }


def run(size: str = "full", reps: int | None = None) -> dict[str, Any]:
    import nbformat
    from browser import ARTIFACTS, CHROMIUM, LABEXTENSION, jupyter_server

    from jupyter_delegate.testing import FakeMessagesAPI, FakeServer

    common.check_size(size)
    warm_reps, fresh_reps = (2, 1) if size == "tiny" else (12, 10)
    if reps is not None:
        warm_reps = fresh_reps = reps
    turns = [
        {
            "text": f"{MARKER} first: reading the notes now.",
            "tools": [{"read": {"file_path": common.SMALL_FILE}}],
        },
        {"tools": [{"finish": {"summary": "Read the notes; nothing to change."}}]},
    ]
    clock = DeltaClock()
    clock.install()
    model = FakeServer(FakeMessagesAPI({"name": "ui", "turns": turns}, latency_ms=300))
    with common.git_identity(), tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        tmp_path = Path(tmp)
        env = {"ANTHROPIC_BASE_URL": model.url, "ANTHROPIC_API_KEY": "sk-ant-bench"}
        with jupyter_server(tmp_path, "jupyterlab", extra_env=env) as (base, root):
            tracker = tmp_path / "lab-settings" / "@jupyterlab" / "notebook-extension"
            tracker.mkdir(parents=True)
            # every cell in the DOM: the observer watches cells far down the notebook
            (tracker / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
            common.make_repo(root / "repo")
            warm, fresh = notebooks(warm_reps)
            nbformat.write(warm, root / "warm.ipynb")
            nbformat.write(fresh, root / "fresh.ipynb")
            spec = {
                "chromium": str(CHROMIUM),
                "artifacts": str(ARTIFACTS),
                "base": base,
                "warm": "warm.ipynb",
                "fresh": "fresh.ipynb",
                "reps": warm_reps,
                "freshReps": fresh_reps,
                "marker": MARKER,
            }
            spec_path = tmp_path / "spec.json"
            spec_path.write_text(json.dumps(spec))
            done = subprocess.run(
                ["node", "scripts/ui-latency.mjs", str(spec_path)],
                cwd=LABEXTENSION,
                capture_output=True,
                text=True,
                timeout=1200,
            )
    model.close()
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-3000:] + done.stderr[-3000:])
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "ui_latency_raw.json").write_text(json.dumps({"page": seen, "sent": clock.sent}))
    return figures(seen, clock.sent, warm_reps, fresh_reps)


def figures(
    seen: dict[str, Any], sent: list[float], warm_reps: int, fresh_reps: int
) -> dict[str, Any]:
    tasks = [*seen["warm"], *seen["fresh"]]
    # each task's words: the last text reply sent before they showed (tasks run one by one)
    text = []
    for task in tasks:
        before = [stamp * 1e3 for stamp in sent if stamp * 1e3 <= task["text"]]
        if not before:
            raise RuntimeError(f"no text reply stamped before the words showed: {task}")
        text.append(task["text"] - max(before))
    header = [t["header"] - t["t0"] for t in seen["warm"]]
    printed = [t["out"] - t["t0"] for t in seen["print"]]
    first = [t["header"] - t["t0"] for t in seen["fresh"]]
    load = [t["loadExt"] for t in seen["fresh"]]
    marks, total = seen["counts"]["marks"], seen["counts"]["total"]
    # marks[k - 1]: opens after cell k (cell 1 the counter, 2 the warm-up, then pairs of
    # print and %%delegate); the review's widgets come after the cell, in the next one
    live = [marks[3 + 2 * r] - marks[2 + 2 * r] for r in range(warm_reps)]
    result: dict[str, Any] = {
        "benchmark": NAME,
        "reps": warm_reps,
        "fresh_reps": fresh_reps,
        **spread(header, "header_ms"),
        **spread(printed, "print_ms"),
        "header_ratio": common.median(header) / common.median(printed),
        **spread(first, "first_header_ms"),
        **spread(load, "load_ext_ms"),
        **spread(text, "text_ms"),
        "text_ms_p95": common.percentile(text, 95),
        # the same, apart: a kernel that ran a task before, and a task first in its kernel
        **spread(text[:warm_reps], "text_warm_ms"),
        "text_warm_ms_p95": common.percentile(text[:warm_reps], 95),
        **spread(text[warm_reps:], "text_first_ms"),
        "comm_opens_live": common.median(live),
        "comm_opens_task": (total - marks[0]) / (1 + warm_reps),
        "goals": GOALS,
        "machine": common.machine(),
    }
    result["met"] = {key: result[key] <= goal for key, goal in GOALS.items() if key in result}
    return common.round_all(result, 1)


if __name__ == "__main__":
    args = sys.argv[1:]
    size = common.check_size(args[0] if args else "full")
    common.report(run(size, int(args[1]) if len(args) > 1 else None))
