"""The freeze-map screen and the LayerMap widget: run maps, preset maps, keys, write-back."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.tui.screen_host import HostApp, asynctest, screen_text
from tltui.core import catalog
from tltui.core.workspace import Workspace
from tltui.tui.screens.freeze_map import FreezeMapScreen, WorkerDescriber, step_depth
from tltui.tui.widgets.layer_map import LayerMap, family_of, rows_of, stage_blocks, strip

freeze_policy = pytest.importorskip("tltui.core.freeze_policy", reason="freeze policy module not available yet")
descriptions = pytest.importorskip("tltui.core.descriptions", reason="backbone description cache not available yet")

STAGES = ["stem+conv2", "conv3", "conv4", "conv5"]


def _layer(name: str, typ: str, params: int, shape: list[Any], stage: str, tp: int | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "type": typ,
        "params": params,
        "trainable_params": params if tp is None else tp,
        "output_shape": shape,
        "has_weights": params > 0,
        "stage": stage,
    }


def resnet_like(size: int = 32) -> dict[str, Any]:
    """A small description shaped like ResNet50's: stem, 4 stages of 2 bottleneck-ish blocks."""
    layers = [
        _layer("conv1_pad", "ZeroPadding2D", 0, [None, size + 6, size + 6, 3], STAGES[0]),
        _layer("conv1_conv", "Conv2D", 9472, [None, size // 2, size // 2, 64], STAGES[0]),
        _layer("conv1_bn", "BatchNormalization", 256, [None, size // 2, size // 2, 64], STAGES[0], 128),
        _layer("conv1_relu", "Activation", 0, [None, size // 2, size // 2, 64], STAGES[0]),
        _layer("pool1_pool", "MaxPooling2D", 0, [None, size // 4, size // 4, 64], STAGES[0]),
    ]
    for i, (stage, ch) in enumerate(zip(STAGES, (64, 128, 256, 512), strict=True)):
        hw = max(1, size // 4 // (2**i))
        sname = f"conv{i + 2}"
        for b in (1, 2):
            p = f"{sname}_block{b}"
            shape = [None, hw, hw, ch]
            layers += [
                _layer(f"{p}_1_conv", "Conv2D", ch * ch * 9 + ch, shape, stage),
                _layer(f"{p}_1_bn", "BatchNormalization", 4 * ch, shape, stage, 2 * ch),
                _layer(f"{p}_1_relu", "Activation", 0, shape, stage),
                _layer(f"{p}_2_conv", "Conv2D", ch * ch * 9 + ch, shape, stage),
                _layer(f"{p}_2_bn", "BatchNormalization", 4 * ch, shape, stage, 2 * ch),
                _layer(f"{p}_add", "Add", 0, shape, stage),
                _layer(f"{p}_out", "Activation", 0, shape, stage),
            ]
    return {
        "version": freeze_policy.DESCRIPTION_VERSION,
        "backbone": "resnet50",
        "family": "resnet",
        "image_size": [size, size],
        "alpha": None,
        "stages": STAGES,
        "input_layers": [
            _layer("resize", "Resizing", 0, [None, size, size, 3], "input"),
            _layer("preprocess", "Lambda", 0, [None, size, size, 3], "input"),
        ],
        "layers": layers,
    }


PRESET = """\
# a freeze-depth experiment
name = "cifar-ft"

[data]
source = "tfds:cifar10"
image_size = [32, 32]  # small on purpose

[model]
backbone = "resnet50"

[freeze]
depth = 1  # stem + conv2
batchnorm = "frozen"

[train]
epochs = 3
optimizer = "sgd"
learning_rate = 0.01
"""


def cache_description(ws: Workspace, size: int = 32) -> Path:
    path = descriptions.cache_path(ws.cache_dir, "resnet50", (size, size))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(resnet_like(size)))
    return path


def run_with_map(ws: Workspace, depth: int | str = 2, batchnorm: str = "frozen") -> str:
    (rec,) = ws.create_runs([("cifar-ft", PRESET, {})], preset_name="cifar-ft")
    desc = resnet_like()
    head = freeze_policy.standard_head(512, 10)
    doc = freeze_policy.build_map(desc, depth, batchnorm, head_layers=head)
    ws.run_paths(rec.id).freeze_map.write_text(json.dumps(doc))
    ws.update(rec.id, status="completed")
    return rec.id


def never_describe(*_: Any) -> dict[str, Any]:
    raise AssertionError("the cached description should have been used")


def layer_states(app: HostApp) -> dict[str, str]:
    lm = app.screen.query_one(LayerMap)
    return {r.name: r.state for r in lm.rows}


# ---------------------------------------------------------------------------- pure helpers


def test_step_depth_walks_0_to_n_then_all_and_clamps() -> None:
    assert step_depth(0, 4, 1) == 1
    assert step_depth(4, 4, 1) == "all"
    assert step_depth("all", 4, 1) == "all"
    assert step_depth("all", 4, -1) == 4
    assert step_depth(0, 4, -1) == 0


def test_strip_fits_the_width_and_shows_frozen_then_trainable() -> None:
    doc = freeze_policy.build_map(resnet_like(), 2, "frozen", head_layers=freeze_policy.standard_head(512, 10))
    rows = rows_of(doc)
    for width in (1, 20, 78, 200):
        assert strip(rows, width).cell_len == width
    cells = strip(rows, 40)
    styles = [str(span.style) for span in cells.spans]
    assert styles[0] != styles[-1]  # first stages frozen, head trainable


def test_the_tree_groups_each_stage_by_the_blocks_its_family_names(monkeypatch: pytest.MonkeyPatch) -> None:
    doc = freeze_policy.build_map(resnet_like(), 1, "frozen", head_layers=freeze_policy.standard_head(512, 10))
    rows = rows_of(doc)

    def blocks(freeze_map: dict[str, Any]) -> dict[str, list[str | None]]:
        return {s.name: [b for b, _ in bs] for s, bs in stage_blocks(rows, family_of(freeze_map))}

    resnet = blocks(doc)
    assert resnet["stem+conv2"] == [None, "conv2_block1", "conv2_block2"]  # the stem's layers under the stage
    assert resnet["conv5"] == ["conv5_block1", "conv5_block2"]
    assert resnet["input"] == resnet["head"] == [None]
    assert blocks({"backbone": "resnet50"}) == resnet  # a map without its family: its backbone's
    assert all(b == [None] for b in blocks({"family": "alexnet", "backbone": "alexnet"}).values())
    # a new family is its record: the tree groups by its block_pattern
    toy = catalog.Family("toy", tuple(STAGES), lambda _: STAGES[0], block_pattern=r"_(block\d)_")
    monkeypatch.setitem(catalog.FAMILIES, "toy", toy)
    assert blocks({"family": "toy"})["conv3"] == ["block1", "block2"]


def test_worker_describer_cancel_kills_the_subprocess() -> None:
    import os
    import sys

    describer = WorkerDescriber()
    result: list[Any] = []
    sleeper = [sys.executable, "-c", "import time; time.sleep(60)"]
    t = threading.Thread(target=lambda: result.append(describer._run(sleeper, env=dict(os.environ), timeout=120)))
    t.start()
    while describer._proc is None:
        t.join(0.01)
    describer.cancel()
    t.join(30)
    assert not t.is_alive() and result[0].returncode < 0


@asynctest
async def test_layer_map_shown_right_after_mounting_draws_once_composed(ws: Workspace) -> None:
    """How the Run screen's freeze-map tab uses the widget: mount, then show at once."""
    from textual.app import App

    doc = freeze_policy.build_map(resnet_like(), 1, "frozen", head_layers=freeze_policy.standard_head(512, 10))

    class TabApp(App[None]):
        def on_mount(self) -> None:
            lm = LayerMap(id="layer-map")
            self.screen.mount(lm)
            lm.show(doc)

    app = TabApp()
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert "stem+conv2" in screen_text(app)
        assert layer_states(app)["conv3_block1_1_conv"] == "trainable"


# ---------------------------------------------------------------------------- run mode


@asynctest
async def test_run_map_is_shown_read_only(ws: Workspace) -> None:
    rid = run_with_map(ws, depth=2)
    app = HostApp(lambda: FreezeMapScreen(run_id=rid, workspace=ws))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        states = layer_states(app)
        assert states["conv2_block1_1_conv"] == "frozen"
        assert states["conv3_block2_2_conv"] == "frozen"
        assert states["conv4_block1_1_conv"] == "trainable"
        assert states["conv1_bn"] == "BN infer"
        assert states["logits"] == "trainable"
        text = screen_text(app)
        assert f"Freeze map of {rid}" in text and "read-only" in text
        # keys that would edit only explain why not
        await pilot.press("plus", "b")
        await pilot.pause()
        assert app.screen.depth == 2 and app.screen.batchnorm == "frozen"
        assert layer_states(app)["conv4_block1_1_conv"] == "trainable"
        await pilot.press("escape")
        await pilot.pause()
        assert app.results == [None]


@asynctest
async def test_run_without_map_says_so(ws: Workspace) -> None:
    (rec,) = ws.create_runs([("x", PRESET, {})], preset_name="x")
    app = HostApp(lambda: FreezeMapScreen(run_id=rec.id, workspace=ws))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert "has no freeze map yet" in screen_text(app)


@asynctest
async def test_unknown_run_is_one_line(ws: Workspace) -> None:
    app = HostApp(lambda: FreezeMapScreen(run_id="r9999", workspace=ws))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert "r9999: no such run" in screen_text(app)


# ---------------------------------------------------------------------------- preset mode


@asynctest
async def test_depth_and_batchnorm_keys_update_map_and_write_back(ws: Workspace, tmp_path: Path) -> None:
    cache_description(ws)
    preset = tmp_path / "cifar-ft.toml"
    preset.write_text(PRESET)
    app = HostApp(lambda: FreezeMapScreen(preset_path=str(preset), workspace=ws))
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, FreezeMapScreen)
        assert layer_states(app)["conv2_block1_1_conv"] == "frozen"
        assert layer_states(app)["conv3_block1_1_conv"] == "trainable"

        await pilot.press("plus")
        assert screen.depth == 2
        assert layer_states(app)["conv3_block1_1_conv"] == "frozen"
        # said before it is written: the file is unchanged until w
        assert preset.read_text() == PRESET
        assert "not saved: freeze.depth 1 → 2 (w writes it to cifar-ft.toml" in screen_text(app)
        await pilot.press("w")
        assert "depth = 2  # stem + conv2" in preset.read_text()  # comment kept
        assert "not saved" not in screen_text(app)

        await pilot.press("plus", "plus", "plus", "plus")  # 3, 4, all, (stays all)
        assert screen.depth == "all"
        await pilot.press("minus")
        assert screen.depth == 4

        await pilot.press("b")  # frozen -> inference (keras.io's recipe): BatchNorm stays in inference mode
        assert screen.batchnorm == "inference"
        await pilot.press("b")
        assert screen.batchnorm == "trainable"
        assert layer_states(app)["conv1_bn"] == "trainable"
        assert "depth = 2  # stem + conv2" in preset.read_text() and "trainable" not in preset.read_text()
        assert "freeze.depth 2 → 4, freeze.batchnorm frozen → trainable" in screen_text(app)
        assert "BatchNorm statistics drift" in screen_text(app)  # recipe warning shown in the map
        await pilot.press("w")
        assert "depth = 4  # stem + conv2" in preset.read_text()
        assert 'batchnorm = "trainable"' in preset.read_text()

        await pilot.press("escape")
        await pilot.pause()
        assert app.results == [(4, "trainable")]
        assert "# a freeze-depth experiment" in preset.read_text()


@asynctest
async def test_without_write_back_the_file_is_untouched(ws: Workspace, tmp_path: Path) -> None:
    cache_description(ws)
    preset = tmp_path / "shipped.toml"
    preset.write_text(PRESET)
    app = HostApp(lambda: FreezeMapScreen(preset_path=str(preset), write_back=False, workspace=ws))
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.press("minus", "w", "escape")  # w does nothing here (nor shows in the footer)
        await pilot.pause()
    assert preset.read_text() == PRESET
    assert app.results == [(0, "frozen")]


@asynctest
async def test_uncached_backbone_is_described_in_a_thread(ws: Workspace, tmp_path: Path) -> None:
    preset = tmp_path / "p.toml"
    preset.write_text(PRESET)
    release = threading.Event()
    calls: list[tuple[str, tuple[int, int]]] = []

    def slow_describe(cache_dir: Path, name: str, size: tuple[int, int], alpha: Any, said: Any) -> dict[str, Any]:
        calls.append((name, size))
        said(f"describing {name} at {size[0]}x{size[1]}")
        release.wait(10)
        return resnet_like()

    app = HostApp(lambda: FreezeMapScreen(preset_path=str(preset), workspace=ws, describer=slow_describe))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert "describing" in screen_text(app)
        await pilot.press("plus")  # not described yet: nothing changes, nothing breaks
        assert app.screen.depth == 1
        release.set()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert calls == [("resnet50", (32, 32))]
        assert layer_states(app)["conv2_block2_out"] == "·"
        assert "describing" not in screen_text(app)


@asynctest
async def test_describe_failure_is_one_line(ws: Workspace, tmp_path: Path) -> None:
    preset = tmp_path / "p.toml"
    preset.write_text(PRESET)

    def broken(*_: Any) -> dict[str, Any]:
        raise descriptions.DescriptionError("could not describe resnet50: out of memory")

    app = HostApp(lambda: FreezeMapScreen(preset_path=str(preset), workspace=ws, describer=broken))
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "could not describe resnet50: out of memory" in screen_text(app)


@asynctest
async def test_invalid_preset_shows_its_error(ws: Workspace, tmp_path: Path) -> None:
    preset = tmp_path / "bad.toml"
    preset.write_text(PRESET.replace('backbone = "resnet50"', 'backbone = "resnet5O"'))
    app = HostApp(lambda: FreezeMapScreen(preset_path=str(preset), workspace=ws, describer=never_describe))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert "model.backbone" in screen_text(app)


@asynctest
async def test_tree_expand_and_collapse_keys(ws: Workspace) -> None:
    rid = run_with_map(ws)
    app = HostApp(lambda: FreezeMapScreen(run_id=rid, workspace=ws))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        tree = app.screen.query_one("#layer-map-tree")
        await pilot.press("e")
        assert all(n.is_expanded for n in tree.root.children)
        await pilot.press("c")
        assert not any(n.is_expanded for n in tree.root.children)


@asynctest
async def test_explore_mode_picks_a_backbone(ws: Workspace) -> None:
    seen: list[str] = []

    def describe(cache_dir: Path, name: str, size: tuple[int, int], alpha: Any, said: Any) -> dict[str, Any]:
        seen.append(name)
        return resnet_like()

    app = HostApp(lambda: FreezeMapScreen(workspace=ws, describer=describe))
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert seen == ["resnet50"]
        await pilot.press("plus", "plus")
        assert app.screen.depth == 2  # explore: no file, nothing written
        await pilot.press("escape")
        await pilot.pause()
        assert app.results == [None]


@asynctest
async def test_explore_mode_starts_on_a_cached_backbone(ws: Workspace) -> None:
    path = descriptions.cache_path(ws.cache_dir, "vgg16", (64, 64))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**resnet_like(64), "backbone": "vgg16"}))

    def cached_only(cache_dir: Path, name: str, size: tuple[int, int], alpha: Any, said: Any) -> dict[str, Any]:
        doc = descriptions.load_cached(descriptions.cache_path(cache_dir, name, size))
        assert doc is not None, f"{name} {size} is not cached"
        return doc

    app = HostApp(lambda: FreezeMapScreen(workspace=ws, describer=cached_only))
    async with app.run_test(size=(100, 30)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen.map is not None and app.screen.map["backbone"] == "vgg16"
        assert "vgg16 64x64" in screen_text(app)


# ---------------------------------------------------------------------------- snapshots


def _snap_app(ws: Workspace, tmp_path: Path) -> HostApp:
    cache_description(ws)
    preset = tmp_path / "cifar-ft.toml"
    preset.write_text(PRESET)
    return HostApp(lambda: FreezeMapScreen(preset_path=str(preset), workspace=ws))


async def _settle(pilot: Any) -> None:
    await pilot.app.workers.wait_for_complete()
    await pilot.pause()


def test_snapshot_preset_80x24(snap_compare: Any, ws: Workspace, tmp_path: Path) -> None:
    assert snap_compare(_snap_app(ws, tmp_path), terminal_size=(80, 24), run_before=_settle)


def test_snapshot_preset_expanded_160x48(snap_compare: Any, ws: Workspace, tmp_path: Path) -> None:
    async def expand(pilot: Any) -> None:
        await _settle(pilot)
        await pilot.press("plus", "b", "b", "e")  # frozen -> inference -> trainable
        await pilot.pause()

    assert snap_compare(_snap_app(ws, tmp_path), terminal_size=(160, 48), run_before=expand)


def test_snapshot_run_80x24(snap_compare: Any, ws: Workspace) -> None:
    rid = run_with_map(ws)
    app = HostApp(lambda: FreezeMapScreen(run_id=rid, workspace=ws))
    assert snap_compare(app, terminal_size=(80, 24), run_before=_settle)


@asynctest
async def test_a_preset_map_says_the_head_trains_and_lists_each_phase(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 11: never "0/… params train" for a frozen backbone whose head trains; a phased
    preset's later depths on the screen, one line per phase; a folder's classes size the head."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))  # cifar10 not prepared: classes unknown
    cache_description(ws)
    phased = PRESET.replace("depth = 1  # stem + conv2", 'depth = "all"') + (
        '\n[[phases]]\nname = "head"\n\n[[phases]]\nname = "fine-tune"\nfreeze.depth = 2\ntrain.epochs = 4\n'
    )
    preset = tmp_path / "phased.toml"
    preset.write_text(phased)
    app = HostApp(lambda: FreezeMapScreen(preset_path=str(preset), workspace=ws))
    async with app.run_test(size=(160, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        text = screen_text(app)
        assert "· backbone 0/" in text and "+ the head, which trains: 512 x C + C params for C classes" in text
        assert "its size follows the number of classes" in text  # the head stage's line
        phases = screen_text(app.screen.query_one("#fm-phases"))
        assert "phase 1/2 head: 3 epochs, depth all, BatchNorm frozen · 0/" in phases
        assert "phase 2/2 fine-tune: 4 epochs, depth 2, BatchNorm frozen · " in phases
        assert app.screen.has_class("-phased")

    for name in ("cat", "dog"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
    preset.write_text(PRESET.replace("tfds:cifar10", f"folder:{tmp_path / 'imgs'}"))
    app = HostApp(lambda: FreezeMapScreen(preset_path=str(preset), workspace=ws))
    async with app.run_test(size=(160, 40)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert app.screen.map["num_classes"] == 2
        head = next(r for r in app.screen.map["layers"] if r["type"] == "Dense")
        assert head["params"] == 513 * 2 and "+ the head" not in screen_text(app)
        assert not app.screen.has_class("-phased")
