"""Skills, preferences and AGENTS.md checks from the command line (`jupyter delegate
skills|prefer|prefs`, `run --no-suggested-checks`, `request-changes --remember`) and from
the magics (`%delegate skills|prefer|prefs`), asserting what is written and shown."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import git
import pytest
from IPython.core.interactiveshell import InteractiveShell
from IPython.utils.capture import capture_output

from conftest import CHECK, FIX_TURNS, SANDBOX, Factory, commit_all
from jupyter_delegate.cli import main
from jupyter_delegate.errors import ContextError, DelegateError, RepoError
from jupyter_delegate.home import user_dir
from jupyter_delegate.notebook.magics import (
    DelegateMagics,
    MagicUsageError,
    PreferenceList,
    SkillCard,
    SkillList,
    TrustReport,
)
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario

# -- helpers ------------------------------------------------------------------------------------


def cli(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = main(list(argv), out=out)
    return code, out.getvalue()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def make_skill(
    root: Path,
    name: str = "fix-calc",
    description: str = "Fixes calc.py. Use when add() is wrong.",
    extra: str = "",
) -> Path:
    """A repo skill under .agents/skills/NAME with a script beside its SKILL.md."""
    folder = root / ".agents" / "skills" / name
    write(
        folder / "SKILL.md",
        f"---\nname: {name}\ndescription: {description}\n{extra}---\n\n"
        f"# {name}\n\nRun scripts/run.sh first.\n",
    )
    write(folder / "scripts" / "run.sh", "echo old\n")
    return folder


def lock_of(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((root / "skills.lock").read_text())
    return data


@pytest.fixture
def outside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A current directory that is in no git repository."""
    folder = tmp_path / "not-a-repo"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


@pytest.fixture
def shell(make_manager: Factory) -> Iterator[InteractiveShell]:
    ip = InteractiveShell.instance()
    manager, _ = make_manager()
    ip.register_magics(DelegateMagics(ip, manager=manager))
    yield ip
    InteractiveShell.clear_instance()


def magic(ip: InteractiveShell, line: str) -> Any:
    return ip.run_line_magic("delegate", line)


# -- skills from the command line -----------------------------------------------------------------


def test_skills_list_outside_a_repository_shows_the_bundled_skills(outside: Path) -> None:
    code, text = cli("skills", "list")
    assert code == 0 and cli("skills") == (code, text)  # list is the default
    assert "Not in a git repository: the user's and bundled skills only" in text
    rows = {line.split()[0]: line.split()[1:3] for line in text.splitlines()[2:]}
    assert rows == {
        "careful-refactor": ["bundled", "bundled"],
        "test-first": ["bundled", "bundled"],
    }

    code, listing = cli("skills", "list", "--json")
    by_name = {row["name"]: row for row in json.loads(listing)}
    assert code == 0 and set(by_name) == {"careful-refactor", "test-first"}
    assert by_name["test-first"]["trust"] == "bundled"
    assert by_name["test-first"]["description"].startswith("Fix a bug or add behaviour")

    assert cli("skills", "check") == (
        0,
        text.splitlines()[0]
        + "\n"
        + "".join(
            f"ok         {n} (bundled, {by_name[n]['folder']}): bundled\n"
            for n in ("careful-refactor", "test-first")
        )
        + "All 2 checked: trusted or bundled.\n",
    )


