"""A tiny HTML form reader, so tests can "click" the emulator's pages with httpx."""

from __future__ import annotations

from html.parser import HTMLParser


class FormReader(HTMLParser):
    """Collects the first form's action, hidden/checked inputs, radios and buttons."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.fields: dict[str, str] = {}
        self.radios: dict[str, list[str]] = {}
        self.buttons: list[tuple[str, str, str]] = []  # (name, value, text)
        self._button: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and not self.action:
            self.action = a.get("action", "")
        elif tag == "input":
            kind = a.get("type", "text")
            if kind == "radio":
                self.radios.setdefault(a["name"], []).append(a["value"])
                if "checked" in a:
                    self.fields[a["name"]] = a["value"]
            elif kind == "checkbox":
                if "checked" in a:
                    self.fields[a["name"]] = a.get("value", "on")
            else:
                self.fields[a.get("name", "")] = a.get("value", "")
        elif tag == "button":
            self._button = [a.get("name", ""), a.get("value", ""), ""]

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self._button[2] += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "button" and self._button is not None:
            self.buttons.append((self._button[0], self._button[1], self._button[2].strip()))
            self._button = None

    def click(self, text: str, **overrides: str) -> dict[str, str]:
        """Form data as a browser would submit it after clicking the button with that text."""
        for name, value, label in self.buttons:
            if label == text:
                return {**self.fields, **overrides, name: value}
        raise AssertionError(f"no button {text!r} in {self.buttons}")


def read_form(html: str) -> FormReader:
    """Parse a page's form."""
    reader = FormReader()
    reader.feed(html)
    return reader
