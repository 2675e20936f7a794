"""Plans and best-of-N on the command line (cli_groups.py), against the scripted fake
Messages API on loopback: `run --attempts` ranks its attempts and keeping one archives
the others; `plan FILE.yaml` runs a graph in the foreground, approvals coming from
another process; `--approve` integrates; Ctrl-C leaves a plan that `plan resume` takes
up; `--from-goal` leaves a draft to edit and run; every bad input exits 2 having made
nothing."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import git
import pytest
import yaml
from test_cli import cli
from test_plan import DIAMOND, writer

from conftest import CHECK, FIX_TURNS, SANDBOX, until
from jupyter_delegate.cli import main
from jupyter_delegate.testing import FakeMessagesAPI, FakeServer, load_scenario

Serve = Callable[[Any], FakeMessagesAPI]


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Serve]:
    """Serve a scenario (turns, or a script) on loopback, for this process and others."""
    started: list[FakeServer] = []

    def start(scenario: Any) -> FakeMessagesAPI:
        source = scenario if callable(scenario) else {"name": "plans", "turns": scenario}
        fake = FakeMessagesAPI(load_scenario(source))
        server = FakeServer(fake)
        server.__enter__()
        started.append(server)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        return fake

    yield start
    for server in started:
        server.__exit__(None, None, None)


def where(repo: git.Repo) -> list[str]:
    return ["--repo", repo.working_dir, "--sandbox", SANDBOX]


def plan_file(tmp_path: Path, text: str = DIAMOND, name: str = "plan.yaml") -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def records(repo: git.Repo) -> list[dict[str, Any]]:
    code, text = cli("list", "--repo", repo.working_dir, "--json")
    assert code == 0
    return list(json.loads(text))


def plan_record(repo: git.Repo, plan_id: str) -> dict[str, Any]:
    code, text = cli("plan", "show", plan_id, "--repo", repo.working_dir, "--json")
    assert code == 0, text
    return dict(json.loads(text))


def nothing_made(repo: git.Repo) -> bool:
    state = Path(repo.git_dir) / "delegate"
    plans = list((state / "plans").iterdir()) if (state / "plans").exists() else []
    tasks = list((state / "tasks").iterdir()) if (state / "tasks").exists() else []
    return not plans and not tasks and [h.name for h in repo.heads] == ["main"]


# -- best-of-N ----------------------------------------------------------------------------------
def test_run_attempts_ranks_them_and_approving_one_archives_the_others(
    repo: git.Repo, serve: Serve
) -> None:
    serve(FIX_TURNS)
    code, text = cli(
        "run",
        "Make add() add.",
        "--check",
        CHECK,
        "--attempts",
        "2",
        "--models",
        "claude-sonnet-4-6,claude-opus-4-6",
        "--effort",
        "low,high",
        *where(repo),
    )
    assert code == 0, text
    assert "#1   > edit calc.py" in text and "#2   > edit calc.py" in text  # both followed
    table = text[text.index("Attempts, best first:") :].splitlines()
    assert table[1].split() == [
        "RANK",
        "ATTEMPT",
        "TASK",
        "MODEL",
        "EFFORT",
        "STATE",
        "CHECKS",
        "+/-",
        "FILES",
        "COST",
        "TIME",
    ]
    rows = [line.split() for line in table[2:4]]
    assert [r[0] for r in rows] == ["1", "2"] and {r[1] for r in rows} == {"#1", "#2"}
    by_attempt = {r[1]: r for r in rows}
    assert by_attempt["#1"][3:5] == ["claude-sonnet-4-6", "low"]
    assert by_attempt["#2"][3:5] == ["claude-opus-4-6", "high"]
    assert all(r[5:10] == ["review", "(proven)", "1/1", "+1/-1", "1"] for r in rows)
    best = rows[0][2]
    assert f"Keep one: `jupyter delegate approve {best}`" in text

    listed = records(repo)
    groups = {r["id"]: r["group"] for r in listed}
    (group_id,) = {g["id"] for g in groups.values()}
    assert sorted((g["kind"], g["index"], g["of"]) for g in groups.values()) == [
        ("attempts", 1, 2),
        ("attempts", 2, 2),
    ]
    plain = cli("list", "--repo", repo.working_dir)[1]
    assert f"[attempt 1/2 of {group_id}]" in plain and f"[attempt 2/2 of {group_id}]" in plain

    other = next(r[2] for r in rows if r[2] != best)
    code, text = cli("approve", other, "--repo", repo.working_dir)
    assert code == 0, text
    states = {r["id"]: r["state"] for r in records(repo)}
    assert states == {other: "merged", best: "rejected"}  # the one not kept is archived
    assert repo.git.rev_parse(f"refs/delegate/archive/{best}")


def test_run_attempts_json_approve_keeps_the_best_proven_and_none_proven_exits_1(
    repo: git.Repo, serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    serve(FIX_TURNS)
    code, text = cli(
        "run", "Make add() add.", "--check", CHECK, "--attempts", "2", "--json", "--approve",
        *where(repo),
    )  # fmt: skip
    assert code == 0
    record = json.loads(text)  # only the record on stdout; the progress went to stderr
    assert [a["rank"] for a in record["attempts"]] == [1, 2]
    kept = record["attempts"][0]["task"]
    assert "Kept attempt #" in capsys.readouterr().err
    states = {r["id"]: r["state"] for r in records(repo)}
    assert states[kept] == "merged" and sorted(states.values()) == ["merged", "rejected"]

    code, text = cli("run", "x", "--check", "false", "--attempts", "2", *where(repo))
    assert code == 1 and "None is proven." in text


@pytest.mark.parametrize(
    "argv, said",
    [
        (["--models", "a,b"], "add --attempts N"),
        (["--effort", "low,high"], "add --attempts N"),
    ],
)
def test_spreading_without_attempts_is_refused(
    repo: git.Repo, argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli("run", "x", *argv, *where(repo))[0] == 2
    assert said in capsys.readouterr().err and nothing_made(repo)


# -- plans: the foreground ---------------------------------------------------------------------
def test_plan_file_approve_runs_the_graph_and_integrates_then_show_list_and_audit(
    repo: git.Repo, serve: Serve, tmp_path: Path
) -> None:
    serve(writer(latency_ms=100))
    base = repo.head.commit.hexsha
    code, text = cli("plan", plan_file(tmp_path), "--approve", "--parallel", "2", *where(repo))
    assert code == 0, text
    plan_id = text.split()[1]
    assert text.startswith(f"Plan {plan_id} (running): Shapes")
    assert "    2  left [planned] <- base\n       right [planned] <- base\n" in text
    lines = text.splitlines()
    for name in ("base", "left", "right", "join", "docs"):
        ran = [line for line in lines if line[10:].startswith(name)]
        assert any("review (proven)" in line and "1/1 passed" in line for line in ran), ran
        assert f"{name}: approved (--approve) as " in text
    assert "waits for you" not in text  # --approve decided everything
    assert f"Integrated plan {plan_id} into main: now at " in text
    assert "(base, left, right, join, docs); its checks passed (1/1)." in text
    assert repo.head.commit.hexsha != base
    assert all((Path(repo.working_dir) / f"{n}.txt").exists() for n in ("base", "join", "docs"))

    record = plan_record(repo, plan_id)
    assert record["state"] == "integrated" and record["driven"] is False
    assert [s["state"] for s in record["subtasks"]] == ["merged"] * 5
    groups = [r["group"] for r in records(repo)]
    assert sorted(g["name"] for g in groups) == ["base", "docs", "join", "left", "right"]
    assert {(g["kind"], g["id"]) for g in groups} == {("plan", plan_id)}
    plain = cli("list", "--repo", repo.working_dir)[1]
    assert f"[plan {plan_id}: join]" in plain
    listed = cli("plan", "list", "--repo", repo.working_dir)[1]
    assert listed.startswith(f"{plan_id}  integrated  5/5 approved")
    board = cli("plan", "show", plan_id, "--repo", repo.working_dir)[1]
    assert "  join     merged  " in board and "    3  join [merged] <- left, right" in board
    code, audited = cli("audit", "verify", "--repo", repo.working_dir)
    assert code == 0 and f"plan {plan_id}: audit verify: ok" in audited


class Foreground:
    """`jupyter delegate plan ...` in a process of its own, its output read as it comes."""

    def __init__(self, *argv: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jupyter_delegate.cli", *argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONFAULTHANDLER": "1"},
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def said(self, words: str, timeout: float = 90) -> None:
        try:
            until(lambda: words in self.text, timeout, f"{words!r}")
        except AssertionError:  # where it is stuck: faulthandler prints every thread
            self.process.send_signal(signal.SIGABRT)
            self.end()
            raise AssertionError(f"{words!r} not in:\n{self.text}") from None

    def end(self, timeout: float = 60) -> int:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return code


def three(text: str) -> str:
    """The diamond's first three subtasks: base, then left and right."""
    head = text.split("  - name: join")[0]
    return head.replace("&& test -f join.txt", "")


