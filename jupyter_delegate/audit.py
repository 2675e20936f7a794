"""`jupyter delegate audit verify`: is a task's trail intact?

Three witnesses must agree. The journal's hash chain proves that no line was changed,
reordered or removed from the middle. Removing lines from the end leaves a valid, shorter
chain, so the chain is also checked against the heads recorded elsewhere: each harness
commit names the journal head it was made at (`Delegate-Journal` trailer), and each
notebook record names the head it showed. A head that is not in the journal means the
journal was truncated or rewritten.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git

from .journal import Journal
from .workspace import Workspace


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
    workspace: Workspace, task_id: str, records: Mapping[str, Mapping[str, Any]] | None = None
) -> AuditResult:
    path = workspace.task_dir(task_id) / "journal.jsonl"
    result = AuditResult(task_id)
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
    return result


def audit_repo(
    workspace: Workspace, task_ids: Iterable[str], notebooks: Iterable[Path] = ()
) -> list[AuditResult]:
    from .notebook.record import read_records

    records = {r["id"]: r for nb in notebooks for r in read_records(nb)}
    return [audit_task(workspace, task_id, records) for task_id in task_ids]


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
    log = repo.git.log("--all", f"--grep=^Delegate-Task: {task_id}$", "--format=%H%x00%B%x01")
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
