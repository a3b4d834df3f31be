"""The inference screen with a scripted prediction source: filling in, filters, preview, export."""

from __future__ import annotations

import csv
import dataclasses
import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from tests.tui.screen_host import HostApp, asynctest, screen_text
from tltui.client.predict import PredictError, PredictionRow, PredictStarted, Progress, Skipped
from tltui.core.workspace import Workspace
from tltui.tui.screens.inference import InferenceScreen, topk_bars
from tltui.tui.widgets.thumbnail import Thumbnail, half_blocks, load_preview

CLASSES = ["cat", "dog", "frog", "ship", "truck", "plane"]
COLOURS = {"cat": (200, 120, 40), "dog": (60, 160, 220), "frog": (40, 200, 80)}


def make_folder(root: Path) -> Path:
    """photos/<class>/<n>.png with flat, distinct colours and a gradient; one broken file."""
    folder = root / "photos"
    for label, (r, g, b) in COLOURS.items():
        (folder / label).mkdir(parents=True)
        for n in range(2):
            im = Image.new("RGB", (48, 32))
            px = im.load()
            for x in range(48):
                for y in range(32):
                    px[x, y] = (r * x // 48, g, (b + 4 * y) % 256)
            im.save(folder / label / f"{n}.png")
    (folder / "cat" / "broken.jpg").write_bytes(b"not a jpeg")
    return folder


def completed_run(ws: Workspace) -> str:
    (rec,) = ws.create_runs([("cifar-ft", 'name = "cifar-ft"\n', {})], preset_name="cifar-ft")
    ws.run_paths(rec.id).model.write_bytes(b"fake model")
    ws.update(rec.id, status="completed")
    return rec.id


def records(folder: Path, classes: list[str] = CLASSES, **started: Any) -> list[Any]:
    """What the predict worker would say for :func:`make_folder` (one dog is called a cat); ``started``:
    more fields of the start record."""
    out: list[Any] = [PredictStarted(7, classes, classes, min(5, len(classes)), [32, 32], **started)]
    done = 0
    for label in COLOURS:
        for n in range(2):
            guess = "cat" if (label, n) == ("dog", 1) else label
            others = [c for c in classes if c != guess][:4]
            top = [(guess, 0.7), *[(c, round(0.3 / (i + 2), 4)) for i, c in enumerate(others)]]
            rank = 1 if guess == label else 2
            path = folder / label / f"{n}.png"
            out.append(PredictionRow(str(path), top, label, f"{label}/{n}.png", rank))
            done += 1
        if label == "cat":
            out.append(Skipped(str(folder / "cat" / "broken.jpg"), "cannot identify image file", "cat/broken.jpg"))
            done += 1
        out.append(Progress(done, 7))
    return out


class Scripted:
    """A prediction source: yields the records, optionally waiting at a gate after the first batch.
    Asked for full resolution (``low_res=False``), its start record says so."""

    def __init__(self, recs: list[Any], gate: threading.Event | None = None, error: str | None = None) -> None:
        self.recs = recs
        self.gate = gate
        self.error = error
        self.calls: list[tuple[Path, Path]] = []
        self.low_res: list[bool | None] = []  # what each call asked for
        self.cancelled = False

    def __call__(self, run_dir: Path, folder: Path, low_res: bool | None = None) -> Iterator[Any]:
        self.calls.append((run_dir, folder))
        self.low_res.append(low_res)
        return self._iter(low_res)

    def _iter(self, low_res: bool | None) -> Iterator[Any]:
        first_progress = True
        for rec in self.recs:
            if isinstance(rec, PredictStarted) and low_res is not None:
                rec = dataclasses.replace(rec, low_res=low_res)
            yield rec
            if isinstance(rec, Progress) and first_progress and self.gate is not None:
                first_progress = False
                self.gate.wait(10)
        if self.error:
            raise PredictError(self.error)


@pytest.fixture
def setup(ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Workspace, str, Path]:
    monkeypatch.chdir(tmp_path)
    return ws, completed_run(ws), make_folder(tmp_path)


def make_app(ws: Workspace, source: Any, run_id: str | None = None, folder: str = "photos") -> HostApp:
    # a scripted Grad-CAM source: the default would start a real TensorFlow worker once predictions show
    return HostApp(
        lambda: InferenceScreen(run_id, workspace=ws, source=source, folder=folder, cam_source=cam_source([]))
    )


async def settle(pilot: Any) -> None:
    """Wait until the prediction thread is done and the selected image is decoded."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        await pilot.app.workers.wait_for_complete(
            [w for w in pilot.app.workers if w.group in ("inference", "thumbnail")]
        )
        await pilot.pause()
        screen = pilot.app.screen
        if not isinstance(screen, InferenceScreen) or (not screen.running and screen.query_one(Thumbnail).ready):
            return
        await pilot.pause(0.01)


async def until(pilot: Any, condition: Any, timeout: float = 30.0) -> None:
    """Pause until ``condition()`` holds (a condition, not a time: the machine may be slow)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not reached in {timeout:.0f} s"
        await pilot.pause(0.01)


async def classify(pilot: Any) -> None:
    await pilot.press("ctrl+r")
    await settle(pilot)


def screen_of(app: HostApp) -> InferenceScreen:
    assert isinstance(app.screen, InferenceScreen)
    return app.screen


# ---------------------------------------------------------------------------- pure parts


def test_half_blocks_draw_two_pixels_per_cell(tmp_path: Path) -> None:
    im = Image.new("RGB", (2, 2))
    im.putpixel((0, 0), (255, 0, 0))
    im.putpixel((0, 1), (0, 0, 255))
    text = half_blocks(im, 2, 1)
    assert text.plain == "▀▀"
    first = text.spans[0].style
    assert str(first.color.triplet.hex) == "#ff0000" and str(first.bgcolor.triplet.hex) == "#0000ff"


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK", "I;16"])
def test_preview_converts_odd_modes(tmp_path: Path, mode: str) -> None:
    path = tmp_path / ("x.tiff" if mode in ("CMYK", "I;16") else "x.png")
    Image.new("RGB", (300, 200), (10, 200, 30)).convert(mode).save(path)
    im = load_preview(path)
    assert im.mode == "RGB" and max(im.size) <= 200


def test_preview_of_a_broken_file_raises_a_short_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    with pytest.raises(OSError):
        load_preview(bad)


def test_topk_bars_sorted_as_given_with_the_true_label_marked() -> None:
    row = PredictionRow("/x.png", [("dog", 0.6), ("cat", 0.3), ("frog", 0.1)], "cat", "x.png", 2)
    text = topk_bars(row, 40).plain.splitlines()
    assert text[0].startswith("true: cat ✗")
    assert [ln.split()[0] for ln in text[1:]] == ["dog", "cat", "frog"]
    assert text[1].endswith("60.0%")


# ---------------------------------------------------------------------------- the screen


@asynctest
async def test_results_fill_in_batch_by_batch(setup: Any) -> None:
    ws, rid, folder = setup
    gate = threading.Event()
    source = Scripted(records(folder), gate=gate)
    app = make_app(ws, source, rid)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+r")
        await until(pilot, lambda: screen_of(app).items)  # the first batch (the source then waits at the gate)
        screen = screen_of(app)
        assert len(screen.items) == 3  # cat/0, cat/1, broken.jpg
        assert screen.running and "classifying… 3/7 images" in screen_text(app)
        gate.set()
        await settle(pilot)
        assert len(screen.items) == 7 and not screen.running
        text = screen_text(app)
        assert "done · 7/7 images · 1 skipped · top-1 83.3% · top-5 100.0%" in text
        assert source.calls == [(ws.run_paths(rid).dir, Path("photos"))]


@asynctest
async def test_selecting_a_row_previews_image_and_topk(setup: Any) -> None:
    ws, rid, folder = setup
    app = make_app(ws, Scripted(records(folder)), rid)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await classify(pilot)
        screen = screen_of(app)
        thumb = screen.query_one(Thumbnail)
        assert thumb.path == str(folder / "cat" / "0.png")
        assert "▀" in screen_text(app)
        await pilot.press("down", "down")  # the skipped file
        await settle(pilot)
        assert isinstance(screen.selected, Skipped)
        text = screen_text(app)
        assert "skipped: cannot identify image file" in text
        assert "no preview" in text


@asynctest
async def test_filters_show_misclassified_and_skipped(setup: Any) -> None:
    ws, rid, folder = setup
    app = make_app(ws, Scripted(records(folder)), rid)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await classify(pilot)
        screen = screen_of(app)
        table = screen.query_one("#inf-table")
        assert table.row_count == 7
        await pilot.press("m")
        await pilot.pause()
        assert table.row_count == 1
        assert screen.selected is not None and screen.selected.rel == "dog/1.png"
        assert "showing misclassified (1)" in screen_text(app)
        await pilot.press("s")
        assert table.row_count == 1 and isinstance(screen.selected, Skipped)
        await pilot.press("s")
        assert table.row_count == 7 and screen.filter == "all"


@asynctest
async def test_export_writes_csv_next_to_the_run(setup: Any) -> None:
    ws, rid, folder = setup
    app = make_app(ws, Scripted(records(folder)), rid)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen_of(app).query_one("#inf-table").focus()
        await pilot.press("e")  # nothing yet
        await pilot.pause()
        await classify(pilot)
        await pilot.press("e")
        await pilot.pause()
    (out,) = ws.run_paths(rid).dir.glob("predictions-photos-*.csv")  # the folder's name and a tag of its path
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 6
    assert rows[3]["path"].endswith("dog/1.png") and rows[3]["correct"] == "false"
    assert rows[0]["top_k_labels"].split(";")[0] == "cat"
    messages = [n.message for n in app._notifications]
    assert "nothing to export yet" in messages[0]


@asynctest
async def test_bad_inputs_are_one_line(setup: Any) -> None:
    ws, rid, folder = setup
    source = Scripted(records(folder))
    app = make_app(ws, source, rid, folder="nowhere")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("enter")  # the folder input has focus
        await pilot.pause()
        assert "nowhere: no such folder" in screen_text(app)
        screen_of(app).query_one("#inf-folder").value = ""
        await pilot.press("ctrl+r")
        await pilot.pause()
        assert "type a folder of images" in screen_text(app)
        assert source.calls == []


@asynctest
async def test_worker_failure_shows_its_line(setup: Any) -> None:
    ws, rid, folder = setup
    app = make_app(ws, Scripted(records(folder)[:2], error="predict worker exited with code 1: OOM"), rid)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await classify(pilot)
        assert "predict worker exited with code 1: OOM" in screen_text(app)
        assert len(screen_of(app).items) == 1  # what arrived before the failure stays


@asynctest
async def test_only_completed_runs_are_offered(setup: Any) -> None:
    ws, rid, folder = setup
    (queued,) = ws.create_runs([("other", 'name = "other"\n', {})], preset_name="other")
    app = make_app(ws, Scripted(records(folder)), queued.id)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen = screen_of(app)
        assert f"{queued.id} is not completed" in screen_text(app)
        select = screen.query_one("#inf-run")
        assert [v for _, v in select._options if v is not select.NULL] == [rid]


@asynctest
async def test_stop_and_close_cancel_the_job(setup: Any) -> None:
    ws, rid, folder = setup
    gate = threading.Event()
    source = Scripted(records(folder), gate=gate)
    app = make_app(ws, source, rid)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+r")
        await until(pilot, lambda: screen_of(app).items)
        await pilot.press("x")
        assert not screen_of(app).running
        gate.set()
        await settle(pilot)
        assert len(screen_of(app).items) == 3  # nothing after the stop
        await pilot.press("escape")
        await pilot.pause()
        assert app.results == [None]


@asynctest
async def test_browse_fills_the_folder(setup: Any) -> None:
    ws, rid, folder = setup
    app = make_app(ws, Scripted(records(folder)), rid, folder="")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+o")
        await pilot.pause()
        screen = screen_of(app)
        tree = screen.query_one("#inf-browser")
        assert screen.has_class("-browsing") and tree.has_focus
        tree.post_message(tree.DirectorySelected(tree.root, folder))
        await pilot.pause()
        assert screen.query_one("#inf-folder").value == str(folder)
        await pilot.press("ctrl+o")
        assert not screen.has_class("-browsing")


@asynctest
async def test_typing_a_path_never_fires_the_screens_keys(setup: Any) -> None:
    """The walk: after Enter the focus left the field, and a new path's letters toggled filters."""
    ws, rid, folder = setup
    app = make_app(ws, Scripted(records(folder)), rid)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen = screen_of(app)
        field = screen.query_one("#inf-folder")
        await pilot.press("enter")
        await settle(pilot)
        assert field.has_focus and len(screen.items) == 7  # classified; the field keeps the focus
        await pilot.press("ctrl+a", "ctrl+k", *"misdog")  # a new path: letters of m, s, d, g keys
        assert field.value == "misdog" and screen.filter == "all" and not screen.cams
        await pilot.press("down")  # into the results
        assert screen.query_one("#inf-table").has_focus
        await pilot.press("m")  # there the keys act
        assert screen.filter == "misclassified"
        await pilot.press("slash")  # a path typed in the results goes to the field
        assert field.has_focus and field.value == "/"
        await pilot.press(*"tmp")
        assert field.value == "/tmp" and screen.filter == "misclassified"


@asynctest
async def test_an_empty_folder_says_no_images_were_found(setup: Any, tmp_path: Path) -> None:
    ws, rid, _folder = setup
    (tmp_path / "empty").mkdir()
    app = make_app(ws, Scripted([PredictStarted(0, CLASSES, None, 5, [32, 32]), Progress(0, 0)]), rid, "empty")
    async with app.run_test(size=(120, 30)) as pilot:
        await classify(pilot)
        assert "done · 0/0 images · no images in empty or its subfolders (.bmp" in screen_text(app)


@asynctest
async def test_escape_closes_the_browser_then_the_screen(setup: Any) -> None:
    ws, rid, folder = setup
    app = make_app(ws, Scripted(records(folder)), rid, folder="")
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+o")
        await pilot.pause()
        screen = screen_of(app)
        tree = screen.query_one("#inf-browser")
        assert tree.has_focus and Path(tree.path) == Path.cwd()  # rooted at the working folder itself
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen and not screen.has_class("-browsing")
        assert screen.query_one("#inf-folder").has_focus
        await pilot.press("escape")
        await pilot.pause()
        assert app.results == [None]


# ---------------------------------------------------------------------------- snapshots


def test_snapshot_80x24(snap_compare: Any, setup: Any) -> None:
    ws, rid, folder = setup
    assert snap_compare(make_app(ws, Scripted(records(folder)), rid), terminal_size=(80, 24), run_before=classify)


def test_snapshot_misclassified_160x48(snap_compare: Any, setup: Any) -> None:
    ws, rid, folder = setup

    async def run(pilot: Any) -> None:
        await classify(pilot)
        await pilot.press("m")
        await settle(pilot)

    assert snap_compare(make_app(ws, Scripted(records(folder)), rid), terminal_size=(160, 48), run_before=run)


# ---------------------------------------------------------------------------- confusions and Grad-CAM


def cam_source(calls: list) -> Any:
    """Stands in for the worker's Grad-CAM: a red square PNG per image, where the screen asks for it."""

    def make(run_dir: Path, image: Path, out_file: Path, low_res: bool | None) -> str:
        calls.append((run_dir, image))
        out_file.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (255, 0, 0)).save(out_file)
        return str(out_file)

    return make


