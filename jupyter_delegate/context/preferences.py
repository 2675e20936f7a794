"""The user's preferences: what they care about, in plain sentences, taught once.

Two files of Markdown bullets, one sentence each, that the user may also edit by hand:

    user  ~/.jupyter/delegate/preferences.md            every repository
    repo  <git common dir>/delegate/preferences.md      one repository; outside every
                                                         worktree, so no agent can edit it

A preference's id is the first 6 hex digits of the sha256 of its text: stable while
others are added or removed. Both sets go into each task's system prompt (as the user's
words, below the harness's rules) and into the task's record.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import ContextError
from ..home import user_dir, write_atomic

FILE_NAME = "preferences.md"
MAX_CHARS = 500
HEADER = (
    "# Preferences for jupyter-delegate\n"
    "<!-- One preference per bullet. Edit freely; `jupyter delegate prefs` lists them. -->\n\n"
)


@dataclass(frozen=True)
class Preference:
    text: str
    scope: str  # user | repo

    @property
    def id(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:6]

    def to_dict(self) -> dict[str, str]:
        return {"id": self.id, "scope": self.scope, "text": self.text}


def preferences_file(state_dir: Path | None) -> Path:
    """The user's file (`state_dir` None) or a repository's (its delegate state dir)."""
    return (state_dir if state_dir is not None else user_dir()) / FILE_NAME


def read_preferences(state_dir: Path | None = None) -> list[Preference]:
    """The user's preferences, then the repository's when `state_dir` is given."""
    found = _read(preferences_file(None), "user")
    if state_dir is not None:
        found += _read(preferences_file(state_dir), "repo")
    return found


def _read(path: Path, scope: str) -> list[Preference]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        raise ContextError(
            f"Cannot read the preferences in {path} ({exc}); fix or remove it."
        ) from None
    found: list[Preference] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "<!--")):
            continue
        sentence = line.removeprefix("- ").removeprefix("* ").strip()
        if sentence and sentence not in [p.text for p in found]:
            found.append(Preference(sentence, scope))
    return found


def add_preference(text: str, state_dir: Path | None = None) -> Preference:
    """Remember one preference (user-wide, or for the repository of `state_dir`)."""
    if not isinstance(text, str) or not text.strip():
        raise ContextError("A preference needs words, e.g. 'Use pathlib, not os.path.'")
    sentence = " ".join(text.split())
    if len(sentence) > MAX_CHARS:
        raise ContextError(
            f"A preference is one sentence of at most {MAX_CHARS} characters; this one has "
            f"{len(sentence)}. Split it, or put longer guidance in AGENTS.md or a skill."
        )
    if sentence.startswith(("#", "<!--")):
        raise ContextError("A preference cannot start with '#' or '<!--' (Markdown headings).")
    scope = "user" if state_dir is None else "repo"
    preference = Preference(sentence, scope)
    path = preferences_file(state_dir)
    if any(p.text == sentence for p in _read(path, scope)):
        return preference
    existing = path.read_text(encoding="utf-8") if path.exists() else HEADER
    if not existing.endswith("\n"):
        existing += "\n"
    write_atomic(path, existing + f"- {sentence}\n")
    return preference


def remove_preference(pref_id: str, state_dir: Path | None = None) -> Preference:
    """Forget a preference by its id (or its exact text), in the user's file and, when
    `state_dir` is given, the repository's."""
    wanted = pref_id.strip()
    for path, scope in _files(state_dir):
        for preference in _read(path, scope):
            if wanted in (preference.id, preference.text):
                lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
                kept = [line for line in lines if not _is_line_of(line, preference.text)]
                write_atomic(path, "".join(kept))
                return preference
    known = ", ".join(p.id for p in read_preferences(state_dir)) or "none"
    raise ContextError(
        f"No preference {pref_id!r}. Known ids: {known} (listing the preferences shows "
        "each id beside its text)."
    )


def _files(state_dir: Path | None) -> list[tuple[Path, str]]:
    files = [(preferences_file(None), "user")]
    if state_dir is not None:
        files.insert(0, (preferences_file(state_dir), "repo"))
    return files


def _is_line_of(line: str, text: str) -> bool:
    return line.strip().removeprefix("- ").removeprefix("* ").strip() == text
