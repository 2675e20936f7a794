"""Scenarios from journals: a task that happened, as a script the fake model can play again.

`scenario_from(task)` reads a task's journal (or a journal file copied from anywhere) and
writes the model's side of it as a scenario (scenario.py): one turn per model turn, in
order, with its words, its tool calls and their inputs, its summarised thinking and the
summaries of compactions. Rounds after request-changes need nothing of their own: the
next round continues the same conversation, so its turns simply follow (as the fake
numbers them). A planner's `propose_plan` call is a tool call like any other. A
compaction's summary goes where the fake looks for it: the API's in the turn whose
answer carried it, the harness's in the turn after its summarising request. Run through
the fake on the same starting commit with the same policy, the scenario makes the same
tool calls, so the same diff: the tools' results are not in it, they happen again.

What is left out: tool results, permission answers, usage, faults and retries (only the
final answer of a turn is journaled), and thinking or summaries the fake itself wrote
(it writes them again). A paused turn (`pause_turn`) and its continuation become one
turn, as they are one message: the fake numbers turns by messages. A turn with neither
words nor tool calls (thinking alone) gets `EMPTY_TEXT`, as a turn needs one or the other.

Secrets: the journal redacted what it was given, except the blocks the API signs
(thinking, compaction summaries), kept byte for byte for the API. Here they are plain
text, so every string of the scenario goes through the redactor again (detect-secrets'
patterns included): the scenario holds nothing it would flag. Where the agent itself
wrote a secret, the scenario writes `[REDACTED]` instead, and so does a replay.

`Recorded.yaml()` writes the scenario as YAML a teacher can read and edit (multi-line
strings as blocks), under a comment saying where it came from.
"""

from __future__ import annotations

import os
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ..errors import DelegateError, JournalError
from ..events import AssistantTurn, ChangesRequested, Compacted, TaskCreated
from ..journal import REDACTED, Event, Journal, load_detectors, redact, secret_values
from .conversation import SUMMARY_MARKER
from .scenario import STOP_REASONS, ScenarioError, parse_scenario

if TYPE_CHECKING:
    from ..planning import Plan
    from ..task import Task

EMPTY_TEXT = "(no words and no tool calls in this turn)"
# What the fake writes when a turn scripts none: not worth keeping.
_FAKE_THINKING = re.compile(r"Thinking about turn \d+\.")
_FAKE_SUMMARY = "Summary of the conversation so far ("
_MARKER = re.compile(r"\s*" + re.escape(SUMMARY_MARKER).replace(r"\{turns\}", r"\d+") + r"\s*$")
# How the harness writes a compacted conversation's first message (engine/loop.py).
_SUMMARY_HEADING = "Your summary of the work so far (the conversation was shortened):"
_LAST_RESULTS = "\n\nThe results of your last tool calls:"


class ScenarioFromError(DelegateError):
    """A scenario cannot be made from this journal, or written where asked."""


