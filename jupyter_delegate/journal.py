"""The journal: one append-only, hash-chained JSONL file per task, the truth of the task.

Each line is `{seq, ts, type, data, prev, hash}` with
`hash = sha256(prev + canonical JSON of {seq, ts, type, data, prev})`; the first `prev`
is 64 zeros. Every append is written before it returns, so a reader (the CLI, another
kernel) sees it and it outlives the process. By default it is also synced to the disk
(`fdatasync`) before it returns. With `sync=False` the sync is left to a background
thread, which syncs within milliseconds (one sync covers every line written before it);
the agent loop appends its steps so, and the engine does not wait for the disk at every
model turn. A machine crash can lose the last steps not yet synced, and a resume then
asks the model again from the step before, a conversation the model saw. Everything a
human waits on or acts upon (a state change, a permission question, checks, a commit)
is appended synced, which syncs all before it too. `append_many` writes several events
with one write. Secrets are redacted before anything is written (`redact`).

What the events are, their data and the journal's format version: events.py (each line's
`typed` is its `events.JournalEvent`). This module keeps lines as they were written: the
hash chain is over the data as written.

`replay_messages` rebuilds the exact conversation the model saw from the user, assistant
and tool_result events: what the model saw is what you can read afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from .errors import JournalError, StaleJournal
from .events import AssistantTurn, Compacted, JournalEvent, ToolResult, UserTurn, parse

GENESIS = "0" * 64

_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)", re.IGNORECASE)
_SECRET_PATTERNS = [
    re.compile(r"sk-ant-[A-Za-z0-9_\-]{10,}"),
    re.compile(r"\b(AKIA|ASIA)[A-Z0-9]{16}\b"),
    re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b"),
    re.compile(r"\bgithub_pat_[A-Za-z0-9_]{30,}\b"),
    re.compile(r"\bxox[baprs]-[A-Za-z0-9-]{10,}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?-----END [A-Z ]*PRIVATE KEY-----", re.DOTALL),
]
REDACTED = "[REDACTED]"
_ASSIGNED_SECRET = re.compile(
    r"(?i)\b([a-z0-9_]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key)[a-z0-9_]*)"
    r"(\s*[:=]\s*[\"']?)([A-Za-z0-9/+_=.\-]{16,})"
)
# What each pattern cannot match without (cheap tests before the regexes run), and the
# shortest text any of them matches: most strings in an event are skipped at once.
_NEEDS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = tuple(
    zip(
        _SECRET_PATTERNS,
        (
            ("sk-ant-",),
            ("AKIA", "ASIA"),
            ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
            ("github_pat_",),
            ("xox",),
            ("-----BEGIN",),
        ),
        strict=True,
    )
)
_ASSIGNED_NEEDS = re.compile(r"(?i:passw|secret|token|key)")  # same (?i) as the pattern
_ANY_NEEDS = re.compile(
    "|".join(re.escape(literal) for _, needs in _NEEDS for literal in needs)
    + "|"
    + _ASSIGNED_NEEDS.pattern
)
_SHORTEST_MATCH = 15  # `xoxb-` and ten more


def _entropy(text: str) -> float:
    counts = [text.count(c) for c in set(text)]
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts)


def _redact_assignment(match: re.Match[str]) -> str:
    value = match.group(3)
    if _entropy(value) < 3.5:
        return match.group(0)
    return match.group(1) + match.group(2) + REDACTED


def secret_values() -> list[str]:
    """Values of credential-like environment variables, longest first."""
    values = {
        value for name, value in os.environ.items() if _SECRET_NAME.search(name) and len(value) >= 8
    }
    return sorted(values, key=len, reverse=True)


def looks_secret(text: str) -> bool:
    """Whether `text` holds a credential: a credential variable's value, a well-known
    token, or a high-entropy value assigned to a secret-looking name."""
    return _redact_text(text, secret_values()) != text


def redact(value: Any, secrets: list[str] | None = None) -> Any:
    """Replace credential values (from the environment), well-known token patterns, and
    high-entropy values assigned to secret-looking names, in every string inside `value`
    (dicts and lists are walked)."""
    return _redact(value, secret_values() if secrets is None else secrets)


_PLAIN = frozenset({int, float, bool, type(None)})


# Content blocks the API signs and wants back byte for byte: redacting them would break
# the conversation (a 400 at the next turn, or on resume). They hold the model's own
# reasoning and summaries of what it was shown, which was redacted before it saw it.
SIGNED_BLOCKS = frozenset({"thinking", "redacted_thinking", "compaction"})


def signed(block: Any) -> bool:
    """Whether `block` is a content block the API signed (see SIGNED_BLOCKS)."""
    return (
        type(block) is dict
        and block.get("type") in SIGNED_BLOCKS
        and ("signature" in block or "data" in block or "encrypted_content" in block)
    )


def _redact(value: Any, secrets: list[str]) -> Any:
    kind = type(value)  # the exact types first: this walks every event's data
    if kind is str:
        return _redact_text(value, secrets)
    if kind is dict:
        if signed(value):
            return value
        return {k: _redact(v, secrets) for k, v in value.items()}
    if kind is list:
        return [_redact(v, secrets) for v in value]
    if kind in _PLAIN:
        return value
    if isinstance(value, str):
        return _redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {k: _redact(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redact(v, secrets) for v in value]
    return value


# detect-secrets' token detectors (module, class, literals a match cannot be without),
# beside the patterns above; not its Discord and Telegram ones, whose patterns have no
# literal to look for first and cost more than all the others on every string. Importing
# detect-secrets takes a few hundred ms, so `load_detectors` runs where agent content
# first flows (the agent loop), on the engine thread; once loaded, every redaction uses
# them. One pass finds which literals a text holds; only their patterns run.
_DETECTORS = (
    ("aws", "AWSKeyDetector", ("A3T", "ABIA", "ACCA", "AKIA", "ASIA", "aws", "AWS")),
    ("azure_storage_key", "AzureStorageKeyDetector", ("AccountKey=",)),
    ("basic_auth", "BasicAuthDetector", ("://",)),
    ("github_token", "GitHubTokenDetector", ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
    (
        "gitlab_token",
        "GitLabTokenDetector",
        (
            "glpat-",
            "gldt-",
            "glft-",
            "glsoat-",
            "glrt-",
            "GR1348941",
            "glcbt-",
            "glimt-",
            "glptt-",
            "glagent-",
            "gloas-",
        ),
    ),
    ("jwt", "JwtTokenDetector", ("eyJ",)),
    ("mailchimp", "MailchimpDetector", ("-us",)),
    ("npm", "NpmDetector", ("_authToken",)),
    ("openai", "OpenAIDetector", ("T3BlbkFJ",)),
    ("pypi_token", "PypiTokenDetector", ("pypi-",)),
    ("sendgrid", "SendGridDetector", ("SG.",)),
    ("slack", "SlackDetector", ("xox", "hooks.slack.com")),
    ("square_oauth", "SquareOAuthDetector", ("sq0csp-",)),
    ("stripe", "StripeDetector", ("k_live_",)),
    ("twilio", "TwilioKeyDetector", ("AC", "SK")),
)
# Detectors whose patterns capture the secret itself as group 1 (the rest is context).
_SECRET_IN_GROUP = frozenset({"aws", "basic_auth", "npm"})
_detected: list[tuple[re.Pattern[str], tuple[str, ...], bool]] = []
_detected_needs: list[re.Pattern[str]] = []


def load_detectors() -> None:
    """Add detect-secrets' token patterns to redaction (once per process)."""
    if _detected:
        return
    import importlib

    found = []
    for module, name, needs in _DETECTORS:
        detector = getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), name)
        grouped = module in _SECRET_IN_GROUP
        found += [(pattern, tuple(needs), grouped) for pattern in detector.denylist]
    literals = sorted({literal for _, _, needs in _DETECTORS for literal in needs}, key=len)
    _detected_needs[:] = [re.compile("|".join(re.escape(x) for x in reversed(literals)))]
    _detected[:] = found


