"""The predict client and report against a scripted fake worker (no TensorFlow)."""

from __future__ import annotations

import csv
import io
import json
import threading
from pathlib import Path

import predict_corpus as pc
import pytest

from tltui.client.predict import PredictError, PredictJob, PredictReport
from tltui.core.predict_records import PredictionRow, PredictStarted, Progress, Skipped, decode, encode


@pytest.fixture
def fake_cmd(tmp_path: Path) -> list[str]:
    return pc.fake_worker_cmd(tmp_path)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    return pc.make_corpus(tmp_path / "photos")


def test_records_survive_encode_and_decode() -> None:
    recs = [
        PredictStarted(3, ["a", "b"], ["a"], 2, [16, 16], True),
        PredictionRow("/x/a/1.png", [("b", 0.75), ("a", 0.25)], "a", "a/1.png", 2),
        Skipped("/x/2.jpg", "empty file", "2.jpg"),
        Progress(2, 3),
    ]
    assert [decode(encode(r)) for r in recs] == recs
    assert decode(encode({"type": "error", "message": "no"})) == "no"
    assert decode("not json") is None
    assert decode('{"type": "prediction", "path": 1}') is None
    assert decode('{"type": "alien"}') is None


def test_job_yields_records_as_the_worker_sends_them(tmp_path: Path, corpus: Path, fake_cmd: list[str]) -> None:
    with PredictJob(tmp_path, corpus, top_k=2, worker_cmd=fake_cmd) as job:
        recs = list(job)
    assert isinstance(recs[0], PredictStarted)
    assert recs[0].total == len(pc.EXPECTED) + len(pc.SKIPPED)
    assert recs[0].labels == ["blue", "green", "red"]
    rows = [r for r in recs if isinstance(r, PredictionRow)]
    skipped = [r for r in recs if isinstance(r, Skipped)]
    progress = [r for r in recs if isinstance(r, Progress)]
    assert sorted(r.rel for r in rows) == sorted(pc.EXPECTED)
    assert {s.rel: s.reason for s in skipped}.keys() == pc.SKIPPED.keys()
    assert rows[0].top_k == [("red", 0.7), ("d", 0.2)]
    assert rows[0].path == str(corpus / rows[0].rel)
    assert [p.done for p in progress] == list(range(1, recs[0].total + 1))


