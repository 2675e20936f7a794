"""Skills in the Agent Skills format, where they come from, and whether they are trusted.

A skill is a folder holding `SKILL.md`: YAML front matter (`name`, `description`, and
optionally `license`, `compatibility`, `metadata`, `allowed-tools`) and a Markdown body,
with `scripts/`, `references/` and `assets/` beside it. Skills come from, in this order
(a name found earlier shadows the same name later):

    repo     <repo>/.agents/skills/NAME, <repo>/.claude/skills/NAME  lock <repo>/skills.lock
    user     ~/.jupyter/delegate/skills/NAME          lock ~/.jupyter/delegate/skills.lock
    bundled  jupyter_delegate/skills/NAME             shipped, trusted as installed

A lock records the sha256 of every file of each trusted skill. A skill that is not in
its lock (new) or whose files differ from it (changed) is not loaded until the user
trusts it; `SkillStatus` says which files were added, removed or changed, and `diff()`
shows text changes against the trusted copy kept in the user's `trusted/` folder.
A malformed skill is reported with its file and the problem, and skipped.

`allowed-tools` is read and shown, never granted: permissions come from the user's rules.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import stat
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import ContextError
from ..home import user_dir, write_atomic

NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
NAME_MAX, DESCRIPTION_MAX, COMPATIBILITY_MAX = 64, 1024, 500
FIELDS = ("name", "description", "license", "compatibility", "metadata", "allowed-tools")
REPO_FOLDERS = (".agents/skills", ".claude/skills")
LOCK_NAME = "skills.lock"
MAX_FILES = 200
MAX_FILE_BYTES = 1_000_000
_IGNORED = frozenset({"__pycache__", ".DS_Store", ".git"})
BUNDLED = Path(__file__).resolve().parent.parent / "skills"
# Skills read (parse_skill), by folder and source: the folder's signature then, and what
# was read.
_parsed: dict[tuple[Path, str], tuple[tuple[Any, ...], Skill]] = {}
_parsed_lock = threading.Lock()


@dataclass(frozen=True)
class Skill:
    name: str
    description: str
    source: str  # repo | user | bundled
    folder: Path
    files: Mapping[str, str]  # relative path -> sha256, SKILL.md included
    license: str = ""
    compatibility: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    allowed_tools: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()

    def body(self) -> str:
        """SKILL.md without its front matter."""
        return split_front_matter(read_text(self.folder / "SKILL.md"), self.folder)[1].strip()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "source": self.source,
            "description": self.description,
            "folder": str(self.folder),
            "files": dict(self.files),
            "allowed_tools": list(self.allowed_tools),
        }


@dataclass(frozen=True)
class SkillStatus:
    """A skill found on disk and what its lock says of it."""

    name: str
    source: str
    folder: Path
    trust: str  # trusted | bundled | new | changed | malformed | shadowed
    skill: Skill | None = None
    problem: str = ""  # for malformed: "<file>: <what is wrong>"
    added: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    changed: tuple[str, ...] = ()
    locked: Mapping[str, str] = field(default_factory=dict)
    lock: Path | None = None  # the lock file that speaks for it (None: bundled)

    @property
    def loadable(self) -> bool:
        return self.trust in ("trusted", "bundled")

    def explain(self) -> str:
        """One line: why this skill is or is not loaded, and what to do."""
        where = f"{self.name} ({self.source}, {self.folder})"
        if self.trust == "malformed":
            return f"{where}: skipped, malformed: {self.problem}"
        if self.trust == "shadowed":
            return f"{where}: skipped, a skill of the same name comes first"
        if self.trust == "new":
            return f"{where}: not loaded, not trusted yet; trust it with `skills trust {self.name}`"
        if self.trust == "changed":
            what = [f"{label}: {', '.join(paths)}" for label, paths in self.drift() if paths]
            return (
                f"{where}: not loaded, its files differ from {LOCK_NAME} ({'; '.join(what)}); "
                f"review and `skills trust {self.name}`"
            )
        return f"{where}: {self.trust}"

    def drift(self) -> list[tuple[str, tuple[str, ...]]]:
        return [("changed", self.changed), ("added", self.added), ("removed", self.removed)]

    def diff(self, limit: int = 20_000) -> str:
        """Unified diffs of the text files that changed since the skill was trusted."""
        parts = []
        for path in (*self.changed, *self.added, *self.removed):
            old = trusted_copy(self.locked[path]) if path in self.locked else b""
            current = self.folder / path
            new = current.read_bytes() if path not in self.removed and current.is_file() else b""
            parts.append(_text_diff(path, old, new))
        text = "".join(parts)
        return text if len(text) <= limit else text[:limit] + "\n[diff cut]\n"


def _text_diff(path: str, old: bytes | None, new: bytes) -> str:
    if old is None:
        return f"--- {path}: no copy of the trusted version on this machine (sha256 differs)\n"
    if b"\0" in old or b"\0" in new:
        return f"Binary file {path} changed ({len(old)} -> {len(new)} bytes)\n"
    lines = difflib.unified_diff(
        old.decode(errors="replace").splitlines(keepends=True),
        new.decode(errors="replace").splitlines(keepends=True),
        f"trusted/{path}",
        f"now/{path}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


# -- reading one skill ------------------------------------------------------------------------
def read_text(path: Path) -> str:
    return path.read_text(encoding="utf-8", errors="replace")


def split_front_matter(text: str, folder: Path) -> tuple[dict[str, Any], str]:
    import yaml  # here: `%load_ext` need not pay for it (bench: extension load)

    where = folder / "SKILL.md"
    lines = text.splitlines(keepends=True)
    if not lines or lines[0].strip() != "---":
        raise ContextError(f"{where}: must start with a '---' line opening the YAML front matter")
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), None)
    if end is None:
        raise ContextError(f"{where}: the front matter has no closing '---' line")
    try:
        data = yaml.safe_load("".join(lines[1:end]))
    except yaml.YAMLError as exc:
        raise ContextError(f"{where}: the front matter is not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ContextError(f"{where}: the front matter must be a mapping of fields")
    return data, "".join(lines[end + 1 :])


def validate(front: Mapping[str, Any], folder_name: str) -> list[str]:
    """Problems with the front matter, each a sentence; an empty list means valid."""
    problems = []
    name = front.get("name")
    if not isinstance(name, str) or not name:
        problems.append("'name' is required (lowercase letters, digits and hyphens)")
    elif len(name) > NAME_MAX:
        problems.append(f"'name' is {len(name)} characters; at most {NAME_MAX}")
    elif not NAME.match(name):
        problems.append(
            f"'name' {name!r} may use only lowercase letters, digits and single hyphens, "
            "and may not start or end with a hyphen"
        )
    elif name != folder_name:
        problems.append(f"'name' {name!r} must equal the folder name {folder_name!r}")
    description = front.get("description")
    if not isinstance(description, str) or not description.strip():
        problems.append("'description' is required: what the skill does and when to use it")
    elif len(description) > DESCRIPTION_MAX:
        problems.append(f"'description' is {len(description)} characters; at most 1024")
    for key, limit in (("license", None), ("compatibility", COMPATIBILITY_MAX)):
        value = front.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            problems.append(f"'{key}' must be a non-empty string")
        elif limit is not None and len(value) > limit:
            problems.append(f"'{key}' is {len(value)} characters; at most {limit}")
    metadata = front.get("metadata")
    if metadata is not None and (
        not isinstance(metadata, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
    ):
        problems.append("'metadata' must map strings to strings (quote numbers: \"1.0\")")
    tools = front.get("allowed-tools")
    if tools is not None and not isinstance(tools, str):
        problems.append("'allowed-tools' must be a space-separated string, e.g. 'Read Bash(git:*)'")
    return problems


def parse_skill(folder: Path, source: str) -> Skill:
    """Read and validate a skill folder; raise ContextError naming the file and problem.
    A folder read before whose files are as they were then (by `_signature`) is not read
    again: every round scans the skills (the bundled ones, the repository's, the user's),
    and hashing each file and parsing the YAML of each front matter was about 1 ms a
    round for the two bundled skills alone."""
    try:
        signature = _signature(folder)
    except OSError:
        signature = None  # read it as ever, to say what is wrong
    key = (folder, source)
    with _parsed_lock:
        known = _parsed.get(key)
    if signature is not None and known is not None and known[0] == signature:
        return known[1]
    skill = _parse_skill(folder, source)
    # Not kept while a file is newer than a second: a write within the same tick of the
    # clock (a few ms) could leave size and times as they were (git's "racy" files).
    # Nor a folder holding a symlink: where it leads can change without any entry here
    # changing (a link to `../alias/...`, and `alias` pointed elsewhere).
    settled = time.time_ns() - 1_000_000_000
    if signature is not None and all(
        entry[5] < settled and not stat.S_ISLNK(entry[2]) for entry in signature
    ):
        with _parsed_lock:
            _parsed[key] = (signature, skill)
            while len(_parsed) > 256:
                del _parsed[next(iter(_parsed))]
    return skill


def _signature(folder: Path) -> tuple[tuple[str, int, int, int, int, int], ...]:
    """What a skill folder's entries are, as `lstat` sees them (its subfolders walked as
    `hash_folder` walks them): inode, mode, size, and the modification and change times
    in nanoseconds. A file written changes its change time, which no program can set
    back, so an unchanged signature is unchanged content."""
    entries = []
    for directory, subdirs, names in os.walk(folder, followlinks=False, onerror=_raise):
        subdirs[:] = sorted(d for d in subdirs if d not in _IGNORED)
        for name in [*subdirs, *sorted(names)]:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            entries.append(
                (
                    os.path.relpath(path, folder),
                    info.st_ino,
                    info.st_mode,
                    info.st_size,
                    info.st_mtime_ns,
                    info.st_ctime_ns,
                )
            )
    return tuple(entries)


def _raise(error: OSError) -> None:
    raise error


def _parse_skill(folder: Path, source: str) -> Skill:
    skill_md = folder / "SKILL.md"
    if not skill_md.is_file():
        raise ContextError(f"{skill_md}: missing; a skill folder needs a SKILL.md")
    files = hash_folder(folder)
    front, _ = split_front_matter(read_text(skill_md), folder)
    problems = validate(front, folder.name)
    if problems:
        raise ContextError(f"{skill_md}: {'; '.join(problems)}")
    unknown = sorted(set(front) - set(FIELDS))
    warnings = tuple(f"unknown front-matter field {key!r} ignored" for key in unknown)
    return Skill(
        name=front["name"],
        description=" ".join(front["description"].split()),
        source=source,
        folder=folder,
        files=files,
        license=front.get("license") or "",
        compatibility=front.get("compatibility") or "",
        metadata=dict(front.get("metadata") or {}),
        allowed_tools=tuple((front.get("allowed-tools") or "").split()),
        warnings=warnings,
    )


def hash_folder(folder: Path) -> dict[str, str]:
    """sha256 of every file in a skill folder, by relative path. Links out of the folder,
    and folders too large to be a skill, are refused."""
    root = folder.resolve()
    files: dict[str, str] = {}
    for directory, subdirs, names in os.walk(folder, followlinks=False):
        subdirs[:] = sorted(d for d in subdirs if d not in _IGNORED)
        for entry in [*subdirs, *names]:
            path = Path(directory, entry)
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                raise ContextError(f"{path}: links outside the skill folder; not read")
        for name in sorted(names):
            if name in _IGNORED:
                continue
            path = Path(directory, name)
            relative = path.relative_to(folder).as_posix()
            if len(files) >= MAX_FILES:
                raise ContextError(f"{folder}: more than {MAX_FILES} files; not a skill folder")
            if path.stat().st_size > MAX_FILE_BYTES:
                raise ContextError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
            files[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


# -- where skills come from ------------------------------------------------------------------
@dataclass(frozen=True)
class Source:
    kind: str  # repo | user | bundled
    folder: Path
    lock: Path | None  # None: trusted as installed (bundled)


def sources(repo: Path | None, checkout: Path | None = None) -> list[Source]:
    """Where skills are looked for. `repo` is where repo skills are read (a task's
    worktree); `checkout` is where the repository's lock is (the user's checkout: trusting
    there takes effect at once, committed or not). Both default to each other."""
    found = []
    if repo is not None or checkout is not None:
        read_from = repo or checkout
        assert read_from is not None
        lock = (checkout or read_from) / LOCK_NAME
        found += [Source("repo", read_from / folder, lock) for folder in REPO_FOLDERS]
    home = user_dir()
    found.append(Source("user", home / "skills", home / LOCK_NAME))
    found.append(Source("bundled", BUNDLED, None))
    return found


def scan(repo: Path | None, checkout: Path | None = None) -> list[SkillStatus]:
    """Every skill folder in every source, with its trust."""
    statuses: list[SkillStatus] = []
    taken: set[str] = set()
    for source in sources(repo, checkout):
        if not source.folder.is_dir():
            continue
        lock = read_lock(source.lock) if source.lock is not None else {}
        for folder in sorted(p for p in source.folder.iterdir() if p.is_dir()):
            if folder.name.startswith("."):
                continue
            status = _status(folder, source, lock)
            if status.name in taken and status.trust != "malformed":
                status = replace(status, trust="shadowed")
            taken.add(status.name)
            statuses.append(status)
    return statuses


def _status(folder: Path, source: Source, lock: Mapping[str, Mapping[str, str]]) -> SkillStatus:
    found = SkillStatus(folder.name, source.kind, folder, "malformed", lock=source.lock)
    try:
        skill = parse_skill(folder, source.kind)
    except (ContextError, OSError) as exc:
        return replace(found, problem=str(exc))
    found = replace(found, name=skill.name, skill=skill)
    if source.lock is None:
        return replace(found, trust="bundled")
    locked = lock.get(skill.name)
    if locked is None:
        return replace(found, trust="new")
    added = tuple(sorted(set(skill.files) - set(locked)))
    removed = tuple(sorted(set(locked) - set(skill.files)))
    changed = tuple(sorted(p for p in skill.files if p in locked and skill.files[p] != locked[p]))
    trust = "changed" if added or removed or changed else "trusted"
    return replace(found, trust=trust, added=added, removed=removed, changed=changed, locked=locked)


def find(statuses: Sequence[SkillStatus], name: str) -> SkillStatus:
    for status in statuses:
        if status.name == name and status.trust != "shadowed":
            return status
    known = ", ".join(sorted({s.name for s in statuses})) or "none"
    raise ContextError(f"No skill named {name!r}. Skills found: {known}.")


# -- the lock and the trusted copies ------------------------------------------------------------
def read_lock(path: Path) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ContextError(
            f"{path} is not a valid skills lock ({exc}). Fix it, or delete it and trust "
            "the skills again."
        ) from None
    skills = data.get("skills") if isinstance(data, dict) else None
    if not isinstance(skills, dict) or not all(
        isinstance(files, dict) and all(isinstance(v, str) for v in files.get("files", {}).values())
        for files in skills.values()
    ):
        raise ContextError(
            f'{path}: expected {{"skills": {{NAME: {{"files": {{PATH: SHA256}}}}}}}}.'
        )
    return {name: dict(entry.get("files", {})) for name, entry in skills.items()}


def trust(status: SkillStatus) -> SkillStatus:
    """Record the skill's files as trusted in its lock, and keep a copy of each file so a
    later change can be shown as a diff. Returns the new status."""
    if status.trust == "malformed" or status.skill is None:
        raise ContextError(f"Cannot trust {status.name}: {status.problem}. Fix it first.")
    lock_path = status.lock
    if lock_path is None:  # bundled: trusted as installed
        return status
    skill = status.skill
    for relative, digest in skill.files.items():
        keep_trusted_copy(digest, (status.folder / relative).read_bytes())
    raw: dict[str, Any] = {"version": 1, "skills": {}}
    if lock_path.exists():
        read_lock(lock_path)  # refuse to overwrite a malformed lock
        raw = json.loads(lock_path.read_text(encoding="utf-8"))
    raw.setdefault("skills", {})[skill.name] = {"source": status.source, "files": dict(skill.files)}
    raw["skills"] = dict(sorted(raw["skills"].items()))
    write_atomic(lock_path, json.dumps(raw, indent=2, sort_keys=True) + "\n")
    locked = dict(skill.files)
    return replace(status, trust="trusted", added=(), removed=(), changed=(), locked=locked)


def keep_trusted_copy(digest: str, content: bytes) -> None:
    store = user_dir() / "trusted"
    path = store / digest
    if not path.exists():
        store.mkdir(parents=True, exist_ok=True)
        write_atomic(path, content)


def trusted_copy(digest: str) -> bytes | None:
    try:
        content = (user_dir() / "trusted" / digest).read_bytes()
    except OSError:
        return None
    return content if hashlib.sha256(content).hexdigest() == digest else None


# -- what the agent reads --------------------------------------------------------------------
def read_pinned(skill: Mapping[str, Any], relative: str) -> bytes:
    """A file of a skill exactly as the task started with it: from the folder when it is
    unchanged, else from the trusted copy; ContextError when neither matches."""
    files: Mapping[str, str] = skill["files"]
    if relative not in files:
        listing = ", ".join(sorted(files))
        raise ContextError(
            f"The skill {skill['name']} has no file {relative!r}. Its files: {listing}."
        )
    digest = files[relative]
    path = Path(skill["folder"]) / relative
    try:
        content = path.read_bytes()
    except OSError:
        content = b""
    if hashlib.sha256(content).hexdigest() == digest:
        return content
    kept = trusted_copy(digest)
    if kept is not None:
        return kept
    raise ContextError(
        f"{relative} of the skill {skill['name']} changed since the task started, and no "
        "trusted copy of the version it started with is on this machine."
    )
