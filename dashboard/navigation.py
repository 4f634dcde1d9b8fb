"""Which pages each role sees. Hiding a page is a convenience; lib/ enforces every action."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import streamlit as st

from lib.roles import Action, Operator

PAGES_DIR = Path(__file__).resolve().parent.parent / "pages"


@dataclass(frozen=True)
class PageSpec:
    file: str
    title: str
    icon: str
    #: The page is offered when the operator may perform any of these.
    needs: frozenset[Action]


#: In menu order.
PAGES: tuple[PageSpec, ...] = (
    PageSpec("home.py", "Home", ":material/home:",
             frozenset({Action.VIEW_OVERVIEW, Action.VIEW_ACCOUNTS})),
)


def pages_for(operator: Operator) -> list[st.Page]:
    """The ``st.Page`` list this operator may open."""
    return [
        st.Page(str(PAGES_DIR / spec.file), title=spec.title, icon=spec.icon,
                url_path=spec.file.removesuffix(".py"))
        for spec in PAGES
        if any(operator.can(action) for action in spec.needs)
    ]