def make_cam_app(ws: Workspace, rid: str, calls: list, cam: Any = None) -> HostApp:
    return HostApp(
        lambda: InferenceScreen(
            rid,
            workspace=ws,
            source=Scripted(records(Path("photos").absolute())),
            folder="photos",
            cam_source=cam or cam_source(calls),
        ),
    )


def test_confusion_view_lists_pairs_and_per_class_accuracy() -> None:
    from rich.console import Console

    from tltui.core.images import Score
    from tltui.tui.screens.inference import confusion_view

    score = Score(CLASSES)
    for true, pred, n in (("cat", "cat", 3), ("dog", "cat", 2), ("dog", "dog", 1), ("frog", "dog", 1)):
        for _ in range(n):
            score.add("x", true, pred, 0.5, 1 if true == pred else 2)
    console = Console(width=80, record=True, color_system=None)
    console.print(confusion_view(score))
    text = console.export_text()
    assert "accuracy 57.1% of 7 labelled images" in text
    assert "lowest per-class accuracy: frog 0% (0/1), dog 33% (1/3), cat 100% (3/3)" in text
    assert [p["count"] for p in score.confused_pairs()] == [2, 1]
    many = Score([f"c{i}" for i in range(100)])  # CIFAR-100-like: no matrix, the top pairs
    for i in range(20):
        for _ in range(1 + i % 3):
            many.add("x", f"c{i}", f"c{(i + 1) % 20}", 0.5, 2)
    console = Console(width=80, record=True, color_system=None)
    console.print(confusion_view(many))
    text = console.export_text()
    assert "20 classes: the whole matrix is in the CSV/JSON" in text and "true \\ pred" not in text
    assert many.confused_pairs(1) == [{"true_label": "c2", "predicted": "c3", "count": 3}]


