"""The scripted fake Messages API, exercised through the real `anthropic` SDK: in process
(`fake.async_client()`) and over loopback (`FakeServer`, and the module as a program)."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest
import yaml
from anthropic import AsyncAnthropic
from anthropic.types.beta import BetaToolUseBlock

import jupyter_delegate
from jupyter_delegate.engine.tools import PROPOSE_PLAN_TOOL
from jupyter_delegate.testing import (
    FakeMessagesAPI,
    FakeServer,
    ScenarioError,
    ToolCall,
    Turn,
    load_scenario,
)
from jupyter_delegate.testing.demo_repo import CHECK, make_demo_repo
from jupyter_delegate.testing.strict_tools import check_strict_tools, input_mismatch

MODEL = "claude-sonnet-4-6"
BASH = {
    "name": "bash",
    "description": "Run one shell command.",
    "input_schema": {
        "type": "object",
        "properties": {"command": {"type": "string"}},
        "required": ["command"],
    },
}
READ = {**BASH, "name": "read", "description": "Read a file."}
TOOLS: list[Any] = [BASH, READ]
TOOL_TURN = {
    "text": "Running the tests first, to see what fails.",
    "tools": [{"bash": {"command": "pytest -q", "timeout_ms": 5000}}],
    "served_model": "claude-sonnet-4-6-20260101",
}
TWO_TURNS: dict[str, Any] = {
    "name": "two",
    "turns": [TOOL_TURN, {"text": "Second turn."}, {"text": "Third turn."}],
}
PACKAGE_ROOT = Path(jupyter_delegate.__file__).resolve().parents[1]


def run(make: Callable[[AsyncAnthropic], Awaitable[Any]], client: AsyncAnthropic) -> Any:
    """Run `make(client)` on a fresh event loop, closing the client on it."""

    async def main() -> Any:
        async with client:
            return await make(client)

    return asyncio.run(main())


def stream_turn(messages: list[Any], **kw: Any) -> Callable[[AsyncAnthropic], Awaitable[Any]]:
    async def go(client: AsyncAnthropic) -> Any:
        async with client.beta.messages.stream(
            model=MODEL, max_tokens=1024, system="You fix bugs.", messages=messages, **kw
        ) as stream:
            events = [event.type async for event in stream]
            message = await stream.get_final_message()
        return message, events

    return go


def post(body: dict[str, Any]) -> Callable[[AsyncAnthropic], Awaitable[Any]]:
    """A raw POST /v1/messages through the SDK: lets a test send what the types forbid."""

    async def go(client: AsyncAnthropic) -> Any:
        return await client.post("/v1/messages", cast_to=object, body=body)

    return go


def user(text: str) -> Any:
    """A user message (typed `Any`: the SDK's TypedDicts are stricter than JSON)."""
    return {"role": "user", "content": text}


def tool_exchange(tool_id: str, result: str = "ok") -> list[dict[str, Any]]:
    """An assistant tool call and the user message answering it."""
    return [
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": tool_id, "name": "bash", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": result}],
        },
    ]


# -- answers ---------------------------------------------------------------------------


def test_stream_text_and_tool_turn_gives_final_message_with_served_model() -> None:
    fake = FakeMessagesAPI(TWO_TURNS)
    message, events = run(
        stream_turn([user("Fix the bug")], tools=[BASH], cache_control={"type": "ephemeral"}),
        fake.async_client(),
    )
    assert [block.type for block in message.content] == ["text", "tool_use"]
    assert message.content[0].text == TOOL_TURN["text"]
    assert message.content[1].name == "bash"
    assert message.content[1].input == {"command": "pytest -q", "timeout_ms": 5000}
    assert re.fullmatch(r"toolu_[0-9a-f]{24}", message.content[1].id)
    assert message.id.startswith("msg_")
    assert message.stop_reason == "tool_use"
    assert message.model == "claude-sonnet-4-6-20260101"
    assert events.count("text") >= 2 and events.count("input_json") >= 2
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert message.usage.output_tokens > 0 and message.usage.input_tokens > 0
    assert message.usage.cache_creation_input_tokens and message.usage.cache_read_input_tokens == 0
    (recorded,) = fake.requests
    assert (recorded.turn, recorded.status) == (0, 200)
    assert recorded.body["stream"] is True and recorded.headers["anthropic-version"]


def test_non_streaming_create_returns_the_scripted_message() -> None:
    fake = FakeMessagesAPI({"turns": [{"text": "Just text."}]})

    async def go(client: AsyncAnthropic) -> Any:
        return await client.messages.create(
            model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "hi"}]
        )

    message = run(go, fake.async_client())
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Just text."
    assert message.stop_reason == "end_turn"
    assert message.model == MODEL
    assert fake.requests[0].body.get("stream") is not True


def test_turn_is_the_number_of_assistant_messages_in_the_request() -> None:
    fake = FakeMessagesAPI(TWO_TURNS)
    history = [user("Fix the bug"), *tool_exchange("toolu_1"), *tool_exchange("toolu_2")]
    message, _ = run(stream_turn(history, tools=[BASH]), fake.async_client())
    assert message.content[0].text == "Third turn."
    assert fake.requests[-1].turn == 2

    later = [*history, *tool_exchange("toolu_3")]
    message, _ = run(stream_turn(later, tools=[BASH]), fake.async_client())
    assert message.content[0].text == "(scenario has no more turns)"
    assert message.stop_reason == "end_turn"


