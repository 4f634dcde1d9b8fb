"""Issue 8: user-supplied text is never rendered as HTML by the dashboard.

Streamlit escapes HTML in every element except ``st.html`` and markdown with
``unsafe_allow_html=True``. So the guarantee is structural: no page or shared module opts into
raw HTML, and the one ``st.html`` call (the mode banner) renders only constants.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lib.settings import PROJECT_ROOT

SOURCES = sorted([*(PROJECT_ROOT / "dashboard").rglob("*.py"), *(PROJECT_ROOT / "pages").rglob("*.py")])
#: (file, function) pairs allowed to call st.html, each rendering constants only.
HTML_ALLOWED = {("dashboard/ui.py", "mode_banner")}


def _calls(tree: ast.AST) -> list[tuple[str, ast.Call]]:
    """Every call with the name of the function that encloses it."""
    found: list[tuple[str, ast.Call]] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else function
            if isinstance(child, ast.Call):
                found.append((function, child))
            visit(child, name)

    visit(tree, "<module>")
    return found


def _relative(path: Path) -> str:
    return path.relative_to(PROJECT_ROOT).as_posix()


def test_there_are_sources_to_check() -> None:
    assert len(SOURCES) >= 10
    assert any(_relative(path) == "dashboard/ui.py" for path in SOURCES)


@pytest.mark.parametrize("path", SOURCES, ids=_relative)
def test_no_element_opts_into_raw_html(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for function, call in _calls(tree):
        for keyword in call.keywords:
            if keyword.arg == "unsafe_allow_html":
                assert isinstance(keyword.value, ast.Constant) and keyword.value.value is False, (
                    f"{_relative(path)}:{call.lineno} renders raw HTML")
        callee = call.func
        if isinstance(callee, ast.Attribute) and callee.attr in {"html", "components"}:
            assert (_relative(path), function) in HTML_ALLOWED, (
                f"{_relative(path)}:{call.lineno} calls st.{callee.attr} outside the allowed places")


def test_the_banner_renders_only_constants() -> None:
    from dashboard import ui

    for colour, text in ui._BANNERS.values():
        assert colour.startswith("#") and "<" not in text