@asynctest
async def test_a_confused_pair_opens_the_gallery_of_its_images(setup: Any) -> None:
    ws, rid, folder = setup
    app = make_app(ws, Scripted(records(folder)), rid)
    async with app.run_test(size=(160, 48)) as pilot:
        await classify(pilot)
        await pilot.press("c")
        await pilot.pause()
        screen = screen_of(app)
        pairs = screen.query_one("#inf-pairs")
        assert screen.has_class("-confusion") and pairs.row_count == 1 and pairs.has_focus
        await pilot.press("enter")
        await settle(pilot)
        assert not screen.has_class("-confusion") and screen.pair == ("dog", "cat")
        table = screen.query_one("#inf-table")
        assert table.row_count == 1 and screen.selected.path == str(folder / "dog" / "1.png")
        assert "showing dog → cat (1)" in screen_text(screen.query_one("#inf-status"))
        await pilot.press("m")  # another filter leaves the pair
        assert screen.pair is None and screen.filter == "misclassified"


@asynctest
async def test_grad_cam_is_computed_once_on_request_and_toggled(setup: Any) -> None:
    ws, rid, folder = setup
    calls: list = []
    app = make_cam_app(ws, rid, calls)
    async with app.run_test(size=(160, 48)) as pilot:
        await classify(pilot)
        screen = screen_of(app)
        await pilot.press("g")
        await until(pilot, lambda: screen.cams)
        await settle(pilot)
        item = screen.selected
        assert calls == [(ws.run_paths(rid).dir, Path(item.path))]
        cam = screen.cams[(rid, "cat/0.png")]
        assert screen.query_one(Thumbnail).path == cam
        assert Path(cam).is_relative_to(ws.cache_dir / "cams" / rid) and cam.endswith("/cat/0.png.cam.png")
        assert "Grad-CAM of" in screen_text(screen.query_one("#inf-topk"))
        await pilot.press("g")  # back to the image
        assert screen.query_one(Thumbnail).path == item.path
        await pilot.press("g")  # and to the overlay again, without a second computation
        await pilot.pause()
        assert len(calls) == 1 and screen.query_one(Thumbnail).path == cam


