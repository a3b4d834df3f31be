"""A TextArea for TOML: syntax colours and error lines marked in red.

Syntax colours come from the TextArea's own TOML support when tree-sitter and its TOML grammar
are installed (``textual[syntax]``), else from a small line highlighter (tables, keys, strings,
numbers, comments), so the editor is readable either way. Only public APIs decide which:
the grammar's packages, ``TextArea(language=...)`` and :attr:`TextArea.is_syntax_aware`.
"""

from __future__ import annotations

import re
from functools import cache

from rich.style import Style
from rich.text import Text
from textual.widgets import TextArea

_HIGHLIGHT = [
    (re.compile(r"^\s*\[\[?[^\]]*\]\]?"), Style(bold=True, color="magenta")),
    (re.compile(r'^\s*("(?:[^"\\]|\\.)*"|[A-Za-z0-9_\-.]+)\s*(?==)'), Style(color="cyan")),
    (re.compile(r'"(?:[^"\\]|\\.)*"|\'[^\']*\''), Style(color="green")),
    (
        re.compile(r"(?<=[=\[,\s])(true|false|[+-]?\d[\d_]*(\.\d+)?([eE][+-]?\d+)?)(?=\s*[,\]#]|\s*$)"),
        Style(color="yellow"),
    ),
]
_ERROR_LINE = Style(bgcolor="#5f1f1f")


def _comment_start(line: str) -> int | None:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            if ch == "\\":
                continue
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            quote = ch
        elif ch == "#":
            return i
    return None


@cache
def toml_grammar() -> bool:
    """Whether tree-sitter and its TOML grammar load (what ``TextArea(language="toml")`` needs)."""
    try:
        import tree_sitter_toml
        from tree_sitter import Language

        Language(tree_sitter_toml.language())
    except Exception:  # noqa: BLE001 - missing (ImportError) or unloadable (OSError, ValueError, ...): plain text
        return False
    return True


class TomlEditor(TextArea):
    """A TextArea for TOML: syntax colours (tree-sitter if installed, else a small
    highlighter) and error lines marked with a red background."""

    DEFAULT_CSS = """
    TomlEditor { height: 1fr; border: none; padding: 0; }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(
            "",
            language="toml" if toml_grammar() else None,
            show_line_numbers=True,
            soft_wrap=False,
            tab_behavior="indent",
            id=id,
        )
        # whatever the grammar, the TextArea may not parse (a Textual without tree-sitter): then ours colours
        self._simple_highlight = not self.is_syntax_aware
        self._error_lines: frozenset[int] = frozenset()

    @property
    def error_lines(self) -> frozenset[int]:
        """0-based lines marked as wrong."""
        return self._error_lines

    def set_error_lines(self, lines: set[int] | frozenset[int]) -> None:
        lines = frozenset(lines)
        if lines != self._error_lines:
            self._error_lines = lines
            self.notify_style_update()  # drops the cached lines
            self.refresh()

    def get_line(self, line_index: int) -> Text:
        line = super().get_line(line_index)
        if self._simple_highlight:
            plain = line.plain
            cut = _comment_start(plain)
            code = plain if cut is None else plain[:cut]
            for pattern, style in _HIGHLIGHT:
                for m in pattern.finditer(code):
                    line.stylize(style, m.start(), m.end())
            if cut is not None:
                line.stylize(Style(dim=True, italic=True), cut)
        if line_index in self._error_lines:
            line.stylize(_ERROR_LINE)
        return line
