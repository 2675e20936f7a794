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
from anthropic import AsyncAnthropic
from anthropic.types.beta import BetaToolUseBlock

import jupyter_delegate
from jupyter_delegate.testing import (
    FakeMessagesAPI,
    FakeServer,
    ScenarioError,
    ToolCall,
    Turn,
    load_scenario,
)
from jupyter_delegate.testing.demo_repo import CHECK, make_demo_repo

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
    with pytest.raises(ScenarioError, match="bundled: demo"):
        load_scenario("no-such-scenario")


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
