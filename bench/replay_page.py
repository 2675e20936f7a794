"""The offline replay page in headless Chromium: how long a 1,000-step replay takes to
draw after the page opens, and one redraw while sweeping the slider, beside the same
page with 10 steps measured in the same run (the bare reference: the page's own cost
without the steps).

`python bench/replay_page.py [ROUNDS]` prints one JSON line:
- `drawn_ms_*` (min / median / max over ROUNDS openings, default 5) and
  `reference_drawn_ms_*` for the 10-step page; `drawn_ratio` of the medians;
- `redraw_ms_*`: a sweep's time per redraw across the steps (its reference too);
- `page_kb`: the size of the 1,000-step file.
Needs node, labextension/node_modules (playwright-core) and /usr/bin/chromium.
"""

from __future__ import annotations

import contextlib
import io
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def spread(name: str, values: list[float]) -> dict[str, float]:
    return {
        f"{name}_min": round(min(values), 1),
        f"{name}_median": round(statistics.median(values), 1),
        f"{name}_max": round(max(values), 1),
    }


def main(rounds: int = 5) -> dict[str, object]:
    from browser import run_script  # tests/browser.py: how the tests drive Chromium
    from replay_data import synthetic_replay

    from jupyter_delegate.replay_page import replay_html

    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        folder = Path(tmp)
        pages = {}
        for steps in (1000, 10):
            page = folder / f"replay-{steps}.html"
            page.write_text(replay_html(synthetic_replay(steps, rounds=3)), encoding="utf-8")
            pages[steps] = page
        page_kb = round(pages[1000].stat().st_size / 1024, 1)
        drawn: dict[int, list[float]] = {1000: [], 10: []}
        redraw: dict[int, list[float]] = {1000: [], 10: []}
        for _ in range(rounds):
            for steps, page in pages.items():
                probe = [steps // 2, steps - 1]
                spec = {"page": str(page), "probe": probe, "schemes": ["light"]}
                with contextlib.redirect_stdout(io.StringIO()):  # its own printout
                    summary = run_script("browser-replay-page.mjs", spec, folder)
                drawn[steps].append(summary["light_drawn_ms"])
                sweep = summary["sweep"]
                redraw[steps].append(sweep["ms"] / max(1, sweep["redraws"]))
    result: dict[str, object] = {"benchmark": "replay_page", "rounds": rounds}
    result |= spread("drawn_ms", drawn[1000]) | spread("reference_drawn_ms", drawn[10])
    result |= spread("redraw_ms", redraw[1000]) | spread("reference_redraw_ms", redraw[10])
    result["drawn_ratio"] = round(statistics.median(drawn[1000]) / statistics.median(drawn[10]), 2)
    result["page_kb"] = page_kb
    return result


if __name__ == "__main__":
    print(json.dumps(main(int(sys.argv[1]) if len(sys.argv) > 1 else 5), sort_keys=True))