def test_callable_scenario_and_python_turns() -> None:
    def script(body: dict[str, Any], turn: int) -> Turn | dict[str, Any]:
        if turn == 0:
            return Turn(text="Reading.", tools=(ToolCall("read", {"file_path": "a.py"}),))
        return {"text": f"turn {turn} of {body['model']}"}

    fake = FakeMessagesAPI(load_scenario(script))
    message, _ = run(stream_turn([user("go")], tools=[READ]), fake.async_client())
    assert message.content[1].input == {"file_path": "a.py"}
    assert Turn(tools=(ToolCall("read", {}),)).effective_stop_reason == "tool_use"
    history = [user("go"), *tool_exchange("toolu_9")]
    message, _ = run(stream_turn(history), fake.async_client())
    assert message.content[0].text == f"turn 1 of {MODEL}"


def test_latency_delays_the_response() -> None:
    fake = FakeMessagesAPI({"turns": [{"text": "slow", "latency_ms": 5000}]}, latency_ms=200)
    started = time.monotonic()
    run(stream_turn([user("hi")]), fake.async_client())
    assert 0.2 <= time.monotonic() - started < 2


# -- faults and retries ------------------------------------------------------------------


def test_streamed_text_leaves_over_loopback_at_once_on_a_kept_alive_connection() -> None:
    # Nagle's algorithm held each reply's events until the client ACKed its headers, which
    # it delays: 44 ms to the first text on every request after the first, at no latency.
    turns = [{"text": "alpha beta gamma delta", "tools": [{"read": {}}]}] * 12
    fake = FakeMessagesAPI({"turns": turns})

    async def first_text_ms(client: AsyncAnthropic) -> list[float]:
        messages: list[Any] = [user("go")]
        waits = []
        for n in range(len(turns)):
            started = time.perf_counter()
            async with client.beta.messages.stream(
                model=MODEL, max_tokens=1024, messages=messages, tools=TOOLS
            ) as stream:
                async for event in stream:
                    if event.type == "text":
                        waits.append((time.perf_counter() - started) * 1000)
                        break
                await stream.until_done()
            messages += tool_exchange(f"toolu_{n}")
        return waits

    with FakeServer(fake) as server:
        waits = run(first_text_ms, AsyncAnthropic(api_key="k", base_url=server.url))
    assert len(waits) == len(turns)
    assert sorted(waits)[len(waits) // 2] < 25, f"first text after (ms): {waits}"


def test_429_with_retry_after_is_retried_by_the_sdk_then_succeeds() -> None:
    turn = {"text": "After the rate limit.", "faults": [{"status": 429, "retry_after": 0.01}]}
    fake = FakeMessagesAPI({"turns": [turn]})
    message, _ = run(stream_turn([user("hi")]), fake.async_client())
    assert message.content[0].text == "After the rate limit."
    assert [r.status for r in fake.requests] == [429, 200]
    assert fake.requests[1].headers["x-stainless-retry-count"] == "1"


def test_429_without_retries_raises_rate_limit_error_with_retry_after() -> None:
    turn = {"text": "x", "faults": [{"status": 429, "retry_after": 7}]}
    fake = FakeMessagesAPI({"turns": [turn]})
    with pytest.raises(anthropic.RateLimitError) as caught:
        run(stream_turn([user("hi")]), fake.async_client(max_retries=0))
    assert caught.value.response.headers["retry-after"] == "7"
    assert caught.value.type == "rate_limit_error"


def test_529_is_retried_with_backoff_then_succeeds() -> None:
    fake = FakeMessagesAPI({"turns": [{"text": "Recovered.", "faults": [{"status": 529}]}]})
    message, _ = run(stream_turn([user("hi")]), fake.async_client())
    assert message.content[0].text == "Recovered."
    assert [r.status for r in fake.requests] == [529, 200]


def test_faults_exhaust_retries_and_raise_overloaded_error() -> None:
    faults = [{"status": 529, "retry_after": 0.01}] * 3
    fake = FakeMessagesAPI({"turns": [{"text": "never", "faults": faults}]})
    with pytest.raises(anthropic.OverloadedError):
        run(stream_turn([user("hi")]), fake.async_client(max_retries=2))
    assert [r.status for r in fake.requests] == [529, 529, 529]


def test_wrong_api_key_raises_authentication_error_and_is_not_retried() -> None:
    fake = FakeMessagesAPI({"turns": [{"text": "x"}]}, api_key="sk-right")
    with pytest.raises(anthropic.AuthenticationError):
        run(stream_turn([user("hi")]), fake.async_client(api_key="sk-wrong"))
    assert [r.status for r in fake.requests] == [401]
    message, _ = run(stream_turn([user("hi")]), fake.async_client())
    assert message.content[0].text == "x"


def test_scripted_401_fault_raises_authentication_error() -> None:
    fake = FakeMessagesAPI({"turns": [{"text": "x", "faults": [{"status": 401}]}]})
    with pytest.raises(anthropic.AuthenticationError):
        run(stream_turn([user("hi")]), fake.async_client())


def test_mid_stream_error_raises_api_status_error_and_is_not_retried() -> None:
    turn = {
        "text": "one two three four five six",
        "faults": [{"mid_stream_error": "overloaded_error"}],
    }
    fake = FakeMessagesAPI({"turns": [turn]})
    with pytest.raises(anthropic.APIStatusError) as caught:
        run(stream_turn([user("hi")]), fake.async_client())
    assert caught.value.status_code == 200
    assert caught.value.type == "overloaded_error"
    assert not isinstance(caught.value, anthropic.OverloadedError)
    assert [r.status for r in fake.requests] == [200]
    message, _ = run(stream_turn([user("hi")]), fake.async_client())
    assert message.content[0].text == turn["text"]


def test_dropped_stream_raises_raw_httpx2_error_in_process_and_over_loopback() -> None:
    turn = {"text": "one two three four five six", "faults": [{"drop": True}, {"drop": True}]}
    fake = FakeMessagesAPI({"turns": [turn]})
    with pytest.raises(httpx2.RemoteProtocolError):
        run(stream_turn([user("hi")]), fake.async_client())
    with FakeServer(fake) as server, pytest.raises(httpx2.RemoteProtocolError):
        run(stream_turn([user("hi")]), AsyncAnthropic(api_key="k", base_url=server.url))
    assert [r.status for r in fake.requests] == [200, 200]


def test_dropped_non_streaming_response_is_a_connection_error_the_sdk_retries() -> None:
    fake = FakeMessagesAPI({"turns": [{"text": "Made it.", "faults": [{"drop": True}]}]})

    async def go(client: AsyncAnthropic) -> Any:
        return await client.messages.create(model=MODEL, max_tokens=10, messages=[user("hi")])

    assert run(go, fake.async_client()).content[0].text == "Made it."
    assert len(fake.requests) == 2
    again = FakeMessagesAPI({"turns": [{"text": "x", "faults": [{"drop": True}]}]})
    with pytest.raises(anthropic.APIConnectionError):
        run(go, again.async_client(max_retries=0))


def test_each_conversation_gets_its_own_faults() -> None:
    turn = {"text": "ok", "faults": [{"status": 429, "retry_after": 0.01}]}
    fake = FakeMessagesAPI({"turns": [turn]})

    async def both(client: AsyncAnthropic) -> Any:
        return await asyncio.gather(
            stream_turn([user("goal A")])(client), stream_turn([user("goal B")])(client)
        )

    run(both, fake.async_client())
    by_goal: dict[str, list[int]] = {}
    for r in fake.requests:
        by_goal.setdefault(r.body["messages"][0]["content"], []).append(r.status)
    assert by_goal == {"goal A": [429, 200], "goal B": [429, 200]}


def test_a_failing_scenario_function_is_a_500_that_is_not_retried() -> None:
    def broken(body: dict[str, Any], turn: int) -> Turn:
        raise RuntimeError("script bug")

    fake = FakeMessagesAPI(broken)
    with pytest.raises(anthropic.InternalServerError, match="script bug"):
        run(stream_turn([user("hi")]), fake.async_client())
    assert len(fake.requests) == 1


# -- strictness --------------------------------------------------------------------------

VALID: dict[str, Any] = {"model": MODEL, "max_tokens": 64, "messages": [user("hi")]}
EMPTY_TEXT = {"role": "user", "content": [{"type": "text", "text": ""}]}
TEXT_THEN_RESULT = {
    "role": "user",
    "content": [
        {"type": "text", "text": "here you go"},
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"},
    ],
}
MARKED = [
    {"type": "text", "text": f"part {n}", "cache_control": {"type": "ephemeral"}} for n in range(4)
]
RULES = [
    ("missing model", {"model": None}, "model: Field required"),
    ("missing max_tokens", {"max_tokens": None}, "max_tokens: Field required"),
    ("empty messages", {"messages": []}, "at least one message"),
    (
        "assistant first",
        {"messages": [{"role": "assistant", "content": "hi"}, user("x")]},
        "first message must use the `user` role",
    ),
    ("not alternating", {"messages": [user("a"), user("b")]}, "roles must alternate"),
    (
        "tool_use without tool_result",
        {"messages": [user("a"), tool_exchange("toolu_1")[0], user("no result")]},
        "`tool_use` ids were found without `tool_result` blocks immediately after: toolu_1",
    ),
    (
        "tool_result after text",
        {"messages": [user("a"), tool_exchange("toolu_1")[0], TEXT_THEN_RESULT]},
        "`tool_result` blocks must come first",
    ),
    (
        "tool_result without tool_use",
        {
            "messages": [
                user("a"),
                {"role": "assistant", "content": "hm"},
                tool_exchange("toolu_7")[1],
            ]
        },
        "unexpected `tool_use_id` found in `tool_result` blocks: toolu_7",
    ),
    ("empty text block", {"messages": [EMPTY_TEXT]}, "text content blocks must be non-empty"),
    ("empty content", {"messages": [user("")]}, "must have non-empty content"),
    (
        "bad tool name",
        {"tools": [{**BASH, "name": "run tests"}]},
        "tools.0.name: String should match",
    ),
    (
        "schema not an object",
        {"tools": [{**BASH, "input_schema": {"type": "array"}}]},
        "input_schema.type: Input should be 'object'",
    ),
    ("duplicate tools", {"tools": [BASH, BASH]}, "Tool names must be unique"),
    (
        "five breakpoints",
        {"system": MARKED, "cache_control": {"type": "ephemeral"}},
        "A maximum of 4 blocks with cache_control may be provided. Found 5",
    ),
]


@pytest.mark.parametrize(("change", "expected"), [r[1:] for r in RULES], ids=[r[0] for r in RULES])
def test_requests_the_real_api_rejects_get_400_saying_what_is_wrong(
    change: dict[str, Any], expected: str
) -> None:
    fake = FakeMessagesAPI(TWO_TURNS)
    body = {key: value for key, value in {**VALID, **change}.items() if value is not None}
    with pytest.raises(anthropic.BadRequestError) as caught:
        run(post(body), fake.async_client())
    assert caught.value.type == "invalid_request_error"
    assert expected in (caught.value.api_message or "")
    assert [r.status for r in fake.requests] == [400]


def test_a_valid_tool_conversation_is_accepted() -> None:
    fake = FakeMessagesAPI(TWO_TURNS)
    body = {**VALID, "tools": [BASH], "messages": [user("a"), *tool_exchange("toolu_1")]}
    assert run(post(body), fake.async_client())["content"][0]["text"] == "Second turn."


# -- usage and prompt caching ------------------------------------------------------------


def test_growing_conversation_with_top_level_cache_control_is_mostly_cache_reads() -> None:
    command = {"bash": {"command": "python3 -m unittest discover -s tests -q"}}
    fake = FakeMessagesAPI({"turns": [{"text": "Next step.", "tools": [command]}] * 12})
    system = "You are a careful engineer. " * 40

    async def conversation(client: AsyncAnthropic) -> list[Any]:
        messages: list[Any] = [user("Fix the failing cart tests.")]
        usages = []
        for _ in range(10):
            async with client.beta.messages.stream(
                model=MODEL,
                max_tokens=1024,
                system=system,
                messages=messages,
                tools=TOOLS,
                cache_control={"type": "ephemeral"},
            ) as stream:
                message = await stream.get_final_message()
            usages.append(message.usage)
            call = message.content[1]
            assert isinstance(call, BetaToolUseBlock)
            messages.append(
                {"role": "assistant", "content": [b.to_dict() for b in message.content]}
            )
            result = {"type": "tool_result", "tool_use_id": call.id, "content": "F\n" * 30}
            messages.append({"role": "user", "content": [result]})
        return usages

    usages = run(conversation, fake.async_client())
    first, last = usages[0], usages[-1]
    assert first.cache_read_input_tokens == 0 and first.cache_creation_input_tokens > 0
    total = last.input_tokens + last.cache_creation_input_tokens + last.cache_read_input_tokens
    assert last.cache_read_input_tokens / total > 0.8
    assert all(
        u.cache_creation_input_tokens < first.cache_creation_input_tokens for u in usages[1:]
    )


def test_without_cache_control_everything_is_input_tokens() -> None:
    fake = FakeMessagesAPI(TWO_TURNS)
    for _ in range(2):
        message, _ = run(stream_turn([user("hi")], tools=[BASH]), fake.async_client())
    assert message.usage.cache_read_input_tokens == 0
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.input_tokens > 20


# -- over loopback -----------------------------------------------------------------------


def test_fake_server_streams_over_loopback_and_checks_the_key() -> None:
    fake = FakeMessagesAPI(TWO_TURNS, api_key="sk-loop")
    with FakeServer(fake) as server:
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.url)
        client = AsyncAnthropic(api_key="sk-loop", base_url=server.url)
        message, events = run(stream_turn([user("hi")], tools=[BASH]), client)
        with pytest.raises(anthropic.AuthenticationError):
            run(stream_turn([user("hi")]), AsyncAnthropic(api_key="nope", base_url=server.url))
    assert message.content[1].input == {"command": "pytest -q", "timeout_ms": 5000}
    assert "input_json" in events
    assert [r.status for r in fake.requests] == [200, 401]


