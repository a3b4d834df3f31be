"""How images are drawn: the renderer chosen from faked terminal capabilities, and the thumbnail
handing the file to a graphics-protocol widget (a stand-in here) instead of drawing half blocks."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from textual.app import App
from textual.widget import Widget

from tests.tui.screen_host import asynctest
from tltui.tui import image_renderer
from tltui.tui.image_renderer import choose
from tltui.tui.widgets import thumbnail
from tltui.tui.widgets.thumbnail import Thumbnail

KITTY = {"TERM": "xterm-kitty", "KITTY_WINDOW_ID": "1"}


def never() -> str | None:
    raise AssertionError("the terminal must not be asked")


@pytest.mark.parametrize(
    ("setting", "env", "tty", "probe", "expected"),
    [
        ("auto", KITTY, True, lambda: "kitty", "kitty"),
        ("auto", {"TERM": "foot"}, True, lambda: "sixel", "sixel"),
        ("auto", {"TERM": "xterm-256color"}, True, lambda: None, "halfblock"),  # plain SSH: no answer
        ("auto", {**KITTY, "TMUX": "/tmp/tmux-0/default,1,0"}, True, never, "halfblock"),
        ("auto", {"TERM": "screen-256color"}, True, never, "halfblock"),
        ("auto", KITTY, False, never, "halfblock"),  # not a terminal (piped, tests)
        ("halfblock", KITTY, True, never, "halfblock"),  # overridden in settings
        ("sixel", {"TERM": "xterm"}, True, never, "sixel"),
        (
            "auto",
            {**KITTY, "TLTUI_IMAGES": "halfblock"},
            True,
            lambda: "kitty",
            "kitty",
        ),  # tltui.core.settings reads it
        ("bogus", KITTY, True, never, "halfblock"),
    ],
)
def test_the_renderer_follows_the_terminal_and_the_settings(setting, env, tty, probe, expected) -> None:
    choice = choose(setting, env, is_tty=tty, probe=probe)
    assert choice.renderer == expected and choice.why
    if setting == "bogus":
        assert "is not one of auto, halfblock, kitty, sixel" in choice.why


def test_setup_tells_the_thumbnail(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thumbnail, "RENDERER", "kitty")
    assert image_renderer.setup("halfblock").renderer == "halfblock" and thumbnail.RENDERER == "halfblock"


def test_the_renderers_are_the_settings_choices() -> None:
    from typing import get_args

    from tltui.core.settings import UiSettings

    assert get_args(UiSettings.model_fields["images"].annotation) == image_renderer.RENDERERS


class FakeProtocolImage(Widget):
    """Stands in for textual-image's TGPImage: records the image it is given."""

    image: Any = None


class ThumbApp(App[None]):
    def compose(self) -> Any:
        yield Thumbnail(id="t")


async def decoded(pilot: Any, thumb: Thumbnail, timeout: float = 30.0) -> None:
    """Pause until the thumbnail's worker thread has read its file (a condition: the machine may be slow)."""
    deadline = time.monotonic() + timeout
    while not thumb.ready:
        assert time.monotonic() < deadline, f"the thumbnail did not read {thumb.path} in {timeout:.0f} s"
        await pilot.pause(0.01)


@asynctest
async def test_in_protocol_mode_the_thumbnail_hands_the_file_to_the_protocol_widget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(thumbnail, "RENDERER", "kitty")
    monkeypatch.setattr(thumbnail, "protocol_widget", lambda r: FakeProtocolImage if r == "kitty" else None)
    good, bad = tmp_path / "a.png", tmp_path / "b.png"
    Image.new("RGB", (64, 48), (10, 200, 30)).save(good)
    bad.write_bytes(b"not an image")
    app = ThumbApp()
    async with app.run_test(size=(60, 20)) as pilot:
        thumb = app.query_one(Thumbnail)
        shown = app.query_one("#thumb-image", FakeProtocolImage)
        assert thumb.renderer == "kitty" and not shown.display
        thumb.path = str(good)
        await decoded(pilot, thumb)
        assert shown.display and shown.image == str(good)
        assert "▀" not in str(thumb.render())  # no half blocks under the protocol image
        thumb.path = str(bad)
        await decoded(pilot, thumb)
        assert not shown.display and "no preview" in str(thumb.render())


def test_the_app_reads_ui_images_once_and_refuses_a_bad_settings_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run_app``: ``[ui] images`` (``TLTUI_IMAGES`` wins) picks the renderer; a bad settings.toml is
    one error line from the CLI, before the terminal is asked anything or the app opens."""
    from tltui.core.errors import PresetError
    from tltui.core.workspace import Workspace
    from tltui.tui import app as app_mod
    from tltui.tui import signals

    ws = Workspace(tmp_path / "ws")
    seen: list[str] = []
    monkeypatch.setattr(image_renderer, "setup", lambda setting="auto": seen.append(setting))
    monkeypatch.setattr(app_mod.TltuiApp, "run", lambda self: None)
    monkeypatch.setattr(signals, "close_on_signals", lambda app: None)
    monkeypatch.delenv("TLTUI_IMAGES", raising=False)
    ws.settings_file.write_text('[ui]\nimages = "sixel"\n')
    app_mod.run_app(ws)
    monkeypatch.setenv("TLTUI_IMAGES", "halfblock")
    app_mod.run_app(ws)
    assert seen == ["sixel", "halfblock"]
    ws.settings_file.write_text('[ui]\nimages = "ascii"\n')
    with pytest.raises(PresetError) as e:
        app_mod.run_app(ws)
    assert e.value.lines() == [
        f"{ws.settings_file}:2: ui.images: Input should be 'auto', 'halfblock', 'kitty' or 'sixel' (got 'ascii')"
    ]
    assert seen == ["sixel", "halfblock"]