@asynctest
async def test_a_run_without_a_feature_map_says_why(setup: Any) -> None:
    ws, rid, folder = setup

    def hub(run_dir: Path, image: Path, out_file: Path, low_res: bool | None) -> str:
        raise PredictError("no Grad-CAM for this run: a TF Hub backbone is one opaque layer")

    app = make_cam_app(ws, rid, [], cam=hub)
    async with app.run_test(size=(160, 48)) as pilot:
        await classify(pilot)
        await pilot.press("g")
        await until(pilot, lambda: any("no Grad-CAM" in n.message for n in app._notifications))
        assert any("a TF Hub backbone is one opaque layer" in n.message for n in app._notifications)
        screen = screen_of(app)
        assert not screen.showing_cam and screen.query_one(Thumbnail).path == screen.selected.path


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_snapshot_confusions(snap_compare: Any, setup: Any, size: tuple[int, int]) -> None:
    ws, rid, folder = setup

    async def run(pilot: Any) -> None:
        await classify(pilot)
        await pilot.press("c")
        await pilot.pause()

    assert snap_compare(make_app(ws, Scripted(records(folder)), rid), terminal_size=size, run_before=run)


def test_snapshot_grad_cam_160x48(snap_compare: Any, setup: Any) -> None:
    ws, rid, folder = setup

    async def run(pilot: Any) -> None:
        await classify(pilot)
        await pilot.press("g")
        await until(pilot, lambda: screen_of(pilot.app).cams)
        await settle(pilot)

    assert snap_compare(make_cam_app(ws, rid, []), terminal_size=(160, 48), run_before=run)


