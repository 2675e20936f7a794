"""The agent loop, explicit and linear, in the spirit of mini-swe-agent:

    run()  = while True: step()
    step() = act(query(messages))

`query` streams one model turn through `client.beta.messages.stream` (text deltas and
tool calls go to subscribers as they arrive) and journals the finished message; `act`
runs each tool call and journals each result. The journal append is in one place
(`Recorder`), after every step. The loop ends by exception: `Finished` (the agent called
`finish`, ended its turn without a tool, or a budget ran out) or `TaskFailed`.

What the model sees is exactly `messages`, which is exactly what the journal holds (secrets
are redacted before either sees them):
`journal.replay_messages` rebuilds it, so a resumed task continues where it stopped.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ..journal import load_detectors, redact, secret_values
from ..outcome import Budget
from ..policy import CHANGING_TOOLS
from . import warmup
from .catalogue import ModelInfo, from_table
from .model import usage_of
from .output_tail import OutputTail
from .tools import Toolbox, ToolOutput

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

    from ..events import JournalEvent
    from ..journal import Event

MAX_MALFORMED_IN_A_ROW = 3
COMPACTION_BETA = "compact-2026-01-12"
SUMMARY_REQUEST = (
    "The conversation is about to be shortened. Summarise the work so far for yourself, "
    "to go on from: what you tried and what you learned, the files you changed and "
    "why, what is left to do, and anything the outcome requires that you must not forget. "
    "Do not call tools."
)
SUMMARY_TOKENS = 4096  # a summary is short; and a request not streamed must be
SUMMARY_HEADING = "Your summary of the work so far (the conversation was shortened):"
CUT_NOTE = (
    "Your reply was cut at {tokens} tokens (the output limit). Go on where it stopped, "
    "in shorter pieces."
)
CUT_CALL = (
    "Not run: your output was cut at {tokens} tokens (the output limit) in the middle of "
    "this {name} call, so its input is incomplete. Write in smaller pieces: create a file "
    "with a short `write`, then add to it with `edit`."
)


class Finished(Exception):
    """The round of work is over; the harness takes it from here."""

    def __init__(self, summary: str, stopped_by: str | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.stopped_by = stopped_by


class TaskFailed(Exception):
    """The task cannot go on; the message says why and what to do. `transient`: the cause
    can pass by itself (a dropped connection, a rate limit, an overloaded or failing API),
    so the task may resume from its journal."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class Recorder(Protocol):
    """Journals one event. The loop passes `sync=False` for its steps (model turns and
    tool results): they are written at once and synced in the background (journal.py),
    so a model turn does not wait for the disk."""

    def __call__(self, type_: str, data: Mapping[str, Any], sync: bool = True) -> Event: ...


class Emit(Protocol):
    """Tells subscribers (`Task.emit`): a kind, its data, and the journal event it tells
    of, if any."""

    def __call__(
        self, kind: str, data: Mapping[str, Any], journal: JournalEvent | None = None
    ) -> None: ...


# Asks whether a tool call may run; returns None to run it, or the reason it may not.
Permit = Callable[[Mapping[str, Any]], Awaitable[str | None]]


