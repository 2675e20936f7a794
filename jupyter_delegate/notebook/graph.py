"""A plan's subtasks drawn as a graph: an SVG with one node per subtask, in columns by
dependency depth (a subtask with no dependency in the first, each other one column right
of its deepest parent), an edge from each parent to each child, and each node coloured by
its state, naming its checks and cost, and marked when it is stale.

Pure: a list of subtask rows in, a string of SVG out. The plan's widget (plan_view.py)
shows it live and the plan's notebook record (plan_record.py) keeps it in its HTML, so
both draw the same graph. Colours go through JupyterLab's theme variables (text, edges),
with fallbacks for a page without them (nbconvert's HTML); a state's colour is a tint
under the node and its border, readable on light and dark backgrounds alike.

Not here: laying out large graphs well. Nodes are ordered in a column by their parents'
places (fewer crossings on the plans people write, a few to a dozen subtasks), not by a
general crossing-minimisation.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from ..engine.model import usd_text
from .record import STATE_COLOURS

# A subtask's state: a task's (record.STATE_COLOURS) or the plan's own words for one
# without a task yet.
PLAN_STATE_COLOURS = {
    **STATE_COLOURS,
    "planned": "#6b7280",
    "ready": "#0891b2",
    "blocked": "#b91c1c",
}
NODE_W, NODE_H = 188, 62
GAP_X, GAP_Y = 56, 18
PAD = 8
NAME_CHARS = 24
TEXT = "var(--jp-ui-font-color1, #1f2328)"
MUTED = "var(--jp-ui-font-color2, #57606a)"
EDGE = "var(--jp-ui-font-color2, #57606a)"
STALE = "#d97706"


def colour(state: str) -> str:
    return PLAN_STATE_COLOURS.get(state, "#6b7280")


def depths(subtasks: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Each subtask's column: 0 without dependencies, else one more than its deepest
    parent's. A dependency on no subtask is ignored; a cycle (a plan refused anyway)
    ends at the number of subtasks."""
    parents = {str(s["name"]): [str(p) for p in s.get("depends_on") or ()] for s in subtasks}
    found: dict[str, int] = {}

    def depth(name: str, seen: frozenset[str]) -> int:
        if name in found:
            return found[name]
        if name in seen:
            return len(parents)
        known = [p for p in parents[name] if p in parents]
        found_here = 1 + max((depth(p, seen | {name}) for p in known), default=-1)
        found[name] = min(found_here, len(parents))
        return found[name]

    for name in parents:
        depth(name, frozenset())
    return found


