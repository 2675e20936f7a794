"""The user's environment, declared: what a task's commands and checks see besides the
worktree, and where they see it.

A check proves the agent's work only if it runs the agent's code the way the user's shell
would run the user's. So commands see the task's worktree *at the user's checkout's path*
(an editable install's `.pth`, a `sys.path` entry or an absolute path in a config then
resolves to the agent's code, and the checkout's own tracked files are not there), with
the checkout's untracked environment beside it:

- **by default**: git-ignored virtualenvs (a folder with `pyvenv.cfg`) and dependency
  folders (`node_modules`, `__pypackages__`), bound read-only; git-ignored files that
  tracked code imports (a generated `_version.py`, an in-place built extension module, an
  `*.egg-info` of a legacy develop install), copied into the worktree, where git still
  ignores them;
- **declared**: `[environment] include = [...]` / `exclude = [...]` in the repository's
  `.jupyter-delegate.toml` (paths and globs inside the repository) and in the user's
  `config.toml` (which may also name folders outside it, such as `~/.rustup`);
- **toolchains**: the interpreters and the folders on `PATH` (a virtualenv on `PATH` is
  bound whole; a version manager's `shims` folder brings its root), read-only.

Environment variables: a documented default set (`DEFAULT_PASS`), plus `[environment]
pass_env` and `--env NAME[=VALUE]`. Credentials never pass, by name or by value; what was
asked for and withheld, and what was simply not passed, is listed in the review.

Where the worktree cannot be seen at the checkout's path (the unsandboxed tier has no
mount namespace), the Python path is mended instead: every editable install that points
into the checkout is pointed at the worktree through `PYTHONPATH` (`python_path`), and the
review says so. Other absolute paths into the checkout cannot be mended there.

This module decides what is in the view; `sandbox.py` builds it (bubblewrap mounts) and
`workspace.py` owns git. `Environment` is plain data (picklable, journaled), so any runner
on any machine can build the same view from it.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import EnvironmentConfigError
from .workspace import pinned_argv, pinned_env

# Passed to every command when set in the user's environment (documented in the README).
DEFAULT_PASS = (
    "PATH",
    "LANG",
    "LANGUAGE",
    "TERM",
    "TZ",
    "USER",
    "LOGNAME",
    "SHELL",
    "VIRTUAL_ENV",
    "CONDA_PREFIX",
    "CONDA_DEFAULT_ENV",
    "JAVA_HOME",
)
# A name that says "credential" is never passed, whatever asked for it.
CREDENTIAL_NAME = re.compile(
    r"^(ANTHROPIC_|AWS_|AZURE_|GITHUB_|GH_|GITLAB_|GOOGLE_|HF_|HUGGING)|TOKEN|SECRET|PASSW|"
    r"CREDENTIAL|_KEY$|^KEY$|(^|_)AUTH(_|$)|COOKIE|SESSION|^SSH_AUTH_SOCK$|^JPY_",
    re.IGNORECASE,
)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
VENV_MARKER = "pyvenv.cfg"
DEPENDENCY_FOLDERS = ("node_modules", "__pypackages__")
IMPORTABLE_SUFFIXES = (".py", ".pyi", ".so", ".pyd")
# Folders a toolchain may not be bound as: they hold far more than tools.
_TOO_WIDE = frozenset(Path(p) for p in ("/", "/home", "/root", "/tmp", "/var", "/run", "/mnt"))


@dataclass(frozen=True)
class Declared:
    """What the user declared about a task's environment: the `[environment]` tables of
    the repository's `.jupyter-delegate.toml` and of the user's `config.toml`, and the
    call's `env` (`--env NAME` takes the value from the environment, `NAME=VALUE` sets it)."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    include_outside: tuple[str, ...] = ()  # the user's config only: absolute or ~ paths
    pass_env: tuple[str, ...] = ()
    env: Mapping[str, str | None] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["env"] = dict(self.env)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Declared:
        return cls(
            include=tuple(data.get("include", ())),
            exclude=tuple(data.get("exclude", ())),
            include_outside=tuple(data.get("include_outside", ())),
            pass_env=tuple(data.get("pass_env", ())),
            env=dict(data.get("env", {})),
        )


