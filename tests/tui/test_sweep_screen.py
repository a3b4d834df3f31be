"""The sweep screen: a budgeted sweep's rungs, marks, epochs and leader, as `tltui sweep show` prints them."""

from __future__ import annotations

import json

from tests.tui.screen_host import HostApp, asynctest, screen_text, until
from tltui.core import asha, presets, protocol
from tltui.core.protocol import EpochEnd
from tltui.core.status import RunStatus
from tltui.core.workspace import Workspace
from tltui.tui.screens.sweep import SweepScreen

PRESET = (
    'name = "s"\n[data]\nsource = "tfds:mnist"\n[model]\nbackbone = "resnet50"\nweights = "none"\n'
    '[train]\nepochs = 4\n[sweep]\n"train.seed" = [1, 2, 3]\n[sweep.budget]\nmin_epochs = 1\neta = 2\n'
)


T0 = 1_780_000_000.0  # fixed times: the snapshot shows the hours spent


def budgeted_sweep(ws: Workspace) -> list[str]:
    """Three runs as the runner leaves them: one completed, two stopped at rungs 1 and 2."""
    specs = presets.expand(presets.loads(PRESET, "s.toml"))
    recs = ws.create_runs(
        [(s.name, presets.dumps(s.preset), s.overrides) for s in specs], preset_name="s", epochs=[4, 4, 4]
    )
    plan = [(4, RunStatus.COMPLETED, 0.5), (1, RunStatus.PAUSED, 0.3), (2, RunStatus.PAUSED, 0.4)]
    for rec, (epochs, status, base) in zip(recs, plan, strict=True):
        lines = [
            protocol.encode(EpochEnd(T0 + 60 * e, epoch=e, metrics={"val_acc": base + e / 100}, epoch_seconds=60.0))
            for e in range(1, epochs + 1)
        ]
        ws.run_paths(rec.id).events.write_text("".join(lines))
        ws.update(
            rec.id,
            status=status,
            epoch=epochs,
            queue_pos=None,
            reason=f"stopped early at rung {epochs} (epoch {epochs}): val_acc" if epochs < 4 else None,
        )
    folder = asha.sweep_dir(ws.root, recs[0].sweep or recs[0].id)
    folder.mkdir(parents=True)
    decisions = [
        ("promote", recs[0].id, 1),
        ("promote", recs[0].id, 2),
        ("stop", recs[1].id, 1),
        ("stop", recs[2].id, 2),
    ]
    folder.joinpath("decisions.jsonl").write_text(
        "".join(json.dumps({"action": a, "run": r, "rung": k}) + "\n" for a, r, k in decisions)
    )
    return [r.id for r in recs]


@asynctest
async def test_the_sweep_screen_shows_rungs_marks_epochs_and_the_leader(ws: Workspace) -> None:
    ids = budgeted_sweep(ws)
    app = HostApp(lambda: SweepScreen(ids[1], workspace=ws))
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: "rungs at epochs 1, 2" in screen_text(app), "the sweep")
        text = screen_text(app)
        assert f"{ids[0]}*" in text  # the leader
        assert "0.5100+" in text and "0.5200+" in text  # promoted past both rungs
        assert "0.3100x" in text and "0.4200x" in text  # stopped at rung 1, at rung 2
        assert "epochs 7 of 12 for the full sweep (58%)" in text
        assert "stopped early at rung 1" in text and "s[seed=2]" in text  # a name's brackets are not markup


@asynctest
async def test_a_run_without_a_budget_says_so_in_one_line(ws: Workspace) -> None:
    (rec,) = ws.create_runs([("p", PRESET.split("[sweep]")[0], {})], preset_name="p", epochs=[4])
    app = HostApp(lambda: SweepScreen(rec.id, workspace=ws))
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: "has no [sweep.budget]" in screen_text(app), "the error line")


@asynctest
async def test_w_shows_on_a_sweeps_run_and_enter_opens_a_run_from_the_sweep(ws: Workspace) -> None:
    from tltui.tui.app import TltuiApp
    from tltui.tui.screens.run import RunScreen
    from tltui.tui.screens.runs import RunsScreen

    (single,) = ws.create_runs([("p", PRESET.split("[sweep]")[0], {})], preset_name="p", epochs=[4])
    ids = budgeted_sweep(ws)
    app = TltuiApp(ws, background=False)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.table.run_ids, "the runs")
        runs = app.screen
        assert isinstance(runs, RunsScreen)

        def footer_has_w() -> bool:
            return any(b.binding.key == "w" for b in runs.active_bindings.values())

        runs.table.move_cursor(row=runs.table.run_ids.index(single.id))
        await until(pilot, lambda: not footer_has_w(), "w hidden: a run of no sweep")
        runs.table.move_cursor(row=runs.table.run_ids.index(ids[0]))
        await until(pilot, footer_has_w, "w shown: a run of a sweep")
        await pilot.press("w")
        await until(pilot, lambda: isinstance(app.screen, SweepScreen), "the sweep screen")
        sweep = app.screen
        await until(pilot, lambda: "rungs at epochs" in screen_text(app), "the sweep")
        await pilot.press("down", "down")
        sweep.action_reload()  # a reload (every few seconds) keeps the cursor on its run
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, RunScreen), "the run screen")
        assert app.screen.run_id == ids[2]


@asynctest
async def test_a_sweep_deleted_while_shown_leaves_no_rows(ws: Workspace) -> None:
    ids = budgeted_sweep(ws)
    app = HostApp(lambda: SweepScreen(ids[0], workspace=ws))
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: "s[seed=3]" in screen_text(app), "the sweep")
        for rid in ids:
            ws.delete(rid)
        app.screen.action_reload()
        await until(pilot, lambda: "no such sweep" in screen_text(app), "the error line")
        assert "s[seed=3]" not in screen_text(app) and "leader" not in screen_text(app)


def test_a_sweep_whose_preset_does_not_load_says_so_not_that_it_has_no_budget(ws: Workspace) -> None:
    import pytest

    from tltui.client import sweeps
    from tltui.core.workspace import WorkspaceError

    ids = budgeted_sweep(ws)
    for rid in ids:
        ws.run_paths(rid).preset.write_text(PRESET.replace("resnet50", "no_such_net"))
    with pytest.raises(WorkspaceError, match=rf"run {ids[0]}'s preset does not load: .*no_such_net"):
        sweeps.show(ws, ids[0])