def subtask_task(repo: git.Repo, plan_id: str, name: str) -> str:
    record = plan_record(repo, plan_id)
    return str(next(s["task"] for s in record["subtasks"] if s["name"] == name))


def test_plan_in_the_foreground_starts_dependents_as_another_process_approves(
    repo: git.Repo, serve: Serve, tmp_path: Path
) -> None:
    serve(writer())
    text = three(DIAMOND)
    running = Foreground("plan", plan_file(tmp_path, text), *where(repo))
    try:
        running.said("(running): Shapes")
        plan_id = running.lines[0].split()[1]
        running.said("waits for you")
        assert "base: review it (`jupyter delegate show " in running.text
        assert "left          running" not in running.text
        base = subtask_task(repo, plan_id, "base")
        assert cli("approve", base, "--repo", repo.working_dir)[0] == 0  # another process
        running.said("left          review (proven)")
        running.said("right         review (proven)")
        # A plan-level decision belongs to the process running the plan.
        code, _ = cli("plan", "approve", plan_id, "--repo", repo.working_dir)
        assert code == 1
        for name in ("left", "right"):
            assert (
                cli("approve", subtask_task(repo, plan_id, name), "--repo", repo.working_dir)[0]
                == 0
            )
        assert running.end() == 0
    finally:
        running.process.kill()
    assert (
        f"Plan {plan_id} is ready: every subtask is approved. `jupyter delegate plan approve"
        in (running.text)
    )
    code, said = cli("plan", "approve", plan_id, "--repo", repo.working_dir)
    assert code == 0 and f"Integrated plan {plan_id} into main" in said
    assert {p.name for p in Path(repo.working_dir).glob("*.txt")} == {
        "base.txt",
        "left.txt",
        "right.txt",
    }