@dataclass
class AgentLoop:
    client: AsyncAnthropic
    model: str
    system: str
    toolbox: Toolbox
    budget: Budget
    messages: list[dict[str, Any]]
    record: Recorder
    emit: Emit
    spent_usd: Callable[[], float]
    permit: Permit
    # Runs before each model turn (the manager notices context files changing there).
    before_turn: Callable[[], None] = lambda: None
    # Secret values known besides the environment's (those committed in the history).
    secrets: tuple[str, ...] = ()
    # What the model can do (catalogue.py): its window, output limit, capabilities.
    model_info: ModelInfo | None = None
    # How hard the model thinks ("low", "medium", "high", "max"); None: the model's default.
    effort: str | None = None
    # Compact the conversation when a request would reach this many input tokens (None:
    # 60% of the model's window; 0: never, and a prompt past the window fails the task).
    compact_at: int | None = None
    # The git tree of the worktree, after a call that can change files (snapshots.py),
    # journaled with its result; None: not taken (or it failed).
    snapshot: Callable[[], Awaitable[str | None]] | None = None

    def __post_init__(self) -> None:
        _hold_stream_snapshot_type()
        self._tools = self.toolbox.definitions()
        self._steps = 0
        self._started = time.monotonic()
        # A file tool gets no more than the time budget has left (tools.py).
        self.toolbox.deadline = self._started + self.budget.max_minutes * 60
        self._malformed_in_a_row = 0
        load_detectors()  # detect-secrets' patterns, before any agent content is redacted
        known = set(secret_values()) | set(self.secrets)
        self._secrets = sorted(known, key=len, reverse=True)
        self._info = self.model_info or from_table(self.model)
        # Server-side compaction until the endpoint says it has none (a 400 naming it).
        self._compacting = self.compact_at != 0
        self._server_compaction = self._info.compaction and self._compacting
        self._last_input = 0  # the input tokens of the last request, all of them
        default = int(self._info.max_input_tokens * 0.6)
        self._compact_at = default if self.compact_at is None else self.compact_at

    async def run(self) -> Finished:
        try:
            while True:
                await self.step()
        except Finished as finished:
            return finished

    async def step(self) -> None:
        self.check_budget()
        self.before_turn()
        compact = self._compacting and not self._server_compaction
        if compact and self._last_input >= self._compact_at:
            await self.compact()
        message = await self.query()
        stop = message["stop_reason"]
        if stop == "pause_turn":  # the API paused a long turn: ask it to go on
            return
        if stop == "refusal":
            raise TaskFailed(
                "The model refused to go on with this task (stop reason `refusal`). Read "
                "its last words in the journal (`jupyter delegate show ID`); reword the "
                "outcome and delegate again, or reject the task."
            )
        await self.act(message)

    def check_budget(self) -> None:
        budget = self.budget
        if self._steps >= budget.max_steps:
            raise Finished("", stopped_by=f"the step budget ({budget.max_steps} steps)")
        if self.spent_usd() >= budget.max_usd:
            raise Finished("", stopped_by=f"the dollar budget (${budget.max_usd:g})")
        if time.monotonic() - self._started >= budget.max_minutes * 60:
            raise Finished("", stopped_by=f"the time budget ({budget.max_minutes:g} minutes)")

    # -- query ---------------------------------------------------------------------------
    async def query(self) -> dict[str, Any]:
        """One model turn, streamed; retried once from the journaled state when the stream
        breaks (the SDK already retried 429, 529 and 5xx before it started)."""
        import anthropic
        import httpx2

        compacted = False
        for attempt in (1, 2):
            try:
                message = await self._stream_turn()
                exceeded = message["stop_reason"] == "model_context_window_exceeded"
                if exceeded and self._compacting and not compacted:
                    compacted = True
                    await self.compact()
                    return await self._stream_turn()
                return message
            except anthropic.BadRequestError as exc:
                if _names_compaction(exc) and self._server_compaction:
                    self._server_compaction = False  # this endpoint has none: ours instead
                    self.emit("notice", {"text": "the API does not compact here; the harness will"})
                    return await self._stream_turn()
                if not _too_long(exc) or compacted or not self._compacting:
                    raise self._api_failure(exc) from exc
                compacted = True
                self.emit("notice", {"text": "the conversation is past the window; compacting"})
                await self.compact()
                return await self._stream_turn()
            except anthropic.AuthenticationError as exc:
                raise TaskFailed(
                    f"The API rejected the key ({exc.status_code}). Set a valid "
                    "ANTHROPIC_API_KEY and delegate again; rejecting this task archives "
                    "its work so far."
                ) from exc
            except anthropic.APIStatusError as exc:
                if exc.status_code >= 400 or attempt == 2:
                    raise self._api_failure(exc) from exc
                self.emit("notice", {"text": f"stream broke ({_api_message(exc)}); retrying"})
            except (anthropic.APIConnectionError, httpx2.TransportError) as exc:
                if attempt == 2:
                    raise TaskFailed(
                        f"The connection to the model API failed twice ({exc!r}). The task "
                        "is kept; resume it when the connection is back.",
                        transient=True,
                    ) from exc
                self.emit("notice", {"text": f"connection dropped ({exc!r}); retrying"})
        raise AssertionError("unreachable")

    def _api_failure(self, exc: Any) -> TaskFailed:
        transient = _transient(exc.status_code)
        then = (
            " It may pass: resume the task to continue from its journal."
            if transient
            else " Trying again will not fix this: reject the task (its work is "
            "archived) and delegate again."
        )
        return TaskFailed(
            f"The model API failed: {_api_message(exc).rstrip('.')}.{then}", transient=transient
        )

    def _request(self) -> dict[str, Any]:
        """The turn's request: the catalogue's output limit, adaptive thinking and the
        effort where the model takes them, and the API's compaction where it has it."""
        request: dict[str, Any] = {
            "model": self.model,
            "max_tokens": self._info.output_tokens,
            "system": self.system,
            "messages": self.messages,
            "tools": self._tools,
            "cache_control": {"type": "ephemeral"},
        }
        if self._info.thinking:
            request["thinking"] = {"type": "adaptive", "display": "summarized"}
        if self.effort:
            request["output_config"] = {"effort": self.effort}
        if self._server_compaction:
            trigger = {"type": "input_tokens", "value": self._compact_at}
            request["context_management"] = {
                "edits": [{"type": "compact_20260112", "trigger": trigger}]
            }
            request["betas"] = [COMPACTION_BETA]
        return request

    async def _stream_turn(self) -> dict[str, Any]:
        stream_manager = self.client.beta.messages.stream(**self._request())
        message_id, block = "", 0  # which message and block the words belong to
        warm_up = warmup.start()  # the process's first request: read a stream meanwhile
        async with stream_manager as stream:
            await warmup.ready(warm_up)
            async for event in stream:
                if event.type == "message_start":
                    message_id = event.message.id
                elif event.type == "content_block_start":
                    block = event.index
                elif event.type == "text":
                    self.emit("text", {"delta": event.text, "message": message_id, "block": block})
                elif event.type == "thinking":
                    self.emit("thinking", {"delta": event.thinking, "message": message_id})
            final = await stream.get_final_message()
            request_id = stream.request_id
        content = [_block(b) for b in final.content]
        content = [b for b in content if not (b["type"] == "text" and not b["text"])]
        content = redact(content, self._secrets)  # signed blocks stay as the API sent them
        usage = usage_of(self.model, final.usage)
        before, self._last_input = self._last_input, _input_tokens(final.usage)
        self._steps += 1
        # After a paused turn (`pause_turn`) the reply goes on with that same turn.
        continues = bool(self.messages) and self.messages[-1]["role"] == "assistant"
        data = {
            "content": content,
            "model": final.model,
            "stop_reason": final.stop_reason,
            "usage": usage,
            "request_id": request_id,
            "message_id": final.id,
        }
        turn = self.record("assistant", {**data, "continues": True} if continues else data, False)
        if content and continues:
            last = self.messages[-1]
            self.messages[-1] = {**last, "content": [*last["content"], *content]}
        elif content:
            self.messages.append({"role": "assistant", "content": content})
        if content and content[0]["type"] == "compaction":  # the API compacted: start here
            del self.messages[:-1]
            # Before: the conversation at the last request (the compaction's own usage is
            # its summarising, not the size it closed); after: this request's.
            data = {"by": "server", "tokens_before": before, "tokens_after": self._last_input}
            compacted = self.record("compacted", data, sync=False)
            self.emit("compacted", data, compacted.typed)
        self.emit("usage", usage, turn.typed)
        return {"content": content, "stop_reason": final.stop_reason}

    # -- compaction by the harness ---------------------------------------------------------
    async def compact(self) -> None:
        """Make the conversation short, where the API does not: one summarising turn of the
        same model over it (what was tried, learned and is left, the files touched), then a
        fresh conversation of the outcome, that summary, and the last results. Journaled
        whole (`compacted`), so a replay starts from exactly what was sent."""
        before = self._last_input
        ask = {"type": "text", "text": SUMMARY_REQUEST}
        messages = _for_summary(self.messages)
        if messages and messages[-1]["role"] == "user":
            messages[-1] = {**messages[-1], "content": [*messages[-1]["content"], ask]}
        else:
            messages.append({"role": "user", "content": [ask]})
        request = {**self._request(), "messages": messages, "tool_choice": {"type": "none"}}
        request["max_tokens"] = min(SUMMARY_TOKENS, self._info.output_tokens)
        for key in ("context_management", "betas", "thinking"):
            request.pop(key, None)
        await warmup.ready(warmup.start())  # a first request may be a summary
        reply = await self.client.beta.messages.create(**request)
        summary = "\n".join(b.text for b in reply.content if b.type == "text").strip()
        usage = usage_of(self.model, reply.usage)
        goal = _first_text(self.messages)
        last = _last_results(self.messages)
        text = f"{goal}\n\n{SUMMARY_HEADING}\n\n{summary}"
        if last:
            text += f"\n\nThe results of your last tool calls:\n\n{last}"
        restart = [
            {"role": "user", "content": [{"type": "text", "text": redact(text, self._secrets)}]}
        ]
        self.messages[:] = restart
        self._last_input = 0
        after = _estimate_tokens(restart)
        data = {
            "by": "harness",
            "tokens_before": before,
            "tokens_after": after,
            "messages": restart,
            "usage": usage,
        }
        written = self.record("compacted", data)
        self.emit("compacted", data, written.typed)

    # -- act -------------------------------------------------------------------------------
    async def act(self, message: dict[str, Any]) -> None:
        calls = [b for b in message["content"] if b["type"] == "tool_use"]
        cut = message["stop_reason"] == "max_tokens"
        if not calls and cut:  # cut in the middle of its words: let it go on
            note = CUT_NOTE.format(tokens=self._info.output_tokens)
            content = [{"type": "text", "text": note}]
            self.record("user", {"content": content, "cut": True}, sync=False)
            self.messages.append({"role": "user", "content": content})
            return
        if not calls:
            text = "\n".join(b["text"] for b in message["content"] if b["type"] == "text")
            raise Finished(text.strip())
        results: list[dict[str, Any]] = []
        finished: Finished | None = None
        meta: dict[str, Any]
        for call in calls:
            self.emit("tool_call", {"id": call["id"], "name": call["name"], "input": call["input"]})
            if cut and call is calls[-1]:  # its input was cut: never run it
                note = CUT_CALL.format(tokens=self._info.output_tokens, name=call["name"])
                results.append(self._result(call, note, is_error=True, cut=True))
                continue
            if call["name"] == "finish":
                summary = call["input"].get("summary") if isinstance(call["input"], dict) else None
                if isinstance(summary, str):
                    finished = Finished(summary.strip())
                    results.append(self._result(call, "Finished. The harness runs the checks."))
                    continue
                output_text, is_error, malformed, meta = (
                    "finish: 'summary' must be a string.",
                    True,
                    True,
                    {},
                )
            elif call["name"] == "propose_plan" and self.toolbox.check_plan is not None:
                problem = self.toolbox.check_plan(call["input"])
                if problem is None:
                    proposal = call["input"]
                    self.record("plan_proposed", {"plan": proposal})
                    subtasks = len(proposal.get("subtasks", []))
                    summary = str(proposal.get("summary", "")).strip()
                    finished = Finished(
                        f"Proposed a plan of {subtasks} subtasks: {proposal.get('title')}."
                        + (f"\n\n{summary}" if summary else "")
                    )
                    text = "Plan received. The user reviews it; you are done."
                    results.append(self._result(call, text))
                    continue
                output_text, is_error, malformed = problem, True, False
                meta = {}
            elif (refusal := await self.permit(local := self.toolbox.local(call))) is not None:
                output_text, is_error, malformed, meta = refusal, True, False, {"denied": True}
            else:
                output = await self._run_tool(call["id"], call["name"], local["input"])
                output_text, is_error = output.content, output.is_error  # type: ignore[assignment]
                malformed, meta = output.malformed, dict(output.meta)
                if self.snapshot is not None and call["name"] in CHANGING_TOOLS:
                    tree = await self.snapshot()
                    if tree:
                        meta["tree"] = tree
            results.append(self._result(call, output_text, is_error=is_error, **meta))
            self._count_malformed(malformed)
        self.messages.append({"role": "user", "content": results})
        if finished is not None:
            raise finished

    async def _run_tool(self, call_id: str, name: str, tool_input: Any) -> ToolOutput:
        """Run a tool call; a command's output is told as it runs (`tool_output`, the last
        lines, redacted, throttled: a live event, never journaled)."""
        if name != "bash":
            return await self.toolbox.call(name, tool_input)

        def tell(text: str) -> None:
            self.emit("tool_output", {"tool_use_id": call_id, "tail": redact(text, self._secrets)})

        tail = OutputTail(tell)
        try:
            return await self.toolbox.call(name, tool_input, on_output=tail.feed)
        finally:
            tail.close()

    def _result(
        self, call: Mapping[str, Any], content: Any, *, is_error: bool = False, **meta: Any
    ) -> dict[str, Any]:
        content = redact(content, self._secrets)  # before the model, the journal, the views
        data = {
            "tool_use_id": call["id"],
            "name": call["name"],
            "content": content,
            "is_error": is_error,
            **meta,
        }
        written = self.record("tool_result", data, sync=False)
        self.emit("tool_result", data, written.typed)
        block = {"type": "tool_result", "tool_use_id": call["id"], "content": content}
        if is_error:
            block["is_error"] = True
        return block

    def _count_malformed(self, malformed: bool) -> None:
        self._malformed_in_a_row = self._malformed_in_a_row + 1 if malformed else 0
        if self._malformed_in_a_row >= MAX_MALFORMED_IN_A_ROW:
            raise TaskFailed(
                f"The model sent malformed tool input {MAX_MALFORMED_IN_A_ROW} times in a row; "
                "the task stopped. Read its journal (`jupyter delegate show ID`) and retry, "
                "perhaps with another model."
            )


