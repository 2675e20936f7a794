"""What the agent knows beyond the outcome: the repository's conventions (AGENTS.md), the
skills it may load, and the user's preferences; gathered once when a task starts.

    conventions.py   AGENTS.md discovery from the root down to the scope
    skills.py        Agent Skills folders, validation, locks, trust and drift
    preferences.py   the user's preferences, user-wide and per repository

`gather` reads all three for a task; `TaskContext.to_event()` is what the journal keeps
(hashes and names, not file contents; the system prompt is journaled whole beside it).
`Watch` notices, before each model turn, when a file the task read changes on disk; the
task keeps the version it started with (the prompt is fixed, skill files are served
pinned by hash), and the change is reported.

None of this grants anything: the text is data for the agent, and permissions stay the
user's (policy.py).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ContextError
from .conventions import Conventions, read_conventions
from .preferences import Preference, add_preference, read_preferences, remove_preference
from .skills import Skill, SkillStatus, hash_folder, scan

__all__ = [
    "Conventions",
    "Preference",
    "Skill",
    "SkillStatus",
    "TaskContext",
    "Watch",
    "add_preference",
    "check_readable",
    "gather",
    "read_preferences",
    "remove_preference",
    "scan",
]


@dataclass(frozen=True)
class TaskContext:
    conventions: Conventions = field(default_factory=Conventions)
    skills: tuple[Skill, ...] = ()
    not_loaded: tuple[SkillStatus, ...] = ()
    preferences: tuple[Preference, ...] = ()

    def to_event(self) -> dict[str, Any]:
        return {
            "agents_md": [
                {"path": f.path, "sha256": f.sha256, "chars": len(f.text), "cut": f.cut}
                for f in self.conventions.files
            ],
            "suggested_checks": list(self.conventions.suggested_checks()),
            "skills": [skill.to_dict() for skill in self.skills],
            "skills_not_loaded": [
                {
                    "name": s.name,
                    "source": s.source,
                    "trust": s.trust,
                    "why": s.explain(),
                    "changed": list(s.changed),
                    "added": list(s.added),
                    "removed": list(s.removed),
                }
                for s in self.not_loaded
                if s.trust != "shadowed"
            ],
            "preferences": [p.to_dict() for p in self.preferences],
        }


def gather(
    worktree: Path, checkout: Path, state_dir: Path | None, scope: Sequence[str] = ()
) -> TaskContext:
    """Read a task's context: conventions and repo skills from its worktree (the base
    commit), the repository's lock from the user's checkout, preferences from the user's
    folder and the repository's state dir."""
    statuses = scan(worktree, checkout)
    loaded = tuple(s.skill for s in statuses if s.loadable and s.skill is not None)
    return TaskContext(
        conventions=read_conventions(worktree, scope),
        skills=loaded,
        not_loaded=tuple(s for s in statuses if not s.loadable),
        preferences=tuple(read_preferences(state_dir)),
    )


def check_readable(checkout: Path, state_dir: Path | None) -> None:
    """Raise ContextError now, before a task is created, when a lock or preferences file
    cannot be read (a task would otherwise fail after it started)."""
    from .skills import read_lock, sources

    for source in sources(checkout):
        if source.lock is not None:
            read_lock(source.lock)
    read_preferences(state_dir)


class Watch:
    """The files a task read (AGENTS.md and its non-bundled skills), and a cheap check,
    run before each model turn, of whether any changed since: stat first, hash on a
    difference. Each change is reported once."""

    def __init__(self, worktree: Path, event: Mapping[str, Any]) -> None:
        self._files: dict[str, tuple[Path, str]] = {}  # label -> (path, sha256 at start)
        for item in event.get("agents_md", []):
            self._files[item["path"]] = (worktree / item["path"], item["sha256"])
        self._skills: dict[str, tuple[Path, Mapping[str, str]]] = {
            f"skill {s['name']}": (Path(s["folder"]), s["files"])
            for s in event.get("skills", [])
            if s.get("source") != "bundled"
        }
        self._stats = self._stat_all()
        self._reported: set[str] = set()

    def _stat_all(self) -> dict[str, tuple[int, int]]:
        stats = {}
        paths = [path for path, _ in self._files.values()]
        for folder, files in self._skills.values():
            paths.append(folder)
            paths += [folder / relative for relative in files]
            paths += [folder / d for d in {str(Path(r).parent) for r in files} if d != "."]
        for path in paths:
            try:
                st = os.stat(path)
                stats[str(path)] = (st.st_mtime_ns, st.st_size)
            except OSError:
                stats[str(path)] = (0, -1)
        return stats

    def changes(self) -> list[str]:
        """What changed since the task started, each said once ("AGENTS.md changed")."""
        stats = self._stat_all()
        if stats == self._stats:
            return []
        self._stats = stats
        found = []
        for label, (path, digest) in self._files.items():
            found += self._changed_file(label, path, digest)
        for label, (folder, files) in self._skills.items():
            found += self._changed_skill(label, folder, files)
        news = [change for change in found if change not in self._reported]
        self._reported.update(news)
        return news

    @staticmethod
    def _changed_file(label: str, path: Path, digest: str) -> list[str]:
        try:
            now = hashlib.sha256(path.read_bytes()).hexdigest()
        except OSError:
            return [f"{label} was removed"]
        return [] if now == digest else [f"{label} changed"]

    @staticmethod
    def _changed_skill(label: str, folder: Path, files: Mapping[str, str]) -> list[str]:
        try:
            now = hash_folder(folder)
        except (OSError, ContextError):  # a folder made unreadable is a change too
            return [f"{label}: its folder cannot be read"]
        changes = [f"{label}: {p} changed" for p in files if p in now and now[p] != files[p]]
        changes += [f"{label}: {p} added" for p in now if p not in files]
        changes += [f"{label}: {p} removed" for p in files if p not in now]
        return changes
