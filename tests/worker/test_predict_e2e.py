"""End to end: the client and ``tltui predict`` through the real TensorFlow worker.

One tiny colour model (see ``tests/predict_corpus.py``) is built once per test
process, in a child process; these tests share it through an xdist group.
"""

from __future__ import annotations

from pathlib import Path

import predict_corpus as pc
import pytest

from tltui.client.predict import PredictJob, PredictReport, Progress
from tltui.commands import main as cli

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("predict_e2e")]


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return pc.build_models(tmp_path_factory.mktemp("predict_models"))


def test_labelled_folder_streams_top_k_scores_and_skips(ws, tmp_path: Path, models: Path) -> None:
    corpus = pc.make_corpus(tmp_path / "photos")
    run_id = pc.make_run(ws, models / "model.keras", native_size=(4, 4))
    report = PredictReport(run_id, str(corpus))
    progress: list[int] = []
    # batches of 2 (the last one partial), top-k above the class count, the low-res path
    with PredictJob(ws.run_paths(run_id).dir, corpus, top_k=10, low_res=True, batch_size=2) as job:
        for rec in job:
            report.add(rec)
            if isinstance(rec, Progress):
                progress.append(rec.done)
    assert report.started is not None
    assert (report.started.total, report.started.top_k, report.started.low_res) == (18, 6, True)
    assert progress == sorted(progress) and progress[-1] == 18 and len(progress) >= 7
    doc = report.to_json()

    preds = {p["path"][len(str(corpus)) + 1 :]: p for p in doc["predictions"]}
    assert list(preds) == sorted(pc.EXPECTED, key=lambda r: r.split("/"))
    for rel, (true, top1) in pc.EXPECTED.items():
        assert preds[rel]["top_k"][0]["label"] == top1, rel
        assert preds[rel]["true_label"] == true, rel
        assert len(preds[rel]["top_k"]) == 6
    # sorted by probability, not by class index (red, green, blue, d, e, f)
    assert [t["label"] for t in preds["red/a_red.png"]["top_k"]] == ["red", "d", "f", "e", "green", "blue"]
    assert [t["label"] for t in preds["red/b_black.jpg"]["top_k"]] == ["d", "f", "e", "green", "red", "blue"]
    probs = [t["probability"] for t in preds["red/b_black.jpg"]["top_k"]]
    assert probs == sorted(probs, reverse=True) and 0 < probs[-1] < probs[0] < 1
    assert sum(probs) == pytest.approx(1.0, abs=1e-4)

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


def test_model_with_a_lambda_layer_is_refused(
    ws, tmp_path: Path, models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "one"
    folder.mkdir()
    pc.solid(pc.RED).save(folder / "a.png")
    run_id = pc.make_run(ws, models / "lambda.keras")
    assert cli.main(["--workspace", str(ws.root), "predict", run_id, str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"error: {run_id}: ") and "refused to load" in err and "Lambda" in err


def sharp_photos(folder: Path) -> Path:
    """Photo-like images, much larger and sharper than the run's 4x4 training images: fine red and
    blue lines on black (what a CIFAR run meets in a folder of real photos)."""
    import numpy as np
    from PIL import Image

    (folder / "red").mkdir(parents=True)
    x = np.zeros((64, 64, 3), np.uint8)
    x[:, ::8, 0] = 255
    x[::8, :, 2] = 255
    Image.fromarray(x).save(folder / "red" / "lines.png")
    Image.fromarray(x[:40, :56]).save(folder / "red" / "crop.png")
    return folder


def test_by_default_images_go_through_the_training_size_as_with_low_res(
    ws, tmp_path: Path, models: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    folder = sharp_photos(tmp_path / "photos")
    run_id = pc.make_run(ws, models / "model.keras", native_size=(4, 4), image_size=(16, 16))

    def predict(*flags: str) -> tuple[dict, str]:
        assert cli.main(["--workspace", str(ws.root), "predict", run_id, str(folder), "--json", *flags]) == 0
        out = capsys.readouterr()
        doc = json.loads(out.out)
        return {p["path"]: p["top_k"] for p in doc["predictions"]} | {"low_res": doc["low_res"]}, out.err

    default, default_err = predict()
    low, low_err = predict("--low-res")
    full, full_err = predict("--full-res")
    assert default == low and default["low_res"] is True and full["low_res"] is False
    assert default_err.strip() == "images shrunk to 4x4 first, as the training images were (--full-res to turn off)"
    assert low_err == full_err == ""  # asked for explicitly: nothing to point out
    paths = [p for p in default if p != "low_res"]
    assert len(paths) == 2
    gaps = [abs(a["probability"] - b["probability"]) for p in paths for a, b in zip(default[p], full[p], strict=True)]
    assert max(gaps) > 1e-3  # the full-resolution path feeds the model other pixels