def _redact_group(match: re.Match[str]) -> str:
    """A match with only its secret (group 1: the password of `://user:password@`)
    redacted; all of it when the group is empty."""
    if not match.re.groups or not match.group(1):
        return REDACTED
    whole, offset = match.group(0), match.start(0)
    start, end = match.span(1)
    return whole[: start - offset] + REDACTED + whole[end - offset :]


def _redact_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if _detected and (present := set(_detected_needs[0].findall(text))):
        for pattern, needs, grouped in _detected:
            if not present.isdisjoint(needs):
                text = pattern.sub(_redact_group if grouped else REDACTED, text)
    if len(text) < _SHORTEST_MATCH or not _ANY_NEEDS.search(text):
        return text
    for pattern, needs in _NEEDS:
        if any(literal in text for literal in needs):
            text = pattern.sub(REDACTED, text)
    if _ASSIGNED_NEEDS.search(text):
        text = _ASSIGNED_SECRET.sub(_redact_assignment, text)
    return text


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(prev: str, body: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev + canonical(body)).encode()).hexdigest()


_json_string = json.encoder.encode_basestring  # what canonical() writes for a str


def _hash_and_line(seq: int, ts: float, type_: str, data: Any, prev: str) -> tuple[str, str]:
    """The event's hash and its journal line, encoding `data` once: the same text as
    `chain_hash(prev, body)` and `canonical({**body, "hash": ...})`, whose sorted keys put
    data first and hash second."""
    plain = type(seq) is int and type(ts) is float and type(type_) is str and type(prev) is str
    if not plain:  # anything else (a damaged head, say) takes the general path
        body = {"seq": seq, "ts": ts, "type": type_, "data": data, "prev": prev}
        digest = chain_hash(prev, body)
        return digest, canonical({**body, "hash": digest}) + "\n"
    data_json = canonical(data)
    rest = f',"prev":{_json_string(prev)},"seq":{seq!r},"ts":{ts!r},"type":{_json_string(type_)}}}'
    digest = hashlib.sha256(f'{prev}{{"data":{data_json}{rest}'.encode()).hexdigest()
    return digest, f'{{"data":{data_json},"hash":"{digest}"{rest}\n'