@functools.cache
def _hold_stream_snapshot_type() -> object:
    """`ParsedBetaMessage[ResponseFormatT]`, held for the life of the process. The SDK's
    stream subscripts it at every `message_start`, and pydantic keeps a generic class
    only while something references it: with nothing holding it, every model turn built
    the class again. A bare SDK loop's turn is about 0.85 ms faster with it held
    (bench/RESULTS.md, "Issue 7, second pass")."""
    try:
        from anthropic.lib._parse._response import ResponseFormatT
        from anthropic.types.beta.parsed_beta_message import ParsedBetaMessage
    except ImportError:  # a private path of the SDK moved: only this saving is lost
        return None
    return ParsedBetaMessage[ResponseFormatT]  # type: ignore[valid-type]


def _block(block: Any) -> dict[str, Any]:
    if block.type == "text":
        return {"type": "text", "text": block.text}
    if block.type == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    dumped: dict[str, Any] = block.model_dump(mode="json", exclude_none=True)
    return dumped


def _input_tokens(usage: Any) -> int:
    """All the input tokens of a request: fresh, written to the cache and read from it."""
    return sum(
        int(getattr(usage, name, 0) or 0)
        for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
    )


def _estimate_tokens(messages: list[dict[str, Any]]) -> int:
    """About how many tokens `messages` are: UTF-8 bytes of their JSON over 4."""
    return len(json.dumps(messages, ensure_ascii=False).encode()) // 4


