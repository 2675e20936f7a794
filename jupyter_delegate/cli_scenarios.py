"""Scenarios as teaching material, on the command line.

    scenarios [FILE.yaml...] [--notebooks DIR] [--json]
                                 the scripted scenarios bundled in the package (or the
                                 files given): name, description, turns, and the
                                 tutorial notebooks that use each
    scenario-from ID [--repo R] [-o FILE] [--name N] [--description D]
                                 a task's journal as a scenario that replays it through
                                 the fake model (testing/from_journal.py); a plan's id:
                                 its planner's and subtasks', a conversation each

The listing reads the bundled folder as it is (`testing/scenarios/*.yaml`), so a scenario
added there is listed without a change here. A notebook uses a scenario when one of its
code cells names it in quotes (`FakeServer("demo")`, `load_scenario('plan.yaml')`): a
cheap search, not an execution. A malformed file stops the listing with one line naming
the file and the problem.

Not here: what a scenario is (testing/scenario.py) and how one is made from a journal
(testing/from_journal.py).
"""

from __future__ import annotations

import argparse
import json
import re
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from .check_output import printable
from .errors import DelegateError

if TYPE_CHECKING:
    from .manager import TaskManager
    from .testing.scenario import Scenario

EXIT_OK = 0
WIDTH = 88


class ScenarioFileError(DelegateError):
    """A scenario file is malformed or missing: the message names it and the problem."""


@dataclass(frozen=True)
class Listed:
    """One scenario as `scenarios` lists it."""

    name: str  # what `load_scenario` takes: the file's stem for a bundled one
    description: str
    file: str
    turns: int  # all of them, every conversation's included
    conversations: int
    notebooks: list[str]


def default_notebooks() -> Path | None:
    """The tutorials beside the package (a source checkout), if they are there."""
    folder = Path(__file__).resolve().parent.parent / "notebooks"
    return folder if folder.is_dir() else None


def list_scenarios(files: Sequence[str | Path] = (), notebooks: Path | None = None) -> list[Listed]:
    """The bundled scenarios (or `files`), each loaded and checked, with the notebooks in
    `notebooks` that name it. ScenarioFileError names the first malformed file."""
    from .testing.scenario import ScenarioError, bundled_folder, load_scenario

    paths = [Path(f) for f in files] or sorted(bundled_folder().glob("*.yaml"))
    sources = _notebook_code(notebooks)
    listed = []
    for path in paths:
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            raise ScenarioFileError(" ".join(str(exc).split())) from None
        name = path.stem
        listed.append(
            Listed(
                name=name,
                description=" ".join(scenario.description.split()),
                file=str(path),
                turns=_turn_count(scenario),
                conversations=len(scenario.conversations),
                notebooks=[nb for nb, code in sources.items() if _names(code, name)],
            )
        )
    return listed


def _turn_count(scenario: Scenario) -> int:
    return len(scenario.turns) + sum(len(c.turns) for c in scenario.conversations)


def _notebook_code(folder: Path | None) -> dict[str, str]:
    """Each notebook's code cells, joined, by file name; one that cannot be read (being
    written, say) is left out."""
    found: dict[str, str] = {}
    if folder is None:
        return found
    for path in sorted(folder.glob("*.ipynb")):
        try:
            cells = json.loads(path.read_text(encoding="utf-8")).get("cells", [])
            code = [c.get("source", "") for c in cells if c.get("cell_type") == "code"]
        except (OSError, ValueError, AttributeError):
            continue
        found[path.name] = "\n".join("".join(s) if isinstance(s, list) else str(s) for s in code)
    return found


def _names(code: str, name: str) -> bool:
    """Whether code names the scenario in quotes: "demo", 'demo.yaml', "x/demo.yaml"."""
    pattern = rf"""(["'])(?:[^"'\n]*/)?{re.escape(name)}(?:\.yaml)?\1"""
    return re.search(pattern, code) is not None