@dataclass(frozen=True)
class Recorded:
    """A scenario made from a journal, and where it came from."""

    scenario: dict[str, Any]
    task_id: str
    journal: Path
    journal_head: str
    goal: str
    base_commit: str
    base_branch: str | None
    worktree: str
    redacted: int = 0  # strings holding [REDACTED] (the journal's, or ours)
    rounds: int = 1
    notes: tuple[str, ...] = field(default=())
    # Comments before turns, by index: where each round of review starts.
    round_notes: Mapping[int, str] = field(default_factory=dict)
    kind: str = "task"  # or "plan": a conversation per task

    @property
    def turns(self) -> int:
        """The model turns, every conversation's."""
        scenario = self.scenario
        return len(scenario.get("turns", ())) + sum(
            len(c["turns"]) for c in scenario.get("conversations", ())
        )

    def yaml(self) -> str:
        """The scenario as YAML, under a comment that says where it came from."""
        base = self.base_commit[:12]
        on = f"{base} (branch {self.base_branch})" if self.base_branch else base
        goal = _clean(self.goal, secret_values())
        rounds = f"{self.rounds} round{'s' if self.rounds != 1 else ''}"
        said = [
            f"Recorded from {self.kind} {self.task_id} (journal head "
            f"{self.journal_head[:12]}) by `jupyter delegate scenario-from`: {self.turns} "
            f"model turns in {rounds} of review"
            + (f", {len(self.scenario['conversations'])} agents." if self.kind == "plan" else "."),
            f"It started from commit {on}. Run through the fake model (`load_scenario(FILE)`, "
            "`FakeServer(FILE)`) on that commit with the same goal and policy, it makes the "
            "same tool calls, so the same diff.",
            *self.notes,
        ]
        lines = [
            *textwrap.wrap(said[0], 86, break_on_hyphens=False),
            "Its goal:",
            *(f"  {line}" for line in goal.splitlines()),
            *(
                wrapped
                for text in said[1:]
                for wrapped in textwrap.wrap(text, 86, break_on_hyphens=False)
            ),
        ]
        header = "".join(f"# {line}".rstrip() + "\n" for line in lines)
        return header + scenario_yaml(self.scenario, self.round_notes)

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write `yaml()` to `path` (a file in a folder that exists); returns the path."""
        target = Path(path)
        if target.is_dir():
            raise ScenarioFromError(f"{target} is a folder: give -o a file name, e.g. lesson.yaml.")
        if not target.parent.is_dir():
            raise ScenarioFromError(
                f"{target.parent} does not exist: give -o a file in a folder that does."
            )
        try:
            target.write_text(self.yaml(), encoding="utf-8")
        except OSError as exc:
            raise ScenarioFromError(f"{target} cannot be written: {exc.strerror or exc}.") from None
        return target


def scenario_from(
    source: Task | Plan | str | os.PathLike[str],
    *,
    name: str | None = None,
    description: str | None = None,
) -> dict[str, Any]:
    """The scenario (a dict `load_scenario` takes) that replays `source`: a task, the path
    of a task's journal.jsonl, or a plan (its planner and subtasks, a conversation each);
    see `record`."""
    return record(source, name=name, description=description).scenario


def record(
    source: Task | Plan | str | os.PathLike[str],
    *,
    name: str | None = None,
    description: str | None = None,
) -> Recorded:
    """A scenario from a task's journal, with where it came from (`Recorded`). `name`
    defaults to the task's name (else `task-ID`), `description` to the goal's first line
    and the task and journal head it came from. A plan gives one conversation per task
    (the planner's, each subtask's latest), each chosen by its goal's first line. Raises
    `ScenarioFromError` when a journal cannot be read or there is no model turn."""
    from ..planning import Plan

    if isinstance(source, Plan):
        return _record_plan(source, name, description)
    path, task_id = _journal_of(source)
    read = _read(path, task_id)
    if not read.groups:
        raise ScenarioFromError(
            f"Task {task_id} has no model turns in its journal (it is {read.state}): "
            "there is nothing to replay. Make a scenario from a task the agent worked on."
        )
    created, groups = read.created, read.groups
    model = read.model
    data: dict[str, Any] = {
        "name": name or created.name or f"task-{task_id}",
        "description": description
        or f"{_first_line(read.goal)} (recorded from task {task_id}, journal head "
        f"{read.head[:12]})",
        "model": model,
        "turns": [g.turn(model) for g in groups],
    }
    return _finished(
        data,
        Recorded(
            scenario={},
            task_id=task_id,
            journal=path,
            journal_head=read.head,
            goal=read.goal,
            base_commit=created.base_commit,
            base_branch=created.base_branch,
            worktree=created.worktree,
            rounds=read.rounds,
            round_notes={n: g.note for n, g in enumerate(groups) if g.note},
        ),
    )


def _record_plan(plan: Plan, name: str | None, description: str | None) -> Recorded:
    """A plan's tasks as conversations: each subtask's latest task in the plan's order,
    then the planner's (a subtask's goal is the more particular)."""
    plan.refresh()
    order = [s.name for s in plan.spec.subtasks] if plan.spec else []
    tasks = plan.tasks()
    named = sorted(tasks.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else 0)
    planner = "planner" if "planner" not in tasks else f"{plan.id}-planner"
    if plan.planner:
        named.append((planner, plan.manager.get(plan.planner, plan.repo)))
    reads = []
    for label, task in named:
        read = _read(Path(task.journal_path), task.id)
        if read.groups:
            reads.append((label, read))
    if not reads:
        raise ScenarioFromError(
            f"Plan {plan.id} has no model turns in its tasks' journals: there is nothing to "
            "replay. Make a scenario from a plan the agent planned or worked on."
        )
    model = reads[0][1].model
    conversations: list[dict[str, Any]] = [
        {
            "name": label,
            "match": _first_line(read.goal),
            "turns": [g.turn(model) for g in read.groups],
        }
        for label, read in reads
    ]
    for label, read in reads:  # each conversation must be the one its task's goal picks
        chosen = next(c["name"] for c in conversations if c["match"] in read.goal)
        if chosen != label:
            raise ScenarioFromError(
                f"Plan {plan.id}: the goal of {label!r} holds the first line of "
                f"{chosen!r}'s, so the scenario could not tell them apart. Give them goals "
                "whose first lines differ, or make a scenario of each task."
            )
    by_label = dict(reads)
    if planner in by_label:  # the whole outcome, as the user gave it
        goal = by_label[planner].goal
    else:
        goal = plan.spec.goal if plan.spec and plan.spec.goal else plan.title
    head = plan.journal.head
    data: dict[str, Any] = {
        "name": name or f"plan-{plan.id}",
        "description": description
        or f"{_first_line(goal)} (recorded from plan {plan.id}: {len(reads)} agents, plan "
        f"journal head {head[:12]})",
        "model": model,
        "conversations": conversations,
    }
    return _finished(
        data,
        Recorded(
            scenario={},
            task_id=plan.id,
            journal=plan.journal.path,
            journal_head=head,
            goal=goal,
            base_commit=plan.base_commit,
            base_branch=plan.base_branch or None,
            worktree="",
            rounds=max(read.rounds for _, read in reads),
            kind="plan",
        ),
    )


def _finished(data: dict[str, Any], recorded: Recorded) -> Recorded:
    """`recorded` with `data` as its scenario: redacted, checked, and its notes."""
    load_detectors()
    secrets = secret_values()
    data = _clean(data, secrets)
    try:  # what is written must load
        parse_scenario(data, f"<scenario from {recorded.kind} {recorded.task_id}>")
    except ScenarioError as exc:
        raise ScenarioFromError(
            f"{recorded.journal}: the scenario made from it does not load: {exc}"
        ) from None
    redacted = sum(1 for text in _strings(data) if REDACTED in text)
    notes: tuple[str, ...] = ()
    if redacted:
        notes = (
            f"{redacted} of its texts {'holds' if redacted == 1 else 'hold'} {REDACTED} "
            f"where a secret was: a replay writes {REDACTED} there too.",
        )
    round_notes = {n: _clean(text, secrets) for n, text in recorded.round_notes.items()}
    return replace(recorded, scenario=data, redacted=redacted, notes=notes, round_notes=round_notes)


def scenario_yaml(scenario: Mapping[str, Any], notes: Mapping[int, str] | None = None) -> str:
    """A scenario as YAML: keys in the order given, multi-line strings as `|` blocks, a
    tool's input with its path or command first; `notes` are comments put before turns
    (by index: where a round of review starts, say)."""
    head = {k: v for k, v in scenario.items() if k != "turns"}
    if isinstance(head.get("conversations"), list):
        head["conversations"] = [
            {**c, "turns": [_readable(t) for t in c.get("turns", [])]}
            for c in head["conversations"]
        ]
    text = _dump(head) if head else ""
    if "turns" in scenario:
        text += "turns:\n"
        for n, turn in enumerate(scenario["turns"]):
            for line in (notes or {}).get(n, "").splitlines():
                text += f"# {line}".rstrip() + "\n"
            text += _dump([_readable(turn)])
    if yaml.safe_load(text) != scenario:  # never expected; the data is what counts
        text = yaml.safe_dump(dict(scenario), sort_keys=False, allow_unicode=True)
    return text


def _dump(value: Any) -> str:
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=88, indent=2)


# A tool input's keys in the order a reader looks for them (the journal sorts them).
_FIRST_KEYS = ("file_path", "path", "command", "pattern", "old_string", "new_string", "content")


def _readable(turn: Mapping[str, Any]) -> dict[str, Any]:
    tools = turn.get("tools")
    if not isinstance(tools, list):
        return dict(turn)
    ordered = []
    for call in tools:
        ((name, given),) = call.items()
        if isinstance(given, Mapping):
            rank = {k: n for n, k in enumerate(_FIRST_KEYS)}
            given = dict(sorted(given.items(), key=lambda kv: rank.get(kv[0], len(rank))))
        ordered.append({name: given})
    return {**turn, "tools": ordered}


# -- reading the journal ------------------------------------------------------------------


@dataclass
class _Group:
    """One model turn as the conversation holds it: an assistant message (a paused turn
    and its continuation together), and the summary the fake gives before it."""

    content: list[dict[str, Any]]
    stop_reason: str | None
    model: str
    summary: str | None = None
    note: str = ""  # where a round of review starts

    def turn(self, scenario_model: str) -> dict[str, Any]:
        blocks = self.content
        texts = [b["text"] for b in blocks if b.get("type") == "text" and b.get("text")]
        thoughts = [
            b["thinking"]
            for b in blocks
            if b.get("type") == "thinking"
            and isinstance(b.get("thinking"), str)
            and b["thinking"].strip()
            and not _FAKE_THINKING.fullmatch(b["thinking"].strip())
        ]
        tools = [
            {str(b["name"]): b.get("input") or {}} for b in blocks if b.get("type") == "tool_use"
        ]
        summary = self.summary
        first = blocks[0] if blocks else {}
        if first.get("type") == "compaction" and isinstance(first.get("content"), str):
            summary = first["content"]  # the API compacted in this turn's answer
        stop = self.stop_reason
        turn: dict[str, Any] = {}
        if texts:
            turn["text"] = "\n\n".join(texts)
        if thoughts:
            turn["thinking"] = "\n\n".join(thoughts)
        if stop == "refusal":
            turn["refusal"] = True
        elif tools:
            turn["tools"] = tools
        if "text" not in turn and "tools" not in turn and stop != "refusal":
            turn["text"] = EMPTY_TEXT
        usual = "tool_use" if tools else "end_turn"
        if stop in STOP_REASONS and stop not in (usual, "refusal", "compaction"):
            turn["stop_reason"] = stop
        if self.model and self.model != scenario_model:
            turn["served_model"] = self.model
        if summary and summary.strip() and not summary.startswith(_FAKE_SUMMARY):
            turn["compaction"] = summary.strip()
        return turn


@dataclass(frozen=True)
class _Read:
    """What a task's journal holds for a scenario."""

    created: TaskCreated
    groups: list[_Group]
    head: str
    state: str
    rounds: int

    @property
    def goal(self) -> str:
        return str(self.created.outcome.get("goal", "")).strip()

    @property
    def model(self) -> str:
        """The model that answered (as responses report it), else the one asked for."""
        return next((g.model for g in self.groups if g.model), "") or self.created.model