def _first_text(messages: list[dict[str, Any]]) -> str:
    """The first user message's text: the outcome the agent was given."""
    for message in messages:
        if message["role"] == "user":
            return "\n".join(
                b.get("text", "") for b in message["content"] if b.get("type") == "text"
            )
    return ""


def _last_results(messages: list[dict[str, Any]], limit: int = 8000) -> str:
    """The last user message's tool results, as text, cut to `limit` characters."""
    if not messages or messages[-1]["role"] != "user":
        return ""
    parts = []
    for block in messages[-1]["content"]:
        if block.get("type") == "tool_result":
            content = block.get("content")
            text = content if isinstance(content, str) else json.dumps(content)[:limit]
            parts.append(text)
    joined = "\n---\n".join(parts)
    return (
        joined
        if len(joined) <= limit
        else joined[: limit // 2] + "\n[...]\n" + joined[-limit // 2 :]
    )


def _for_summary(messages: list[dict[str, Any]], limit: int = 4000) -> list[dict[str, Any]]:
    """The conversation as the summarising turn sees it: without the reasoning blocks (it
    runs without thinking), each tool result cut to `limit` characters (head and tail),
    so that a conversation already past the window fits."""
    shortened = []
    for message in messages:
        content = []
        for block in message["content"]:
            if block.get("type") in ("thinking", "redacted_thinking"):
                continue
            if block.get("type") == "tool_result":
                text = block.get("content")
                text = text if isinstance(text, str) else json.dumps(text)
                if len(text) > limit:
                    text = text[: limit // 2] + "\n[...]\n" + text[-limit // 2 :]
                block = {**block, "content": text}
            content.append(block)
        shortened.append({**message, "content": content or [{"type": "text", "text": "..."}]})
    return shortened


def _too_long(exc: Any) -> bool:
    return "prompt is too long" in _api_message(exc)


def _names_compaction(exc: Any) -> bool:
    message = _api_message(exc)
    return "compact" in message and ("beta" in message or "not supported" in message)


def _transient(status: int) -> bool:
    """Whether an API error can pass by itself: a stream that broke off (status 200), a
    timeout, a conflict, a rate limit or an overloaded or failing server, as opposed to a
    request the API will refuse again (400, 401, 403, 404, 413)."""
    return status < 400 or status in (408, 409, 429) or status >= 500


def _api_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return f"{error.get('type', 'error')}: {error['message']}"
    return str(exc)
