"""Scenarios: what the scripted fake model answers, turn by turn.

A scenario is a YAML or JSON file, a dict, or a Python callable. Its `turns` are the
model's answers to the 1st, 2nd, ... request of a conversation; the turn a request gets
is the number of assistant messages it already holds, so a resumed conversation goes on
at the right turn (after a compaction, see `conversation.turn_index`). A turn is some
text, some tool calls, a stop reason, and optionally faults to serve (rate limits,
overloads, broken streams) before the answer.

Scenario keys: `name`, `description`, `model` (the id responses report), `latency_ms`,
`turns`, `conversations`, and `models`: the models `GET /v1/models` lists and
`POST /v1/messages` accepts, each `{id, max_input_tokens, max_tokens, compaction: bool,
thinking: bool}` (all but `id` optional; defaults 200000, 64000, true, true). Without
`models` the fake lists one model (`model`, or claude-sonnet-4-6) and accepts any model
id with those defaults.

Several agents at once (a plan's planner and subtasks, best-of-N attempts) talk to one
fake, each in its own conversation; `conversations` scripts each apart:

    conversations:
      - name: planner                  # optional: named in errors
        match: "Print a receipt"       # text of the conversation's first user message
        turns: [...]                   # as the top-level `turns`
      - match: "Add format_line"
        turns: [...]
      - match: "Fix the discount"      # best-of-N: attempts share a goal, so
        model: claude-opus-4-6         # `model` tells them apart (the request's model)
        turns: [...]

A request is answered from the first conversation whose `match` occurs in its first
user message (the agent's goal; a conversation resumed after compaction starts with
the compaction block, whose summary is read instead) and whose `model`, when given, is
the one the request names, at the turn its own assistant messages count; a request no
conversation matches gets the top-level `turns`, and without them is refused: a 500
from the fake whose message quotes the start of the first user message
(`ScenarioError`), so the test fails saying so. A scenario needs `turns`,
`conversations` or both.

Turn keys:
- `text`, `tools` (a list of `{tool_name: input}`), `stop_reason`, `served_model`,
  `latency_ms`, `faults`: as before.
- `thinking: "text"`: the thinking block's text when the request turns thinking on
  (`enabled` or `adaptive`); without it such a request gets a deterministic one, and a
  request without thinking gets none.
- `compaction: "summary"`: the summary in the `compaction` block when this turn's
  request triggers server-side compaction, and the answer to a summarising request made
  while this turn is next; without it the fake writes a deterministic summary.
- `cut_at_chars: N`: the turn stops at `max_tokens` (stop reason `max_tokens`, output
  tokens = the request's `max_tokens`), the last tool call's input JSON (as
  `json.dumps(input, ensure_ascii=False)`) cut after N characters.
- `refusal: true`: the turn stops with stop reason `refusal` and `stop_details`
  `{type: refusal}`; its `text`, if any, is what came before the refusal. No tools.

A tool call is just `{tool_name: input}`, `propose_plan` included. When the request
defines that tool with `strict: true`, the input must match its `input_schema` (the
real model cannot send anything else): a mismatch is refused as a `ScenarioError`
naming the turn and what does not match (see `strict_tools`).

Here: parsing and validating scenarios (`load_scenario`, `ScenarioError`) and the typed
result (`Scenario`, `Conversation`, `Turn`, `ToolCall`, `Fault`). Not here: the wire protocol, which
lives in `fake_anthropic`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml

from .conversation import goal_text

TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# The SDK's BetaStopReason.
STOP_REASONS = (
    "end_turn",
    "tool_use",
    "max_tokens",
    "stop_sequence",
    "pause_turn",
    "compaction",
    "refusal",
    "model_context_window_exceeded",
)
ERROR_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
STATUS_OF_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
TURN_KEYS = (
    "text",
    "tools",
    "stop_reason",
    "served_model",
    "latency_ms",
    "faults",
    "thinking",
    "compaction",
    "cut_at_chars",
    "refusal",
)
SCENARIO_KEYS = ("name", "description", "model", "latency_ms", "turns", "conversations", "models")
CONVERSATION_KEYS = ("name", "match", "model", "turns")
MODEL_KEYS = ("id", "max_input_tokens", "max_tokens", "compaction", "thinking")
DEFAULT_MODEL_ID = "claude-sonnet-4-6"
DEFAULT_MAX_INPUT_TOKENS = 200_000
DEFAULT_MAX_TOKENS = 64_000
NO_MORE_TURNS = "(scenario has no more turns)"


class ScenarioError(ValueError):
    """A scenario is malformed; the message names the file, the turn and the problem."""


@dataclass(frozen=True)
class ToolCall:
    """One tool call the model makes: `name` with `input`."""

    name: str
    input: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelSpec:
    """A model the fake serves: its context window, output limit and what it supports."""

    id: str
    max_input_tokens: int = DEFAULT_MAX_INPUT_TOKENS
    max_tokens: int = DEFAULT_MAX_TOKENS
    compaction: bool = True
    thinking: bool = True


@dataclass(frozen=True)
class Fault:
    """A failure served instead of an answer.

    `kind` is `status` (an HTTP error response), `mid_stream_error` (a 200 stream that
    breaks off with an `event: error`) or `drop` (a 200 stream whose connection drops).
    """

    kind: Literal["status", "mid_stream_error", "drop"]
    status: int = 200
    error_type: str = ""
    retry_after: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Turn:
    """The model's answer to one request, and the faults served before it."""

    text: str | None = None
    tools: tuple[ToolCall, ...] = ()
    stop_reason: str | None = None
    served_model: str | None = None
    latency_ms: int | None = None
    faults: tuple[Fault, ...] = ()
    thinking: str | None = None
    compaction: str | None = None
    cut_at_chars: int | None = None
    refusal: bool = False

    def __post_init__(self) -> None:
        # Python callers may pass a list, and `{name: input}` mappings as in YAML.
        where = _Where("<Turn>")
        calls = tuple(
            t if isinstance(t, ToolCall) else _parse_tool(t, n, where)
            for n, t in enumerate(self.tools, 1)
        )
        object.__setattr__(self, "tools", calls)
        object.__setattr__(self, "faults", tuple(self.faults))

    @property
    def effective_stop_reason(self) -> str:
        if self.refusal:
            return "refusal"
        if self.cut_at_chars is not None:
            return "max_tokens"
        if self.stop_reason:
            return self.stop_reason
        return "tool_use" if self.tools else "end_turn"


