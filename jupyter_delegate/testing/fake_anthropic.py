"""A scripted fake of the Anthropic Messages API, reached through the real SDK.

One piece of code speaks the protocol: `FakeMessagesAPI.reply` turns a request (method,
path, headers, body bytes) into a transport-neutral `Reply` (status, headers, body parts,
latency, whether the connection drops). Two thin adapters play a `Reply`:

- in process: `fake.handler` / `fake.transport()` (an `httpx2.MockTransport`) /
  `fake.async_client()` (an `AsyncAnthropic` wired to it);
- over loopback: `FakeServer(fake)`, a threaded HTTP/1.1 server on 127.0.0.1 that streams
  SSE with chunked encoding, for subprocesses and `ANTHROPIC_BASE_URL`.

Routes: `POST /v1/messages`, and `GET /v1/models` and `/v1/models/{id}` (the scenario's
`models`). The answers come from a `Scenario`; the request rules from `validation`; what
the model sees, the turn, and the signed `compaction` and `thinking` blocks from
`conversation`; the `usage` numbers and the token count from the simulated prompt cache
in `caching`.

What a request gets, in order: 404 for a model the scenario does not list; 400 for what
the model does not support, `max_tokens` above its limit, a signed block altered, dropped
or reordered, a missing thinking block before tool results, or a prompt over the window
(`prompt is too long: N tokens > M maximum`, N by `caching.count_tokens` over what the
model sees). Then:
- a summarising request (`tool_choice: {type: none}`) gets a text summary ending with
  `conversation.SUMMARY_MARKER`, and uses no scripted turn;
- a compaction request (top-level `compaction: {type: summarize}`) gets a lone
  `compaction` block (stop reason `compaction`), and uses no scripted turn;
- any other request gets its scripted turn (from the scenario's conversation whose
  `match` its first user message holds, else the top-level `turns`), preceded by a
  `compaction` block when a `compact_20260112` edit's trigger is reached
  (`usage.iterations` then holds the compaction's cost and the message's), and by a
  signed thinking block when thinking is on.

A scenario the real API could not play is refused with a 500 that is not retried, its
message the `ScenarioError`: a request no conversation matches (and no top-level turns),
or a scripted call to a `strict` tool whose input breaks the tool's schema.

Run as a program it serves a scenario until SIGTERM or SIGINT:

    python -m jupyter_delegate.testing.fake_anthropic --scenario demo --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import itertools
import json
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qs, unquote

from .caching import PromptCache, canonical, count_tokens, estimate_tokens
from .conversation import (
    check_signed_blocks,
    check_thinking_before_tool_results,
    compaction_block,
    effective_body,
    flatten,
    is_summary_request,
    marked_summary,
    summary_text,
    thinking_block,
    tool_use_id,
    turn_index,
)
from .scenario import (
    STATUS_OF_ERROR_TYPE,
    Fault,
    ModelSpec,
    Scenario,
    ScenarioError,
    ScenarioSource,
    Turn,
    load_scenario,
)
from .strict_tools import input_mismatch, is_strict
from .validation import ApiError, compact_edit, invalid, thinking_on, validate_request

if TYPE_CHECKING:
    import httpx2
    from anthropic import AsyncAnthropic

FAKE_BASE_URL = "http://fake.anthropic.local"
OFFLINE_API_KEY = "offline-fake-key"
MESSAGES_PATH = "/v1/messages"
MODELS_PATH = "/v1/models"
DEFAULT_COMPACTION_TRIGGER = 150_000
MODEL_CREATED_AT = "2026-01-01T00:00:00Z"
DEFAULT_ERROR_MESSAGES = {
    "authentication_error": "invalid x-api-key",
    "rate_limit_error": "Number of requests has exceeded your per-minute rate limit (scripted).",
    "overloaded_error": "Overloaded",
    "api_error": "Internal server error",
    "timeout_error": "Request timed out",
}
# A stream that fails mid-way sends this many events first: message_start, ping, the
# first content_block_start and its first delta.
EVENTS_BEFORE_FAULT = 4


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake received, and the status it answered.

    `kind`: `turn` (a scripted turn), `summary` (a summarising request), `compaction`
    (a compaction request), `models` (`GET /v1/models...`); `turn` is the turn index
    (-1 when the request was refused before it was known).
    """

    body: dict[str, Any]
    headers: dict[str, str]
    turn: int
    status: int
    kind: str = "turn"


