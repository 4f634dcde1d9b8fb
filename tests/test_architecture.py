"""The import rules docs/ARCHITECTURE.md states, checked on every module (imports inside
functions included), so a shortcut across the layers fails here rather than in review."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: part -> the top-level packages its modules must never import.
FORBIDDEN: dict[str, frozenset[str]] = {
    # The domain: plain Python under every entry point; it knows no UI, service or stand-in.
    "lib": frozenset({"streamlit", "dashboard", "pages", "server", "emulator", "altair"}),
    # The companion and the dashboard share lib/ and the database, never each other.
    "server": frozenset({"streamlit", "dashboard", "pages", "emulator"}),
    "dashboard": frozenset({"server", "emulator"}),
    "pages": frozenset({"server", "emulator"}),
    # The emulator stands in for Stripe: it must not lean on the product it is an oracle for.
    "emulator": frozenset({"lib", "server", "dashboard", "pages", "streamlit"}),
}

#: The one module of the product that talks to the stripe SDK.
STRIPE_GATEWAY = Path("lib/stripe_gateway.py")


def imported_packages(path: Path) -> set[str]:
    """The top-level names a module imports (absolute imports; relative ones stay inside)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def modules_of(part: str) -> list[Path]:
    return sorted((ROOT / part).rglob("*.py"))


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_each_part_imports_only_what_it_may(part: str) -> None:
    modules = modules_of(part)
    assert modules, f"{part}/ has no modules: the rule would check nothing"
    crossings = {
        str(path.relative_to(ROOT)): sorted(imported_packages(path) & FORBIDDEN[part])
        for path in modules
    }
    assert {name: bad for name, bad in crossings.items() if bad} == {}


@pytest.mark.parametrize("part", ["lib", "server", "dashboard", "pages", "scripts"])
def test_only_the_gateway_imports_the_stripe_sdk(part: str) -> None:
    importers = [
        str(path.relative_to(ROOT)) for path in modules_of(part)
        if "stripe" in imported_packages(path) and path.relative_to(ROOT) != STRIPE_GATEWAY
    ]
    assert importers == []


def test_the_checker_sees_nested_and_dotted_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import os.path\nfrom . import sibling\n"
        "def late():\n    import streamlit as st\n    from server.app import create_app\n",
        encoding="utf-8",
    )
    assert imported_packages(module) == {"os", "streamlit", "server"}