class TwoRuns:
    """A source whose second run calls every frog a cat (the first run's records otherwise)."""

    def __init__(self, folder: Path, b_dir: Path) -> None:
        self.folder, self.b_dir, self.calls = folder, b_dir, []

    def __call__(self, run_dir: Path, folder: Path, low_res: bool | None = None) -> Iterator[Any]:
        self.calls.append(run_dir)
        recs = records(self.folder)
        if run_dir == self.b_dir:
            recs = [
                PredictionRow(
                    r.path, [("cat", 0.8), *r.top_k[1:]], r.true_label, r.rel, 1 if r.true_label == "cat" else 2
                )
                if isinstance(r, PredictionRow) and r.true_label == "frog"
                else r
                for r in recs
            ]
        return iter(recs)


def test_snapshot_vs_run_120x40(snap_compare: Any, setup: Any) -> None:
    """120 columns, the most common width: the probability, its mark and the second run's column."""
    ws, rid, folder = setup
    other = completed_run(ws)

    async def run(pilot: Any) -> None:
        screen_of(pilot.app).query_one("#inf-against").value = other
        await classify(pilot)

    app = make_app(ws, TwoRuns(folder, ws.run_paths(other).dir), rid)
    assert snap_compare(app, terminal_size=(120, 40), run_before=run)


