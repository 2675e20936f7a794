"""The repository's conventions: AGENTS.md files from the root down to the task's scope.

For each directory from the repository root to each directory the scope names, the
directory's `AGENTS.override.md` is used when it exists, else its `AGENTS.md`. Files are
given to the agent root first, nearest last, and the prompt says the nearer one wins
where they conflict. The whole is capped (`LIMIT` characters); a cut file says so.
Nothing here is authority: the prompt hands the text over as data, and test commands
named in it are only *offered* as checks (`suggested_checks`), shown wherever they are
used.

A file that is a symlink out of the repository is not read (it could point at a secret).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

LIMIT = 16_000
NAMES = ("AGENTS.override.md", "AGENTS.md")
MAX_SUGGESTED = 5

# The commands that run a project's tests, as AGENTS.md files name them.
_TEST_COMMAND = re.compile(
    r"""^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*        # leading VAR=value assignments
    (?:uv\s+run\s+|poetry\s+run\s+|hatch\s+run\s+(?:\S+:)?|pdm\s+run\s+)?
    (?:python3?\s+-m\s+)?
    (?:pytest|py\.test|tox|nox|unittest
      |make\s+(?:test|check)\S*
      |(?:npm|pnpm|yarn|bun)\s+(?:run\s+)?test\S*
      |npx\s+(?:vitest|jest)|vitest|jest
      |cargo\s+test|go\s+test|mvn\s+test|gradle\s+test|\./gradlew\s+test|ctest|deno\s+test)
    (?:\s|$)""",
    re.VERBOSE,
)
_CODE_SPAN = re.compile(r"`([^`\n]+)`")
_FENCE = re.compile(r"^\s*(```|~~~)")


@dataclass(frozen=True)
class ConventionFile:
    """One AGENTS.md as the task read it."""

    path: str  # relative to the repository root
    text: str
    sha256: str
    cut: bool = False

    @property
    def folder(self) -> str:
        parent = str(PurePosixPath(self.path).parent)
        return "" if parent == "." else parent


@dataclass(frozen=True)
class Conventions:
    files: tuple[ConventionFile, ...] = ()
    leaves: tuple[str, ...] = ("",)  # the deepest folder of each scope entry

    @property
    def cut(self) -> bool:
        return any(f.cut for f in self.files)

    def prompt_text(self) -> str:
        """The files as the system prompt gives them: root first, nearest last."""
        parts = []
        for file in self.files:
            parts += [f'<agents_md path="{file.path}">', file.text.strip(), "</agents_md>"]
        return "\n".join(parts)

    def suggested_checks(self) -> tuple[str, ...]:
        """For each scope folder, the test commands of the nearest AGENTS.md that names
        any, run from that file's folder."""
        found: list[str] = []
        nearest_first = sorted(self.files, key=lambda f: -len(PurePosixPath(f.path).parts))
        for leaf in self.leaves:
            for file in nearest_first:
                commands = named_test_commands(file.text) if _inside(leaf, file.folder) else []
                if commands:
                    for command in commands:
                        full = f"cd {file.folder} && {command}" if file.folder else command
                        if full not in found:
                            found.append(full)
                    break
        return tuple(found[:MAX_SUGGESTED])


def _inside(child: str, parent: str) -> bool:
    """Whether folder `child` is `parent` or below it ("" is the root)."""
    return parent == "" or child == parent or child.startswith(parent + "/")


def scope_chains(root: Path, scope: Sequence[str]) -> list[list[str]]:
    """For each scope entry, the folders from the root down to it (root is ""). A glob or
    a file ends the walk at the folder above it."""
    chains = []
    for entry in scope or ("",):
        chain, parts = [""], []
        for part in PurePosixPath(entry.strip("/")).parts:
            parts.append(part)
            folder = "/".join(parts)
            if any(ch in part for ch in "*?[") or not (root / folder).is_dir():
                break
            chain.append(folder)
        chains.append(chain)
    return chains


def discover(root: Path, scope: Sequence[str] = ()) -> list[Path]:
    """The AGENTS.md (or AGENTS.override.md) of each folder from the root to the scope."""
    root = root.resolve()
    found = []
    folders = dict.fromkeys(f for chain in scope_chains(root, scope) for f in chain)
    for folder in folders:
        directory = root / folder if folder else root
        for name in NAMES:
            candidate = directory / name
            if _readable_inside(root, candidate):
                found.append(candidate)
                break
    return found


def read_conventions(root: Path, scope: Sequence[str] = (), limit: int = LIMIT) -> Conventions:
    """Read the discovered files within `limit` characters, nearest files first served."""
    root = root.resolve()
    paths = discover(root, scope)
    texts = {path: path.read_text(encoding="utf-8", errors="replace") for path in paths}
    left = limit
    kept: dict[Path, ConventionFile] = {}
    for path in reversed(paths):  # the nearest file is the most specific: it goes first
        text = texts[path]
        relative = path.relative_to(root).as_posix()
        digest = hashlib.sha256(text.encode()).hexdigest()
        cut = len(text) > left
        if cut:
            shown = text[: max(left, 0)]
            text = shown + (
                f"\n[{relative} cut: {len(texts[path]) - len(shown)} of "
                f"{len(texts[path])} characters not shown]"
            )
        left -= len(text)
        kept[path] = ConventionFile(relative, text, digest, cut)
    leaves = tuple(dict.fromkeys(chain[-1] for chain in scope_chains(root, scope)))
    return Conventions(tuple(kept[path] for path in paths), leaves)


def named_test_commands(markdown: str) -> list[str]:
    """Commands in code spans and code blocks that run tests (pytest, npm test, ...)."""
    candidates: list[str] = []
    in_fence = False
    for line in markdown.splitlines():
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            candidates.append(line.strip().removeprefix("$ "))
        else:
            candidates += _CODE_SPAN.findall(line)
    commands = []
    for candidate in candidates:
        command = candidate.strip()
        if _TEST_COMMAND.match(command) and command not in commands:
            commands.append(command)
    return commands


def _readable_inside(root: Path, path: Path) -> bool:
    try:
        resolved = path.resolve()
    except OSError:
        return False
    return resolved.is_file() and resolved.is_relative_to(root)