def test_module_runs_as_a_program_that_prints_its_url_and_serves() -> None:
    env = {**os.environ, "PYTHONPATH": str(PACKAGE_ROOT)}
    command = [sys.executable, "-m", "jupyter_delegate.testing.fake_anthropic"]
    proc = subprocess.Popen(
        [*command, "--scenario", "demo", "--port", "0", "--latency-ms", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().rstrip("\n")
        match = re.fullmatch(r"listening on (http://127\.0\.0\.1:(\d+))", line)
        assert match, line
        client = AsyncAnthropic(api_key="any", base_url=match.group(1))
        message, _ = run(stream_turn([user("Fix the discount")]), client)
        assert message.content[0].text == "I'll start by running the tests to see what fails."
    finally:
        proc.terminate()
        _, stderr = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert "Warning" not in stderr


# -- scenarios ---------------------------------------------------------------------------


def test_bad_scenario_file_raises_scenario_error_naming_file_and_turn(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "name: bad\nturns:\n  - text: fine\n"
        "  - tools: [{bash: {command: ls}, read: {file_path: a}}]\n"
    )
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert str(path) in message and "turn 2" in message and "single-key mapping" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("turns: []\n", "`turns` must be a non-empty list"),
        ("turns:\n  - {text: hi, tool: {}}\n", "turn 1: unknown key(s) ['tool']"),
        ("turns:\n  - {text: hi, faults: [{status: 200}]}\n", "turn 1: fault status 200"),
        ("turns:\n  - {stop_reason: done, text: x}\n", "turn 1: `stop_reason` 'done'"),
        ("turns:\n  - {}\n", "turn 1: a turn needs `text`, `tools` or both"),
        ("turns: [\n", "not valid YAML"),
    ],
)
def test_scenario_mistakes_are_named(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=re.escape(expected)):
        load_scenario(path)