@dataclass(frozen=True)
class Event:
    """One journal line as written; `typed` is the event it records."""

    seq: int
    ts: float
    type: str
    data: dict[str, Any]
    prev: str
    hash: str

    @cached_property
    def typed(self) -> JournalEvent:
        """The typed event (events.parse), read once. Raises JournalError when the line
        lacks a key its type always has."""
        return parse(self.type, self.data)


@dataclass(frozen=True)
class Verification:
    ok: bool
    events: int
    head: str
    line: int | None = None  # 1-based line of the first bad event
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"ok ({self.events} events, head {self.head[:12]})"
        return f"line {self.line}: {self.problem}"


class Journal:
    """Append-only, hash-chained, synced JSONL. Safe to append from several threads.

    One writer: only the process holding the task's lock appends (manager.py), and each
    append first checks that the file still ends where this object left it, so a second
    writer is refused (StaleJournal, nothing written) instead of breaking the chain.
    Readers in any process follow the file with `catch_up`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._seq = 0
        self._head = GENESIS
        self._secrets = secret_values()
        self._fd: int | None = None
        self._writes = 0  # appends so far; the background sync compares it
        self._synced = 0  # the appends known to be on disk
        self._sync_failed: OSError | None = None  # by the background sync; told once
        # The file was made by this object and its folder not yet synced: the first sync
        # of a line syncs the folder first (a line in a file whose name a crash lost is
        # lost too), so that creating a journal with `sync=False` waits for no disk.
        self._folder_unsynced = False
        self._size = 0  # where the last event known to this object ends in the file
        self.catch_up()

    def catch_up(self) -> list[Event]:
        """The events appended (by any process) since this object last read or wrote the
        file, in order; a line still being written is left for the next call."""
        with self._lock:
            try:
                with self.path.open("rb") as handle:
                    handle.seek(self._size)
                    tail = handle.read()
            except FileNotFoundError:
                return []
            new: list[Event] = []
            offset = 0
            for line in tail.splitlines(keepends=True):
                if not line.endswith(b"\n"):
                    break
                try:
                    event = Event(**json.loads(line))
                except (ValueError, TypeError) as exc:
                    raise JournalError(
                        f"{self.path}: an event after seq {self._seq} cannot be read ({exc}). "
                        "Run `jupyter delegate audit verify` to see what is wrong."
                    ) from exc
                if event.prev != self._head or event.seq != self._seq + 1:
                    raise JournalError(
                        f"{self.path}: seq {event.seq} does not follow seq {self._seq}: two "
                        "processes wrote this journal. Run `jupyter delegate audit verify`."
                    )
                new.append(event)
                offset += len(line)
                self._seq, self._head = event.seq, event.hash
            self._size += offset
            return new

    @property
    def head(self) -> str:
        return self._head

    def _descriptor(self) -> int:
        """The append descriptor, opened once (an open per event cost more than the write)."""
        if self._fd is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            new = not self.path.exists()
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._folder_unsynced = new  # synced with the first line synced
        return self._fd

    @property
    def unsynced(self) -> bool:
        """Whether lines appended with `sync=False` are still waiting for their sync."""
        return self._synced < self._writes

    def sync(self) -> None:
        """Sync what was appended with `sync=False`; nothing to do otherwise. Appends go
        on meanwhile: the disk is waited for outside the journal's lock."""
        with self._lock:
            if self._fd is None or not self.unsynced:
                return
            fd, writes = os.dup(self._fd), self._writes  # close() may run meanwhile
            folder = self._folder_unsynced
        try:
            if folder:
                _sync_folder(self.path.parent)
                self._folder_unsynced = False
            os.fdatasync(fd)
        except OSError as exc:
            # The kernel reports a failed write-back once: keep it for the next append.
            self._sync_failed = exc
            raise
        finally:
            os.close(fd)
        with self._lock:
            self._synced = max(self._synced, writes)

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                if self.unsynced:
                    self._sync_folder_once()
                    os.fdatasync(self._fd)
                    self._synced = self._writes
                os.close(self._fd)
                self._fd = None

    def _sync_folder_once(self) -> None:
        """Sync the journal's folder if this object made the file and has not yet."""
        if self._folder_unsynced:
            _sync_folder(self.path.parent)
            self._folder_unsynced = False

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            os.close(fd)

    def append(self, type_: str, data: Mapping[str, Any], *, sync: bool = True) -> Event:
        return self.append_many([(type_, data)], sync=sync)[0]

    def append_many(
        self, events: Iterable[tuple[str, Mapping[str, Any]]], *, sync: bool = True
    ) -> list[Event]:
        """Append `(type, data)` events in order with one write and one sync: when it
        returns, all are on disk, with anything appended unsynced before. With
        `sync=False` they are written and the background thread syncs them soon. A crash
        during it leaves the journal with a prefix of them, the last line perhaps cut
        short (`verify` names it), as a crash during one `append` would."""
        with self._lock:
            if self._sync_failed is not None:
                failed, self._sync_failed = self._sync_failed, None
                raise JournalError(
                    f"{self.path}: the disk failed to keep lines already written ({failed}). "
                    "The journal may miss its last steps after a machine crash; check the "
                    "disk, then run `jupyter delegate audit verify`."
                ) from failed
            seq, head = self._seq, self._head
            written: list[Event] = []
            lines: list[str] = []
            for type_, data in events:
                seq += 1
                ts = round(time.time(), 6)
                clean = redact(dict(data), self._secrets)
                digest, line = _hash_and_line(seq, ts, type_, clean, head)
                written.append(Event(seq, ts, type_, clean, head, digest))
                lines.append(line)
                head = digest
            if not lines:
                return written
            fd = self._descriptor()
            if os.fstat(fd).st_size != self._size:
                raise StaleJournal(
                    f"{self.path}: another process wrote to this task's journal since this "
                    "one read it (or a crash cut its last line short); nothing was written. "
                    "Re-read the task (`Task.refresh()`) and decide again; `jupyter delegate "
                    "audit verify` checks the journal."
                )
            payload = "".join(lines).encode()
            _write_all(fd, payload)
            self._size += len(payload)
            self._writes += 1
            if sync:
                self._sync_folder_once()
                os.fdatasync(fd)  # the data and the size: all a reader needs after a crash
                self._synced = self._writes
            self._seq, self._head = seq, head
        if not sync:
            _background.request(self)
        return written

    def events(self) -> Iterator[Event]:
        """Every event, in order. Raises JournalError naming the line that cannot be read."""
        try:
            handle = self.path.open(encoding="utf-8")
        except FileNotFoundError:
            return
        with handle:
            for number, line in enumerate(handle, start=1):
                try:
                    raw = json.loads(line)
                    yield Event(**raw)
                except (ValueError, TypeError) as exc:
                    raise JournalError(
                        f"{self.path}: line {number} is not a journal event ({exc}). "
                        f"Run `jupyter delegate audit verify` to see what else is wrong."
                    ) from exc

    def verify(self) -> Verification:
        """Check every line's hash and link; name the first bad line."""
        prev, count = GENESIS, 0
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            return Verification(False, 0, GENESIS, 1, f"no journal at {self.path}")
        except UnicodeDecodeError as exc:
            return Verification(False, 0, GENESIS, 1, f"not UTF-8 text ({exc})")
        for number, line in enumerate(lines, start=1):
            try:
                raw = json.loads(line)
                body = {k: raw[k] for k in ("seq", "ts", "type", "data", "prev")}
                claimed = raw["hash"]
            except (ValueError, KeyError, TypeError):
                return Verification(False, count, prev, number, "not a journal event")
            if raw["seq"] != number:
                return Verification(
                    False, count, prev, number, f"seq {raw['seq']} where {number} belongs"
                )
            if raw["prev"] != prev:
                return Verification(
                    False, count, prev, number, "does not link to the line before it"
                )
            if chain_hash(prev, body) != claimed:
                return Verification(False, count, prev, number, "content does not match its hash")
            prev, count = claimed, count + 1
        return Verification(True, count, prev)