def cmd_scenarios(args: argparse.Namespace, out: TextIO) -> int:
    notebooks = Path(args.notebooks) if args.notebooks else default_notebooks()
    if notebooks is not None and not notebooks.is_dir():
        raise ScenarioFileError(f"--notebooks {notebooks}: no such folder.")
    listed = list_scenarios(args.files, notebooks)
    if args.json:
        out.write(json.dumps([asdict(s) for s in listed], indent=2) + "\n")
        return EXIT_OK
    from .testing.scenario import bundled_folder

    where = "given" if args.files else f"bundled in {bundled_folder()}"
    lines = [f"{len(listed)} scenario{'s' if len(listed) != 1 else ''} {where}:"]
    for entry in listed:
        size = f"{entry.turns} turns"
        if entry.conversations:
            size = f"{entry.conversations} conversations, {size}"
        lines += ["", f"{entry.name}  ({size})"]
        text = entry.description or "(no description)"
        lines += textwrap.wrap(text, WIDTH, initial_indent="  ", subsequent_indent="  ")
        if notebooks is not None:
            lines.append(f"  used by: {', '.join(entry.notebooks) or 'no notebook'}")
    if notebooks is None:
        lines += ["", "(no notebooks folder here: pass --notebooks DIR to see which use each)"]
    lines += [
        "",
        "Play one with load_scenario(NAME) or FakeServer(NAME) (a file: its path); write one "
        "from a task with `jupyter delegate scenario-from ID`.",
    ]
    out.write(printable("\n".join(lines) + "\n"))
    return EXIT_OK


def cmd_scenario_from(args: argparse.Namespace, manager: TaskManager, out: TextIO) -> int:
    from .planning import is_plan_id
    from .testing.from_journal import record

    source: Any
    if is_plan_id(args.id):
        source = manager.plan(args.id, args.repo)
    else:
        source = manager.get(args.id, args.repo)
    recorded = record(source, name=args.name, description=args.description)
    name = recorded.scenario["name"]
    target = args.output or re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") + ".yaml"
    path = recorded.write(target)
    more = f", {recorded.rounds} rounds" if recorded.rounds > 1 else ""
    if recorded.kind == "plan":
        more += f", {len(recorded.scenario['conversations'])} agents"
    lines = [
        f"Wrote scenario {name!r} ({recorded.turns} turns{more}, from {recorded.kind} "
        f"{recorded.task_id}, journal head {recorded.journal_head[:12]}) to {path}",
        f"  It replays on commit {recorded.base_commit[:12]} of {source.repo}: "
        f"load_scenario({str(path)!r}) or FakeServer({str(path)!r}).",
        *(f"  note: {note}" for note in recorded.notes),
    ]
    out.write(printable("\n".join(lines) + "\n"))
    return EXIT_OK


def add_scenario_commands(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """`scenarios` and `scenario-from`, on the CLI's subparsers."""
    listing = command(
        "scenarios",
        "list the scripted scenarios (bundled, or the files given) and the tutorials using each",
        repo=False,
    )
    listing.add_argument(
        "files", nargs="*", metavar="FILE", help="scenario files to check and list instead"
    )
    listing.add_argument(
        "--notebooks",
        metavar="DIR",
        help="where the tutorial notebooks are (default: the package's notebooks/, if any)",
    )
    listing.add_argument("--json", action="store_true", help="machine-readable")
    made = command(
        "scenario-from",
        "write a task's journal as a scenario that replays it through the fake model",
    )
    made.add_argument("id", help="the task (its id or name), or a plan (its id): every agent's")
    made.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="where to write it (default: NAME.yaml in the current folder)",
    )
    made.add_argument("--name", help="the scenario's name (default: the task's name, or task-ID)")
    made.add_argument(
        "--description",
        help="what it shows (default: the goal's first line, and the task it came from)",
    )


COMMANDS = {"scenario-from": cmd_scenario_from}
