"""`jupyter delegate audit verify`: is a task's trail intact?

The journal's hash chain proves that no line was changed, reordered or removed from the
middle. Its end is proven by witnesses kept outside it:

- the **witness file** (`<git common dir>/delegate/witness.jsonl`, beside the task
  folders, read-only to the sandbox): every event a human acts upon (a state change, a
  decision, the checks, the commit) is witnessed there as (task, seq, hash), with an HMAC
  under a key kept in the user's folder (`~/.jupyter/delegate/journal.key`), after it is
  in the journal. A truncated or edited witnessed event, an appended decision nobody
  witnessed (a forged approval or rejection), a forged witness line and a deleted task
  folder are all caught;
- each harness **commit** names the journal head it was made at (`Delegate-Journal`);
- each **notebook record** names the head it showed.

What the key protects against: someone who can write the repository's `.git` but not the
user's home (a copy of the repository, a tool confined to it) cannot forge a witness or
re-witness a rewritten journal. What it does not: a process running as the user (it can
read the key, as an unsandboxed agent can), and a lost key (older witnesses then cannot be
checked and audit says so). Steps the agent took after the last witnessed event are not
witnessed: a crash may lose them by design (see journal.py), and audit cannot tell.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git

from .home import user_dir
from .journal import Event, Journal, canonical
from .workspace import EVERY_REF, Workspace

WITNESS_FILE = "witness.jsonl"
KEY_FILE = "journal.key"
# Journal events that are steps of the agent: not witnessed, a crash may lose the last.
STEP_TYPES = frozenset({"assistant", "tool_result", "user"})


def journal_key(create: bool = True) -> bytes | None:
    """The user's witness key (32 random bytes, mode 600), made on first use.

    The key file appears whole or not at all (written aside, then hard-linked into place),
    so a process starting beside the one making it never reads a half-written key.
    """
    path = user_dir() / KEY_FILE
    try:
        return _read_key(path)
    except FileNotFoundError:
        if not create:
            return None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    aside = path.with_name(f".{KEY_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(key.hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.link(aside, path)
    except FileExistsError:  # another process made it first: theirs is the key
        return _read_key(path)
    finally:
        aside.unlink(missing_ok=True)
    return key


def _read_key(path: Path) -> bytes | None:
    """The key in `path`, or None when the file holds no 32-byte key."""
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        return None
    return key if len(key) == 32 else None


def _mac(key: bytes, line: Mapping[str, Any]) -> str:
    body = {k: line[k] for k in ("task", "seq", "hash", "type")}
    return hmac.new(key, canonical(body).encode(), hashlib.sha256).hexdigest()


def witness(state_dir: Path, task_id: str, event: Event) -> None:
    """Witness `event` of `task_id`'s journal outside it (appended and synced)."""
    line: dict[str, Any] = {"task": task_id, "seq": event.seq, "hash": event.hash}
    line["type"] = event.type
    key = journal_key()
    line["mac"] = _mac(key, line) if key is not None else ""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / WITNESS_FILE, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (canonical(line) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def witnesses(state_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Each task's witness lines, in order (unreadable lines under the task "")."""
    found: dict[str, list[dict[str, Any]]] = {}
    try:
        text = (state_dir / WITNESS_FILE).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return found
    for number, raw in enumerate(text.splitlines(), start=1):
        try:
            line = json.loads(raw)
            found.setdefault(str(line["task"]), []).append({**line, "line": number})
        except (ValueError, KeyError, TypeError):
            found.setdefault("", []).append({"line": number})
    return found


@dataclass
class AuditResult:
    task_id: str
    events: int = 0
    head: str = ""
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def __str__(self) -> str:
        if self.ok:
            return f"ok ({self.events} events, head {self.head[:12]})"
        return "; ".join(self.problems)


def audit_task(
    workspace: Workspace,
    task_id: str,
    records: Mapping[str, Mapping[str, Any]] | None = None,
    witnessed: Mapping[str, list[dict[str, Any]]] | None = None,
) -> AuditResult:
    path = workspace.task_dir(task_id) / "journal.jsonl"
    result = AuditResult(task_id)
    lines = (witnessed if witnessed is not None else witnesses(workspace.state_dir)).get(
        task_id, []
    )
    if not path.exists():
        result.problems.append(
            f"the journal is missing ({path}): its task folder was deleted or moved, "
            "though commits or witnesses name the task"
        )
        return result
    verification = Journal(path).verify()
    result.events, result.head = verification.events, verification.head
    if not verification.ok:
        result.problems.append(str(verification))
    hashes = _hashes(path)
    for commit, named in _task_commits(workspace.repo, task_id):
        if named not in hashes:
            result.problems.append(
                f"commit {commit[:10]} names journal head {named[:12]}, which is not in the "
                "journal (truncated or rewritten)"
            )
    record = (records or {}).get(task_id)
    if record and record.get("journal_head") and record["journal_head"] not in hashes:
        result.problems.append(
            f"the notebook record shows journal head {record['journal_head'][:12]}, which is "
            "not in the journal (truncated or rewritten)"
        )
    result.problems += _witness_problems(path, lines)
    return result


def _witness_problems(path: Path, lines: list[dict[str, Any]]) -> list[str]:
    """What the witness lines say about the journal's end."""
    if not lines:
        return []  # a journal from before witnesses: the chain and trailers only
    problems = []
    key = journal_key(create=False)
    by_seq = {seq: (hash_, type_) for seq, hash_, type_ in _seqs(path)}
    last = 0
    for line in lines:
        where = f"witness line {line['line']}"
        if key is None:
            pass  # another machine's task: the MACs cannot be checked here
        elif not hmac.compare_digest(str(line.get("mac", "")), _mac(key, line)):
            problems.append(f"{where} for event {line['seq']} does not carry your key's MAC")
            continue
        seq = int(line["seq"])
        last = max(last, seq)
        if seq not in by_seq:
            problems.append(
                f"event {seq} ({line['type']}) was witnessed but is not in the journal (truncated)"
            )
        elif by_seq[seq][0] != line["hash"]:
            problems.append(f"event {seq} is not the one witnessed (edited or replaced)")
    for seq, (_, type_) in sorted(by_seq.items()):
        if seq > last and type_ not in STEP_TYPES:
            problems.append(
                f"event {seq} ({type_}) was never witnessed: appended by something other "
                "than the harness, or the harness stopped between the two writes"
            )
    return problems


def _seqs(path: Path) -> list[tuple[int, str, str]]:
    found = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            raw = json.loads(line)
            found.append((int(raw["seq"]), str(raw["hash"]), str(raw["type"])))
        except (ValueError, KeyError, TypeError):
            continue
    return found


def audit_repo(
    workspace: Workspace, task_ids: Iterable[str], notebooks: Iterable[Path] = ()
) -> list[AuditResult]:
    from .notebook.record import read_records

    records = {r["id"]: r for nb in notebooks for r in read_records(nb)}
    witnessed = witnesses(workspace.state_dir)
    return [audit_task(workspace, task_id, records, witnessed) for task_id in task_ids]


def audit_plan(workspace: Workspace, plan_id: str) -> AuditResult:
    """A plan's journal (planning.py): its hash chain, and each subtask's task it names."""
    from .planning import plan_folder

    path = plan_folder(workspace, plan_id) / "journal.jsonl"
    result = AuditResult(f"plan {plan_id}")
    if not path.exists():
        result.problems.append(f"the plan's journal is missing ({path})")
        return result
    journal = Journal(path)
    verification = journal.verify()
    result.events, result.head = verification.events, verification.head
    if not verification.ok:
        result.problems.append(str(verification))
    known = set(workspace.task_ids())
    for event in journal.events():
        task = event.data.get("task") if event.type == "started" else None
        if task and task not in known:
            result.problems.append(f"it started task {task}, whose journal is missing")
    return result


def named_tasks(workspace: Workspace) -> list[str]:
    """Every task the repository knows of: by its journal, its witnesses, or a commit's
    `Delegate-Task` trailer in any ref (so a deleted task folder is still named)."""
    known = list(workspace.task_ids())
    known += [t for t in witnesses(workspace.state_dir) if t]
    log = workspace.repo.git.log(*EVERY_REF, "--grep=^Delegate-Task: ", "--format=%B%x01")
    for body in log.split("\x01"):
        for line in body.splitlines():
            if line.startswith("Delegate-Task: "):
                known.append(line.split(": ", 1)[1].strip())
    return list(dict.fromkeys(known))


def _hashes(path: Path) -> dict[str, int]:
    """Each readable line's hash -> its line number."""
    found: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return found
    for number, line in enumerate(lines, start=1):
        try:
            found[json.loads(line)["hash"]] = number
        except (ValueError, KeyError, TypeError):
            continue
    return found


def _task_commits(repo: git.Repo, task_id: str) -> list[tuple[str, str]]:
    """(commit, journal head it names) for every commit in any ref that carries this task's
    trailer: the task branch, its archive, and what was merged."""
    log = repo.git.log(*EVERY_REF, f"--grep=^Delegate-Task: {task_id}$", "--format=%H%x00%B%x01")
    found = []
    for entry in log.split("\x01"):
        commit, _, body = entry.strip().partition("\x00")
        named = [
            line.split(": ", 1)[1].strip()
            for line in body.splitlines()
            if line.startswith("Delegate-Journal: ")
        ]
        if commit and named:
            found.append((commit, named[-1]))
    return found
