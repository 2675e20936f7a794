"""The journal: hash chain, synced appends (at once or in the background), verify naming
the bad line, replay, redaction."""

from __future__ import annotations

import errno
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from jupyter_delegate.errors import JournalError
from jupyter_delegate.journal import (
    GENESIS,
    REDACTED,
    Journal,
    canonical,
    chain_hash,
    redact,
    replay_messages,
)


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


def _reference_redact(value: object, secrets: list[str]) -> object:
    """The redaction as first written (every pattern on every string): the fast path in
    journal.py must give the same text."""
    from jupyter_delegate.journal import _ASSIGNED_SECRET, _SECRET_PATTERNS, _redact_assignment

    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        for pattern in _SECRET_PATTERNS:
            value = pattern.sub(REDACTED, value)
        return _ASSIGNED_SECRET.sub(_redact_assignment, value)
    if isinstance(value, dict):
        return {k: _reference_redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_reference_redact(v, secrets) for v in value]
    return value


@pytest.mark.parametrize(
    "text",
    [
        "",
        "short",
        "xoxb-0123456789",  # the shortest text a pattern matches
        "xoxb-012345678",
        "key sk-ant-api03-verysecretvalue123 and AKIAABCDEFGHIJKLMNOP, ASIA0123456789ABCDEF",
        "through the high ghp_" + "a" * 36 + " and gho_" + "b" * 30,
        "github_pat_" + "c" * 40,
        "-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----",
        "API_KEY=q8Zr1xT0pLw9VbN3xx and Token: 'Zq9r8T7p6L5w4V3b'",
        "pa\u017f\u017fword = q8Zr1xT0pLw9VbN3xx",  # long s matches s under (?i)
        "api_\u212aey=q8Zr1xT0pLw9VbN3xx",  # Kelvin sign matches k under (?i)
        "monkey = aaaaaaaaaaaaaaaaaaaa",  # low entropy: kept
        "the tok-1234567890 in a sentence",
        "[REDACTED] sk-ant-[REDACTED]xxxxxxxxxx",
    ],
)
def test_redaction_skips_only_what_cannot_match(text: str) -> None:
    secrets = ["tok-1234567890"]
    assert redact(text, secrets) == _reference_redact(text, secrets)
    nested = {"a": [text, {"b": (text, 3, 1.5, None, True)}], "n": 7}
    assert redact(nested, secrets) == _reference_redact(nested, secrets)


def test_lines_are_the_canonical_form_of_their_event(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "j.jsonl")
    odd = {
        "text": 'quotes " and \\ and \n and \u00e9\u65e5\u672c \U0001f600',
        "numbers": [0, -1, 2**70, 1.5, 1e-7, 1e22, True, None],
        "nested": {"z": 1, "a": {"y": [], "b": {}}},
    }
    journal.append("tool_result", odd)
    journal.append('type "quoted" \u00e9', {"k": "v"})
    prev = GENESIS
    for line in journal.path.read_text(encoding="utf-8").splitlines():
        raw = json.loads(line)
        body = {k: raw[k] for k in ("seq", "ts", "type", "data", "prev")}
        assert raw["prev"] == prev
        assert raw["hash"] == chain_hash(prev, body)
        assert line == canonical({**body, "hash": raw["hash"]})
        prev = raw["hash"]
    assert journal.verify().ok


def test_append_many_keeps_the_chain_with_one_write_and_one_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = _journal(tmp_path, 2)
    calls: list[str] = []
    real_write, real_sync = os.write, os.fdatasync
    monkeypatch.setattr(os, "write", lambda fd, b: calls.append("write") or real_write(fd, b))
    monkeypatch.setattr(os, "fdatasync", lambda fd: calls.append("sync") or real_sync(fd))
    events = journal.append_many(
        [("task", {"n": 1}), ("state", {"state": "queued"}), ("user", {"content": []})]
    )
    assert calls == ["write", "sync"]
    assert journal.append_many([]) == [] and calls == ["write", "sync"]
    assert [e.seq for e in events] == [3, 4, 5] and [e.type for e in events] == [
        "task",
        "state",
        "user",
    ]
    lines = [json.loads(x) for x in journal.path.read_text().splitlines()]
    assert [x["hash"] for x in lines[2:]] == [e.hash for e in events]
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(lines))
    assert journal.head == events[-1].hash
    journal.append("notice", {"text": "after the batch"})
    again = Journal(journal.path)
    assert again.verify().ok and again.verify().events == 6 and again.head == journal.head


def test_a_crash_mid_batch_leaves_a_journal_verify_reads(tmp_path: Path) -> None:
    journal = _journal(tmp_path, 1)
    before = journal.path.stat().st_size
    journal.append_many([("notice", {"text": f"batched {i}"}) for i in range(3)])
    whole = journal.path.read_bytes()
    first_end = whole.index(b"\n", before) + 1
    # The disk kept the batch's first line and part of its second.
    journal.path.write_bytes(whole[: first_end + 40])
    verdict = Journal.verify(journal)
    assert not verdict.ok and verdict.line == 3 and verdict.events == 2
    assert verdict.problem == "not a journal event"
    with pytest.raises(JournalError, match="line 3"):
        list(journal.events())
    # Cut at a line's end, the journal is whole up to there.
    journal.path.write_bytes(whole[:first_end])
    assert Journal(journal.path).verify().ok and Journal(journal.path).verify().events == 2