@dataclass(frozen=True)
class Conversation:
    """The turns of one agent's conversation: the one whose first user message holds
    `match` (and whose request names `model`, when set: attempts at one goal on several
    models). `name` names it in errors (default: its number)."""

    match: str
    turns: tuple[Turn, ...]
    name: str = ""
    model: str | None = None

    def answers(self, goal: str, model: Any) -> bool:
        return self.match in goal and self.model in (None, model)

    def __post_init__(self) -> None:
        object.__setattr__(self, "turns", tuple(self.turns))


ScenarioFunction = Callable[[dict[str, Any], int], "Turn | Mapping[str, Any] | None"]


@dataclass(frozen=True)
class Scenario:
    """A named script of turns, or a function that answers each request.

    `model`, when set, is the model id the responses report (a turn's `served_model`
    wins); otherwise they report the requested model.
    """

    name: str
    turns: tuple[Turn, ...] = ()
    description: str = ""
    model: str | None = None
    latency_ms: int = 0
    script: ScenarioFunction | None = None
    source: str = "<dict>"
    models: tuple[ModelSpec, ...] = ()
    conversations: tuple[Conversation, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "turns", tuple(self.turns))
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "conversations", tuple(self.conversations))

    def listed_models(self) -> tuple[ModelSpec, ...]:
        """What `GET /v1/models` lists: `models`, or one model with the defaults."""
        return self.models or (ModelSpec(self.model or DEFAULT_MODEL_ID),)

    def model_spec(self, model_id: str) -> ModelSpec | None:
        """The model a request names; any id gets the defaults when `models` is unset."""
        if not self.models:
            return ModelSpec(model_id)
        return next((m for m in self.models if m.id == model_id), None)

    def conversation_for(self, body: dict[str, Any]) -> Conversation | None:
        """The conversation answering this request (None: the top-level `turns`); raises
        `ScenarioError` when none matches and there are no top-level turns."""
        if not self.conversations:
            return None
        goal = goal_text(body["messages"])
        found = next((c for c in self.conversations if c.answers(goal, body.get("model"))), None)
        if found is None and not self.turns:
            matches = ", ".join(repr(c.match) for c in self.conversations)
            raise ScenarioError(
                f"{self.source}: no conversation matches this request, and there are no "
                f"top-level `turns` to fall back on. Its first user message starts "
                f"{_start(goal)}; the conversations match {matches}."
            )
        return found

    def where(self, body: dict[str, Any], index: int) -> str:
        """Where the turn answering this request is, for error messages."""
        found = self.conversation_for(body) if self.script is None else None
        if found is None:
            return f"{self.source}, turn {index + 1}"
        return f"{self.source}, conversation {self.label(found)}, turn {index + 1}"

    def label(self, conversation: Conversation) -> str:
        number = self.conversations.index(conversation) + 1
        return repr(conversation.name) if conversation.name else str(number)

    def _turns_for(self, body: dict[str, Any]) -> tuple[Turn, ...]:
        found = self.conversation_for(body)
        return self.turns if found is None else found.turns

    def turn_for(self, body: dict[str, Any], index: int) -> Turn:
        """The turn answering a request that holds `index` assistant messages."""
        if self.script is not None:
            produced = self.script(body, index)
            if produced is None:
                return Turn(text=NO_MORE_TURNS, stop_reason="end_turn")
            if isinstance(produced, Turn):
                return produced
            return parse_turn(produced, _Where(self.source, index + 1))
        turns = self._turns_for(body)
        if index < len(turns):
            return turns[index]
        return Turn(text=NO_MORE_TURNS, stop_reason="end_turn")

    def scripted_summary(self, body: dict[str, Any], index: int) -> str | None:
        """The `compaction` text of the turn a summarising request is made before (turn
        lists only: a scenario function is not called for summarising requests)."""
        if self.script is not None:
            return None
        turns = self._turns_for(body)
        return turns[index].compaction if index < len(turns) else None


