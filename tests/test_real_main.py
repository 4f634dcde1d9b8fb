"""AppTest must not leave a page as the interpreter's __main__ (spawned workers import it)."""

import sys

from streamlit.testing.v1 import AppTest

from tests.conftest import _REAL_MAIN


def test_apptest_replaces_main() -> None:
    AppTest.from_string("import streamlit as st\nst.write('hi')").run()
    assert sys.modules["__main__"] is not _REAL_MAIN  # Streamlit's side effect, undone after


def test_main_is_restored_after_the_previous_test() -> None:
    assert sys.modules["__main__"] is _REAL_MAIN