def test_ctrl_c_leaves_the_plan_resumable_and_plan_resume_takes_it_up(
    repo: git.Repo, serve: Serve, tmp_path: Path
) -> None:
    serve(writer(latency_ms=1500))
    running = Foreground("plan", plan_file(tmp_path), *where(repo))
    try:
        running.said("base          running")
        plan_id = running.lines[0].split()[1]
        running.process.send_signal(signal.SIGINT)
        assert running.end() == 130
    finally:
        running.process.kill()
    assert f"Stopped following plan {plan_id}; it stays running as it is." in running.text
    assert f"`jupyter delegate plan resume {plan_id}` takes it up" in running.text
    board = cli("plan", "show", plan_id, "--repo", repo.working_dir)[1]
    assert f"no process runs it: `jupyter delegate plan resume {plan_id}`" in board

    code, text = cli("plan", "resume", plan_id, "--approve", "--repo", repo.working_dir)
    assert code == 0, text
    assert f"Resumed plan {plan_id}: this process runs it now." in text
    assert f"Integrated plan {plan_id} into main" in text
    (base,) = [r for r in records(repo) if r["group"]["name"] == "base"]
    assert base["state"] == "merged"  # the task cut off was resumed, not started again


def test_a_rejected_subtask_stops_the_foreground_naming_the_restart_which_goes_on(
    repo: git.Repo, serve: Serve, tmp_path: Path
) -> None:
    asked: dict[str, int] = {}

    def script(body: dict[str, Any], index: int) -> dict[str, Any] | None:
        first = body["messages"][0]["content"]
        text = first if isinstance(first, str) else first[0]["text"]
        name = text.split("Write ", 1)[1].split(".txt", 1)[0]
        if index == 0:
            asked[name] = asked.get(name, 0) + 1
        wrong = name == "base" and asked[name] == 1  # base's first attempt misses
        turns = [
            {"tools": [{"write": {"file_path": "wrong.txt" if wrong else f"{name}.txt",
                                  "content": "x\n"}}]},
            {"tools": [{"finish": {"summary": "done"}}]},
        ]  # fmt: skip
        return turns[index] if index < len(turns) else None

    serve(script)
    text = three(DIAMOND)
    printed = io.StringIO()
    result: list[int] = []
    argv = ["plan", plan_file(tmp_path, text), "--approve", *where(repo)]
    thread = threading.Thread(target=lambda: result.append(main(argv, out=printed)))
    thread.start()
    refused = "base: not approved, NOT PROVEN: check `test -f base.txt` failed"
    until(lambda: refused in printed.getvalue(), 60, "base to be refused by --approve")
    plan_id = printed.getvalue().split()[1]
    until(lambda: f"Plan {plan_id} waits for you" in printed.getvalue(), 10, "the wait")
    assert cli("reject", subtask_task(repo, plan_id, "base"), "--repo", repo.working_dir)[0] == 0
    thread.join(60)
    assert result == [1]
    said = printed.getvalue()
    assert f"Plan {plan_id} cannot go on by itself:" in said
    assert f"  base is rejected; `jupyter delegate plan restart {plan_id} base`" in said
    assert "  blocked by it: left, right" in said

    board = cli("plan", "show", plan_id, "--repo", repo.working_dir)[1]
    assert "  left     blocked" in board and "base is rejected" in board
    assert f"  next: `jupyter delegate plan restart {plan_id} base`" in board

    code, said = cli("plan", "restart", plan_id, "base", "--approve", "--repo", repo.working_dir)
    assert code == 0, said
    assert said.startswith("Restarted base as task ")
    assert f"Integrated plan {plan_id} into main" in said
    bases = sorted(r["state"] for r in records(repo) if r["group"]["name"] == "base")
    assert bases == ["merged", "rejected"]  # one new task, though a dispatcher runs here too