ScenarioSource = Scenario | str | Path | Mapping[str, Any] | ScenarioFunction


def load_scenario(source: ScenarioSource) -> Scenario:
    """A `Scenario` from a bundled name, a .yaml/.json path, a dict or a callable.

    A bare name (`"demo"`) loads `jupyter_delegate/testing/scenarios/<name>.yaml`.
    Raises `ScenarioError` naming the file, the turn and what is wrong.
    """
    if isinstance(source, Scenario):
        return source
    if isinstance(source, Path | str):
        return _load_file(_resolve(source))
    if isinstance(source, Mapping):
        return parse_scenario(source, "<dict>")
    if callable(source):
        name = getattr(source, "__name__", "callable")
        return Scenario(name=name, script=source, source=f"<callable {name}>")
    raise ScenarioError(f"Cannot load a scenario from {type(source).__name__}: {source!r}")


def bundled_folder() -> Path:
    """The folder of the bundled scenarios (one `<name>.yaml` each)."""
    return Path(str(resources.files(__package__ or "jupyter_delegate.testing"))) / "scenarios"


def bundled_scenarios() -> list[str]:
    """The names `load_scenario` accepts without a path."""
    return sorted(p.stem for p in bundled_folder().glob("*.yaml") if p.is_file())


def _resolve(source: str | Path) -> Path:
    path = Path(source)
    looks_like_path = isinstance(source, Path) or path.suffix or "/" in str(source)
    if looks_like_path or path.exists():
        if not path.is_file():
            raise ScenarioError(f"{path}: no such scenario file")
        return path
    bundled = bundled_folder() / f"{source}.yaml"
    if not bundled.is_file():
        known = ", ".join(bundled_scenarios()) or "none"
        raise ScenarioError(f"No bundled scenario named {source!r} (bundled: {known})")
    return bundled