@asynctest
async def test_two_runs_side_by_side_show_where_they_disagree(setup: Any) -> None:
    ws, rid, folder = setup
    other = completed_run(ws)
    source = TwoRuns(folder, ws.run_paths(other).dir)
    app = make_app(ws, source, rid)
    async with app.run_test(size=(160, 48)) as pilot:
        await pilot.pause()
        screen = screen_of(app)
        screen.query_one("#inf-against").value = other
        await classify(pilot)
        assert source.calls == [ws.run_paths(rid).dir, ws.run_paths(other).dir]
        table = screen.query_one("#inf-table")
        assert f"vs {other}" in [str(c.label) for c in table.columns.values()]
        assert f"vs {other}: agree 4/6" in screen_text(screen.query_one("#inf-status"))
        await pilot.press("d")
        await settle(pilot)
        assert table.row_count == 2 and all(
            "frog/" in screen._display_name(screen.items[int(k.value)]) for k in table.rows
        )
        assert f"vs {other}:" in screen_text(screen.query_one("#inf-topk"))
        screen.query_one("#inf-against").clear()  # back to one run: the column goes
        await classify(pilot)
        assert "vs" not in table.columns and screen.against is None
        await pilot.press("d")
        assert any("pick a second run" in n.message for n in app._notifications)


def test_the_probability_and_the_second_runs_column_are_never_the_ones_cut() -> None:
    from tltui.tui.screens.inference import table_columns

    for width, vs in ((46, None), (70, "r0004"), (118, "r0004"), (190, None)):
        cols = {key: cells for key, _label, cells in table_columns(width, vs)}
        assert cols["prob"] == 6 and (vs is None or cols["vs"] == 16)
        assert sum(cells + 2 for cells in cols.values()) + 2 <= max(width, 2 + 2 * 6 + 12 + 8 + 6 + 4 + 16)
    assert table_columns(190)[0][2] > table_columns(70)[0][2]  # the file column widens with the width


@asynctest
async def test_at_120_columns_a_second_run_and_the_probabilities_show(setup: Any) -> None:
    """The walk: at 120x40 the prob column read "99" and the vs column was off-screen."""
    ws, rid, folder = setup
    other = completed_run(ws)
    app = make_app(ws, TwoRuns(folder, ws.run_paths(other).dir), rid)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = screen_of(app)
        screen.query_one("#inf-against").value = other
        await classify(pilot)
        await pilot.pause()
        assert f"vs {other}" in screen_text(app)
        frog = next(line for line in screen_text(app).splitlines() if "frog/0.png" in line)
        # the first run's probability and mark, then the second run's guess (it calls the frog a cat)
        assert "70.0%" in frog and "✓" in frog and "cat 80%" in frog


# ---------------------------------------------------------------------------- one image, one Grad-CAM


def copying_cam_source(calls: list) -> Any:
    """Stands in for the worker's Grad-CAM: the image itself, so an overlay shows whose it is."""

    def make(run_dir: Path, image: Path, out_file: Path, low_res: bool | None) -> str:
        calls.append((run_dir, image))
        out_file.parent.mkdir(parents=True, exist_ok=True)
        Image.open(image).convert("RGB").save(out_file)
        return str(out_file)

    return make


def same_pixels(a: str | Path, b: str | Path) -> bool:
    return Image.open(a).convert("RGB").tobytes() == Image.open(b).convert("RGB").tobytes()


async def cam_of_selected(pilot: Any) -> str:
    """Press g once: the selected image's Grad-CAM shows (the walk: a first press on a new row only
    left a sticky CAM mode)."""
    screen = screen_of(pilot.app)
    await pilot.press("g")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        await settle(pilot)
        path = screen.query_one(Thumbnail).path
        if screen.showing_cam and path and path.endswith(".cam.png"):
            return str(path)
        await pilot.pause(0.01)
    raise AssertionError("no Grad-CAM shown after one g")