@dataclass(frozen=True)
class Answer:
    """A message to send, and the cut JSON text of a tool input by block index."""

    message: dict[str, Any]
    partial_json: Mapping[int, str]


@dataclass(frozen=True)
class Reply:
    """One HTTP response, independent of how it travels; the adapters only play it."""

    status: int
    headers: dict[str, str]
    parts: tuple[bytes, ...] = ()
    delay_s: float = 0.0
    chunked: bool = False
    drop: bool = False

    @property
    def body(self) -> bytes:
        return b"".join(self.parts)


class FakeMessagesAPI:
    """Answers `POST /v1/messages` from a scenario, as strictly as the real API.

    `api_key`: when given, requests carrying another key get 401. `latency_ms`: delay
    before every response, overriding the scenario's and its turns'.
    """

    def __init__(
        self,
        scenario: ScenarioSource,
        *,
        api_key: str | None = None,
        latency_ms: int | None = None,
    ) -> None:
        self.scenario: Scenario = load_scenario(scenario)
        self.api_key = api_key
        self.latency_ms = latency_ms
        self.requests: list[RecordedRequest] = []
        self._cache = PromptCache()
        self._faults_served: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    # -- the protocol --------------------------------------------------------------

    def reply(self, method: str, target: str, headers: Mapping[str, str], raw: bytes) -> Reply:
        """The response to one HTTP request; records it in `requests`."""
        lowered = {key.lower(): value for key, value in headers.items()}
        body = _json_object(raw)
        turn, kind = -1, ("models" if method == "GET" else "turn")  # even when refused
        try:
            path, _, query = target.partition("?")
            self._check_route(method, path)
            self._check_auth(lowered)
            if method == "GET":
                answer = self._models(path, parse_qs(query))
            else:
                request = validate_request(body, betas_of(lowered))
                model = self._model(request)
                self._check_conversation(request, model)
                turn, kind = turn_index(request["messages"]), request_kind(request)
                answer = self._answer(request, model, turn, kind)
        except ApiError as err:
            answer = error_reply(err)
        except Exception as err:  # a scenario function failed: say so, and don't retry
            answer = error_reply(scenario_failure(err))
        self._record(body or {}, lowered, turn, answer.status, kind)
        return answer

    def _check_route(self, method: str, path: str) -> None:
        if (method, path) == ("POST", MESSAGES_PATH):
            return
        if method == "GET" and (path == MODELS_PATH or path.startswith(MODELS_PATH + "/")):
            return
        raise ApiError(
            f"Not found: {method} {path} (the fake serves POST {MESSAGES_PATH}, GET "
            f"{MODELS_PATH} and GET {MODELS_PATH}/{{model_id}}).",
            status=404,
            error_type="not_found_error",
        )

    def _check_auth(self, headers: Mapping[str, str]) -> None:
        if "anthropic-version" not in headers:
            raise ApiError("anthropic-version: header is required")
        if self.api_key is None:
            return
        bearer = headers.get("authorization", "").removeprefix("Bearer ").strip()
        if self.api_key not in (headers.get("x-api-key"), bearer):
            raise ApiError("invalid x-api-key", status=401, error_type="authentication_error")

    # -- models ------------------------------------------------------------------------

    def _models(self, path: str, query: Mapping[str, list[str]]) -> Reply:
        listed = self.scenario.listed_models()
        if path == MODELS_PATH:
            return ok_reply(model_page([model_info(m) for m in listed], query))
        model_id = unquote(path.removeprefix(MODELS_PATH + "/"))
        spec = self.scenario.model_spec(model_id)
        if spec is None or "/" in model_id:
            raise not_found_model(model_id)
        return ok_reply(model_info(spec))

    def _model(self, body: dict[str, Any]) -> ModelSpec:
        """The requested model, if it serves this request's parameters; else 404 or 400."""
        spec = self.scenario.model_spec(body["model"])
        if spec is None:
            raise not_found_model(body["model"])
        if body["max_tokens"] > spec.max_tokens:
            raise invalid(
                f"max_tokens: {body['max_tokens']} > {spec.max_tokens}, which is the maximum "
                f"allowed number of output tokens for {spec.id}"
            )
        if thinking_on(body) and not spec.thinking:
            raise invalid(f"thinking: {spec.id} does not support thinking.")
        edit = compact_edit(body)
        if (edit is not None or body.get("compaction") is not None) and not spec.compaction:
            where = "compaction" if edit is None else "context_management.edits"
            raise invalid(f"{where}: {spec.id} does not support compaction.")
        if edit is not None and edit.get("pause_after_compaction"):
            raise invalid(
                "context_management.edits: the fake does not implement "
                "`pause_after_compaction`; leave it out."
            )
        return spec

    def _check_conversation(self, body: dict[str, Any], spec: ModelSpec) -> None:
        """400 unless the signed blocks came back intact and the prompt fits the window."""
        check_signed_blocks(body["messages"])
        if thinking_on(body):
            check_thinking_before_tool_results(body["messages"])
        tokens = count_tokens(effective_body(body))
        if tokens > spec.max_input_tokens:
            raise invalid(f"prompt is too long: {tokens} tokens > {spec.max_input_tokens} maximum")

    # -- messages ------------------------------------------------------------------------

    def _answer(self, body: dict[str, Any], model: ModelSpec, index: int, kind: str) -> Reply:
        if kind != "turn":
            answer = (
                self._summary(body, index) if kind == "summary" else self._compaction(body, index)
            )
            return answer_reply(body, answer, None)
        turn = self.scenario.turn_for(body, index)
        self._check_strict_calls(body, turn, index)
        fault = self._take_fault(body, index, turn)
        delay = self._delay_s(turn)
        if fault is not None and fault.kind == "status":
            return replace(error_reply(fault_error(fault)), delay_s=delay)
        return replace(answer_reply(body, self._message(body, turn, index), fault), delay_s=delay)

    def _check_strict_calls(self, body: dict[str, Any], turn: Turn, index: int) -> None:
        """A scripted call to a tool the request defines with `strict: true` must match
        its schema, as the real model's must (a call cut at `max_tokens` is incomplete by
        design, and not checked); else `ScenarioError` naming the turn."""
        schemas = {t["name"]: t["input_schema"] for t in body.get("tools") or [] if is_strict(t)}
        for n, call in enumerate(turn.tools, 1):
            if call.name not in schemas or (turn.cut_at_chars is not None and n == len(turn.tools)):
                continue
            problems = input_mismatch(schemas[call.name], dict(call.input))
            if problems:
                raise ScenarioError(
                    f"{self.scenario.where(body, index)}: tool entry {n} calls the strict tool "
                    f"`{call.name}` with an input that does not match its input_schema: "
                    f"{'; '.join(problems[:5])}. The API guarantees a strict tool's input "
                    "matches its schema, so no model can make this call: fix the scenario."
                )

    def _take_fault(self, body: dict[str, Any], index: int, turn: Turn) -> Fault | None:
        """The next fault this (conversation, turn) has not been served yet."""
        if not turn.faults:
            return None
        key = (conversation_id(body), index)
        with self._lock:
            served = self._faults_served.get(key, 0)
            if served >= len(turn.faults):
                return None
            self._faults_served[key] = served + 1
        return turn.faults[served]

    def _delay_s(self, turn: Turn) -> float:
        for ms in (self.latency_ms, turn.latency_ms, self.scenario.latency_ms):
            if ms is not None:
                return ms / 1000
        return 0.0

    def _message(self, body: dict[str, Any], turn: Turn, index: int) -> Answer:
        """A scripted turn, after a compaction block when the trigger is reached, with a
        thinking block when thinking is on."""
        seen = effective_body(body)
        content: list[dict[str, Any]] = []
        compaction: dict[str, Any] | None = None
        edit = compact_edit(body)
        trigger = ((edit or {}).get("trigger") or {}).get("value", DEFAULT_COMPACTION_TRIGGER)
        compacted_from = count_tokens(seen)
        if edit is not None and compacted_from >= trigger:
            summary = turn.compaction or summary_text(body["messages"], index)
            compaction = compaction_block(summary, index + 1)
            content.append(compaction)
            seen = {**body, "messages": [{"role": "assistant", "content": [compaction]}]}
        if thinking_on(body):
            text = turn.thinking or f"Thinking about turn {index + 1}."
            shown = "" if body["thinking"].get("display") == "omitted" else text
            # What precedes it: the effective messages, or the compaction block alone.
            content.append(thinking_block(shown, flatten(seen["messages"])))
        said, partial = turn_blocks(
            turn, compaction["signature"] if compaction else "", len(content)
        )
        content.extend(said)
        usage = self._cache.usage(seen).as_dict()
        written = [b for b in content if b is not compaction]
        output = body["max_tokens"] if partial else max(1, estimate_tokens(written))
        usage["output_tokens"] = output
        if compaction is not None:
            usage["iterations"] = [
                iteration("compaction", compacted_from, estimate_tokens(compaction["content"])),
                {"type": "message", **usage},
            ]
        message = new_message(turn.served_model or self.scenario.model or body["model"], content)
        return Answer({**message, **stop(turn.effective_stop_reason), "usage": usage}, partial)

    def _summary_text(self, body: dict[str, Any], index: int) -> str:
        """The scripted `compaction` text of the turn ahead, or a deterministic summary."""
        scripted = self.scenario.scripted_summary(body, index)
        return scripted or summary_text(body["messages"], index)

    def _summary(self, body: dict[str, Any], index: int) -> Answer:
        """The answer to a summarising request: no scripted turn is used."""
        summary = self._summary_text(body, index)
        content = [{"type": "text", "text": marked_summary(summary, index)}]
        usage = self._cache.usage(effective_body(body)).as_dict()
        usage["output_tokens"] = max(1, estimate_tokens(content))
        message = new_message(self.scenario.model or body["model"], content)
        return Answer({**message, **stop("end_turn"), "usage": usage}, {})

    def _compaction(self, body: dict[str, Any], index: int) -> Answer:
        """The answer to a compaction request: a lone compaction block."""
        summary = self._summary_text(body, index)
        block = compaction_block(summary, index)
        usage = self._cache.usage(effective_body(body)).as_dict()
        usage["output_tokens"] = max(1, estimate_tokens(summary))
        message = new_message(self.scenario.model or body["model"], [block])
        return Answer({**message, **stop("compaction"), "usage": usage}, {})

    def _record(
        self, body: dict[str, Any], headers: dict[str, str], turn: int, status: int, kind: str
    ) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(body, headers, turn, status, kind))

    # -- in process: httpx2 ------------------------------------------------------------

    async def handler(self, request: httpx2.Request) -> httpx2.Response:
        """An `httpx2.MockTransport` handler; the body streams so drops happen mid-way."""
        import httpx2

        raw = await request.aread()
        target = request.url.raw_path.decode("ascii")
        reply = self.reply(request.method, target, dict(request.headers), raw)
        if reply.delay_s > 0:
            await asyncio.sleep(reply.delay_s)
        content = _play(reply, request) if reply.chunked else reply.body
        return httpx2.Response(
            reply.status, headers=reply.headers, content=content, request=request
        )

    def transport(self) -> httpx2.MockTransport:
        import httpx2

        return httpx2.MockTransport(self.handler)

    def async_client(self, **kwargs: Any) -> AsyncAnthropic:
        """An `AsyncAnthropic` talking to this fake in process; `kwargs` go to it."""
        import httpx2
        from anthropic import AsyncAnthropic

        kwargs.setdefault("api_key", self.api_key or OFFLINE_API_KEY)
        kwargs.setdefault("base_url", FAKE_BASE_URL)
        kwargs.setdefault("max_retries", 2)
        if "http_client" not in kwargs:
            kwargs["http_client"] = httpx2.AsyncClient(transport=self.transport())
        return AsyncAnthropic(**kwargs)


