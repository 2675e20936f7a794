"""A scripted fake of the Anthropic Messages API, reached through the real SDK.

One piece of code speaks the protocol: `FakeMessagesAPI.reply` turns a request (method,
path, headers, body bytes) into a transport-neutral `Reply` (status, headers, body parts,
latency, whether the connection drops). Two thin adapters play a `Reply`:

- in process: `fake.handler` / `fake.transport()` (an `httpx2.MockTransport`) /
  `fake.async_client()` (an `AsyncAnthropic` wired to it);
- over loopback: `FakeServer(fake)`, a threaded HTTP/1.1 server on 127.0.0.1 that streams
  SSE with chunked encoding, for subprocesses and `ANTHROPIC_BASE_URL`.

The answers come from a `Scenario`; the request rules from `validation`; the `usage`
numbers from the simulated prompt cache in `caching`. Run as a program it serves a
scenario until SIGTERM or SIGINT:

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

from .caching import PromptCache, canonical, estimate_tokens
from .scenario import (
    STATUS_OF_ERROR_TYPE,
    Fault,
    Scenario,
    ScenarioError,
    ScenarioSource,
    Turn,
    load_scenario,
)
from .validation import ApiError, validate_request

if TYPE_CHECKING:
    import httpx2
    from anthropic import AsyncAnthropic

FAKE_BASE_URL = "http://fake.anthropic.local"
OFFLINE_API_KEY = "offline-fake-key"
MESSAGES_PATH = "/v1/messages"
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
    """A request the fake received, and the status it answered."""

    body: dict[str, Any]
    headers: dict[str, str]
    turn: int
    status: int


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
        turn = -1
        try:
            self._check_route(method, target)
            self._check_auth(lowered)
            request = validate_request(body)
            turn = assistant_count(request)
            answer = self._answer(request, turn)
        except ApiError as err:
            answer = error_reply(err)
        except Exception as err:  # a scenario function failed: say so, and don't retry
            answer = error_reply(scenario_failure(err))
        self._record(body or {}, lowered, turn, answer.status)
        return answer

    def _check_route(self, method: str, target: str) -> None:
        path = target.split("?", 1)[0]
        if method != "POST" or path != MESSAGES_PATH:
            raise ApiError(
                f"Not found: {method} {path} (the fake serves POST {MESSAGES_PATH} only).",
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

    def _answer(self, body: dict[str, Any], index: int) -> Reply:
        turn = self.scenario.turn_for(body, index)
        fault = self._take_fault(body, index, turn)
        delay = self._delay_s(turn)
        if fault is not None and fault.kind == "status":
            return replace(error_reply(fault_error(fault)), delay_s=delay)
        message = self._message(body, turn)
        if body.get("stream") is True:
            return replace(sse_reply(message, fault), delay_s=delay)
        return replace(json_reply(message, fault), delay_s=delay)

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

    def _message(self, body: dict[str, Any], turn: Turn) -> dict[str, Any]:
        content = content_blocks(turn)
        usage = self._cache.usage(body).as_dict()
        return {
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": turn.served_model or self.scenario.model or body["model"],
            "content": content,
            "stop_reason": turn.effective_stop_reason,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": max(1, estimate_tokens(content))},
        }

    def _record(
        self, body: dict[str, Any], headers: dict[str, str], turn: int, status: int
    ) -> None:
        with self._lock:
            self.requests.append(RecordedRequest(body, headers, turn, status))

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


def assistant_count(body: dict[str, Any]) -> int:
    """The turn index: how many assistant messages the request already holds."""
    return sum(1 for message in body["messages"] if message["role"] == "assistant")


def conversation_id(body: dict[str, Any]) -> str:
    """A conversation is known by its first user message."""
    first = body["messages"][0]["content"]
    return hashlib.sha256(canonical(first).encode()).hexdigest()[:16]


def content_blocks(turn: Turn) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    if turn.text:
        blocks.append({"type": "text", "text": turn.text})
    for call in turn.tools:
        tool_id = new_id("toolu_")
        blocks.append(
            {"type": "tool_use", "id": tool_id, "name": call.name, "input": dict(call.input)}
        )
    return blocks


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


def sse_reply(message: dict[str, Any], fault: Fault | None) -> Reply:
    events = sse_events(message)
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


def sse_events(message: dict[str, Any]) -> list[bytes]:
    """The full event stream of a message, as the API sends it."""
    usage = message["usage"]
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events = [
        sse("message_start", {"type": "message_start", "message": start}),
        sse("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(message["content"]):
        events.extend(block_events(index, block))
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": None}
    events.append(sse("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(sse("message_stop", {"type": "message_stop"}))
    return events


def block_events(index: int, block: dict[str, Any]) -> list[bytes]:
    if block["type"] == "text":
        start: dict[str, Any] = {"type": "text", "text": ""}
        deltas = [{"type": "text_delta", "text": c} for c in text_chunks(block["text"])]
    else:
        start = {**block, "input": {}}
        deltas = [
            {"type": "input_json_delta", "partial_json": c} for c in json_chunks(block["input"])
        ]
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


def json_chunks(value: Mapping[str, Any]) -> list[str]:
    """The JSON text of a tool input in 2-3 partial pieces (the last one completes it)."""
    text = json.dumps(value, ensure_ascii=False)
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