def _read(path: Path, task_id: str) -> _Read:
    try:
        events = list(Journal(path).events())
    except JournalError as exc:
        raise ScenarioFromError(str(exc)) from None
    created = events[0].typed if events else None
    if not isinstance(created, TaskCreated):
        raise ScenarioFromError(
            f"{path} is not a task's journal (its first line is not a `task` event)."
        )
    rounds = 1 + sum(1 for e in events if e.type == "changes_requested")
    return _Read(created, _model_turns(events), events[-1].hash, _state(events), rounds)


def _first_line(goal: str) -> str:
    return goal.splitlines()[0].strip() if goal.strip() else "(no goal)"


def _model_turns(events: Sequence[Event]) -> list[_Group]:
    """The model turns, in order, across rounds and compactions."""
    groups: list[_Group] = []
    summary: str | None = None  # the harness's, for the turn after it
    rounds, note = 1, ""
    for event in events:
        match event.typed:
            case Compacted(by="harness", messages=restart):
                summary = _harness_summary(restart)
            case ChangesRequested(feedback=feedback):
                rounds += 1
                said = " ".join(feedback.split())
                note = f"-- round {rounds}, after request-changes" + (f": {said}" if said else "")
            case AssistantTurn(content=content, stop_reason=stop, model=model) as turn:
                if not content:
                    continue  # nothing was added to the conversation
                if turn.extra.get("continues") and groups:
                    groups[-1].content = [*groups[-1].content, *content]
                    groups[-1].stop_reason = stop
                    continue
                groups.append(_Group(list(content), stop, model, summary, note))
                summary, note = None, ""
    if rounds > 1 and groups:
        groups[0].note = "-- round 1"
    return groups


