"""``tltui predict``: user errors, and the JSON/CSV/table outputs (scripted fake worker, no TF)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import predict_corpus as pc
import pytest

from tltui.commands import main as cli
from tltui.runner.supervisor import WORKER_CMD_ENV


@pytest.fixture
def fake_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WORKER_CMD_ENV, json.dumps(pc.fake_worker_cmd(tmp_path)))


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    p = tmp_path / "model.keras"
    p.write_bytes(b"not really a model: the fake worker never opens it")
    return p


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return pc.make_corpus(tmp_path / "photos")


def _run(ws, *argv: str) -> int:
    return cli.main(["--workspace", str(ws.root), "predict", *argv])


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


def test_unknown_run_is_one_line_exit_2(ws, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(ws, "r0042", str(corpus)) == 2
    assert _one_error_line(capsys) == "error: r0042: no such run (see `tltui runs ls`)"


@pytest.mark.parametrize("status", ["queued", "running", "failed", "cancelled"])
def test_run_that_is_not_completed_is_refused(
    ws, corpus: Path, model_file: Path, status: str, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = pc.make_run(ws, model_file, status=status)
    assert _run(ws, run_id, str(corpus)) == 2
    assert _one_error_line(capsys) == f"error: {run_id}: is {status}, not completed; only a completed run can predict"


def test_completed_run_without_model_is_refused(ws, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = pc.make_run(ws, None)
    assert _run(ws, run_id, str(corpus)) == 2
    line = _one_error_line(capsys)
    assert line.startswith(f"error: {run_id}: has no model (") and "model.keras is missing" in line


def test_missing_folder_or_file_instead_of_folder(
    ws, tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = pc.make_run(ws, model_file)
    assert _run(ws, run_id, str(tmp_path / "nope")) == 2
    assert _one_error_line(capsys) == f"error: {tmp_path / 'nope'}: no such folder"
    assert _run(ws, run_id, str(model_file)) == 2
    assert _one_error_line(capsys) == f"error: {model_file}: is a file, expected a folder of images"


@pytest.mark.parametrize("bad", [["--top-k", "0"], ["--batch-size", "-1"], ["--json", "--csv", "x.csv"]])
def test_bad_options_are_usage_errors(ws, corpus: Path, bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        _run(ws, "1", str(corpus), *bad)
    assert e.value.code == 2
    assert _one_error_line(capsys).startswith("tltui predict: error:")


def test_worker_failure_is_one_line_exit_2(
    ws,
    corpus: Path,
    model_file: Path,
    fake_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FAKE_MODE", "error")
    run_id = pc.make_run(ws, model_file)
    assert _run(ws, run_id, str(corpus)) == 2
    assert _one_error_line(capsys) == f"error: {run_id}: model.keras: refused to load"


def test_json_output(ws, corpus: Path, model_file: Path, fake_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = pc.make_run(ws, model_file)
    assert _run(ws, run_id, str(corpus), "--json", "--top-k", "2") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["run"] == run_id
    assert [p["path"] for p in doc["predictions"]] == [
        str(corpus / r) for r in sorted(pc.EXPECTED, key=lambda r: r.split("/"))
    ]
    assert doc["predictions"][0]["top_k"] == [{"label": "red", "probability": 0.7}, {"label": "d", "probability": 0.2}]
    assert {p["path"]: p["true_label"] for p in doc["predictions"]}[str(corpus / "loose.png")] is None
    assert sorted(s["path"] for s in doc["skipped"]) == sorted(str(corpus / r) for r in pc.SKIPPED)
    s = doc["summary"]
    assert (s["images"], s["predicted"], s["skipped"]) == (18, 13, 5)
    assert s["accuracy"] == pytest.approx(4 / 12)  # the fake model says "red" for everything
    assert s["confusion"]["labels"] == ["red", "green", "blue"]
    assert s["confusion"]["matrix"] == [[4, 0, 0], [3, 0, 0], [5, 0, 0]]
    assert len(s["misclassified"]) == 8


def test_csv_output_is_written_atomically(
    ws, tmp_path: Path, corpus: Path, model_file: Path, fake_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = pc.make_run(ws, model_file)
    out = tmp_path / "out.csv"
    out.write_text("old content\n")
    assert _run(ws, run_id, str(corpus), "--csv", str(out)) == 0
    assert "wrote 13 rows" in capsys.readouterr().err
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 13
    by_path = {r["path"]: r for r in rows}
    assert by_path[str(corpus / "red/a_red.png")]["correct"] == "true"
    assert by_path[str(corpus / "blue/d_red.bmp")]["correct"] == "false"
    assert by_path[str(corpus / "loose.png")]["correct"] == ""
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out.csv")] == []


def test_csv_into_a_missing_folder_is_refused(
    ws, tmp_path: Path, corpus: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = pc.make_run(ws, model_file)
    assert _run(ws, run_id, str(corpus), "--csv", str(tmp_path / "no/out.csv")) == 2
    assert "does not exist" in _one_error_line(capsys)
    assert _run(ws, run_id, str(corpus), "--csv", str(tmp_path)) == 2
    assert "is a folder; give a file name for --csv" in _one_error_line(capsys)


def test_table_output(ws, corpus: Path, model_file: Path, fake_env: None, capsys: pytest.CaptureFixture[str]) -> None:
    run_id = pc.make_run(ws, model_file)
    assert _run(ws, run_id, str(corpus)) == 0
    out = capsys.readouterr().out.splitlines()
    assert any(ln.startswith("ok  red/a_red.png") and "red 70.0%  | d 20.0%, blue 10.0%" in ln for ln in out)
    assert any(ln.startswith("BAD blue/d_red.bmp") and ln.endswith("(true: blue)") for ln in out)
    assert "skipped 5:" in out
    assert "  green/z_empty.png: empty file" in out
    assert f"{corpus.absolute()}: 13 predicted, 5 skipped" in out
    assert "accuracy 33.3% (4/12), top-5 accuracy 75.0%" in out
    assert "  blue/d_red.bmp: blue -> red 70.0%" in out


def test_unlabelled_folder_table_has_no_scores(
    ws, tmp_path: Path, model_file: Path, fake_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "flat"
    folder.mkdir()
    pc.solid(pc.RED).save(folder / "one.png")
    run_id = pc.make_run(ws, model_file)
    assert _run(ws, run_id, str(folder)) == 0
    out = capsys.readouterr().out
    assert out.startswith("one.png  red 70.0%")
    assert "accuracy" not in out


def test_predict_is_listed_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["predict", "--help"])
    assert "--low-res" in capsys.readouterr().out
    assert os.environ.get(WORKER_CMD_ENV) is None


def test_progress_bar_path_collects_every_record(capsys: pytest.CaptureFixture[str]) -> None:
    from tltui.client.predict import PredictionRow, PredictReport, PredictStarted, Progress, Skipped
    from tltui.commands import predict as cmd

    recs = [
        PredictStarted(2, pc.CLASSES, None, 1, [16, 16]),
        PredictionRow("/p/a.png", [("red", 0.9)], None, "a.png"),
        Progress(1, 2),
        Skipped("/p/b.png", "empty file", "b.png"),
        Progress(2, 2),
    ]
    report = PredictReport("r0001", "/p")
    cmd._collect(iter(recs), report, show_progress=True)
    assert (len(report.rows), len(report.skipped), report.progress) == (1, 1, Progress(2, 2))
    assert capsys.readouterr().out == ""


def test_confusion_csv_and_the_most_confused_pairs(
    ws, tmp_path: Path, corpus: Path, model_file: Path, fake_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = pc.make_run(ws, model_file)
    out = tmp_path / "confusion.csv"
    assert _run(ws, run_id, str(corpus), "--confusion-csv", str(out)) == 0
    captured = capsys.readouterr()
    assert f"wrote the confusion matrix to {out}" in captured.err
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["true_label", "images", "accuracy", "red", "green", "blue"]
    assert rows[1:] == [
        ["red", "4", "1.000000", "4", "0", "0"],
        ["green", "3", "0.000000", "3", "0", "0"],
        ["blue", "5", "0.000000", "5", "0", "0"],
    ]
    assert "most confused (true -> predicted):" in captured.out and "  blue -> red: 5" in captured.out
    assert "per-class accuracy (lowest first): blue 0.0% (0/5), green 0.0% (0/3), red 100.0% (4/4)" in captured.out
    assert _run(ws, run_id, str(corpus), "--json") == 0
    s = json.loads(capsys.readouterr().out)["summary"]
    assert s["confused_pairs"] == [
        {"true_label": "blue", "predicted": "red", "count": 5},
        {"true_label": "green", "predicted": "red", "count": 3},
    ]
    assert [(r["label"], r["images"], r["correct"]) for r in s["per_class"]] == [
        ("red", 4, 4),
        ("green", 3, 0),
        ("blue", 5, 0),
    ]


def test_against_a_second_run_lists_where_they_disagree(
    ws,
    corpus: Path,
    model_file: Path,
    fake_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    a, b = pc.make_run(ws, model_file), pc.make_run(ws, model_file)
    monkeypatch.setenv("FAKE_GREEN_RUN", b)
    assert _run(ws, a, str(corpus), "--against", b, "--json") == 0
    d = json.loads(capsys.readouterr().out)["against"]
    assert (d["run_a"], d["run_b"], d["agree"], d["both"]) == (a, b, 0, 13)
    right = {r["rel"]: r["right"] for r in d["disagree"]}
    assert (
        right["red/a_red.png"] == "a" and right["green/b_palette.png"] == "b" and right["blue/d_red.bmp"] == "neither"
    )
    assert right["loose.png"] is None  # unlabelled
    assert d["accuracy"] == {"a": pytest.approx(4 / 12), "b": pytest.approx(3 / 12)}
    assert _run(ws, a, str(corpus), "--against", b) == 0
    out = capsys.readouterr().out
    assert f"{a} vs {b}: agree on 0 of 13 images, disagree on 13 (accuracy 33.3% vs 25.0%)" in out
    assert any(
        "red/a_red.png" in ln and "red 70%" in ln and "green 60%" in ln and ln.endswith("red <")
        for ln in out.splitlines()
    )
    assert _run(ws, a, str(corpus), "--against", a) == 2
    assert "that is" in _one_error_line(capsys)


RGB = ["red", "green", "blue"]
TOP5_NA = "top-5 n/a with 3 classes (it would be 100% by construction)"


def test_top5_is_na_with_fewer_than_six_classes(
    ws, corpus: Path, model_file: Path, fake_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = pc.make_run(ws, model_file, classes=RGB)
    assert _run(ws, run_id, str(corpus)) == 0
    out = capsys.readouterr().out
    assert f"accuracy 33.3% (4/12), {TOP5_NA}" in out.splitlines()
    assert "top-5 accuracy" not in out and "top-5 100" not in out
    assert "each image lists" not in out  # the accuracy line already says it for the default top-5
    assert _run(ws, run_id, str(corpus), "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["summary"]["top5_accuracy"] is None and doc["summary"]["top5_note"] == TOP5_NA
    assert doc["top_k"] == 3 and doc["top_k_note"] == TOP5_NA


def test_top_k_at_least_the_number_of_classes_says_so(
    ws, tmp_path: Path, corpus: Path, model_file: Path, fake_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = pc.make_run(ws, model_file)  # 6 classes: top-5 accuracy is a number
    assert _run(ws, run_id, str(corpus), "--top-k", "10") == 0
    out = capsys.readouterr().out.splitlines()
    assert "top-10 n/a with 6 classes (it would be 100% by construction): each image lists all 6 classes" in out
    assert "accuracy 33.3% (4/12), top-5 accuracy 75.0%" in out
    assert _run(ws, run_id, str(corpus), "--top-k", "5") == 0
    assert "each image lists" not in capsys.readouterr().out
    flat = tmp_path / "flat"  # unlabelled, 3 classes: no accuracy line, so the lists' line says it
    flat.mkdir()
    pc.solid(pc.RED).save(flat / "one.png")
    rgb = pc.make_run(ws, model_file, classes=RGB)
    assert _run(ws, rgb, str(flat)) == 0
    assert f"{TOP5_NA}: each image lists all 3 classes" in capsys.readouterr().out.splitlines()


@pytest.mark.parametrize(
    ("flags", "native", "low_res", "note"),
    [
        ([], (4, 4), True, "images shrunk to 4x4 first, as the training images were (--full-res to turn off)\n"),
        (["--full-res"], (4, 4), False, ""),
        (["--low-res"], (4, 4), True, ""),  # asked for: nothing to point out
        ([], (16, 16), False, ""),  # trained at the input size: nothing to shrink
        ([], None, False, ""),  # a run without a recorded native size
    ],
)
def test_the_default_resolution_follows_training_and_says_so(
    ws,
    corpus: Path,
    model_file: Path,
    fake_env: None,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    native: tuple[int, int] | None,
    low_res: bool,
    note: str,
) -> None:
    run_id = pc.make_run(ws, model_file, native_size=native, image_size=(16, 16))
    assert _run(ws, run_id, str(corpus), "--json", *flags) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["low_res"] is low_res
    assert out.err == note


def test_low_res_and_full_res_exclude_each_other(ws, corpus: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        _run(ws, "1", str(corpus), "--low-res", "--full-res")
    assert e.value.code == 2 and "not allowed with argument" in _one_error_line(capsys)


def test_a_second_run_that_trained_at_another_size_gets_its_own_note() -> None:
    from tltui.client.predict import PredictReport, PredictStarted
    from tltui.commands.predict import low_res_notes

    def report(run_id: str, native: list[int] | None, low_res: bool = True) -> PredictReport:
        r = PredictReport(run_id, "/p")
        r.add(PredictStarted(1, pc.CLASSES, None, 5, [224, 224], low_res and native is not None, native))
        return r

    shrunk = "images shrunk to 32x32 first, as the training images were"
    assert low_res_notes(report("r1", [32, 32]), None) == [shrunk]
    assert low_res_notes(report("r1", [32, 32]), report("r2", [32, 32])) == [shrunk]  # once
    assert low_res_notes(report("r1", [32, 32]), report("r2", [64, 64])) == [
        shrunk,
        "r2: images shrunk to 64x64 first, as the training images were",
    ]
    assert low_res_notes(report("r1", None), report("r2", [32, 32])) == [f"r2: {shrunk}"]
    assert low_res_notes(report("r1", [224, 224]), None) == []  # trained at the input size


def test_confusion_csv_of_an_unlabelled_folder_is_refused_before_classifying(
    ws,
    tmp_path: Path,
    model_file: Path,
    fake_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("FAKE_MODE", "error")  # had the worker run, this would be its error instead
    folder = tmp_path / "flat"
    folder.mkdir()
    pc.solid(pc.RED).save(folder / "one.png")
    run_id = pc.make_run(ws, model_file)
    out, conf = tmp_path / "out.csv", tmp_path / "c.csv"
    assert _run(ws, run_id, str(folder), "--confusion-csv", str(conf), "--csv", str(out)) == 2
    assert _one_error_line(capsys) == (
        f"error: --confusion-csv: {folder} is not labelled (no subfolder per class name)"
    )
    assert not out.exists() and not conf.exists()


def _nearly_labelled(root: Path) -> Path:
    for name, colour in (("red", pc.RED), ("Green", pc.GREEN), ("unknown", pc.BLUE)):
        (root / name).mkdir(parents=True)
        pc.solid(colour).save(root / name / "a.png")
    return root


def test_subfolders_that_are_not_classes_are_named(
    ws, tmp_path: Path, model_file: Path, fake_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _nearly_labelled(tmp_path / "photos")
    run_id = pc.make_run(ws, model_file)
    assert _run(ws, run_id, str(folder), "--json") == 0
    captured = capsys.readouterr()
    assert "accuracy" not in json.loads(captured.out)["summary"]
    why = (
        "subfolder(s) Green, unknown are not classes of the run (Green: did you mean green?): "
        "no accuracy or confusion matrix until every subfolder is named after a class"
    )
    assert f"{folder}: {why}" in captured.err.splitlines()
    assert _run(ws, run_id, str(folder), "--confusion-csv", str(tmp_path / "c.csv")) == 2
    assert _one_error_line(capsys) == f"error: --confusion-csv: {folder} is not labelled ({why})"


def test_the_app_names_the_subfolders_that_are_not_classes(tmp_path: Path) -> None:
    from rich.console import Console

    from tltui.client.predict import PredictReport
    from tltui.core.predict_records import PredictStarted
    from tltui.tui.screens.inference import confusion_view

    folder = _nearly_labelled(tmp_path / "photos")
    report = PredictReport("r0001", str(folder))
    report.add(PredictStarted(3, ["red", "green", "blue"], None, 3, [16, 16], False, None))
    note = report.label_note()
    assert note is not None and note.startswith("subfolder(s) Green, unknown are not classes of the run")
    console = Console(width=400, record=True)
    console.print(confusion_view(report.score, note=note))
    assert console.export_text().strip() == f"no labels: {note}"
    (folder / "Green").rename(folder / "green")
    (folder / "unknown").rename(folder / "blue")
    labelled = PredictReport("r0001", str(folder))
    labelled.add(PredictStarted(3, ["red", "green", "blue"], ["blue", "green", "red"], 3, [16, 16], False, None))
    assert labelled.label_note() is None


def test_grad_cam_overlays_keep_the_subfolders() -> None:
    from tltui.core.images import ImageEntry
    from tltui.worker.predict import cam_name

    names = {cam_name(ImageEntry(Path("/p") / rel, rel)) for rel in ("a/b.png", "a__b.png", "a/b/c.png", "a__b__c.png")}
    assert names == {"a/b.png.cam.png", "a__b.png.cam.png", "a/b/c.png.cam.png", "a__b__c.png.cam.png"}