def _load_file(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ScenarioError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ScenarioError(f"{path}: cannot be read ({err.strerror or err})") from None
    is_json = path.suffix == ".json"
    try:
        data = json.loads(text) if is_json else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise ScenarioError(f"{path}: not valid JSON at line {err.lineno}: {err.msg}") from err
    except yaml.YAMLError as err:  # one line: where, and the problem
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(err, "problem", None) or err).split())
        raise ScenarioError(f"{path}: not valid YAML{where}: {problem}") from err
    if not isinstance(data, Mapping):
        raise ScenarioError(f"{path}: a scenario is a mapping with `turns`, not {_kind(data)}")
    return parse_scenario(data, str(path), default_name=path.stem)


def parse_scenario(data: Mapping[str, Any], source: str, *, default_name: str = "") -> Scenario:
    """Validate a scenario mapping (as read from YAML or JSON)."""
    unknown = sorted(set(data) - set(SCENARIO_KEYS))
    if unknown:
        raise ScenarioError(
            f"{source}: unknown scenario key(s) {unknown}; the keys are {list(SCENARIO_KEYS)}"
        )
    conversations = _parse_conversations(data.get("conversations"), source)
    turns = data.get("turns")
    if turns is None and not conversations:
        raise ScenarioError(
            f"{source}: a scenario needs `turns` (a non-empty list), `conversations`, or both"
        )
    if turns is not None:
        turns = _turn_list(turns, source, "`turns`")
    return Scenario(
        name=_optional_str(data, "name", _Where(source)) or default_name or "scenario",
        turns=turns or (),
        conversations=conversations,
        description=_optional_str(data, "description", _Where(source)) or "",
        model=_optional_str(data, "model", _Where(source)),
        latency_ms=_optional_ms(data, _Where(source)) or 0,
        source=source,
        models=_parse_models(data.get("models"), _Where(source)),
    )


def _turn_list(raw: Any, source: str, what: str) -> tuple[Turn, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str) or not raw:
        raise ScenarioError(f"{source}: {what} must be a non-empty list, not {_kind(raw)}")
    return tuple(parse_turn(turn, _Where(source, n)) for n, turn in enumerate(raw, 1))