def _harness_summary(messages: Sequence[Mapping[str, Any]]) -> str | None:
    """The summary in the first message of a conversation the harness compacted: after
    its heading, before the last results, without the fake's marker."""
    if not messages:
        return None
    content = messages[0].get("content")
    blocks = content if isinstance(content, list) else []
    text = "\n".join(b.get("text", "") for b in blocks if isinstance(b, dict))
    _, found, after = text.partition(_SUMMARY_HEADING)
    if not found:
        return None
    summary = after.split(_LAST_RESULTS, 1)[0]
    return _MARKER.sub("", summary).strip() or None


def _journal_of(source: Any) -> tuple[Path, str]:
    """The journal file of a task or a path, and the task's id (its folder's name)."""
    from ..task import Task

    if isinstance(source, Task):
        return Path(source.journal_path), source.id
    path = Path(source)
    if path.is_dir():
        path = path / "journal.jsonl"
    if not path.is_file():
        raise ScenarioFromError(
            f"{path}: no such journal. Give a task (or its id to `jupyter delegate "
            "scenario-from`), or the path of a task's journal.jsonl."
        )
    return path, path.parent.name


def _state(events: Sequence[Event]) -> str:
    states = [e.data.get("state") for e in events if e.type == "state"]
    return str(states[-1]) if states else "new"


def _clean(value: Any, secrets: list[str]) -> Any:
    """Every string (keys too) through the redactor: signed blocks are not special here."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, Mapping):
        return {_clean(k, secrets): _clean(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v, secrets) for v in value]
    return value


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks, where YAML can hold them so."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)