def test_a_new_repo_skill_fails_check_until_trust_records_it_in_the_repos_lock(
    repo: git.Repo,
) -> None:
    root = Path(repo.working_dir)
    make_skill(root, extra="allowed-tools: Bash(rm:*) Read\nlicense: MIT\n")
    code, text = cli("skills", "list", "--repo", str(root))
    assert code == 0
    assert "fix-calc          repo     new        Fixes calc.py. Use when add() is wrong." in text
    assert "Not loaded until reviewed: fix-calc." in text

    code, text = cli("skills", "check", "--repo", str(root))
    assert code == 1
    assert "NEW        fix-calc (repo, " in text and "not trusted yet" in text
    assert "files: SKILL.md, scripts/run.sh" in text and "1 not loaded" in text

    code, text = cli("skills", "show", "fix-calc", "--repo", str(root))
    assert code == 0
    assert "  trust: new" in text and "  license: MIT" in text
    assert "  allowed-tools: Bash(rm:*) Read\n    shown, not granted" in text
    digest = lock_free_digest(root / ".agents/skills/fix-calc/scripts/run.sh")
    assert f"    {digest[:12]}  scripts/run.sh" in text
    assert text.endswith("# fix-calc\n\nRun scripts/run.sh first.\n")

    assert not (root / "skills.lock").exists()
    code, text = cli("skills", "trust", "fix-calc", "--repo", str(root))
    assert code == 0
    assert text == f"Trusted fix-calc (repo skill): 2 files recorded in {root / 'skills.lock'}.\n"
    files = lock_of(root)["skills"]["fix-calc"]["files"]
    assert files["scripts/run.sh"] == digest and set(files) == {"SKILL.md", "scripts/run.sh"}

    code, text = cli("skills", "check", "--repo", str(root))
    assert code == 0 and "ok         fix-calc (repo, " in text and ": trusted\n" in text
    assert cli("skills", "trust", "fix-calc", "--repo", str(root))[1].startswith(
        "fix-calc (repo skill): already trusted"
    )


def lock_free_digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_script_changed_after_trust_shows_its_diff_and_trust_all_accepts_it(
    repo: git.Repo,
) -> None:
    root = Path(repo.working_dir)
    folder = make_skill(root)
    assert cli("skills", "trust", "--all", "--repo", str(root))[0] == 0
    (folder / "scripts" / "run.sh").write_text("echo new\n")
    write(folder / "references" / "notes.md", "added later\n")

    code, text = cli("skills", "check", "fix-calc", "--repo", str(root))
    assert code == 1
    assert "CHANGED    fix-calc (repo, " in text
    assert "changed: scripts/run.sh; added: references/notes.md" in text
    assert "    -echo old\n    +echo new\n" in text and "    +added later\n" in text
    code, text = cli("skills", "show", "fix-calc", "--repo", str(root))
    assert "scripts/run.sh  (changed since trusted)" in text
    assert "references/notes.md  (added since trusted)" in text

    code, text = cli("skills", "trust", "--all", "--repo", str(root))
    assert code == 0 and "Trusted fix-calc (repo skill): 3 files recorded in" in text
    assert "references/notes.md" in lock_of(root)["skills"]["fix-calc"]["files"]
    assert cli("skills", "check", "--repo", str(root))[0] == 0
    assert cli("skills", "trust", "--all", "--repo", str(root))[1] == (
        "Nothing to trust: no skill is new or changed.\n"
    )