@asynctest
async def test_same_named_images_in_two_class_folders_and_two_runs_keep_their_own_grad_cam(setup: Any) -> None:
    ws, rid, folder = setup  # cat/0.png, dog/0.png, frog/0.png: one file name, three images
    other = completed_run(ws)
    calls: list = []
    source, cam = Scripted(records(folder.absolute())), copying_cam_source(calls)
    app = HostApp(lambda: InferenceScreen(rid, workspace=ws, source=source, folder=str(folder), cam_source=cam))
    async with app.run_test(size=(160, 48)) as pilot:
        await classify(pilot)
        screen = screen_of(app)
        assert screen.selected.rel == "cat/0.png"
        cat = await cam_of_selected(pilot)
        await pilot.press("down", "down", "down")
        assert screen.selected.rel == "dog/0.png"
        dog = await cam_of_selected(pilot)
        assert cat != dog and len(calls) == 2
        assert same_pixels(cat, folder / "cat" / "0.png") and same_pixels(dog, folder / "dog" / "0.png")
        await pilot.press("up", "up", "up")  # back to the cat: its own map, not the dog's drawn over it
        await settle(pilot)
        assert screen.selected.rel == "cat/0.png" and screen.showing_cam
        assert screen.query_one(Thumbnail).path == cat and same_pixels(cat, folder / "cat" / "0.png")
        assert "Grad-CAM of cat" in screen_text(screen.query_one("#inf-topk")) and len(calls) == 2

        screen.query_one("#inf-run").value = other  # the same image under another run: that run's map
        await classify(pilot)
        assert screen.selected.rel == "cat/0.png"
        cat_b = await cam_of_selected(pilot)
        assert calls[-1] == (ws.run_paths(other).dir, folder.absolute() / "cat" / "0.png") and len(calls) == 3
        assert cat_b != cat and Path(cat_b).is_relative_to(ws.cache_dir / "cams" / other)
        assert screen.cams == {(other, "cat/0.png"): cat_b}


# ---------------------------------------------------------------------------- top-5 and resolution


@asynctest
async def test_header_says_top5_is_na_with_three_classes(setup: Any) -> None:
    ws, rid, folder = setup
    app = make_app(ws, Scripted(records(folder, classes=list(COLOURS))), rid)
    async with app.run_test(size=(120, 30)) as pilot:
        await classify(pilot)
        status = screen_text(screen_of(app).query_one("#inf-status"))
        assert "done · 7/7 images · 1 skipped · top-1 83.3% · top-5 n/a with 3 classes (6 labelled)" in status
        assert "100.0%" not in status


@asynctest
async def test_images_go_through_the_training_size_unless_full_resolution_is_asked(setup: Any) -> None:
    ws, rid, folder = setup
    source = Scripted(records(folder, low_res=True, native_size=[8, 8]))
    app = make_app(ws, source, rid)
    async with app.run_test(size=(120, 30)) as pilot:
        await classify(pilot)
        screen = screen_of(app)
        status = screen_text(screen.query_one("#inf-status"))
        assert "images shrunk to 8x8 first, as the training images were (f: full resolution)" in status
        await pilot.press("f")  # classifies again, at full resolution
        await settle(pilot)
        assert source.low_res == [None, False] and len(screen.items) == 7
        status = screen_text(screen.query_one("#inf-status"))
        assert "images resized straight to 32x32, the model's input (f: as the training images were)" in status
        await pilot.press("f")
        await settle(pilot)
        assert source.low_res == [None, False, None]
        assert "images shrunk to 8x8 first" in screen_text(screen.query_one("#inf-status"))


class WarmingCamSource:
    """A Grad-CAM source that, as :class:`~tltui.client.cam_server.CamServers`, can start a run's
    worker ahead of its first request; the screen warms it once the run's predictions show."""

    def __init__(self) -> None:
        self.warmed: list[tuple[Path, bool | None]] = []
        self.calls: list = []
        self.closed = False
        self._make = cam_source(self.calls)

    def warm(self, run_dir: Path, low_res: bool | None = None) -> None:
        self.warmed.append((run_dir, low_res))

    def __call__(self, run_dir: Path, image: Path, out_file: Path, low_res: bool | None = None) -> str:
        assert (run_dir, low_res) in self.warmed, "the first g found no worker started"
        return self._make(run_dir, image, out_file, low_res)

    def close(self) -> None:
        self.closed = True