# -- plans: the agent proposes one -------------------------------------------------------------
PROPOSAL = {
    "title": "Two files",
    "summary": "",
    "subtasks": [
        {"name": "one", "goal": "Write one.txt", "checks": ["test -f one.txt"], "scope": [],
         "budget_usd": 1, "depends_on": []},
        {"name": "two", "goal": "Write two.txt", "checks": ["test -f two.txt"], "scope": [],
         "budget_usd": 1, "depends_on": ["one"]},
    ],
}  # fmt: skip


def planner_then_writer(body: dict[str, Any], index: int) -> dict[str, Any] | None:
    if any(t["name"] == "propose_plan" for t in body.get("tools", [])):
        return {"tools": [{"propose_plan": PROPOSAL}]} if index == 0 else None
    return writer()(body, index)  # type: ignore[no-any-return]


def test_from_goal_prints_the_proposal_leaves_a_draft_and_plan_run_takes_an_edited_one(
    repo: git.Repo, serve: Serve, tmp_path: Path
) -> None:
    serve(planner_then_writer)
    code, text = cli(
        "plan", "--from-goal", "Write two files", "--check", "test -f one.txt", *where(repo)
    )
    assert code == 0, text
    plan_id = text.split()[1].rstrip(":")
    proposed = yaml.safe_load(text[text.index("plan: Two files") : text.index("Draft plan")])
    assert [s["name"] for s in proposed["subtasks"]] == ["one", "two"]
    assert proposed["checks"] == ["test -f one.txt"]
    assert f"`jupyter delegate plan run {plan_id}`" in text
    assert f"`jupyter delegate plan run {plan_id} FILE.yaml`" in text
    assert plan_record(repo, plan_id)["state"] == "draft"
    assert not [r for r in records(repo) if r["group"].get("name")]  # no subtask ran

    code, shown = cli("plan", "show", plan_id, "--yaml", "--repo", repo.working_dir)
    edited = yaml.safe_load(shown)
    edited["subtasks"] = edited["subtasks"][:1]  # the user keeps one subtask
    code, text = cli(
        "plan", "run", plan_id, plan_file(tmp_path, yaml.safe_dump(edited), "edited.yaml"),
        "--approve", *where(repo),
    )  # fmt: skip
    assert code == 0, text
    assert f"Integrated plan {plan_id} into main" in text and "(one)" in text
    assert (Path(repo.working_dir) / "one.txt").exists()
    assert not (Path(repo.working_dir) / "two.txt").exists()


# -- bad input ----------------------------------------------------------------------------------
def _bad(change: Callable[[dict[str, Any]], None]) -> str:
    data = yaml.safe_load(DIAMOND)
    change(data)
    return yaml.safe_dump(data, sort_keys=False)