@dataclass(frozen=True)
class Item:
    """One untracked part of the checkout that commands see: `path` (relative to the
    checkout), `kind` (virtualenv, dependencies, generated, included) and `how` it is
    there: "read-only" (a folder bound from the checkout) or "copied" (a file)."""

    path: str
    kind: str
    how: str

    def __str__(self) -> str:
        return f"{self.path} ({self.how})"


@dataclass(frozen=True)
class Environment:
    """What commands and checks see besides the worktree, and their variables."""

    checkout: str  # where commands see the worktree: the user's checkout
    items: tuple[Item, ...] = ()
    toolchains: tuple[str, ...] = ()  # absolute folders outside the checkout, read-only
    variables: Mapping[str, str] = field(default_factory=dict)
    not_passed: tuple[str, ...] = ()  # set in the user's environment, not asked for
    withheld: tuple[str, ...] = ()  # asked for, withheld as credentials
    python_path: tuple[str, ...] = ()  # checkout-relative import roots of editable installs

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["items"] = [asdict(i) for i in self.items]
        data["variables"] = sorted(self.variables)  # names only: values stay out of journals
        return data


def ran_with(data: Mapping[str, Any]) -> list[str]:
    """The review's lines on what the checks ran with, from an `Environment.to_dict()`
    (as the checks event journals it): the environment's items, the variables passed,
    withheld and not passed (names only)."""
    if not data:
        return []
    items = [f"{i['path']} ({i['how']})" for i in data.get("items", [])]
    lines = [
        "checks ran with: "
        + (", ".join(items) or "the task's files only (no untracked files of yours)")
    ]
    passed = sorted(k for k in data.get("variables", []) if k != "HOME")
    lines.append("variables passed: " + (", ".join(passed) or "none"))
    if data.get("withheld"):
        lines.append("withheld as credentials: " + ", ".join(data["withheld"]))
    not_passed = list(data.get("not_passed", []))
    if not_passed:
        shown = ", ".join(not_passed[:12])
        more = f" and {len(not_passed) - 12} more" if len(not_passed) > 12 else ""
        lines.append(f"not passed: {shown}{more} (--env NAME or [environment] pass_env)")
    return lines


def read_declared(
    repo_config: Mapping[str, Any],
    user_config: Mapping[str, Any],
    *,
    repo_source: str,
    user_source: str,
    env: Iterable[str] = (),
) -> Declared:
    """The declared environment from the two config files' `[environment]` tables and
    the call's `--env` options; raises EnvironmentConfigError naming the file and key."""
    repo = _table(repo_config, repo_source)
    user = _table(user_config, user_source)
    include = [*_strings(repo, "include", repo_source), *_strings(user, "include", user_source)]
    outside = [p for p in include if p.startswith(("/", "~"))]
    bad = [p for p in _strings(repo, "include", repo_source) if p.startswith(("/", "~"))]
    if bad:
        raise EnvironmentConfigError(
            f"{repo_source}: [environment] include may name only paths inside the repository "
            f"(got {', '.join(bad)}). Folders outside it go in your own config.toml."
        )
    for path in include:
        if ".." in Path(path).parts:
            raise EnvironmentConfigError(f"[environment] include: {path!r} must not contain '..'.")
    pass_env = [*_strings(repo, "pass_env", repo_source), *_strings(user, "pass_env", user_source)]
    for name in pass_env:
        if not _NAME.match(name):
            raise EnvironmentConfigError(
                f"[environment] pass_env: {name!r} is not a variable name (e.g. PYTHONPATH)."
            )
    return Declared(
        include=tuple(p for p in include if p not in outside),
        exclude=tuple(
            [*_strings(repo, "exclude", repo_source), *_strings(user, "exclude", user_source)]
        ),
        include_outside=tuple(outside),
        pass_env=tuple(dict.fromkeys(pass_env)),
        env=parse_env_options(env),
    )