@asynctest
async def test_the_grad_cam_worker_starts_once_predictions_show_so_the_first_g_is_quick(setup: Any) -> None:
    ws, rid, folder = setup
    cams = WarmingCamSource()
    app = make_cam_app(ws, rid, [], cam=cams)
    async with app.run_test(size=(160, 48)) as pilot:
        screen = screen_of(app)
        assert cams.warmed == []  # nothing starts before a run has classified
        await classify(pilot)
        await until(pilot, lambda: cams.warmed)
        # one worker, at the resolution the images were classified at (the start record's)
        assert cams.warmed == [(ws.run_paths(rid).dir, screen.started.low_res)]
        await pilot.press("g")
        await until(pilot, lambda: screen.cams)
        assert len(cams.calls) == 1 and len(cams.warmed) == 1
        await pilot.press("ctrl+r")  # the same run again: the warmed worker serves it
        await settle(pilot)
        assert len(cams.warmed) == 1
        await pilot.press("escape")
        await pilot.pause()
    assert cams.closed

    cams = WarmingCamSource()  # another resolution's worker replaces the warm one, and back
    source = Scripted(records(folder, low_res=True, native_size=[8, 8]))
    app = HostApp(lambda: InferenceScreen(rid, workspace=ws, source=source, folder="photos", cam_source=cams))
    async with app.run_test(size=(160, 48)) as pilot:
        await classify(pilot)
        await until(pilot, lambda: cams.warmed)
        for _ in range(2):
            await pilot.press("f")  # classifies again at the other resolution
            await settle(pilot)
        await until(pilot, lambda: len(cams.warmed) == 3)
        run_dir = ws.run_paths(rid).dir
        assert cams.warmed == [(run_dir, True), (run_dir, False), (run_dir, True)]


@asynctest
async def test_run_names_with_brackets_are_shown_whole_in_the_run_pickers(setup: Any) -> None:
    """A sweep's run names carry its overrides in brackets: as markup they were eaten, or (with "=") raised."""
    ws, _rid, folder = setup
    (rec,) = ws.create_runs([("s[lr=0.1,seed=2]", 'name = "s"\n', {})], preset_name="s")
    ws.run_paths(rec.id).model.write_bytes(b"fake model")
    ws.update(rec.id, status="completed")
    app = make_app(ws, Scripted(records(folder)), rec.id)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await until(pilot, lambda: f"{rec.id} s[lr=0.1,seed=2]" in screen_text(app))
        await pilot.click("#inf-run")  # the open list draws every option
        await until(pilot, lambda: "cifar-ft" in screen_text(app))
        assert app.is_running


@asynctest
async def test_classifying_again_while_a_run_is_going_does_not_cut_the_new_run_short(setup: Any) -> None:
    """The first run's thread ends after the second started: it closes its own job, not the second's."""
    ws, rid, folder = setup
    recs = records(folder)
    jobs: list[Any] = []

    class Job:  # as WorkerPipeJob: cancel() stops the worker, whose pipe ends a moment later
        def __init__(self, n: int) -> None:
            self.n, self.cancelled, self.closed_by, self.ran_in = n, threading.Event(), "", ""
            self.waiting = threading.Event()

        def cancel(self) -> None:
            self.cancelled.set()

        def close(self) -> None:
            self.closed_by = self.closed_by or threading.current_thread().name
            self.cancelled.set()

        def __iter__(self) -> Any:
            self.ran_in = threading.current_thread().name
            for i, rec in enumerate(recs):
                if self.cancelled.is_set():
                    return
                yield rec
                if self.n == 1 and i == 2:  # the first run waits (a slow model) until it is cancelled
                    self.waiting.set()
                    self.cancelled.wait(30)
                    time.sleep(0.3)  # and its pipe closes a moment later, after the second run started
                    return
                if self.n == 2 and i == 0:  # the second run goes on while the first one's thread ends
                    deadline = time.monotonic() + 30
                    while not jobs[0].closed_by and time.monotonic() < deadline:
                        time.sleep(0.01)
                    time.sleep(0.2)

    def source(run_dir: Path, folder: Path, low_res: Any = None) -> Job:
        jobs.append(Job(len(jobs) + 1))
        return jobs[-1]

    app = make_app(ws, source, rid)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        screen = screen_of(app)
        screen.action_start()
        await until(pilot, lambda: jobs and jobs[0].waiting.is_set())
        screen.action_start()  # classify again (ctrl+r, or f for full resolution) while the first goes on
        await until(pilot, lambda: len(jobs) == 2 and jobs[0].closed_by and not screen.running)
        await settle(pilot)
        assert jobs[1].closed_by in ("", jobs[1].ran_in)  # closed by its own thread, or not at all
        assert len(screen.items) == 7 and "done · 7/7 images" in screen_text(app)


def test_confusion_headers_tell_labels_with_the_same_start_apart() -> None:
    from tltui.tui.screens.inference import _short

    labels = ["maple_tree", "maple_leaf", "cat", "dogs_and_more"]
    assert [_short(lbl, labels) for lbl in labels] == ["map…ee", "map…af", "cat", "dogs_a"]
