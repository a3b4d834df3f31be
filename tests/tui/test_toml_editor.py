"""The TOML editor: coloured with or without tree-sitter, error lines marked."""

from __future__ import annotations

import importlib.util
from typing import Any

import pytest
from textual.app import App, ComposeResult

from tests.tui.screen_host import asynctest
from tltui.tui.widgets import toml_editor
from tltui.tui.widgets.toml_editor import TomlEditor

TEXT = '# a preset\n[train]\nepochs = 3  # short\nname = "x"\n'


class EditorApp(App[None]):
    def compose(self) -> ComposeResult:
        yield TomlEditor(id="toml")


def styles_of(editor: TomlEditor, line: int) -> dict[str, str]:
    """``{each styled piece, stripped: its style}`` on one line, as the editor draws it."""
    text = editor.get_line(line)
    return {text.plain[s.start : s.end].strip(): str(s.style) for s in text.spans}


async def drawn(monkeypatch: Any, *, grammar: bool) -> dict[int, dict[str, str]]:
    monkeypatch.setattr(toml_editor, "toml_grammar", lambda: grammar)
    app = EditorApp()
    async with app.run_test(size=(60, 10)) as pilot:
        editor = app.query_one(TomlEditor)
        editor.load_text(TEXT)
        editor.set_error_lines({3})
        await pilot.pause()
        assert editor.language == ("toml" if grammar else None)
        assert not editor.is_syntax_aware  # no TOML parser here: the editor's own colours
        return {i: styles_of(editor, i) for i in range(4)}


@asynctest
async def test_without_a_toml_grammar_the_editor_colours_toml_itself(monkeypatch: Any) -> None:
    lines = await drawn(monkeypatch, grammar=False)
    assert lines[0] == {"# a preset": "dim italic"}
    assert lines[1]["[train]"] == "bold magenta"
    assert lines[2]["epochs"] == "cyan" and lines[2]["3"] == "yellow" and lines[2]["# short"] == "dim italic"
    assert lines[3]['"x"'] == "green"
    assert lines[3][TEXT.splitlines()[3]] == "on #5f1f1f"  # the error line


@pytest.mark.skipif(importlib.util.find_spec("tree_sitter") is not None, reason="Textual can parse TOML here")
@asynctest
async def test_a_textarea_that_cannot_parse_toml_falls_back_to_the_editors_colours(monkeypatch: Any) -> None:
    """Told a grammar is there but with a TextArea that cannot use it (no tree-sitter for Textual),
    the text is still coloured, not left plain."""
    lines = await drawn(monkeypatch, grammar=True)
    assert lines[1]["[train]"] == "bold magenta" and lines[2]["epochs"] == "cyan"


def test_the_grammar_check_says_no_when_tree_sitter_is_missing() -> None:
    installed = all(importlib.util.find_spec(m) is not None for m in ("tree_sitter", "tree_sitter_toml"))
    if installed:
        pytest.skip("tree-sitter's TOML grammar is installed here")
    assert toml_editor.toml_grammar() is False