class _BackgroundSync:
    """One daemon thread per process that syncs journals appended with `sync=False`.
    It gathers for `DELAY_S` after the first request, then syncs every journal written
    meanwhile once (group commit): a task's fast steps share a sync, and the thread
    takes the GIL a few times per pass, not at every append. While it waits for the
    disk it holds no lock and not the GIL, so the engine goes on."""

    DELAY_S = 0.01

    def __init__(self) -> None:
        self._wanted: dict[int, Journal] = {}
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        os.register_at_fork(after_in_child=self._forget_thread)

    def request(self, journal: Journal) -> None:
        with self._changed:
            first = not self._wanted  # else the thread is awake already, gathering
            self._wanted[id(journal)] = journal
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="jupyter-delegate-journal-sync", daemon=True
                )
                self._thread.start()
            if first:
                self._changed.notify()

    def _serve(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: bool(self._wanted))
            time.sleep(self.DELAY_S)
            with self._changed:
                journals, self._wanted = list(self._wanted.values()), {}
            for journal in journals:
                with contextlib.suppress(OSError):  # kept: the journal's next append
                    journal.sync()  # raises it (a state change at the latest)

    def _forget_thread(self) -> None:
        self._changed = threading.Condition()
        self._wanted, self._thread = {}, None


_background = _BackgroundSync()