def test_worker_error_line_becomes_predict_error(
    tmp_path: Path, corpus: Path, fake_cmd: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE", "error")
    with (
        PredictJob(tmp_path, corpus, worker_cmd=fake_cmd) as job,
        pytest.raises(PredictError, match="^model.keras: refused to load$"),
    ):
        list(job)


def test_worker_crash_reports_exit_code_and_last_log_line(
    tmp_path: Path, corpus: Path, fake_cmd: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE", "crash")
    with PredictJob(tmp_path, corpus, worker_cmd=fake_cmd) as job, pytest.raises(PredictError) as err:
        list(job)
    assert str(err.value) == "predict worker exited with code 3: Traceback: boom at the end"


def test_missing_worker_program_is_one_line(tmp_path: Path, corpus: Path) -> None:
    with PredictJob(tmp_path, corpus, worker_cmd=[str(tmp_path / "no-such-python")]) as job:
        with pytest.raises(PredictError, match="cannot start the predict worker"):
            list(job)


def test_cancel_from_another_thread_ends_iteration_quietly(
    tmp_path: Path, corpus: Path, fake_cmd: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_MODE", "hang")
    got: list[object] = []
    job = PredictJob(tmp_path, corpus, worker_cmd=fake_cmd)

    def consume() -> None:
        for rec in job:
            got.append(rec)
            if isinstance(rec, Progress):
                job.cancel()  # as a TUI would, from its own thread

    t = threading.Thread(target=consume)
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert job.cancelled
    assert job._proc is not None and job._proc.poll() is not None
    assert isinstance(got[0], PredictStarted)
    job.close()


def test_cancel_before_start_yields_nothing(tmp_path: Path, corpus: Path, fake_cmd: list[str]) -> None:
    job = PredictJob(tmp_path, corpus, worker_cmd=fake_cmd)
    job.cancel()
    assert list(job) == []
    assert job.pid is None


def test_worker_argv_is_a_list_with_the_options(tmp_path: Path, corpus: Path) -> None:
    seen: dict[str, object] = {}

    class Refuse(OSError):
        strerror = "refused by test"

    def popen(argv: list[str], **kw: object) -> None:
        seen["argv"], seen["kw"] = argv, kw
        raise Refuse()

    job = PredictJob(
        tmp_path, corpus, top_k=3, low_res=True, batch_size=7, max_pixels=99, worker_cmd=["w"], popen=popen
    )
    with pytest.raises(PredictError, match="refused by test"):
        list(job)
    argv = seen["argv"]
    assert isinstance(argv, list)
    fd = argv[argv.index("--out-fd") + 1]
    assert argv == ["w", "predict", str(tmp_path), str(corpus), "--out-fd", fd, "--top-k", "3",
                    "--batch-size", "7", "--low-res", "--max-pixels", "99"]  # fmt: skip
    assert "shell" not in seen["kw"]


@pytest.mark.parametrize(("low_res", "flags"), [(None, []), (True, ["--low-res"]), (False, ["--full-res"])])
def test_resolution_flag_is_passed_only_when_asked(
    tmp_path: Path, corpus: Path, low_res: bool | None, flags: list[str]
) -> None:
    seen: list[list[str]] = []

    def popen(argv: list[str], **kw: object) -> None:
        seen.append(argv)
        raise OSError("refused by test")

    with pytest.raises(PredictError):
        list(PredictJob(tmp_path, corpus, low_res=low_res, worker_cmd=["w"], popen=popen))
    assert [a for a in seen[0] if a in ("--low-res", "--full-res")] == flags


# ---------------------------------------------------------------------------- report


def _report() -> PredictReport:
    rep = PredictReport("r0001", "/p")
    rep.add(PredictStarted(4, pc.CLASSES, ["blue", "red"], 3, [16, 16]))
    rep.add(PredictionRow("/p/red/1.png", [("red", 0.8), ("d", 0.15), ("f", 0.05)], "red", "red/1.png", 1))
    rep.add(PredictionRow("/p/red/2.png", [("d", 0.5), ("f", 0.3), ("red", 0.2)], "red", "red/2.png", 3))
    rep.add(PredictionRow("/p/blue/3.png", [("red", 0.9), ("d", 0.05), ("f", 0.05)], "blue", "blue/3.png", 6))
    rep.add(Skipped("/p/x.jpg", "empty file", "x.jpg"))
    rep.add(Progress(4, 4))
    return rep


def test_report_json_has_predictions_skipped_and_summary() -> None:
    doc = _report().to_json()
    assert doc["run"] == "r0001"
    assert doc["predictions"][1] == {
        "path": "/p/red/2.png",
        "top_k": [
            {"label": "d", "probability": 0.5},
            {"label": "f", "probability": 0.3},
            {"label": "red", "probability": 0.2},
        ],
        "true_label": "red",
    }
    assert doc["skipped"] == [{"path": "/p/x.jpg", "reason": "empty file"}]
    s = doc["summary"]
    assert (s["images"], s["predicted"], s["skipped"]) == (4, 3, 1)
    assert s["accuracy"] == pytest.approx(1 / 3)
    assert s["top5_accuracy"] == pytest.approx(2 / 3)
    assert s["confusion"] == {"labels": ["red", "blue", "d"], "matrix": [[1, 0, 1], [1, 0, 0], [0, 0, 0]]}
    assert [m["path"] for m in s["misclassified"]] == ["/p/red/2.png", "/p/blue/3.png"]
    json.dumps(doc)


def test_unlabelled_report_has_no_accuracy_or_true_labels() -> None:
    rep = PredictReport("r0001", "/p")
    rep.add(PredictStarted(1, pc.CLASSES, None, 1, [16, 16]))
    rep.add(PredictionRow("/p/1.png", [("red", 0.8)], None, "1.png"))
    doc = rep.to_json()
    assert "true_label" not in doc["predictions"][0]
    assert doc["summary"] == {"images": 1, "predicted": 1, "skipped": 0}


def test_report_csv_has_one_row_per_image() -> None:
    rows = list(csv.DictReader(io.StringIO(_report().to_csv())))
    assert len(rows) == 3
    assert rows[1] == {
        "path": "/p/red/2.png",
        "top1_label": "d",
        "top1_probability": "0.500000",
        "top_k_labels": "d;f;red",
        "top_k_probabilities": "0.500000;0.300000;0.200000",
        "true_label": "red",
        "correct": "false",
    }
    assert rows[0]["correct"] == "true"


def test_top5_is_null_with_a_reason_when_every_class_is_in_the_top5() -> None:
    rep = PredictReport("r0001", "/p", top_k=5)
    rep.add(PredictStarted(2, ["red", "green", "blue"], ["red", "green"], 3, [16, 16], True, [4, 4]))
    rep.add(PredictionRow("/p/red/1.png", [("red", 0.8), ("green", 0.15), ("blue", 0.05)], "red", "red/1.png", 1))
    rep.add(PredictionRow("/p/green/2.png", [("red", 0.5), ("blue", 0.3), ("green", 0.2)], "green", "green/2.png", 3))
    na = "top-5 n/a with 3 classes (it would be 100% by construction)"
    assert rep.top5_na == na and rep.top5_accuracy is None
    doc = rep.to_json()
    assert doc["summary"]["accuracy"] == pytest.approx(0.5)
    assert doc["summary"]["top5_accuracy"] is None and doc["summary"]["top5_note"] == na
    assert (doc["low_res"], doc["native_size"], doc["image_size"], doc["top_k"]) == (True, [4, 4], [16, 16], 3)
    assert doc["top_k_note"] == na  # --top-k 5 with 3 classes: each image lists them all
    six = _report()  # 6 classes: top-5 is a real number, and no note
    assert six.top5_na is None and six.top5_accuracy == pytest.approx(2 / 3)
    assert "top5_note" not in six.to_json()["summary"] and "top_k_note" not in six.to_json()
