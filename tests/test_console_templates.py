"""The console's markup is in Jinja2 templates with autoescape on, and nowhere else: a value an
agent sent (a log line, a memory, a file name) is shown as text whatever it contains."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentstore_server.web import views

WEB = Path(views.__file__).parent
TEMPLATES = sorted((WEB / "templates").glob("*.html"))


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_no_template_turns_escaping_off(path: Path) -> None:
    source = path.read_text()
    assert not re.search(r"\|\s*safe\b|autoescape\s+false|Markup", source), path.name
    views.ENV.get_template(path.name)  # parses


def test_the_environment_escapes_and_refuses_unknown_names() -> None:
    assert views.ENV.from_string("{{ x }}").render(x="<b>&") == "&lt;b&gt;&amp;"
    assert views.ENV.from_string("{{ x }}").render(x=None) == ""
    with pytest.raises(Exception, match="'missing' is undefined"):
        views.ENV.from_string("{{ missing }}").render()


HTML_TAG = re.compile(r"</?(a|b|p|div|span|td|tr|th|table|pre|ul|ol|li|form|input|button|section|nav|h[1-6]|img|svg"
                      r"|details|main|header|html|!doctype)\b", re.I)  # fmt: skip


@pytest.mark.parametrize("module", ["console.py", "views.py"])
def test_the_python_side_builds_no_markup(module: str) -> None:
    """No string in the console's Python holds a tag: pages are templates, given data."""
    tags = [
        node.value
        for node in ast.walk(ast.parse((WEB / module).read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and HTML_TAG.search(node.value)
    ]
    assert not tags, tags


@settings(max_examples=200, deadline=None, derandomize=True)
@given(text=st.text(), key=st.text(min_size=1, max_size=20))
def test_whatever_an_agent_sends_is_shown_as_text(text: str, key: str) -> None:
    item = SimpleNamespace(ts="2026-12-04T10:00:00+00:00", level="error", message=text, fields={key: text},
                           task_id=text)  # fmt: skip
    html = str(views.macro("log_cells")(item))
    # Only the macro's own tags remain: whatever the text held, no tag of it survived.
    assert set(re.findall(r"<(/?[a-z]+)", html)) <= {"td", "/td", "time", "/time", "span", "/span", "details",
                                                      "/details", "summary", "/summary", "pre", "/pre"}  # fmt: skip
    assert html.count("<td>") == 4


def test_a_hostile_page_value_is_escaped_in_a_whole_page() -> None:
    hostile = '<script>alert("x")</script>'
    page = views.render(
        "conversation.html", title=hostile, section="/", writes=None, login=True, form_token="t", agent=hostile, tab="/conversations",
        c=SimpleNamespace(user_id=hostile, created_at=None,
                          messages=[SimpleNamespace(role=hostile, ts=None, content=hostile)]),
    )  # fmt: skip
    assert "<script>" not in page
    # title twice (<title>, <h1>), the agent in each tab's link, the user, the role twice, the content
    assert page.count("&lt;script&gt;") == 2 + len(views.AGENT_TABS) + 4
