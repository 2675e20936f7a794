"""The SDK's first stream of a process, read beforehand, while the first real request
waits for the model.

The first stream the SDK reads in a process builds pydantic's validators for the
stream's event and message types as its events come (`BetaRawMessageStreamEvent`, the
content blocks, `ParsedBetaMessage`): between the model's first words leaving the
endpoint and the task's first `text` event, 100 ms in a plain process and 270 ms in a
new kernel, against 2-3 ms for the next task (bench/RESULTS.md, "the first task of a
kernel shows its words as they come"). Here a canned stream (text, thinking, a tool
call), served by an in-memory transport to a throwaway client, is read once per process
on a thread of its own, started when the engine sends its first request: while the
request waits for the model the engine's thread is idle, so the building costs the task
nothing. The engine reads its stream (or a summary's reply) only once this is done
(`ready`), so pydantic never builds the same types on two threads at once, and the real
stream finds them built.

Only the SDK's public API and the httpx client it takes (`http_client=`): nothing leaves
the process. If the warm-up fails (an SDK that streams differently), the task's stream
does the building itself, as before.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import threading
from typing import Any

# Longest the engine waits for the warm-up before reading its stream anyway (it
# normally takes about 0.1 s; the wait only ever replaces the same building). Waited
# once a process: a warm-up that has not ended by then is not waited for again.
WAIT_S = 5.0


def _block(index: int, block: dict[str, Any], *deltas: dict[str, Any]) -> list[dict[str, Any]]:
    """A content block's events: its start, its deltas, its stop."""
    return [
        {"type": "content_block_start", "index": index, "content_block": block},
        *({"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas),
        {"type": "content_block_stop", "index": index},
    ]


# As the API reports it: the cache's counts, split by time to live.
_USAGE: dict[str, Any] = {
    "input_tokens": 1,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 1,
    "service_tier": "standard",
}
_MESSAGE: dict[str, Any] = {
    "id": "msg_warm_up",
    "type": "message",
    "role": "assistant",
    "model": "warm-up",
    "content": [],
    "stop_reason": None,
    "stop_sequence": None,
    "usage": _USAGE,
}
_EVENTS: list[dict[str, Any]] = [
    {"type": "message_start", "message": _MESSAGE},
    *_block(
        0,
        {"type": "thinking", "thinking": "", "signature": ""},
        {"type": "thinking_delta", "thinking": "Hm."},
        {"type": "signature_delta", "signature": "c2ln"},
    ),
    *_block(1, {"type": "text", "text": ""}, {"type": "text_delta", "text": "Reading."}),
    *_block(
        2,
        {"type": "tool_use", "id": "toolu_warm_up", "name": "read", "input": {}},
        {"type": "input_json_delta", "partial_json": '{"file_path": "a"}'},
    ),
    {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": _USAGE},
    {"type": "message_stop"},
]

_lock = threading.Lock()
_started: concurrent.futures.Future[None] | None = None
_given_up = False  # a wait ran out: the process's streams no longer wait for it


def _after_fork() -> None:
    """A forked child has no warm-up thread: it starts its own when it needs one."""
    global _lock, _started, _given_up
    _lock = threading.Lock()
    if _started is not None and not _started.done():
        _started, _given_up = None, False


os.register_at_fork(after_in_child=_after_fork)


def _stream_body() -> bytes:
    return "".join(
        f"event: {event['type']}\ndata: {json.dumps(event)}\n\n" for event in _EVENTS
    ).encode()


async def _read_a_stream() -> None:
    import httpx2
    from anthropic import AsyncAnthropic

    def serve(request: httpx2.Request) -> httpx2.Response:
        headers = {"content-type": "text/event-stream", "request-id": "req_warm_up"}
        return httpx2.Response(200, headers=headers, content=_stream_body())

    transport = httpx2.MockTransport(serve)
    async with (
        AsyncAnthropic(
            api_key="warm-up",
            base_url="http://warm-up.invalid",
            max_retries=0,
            http_client=httpx2.AsyncClient(transport=transport),
            open_telemetry=False,  # no span for a request nobody made
        ) as client,
        client.beta.messages.stream(
            model="warm-up", max_tokens=16, messages=[{"role": "user", "content": "Warm up."}]
        ) as stream,
    ):
        async for _ in stream:
            pass
        await stream.get_final_message()


def start() -> concurrent.futures.Future[None]:
    """The warm-up, started on its own thread the first time this is called in the
    process; its future (done at once after that)."""
    global _started
    with _lock:
        if _started is None:
            started: concurrent.futures.Future[None] = concurrent.futures.Future()

            def run() -> None:
                try:
                    asyncio.run(_read_a_stream())
                except Exception as exc:
                    started.set_exception(exc)
                except BaseException:  # never handed to the engine, which may be cancelled
                    started.set_result(None)
                    raise
                else:
                    started.set_result(None)

            threading.Thread(target=run, name="jupyter-delegate-warm-up", daemon=True).start()
            _started = started
        return _started


async def ready(warm_up: concurrent.futures.Future[None]) -> None:
    """Wait for the warm-up to end, however it ends: at most `WAIT_S`, once a process."""
    global _given_up
    if warm_up.done() or _given_up:
        return
    try:
        await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(warm_up)), WAIT_S)
    except TimeoutError:
        _given_up = True
    except Exception:  # it failed: the task's stream builds the types itself
        return