def test_a_malformed_skill_is_reported_with_its_file_and_problem_and_the_rest_still_list(
    repo: git.Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(repo.working_dir)
    make_skill(root)
    bad = write(
        root / ".agents" / "skills" / "Bad_Name" / "SKILL.md",
        "---\nname: Bad_Name\ndescription: x\n---\nbody\n",
    )
    code, text = cli("skills", "list", "--repo", str(root))
    assert code == 0
    assert "fix-calc" in text and "test-first" in text and "careful-refactor" in text
    (bad_row,) = [line for line in text.splitlines() if line.startswith("Bad_Name")]
    assert "repo     malformed" in bad_row and f"{bad}: 'name' 'Bad_Name' may use only" in bad_row

    code, text = cli("skills", "check", "--repo", str(root))
    assert code == 1 and f"MALFORMED  Bad_Name (repo, {bad.parent}): skipped, malformed" in text

    assert cli("skills", "trust", "Bad_Name", "fix-calc", "--repo", str(root))[0] == 2
    err = capsys.readouterr().err
    assert "Cannot trust Bad_Name" in err and "Fix it first; nothing was trusted." in err
    assert not (root / "skills.lock").exists()

    code, text = cli("skills", "trust", "--all", "--repo", str(root))
    assert code == 0 and f"Not trusted, malformed: {bad}: 'name'" in text
    assert list(lock_of(root)["skills"]) == ["fix-calc"]
    assert cli("skills", "check", "--repo", str(root))[0] == 1  # Bad_Name still needs fixing


def test_skills_use_the_repository_of_the_current_directory(
    repo: git.Repo, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(repo.working_dir)
    make_skill(root)
    (root / "sub").mkdir()
    monkeypatch.chdir(root / "sub")
    code, text = cli("skills", "list")
    assert code == 0 and "fix-calc" in text and "Not in a git repository" not in text
    assert cli("skills", "trust", "fix-calc")[0] == 0
    assert "fix-calc" in lock_of(root)["skills"]


def test_a_user_skill_is_trusted_in_the_users_own_lock(outside: Path) -> None:
    write(
        user_dir() / "skills" / "my-style" / "SKILL.md",
        "---\nname: my-style\ndescription: My house style. Use always.\n---\nShort names.\n",
    )
    assert cli("skills", "check")[0] == 1
    code, text = cli("skills", "trust", "my-style")
    assert code == 0 and f"recorded in {user_dir() / 'skills.lock'}" in text
    assert "my-style" in json.loads((user_dir() / "skills.lock").read_text())["skills"]
    assert cli("skills", "check")[0] == 0


# -- preferences from the command line -------------------------------------------------------------


def test_prefer_prefs_and_remove_in_both_scopes(
    repo: git.Repo, outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(repo.working_dir)
    user_file = user_dir() / "preferences.md"
    repo_file = Path(repo.git_dir) / "delegate" / "preferences.md"

    code, text = cli("prefer", "Use pathlib, not os.path.")
    assert code == 0 and text.startswith("Remembered for every repository (")
    assert f"in {user_file}" in text and "- Use pathlib, not os.path.\n" in user_file.read_text()
    code, text = cli("prefer", "Name", "tests", "after", "behaviour.", "--repo", str(root))
    assert code == 0 and text.startswith("Remembered for this repository (")
    assert "- Name tests after behaviour.\n" in repo_file.read_text()
    assert "Name tests" not in user_file.read_text()

    code, listing = cli("prefs", "--repo", str(root), "--json")
    rows = json.loads(listing)
    assert code == 0
    assert [(r["scope"], r["text"]) for r in rows] == [
        ("user", "Use pathlib, not os.path."),
        ("repo", "Name tests after behaviour."),
    ]
    user_id, repo_id = rows[0]["id"], rows[1]["id"]
    code, text = cli("prefs", "--repo", str(root))
    assert f"{user_id}  user  Use pathlib, not os.path.\n" in text
    assert f"{repo_id}  repo  Name tests after behaviour.\n" in text
    code, text = cli("prefs")  # outside any repository: the user's only
    assert "Not in a git repository: the user-wide preferences only" in text
    assert user_id in text and repo_id not in text

    assert cli("prefs", "remove", repo_id, "--repo", str(root)) == (
        0,
        f"Forgot {repo_id} (repo): Name tests after behaviour.\n",
    )
    assert "Name tests" not in repo_file.read_text()
    assert cli("prefs", "remove", user_id)[0] == 0
    assert "pathlib" not in user_file.read_text()
    code, text = cli("prefs", "--repo", str(root))
    assert "No preferences yet. Teach one" in text

    assert cli("prefs", "remove", "abcdef", "--repo", str(root))[0] == 2
    assert "No preference 'abcdef'. Known ids: none" in capsys.readouterr().err


def test_removing_an_unknown_preference_exits_2_and_names_the_known_ids(
    outside: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cli("prefer", "Keep functions short.")
    (known,) = json.loads(cli("prefs", "--json")[1])
    assert cli("prefs", "remove", "zzzzzz") == (2, "")
    err = capsys.readouterr().err
    assert f"No preference 'zzzzzz'. Known ids: {known['id']} (listing" in err
    assert "- Keep functions short." in (user_dir() / "preferences.md").read_text()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("skills", "show", "nope"), "No skill named 'nope'. Skills found: careful-refactor"),
        (("skills", "trust"), "Which skills? Name them"),
        (("skills", "trust", "test-first", "--all"), "Give skill names or --all, not both."),
        (("prefer", ""), "A preference needs words"),
        (("prefer", "x" * 501), "Split it, or put longer guidance in AGENTS.md or a skill"),
        (("skills", "list", "--repo", "{tmp}"), "not inside a git repository. Run `git init`"),
        (("skills", "check", "--repo", "{tmp}/gone"), "does not exist. Pass repo="),
        (("prefs", "--repo", "{tmp}"), "not inside a git repository"),
        (("prefer", "Short names.", "--repo", "{tmp}"), "not inside a git repository"),
    ],
)
def test_bad_input_exits_2_saying_what_to_do(
    outside: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    code, text = cli(*(arg.replace("{tmp}", str(outside)) for arg in argv))
    assert (code, text) == (2, "")
    assert message in capsys.readouterr().err
    assert not (user_dir() / "preferences.md").exists()


def test_a_malformed_lock_exits_2_and_is_kept(
    repo: git.Repo, capsys: pytest.CaptureFixture[str]
) -> None:
    root = Path(repo.working_dir)
    make_skill(root)
    write(root / "skills.lock", "{not json")
    assert cli("skills", "trust", "fix-calc", "--repo", str(root))[0] == 2
    assert "is not a valid skills lock" in capsys.readouterr().err
    assert (root / "skills.lock").read_text() == "{not json"


# -- tasks: checks from AGENTS.md, skills used, preferences, remembered feedback -----------------


@pytest.fixture
def skill_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeServer]:
    turns = [
        {"tools": [{"skill": {"name": "test-first"}}]},
        *FIX_TURNS,
        {"tools": [{"finish": {"summary": "now with a docstring"}}]},
    ]
    fake = FakeMessagesAPI(load_scenario({"name": "context-cli", "turns": turns}))
    with FakeServer(fake) as running:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", running.url)
        yield running


def run_without_checks(repo: git.Repo, *extra: str) -> tuple[int, str, str]:
    code, text = cli(
        "run", "Make add() add.", "--repo", repo.working_dir, "--sandbox", SANDBOX, *extra
    )
    return code, text, text.split()[1]


def test_the_review_shows_agents_md_checks_skills_used_and_preferences(
    repo: git.Repo, skill_server: FakeServer
) -> None:
    write(Path(repo.working_dir) / "AGENTS.md", f"Run `{CHECK}` before you finish.\n")
    commit_all(repo, "conventions")
    cli("prefer", "Use pathlib, not os.path.")
    cli("prefer", "Keep diffs small.", "--repo", repo.working_dir)

    code, text, task_id = run_without_checks(repo, "--no-approve")
    assert code == 0, text
    assert (
        "  checks (offered by AGENTS.md as the outcome named none, run by the harness):\n" in text
    )
    assert f"    PASS {CHECK} (exit 0," in text
    assert "  skills used: test-first (2 offered)\n" in text
    assert (
        "  preferences in force:\n    [user] Use pathlib, not os.path.\n"
        "    [repo] Keep diffs small.\n"
    ) in text
    assert f"  ! checks offered by AGENTS.md, used as the outcome has none: `{CHECK}`\n" in text
    shown = cli("show", task_id, "--repo", repo.working_dir)[1]
    assert "skills used: test-first" in shown and "[repo] Keep diffs small." in shown

    code, text, _ = run_without_checks(repo, "--no-suggested-checks", "--no-approve")
    assert code == 0, text
    assert (
        "  checks (run by the harness):\n    none were given (AGENTS.md offered some; declined)\n"
        in text
    )
    assert f"  ! checks offered by AGENTS.md, declined: `{CHECK}`\n" in text


def test_request_changes_remember_keeps_the_feedback_for_the_repository(
    repo: git.Repo, skill_server: FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    _, _, task_id = run_without_checks(repo, "--no-approve")
    with pytest.raises(SystemExit):
        main(["request-changes", task_id, "x", "--remember", "--remember-everywhere"])
    assert "not allowed with argument" in capsys.readouterr().err
    code, text = cli(
        "request-changes",
        task_id,
        "Always add a docstring.",
        "--remember",
        "--repo",
        repo.working_dir,
        "--no-approve",
    )
    assert code == 0, text
    assert "Remembered as a preference for this repository" in text
    assert "  ! remembered as a preference (repo): Always add a docstring.\n" in text
    repo_file = Path(repo.git_dir) / "delegate" / "preferences.md"
    assert "- Always add a docstring.\n" in repo_file.read_text()
    assert not (user_dir() / "preferences.md").exists()


# -- the magics -----------------------------------------------------------------------------------


def test_magic_skills_list_check_trust_and_show(shell: InteractiveShell, repo: git.Repo) -> None:
    root = Path(repo.working_dir)
    folder = make_skill(root, description="Fixes <calc> & co. Use when add() is wrong.")
    listing = magic(shell, f"skills --repo {root}")
    assert isinstance(listing, SkillList) and not listing.ok
    assert [s.name for s in listing.needs_review] == ["fix-calc"]
    page = listing._repr_html_()
    assert "Fixes &lt;calc&gt; &amp; co." in page and "<calc>" not in page
    assert 'class="jd-trust jd-trust-new"' in page and "jd-trust-bundled" in page
    assert "fix-calc" in repr(listing) and "Not loaded until reviewed: fix-calc." in repr(listing)

    report = magic(shell, f"skills trust fix-calc --repo {root}")
    assert isinstance(report, TrustReport)
    assert repr(report) == (
        f"Trusted fix-calc (repo skill): 2 files recorded in {root / 'skills.lock'}."
    )
    assert "fix-calc" in lock_of(root)["skills"]
    assert magic(shell, f"skills check --repo {root}").ok

    (folder / "scripts" / "run.sh").write_text("echo <new>\n")
    checked = magic(shell, f"skills check fix-calc --repo {root}")
    assert not checked.ok and "CHANGED" in repr(checked) and "+echo <new>" in repr(checked)
    page = checked._repr_html_()
    assert "<details><summary>what changed since it was trusted</summary><pre>" in page
    assert "+echo &lt;new&gt;" in page and "-echo old" in page

    card = magic(shell, f"skills show fix-calc --repo {root}")
    assert isinstance(card, SkillCard)
    assert "Run scripts/run.sh first." in repr(card)
    page = card._repr_html_()
    assert "jd-trust-changed" in page and "(changed since trusted)" in page
    assert "allowed-tools" in page and "none declared" in page

    assert magic(shell, f"skills trust --all --repo {root}").trusted[0].name == "fix-calc"
    assert magic(shell, f"skills check --repo {root}").ok


def test_magic_skills_outside_a_repository_and_bad_input(
    shell: InteractiveShell, outside: Path
) -> None:
    listing = magic(shell, "skills")
    assert {s.name for s in listing.statuses} == {"careful-refactor", "test-first"}
    assert listing.ok and "Not in a git repository" in repr(listing)
    card = magic(shell, "skills show test-first")
    assert "trust: bundled" in repr(card) and "test-first" in card._repr_html_()
    with pytest.raises(ContextError, match="No skill named 'nope'"):
        magic(shell, "skills show nope")
    with pytest.raises(MagicUsageError, match="give one skill's name"):
        magic(shell, "skills show")
    with pytest.raises(MagicUsageError, match="invalid choice: 'bogus'"):
        magic(shell, "skills bogus")
    with pytest.raises(DelegateError, match=r"Which skills\?"):
        magic(shell, "skills trust")
    with pytest.raises(RepoError, match="not inside a git repository"):
        magic(shell, f"skills --repo {outside}")
    result = shell.run_cell("%delegate skills show nope")  # the cell fails
    assert isinstance(result.error_in_exec, ContextError)


def test_magic_prefer_prefs_and_remove(shell: InteractiveShell, repo: git.Repo) -> None:
    root = Path(repo.working_dir)
    said = magic(shell, "prefer Don't mock the database.")  # an apostrophe needs no quotes
    assert isinstance(said, PreferenceList)
    assert [p.text for p in said.preferences] == ["Don't mock the database."]
    assert said.heading == "Remembered for every repository"
    said = magic(shell, f'prefer "Use <pathlib>, not os.path." --repo {root}')
    assert said.preferences[0].scope == "repo"
    repo_file = Path(repo.git_dir) / "delegate" / "preferences.md"
    assert "- Use <pathlib>, not os.path.\n" in repo_file.read_text()

    listed = magic(shell, f"prefs --repo {root}")
    assert [(p.scope, p.text) for p in listed.preferences] == [
        ("user", "Don't mock the database."),
        ("repo", "Use <pathlib>, not os.path."),
    ]
    page = listed._repr_html_()
    assert "Use &lt;pathlib&gt;" in page and "Don&#x27;t mock" in page
    assert f"{listed.preferences[1].id}  repo  Use <pathlib>, not os.path." in repr(listed)

    left = magic(shell, f"prefs remove {listed.preferences[1].id} --repo {root}")
    assert left.heading.startswith(f"Forgot {listed.preferences[1].id} (repo)")
    assert [p.text for p in left.preferences] == ["Don't mock the database."]
    assert "pathlib" not in repo_file.read_text()

    with pytest.raises(ContextError, match=r"No preference 'zzzzzz'\. Known ids: "):
        magic(shell, f"prefs remove zzzzzz --repo {root}")
    with pytest.raises(ContextError, match="needs words"):
        magic(shell, "prefer")
    with pytest.raises(MagicUsageError, match=r"which one\?"):
        magic(shell, "prefs remove")


def test_magic_no_suggested_checks_and_request_changes_remember_everywhere(
    shell: InteractiveShell, repo: git.Repo, make_manager: Factory
) -> None:
    write(Path(repo.working_dir) / "AGENTS.md", f"Tests: `{CHECK}`\n")
    commit_all(repo, "conventions")
    manager, _ = make_manager([*FIX_TURNS, {"tools": [{"finish": {"summary": "docstring"}}]}])
    shell.register_magics(DelegateMagics(shell, manager=manager))
    with capture_output():
        shell.run_cell_magic(
            "delegate", f"--repo {repo.working_dir} --name plain --no-suggested-checks", "Fix add."
        )
        shell.run_cell_magic("delegate", f"--repo {repo.working_dir} --name offered", "Fix add.")
    assert magic(shell, "wait all") == {"plain": "review", "offered": "review"}
    plain, offered = manager.get("plain"), manager.get("offered")
    assert plain.checks == [] and any("declined" in f for f in plain.flags)
    assert [c.command for c in offered.checks] == [CHECK] and offered.checks_passed

    with pytest.raises(MagicUsageError, match="not allowed with argument --remember"):
        magic(shell, "request-changes offered Add a docstring. --remember --remember-everywhere")
    magic(shell, "request-changes offered Always add a docstring. --remember-everywhere")
    assert magic(shell, "wait offered") == {"offered": "review"}
    assert "- Always add a docstring.\n" in (user_dir() / "preferences.md").read_text()
    assert any("remembered as a preference (user)" in f for f in offered.flags)


def test_magic_help_names_the_new_subcommands() -> None:
    doc = DelegateMagics.delegate.__doc__ or ""
    for words in (
        "%delegate skills [list]",
        "skills show NAME",
        "skills check [NAME]",
        "skills trust NAME... | --all",
        "%delegate prefer TEXT [--repo P]",
        "%delegate prefs [remove ID]",
        "--no-suggested-checks",
        "--remember-everywhere",
        "shown, never granted",
    ):
        assert words in doc