def test_unknown_bundled_name_lists_the_bundled_scenarios() -> None:
    with pytest.raises(ScenarioError, match=r"\(bundled: (.+, )?demo(, .+)?\)$") as raised:
        load_scenario("no-such-scenario")
    assert "checks-gamed" in str(raised.value) and "review-rounds" in str(raised.value)


def test_demo_scenario_edit_fixes_the_demo_repo(tmp_path: Path) -> None:
    scenario = load_scenario("demo")
    calls = [call for turn in scenario.turns for call in turn.tools]
    # the fix, then a second round (tutorial 01's line comment): a range check
    names = ["bash", "read", "edit", "bash", "finish", "edit", "bash", "finish"]
    assert [c.name for c in calls] == names
    assert calls[0].input["command"] == CHECK == calls[3].input["command"]
    assert calls[6].input["command"] == CHECK
    assert calls[4].input["summary"].count(". ") >= 1

    repo = make_demo_repo(tmp_path / "shop")
    assert _check(repo) != 0
    for at in (2, 5):  # each round's edit applies once, to the code the round before left
        edit = calls[at].input
        cart = repo / edit["file_path"]
        source = cart.read_text()
        assert source.count(edit["old_string"]) == 1
        cart.write_text(source.replace(edit["old_string"], edit["new_string"]))
        assert _check(repo) == 0
    probe = "from shop.cart import apply_discount; apply_discount(100, 150)"
    refused = subprocess.run(["python3", "-c", probe], cwd=repo, capture_output=True, text=True)
    assert "ValueError: percent must be between 0 and 100, not 150" in refused.stderr