def parse_env_options(options: Iterable[str]) -> dict[str, str | None]:
    """`--env NAME` (the value comes from the environment) or `--env NAME=VALUE`."""
    parsed: dict[str, str | None] = {}
    for option in options:
        if not isinstance(option, str):
            raise EnvironmentConfigError(
                f"env entries must be strings like 'NAME=VALUE', got {option!r}."
            )
        name, sep, value = option.partition("=")
        name = name.strip()
        if not _NAME.match(name):
            raise EnvironmentConfigError(
                f"--env {option!r}: {name!r} is not a variable name. Write --env NAME "
                "(its value is taken from your environment) or --env NAME=VALUE."
            )
        parsed[name] = value if sep else None
    return parsed


def _table(config: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    from .policy import config_table

    keys = ("include", "exclude", "pass_env")
    return config_table(config, "environment", keys, source, EnvironmentConfigError)


def _strings(table: Mapping[str, Any], key: str, source: str) -> list[str]:
    value = table.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise EnvironmentConfigError(
            f"{source}: [environment] {key} must be a list of strings, "
            f'e.g. {key} = ["{_EXAMPLE[key]}"].'
        )
    return [v.strip() for v in value]


_EXAMPLE = {"include": "build/", "exclude": ".venv", "pass_env": "PYTHONPATH"}


# -- discovery -----------------------------------------------------------------------------
def discover(
    checkout: Path,
    declared: Declared,
    *,
    environ: Mapping[str, str] | None = None,
    python_prefixes: Iterable[str] = (),
) -> Environment:
    """What commands see beside the worktree for the user's checkout `checkout` (the
    user's repository root), from git's view of its untracked files and the environment
    `environ` (default: this process's)."""
    environ = dict(os.environ if environ is None else environ)
    checkout = checkout.resolve()
    tracked = _git_lines(checkout, "ls-files", "-z", "--cached")
    tracked_dirs = {str(Path(p).parent) for p in tracked}
    ignored = _git_lines(
        checkout, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory"
    )
    items = [
        item
        for entry in ignored
        if (item := _default_item(checkout, entry, tracked_dirs, tracked)) is not None
    ]
    items += _included(checkout, declared.include, set(tracked), {i.path for i in items})
    items = _without_excluded(items, declared.exclude)
    items.sort(key=lambda i: i.path)
    variables, not_passed, withheld = _variables(environ, declared)
    if environ.get("HOME"):
        variables["HOME"] = environ["HOME"]
    toolchains = _toolchains(checkout, environ, items, declared.include_outside, python_prefixes)
    return Environment(
        checkout=str(checkout),
        items=tuple(items),
        toolchains=tuple(str(t) for t in toolchains),
        variables=variables,
        not_passed=tuple(not_passed),
        withheld=tuple(withheld),
        python_path=tuple(_editable_roots(checkout, toolchains, items)),
    )


def check_declared(checkout: Path, declared: Declared) -> None:
    """Raise EnvironmentConfigError for what `discover` would refuse in `declared` (an
    include naming a folder that holds tracked files), without discovering the rest: what
    `submit` checks, so that a bad declaration fails there, before anything is made. With
    no include there is nothing to refuse and nothing is read."""
    if not declared.include:
        return
    checkout = checkout.resolve()
    tracked = _git_lines(checkout, "ls-files", "-z", "--cached")
    _included(checkout, declared.include, set(tracked), set())


def _git_lines(cwd: Path, *args: str) -> list[str]:
    """A git listing of the user's checkout, with the harness's pinned configuration."""
    done = subprocess.run(
        pinned_argv(*args),
        cwd=cwd,
        capture_output=True,
        check=False,
        env=pinned_env(),
    )
    if done.returncode != 0:
        raise EnvironmentConfigError(
            f"git could not list {cwd}: {done.stderr.decode(errors='replace').strip()}"
        )
    return [p for p in done.stdout.decode(errors="surrogateescape").split("\0") if p]


def _default_item(
    checkout: Path, entry: str, tracked_dirs: set[str], tracked: list[str]
) -> Item | None:
    path = entry.rstrip("/")
    full = checkout / path
    name = full.name
    if entry.endswith("/"):
        if (full / VENV_MARKER).is_file():
            return Item(path, "virtualenv", "read-only")
        if name in DEPENDENCY_FOLDERS:
            return Item(path, "dependencies", "read-only")
        if name.endswith(".egg-info") and str(Path(path).parent) in tracked_dirs:
            return Item(path, "generated", "read-only")
        return None
    if (
        full.suffix in IMPORTABLE_SUFFIXES
        and str(Path(path).parent) in tracked_dirs
        and full.is_file()
        and not full.is_symlink()
        and _imported(checkout, path, tracked)
    ):
        return Item(path, "generated", "copied")
    return None


def _imported(checkout: Path, path: str, tracked: list[str]) -> bool:
    """Whether tracked code names the module `path` (its folder's modules, or a build
    config naming the file): a generated `_version.py`, not a stray scratch file."""
    module = Path(path).name.split(".", 1)[0]
    folder = str(Path(path).parent)
    word = re.compile(rf"\b{re.escape(module)}\b")
    configs = ("pyproject.toml", "setup.py", "setup.cfg", "hatch.toml")
    for file in tracked:
        here = str(Path(file).parent) == folder and file.endswith((".py", ".pyi"))
        if not here and Path(file).name not in configs:
            continue
        try:
            text = (checkout / file).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        if (here and word.search(text)) or (not here and path in text):
            return True
    return False


def _included(
    checkout: Path, patterns: Iterable[str], tracked: set[str], known: set[str]
) -> list[Item]:
    found: list[Item] = []
    for pattern in patterns:
        matches = sorted(checkout.glob(pattern.rstrip("/"))) if pattern.strip("/") else []
        if not matches:
            continue  # an include that matches nothing yet (a build output) is no error
        for full in matches:
            path = full.relative_to(checkout).as_posix()
            if path in known or path == ".git" or path.startswith(".git/"):
                continue
            if path in tracked:
                continue  # the worktree has its own copy of a tracked file
            if full.is_dir():
                inside = [t for t in tracked if t.startswith(path + "/")]
                if inside:
                    raise EnvironmentConfigError(
                        f"[environment] include {pattern!r}: {path}/ holds tracked files "
                        f"({inside[0]}, ...), which the worktree has in the agent's version. "
                        "Name the untracked files or folders inside it instead."
                    )
                found.append(Item(path, "included", "read-only"))
            elif full.is_file():
                found.append(Item(path, "included", "copied"))
            known.add(path)
    return found


def _without_excluded(items: list[Item], patterns: Iterable[str]) -> list[Item]:
    patterns = list(patterns)
    if not patterns:
        return items
    import pathspec

    spec = pathspec.PathSpec.from_lines("gitignore", patterns)
    return [i for i in items if not spec.match_file(i.path) and not spec.match_file(i.path + "/")]


def bare(worktree: Path, environ: Mapping[str, str] | None = None) -> Environment:
    """The environment of a command with nothing declared: the toolchains on PATH and
    this interpreter's, and the default variables, with the worktree seen where it is."""
    import sys

    environ = dict(os.environ if environ is None else environ)
    variables, not_passed, withheld = _variables(environ, Declared())
    if environ.get("HOME"):
        variables["HOME"] = environ["HOME"]
    toolchains = _toolchains(worktree, environ, [], (), (sys.prefix, sys.base_prefix))
    return Environment(
        checkout=str(worktree),
        toolchains=tuple(str(t) for t in toolchains),
        variables=variables,
        not_passed=tuple(not_passed),
        withheld=tuple(withheld),
    )


def _variables(
    environ: Mapping[str, str], declared: Declared
) -> tuple[dict[str, str], list[str], list[str]]:
    from .journal import looks_secret

    variables: dict[str, str] = {}
    withheld: list[str] = []
    for name in DEFAULT_PASS:
        if name in environ:
            variables[name] = environ[name]
    variables.update({n: v for n, v in environ.items() if n.startswith("LC_")})
    asked: dict[str, str | None] = {n: None for n in declared.pass_env}
    asked.update(declared.env)
    for name, value in asked.items():
        value = environ.get(name) if value is None else value
        if value is None:
            continue
        if CREDENTIAL_NAME.search(name) or looks_secret(value):
            withheld.append(name)
            continue
        variables[name] = value
    for name in list(variables):  # the defaults too: a PATH holding a token is withheld
        if name not in asked and (CREDENTIAL_NAME.search(name) or looks_secret(variables[name])):
            del variables[name]
    not_passed = sorted(  # HOME always is (an empty one, in the sandbox)
        n
        for n in environ
        if n not in variables and n not in asked and n != "HOME" and not CREDENTIAL_NAME.search(n)
    )
    return variables, not_passed, sorted(withheld)


def _toolchains(
    checkout: Path,
    environ: Mapping[str, str],
    items: list[Item],
    outside: Iterable[str],
    python_prefixes: Iterable[str],
) -> list[Path]:
    """Folders outside the checkout that commands need: interpreter prefixes, the PATH's
    folders (a venv on PATH whole, a version manager's root for its shims), the base
    interpreters of the repository's own venvs, and the user's declared folders."""
    candidates: list[Path] = []
    for prefix in python_prefixes:
        candidates.append(Path(prefix))
    for name in ("VIRTUAL_ENV", "CONDA_PREFIX", "JAVA_HOME"):
        if environ.get(name):
            candidates.append(Path(environ[name]))
    for entry in environ.get("PATH", "").split(os.pathsep):
        if not entry or not os.path.isabs(entry):
            continue
        folder = Path(entry)
        if (folder.parent / VENV_MARKER).is_file():
            candidates.append(folder.parent)  # a venv reached through PATH, whole
            candidates.extend(_venv_home(folder.parent))
        elif folder.name == "shims":
            candidates.append(folder.parent)  # pyenv, rbenv, nodenv: the shims need it
        else:
            candidates.append(folder)
    for item in items:
        if item.kind == "virtualenv":
            candidates.extend(_venv_home(checkout / item.path))
    if environ.get("HOME"):  # `pip install --user` packages (user site-packages)
        candidates += Path(environ["HOME"]).glob(".local/lib/python*/site-packages")
    for entry in outside:
        candidates.append(Path(os.path.expanduser(entry)))
    found: list[Path] = []
    for candidate in candidates:
        try:
            path = candidate.resolve()
        except OSError:
            continue
        if not path.is_dir() or path in _TOO_WIDE or _is_system(path):
            continue
        if path == checkout or path.is_relative_to(checkout) or checkout.is_relative_to(path):
            continue  # the checkout's own folders come from the worktree or as items
        home = Path(environ.get("HOME", "/nonexistent"))
        if path == home or home.is_relative_to(path):
            continue
        found.append(path)
    return _outermost(found)


def _venv_home(venv: Path) -> list[Path]:
    """A virtualenv's base interpreter prefix (`home` in pyvenv.cfg is its bin folder)."""
    try:
        text = (venv / VENV_MARKER).read_text(errors="replace")
    except OSError:
        return []
    match = re.search(r"^\s*home\s*=\s*(.+?)\s*$", text, re.MULTILINE)
    if not match:
        return []
    home = Path(match.group(1))
    return [home.parent if home.name == "bin" else home]


# The system folders every command sees, read-only (sandbox.py; a symlink, as /bin is on a
# merged-usr system, as the same symlink); so never bound again as a toolchain.
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc")


def _is_system(path: Path) -> bool:
    """Whether `path` (absolute, resolved) is a system folder or inside one. By its text:
    `Path.is_relative_to` made two paths a comparison, half of `_toolchains`' time."""
    text = str(path)
    return any(text == s or text.startswith(s + "/") for s in SYSTEM_FOLDERS)


def _outermost(paths: list[Path]) -> list[Path]:
    kept: list[Path] = []
    for path in sorted(set(paths), key=lambda p: len(p.parts)):
        if not any(path.is_relative_to(k) for k in kept):
            kept.append(path)
    return sorted(kept)


def _editable_roots(checkout: Path, toolchains: list[Path], items: list[Item]) -> list[str]:
    """The checkout-relative folders that editable installs put on `sys.path` (a `.pth`
    line, or a setuptools `__editable__` finder's mapping), in the environments commands
    use: where an unsandboxed command must find the worktree's code instead."""
    roots: list[str] = []
    prefixes = [*toolchains, *(checkout / i.path for i in items if i.kind == "virtualenv")]
    for prefix in prefixes:
        for site in prefix.glob("lib/python*/site-packages"):
            for pth in sorted(site.glob("*.pth")):
                roots += _pth_roots(pth, checkout)
            for finder in sorted(site.glob("__editable__*finder.py")):
                roots += _finder_roots(finder, checkout)
    return list(dict.fromkeys(roots))


def _inside(path: str, checkout: Path) -> str | None:
    try:
        relative = Path(path).resolve().relative_to(checkout)
    except (ValueError, OSError):
        return None
    return relative.as_posix()


def _pth_roots(pth: Path, checkout: Path) -> list[str]:
    try:
        lines = pth.read_text(errors="replace").splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith(("#", "import ", "import\t")):
            continue
        relative = _inside(line, checkout)
        if relative is not None:
            found.append(relative)
    return found


def _finder_roots(finder: Path, checkout: Path) -> list[str]:
    try:
        text = finder.read_text(errors="replace")
    except OSError:
        return []
    match = re.search(r"^MAPPING\s*(?::[^=]*)?=\s*(\{.*?\})\s*$", text, re.MULTILINE | re.DOTALL)
    if not match:
        return []
    try:
        mapping = ast.literal_eval(match.group(1))
    except (ValueError, SyntaxError):
        return []
    found = []
    for location in mapping.values() if isinstance(mapping, dict) else ():
        if isinstance(location, str):
            relative = _inside(str(Path(location).parent), checkout)
            if relative is not None:
                found.append(relative)
    return found


# -- putting it in a worktree ----------------------------------------------------------------
def furnish(environment: Environment, worktree: Path, *, mounts: bool) -> Environment:
    """Put the environment's items in `worktree`: copy its files; for its folders make
    the mount points (`mounts`: the sandbox binds them read-only) or, unsandboxed, a
    folder of symlinks to the checkout's folder's entries (a symlink in the folder's place
    would not be ignored by a `folder/` pattern, and would be committed). An item git
    does not ignore in the worktree is left out (the harness commits what git sees there,
    and it is not the agent's work): the environment returned is what was put there."""
    checkout = Path(environment.checkout)
    names = {
        item.path: item.path + ("/" if item.how == "read-only" else "")
        for item in environment.items
    }
    ignored = _ignored_in(worktree, list(names.values()))
    kept = []
    for item in environment.items:
        if names[item.path] not in ignored:
            continue
        kept.append(item)
        source, target = checkout / item.path, worktree / item.path
        if item.how == "copied":
            if source.is_file() and not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        elif not target.is_symlink():
            target.mkdir(parents=True, exist_ok=True)
            if not mounts:  # a folder of links: git ignores it as the folder it is
                for child in source.iterdir():
                    if (
                        not (target / child.name).exists()
                        and not (target / child.name).is_symlink()
                    ):
                        (target / child.name).symlink_to(child)
    return replace(environment, items=tuple(kept))


def _ignored_in(worktree: Path, paths: list[str]) -> set[str]:
    """Which of `paths` git ignores in `worktree` (tracked paths are not ignored)."""
    if not paths:
        return set()
    done = subprocess.run(
        pinned_argv("check-ignore", "-z", "--stdin"),
        cwd=worktree,
        input="\0".join(paths).encode(errors="surrogateescape") + b"\0",
        capture_output=True,
        check=False,
        env=pinned_env(),
    )
    if done.returncode not in (0, 1):
        raise EnvironmentConfigError(
            f"git check-ignore failed in {worktree}: {done.stderr.decode(errors='replace')}"
        )
    return {p for p in done.stdout.decode(errors="surrogateescape").split("\0") if p}


def declared_environment(checkout: Path, env: Iterable[str] = ()) -> Declared:
    """The environment declared for tasks of the repository at `checkout`: its
    `.jupyter-delegate.toml`, the user's `config.toml`, and the call's `env`."""
    from .home import user_dir
    from .policy import REPO_CONFIG, read_toml

    repo_file, user_file = checkout / REPO_CONFIG, user_dir() / "config.toml"
    return read_declared(
        read_toml(repo_file),
        read_toml(user_file),
        repo_source=str(repo_file),
        user_source=str(user_file),
        env=env,
    )


# -- naming an environment problem -----------------------------------------------------------
_NO_MODULE = re.compile(r"(?:ModuleNotFoundError|ImportError): No module named '([\w.]+)'")
_NOT_FOUND = re.compile(r"(?:^|\n)(?:bash: )?(?:line \d+: )?([^\s:]+): (?:command )?not found")


def diagnose(run: Any, environment: Environment) -> str:
    """For a failing check, a sentence naming an environment problem when its output shows
    one (a module or a command the check could not find), with the fix; else "". `run` is
    the sandbox's CommandResult."""
    output = run.output
    missing = _NO_MODULE.search(output)
    if missing:
        return _missing_module(missing.group(1).split(".")[0], environment, run.tier)
    if run.exit_code == 127:
        command = _NOT_FOUND.search(output)
        name = command.group(1) if command else "a command"
        return (
            f"`{name}` is not found on the PATH the checks see ({_path_summary(environment)}). "
            "If it is installed in a folder the sandbox does not show, add that folder to "
            "[environment] include in ~/.jupyter/delegate/config.toml; if it is in the "
            "repository's own virtualenv, run it as .venv/bin/NAME or activate the venv first."
        )
    return ""


def _path_summary(environment: Environment) -> str:
    path = environment.variables.get("PATH", "")
    entries = path.split(os.pathsep)[:4]
    return "PATH=" + os.pathsep.join(entries) + ("..." if path.count(os.pathsep) > 3 else "")


def _missing_module(module: str, environment: Environment, tier: str) -> str:
    """Why `module` may be importable in the user's shell but not in the check."""
    checkout = Path(environment.checkout)
    origin = _user_origin(module, environment)
    what = f"`{module}` is not importable in the checks' environment"
    if origin is None:
        declared_path = os.environ.get("PYTHONPATH")
        if declared_path and "PYTHONPATH" not in environment.variables:
            return (
                f"{what}; your PYTHONPATH ({declared_path}) is not passed to checks. Pass it "
                'with --env PYTHONPATH or [environment] pass_env = ["PYTHONPATH"].'
            )
        return (
            f"{what}, nor from your own Python here: install it in the environment the "
            "check uses (the virtualenv on your PATH, or the repository's .venv)."
        )
    location = Path(origin)
    if location.is_relative_to(checkout):
        relative = location.relative_to(checkout).as_posix()
        covered = [i.path for i in environment.items if (relative + "/").startswith(i.path + "/")]
        if covered:
            return f"{what}, though your Python imports it from {relative} ({covered[0]})."
        return (
            f"{what}: your Python imports it from {relative} in your checkout. The checks see "
            "the task's committed files and the environment the review lists: if that file "
            "is generated or untracked, add it to [environment] include in "
            ".jupyter-delegate.toml."
        )
    seen = [Path(t) for t in environment.toolchains]
    if tier == "bubblewrap" and not any(location.is_relative_to(t) for t in seen):
        return (
            f"{what}: your Python imports it from {origin}, a folder the sandbox does not "
            "show. Add that folder to [environment] include in ~/.jupyter/delegate/config.toml, "
            "or put its virtualenv on PATH."
        )
    return f"{what}, though your Python imports it from {origin}."


def _user_origin(module: str, environment: Environment) -> str | None:
    """Where the user's own `python3` (first on their PATH) finds `module`, looked up
    without importing it, or None."""
    python = shutil.which("python3", path=os.environ.get("PATH")) or shutil.which(
        "python", path=os.environ.get("PATH")
    )
    if python is None:
        return None
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.find_spec({module!r})\n"
        "print(spec.origin or (list(spec.submodule_search_locations or []) or [''])[0]"
        " if spec else '')\n"
    )
    try:
        done = subprocess.run(
            [python, "-c", script],
            cwd=environment.checkout,
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    origin = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    return origin or None