def layout(subtasks: Sequence[Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
    """Each subtask's (column, row). In a column, nodes are ordered by the mean row of
    their parents, ties as listed."""
    columns = depths(subtasks)
    order = {str(s["name"]): n for n, s in enumerate(subtasks)}
    placed: dict[str, tuple[int, int]] = {}
    for column in range(max(columns.values(), default=-1) + 1):
        here = [s for s in subtasks if columns[str(s["name"])] == column]

        def key(subtask: Mapping[str, Any]) -> tuple[float, int]:
            rows = [placed[p][1] for p in subtask.get("depends_on") or () if p in placed]
            mean = sum(rows) / len(rows) if rows else float(order[str(subtask["name"])])
            return mean, order[str(subtask["name"])]

        for row, subtask in enumerate(sorted(here, key=key)):
            placed[str(subtask["name"])] = (column, row)
    return placed


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _facts(subtask: Mapping[str, Any]) -> str:
    """The node's second line: its checks and its cost, when it has them."""
    parts = []
    if subtask.get("checks"):
        parts.append(f"checks {subtask['checks'].replace(' passed', '')}")
    if subtask.get("task"):
        parts.append(usd_text(float(subtask.get("cost_usd") or 0)))
    return " · ".join(parts)


def graph_svg(subtasks: Sequence[Mapping[str, Any]]) -> str:
    """The graph of `subtasks` (rows with name, state, depends_on, and when known task,
    checks "2/2 passed", cost_usd, stale, why, goal) as an SVG element; "" for none."""
    if not subtasks:
        return ""
    e = html.escape
    places = layout(subtasks)
    columns = max(c for c, _ in places.values()) + 1
    rows = max(r for _, r in places.values()) + 1
    width = PAD * 2 + columns * NODE_W + (columns - 1) * GAP_X
    height = PAD * 2 + rows * NODE_H + (rows - 1) * GAP_Y

    def corner(name: str) -> tuple[int, int]:
        column, row = places[name]
        return PAD + column * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y)

    edges = []
    for subtask in subtasks:
        x2, y2 = corner(str(subtask["name"]))
        for parent in subtask.get("depends_on") or ():
            if parent not in places:
                continue
            x1, y1 = corner(parent)
            start = (x1 + NODE_W, y1 + NODE_H / 2)
            end = (x2 - 3, y2 + NODE_H / 2)
            bend = max(GAP_X / 2, (end[0] - start[0]) / 2)
            edges.append(
                f'<path class="jdg-edge" data-from="{e(parent)}" data-to="{e(subtask["name"])}" '
                f'd="M{start[0]:g},{start[1]:g} C{start[0] + bend:g},{start[1]:g} '
                f'{end[0] - bend:g},{end[1]:g} {end[0]:g},{end[1]:g}" fill="none" '
                f'style="stroke:{EDGE}" stroke-opacity="0.75" stroke-width="1.4" '
                'marker-end="url(#jdg-arrow)"/>'
            )
    nodes = [_node(subtask, *corner(str(subtask["name"]))) for subtask in subtasks]
    arrow = (
        '<defs><marker id="jdg-arrow" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse">'
        f'<path d="M0,0 L8,4 L0,8 z" style="fill:{EDGE}" fill-opacity="0.75"/></marker></defs>'
    )
    return (
        f'<svg class="jdg" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="the plan\'s subtasks as a graph" '
        'style="font-family:var(--jp-ui-font-family, sans-serif);font-size:12px">'
        f"{arrow}{''.join(edges)}{''.join(nodes)}</svg>"
    )


def _node(subtask: Mapping[str, Any], x: int, y: int) -> str:
    e = html.escape
    name, state = str(subtask["name"]), str(subtask.get("state") or "planned")
    tint = colour(state)
    stale = bool(subtask.get("stale"))
    hover = [f"{name}: {state}"]
    for key in ("goal", "why", "stale"):
        if subtask.get(key):
            hover.append(str(subtask[key]))
    task = str(subtask.get("task") or "")
    label_w = 7 * len(state) + 14
    facts = _facts(subtask)
    stale_attr = ' data-stale="1"' if stale else ""
    hover_text = "\n".join(hover)
    border = (
        f'style="stroke:{STALE}" stroke-width="2" stroke-dasharray="5 3"'
        if stale
        else f'stroke="{tint}" stroke-width="1.5"'
    )
    return (
        f'<g class="jdg-node" data-name="{e(name)}" data-state="{e(state)}" '
        f'data-task="{e(task)}"{stale_attr} '
        f'transform="translate({x},{y})">'
        f"<title>{e(hover_text)}</title>"
        f'<rect width="{NODE_W}" height="{NODE_H}" rx="7" fill="{tint}" fill-opacity="0.13" '
        f"{border}/>"
        f'<rect x="0" y="0" width="5" height="{NODE_H}" rx="2" fill="{tint}"/>'
        f'<text x="14" y="19" style="fill:{TEXT};font-weight:600">{e(_clip(name, NAME_CHARS))}'
        "</text>"
        f'<rect class="jdg-state" x="14" y="26" width="{label_w}" height="16" rx="4" '
        f'fill="{tint}"/>'
        f'<text x="{14 + label_w / 2:g}" y="38" text-anchor="middle" fill="#ffffff" '
        f'style="font-size:11px">{e(state)}</text>'
        + (
            f'<text x="{14 + label_w + 6}" y="38" style="fill:{STALE};font-size:11px;'
            'font-weight:600">stale</text>'
            if stale
            else ""
        )
        + f'<text x="14" y="55" style="fill:{MUTED};font-size:11px">{e(facts)}</text>'
        + (
            f'<text x="{NODE_W - 8}" y="19" text-anchor="end" '
            f'style="fill:{MUTED};font-size:10px;font-family:var(--jp-code-font-family, '
            f'monospace)">{e(task)}</text>'
            if task
            else ""
        )
        + "</g>"
    )
