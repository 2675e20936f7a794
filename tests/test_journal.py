"""The journal: hash chain, fsync'd appends, verify naming the bad line, replay, redaction."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from jupyter_delegate.journal import REDACTED, Journal, redact, replay_messages


def _journal(tmp_path: Path, n: int = 5) -> Journal:
    journal = Journal(tmp_path / "j.jsonl")
    for i in range(n):
        journal.append("notice", {"text": f"event {i}"})
    return journal


def test_chain_links_and_reopens_at_its_head(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    lines = [json.loads(x) for x in journal.path.read_text().splitlines()]
    assert [x["seq"] for x in lines] == [1, 2, 3, 4, 5]
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(lines))
    again = Journal(journal.path)
    assert again.head == journal.head
    again.append("notice", {"text": "more"})
    assert again.verify().ok and again.verify().events == 6


def test_tampered_line_is_named(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    lines = journal.path.read_text().splitlines()
    lines[2] = lines[2].replace("event 2", "event X")
    journal.path.write_text("\n".join(lines) + "\n")
    result = Journal.__new__(Journal)
    result.path = journal.path
    verdict = result.verify()
    assert not verdict.ok and verdict.line == 3 and "hash" in verdict.problem


def test_reordered_and_deleted_lines_are_named(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    lines = journal.path.read_text().splitlines()
    journal.path.write_text("\n".join([lines[0], lines[2], lines[1], *lines[3:]]) + "\n")
    assert Journal.verify(journal).line == 2
    journal.path.write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    verdict = Journal.verify(journal)
    assert verdict.line == 2 and "seq" in verdict.problem


def test_garbage_line_is_named(tmp_path: Path) -> None:
    journal = _journal(tmp_path)
    with journal.path.open("a") as handle:
        handle.write("not json\n")
    verdict = journal.verify()
    assert verdict.line == 6 and verdict.problem == "not a journal event"


def test_secrets_never_reach_the_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-api03-verysecretvalue123")
    monkeypatch.setenv("MY_SERVICE_TOKEN", "tok-1234567890")
    journal = Journal(tmp_path / "j.jsonl")
    journal.append(
        "tool_result",
        {"content": "key sk-ant-api03-verysecretvalue123 tok-1234567890 AKIAABCDEFGHIJKLMNOP"},
    )
    text = journal.path.read_text()
    assert "verysecret" not in text and "tok-1234567890" not in text and "AKIA" not in text
    assert text.count(REDACTED) == 3
    assert redact(["ghp_" + "a" * 36]) == [REDACTED]


def test_replay_rebuilds_messages_and_settles_interrupted_calls(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    journal.append("user", {"content": [{"type": "text", "text": "goal"}]})
    tool = {"type": "tool_use", "id": "t1", "name": "bash", "input": {"command": "ls"}}
    journal.append("assistant", {"content": [tool]})
    journal.append("tool_result", {"tool_use_id": "t1", "name": "bash", "content": "a"})
    tool2 = {**tool, "id": "t2"}
    journal.append("assistant", {"content": [tool2]})  # the kernel died during t2
    messages = replay_messages(list(journal.events()))
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[2]["content"][0]["content"] == "a"
    settled = messages[4]["content"][0]
    assert settled["tool_use_id"] == "t2" and settled["is_error"]
    assert "interrupted" in settled["content"]


def test_high_entropy_secret_assignments_are_redacted_and_ordinary_text_is_not() -> None:
    text = (
        "DB_PASSWORD = 'q8Zr1xT0pLw9VbN3'\n"
        'api_key: "9f8e7d6c5b4a39281716aZ"\n'
        "token_count = aaaaaaaaaaaaaaaaaaaa\n"
        "password_hint = see the wiki\n"
    )
    out = redact(text)
    assert "q8Zr1xT0pLw9VbN3" not in out and "9f8e7d6c5b4a39281716aZ" not in out
    assert "DB_PASSWORD = '[REDACTED]" in out
    assert "token_count = aaaaaaaaaaaaaaaaaaaa" in out  # low entropy: not a secret
    assert "password_hint = see the wiki" in out