async def _play(reply: Reply, request: httpx2.Request) -> AsyncIterator[bytes]:
    import httpx2

    for part in reply.parts:
        yield part
        await asyncio.sleep(0)
    if reply.drop:
        raise httpx2.RemoteProtocolError(
            "peer closed connection without sending complete message body (scripted drop)",
            request=request,
        )


# -- building responses ----------------------------------------------------------------


def new_id(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def betas_of(headers: Mapping[str, str]) -> frozenset[str]:
    """The `anthropic-beta` features a request names (the SDK joins them with commas)."""
    return frozenset(b.strip() for b in headers.get("anthropic-beta", "").split(",") if b.strip())


def request_kind(body: dict[str, Any]) -> str:
    if body.get("compaction") is not None:
        return "compaction"
    return "summary" if is_summary_request(body) else "turn"


def not_found_model(model_id: str) -> ApiError:
    return ApiError(f"model: {model_id}", status=404, error_type="not_found_error")


def model_info(spec: ModelSpec) -> dict[str, Any]:
    """A model as `GET /v1/models` describes it (`BetaModelInfo`)."""

    def yes(flag: bool) -> dict[str, bool]:
        return {"supported": flag}

    thinking, compaction = spec.thinking, spec.compaction
    efforts = {level: yes(thinking) for level in ("low", "medium", "high", "max")}
    return {
        "type": "model",
        "id": spec.id,
        "display_name": spec.id,
        "created_at": MODEL_CREATED_AT,
        "lifecycle": "active",
        "max_input_tokens": spec.max_input_tokens,
        "max_tokens": spec.max_tokens,
        "capabilities": {
            "batch": yes(False),
            "citations": yes(False),
            "code_execution": yes(False),
            "compaction": {"supported": compaction, "summarize": yes(compaction)},
            "context_management": {
                "supported": compaction,
                "clear_tool_uses_20250919": yes(False),
                "clear_thinking_20251015": yes(False),
                "compact_20260112": yes(compaction),
            },
            "effort": {"supported": thinking, **efforts, "xhigh": yes(False)},
            "image_input": yes(False),
            "pdf_input": yes(False),
            "server_tools": {
                "supported": False,
                "code_execution": yes(False),
                "web_search": yes(False),
            },
            "structured_outputs": yes(True),
            "thinking": {
                "supported": thinking,
                "types": {
                    "adaptive": yes(thinking),
                    "enabled": yes(thinking),
                    "disabled": yes(True),
                    "between_tools": yes(False),
                },
            },
        },
    }


def model_page(infos: list[dict[str, Any]], query: Mapping[str, list[str]]) -> dict[str, Any]:
    """One page of the model list: `limit` (1-1000, default 20), `after_id`, `before_id`."""
    ids = [info["id"] for info in infos]
    start, end = 0, len(infos)
    after, before = query.get("after_id", [None])[0], query.get("before_id", [None])[0]
    if after is not None:
        start = ids.index(after) + 1 if after in ids else len(ids)
    if before is not None:
        end = ids.index(before) if before in ids else 0
    limit_text = query.get("limit", ["20"])[0]
    limit = int(limit_text) if limit_text.isdigit() else 0
    if not 1 <= limit <= 1000:
        raise invalid("limit: Input should be between 1 and 1000.")
    if before is not None and after is None:
        start = max(start, end - limit)
    page = infos[start:end][:limit]
    return {
        "data": page,
        "first_id": page[0]["id"] if page else None,
        "last_id": page[-1]["id"] if page else None,
        "has_more": start + len(page) < end if before is None else start > 0,
    }


def conversation_id(body: dict[str, Any]) -> str:
    """A conversation is known by its first user message."""
    first = body["messages"][0]["content"]
    return hashlib.sha256(canonical(first).encode()).hexdigest()[:16]


def new_message(model: str, content: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
    }


def stop(reason: str) -> dict[str, Any]:
    """The stop fields of a message: a refusal carries `stop_details`."""
    details = {"type": "refusal", "category": None, "explanation": None}
    fields: dict[str, Any] = {"stop_reason": reason, "stop_sequence": None}
    if reason == "refusal":
        fields["stop_details"] = details
    return fields


def iteration(kind: str, input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "type": kind,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def turn_blocks(
    turn: Turn, compaction_signature: str, first_index: int
) -> tuple[list[dict[str, Any]], dict[int, str]]:
    """The turn's text and tool calls (ids bound to the compaction block before them),
    and the cut JSON of the last call's input by block index when the turn is cut."""
    blocks: list[dict[str, Any]] = []
    partial: dict[int, str] = {}
    if turn.text:
        blocks.append({"type": "text", "text": turn.text})
    for n, call in enumerate(turn.tools, 1):
        tool_input: dict[str, Any] = dict(call.input)
        if n == len(turn.tools) and turn.cut_at_chars is not None:
            cut = json.dumps(tool_input, ensure_ascii=False)[: turn.cut_at_chars]
            partial[first_index + len(blocks)] = cut
            tool_input = partial_input(cut)
        tool_id = tool_use_id(compaction_signature)
        blocks.append({"type": "tool_use", "id": tool_id, "name": call.name, "input": tool_input})
    return blocks, partial


def partial_input(cut: str) -> dict[str, Any]:
    """What the SDK's stream accumulator makes of a cut input (jiter, partial mode):
    complete members kept, a cut string or literal dropped; `{}` for nothing."""
    from jiter import from_json

    value = from_json(cut.encode(), partial_mode=True) if cut else {}
    return value if isinstance(value, dict) else {}


def answer_reply(body: dict[str, Any], answer: Answer, fault: Fault | None) -> Reply:
    if body.get("stream") is True:
        return sse_reply(answer, fault)
    return json_reply(answer.message, fault)


def ok_reply(value: Mapping[str, Any]) -> Reply:
    headers = {"content-type": "application/json", "request-id": new_id("req_")}
    return Reply(200, headers, (json.dumps(value).encode(),))


def json_reply(message: dict[str, Any], fault: Fault | None) -> Reply:
    """A non-streaming answer; a mid-stream fault becomes its status, a drop stays a drop."""
    if fault is not None and fault.kind == "mid_stream_error":
        return error_reply(
            fault_error(replace(fault, status=STATUS_OF_ERROR_TYPE[fault.error_type]))
        )
    body = json.dumps(message).encode()
    headers = {"content-type": "application/json", "request-id": new_id("req_")}
    if fault is not None and fault.kind == "drop":
        return Reply(200, headers, (body[: len(body) // 2],), chunked=True, drop=True)
    return Reply(200, headers, (body,))


def sse_reply(answer: Answer, fault: Fault | None) -> Reply:
    events = sse_events(answer.message, answer.partial_json)
    if fault is not None and fault.kind == "mid_stream_error":
        error = error_body(fault.error_type, fault.message or _default_message(fault.error_type))
        events = [*events[:EVENTS_BEFORE_FAULT], sse("error", error)]
    elif fault is not None and fault.kind == "drop":
        cut = events[EVENTS_BEFORE_FAULT]
        events = [*events[:EVENTS_BEFORE_FAULT], cut[: len(cut) // 2]]
    headers = {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "request-id": new_id("req_"),
    }
    drop = fault is not None and fault.kind == "drop"
    return Reply(200, headers, tuple(events), chunked=True, drop=drop)


def sse(event: str, data: Mapping[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def sse_events(
    message: dict[str, Any], partial_json: Mapping[int, str] | None = None
) -> list[bytes]:
    """The full event stream of a message, as the API sends it; a tool input cut short
    streams only its `partial_json` text."""
    usage = message["usage"]
    first_usage = {k: v for k, v in usage.items() if k != "iterations"}
    start = {
        **message,
        "content": [],
        "stop_reason": None,
        "stop_details": None,
        "usage": {**first_usage, "output_tokens": 1},
    }
    events = [
        sse("message_start", {"type": "message_start", "message": start}),
        sse("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(message["content"]):
        events.extend(block_events(index, block, (partial_json or {}).get(index)))
    delta = {
        "stop_reason": message["stop_reason"],
        "stop_sequence": None,
        "stop_details": message.get("stop_details"),
    }
    events.append(sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events


def block_events(index: int, block: dict[str, Any], cut_json: str | None = None) -> list[bytes]:
    """content_block_start, its deltas, content_block_stop. A thinking block's signature
    comes in a `signature_delta` last; a compaction block's content in one
    `compaction_delta` (its signature in the start: no delta carries one)."""
    start: dict[str, Any]
    deltas: list[dict[str, Any]]
    if block["type"] == "text":
        start = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": c} for c in text_chunks(block["text"])]
    elif block["type"] == "thinking":
        start = {"type": "thinking", "thinking": "", "signature": ""}
        deltas = [{"type": "thinking_delta", "thinking": c} for c in text_chunks(block["thinking"])]
        deltas.append({"type": "signature_delta", "signature": block["signature"]})
    elif block["type"] == "compaction":
        start = {"type": "compaction", "content": None, "signature": block["signature"]}
        compacted = {k: block[k] for k in ("content", "encrypted_content")}
        deltas = [{"type": "compaction_delta", **compacted}]
    else:
        start = {**block, "input": {}}
        text = json.dumps(block["input"], ensure_ascii=False) if cut_json is None else cut_json
        deltas = [{"type": "input_json_delta", "partial_json": c} for c in json_chunks(text)]
    head = {"type": "content_block_start", "index": index, "content_block": start}
    body = [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
    return [
        sse("content_block_start", head),
        *(sse("content_block_delta", d) for d in body),
        sse("content_block_stop", {"type": "content_block_stop", "index": index}),
    ]


def text_chunks(text: str, parts: int = 3) -> list[str]:
    """`text` in up to `parts` pieces, cut at spaces."""
    cuts = [0]
    for k in range(1, parts):
        cut = text.find(" ", len(text) * k // parts)
        if cut > cuts[-1]:
            cuts.append(cut)
    cuts.append(len(text))
    return [text[a:b] for a, b in itertools.pairwise(cuts) if a < b]


def json_chunks(text: str) -> list[str]:
    """The JSON text of a tool input in 2-3 partial pieces (none when it is empty)."""
    parts = 3 if len(text) >= 6 else 2
    cuts = sorted({len(text) * k // parts for k in range(parts)} | {len(text)})
    return [text[a:b] for a, b in itertools.pairwise(cuts) if a < b]


def error_body(error_type: str, message: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": new_id("req_"),
    }


def error_reply(err: ApiError) -> Reply:
    body = error_body(err.error_type, err.message)
    headers = {"content-type": "application/json", "request-id": body["request_id"], **err.headers}
    return Reply(err.status, headers, (json.dumps(body).encode(),))


def fault_error(fault: Fault) -> ApiError:
    headers = {} if fault.retry_after is None else {"retry-after": f"{fault.retry_after:g}"}
    message = fault.message or _default_message(fault.error_type)
    return ApiError(message, status=fault.status, error_type=fault.error_type, headers=headers)


def scenario_failure(err: Exception) -> ApiError:
    return ApiError(
        f"The fake's scenario failed: {type(err).__name__}: {err}",
        status=500,
        error_type="api_error",
        headers={"x-should-retry": "false"},
    )


def _default_message(error_type: str) -> str:
    return DEFAULT_ERROR_MESSAGES.get(error_type, f"Scripted {error_type}")


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw) if raw else None
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# -- over loopback: http.server ------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int, fake: FakeMessagesAPI, verbose: bool) -> None:
        self.fake = fake
        self.verbose = verbose
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", port), _Handler)

    def close_connections(self) -> None:
        with self.connections_lock:
            open_now = list(self.connections)
        for connection in open_now:
            _shut(connection)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Each event goes out when written, as the API streams them: with Nagle's algorithm a
    # reply's events waited for the ACK of its headers, which the client delays (40 ms on
    # Linux), on every request of a kept-alive connection (tests/test_fake_anthropic.py).
    disable_nagle_algorithm = True

    @property
    def fake_server(self) -> _Server:
        return cast(_Server, self.server)

    def setup(self) -> None:
        super().setup()
        with self.fake_server.connections_lock:
            self.fake_server.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.fake_server.connections_lock:
                self.fake_server.connections.discard(self.connection)

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        headers = dict(self.headers.items())
        reply = self.fake_server.fake.reply(self.command, self.path, headers, raw)
        if reply.delay_s > 0:
            time.sleep(reply.delay_s)
        try:
            self._send(reply)
        except OSError:
            self.close_connection = True

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if not reply.chunked:
            self.send_header("content-length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            return
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        for part in reply.parts:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
        if reply.drop:
            self.close_connection = True
            _shut(self.connection)
            return
        self.wfile.write(b"0\r\n\r\n")

    def log_message(self, format: str, *args: Any) -> None:
        if self.fake_server.verbose:
            sys.stderr.write(f"fake-anthropic: {format % args}\n")


def _shut(connection: socket.socket) -> None:
    with contextlib.suppress(OSError):
        connection.shutdown(socket.SHUT_RDWR)


class FakeServer:
    """`fake` served over HTTP on 127.0.0.1 from a background thread, until `close()`.

    `port=0` picks a free port; `.url` is `http://127.0.0.1:PORT`, ready for
    `AsyncAnthropic(base_url=...)` or `ANTHROPIC_BASE_URL`.
    """

    def __init__(
        self, fake: FakeMessagesAPI | ScenarioSource, port: int = 0, *, verbose: bool = False
    ) -> None:
        self.fake = fake if isinstance(fake, FakeMessagesAPI) else FakeMessagesAPI(fake)
        self._httpd = _Server(port, self.fake, verbose)
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._closed = False
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-anthropic:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        """Stop serving, drop open connections, free the port. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._httpd.shutdown()
        self._httpd.close_connections()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


# -- the program -----------------------------------------------------------------------


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m jupyter_delegate.testing.fake_anthropic",
        description="Serve a scripted fake Anthropic Messages API on 127.0.0.1.",
    )
    parser.add_argument("--scenario", required=True, help="a scenario file, or a bundled name")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    parser.add_argument("--latency-ms", type=int, default=None, help="delay before every response")
    parser.add_argument("--api-key", default=None, help="answer 401 to any other key")
    parser.add_argument("--verbose", action="store_true", help="log every request to stderr")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT. The first stdout line is `listening on URL`."""
    args = _arguments(argv)
    try:
        fake = FakeMessagesAPI(args.scenario, api_key=args.api_key, latency_ms=args.latency_ms)
        server = FakeServer(fake, args.port, verbose=args.verbose)
    except (ScenarioError, OSError) as err:
        print(f"fake-anthropic: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    with server:
        print(f"listening on {server.url}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