def _set(index: int, **fields: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["subtasks"][index].update(fields)


@pytest.mark.parametrize(
    "text, said",
    [
        (_bad(_set(0, depends_on=["docs"])), "the dependencies make a cycle: "),
        (_bad(_set(1, depends_on=["nowhere"])), "left depends on 'nowhere', which is no subtask"),
        (
            _bad(_set(2, scope=["../elsewhere/x.py"])),
            "right's scope '../elsewhere/x.py' is outside",
        ),
        (_bad(_set(3, budget={"max_usd": 9})), "join's budget max_usd=9 is over the plan's (5)"),
        ("plan: Shapes\nsubtasks:\n  - name: a\n    goal: [unclosed\n", "not valid YAML at line 5"),
        ("plan: x\nsubtasks: []\n", "`subtasks:` must be a non-empty list"),
    ],
)
def test_a_bad_plan_file_exits_2_naming_the_problem_and_makes_nothing(
    repo: git.Repo, tmp_path: Path, text: str, said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = plan_file(tmp_path, text)
    assert cli("plan", path, *where(repo)) == (2, "")
    err = capsys.readouterr().err
    assert err.startswith(f"jupyter delegate plan: {path}: "), err
    assert said in err and nothing_made(repo)


@pytest.mark.parametrize(
    "argv, said",
    [
        (["plan", "show", "p000000"], "No plan 'p000000' in "),
        (["plan", "approve", "nope"], "'nope' is not a plan id: p and six hex digits"),
        (["plan", "restart", "p000000", "base"], "No plan 'p000000' in "),
        (["plan", "no-such.yaml"], "No plan file no-such.yaml."),
        (["plan"], "Which plan? `jupyter delegate plan FILE.yaml` runs one"),
        (["plan", "PLAN", "--check", "pytest"], "--check: a plan file states its subtasks'"),
        (["plan", "PLAN", "--attempts", "2"], "--attempts: a plan file states"),
        (["plan", "PLAN", "--from-goal", "x"], "Give a plan file or --from-goal GOAL, not both"),
        (["plan", "PLAN", "--effort", "low,high"], "--effort takes one level for a plan"),
        (["plan", "--from-goal", "x", "--name", "n"], "--name: not for a plan"),
    ],
)
def test_bad_plan_commands_exit_2_saying_what_to_do(
    repo: git.Repo, tmp_path: Path, argv: list[str], said: str, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [plan_file(tmp_path) if a == "PLAN" else a for a in argv]
    assert cli(*argv, "--repo", repo.working_dir) == (2, "")
    err = capsys.readouterr().err
    assert said in err, err
    assert nothing_made(repo)


def test_plan_help_shows_the_actions_and_the_file_form(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli("plan", "--help")
    shown = capsys.readouterr().out
    assert "plan restart ID NAME" in shown and "depends_on: [model]" in shown
    with pytest.raises(SystemExit):
        cli("plan", "show", "--help")
    assert "usage: jupyter delegate plan show" in capsys.readouterr().out


def test_a_cancelled_draft_is_listed_shown_and_not_run(repo: git.Repo) -> None:
    from jupyter_delegate.planning import create

    plan_id = create(DIAMOND, repo.working_dir).id
    code, said = cli("plan", "cancel", plan_id, "--repo", repo.working_dir)
    assert code == 0 and said.startswith(f"Cancelled plan {plan_id}: no subtask starts")
    listed = json.loads(cli("plan", "list", "--json", "--repo", repo.working_dir)[1])
    assert [(p["id"], p["state"]) for p in listed] == [(plan_id, "cancelled")]
    board = cli("plan", "show", plan_id, "--repo", repo.working_dir)[1]
    assert board.startswith(f"Plan {plan_id} (cancelled): Shapes\n  why: cancelled by the user")
    assert "  docs     planned  -     $0.0000  -       waits for join" in board
    code, said = cli("plan", "run", plan_id, "--repo", repo.working_dir)
    assert code == 2 and not [p for p in Path(repo.git_dir).glob("delegate/tasks/*")]


def test_run_json_prints_the_tasks_record_alone(repo: git.Repo, serve: Serve) -> None:
    serve(FIX_TURNS)
    code, text = cli("run", "Make add() add.", "--check", CHECK, "--json", *where(repo))
    assert code == 0
    record = json.loads(text)
    assert record["state"] == "review" and record["proven"] and record["group"] is None
