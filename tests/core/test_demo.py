"""The synthetic demo dataset: deterministic, complete, and the demo preset is valid."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from PIL import Image

from tltui.commands.main import main
from tltui.core import demo, presets


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.png")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def test_generate_is_deterministic_and_complete(tmp_path: Path) -> None:
    a = demo.generate(tmp_path / "a", per_class=4, size=24)
    b = demo.generate(tmp_path / "b", per_class=4, size=24)
    assert _digest(a) == _digest(b)
    assert sorted(p.name for p in a.iterdir() if p.is_dir()) == sorted(demo.SHAPES)
    assert demo.is_complete(a)
    img = Image.open(next((a / "star").iterdir()))
    assert img.size == (24, 24) and img.mode == "RGB"
    c = demo.generate(tmp_path / "c", per_class=4, size=24, seed=1)
    assert _digest(c) != _digest(a)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_demo_data_command_writes_shapes_and_photos(tmp_path: Path, capsys) -> None:
    root = tmp_path / "demo-data" / "shapes"
    assert main(["--workspace", str(tmp_path / "ws"), "demo-data", str(root), "--per-class", "3", "--size", "16"]) == 0
    assert len(list(root.rglob("*.png"))) == 3 * len(demo.SHAPES)
    photos = list((tmp_path / "demo-data" / "photos").glob("*.png"))
    assert len(photos) == demo.PHOTOS_PER_CLASS * len(demo.SHAPES)
    assert main(["demo-data", str(root)]) == 0
    assert "already there" in capsys.readouterr().out


def test_shipped_presets_pass_check(tmp_path: Path, capsys) -> None:
    """By name, as a user types them; the demo's data is generated into the workspace on the way."""
    shipped = presets.shipped_presets_dir()
    names = sorted(p.stem for p in shipped.glob("*.toml"))
    assert {"demo", "cifar100-resnet50-transfer", "cifar100-resnet50-freeze-sweep", "cifar100-resnet50-scratch"} <= set(
        names
    )
    before = sorted(p.name for p in shipped.iterdir())
    for name in names:
        assert main(["--workspace", str(tmp_path / "ws"), "check", name, "--json"]) == 0, name
        out = json.loads(capsys.readouterr().out)
        assert out["runs"], name
    assert sorted(p.name for p in shipped.iterdir()) == before  # nothing written into the package
    sweep = presets.expand(presets.load(shipped / "cifar100-resnet50-freeze-sweep.toml"))
    assert [r.preset.freeze.depth for r in sweep] == [0, 1, 2, 3, 4]


def test_demo_preset_lives_in_the_workspace_next_to_its_generated_data(tmp_path: Path) -> None:
    from tltui.core.demo import ensure_demo
    from tltui.core.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    path = ensure_demo(ws)
    assert path == ws.presets_dir / "demo.toml"
    p = presets.load(path)
    assert p.data.source == "folder:" + str((ws.root / "demo-data" / "shapes").resolve())
    assert demo.is_complete(ws.root / "demo-data" / "shapes")
    assert p.model.weights == "none"
    shipped = presets.load(presets.shipped_presets_dir() / "demo.toml")
    assert shipped.model_dump(exclude={"data"}) == p.model_dump(exclude={"data"})  # only the source moved
    path.write_text(path.read_text().replace("epochs = 10", "epochs = 3"))
    assert ensure_demo(ws) == path and presets.load(path).train.epochs == 3  # an edited copy is kept


def test_the_demo_by_name_regenerates_its_data_when_it_was_deleted(tmp_path: Path, capsys) -> None:
    import shutil

    ws = tmp_path / "ws"
    assert main(["--workspace", str(ws), "check", "demo"]) == 0
    shutil.rmtree(ws / "demo-data")
    assert main(["--workspace", str(ws), "check", "demo"]) == 0
    assert demo.is_complete(ws / "demo-data" / "shapes")


def test_looking_the_demo_up_writes_nothing_and_the_commands_that_train_it_ask_for_its_data(
    tmp_path: Path, capsys
) -> None:
    from tltui.core.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    data = ws.root / "demo-data" / "shapes"
    assert presets.find_preset("demo", ws) == presets.shipped_presets_dir() / "demo.toml"
    assert main(["--workspace", str(ws.root), "weights", "fetch", "demo"]) == 0  # the weights need no data
    assert not data.exists() and not (ws.presets_dir / "demo.toml").exists()

    assert main(["--workspace", str(ws.root), "queue", "add", "demo", "--no-runner"]) == 0
    assert demo.is_complete(data)
    assert presets.find_preset("demo", ws) == ws.presets_dir / "demo.toml"  # the workspace's copy, found first
    (rec,) = ws.list_runs()
    assert presets.load(ws.run_paths(rec.id).preset).data.source == "folder:" + str(data.resolve())