def _sync_folder(folder: Path) -> None:
    """Sync a folder's entries, so a file just made in it survives a machine crash."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, payload: bytes) -> None:
    """os.write until all of `payload` is written (a regular file may take less at once)."""
    view = memoryview(payload)
    while view:
        view = view[os.write(fd, view) :]


def replay_messages(events: list[Event]) -> list[dict[str, Any]]:
    """Rebuild the conversation from the journal. A tool call whose result never reached
    the journal (the kernel died mid-call) gets an error result saying so."""
    messages: list[dict[str, Any]] = []
    pending: dict[str, str] = {}  # tool_use_id -> name, still without a result

    def user_blocks() -> list[dict[str, Any]]:
        if not messages or messages[-1]["role"] != "user":
            messages.append({"role": "user", "content": []})
        content: list[dict[str, Any]] = messages[-1]["content"]
        return content

    def settle_pending() -> None:
        for tool_id, name in pending.items():
            user_blocks().append(
                {
                    "type": "tool_result",
                    "tool_use_id": tool_id,
                    "content": f"The {name} call was interrupted before it finished "
                    "(the kernel stopped). Check its effects and run it again if needed.",
                    "is_error": True,
                }
            )
        pending.clear()

    for event in events:
        match event.typed:
            case AssistantTurn(content=content) if event.typed.extra.get("continues"):
                messages[-1] = {**messages[-1], "content": [*messages[-1]["content"], *content]}
                for block in content:
                    if block.get("type") == "tool_use":
                        pending[block["id"]] = block["name"]
            case AssistantTurn(content=content):
                settle_pending()
                messages.append({"role": "assistant", "content": content})
                for block in content:
                    if block.get("type") == "tool_use":
                        pending[block["id"]] = block["name"]
                if content and content[0].get("type") == "compaction":
                    del messages[:-1]  # the API's compaction: the conversation starts here
            case Compacted(by="harness", messages=restart):
                pending.clear()
                messages[:] = [dict(m) for m in restart]
            case ToolResult(tool_use_id=tool_use_id, content=content, is_error=is_error):
                pending.pop(tool_use_id, None)
                result: dict[str, Any] = {
                    "type": "tool_result",
                    "tool_use_id": tool_use_id,
                    "content": content,
                }
                if is_error:
                    result["is_error"] = True
                user_blocks().append(result)
            case UserTurn(content=content):
                settle_pending()
                user_blocks().extend(content)
    settle_pending()
    return messages