def _check(repo: Path) -> int:
    return subprocess.run(CHECK.split(), cwd=repo, capture_output=True).returncode


# -- strict tools --------------------------------------------------------------------------


def strict_tool(schema: dict[str, Any], name: str = "record") -> dict[str, Any]:
    return {"name": name, "description": "Record it.", "strict": True, "input_schema": schema}


def closed(properties: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An object schema strict mode accepts: every property required unless told."""
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties) if required is None else required,
        "additionalProperties": False,
    }


TEXT = {"type": "string"}
NESTED_OPEN = closed({"item": {"type": "object", "properties": {"a": TEXT}}})
RECURSIVE = {
    **closed({"node": {"$ref": "#/$defs/node"}}),
    "$defs": {"node": closed({"child": {"$ref": "#/$defs/node"}})},
}
STRICT_RULES = [
    (
        "object without additionalProperties",
        {"type": "object", "properties": {"a": TEXT}},
        "tools.0.custom: For 'object' type, 'additionalProperties' must be explicitly set "
        "to false (at input_schema)",
    ),
    (
        "nested object left open",
        NESTED_OPEN,
        "must be explicitly set to false (at input_schema.properties.item)",
    ),
    (
        "additionalProperties true",
        {**closed({"a": TEXT}), "additionalProperties": True},
        "'additionalProperties' must be explicitly set to false",
    ),
    (
        "numeric bound",
        closed({"n": {"type": "integer", "minimum": 1}}),
        "`minimum` is not supported for strict tools (supported: ",
    ),
    ("string length", closed({"s": {"type": "string", "maxLength": 5}}), "`maxLength` is not"),
    ("oneOf", closed({"s": {"oneOf": [TEXT, {"type": "null"}]}}), "`oneOf` is not supported"),
    ("default", closed({"s": {**TEXT, "default": "x"}}), "`default` is not supported"),
    (
        "minItems 2",
        closed({"l": {"type": "array", "items": TEXT, "minItems": 2}}),
        "`minItems` may only be 0 or 1",
    ),
    (
        "enum of objects",
        closed({"e": {"enum": [{"a": 1}]}}),
        "`enum` values must be strings, numbers, booleans or null",
    ),
    (
        "unsupported format",
        closed({"s": {"type": "string", "format": "regex"}}),
        "format 'regex' is not supported",
    ),
    (
        "remote $ref",
        closed({"s": {"$ref": "https://example.com/schema.json"}}),
        "$ref 'https://example.com/schema.json' is not supported",
    ),
    ("recursive $ref", RECURSIVE, "recursive schemas are not supported (#/$defs/node -> "),
    (
        "required names a missing property",
        closed({"a": TEXT}, required=["a", "b"]),
        "`required` names 'b', which is not in `properties`",
    ),
]


@pytest.mark.parametrize(
    ("schema", "expected"), [r[1:] for r in STRICT_RULES], ids=[r[0] for r in STRICT_RULES]
)
def test_a_strict_tool_whose_schema_strict_mode_cannot_compile_gets_400(
    schema: dict[str, Any], expected: str
) -> None:
    fake = FakeMessagesAPI(TWO_TURNS)
    with pytest.raises(anthropic.BadRequestError) as caught:
        run(post({**VALID, "tools": [strict_tool(schema)]}), fake.async_client())
    assert caught.value.type == "invalid_request_error"
    assert expected in (caught.value.api_message or "")
    # without `strict` the same schema is an ordinary tool's, and accepted
    assert run(
        post({**VALID, "tools": [{**strict_tool(schema), "strict": False}]}), fake.async_client()
    )


def test_strict_mode_limits_count_across_every_strict_tool_of_the_request() -> None:
    fake = FakeMessagesAPI(TWO_TURNS)
    one_optional = closed({"a": TEXT, "b": TEXT}, required=["a"])
    union = closed({"u": {"anyOf": [TEXT, {"type": "null"}]}})
    cases = [
        ([strict_tool(closed({}), f"t{n}") for n in range(21)], "Too many strict tools (21)"),
        (
            [strict_tool(one_optional, f"t{n}") for n in range(13)]
            + [strict_tool(closed({f"p{n}": TEXT for n in range(12)}, required=[]), "wide")],
            "Schemas contains too many optional parameters (25)",
        ),
        (
            [strict_tool(union, f"t{n}") for n in range(17)],
            "too many parameters with union types (17)",
        ),
        ([{**strict_tool(closed({})), "strict": "yes"}], "strict: Input should be a valid boolean"),
    ]
    for tools, expected in cases:
        with pytest.raises(anthropic.BadRequestError, match=re.escape(expected)):
            run(post({**VALID, "tools": tools}), fake.async_client())
    # up to the limits, and with optional properties, $defs and unions, it is accepted
    within = [strict_tool(one_optional, f"t{n}") for n in range(12)]
    within += [strict_tool(union, f"u{n}") for n in range(8)]
    defs = {
        **closed({"item": {"$ref": "#/$defs/item"}, "kind": {"enum": ["a", "b", None]}}),
        "$defs": {"item": closed({"n": {"type": ["integer", "null"]}})},
    }
    body = {**VALID, "tools": [*within[:19], strict_tool(defs, "defs")]}
    assert run(post(body), fake.async_client())["content"][0]["text"] == TOOL_TURN["text"]


def test_the_planners_strict_propose_plan_tool_is_accepted_through_the_sdk() -> None:
    fake = FakeMessagesAPI({"turns": [{"text": "Looking first."}]})
    message, _ = run(stream_turn([user("Plan it")], tools=[PROPOSE_PLAN_TOOL]), fake.async_client())
    assert message.content[0].text == "Looking first."
    assert fake.requests[0].body["tools"][0]["strict"] is True
    # and the model list says strict tools (structured outputs) are served
    listed = fake.reply("GET", "/v1/models", {"anthropic-version": "2023-06-01"}, b"")
    assert '"structured_outputs": {"supported": true}' in listed.body.decode()


GOOD_PLAN: dict[str, Any] = {
    "title": "Receipts",
    "summary": "Two steps.",
    "subtasks": [
        {
            "name": "line",
            "goal": "Add format_line.",
            "checks": ["python3 -m unittest -q tests/test_receipt.py"],
            "scope": ["shop/receipt.py"],
            "budget_usd": 0.5,
            "depends_on": [],
        }
    ],
}
BAD_SUBTASK = {
    "name": "line",
    "goal": "Add format_line.",
    "checks": "python3 -m unittest",
    "scope": ["shop/receipt.py"],
    "budget": 1,
}


def test_a_scripted_call_to_a_strict_tool_that_breaks_its_schema_is_refused_naming_the_turn(
    tmp_path: Path,
) -> None:
    path = tmp_path / "planner.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "planner",
                "turns": [
                    {"text": "Looking.", "tools": [{"glob": {"pattern": "**/*.py"}}]},
                    {"tools": [{"propose_plan": {**GOOD_PLAN, "subtasks": [BAD_SUBTASK]}}]},
                ],
            }
        )
    )
    fake = FakeMessagesAPI(path)
    history = [user("Plan it"), *tool_exchange("toolu_1")]
    with pytest.raises(anthropic.InternalServerError) as caught:
        run(stream_turn(history, tools=[BASH, PROPOSE_PLAN_TOOL]), fake.async_client())
    message = caught.value.api_message or ""
    assert "ScenarioError" in message and f"{path}, turn 2: tool entry 1" in message
    assert "the strict tool `propose_plan`" in message
    for problem in (
        "subtasks.0: missing required property 'budget_usd'",
        "subtasks.0: missing required property 'depends_on'",
        "subtasks.0: unexpected property 'budget'",
        'subtasks.0.checks: expected an array, got a string ("python3 -m unittest")',
    ):
        assert problem in message
    assert [r.status for r in fake.requests] == [500]  # not retried: it is the scenario's bug

    # the same call to a tool without `strict` is played as scripted: no guarantee there
    loose = {**PROPOSE_PLAN_TOOL, "strict": False}
    message_, _ = run(stream_turn(history, tools=[BASH, loose]), fake.async_client())
    assert message_.content[0].input["subtasks"] == [BAD_SUBTASK]


def test_a_scripted_call_that_matches_the_strict_schema_is_played() -> None:
    fake = FakeMessagesAPI({"turns": [{"tools": [{"propose_plan": GOOD_PLAN}]}]})
    message, _ = run(stream_turn([user("Plan it")], tools=[PROPOSE_PLAN_TOOL]), fake.async_client())
    assert message.content[0].name == "propose_plan" and message.content[0].input == GOOD_PLAN


AGREEMENT_SCHEMA = {
    **closed(
        {
            "n": {"type": "integer"},
            "x": {"type": ["number", "null"]},
            "flag": {"const": True},
            "kind": {"enum": ["a", 1, None]},
            "tags": {"type": "array", "items": TEXT, "minItems": 1},
            "item": {"$ref": "#/$defs/item"},
            "either": {"anyOf": [TEXT, closed({"k": TEXT})]},
            "both": {"allOf": [{"type": "string"}, {"enum": ["p", "q"]}]},
        },
        required=["n", "flag"],
    ),
    "$defs": {"item": closed({"id": {"type": "integer"}})},
}
AGREEMENT_CASES: list[tuple[dict[str, Any], Any]] = [
    (AGREEMENT_SCHEMA, {"n": 1, "flag": True}),
    (AGREEMENT_SCHEMA, {"n": 1.0, "flag": True, "x": None, "kind": None}),
    (AGREEMENT_SCHEMA, {"n": 1.5, "flag": True}),
    (AGREEMENT_SCHEMA, {"n": True, "flag": True}),
    (AGREEMENT_SCHEMA, {"n": 1, "flag": 1}),
    (AGREEMENT_SCHEMA, {"n": 1, "flag": True, "kind": 1.0}),
    (AGREEMENT_SCHEMA, {"n": 1, "flag": True, "kind": True}),
    (AGREEMENT_SCHEMA, {"n": 1, "flag": True, "tags": []}),
    (AGREEMENT_SCHEMA, {"n": 1, "flag": True, "tags": ["a", 2]}),
    (AGREEMENT_SCHEMA, {"n": 1, "flag": True, "item": {"id": 3}}),
    (AGREEMENT_SCHEMA, {"n": 1, "flag": True, "item": {"id": "3"}}),
    (AGREEMENT_SCHEMA, {"n": 1, "flag": True, "item": {"id": 3, "more": 1}}),
    (AGREEMENT_SCHEMA, {"n": 1, "flag": True, "either": {"k": "v"}}),
    (AGREEMENT_SCHEMA, {"n": 1, "flag": True, "either": {"k": 1}}),
    (AGREEMENT_SCHEMA, {"n": 1, "flag": True, "both": "p"}),
    (AGREEMENT_SCHEMA, {"n": 1, "flag": True, "both": "r"}),
    (AGREEMENT_SCHEMA, {"flag": True}),
    (AGREEMENT_SCHEMA, {"n": 1, "flag": True, "extra": 0}),
    (AGREEMENT_SCHEMA, []),
    (PROPOSE_PLAN_TOOL["input_schema"], GOOD_PLAN),
    (PROPOSE_PLAN_TOOL["input_schema"], {**GOOD_PLAN, "subtasks": [BAD_SUBTASK]}),
    (PROPOSE_PLAN_TOOL["input_schema"], {**GOOD_PLAN, "subtasks": []}),
    (PROPOSE_PLAN_TOOL["input_schema"], {"title": "t", "subtasks": []}),
]


@pytest.mark.parametrize(("schema", "value"), AGREEMENT_CASES)
def test_the_strict_input_checker_agrees_with_jsonschema(
    schema: dict[str, Any], value: Any
) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    check_strict_tools([strict_tool(schema)])  # a schema strict mode accepts
    valid = jsonschema.Draft202012Validator(schema).is_valid(value)
    problems = input_mismatch(schema, value)
    assert (not problems) == valid, problems


# -- conversations: several agents on one fake -----------------------------------------------


def agent_turns(who: str, count: int = 3) -> list[dict[str, Any]]:
    steps = [{"text": f"{who} step {n}", "tools": [{"bash": {"command": "true"}}]} for n in (1, 2)]
    return [*steps, {"text": f"{who} done"}][:count]


CONVERSATIONS: dict[str, Any] = {
    "name": "two agents",
    "latency_ms": 20,
    "conversations": [
        {"name": "receipts", "match": "Add receipts", "turns": agent_turns("receipts")},
        {"match": "Fix the discount", "turns": agent_turns("discount")},
    ],
}


def converse(goal: str) -> Callable[[AsyncAnthropic], Awaitable[list[str]]]:
    """An agent loop: the model's texts, answering every tool call with `ok`."""

    async def go(client: AsyncAnthropic) -> list[str]:
        messages: list[Any] = [user(goal)]
        said = []
        for _ in range(5):
            message, _ = await stream_turn(messages, tools=[BASH])(client)
            said.append(message.content[0].text)
            calls = [b for b in message.content if b.type == "tool_use"]
            if not calls:
                return said
            messages.append(
                {"role": "assistant", "content": [b.to_dict() for b in message.content]}
            )
            results = [{"type": "tool_result", "tool_use_id": c.id, "content": "ok"} for c in calls]
            messages.append({"role": "user", "content": results})
        return said

    return go


def test_two_conversations_are_answered_concurrently_each_from_its_own_turns() -> None:
    fake = FakeMessagesAPI(CONVERSATIONS)

    async def both(client: AsyncAnthropic) -> Any:
        return await asyncio.gather(
            converse("Please reach this outcome:\n\nAdd receipts to the shop.")(client),
            converse("Please reach this outcome:\n\nFix the discount in cart.py.")(client),
        )

    receipts, discount = run(both, fake.async_client())
    assert receipts == ["receipts step 1", "receipts step 2", "receipts done"]
    assert discount == ["discount step 1", "discount step 2", "discount done"]
    goals = [r.body["messages"][0]["content"].split("\n\n")[1][:3] for r in fake.requests]
    assert sorted(goals[:2]) == ["Add", "Fix"]  # both started before either was answered
    turns = {
        goal: [r.turn for r, g in zip(fake.requests, goals, strict=True) if g == goal]
        for goal in goals
    }
    assert turns == {"Add": [0, 1, 2], "Fix": [0, 1, 2]}


def test_a_request_no_conversation_matches_is_refused_quoting_its_goal() -> None:
    fake = FakeMessagesAPI(CONVERSATIONS)
    goal = "Please reach this outcome:\n\nRewrite everything in Rust, starting with the cart."
    with pytest.raises(anthropic.InternalServerError) as caught:
        run(stream_turn([user(goal)], tools=[BASH]), fake.async_client())
    message = caught.value.api_message or ""
    assert "ScenarioError: <dict>: no conversation matches this request" in message
    assert "starts 'Please reach this outcome: Rewrite everything in Rust" in message
    assert "the conversations match 'Add receipts', 'Fix the discount'" in message
    assert len(fake.requests) == 1  # not retried

    # with top-level turns, those answer what no conversation matches
    fallback = FakeMessagesAPI({**CONVERSATIONS, "turns": [{"text": "The default agent."}]})
    message_, _ = run(stream_turn([user(goal)]), fallback.async_client())
    assert message_.content[0].text == "The default agent."


def test_a_strict_mismatch_in_a_conversation_names_the_conversation_and_its_turn() -> None:
    scenario = {
        "conversations": [
            {"name": "planner", "match": "Plan", "turns": [{"tools": [{"propose_plan": {}}]}]}
        ]
    }
    fake = FakeMessagesAPI(scenario)
    with pytest.raises(anthropic.InternalServerError) as caught:
        run(stream_turn([user("Plan it")], tools=[PROPOSE_PLAN_TOOL]), fake.async_client())
    assert "<dict>, conversation 'planner', turn 1: tool entry 1" in (
        caught.value.api_message or ""
    )
    assert "(the input): missing required property 'title'" in (caught.value.api_message or "")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name: x\n", "a scenario needs `turns` (a non-empty list), `conversations`, or both"),
        ("conversations: {match: a}\n", "`conversations` must be a non-empty list"),
        ("conversations: [{turns: [{text: hi}]}]\n", "conversation 1: `match` must be a non-empty"),
        ("conversations: [{match: a}]\n", "conversation 1: `turns` is required"),
        ("conversations: [{match: a, turns: []}]\n", "conversation 1: `turns` must be a non-empty"),
        (
            "conversations: [{match: a, turns: [{text: hi}], goal: x}]\n",
            "conversation 1: unknown key(s) ['goal']",
        ),
        (
            "conversations:\n  - {name: p, match: a, turns: [{text: hi}]}\n"
            "  - {name: p, match: b, turns: [{text: hi}]}\n",
            "conversation 'p': the name 'p' is used twice",
        ),
        (
            "conversations:\n  - {name: short, match: Add, turns: [{text: hi}]}\n"
            "  - {match: Add receipts, turns: [{text: hi}]}\n",
            "conversation 2: its match 'Add receipts' can never be chosen: conversation "
            "'short''s match 'Add' comes first and occurs in it",
        ),
        (
            "conversations: [{name: w, match: a, turns: [{text: hi}, {tools: [{x: 1}]}]}]\n",
            "conversation 'w', turn 2: tool entry 1 (x): the input must be a mapping",
        ),
    ],
)
def test_conversation_mistakes_are_named(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=re.escape(expected)):
        load_scenario(path)