def _parse_conversations(raw: Any, source: str) -> tuple[Conversation, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise ScenarioError(
            f"{source}: `conversations` must be a non-empty list of {{match, turns}}, "
            f"not {_kind(raw)}"
        )
    found: list[Conversation] = []
    for n, entry in enumerate(raw, 1):
        if not isinstance(entry, Mapping):
            raise ScenarioError(
                f"{source}: conversation {n} must be a mapping with `match` and `turns`, "
                f"not {_kind(entry)}"
            )
        name = _optional_str(entry, "name", _Where(f"{source}, conversation {n}")) or ""
        label = f"{source}, conversation {name!r}" if name else f"{source}, conversation {n}"
        unknown = sorted(set(entry) - set(CONVERSATION_KEYS))
        if unknown:
            raise ScenarioError(
                f"{label}: unknown key(s) {unknown}; a conversation has {list(CONVERSATION_KEYS)}"
            )
        match = entry.get("match")
        if not isinstance(match, str) or not match.strip():
            raise ScenarioError(
                f"{label}: `match` must be a non-empty text (found in the conversation's "
                f"first user message), not {_kind(match)}"
            )
        if name and any(c.name == name for c in found):
            raise ScenarioError(f"{label}: the name {name!r} is used twice")
        model = _optional_str(entry, "model", _Where(label))
        for k, earlier in enumerate(found, 1):
            if earlier.match in match and earlier.model in (None, model):
                raise ScenarioError(
                    f"{label}: its match {match!r} can never be chosen: conversation "
                    f"{repr(earlier.name) if earlier.name else k}'s match {earlier.match!r} "
                    "comes first and occurs in it"
                )
        if "turns" not in entry:
            raise ScenarioError(f"{label}: `turns` is required")
        turns = _turn_list(entry["turns"], label, "`turns`")
        found.append(Conversation(match=match, turns=turns, name=name, model=model))
    return tuple(found)


def _start(text: str, limit: int = 120) -> str:
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def _parse_models(raw: Any, where: _Where) -> tuple[ModelSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw:
        raise where.fail(f"`models` must be a non-empty list of {{id: ...}}, not {_kind(raw)}")
    models: list[ModelSpec] = []
    for n, entry in enumerate(raw, 1):
        if not isinstance(entry, Mapping):
            raise where.fail(f"model {n} must be a mapping with `id`, not {_kind(entry)}")
        unknown = sorted(set(entry) - set(MODEL_KEYS))
        if unknown:
            raise where.fail(f"model {n}: unknown key(s) {unknown}; a model has {list(MODEL_KEYS)}")
        model_id = entry.get("id")
        if not isinstance(model_id, str) or not model_id:
            raise where.fail(f"model {n}: `id` must be a non-empty string, not {_kind(model_id)}")
        if any(m.id == model_id for m in models):
            raise where.fail(f"model {n}: {model_id!r} is listed twice")
        limits = {k: entry[k] for k in ("max_input_tokens", "max_tokens") if k in entry}
        for key, value in limits.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise where.fail(f"model {n} ({model_id}): `{key}` must be an integer >= 1")
        flags = {k: entry[k] for k in ("compaction", "thinking") if k in entry}
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise where.fail(f"model {n} ({model_id}): `{key}` must be true or false")
        models.append(ModelSpec(model_id, **limits, **flags))
    return tuple(models)


@dataclass(frozen=True)
class _Where:
    """Where a problem is, for error messages: a source and maybe a 1-based turn."""

    source: str
    turn: int | None = None

    def fail(self, problem: str) -> ScenarioError:
        place = self.source if self.turn is None else f"{self.source}, turn {self.turn}"
        return ScenarioError(f"{place}: {problem}")


def parse_turn(data: Any, where: _Where) -> Turn:
    """Validate one turn mapping."""
    if not isinstance(data, Mapping):
        raise where.fail(f"a turn is a mapping (text, tools, ...), not {_kind(data)}")
    unknown = sorted(set(data) - set(TURN_KEYS))
    if unknown:
        raise where.fail(f"unknown key(s) {unknown}; a turn has {list(TURN_KEYS)}")
    text = _optional_str(data, "text", where)
    if text == "":
        raise where.fail("`text` is empty; leave it out instead (the API rejects empty text)")
    tools = _parse_tools(data.get("tools"), where)
    refusal = data.get("refusal", False)
    if not isinstance(refusal, bool):
        raise where.fail(f"`refusal` must be true or false, not {_kind(refusal)}")
    if text is None and not tools and not refusal:
        raise where.fail("a turn needs `text`, `tools` or both (or `refusal: true`)")
    if refusal and tools:
        raise where.fail("a `refusal` turn has no `tools`: the model stopped before calling any")
    stop_reason = _optional_str(data, "stop_reason", where)
    if stop_reason is not None and stop_reason not in STOP_REASONS:
        raise where.fail(f"`stop_reason` {stop_reason!r} is not one of {list(STOP_REASONS)}")
    for key in ("thinking", "compaction"):
        if _optional_str(data, key, where) == "":
            raise where.fail(f"`{key}` is empty; leave it out for a deterministic one")
    cut = _cut_at_chars(data.get("cut_at_chars"), tools, where)
    if (refusal or cut is not None) and stop_reason is not None:
        raise where.fail("`stop_reason` cannot be combined with `refusal` or `cut_at_chars`")
    return Turn(
        text=text,
        tools=tools,
        stop_reason=stop_reason,
        served_model=_optional_str(data, "served_model", where),
        latency_ms=_optional_ms(data, where),
        faults=tuple(_parse_fault(f, where) for f in _list(data, "faults", where)),
        thinking=_optional_str(data, "thinking", where),
        compaction=_optional_str(data, "compaction", where),
        cut_at_chars=cut,
        refusal=refusal,
    )


def _cut_at_chars(raw: Any, tools: tuple[ToolCall, ...], where: _Where) -> int | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
        raise where.fail(f"`cut_at_chars` must be an integer >= 0, not {_kind(raw)}")
    if not tools:
        raise where.fail("`cut_at_chars` cuts the last tool call's input: the turn needs `tools`")
    length = len(json.dumps(dict(tools[-1].input), ensure_ascii=False))
    if raw >= length:
        raise where.fail(
            f"`cut_at_chars` {raw} does not cut the last tool call's input "
            f"({length} characters of JSON); use a smaller number"
        )
    return raw


def _parse_tools(raw: Any, where: _Where) -> tuple[ToolCall, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise where.fail(f"`tools` must be a list of {{tool_name: input}}, not {_kind(raw)}")
    return tuple(_parse_tool(entry, n, where) for n, entry in enumerate(raw, 1))


def _parse_tool(entry: Any, n: int, where: _Where) -> ToolCall:
    if not isinstance(entry, Mapping) or len(entry) != 1:
        raise where.fail(
            f"tool entry {n} must be a single-key mapping {{tool_name: input}}, got {entry!r}"
        )
    ((name, tool_input),) = entry.items()
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise where.fail(f"tool entry {n}: {name!r} is not a valid tool name")
    if tool_input is None:
        tool_input = {}
    if not isinstance(tool_input, Mapping):
        raise where.fail(
            f"tool entry {n} ({name}): the input must be a mapping, got {tool_input!r}"
        )
    return ToolCall(name, dict(tool_input))


def _parse_fault(raw: Any, where: _Where) -> Fault:
    if not isinstance(raw, Mapping):
        raise where.fail(f"a fault is a mapping like {{status: 429}}, not {_kind(raw)}")
    if "status" in raw:
        return _status_fault(raw, where)
    if "mid_stream_error" in raw:
        error_type = raw["mid_stream_error"]
        if error_type not in STATUS_OF_ERROR_TYPE:
            raise where.fail(
                f"mid_stream_error {error_type!r} is not one of {sorted(STATUS_OF_ERROR_TYPE)}"
            )
        return Fault("mid_stream_error", status=200, error_type=error_type)
    if raw.get("drop") is True:
        return Fault("drop")
    raise where.fail(
        f"unknown fault {dict(raw)!r}; use {{status: 429, retry_after: 0}}, {{status: 529}}, "
        "{mid_stream_error: overloaded_error} or {drop: true}"
    )


def _status_fault(raw: Mapping[str, Any], where: _Where) -> Fault:
    status = raw["status"]
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise where.fail(f"fault status {status!r} is not an HTTP error status (400-599)")
    retry_after = raw.get("retry_after")
    if retry_after is not None and (
        isinstance(retry_after, bool) or not isinstance(retry_after, int | float) or retry_after < 0
    ):
        raise where.fail(f"fault retry_after {retry_after!r} is not a number of seconds >= 0")
    error_type = raw.get("type") or ERROR_TYPES.get(status, "api_error" if status >= 500 else "")
    return Fault(
        "status",
        status=status,
        error_type=error_type or "invalid_request_error",
        retry_after=retry_after,
        message=str(raw.get("message") or ""),
    )


def _list(data: Mapping[str, Any], key: str, where: _Where) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise where.fail(f"`{key}` must be a list, not {_kind(value)}")
    return value


def _optional_str(data: Mapping[str, Any], key: str, where: _Where) -> str | None:
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise where.fail(f"`{key}` must be a string, not {_kind(value)}")
    return value


def _optional_ms(data: Mapping[str, Any], where: _Where) -> int | None:
    value = data.get("latency_ms")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise where.fail(f"`latency_ms` must be a number >= 0, not {value!r}")
    return int(value)


def _kind(value: Any) -> str:
    return "nothing" if value is None else f"a {type(value).__name__} ({value!r:.60})"
