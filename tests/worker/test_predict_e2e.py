"""End to end: ``tltui predict`` and the client through the real TensorFlow worker.

One tiny colour model (see ``tests/predict_corpus.py``) is built once per test
process, in a child process; these tests share it through an xdist group.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tltui import cli
from tltui.predict_client import PredictionRow, PredictJob, PredictStarted, Progress, Skipped

import predict_corpus as pc

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("predict_e2e")]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pc.build_models(tmp_path_factory.mktemp("predict_models"))


def test_labelled_folder_json_report(ws, tmp_path: Path, models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    corpus = pc.make_corpus(tmp_path / "photos")
    run_id = pc.make_run(ws, models / "model.keras")
    assert cli.main(["--workspace", str(ws.root), "predict", run_id, str(corpus), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)

    preds = {p["path"][len(str(corpus)) + 1 :]: p for p in doc["predictions"]}
    assert list(preds) == sorted(pc.EXPECTED, key=lambda r: r.split("/"))
    for rel, (true, top1) in pc.EXPECTED.items():
        assert preds[rel]["top_k"][0]["label"] == top1, rel
        assert preds[rel]["true_label"] == true, rel
    # sorted by probability, not by class index (red, green, blue, d, e)
    assert [t["label"] for t in preds["red/a_red.png"]["top_k"]] == ["red", "d", "f", "e", "green"]
    assert [t["label"] for t in preds["red/b_black.jpg"]["top_k"]] == ["d", "f", "e", "green", "red"]
    probs = [t["probability"] for t in preds["red/b_black.jpg"]["top_k"]]
    assert probs == sorted(probs, reverse=True) and 0 < probs[-1] < probs[0] < 1

    skipped = {s["path"][len(str(corpus)) + 1 :]: s["reason"] for s in doc["skipped"]}
    assert skipped.keys() == pc.SKIPPED.keys()
    for rel, words in pc.SKIPPED.items():
        assert words in skipped[rel], (rel, skipped[rel])

    s = doc["summary"]
    assert (s["images"], s["predicted"], s["skipped"]) == (18, 13, 5)
    assert s["accuracy"] == pytest.approx(10 / 12)
    assert s["top5_accuracy"] == pytest.approx(11 / 12)  # the black "red" image has red at rank 5
    assert s["confusion"] == {
        "labels": ["red", "green", "blue", "d"],
        "matrix": [[3, 0, 0, 1], [0, 3, 0, 0], [1, 0, 4, 0], [0, 0, 0, 0]],
    }
    assert sorted((m["path"][len(str(corpus)) + 1 :], m["predicted"]) for m in s["misclassified"]) == [
        ("blue/d_red.bmp", "red"),
        ("red/b_black.jpg", "d"),
    ]


def test_model_with_a_lambda_layer_is_refused(ws, tmp_path: Path, models: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    pc.solid(pc.RED).save(folder / "a.png")
    run_id = pc.make_run(ws, models / "lambda.keras")
    assert cli.main(["--workspace", str(ws.root), "predict", run_id, str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: {run_id}: ") and "refused to load" in err and "Lambda" in err


def test_client_streams_small_batches_with_capped_top_k_and_low_res(ws, tmp_path: Path, models: Path) -> None:
    folder = tmp_path / "flat"
    folder.mkdir()
    colours = {"a.png": pc.RED, "b.png": pc.GREEN, "c.jpg": pc.BLUE, "d.png": pc.BLACK, "e.webp": pc.RED}
    for name, colour in colours.items():
        pc.solid(colour, (20, 20)).save(folder / name)
    pc.solid(pc.RED, (50, 50)).save(folder / "huge.png")
    run_id = pc.make_run(ws, models / "model.keras", native_size=(4, 4))
    job = PredictJob(
        ws.run_paths(run_id).dir, folder, top_k=10, low_res=True, batch_size=2, max_pixels=1000
    )
    with job:
        recs = list(job)
    start = recs[0]
    assert isinstance(start, PredictStarted)
    assert (start.total, start.top_k, start.labels, start.low_res) == (6, 6, None, True)
    rows = [r for r in recs if isinstance(r, PredictionRow)]
    assert [Path(r.path).name for r in rows] == list(colours)
    assert [r.label for r in rows] == ["red", "green", "blue", "d", "red"]
    assert all(len(r.top_k) == 6 and r.true_label is None for r in rows)
    assert sum(p for _, p in rows[0].top_k) == pytest.approx(1.0, abs=1e-4)
    assert [(Path(s.path).name, s.reason.split(" (")[0]) for s in recs if isinstance(s, Skipped)] == [
        ("huge.png", "too large to decode safely")
    ]
    done = [p.done for p in recs if isinstance(p, Progress)]
    assert done == sorted(done) and done[-1] == 6 and len(done) >= 3  # batches of 2
