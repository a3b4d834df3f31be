"""The footer keeps the keys a newcomer needs (Enter, inference, help, quit) on a narrow terminal."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from textual.widgets._footer import FooterKey

from tltui.tui.widgets.key_footer import KeyFooter, fit_keys


def test_fit_keys_hides_the_least_important_first_and_only_what_it_must() -> None:
    keys = [("open", 12), ("sort", 8), ("gpu", 7), ("help", 8)]
    assert fit_keys(keys, 40, ("sort", "gpu")) == set()
    assert fit_keys(keys, 30, ("sort", "gpu")) == {"sort"}
    assert fit_keys(keys, 25, ("sort", "gpu")) == {"sort", "gpu"}
    assert fit_keys(keys, 10, ("sort", "gpu")) == {"sort", "gpu"}  # never more than it was told


def shown_keys(app: Any) -> list[str]:
    footer = app.screen.query_one(KeyFooter)
    return [f"{k.key_display} {k.description}" for k in footer.query(FooterKey) if k.display]


async def _footer_ready(pilot: Any) -> None:
    for _ in range(100):
        await pilot.pause()
        footer = pilot.app.screen.query_one(KeyFooter)
        if footer.query(FooterKey) and footer._width == footer.size.width:
            return
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("width", [80])  # 120: tests/tui/test_snapshots.py::test_runs_screen_120x40
def test_the_home_footer_keeps_enter_inference_help_and_quit(make_app: Any, width: int) -> None:
    async def go() -> None:
        app = make_app()
        async with app.run_test(size=(width, 24)) as pilot:
            await _footer_ready(pilot)
            shown = shown_keys(app)
            for key in ("⏎ Open", "i Inference", "? Help", "q Quit"):
                assert key in shown, (width, shown)
            footer = app.screen.query_one(KeyFooter)
            used = sum(k.outer_size.width for k in footer.query(FooterKey) if k.display)
            assert used <= width  # nothing cut at the edge
            if width >= 120:
                assert "a Queue" in shown and "c Compare" in shown

    asyncio.run(go())
