"""The keys of a screen and of the app: one list for the help screen and the command palette.

``test_a_new_screens_keys_are_in_the_help_and_the_palette`` is CONTRIBUTING's "Add a screen"
recipe done in a test: a screen with its bindings, its key on the home screen and the app's
action that pushes it, and nothing else; the palette and the help list its keys and run them.
"""

from __future__ import annotations

import asyncio
import functools
import io
from pathlib import Path

import pytest
from rich.console import Console
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Static

from tests.tui import fake_ws
from tests.tui.screen_host import run_from_palette, until
from tltui.tui import app as app_mod
from tltui.tui.app import TltuiApp
from tltui.tui.keys import key_sections, palette_keys
from tltui.tui.screens.help import HelpScreen, help_sections
from tltui.tui.screens.inference import InferenceScreen
from tltui.tui.screens.presets import PresetsScreen
from tltui.tui.screens.runs import RunsScreen

SIZE = (100, 30)


def sync(test):
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        asyncio.run(test(*args, **kwargs))

    return wrapper


# ---------------------------------------------------------------------------- the recipe, in a test


class RunnerLogScreen(Screen[None]):
    """A new screen as the recipe adds it: its keys on it, each with a description and an id."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", id="runner_log.back"),
        Binding("R", "reload", "Reload log", show=False, id="runner_log.reload"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.reloads = 0

    def compose(self) -> ComposeResult:
        yield Static("runner.log")
        yield Footer()

    def action_reload(self) -> None:
        self.reloads += 1


class HomeWithRunnerLog(RunsScreen):
    BINDINGS = [*RunsScreen.BINDINGS, Binding("L", "app.runner_log", "Runner log", id="runs.runner_log")]


class AppWithRunnerLog(TltuiApp):
    CSS_PATH = Path(app_mod.__file__).with_name("app.tcss")  # Textual reads it beside the subclass's module

    def get_default_screen(self) -> Screen:
        return HomeWithRunnerLog()

    def action_runner_log(self) -> None:
        self.push_screen(RunnerLogScreen())


@pytest.fixture
def recipe_app(scripted):
    ws, _ids = scripted
    return AppWithRunnerLog(ws, clock=lambda: fake_ws.NOW)


def help_text(app) -> str:
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(app.screen.query_one("#help-text", Static).content)
    return console.export_text()


@sync
async def test_a_new_screens_keys_are_in_the_help_and_the_palette(recipe_app):
    app = recipe_app
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await run_from_palette(pilot, "Runner log")  # its key on the home screen opens it
        await until(pilot, lambda: isinstance(app.screen, RunnerLogScreen), "the new screen")
        log_screen = app.screen
        assert isinstance(log_screen, RunnerLogScreen)
        await run_from_palette(pilot, "Reload log")  # a key of its own, hidden from the footer
        await until(pilot, lambda: log_screen.reloads == 1, "the reload")
        assert app.screen is log_screen
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen), "the help")
        text = help_text(app)
        assert "This screen: Runner log" in text and "Reload log" in text and "runner_log.reload" in text
        await pilot.press("escape")
        await run_from_palette(pilot, "Back")
        await until(pilot, lambda: isinstance(app.screen, HomeWithRunnerLog), "the home screen")


# ---------------------------------------------------------------------------- one list, two views


@sync
async def test_the_palette_offers_what_the_help_lists(make_app):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        titles = [key.description for key in palette_keys(app.screen)]
        for _section, rows in help_sections(app.screen):
            for _keys, description, _id in rows:
                if description not in ("Command palette", "Quit"):  # not itself; Quit: Textual's own
                    assert description in titles
        assert "Command palette" not in titles and "Quit" not in titles
        assert len(titles) == len(set(titles))
        await run_from_palette(pilot, "Quit")  # Textual's commands stay beside the keys
        await until(pilot, lambda: not app.is_running, "the app to quit")


@sync
async def test_the_palette_shows_the_keys_the_keymap_sets(make_app, scripted):
    ws, _ids = scripted
    (ws.root / "keymap.toml").write_text('"runs.compare" = "k"\n')
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        helps = {key.description: key.help for key in palette_keys(app.screen)}
        assert helps["Compare"] == "key k"
        assert helps["Freeze map"] == "key f"


@pytest.mark.parametrize(("title", "cls"), [("Presets", PresetsScreen), ("Inference", InferenceScreen)])
@sync
async def test_the_home_screens_keys_open_the_other_screens_from_the_palette(make_app, title, cls):
    app = make_app()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await run_from_palette(pilot, title)  # Inference: a key hidden from the footer
        await until(pilot, lambda: isinstance(app.screen, cls), title)


@sync
async def test_a_screens_palette_runs_its_keys_on_it(make_app, scripted):
    """The presets screen's "Form/TOML" (ctrl+t) runs on the presets screen, not on the app."""
    ws, _ids = scripted
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await app.push_screen(PresetsScreen(workspace=ws))
        await pilot.pause()
        screen = app.screen
        editors = screen.query_one("#preset-editors")
        assert editors.has_class("-form")
        await run_from_palette(pilot, "Form/TOML")
        await until(pilot, lambda: editors.has_class("-toml"), "the TOML view")
        sections = key_sections(screen)
        assert [title for title, _keys in sections] == ["This screen: Presets", "App: every screen"]
        assert {k.node for k in sections[0][1]} == {screen} and {k.node for k in sections[1][1]} == {app}
