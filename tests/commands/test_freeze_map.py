"""``tltui freeze-map``: cached maps without TensorFlow, JSON schema, presets, runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.core.test_freeze_policy import resnet50_description
from tltui.commands import main as cli
from tltui.core import descriptions
from tltui.core.workspace import Workspace, write_json

LAYER_KEYS = {"name", "type", "stage", "trainable", "params", "output_shape", "bn_inference"}


@pytest.fixture
def cached(ws: Workspace) -> Workspace:
    """A workspace whose cache holds ResNet50's description at 224x224 (no worker needed)."""
    path = descriptions.cache_path(ws.cache_dir, "resnet50", (224, 224))
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, resnet50_description())
    return ws


def run_cli(ws: Workspace, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = cli.main(["--workspace", str(ws.root), *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cached_map_never_imports_tensorflow(cached: Workspace, tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text(
        "import json, sys\n"
        "from tltui.commands.main import main\n"
        f"rc = main(['--workspace', {str(cached.root)!r}, 'freeze-map', 'resnet50', '--depth', '2', '--json'])\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf_keras'))\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}), file=sys.stderr)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False)
    probe = json.loads(proc.stderr.strip().splitlines()[-1])
    assert probe == {"rc": 0, "heavy": []}
    doc = json.loads(proc.stdout)
    assert doc["backbone"] == "resnet50" and doc["depth"] == 2
    assert [s["name"] for s in doc["stages"]] == ["input", "stem+conv2", "conv3", "conv4", "conv5", "head"]


def test_json_schema(cached: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, _ = run_cli(
        cached,
        "freeze-map",
        "resnet50",
        "--depth",
        "all",
        "--batchnorm",
        "trainable",
        "--classes",
        "100",
        "--json",
        capsys=capsys,
    )
    assert rc == 0
    doc = json.loads(out)
    assert {"backbone", "depth", "batchnorm", "stages", "layers", "totals"} <= set(doc)
    assert doc["depth"] == "all" and doc["batchnorm"] == "trainable" and doc["num_classes"] == 100
    for row in doc["layers"]:
        assert set(row) >= LAYER_KEYS
        assert isinstance(row["trainable"], bool) and isinstance(row["params"], int)
    head = [r for r in doc["layers"] if r["stage"] == "head"]
    assert [r["type"] for r in head] == ["GlobalAveragePooling2D", "Dense", "Activation"]
    assert all(r["trainable"] for r in head)
    convs = [r for r in doc["layers"] if r["type"] == "Conv2D"]
    assert len(convs) == 53 and not any(r["trainable"] for r in convs)
    assert all(r["trainable"] for r in doc["layers"] if r["type"] == "BatchNormalization")
    for s in doc["stages"]:
        assert {"name", "layers", "frozen", "trainable", "params", "frozen_params", "trainable_params"} <= set(s)


def test_backbone_defaults_to_depth_0_with_frozen_batchnorm(
    cached: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = run_cli(cached, "freeze-map", "resnet50", "--json", capsys=capsys)
    doc = json.loads(out)
    assert rc == 0 and doc["depth"] == 0 and doc["batchnorm"] == "frozen"
    assert all(r["trainable"] for r in doc["layers"] if r["type"] == "Conv2D")
    assert doc["totals"]["bn_inference"] == 53


def test_human_output_has_a_line_per_stage_and_layers_on_request(
    cached: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    rc, out, _ = run_cli(cached, "freeze-map", "resnet50", "--depth", "1", capsys=capsys)
    assert rc == 0
    lines = out.splitlines()
    stage_line = next(l for l in lines if l.strip().startswith("stem+conv2"))
    assert stage_line.split()[1:4] == ["39", "39", "0"]  # layers, frozen, trainable
    assert "█" in stage_line and "░" not in stage_line
    assert next(l for l in lines if l.strip().startswith("conv3")).split()[1:4] == ["42", "13", "29"]
    assert any(l.strip().startswith("total") for l in lines)
    assert "conv3_block1_1_conv" not in out
    rc, out, _ = run_cli(cached, "freeze-map", "resnet50", "--depth", "1", "--layers", capsys=capsys)
    assert "conv3_block1_1_conv" in out and "BatchNorm inference mode" in out


def test_depth_beyond_the_stages_is_one_line_error(cached: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    rc, out, err = run_cli(cached, "freeze-map", "resnet50", "--depth", "5", capsys=capsys)
    assert rc == 2 and out == ""
    assert err.strip().count("\n") == 0
    assert "freeze.depth = 5" in err and "4 stages" in err


def test_unknown_ref_is_one_line_error(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = run_cli(ws, "freeze-map", "resnet5", capsys=capsys)
    assert rc == 2 and "not a backbone, a preset or a run id" in err and err.count("\n") == 1


def test_preset_uses_its_depth_batchnorm_size_and_classes(
    cached: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("cat", "dog", "owl"):
        (tmp_path / "imgs" / name).mkdir(parents=True)
    preset = tmp_path / "p.toml"
    preset.write_text(
        'name = "p"\n[data]\nsource = "folder:imgs"\nimage_size = [224, 224]\n'
        '[model]\nbackbone = "resnet50"\n[freeze]\ndepth = 3\nbatchnorm = "trainable"\n'
    )
    rc, out, _ = run_cli(cached, "freeze-map", str(preset), "--json", capsys=capsys)
    doc = json.loads(out)
    assert rc == 0 and doc["preset"] == "p" and doc["depth"] == 3 and doc["batchnorm"] == "trainable"
    assert doc["num_classes"] == 3
    assert next(r for r in doc["layers"] if r["type"] == "Dense")["params"] == (2048 + 1) * 3
    assert sum(1 for r in doc["layers"] if r["type"] == "Conv2D" and not r["trainable"]) == 43
    assert any("batchnorm" in w for w in doc["warnings"])
    rc, out, _ = run_cli(
        cached, "freeze-map", str(preset), "--set", "freeze.depth=1", "--batchnorm", "frozen", "--json", capsys=capsys
    )
    doc = json.loads(out)
    assert (doc["depth"], doc["batchnorm"]) == (1, "frozen")


def _run_with_map(ws: Workspace, doc: dict[str, Any] | None) -> str:
    (rec,) = ws.create_runs([("r", 'name = "r"\n', {})], preset_name="r")
    if doc is not None:
        write_json(ws.run_paths(rec.id).freeze_map, doc)
    return rec.id


def test_run_prints_the_map_the_worker_recorded(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    from tltui.core import freeze_policy

    recorded = freeze_policy.build_map(resnet50_description(), 2, "trainable")
    run_id = _run_with_map(ws, recorded)
    rc, out, _ = run_cli(ws, "freeze-map", run_id, "--json", capsys=capsys)
    assert rc == 0
    assert json.loads(out) == {**recorded, "run": run_id, "moved": None}  # no epoch ended: no moved record yet
    rc, out, _ = run_cli(ws, "freeze-map", run_id, capsys=capsys)
    assert rc == 0 and out.startswith(f"run {run_id}: resnet50")
    rc, _, err = run_cli(ws, "freeze-map", run_id, "--depth", "1", capsys=capsys)
    assert rc == 2 and "what it trained with" in err


def test_run_without_a_map_says_why(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = _run_with_map(ws, None)
    rc, _, err = run_cli(ws, "freeze-map", run_id, capsys=capsys)
    assert rc == 2 and f"{run_id} (queued) has no freeze map yet" in err


def test_description_is_made_once_by_the_worker_then_cached(tmp_path: Path) -> None:
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        calls.append(cmd)
        assert kw["env"]["CUDA_VISIBLE_DEVICES"] == "-1"
        out = Path(cmd[cmd.index("--out") + 1])
        write_json(out, resnet50_description())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    told: list[str] = []
    doc = descriptions.get(tmp_path, "resnet50", (224, 224), run=fake_run, on_describe=told.append)
    again = descriptions.get(tmp_path, "resnet50", (224, 224), run=fake_run, on_describe=told.append)
    assert doc == again and len(calls) == 1 and len(told) == 1
    assert calls[0][1:5] == ["-m", "tltui.worker", "describe", "resnet50"]
    assert calls[0][calls[0].index("--image-size") + 1 :][:2] == ["224", "224"]


def test_worker_failure_is_one_line(tmp_path: Path) -> None:
    def failing(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(cmd, 2, "", "Traceback...\nerror: model.backbone: no such thing\n")

    with pytest.raises(
        descriptions.DescriptionError, match=r"^could not describe resnet50: model.backbone: no such thing$"
    ):
        descriptions.get(tmp_path, "resnet50", (224, 224), run=failing)


def test_stale_cache_format_is_described_again(tmp_path: Path) -> None:
    path = descriptions.cache_path(tmp_path, "resnet50", (224, 224))
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"version": 0, "layers": []}))
    assert descriptions.load_cached(path) is None
    path.write_text("{not json")
    assert descriptions.load_cached(path) is None


def test_moved_needs_a_run_and_its_record(ws: Workspace, capsys: pytest.CaptureFixture[str]) -> None:
    from tltui.core import freeze_policy

    run_id = _run_with_map(ws, freeze_policy.build_map(resnet50_description(), 2, "trainable"))
    rc, _, err = run_cli(ws, "freeze-map", run_id, "--moved", capsys=capsys)
    assert rc == 2 and "no weights-moved record yet" in err
    rc, _, err = run_cli(ws, "freeze-map", "resnet50", "--moved", capsys=capsys)
    assert rc == 2 and "--moved needs a run id" in err


PHASED = """\
name = "two-phase"
[data]
source = "tfds:beans"
image_size = [224, 224]
[model]
backbone = "resnet50"
[freeze]
depth = "all"
[train]
epochs = 3
[[phases]]
name = "head"
[[phases]]
name = "fine-tune"
freeze.depth = 3
train.epochs = 4
"""


def test_a_preset_map_counts_the_head_honestly_and_lists_each_phase(
    cached: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Finding 11: a frozen backbone's map said "0 of N train" though the head trains, and a phased
    preset showed only [freeze]. Unprepared TFDS data: the head's size follows the classes; prepared:
    its dataset_info.json counts them."""
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
    preset = tmp_path / "two-phase.toml"
    preset.write_text(PHASED)
    rc, out, err = run_cli(cached, "freeze-map", str(preset), capsys=capsys)
    assert rc == 0 and "trains in phases" not in err  # listed on the map, not as a warning
    assert "+ the head, which trains: 2048 x C + C params for C classes" in out
    assert "the preset trains in 2 phases (--phase N maps one):" in out
    lines = [line.strip() for line in out.splitlines() if line.strip().startswith("phase ")]
    assert lines[0].startswith("phase 1/2 head: 3 epochs, depth all, BatchNorm frozen · 0/")
    assert lines[0].endswith(" params train + the head")
    assert lines[1].startswith("phase 2/2 fine-tune: 4 epochs, depth 3, BatchNorm frozen · ")
    assert not lines[1].startswith("phase 2/2 fine-tune: 4 epochs, depth 3, BatchNorm frozen · 0/")

    info = tmp_path / "tfds" / "beans" / "0.1.0" / "dataset_info.json"
    info.parent.mkdir(parents=True)
    features = {"label": {"classLabel": {"numClasses": "3"}}, "image": {"image": {"shape": {}}}}
    info.write_text(json.dumps({"name": "beans", "features": {"featuresDict": {"features": features}}}))
    rc, out, _ = run_cli(cached, "freeze-map", str(preset), "--json", capsys=capsys)
    doc = json.loads(out)
    assert rc == 0 and doc["num_classes"] == 3 and doc["totals"]["trainable_params"] == 2049 * 3
    assert [(p["label"], p["depth"], p["trainable_params"]) for p in doc["phases"]][0] == ("1/2 head", "all", 2049 * 3)
    assert doc["phases"][1]["trainable_params"] > 2049 * 3