def _until(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_an_unsynced_append_is_written_at_once_and_synced_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = _journal(tmp_path, 1)
    syncs: list[str] = []
    real_sync = os.fdatasync
    gate = threading.Event()

    def sync(fd: int) -> None:
        if threading.current_thread().name == "jupyter-delegate-journal-sync":
            gate.wait(10)  # hold the background sync until the test has looked
        syncs.append(threading.current_thread().name)
        real_sync(fd)

    monkeypatch.setattr(os, "fdatasync", sync)
    journal.append("assistant", {"content": []}, sync=False)
    # Written: another reader (the CLI, a restarted kernel) sees it before any sync.
    assert [e.type for e in Journal(journal.path).events()] == ["notice", "assistant"]
    assert journal.unsynced and syncs == []
    journal.append("tool_result", {"content": "ok"}, sync=False)  # appends go on meanwhile
    gate.set()
    assert _until(lambda: not journal.unsynced)
    assert set(syncs) == {"jupyter-delegate-journal-sync"}
    journal.append("state", {"state": "review"})  # synced here, before it returns
    assert syncs[-1] == threading.current_thread().name and not journal.unsynced
    assert Journal(journal.path).verify().ok and Journal(journal.path).verify().events == 4


def test_close_syncs_what_the_background_has_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_delegate import journal as journal_module

    journal = _journal(tmp_path, 1)
    monkeypatch.setattr(journal_module._background, "request", lambda journal: None)
    journal.append("notice", {"text": "left for the background"}, sync=False)
    assert journal.unsynced
    syncs: list[int] = []
    real_sync = os.fdatasync
    monkeypatch.setattr(os, "fdatasync", lambda fd: syncs.append(fd) or real_sync(fd))
    journal.close()
    assert len(syncs) == 1 and not journal.unsynced


def test_a_failed_background_sync_is_told_at_the_next_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    journal = _journal(tmp_path, 1)
    real_sync = os.fdatasync

    def failing(fd: int) -> None:
        if threading.current_thread().name == "jupyter-delegate-journal-sync":
            raise OSError(errno.EIO, "Input/output error")
        real_sync(fd)

    monkeypatch.setattr(os, "fdatasync", failing)
    journal.append("assistant", {"content": []}, sync=False)
    assert _until(lambda: journal._sync_failed is not None)
    with pytest.raises(JournalError, match="disk failed to keep lines already written"):
        journal.append("tool_result", {"content": "ok"})
    # Told once; the journal itself is whole and takes the next event.
    journal.append("state", {"state": "failed"})
    assert Journal(journal.path).verify().ok and Journal(journal.path).verify().events == 3


def test_a_new_journal_syncs_its_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync
    monkeypatch.setattr(
        os, "fsync", lambda fd: synced.append(os.readlink(f"/proc/self/fd/{fd}")) or real_fsync(fd)
    )
    journal = Journal(tmp_path / "task" / "journal.jsonl")
    journal.append("notice", {"text": "first"})
    journal.append("notice", {"text": "second"})
    assert synced == [str(tmp_path / "task")]  # once, when the file was made
    journal.close()
    Journal(journal.path).append("notice", {"text": "reopened"})
    assert synced == [str(tmp_path / "task")]


MAKE_KEY = """
import os, sys, time
from pathlib import Path
from jupyter_delegate.audit import journal_key
go = Path(sys.argv[1])
(go.parent / f"ready-{os.getpid()}").touch()
while not go.exists():
    time.sleep(0.0005)
print(journal_key().hex())
"""


def test_processes_starting_at_once_agree_on_one_whole_witness_key(tmp_path: Path) -> None:
    """The witness key is made by whichever process first needs it; one reading the file
    while another writes it must not witness with a half-written (empty) key."""
    for round_ in range(2):
        home, go = tmp_path / f"home{round_}", tmp_path / f"{round_}" / "go"
        go.parent.mkdir()
        env = {**os.environ, "JUPYTER_DELEGATE_HOME": str(home)}
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", MAKE_KEY, str(go)],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(8)
        ]
        deadline = time.monotonic() + 60
        while len(list(go.parent.glob("ready-*"))) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)  # every process imported and waits at the line
        go.touch()
        keys = {proc.communicate(timeout=60)[0].strip() for proc in procs}
        assert len(keys) == 1 and len(bytes.fromhex(keys.pop())) == 32
        assert [p.name for p in home.iterdir()] == ["journal.key"]  # nothing left aside
        assert (home / "journal.key").stat().st_mode & 0o777 == 0o600


def test_a_key_file_holding_no_key_is_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jupyter_delegate.audit import journal_key

    monkeypatch.setenv("JUPYTER_DELEGATE_HOME", str(tmp_path))
    for text in ("", "zz\n", "abcd\n"):
        (tmp_path / "journal.key").write_text(text)
        assert journal_key() is None
