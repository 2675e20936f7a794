"""The permission card in the user's words and the rounds in the live log, driven by real
tasks (scripted fake model, real git, real sandbox) and by bare events: what a question
shows, what "allow this prefix" grants (exactly the rule shown), a denial's reason reaching
the agent, a divider and the feedback for each round, a new message as its own entry,
earlier entries read from the journal, and the log folding when the review opens."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import git
import pytest
from test_views import (
    SLOW_START,
    asked,
    bare_task,
    on_engine,
    reviewed,
    shown,
    start,
    text_of,
    tool_items,
    until,
)
from test_views import views as _views

from conftest import FIX_TURNS, Factory, messages_sent
from jupyter_delegate import TaskState
from jupyter_delegate.cli import Printer
from jupyter_delegate.errors import DelegateError
from jupyter_delegate.notebook.views import TaskView, permission_html
from jupyter_delegate.policy import PermissionRequest, Policy, command_prefix, rules_for
from jupyter_delegate.task import TaskEvent

ASK_BASH = Policy.from_rules(ask=["Bash"])
views = _views  # the fixture, under its name


def card(tool: str, tool_input: dict[str, object]) -> str:
    request = PermissionRequest(
        "r1", tool, tool_input, "ask mode", tuple(rules_for(tool, tool_input))
    )
    return permission_html(request, 0)


# -- what the card shows ----------------------------------------------------------------------
def test_the_card_shows_a_command_as_a_command_and_the_prefix_rule_it_would_add() -> None:
    html = card("bash", {"command": "pytest -q tests/test_report.py '<x>'"})
    command = "$ pytest -q tests/test_report.py &#x27;&lt;x&gt;&#x27;"
    assert f'<pre class="jd-command">{command}</pre>' in html
    assert "<code>bash(pytest:*)</code>" in html and "Allow this prefix" in html
    assert '"command"' not in html  # not the tool input as JSON


def test_the_card_shows_an_edit_as_a_small_diff_escaped() -> None:
    html = card(
        "edit",
        {
            "file_path": "calc.py",
            "old_string": "x = 1\n    return a - b",
            "new_string": "x = 1\n    return a + b  # <ok>",
        },
    )
    assert "edit <code>calc.py</code>" in html
    assert '<div class="jd-del">-    return a - b</div>' in html
    assert '<div class="jd-add">+    return a + b  # &lt;ok&gt;</div>' in html
    assert '<div class="">&nbsp;x = 1</div>' in html or '<div class=""> x = 1</div>' in html
    assert "old_string" not in html and "<code>edit(calc.py)</code>" in html


def test_the_card_shows_a_write_as_the_new_files_head() -> None:
    content = "".join(f"line {n}\n" for n in range(1, 31))
    html = card("write", {"file_path": "docs/NOTES.md", "content": content})
    assert "write <code>docs/NOTES.md</code>" in html
    assert "line 20" in html and "line 21" not in html and "… 10 more lines" in html
    assert "<code>write(docs/NOTES.md)</code>" in html


def test_the_rule_named_is_the_commands_prefix_per_part_parsed_by_the_shell() -> None:
    assert rules_for("bash", {"command": "pytest -q 'a b' 2>&1 | tail -5"}) == [
        "bash(pytest:*)",
        "bash(tail:*)",
    ]
    assert rules_for("bash", {"command": "git status && python3 -m pytest -x"}) == [
        "bash(git status:*)",
        "bash(python3 -m pytest:*)",
    ]
    assert command_prefix(["git", "-C", "x", "log"]) == ["git"]
    assert rules_for("bash", {"command": "echo 'unterminated"}) == []  # nothing to name


def test_a_granted_prefix_allows_that_prefix_only_and_never_what_a_deny_rule_refuses() -> None:
    policy = Policy.from_rules(ask=["Bash"], deny=["Bash(pytest --rm:*)"]).granting(
        ["bash(pytest:*)"]
    )
    assert policy.decide("bash", {"command": "pytest -q tests/b.py"}).action == "allow"
    assert policy.decide("bash", {"command": "ls"}).action == "ask"
    assert policy.decide("bash", {"command": "pytest -q | tail"}).action == "ask"  # tail asks
    assert policy.decide("bash", {"command": "pytest --rm x"}).action == "deny"
    assert Policy.from_dict(policy.to_dict()) == policy


# -- answering from the card ------------------------------------------------------------------
PREFIX_TURNS = [
    {**FIX_TURNS[0], "latency_ms": 300},  # asks: python3 -m unittest ...
    {"tools": [{"bash": {"command": "python3 -m unittest -v test_calc"}}]},  # same prefix
    {"tools": [{"bash": {"command": "ls"}}]},  # another command: asks again
    {"tools": [{"finish": {"summary": "looked around"}}]},
]


def test_allow_this_prefix_adds_exactly_the_rule_shown(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    manager, _ = make_manager(PREFIX_TURNS)
    view = views(start(manager, repo, policy=ASK_BASH))
    asked(view)
    assert "<code>bash(python3 -m unittest:*)</code>" in view.permission_text.value
    view.allow_rule_button.click()
    until(lambda: "$ ls" in view.permission_text.value and not view.allow_button.disabled)
    task = view.task
    assert [str(rule) for rule in task.policy.granted] == ["bash(python3 -m unittest:*)"]
    commands = [item for item in tool_items(view) if "python3 -m unittest" in item]
    assert len(commands) == 2 and "exit" in commands[1]  # the second one ran, unasked
    view.allow_button.click()  # once: nothing more is granted
    reviewed(view)
    assert [str(rule) for rule in task.policy.granted] == ["bash(python3 -m unittest:*)"]
    view.log_toggle.value = True
    log = text_of(view.log_box)
    assert "you allowed bash ls once" in log


def test_a_rule_that_does_not_match_the_call_is_refused_and_nothing_is_answered(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    manager, _ = make_manager(PREFIX_TURNS)
    view = views(start(manager, repo, policy=ASK_BASH))
    asked(view)
    task = view.task
    (request,) = task.pending()
    with pytest.raises(DelegateError, match=r"does not match the call"):
        task.answer(request.request_id, True, rule="bash(rm:*)")
    with pytest.raises(DelegateError, match="goes with allow"):
        task.answer(request.request_id, False, rule="bash(python3:*)")
    with pytest.raises(DelegateError, match="goes with a denial"):
        task.answer(request.request_id, True, reason="fine")
    assert task.state == TaskState.WAITING
    task.answer(request.request_id, True, rule="Bash(python3:*)")
    until(lambda: "$ ls" in view.permission_text.value, what="the next question")
    assert [str(rule) for rule in task.policy.granted] == ["bash(python3:*)"]
    task.cancel()


def test_deny_with_a_reason_reaches_the_agent_and_the_log_says_denied(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    manager, fake = make_manager([SLOW_START[0], FIX_TURNS[-1]])
    view = views(start(manager, repo, policy=ASK_BASH))
    asked(view)
    view.deny_reason.value = "use the project's venv: .venv/bin/python"
    view.deny_button.click()
    reviewed(view)
    result = messages_sent(fake)[1].body["messages"][-1]["content"][0]
    assert result["is_error"]
    assert "use the project's venv: .venv/bin/python" in result["content"]
    view.log_toggle.value = True
    log = text_of(view.log_box)
    assert "denyed" not in log and "you denied bash python3 -m unittest" in log
    assert "the agent is told: use the project&#x27;s venv" in log
    assert "denied" in tool_items(view)[0]


# -- rounds -----------------------------------------------------------------------------------
ROUND_TURNS = [
    *SLOW_START,
    {
        "text": "Round two: writing the note.",
        "tools": [{"write": {"file_path": "NOTES.md", "content": "fixed\n"}}],
    },
    {"tools": [{"finish": {"summary": "Also wrote NOTES.md."}}]},
]


def test_request_changes_shows_the_feedback_and_a_round_divider_then_the_new_words(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    manager, _ = make_manager(ROUND_TURNS)
    view = reviewed(views(start(manager, repo)))
    assert not shown(view.log_box) and shown(view.log_bar)  # folded under the review
    assert "Agent log" in view.log_summary.value and "4 tool calls" in view.log_summary.value
    assert view.review_view is not None  # the review's Request changes, as its bar sends it
    view.review_view._handle_custom_msg(
        {"action": "request_changes", "feedback": "Leave a note in NOTES.md, <please>."}, []
    )
    review = view.review_view
    until(lambda: review.summary == "Also wrote NOTES.md.", what="round 2 in review")
    view.log_toggle.value = True
    assert shown(view.log_box)
    log = view.live_log_html
    divider = log.index('<div class="jd-round">round 2</div>')
    feedback = log.index("Leave a note in NOTES.md, &lt;please&gt;.")
    words = log.index('<div class="jd-text">Round two: writing the note.</div>')
    assert log.index("The operator is wrong.") < divider < feedback < words
    # the review view follows round 2 itself; the folded log's line follows the task's state
    until(lambda: "2 rounds" in view.log_summary.value, what="the folded log names 2 rounds")


def test_a_new_message_starts_a_new_entry_even_with_no_event_between(
    views: Callable[..., TaskView],
) -> None:
    task = bare_task("t-rounds")
    view = views(task)

    async def steps() -> None:
        task.emit("text", {"delta": "All done.", "message": "msg_1", "block": 0})
        task.emit("text", {"delta": "Round two.", "message": "msg_2", "block": 0})
        task.emit("notice", {"text": "end"})

    on_engine(steps)
    texts = re.findall(r'<div class="jd-text">(.*?)</div>', view.live_log_html)
    assert texts == ["All done.", "Round two."]
    out = io.StringIO()
    printer = Printer(out)
    for text, message in (("All done.", "m1"), ("Round two.", "m2")):
        printer(TaskEvent(task.id, "text", {"delta": text, "message": message, "block": 0}))
    assert out.getvalue() == "  agent: All done.\n  agent: Round two."


# -- earlier entries --------------------------------------------------------------------------
def test_show_earlier_renders_the_entries_the_log_no_longer_keeps_from_the_journal(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    reads = [{"tools": [{"glob": {"pattern": f"nothing-{n:02d}-*"}}]} for n in range(1, 17)]
    turns = [{**reads[0], "latency_ms": 300}, *reads[1:], FIX_TURNS[-1]]
    manager, _ = make_manager(turns)
    view = views(start(manager, repo))
    view.task.wait(timeout=60)
    assert view.task.error == ""
    view = reviewed(view)
    view.log_toggle.value = True
    assert "not shown here" in view.live_earlier.value and shown(view.earlier_button)
    assert "nothing-01-" not in view.live_log_html
    view.earlier_button.click()
    assert view.error.value == ""
    earlier = view.earlier_box.value
    assert "nothing-01-" in earlier and "nothing-04-" in earlier
    assert "nothing-16-" not in earlier  # still shown below: not twice


def test_a_view_made_after_the_task_ran_reads_its_log_from_the_journal(
    repo: git.Repo, make_manager: Factory, views: Callable[..., TaskView]
) -> None:
    manager, _ = make_manager(SLOW_START)
    task = reviewed(views(start(manager, repo))).task
    late = views(task)  # as `%delegate restore` or a second display makes it
    assert "not followed by this view" in late.log_summary.value
    late.log_toggle.value = True
    assert shown(late.log_box) and shown(late.earlier_button)
    late.earlier_button.click()
    earlier = late.earlier_box.value
    assert "Running the test first." in earlier and "The operator is wrong." in earlier
    assert earlier.count('class="jd-tool"') == 4
