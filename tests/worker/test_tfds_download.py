"""TFDS datasets that download: a small builder whose file is served over loopback HTTP.

Covers the first run that downloads and prepares (with progress events), two runs starting
together (one downloads, the other waits and says so), a download that dies halfway (nothing
half-prepared is ever used; the next attempt starts over) and ``data.download = false``.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("tfds_download")]

np = pytest.importorskip("numpy")
tfds = pytest.importorskip("tensorflow_datasets")

from tltui.core import presets, protocol  # noqa: E402
from tltui.worker import tfds_fetch  # noqa: E402

CLASSES = ["circle", "square", "cross", "star", "ring", "dot"]
N_TRAIN, N_TEST = 36, 12
NAME = "tltui_loopback_shapes"


def payload() -> bytes:
    rng = np.random.default_rng(0)
    n = N_TRAIN + N_TEST
    labels = np.arange(n) % len(CLASSES)
    images = (rng.uniform(0, 40, (n, 8, 8, 3)) + labels[:, None, None, None] * 35).astype("uint8")
    buf = io.BytesIO()
    np.savez(buf, images=images, labels=labels)
    return buf.getvalue()


class LoopbackShapes(tfds.core.GeneratorBasedBuilder):
    """Registered as ``tltui_loopback_shapes``; downloads ``URL`` (set by the fixture)."""

    name = NAME
    VERSION = tfds.core.Version("1.0.0")
    URL = ""

    def _info(self) -> Any:
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(8, 8, 3)),
                    "label": tfds.features.ClassLabel(names=CLASSES),
                }
            ),
            supervised_keys=("image", "label"),
        )

    def _split_generators(self, dl_manager: Any) -> Any:
        path = dl_manager.download(self.URL)
        return {
            "train": self._generate_examples(path, 0, N_TRAIN),
            "test": self._generate_examples(path, N_TRAIN, None),
        }

    def _generate_examples(self, path: Any, start: int, stop: int | None) -> Iterator[tuple[int, dict[str, Any]]]:
        with open(path, "rb") as f:
            data = np.load(io.BytesIO(f.read()))
        for i in range(start, stop if stop is not None else len(data["labels"])):
            yield i, {"image": data["images"][i], "label": int(data["labels"][i])}


class Server:
    """Serves ``payload()``; ``die`` cuts the body off halfway (Content-Length promises it all)."""

    def __init__(self) -> None:
        self.body = payload()
        self.die = False
        self.delay = 0.0
        self.hits = 0
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                server.hits += 1
                if server.delay:
                    threading.Event().wait(server.delay)
                self.send_response(200)
                self.send_header("Content-Length", str(len(server.body)))
                self.send_header("Content-Type", "application/octet-stream")
                self.end_headers()
                if server.die:
                    self.wfile.write(server.body[: len(server.body) // 2])
                    self.wfile.flush()
                    self.connection.shutdown(2)
                    return
                self.wfile.write(server.body)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/shapes.npz"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    s = Server()
    monkeypatch.setattr(LoopbackShapes, "URL", s.url)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    yield s
    s.close()


def prepared_dirs(data_dir: Path) -> list[Path]:
    return (
        [p for p in (data_dir / NAME).glob("*") if (p / "dataset_info.json").is_file()]
        if (data_dir / NAME).is_dir()
        else []
    )


def test_a_download_that_dies_halfway_leaves_nothing_that_looks_prepared(server: Server, tmp_path: Path) -> None:
    data_dir = tmp_path / "tfds"
    server.die = True
    with pytest.raises(tfds_fetch.FetchError) as err:
        tfds_fetch.ensure_prepared(NAME, str(data_dir))
    msg = str(err.value)
    assert "\n" not in msg and f"could not download and prepare it into {data_dir}" in msg
    assert "tltui data fetch" in msg
    assert not prepared_dirs(data_dir) and not tfds.builder(NAME, data_dir=str(data_dir)).is_prepared()

    server.die = False
    events: list[protocol.Progress] = []
    assert tfds_fetch.ensure_prepared(NAME, str(data_dir), emit=events.append) is True
    assert len(prepared_dirs(data_dir)) == 1
    train = tfds.load(NAME, split="train", data_dir=str(data_dir), download=False, as_supervised=True)
    labels = [int(y) for _, y in train.as_numpy_iterator()]
    assert sorted(labels) == sorted(i % len(CLASSES) for i in range(N_TRAIN))  # every example, once
    assert events and events[0].phase == "download" and {e.phase for e in events} == {"download", "prepare"}
    assert any(e.phase == "download" and e.done >= len(server.body) for e in events)  # the bytes that came
    assert tfds_fetch.ensure_prepared(NAME, str(data_dir)) is False  # prepared: no second download
    assert server.hits == 2


def test_two_runs_starting_together_download_once_and_the_second_says_it_waits(server: Server, tmp_path: Path) -> None:
    data_dir = tmp_path / "tfds"
    server.delay = 1.5
    results: dict[str, Any] = {}
    logs: dict[str, list[str]] = {"a": [], "b": []}

    def run(key: str) -> None:
        try:
            results[key] = tfds_fetch.ensure_prepared(NAME, str(data_dir), log=lambda lvl, m: logs[key].append(m))
        except Exception as e:  # noqa: BLE001 - reported below
            results[key] = e

    a = threading.Thread(target=run, args=("a",))
    a.start()
    while server.hits == 0 and a.is_alive():  # a holds the lock and is downloading
        threading.Event().wait(0.05)
    b = threading.Thread(target=run, args=("b",))
    b.start()
    a.join(120)
    b.join(120)
    assert results == {"a": True, "b": False}
    assert server.hits == 1
    assert any(m.startswith(f"waiting: another run is preparing tfds:{NAME}") for m in logs["b"])
    assert any("prepared by another run" in m for m in logs["b"])


def test_a_run_downloads_then_trains_with_progress_events(
    server: Server, tmp_path: Path, restore_signals: None
) -> None:
    from tests.worker.test_train_e2e import run_in_process

    data_dir = tmp_path / "tfds"
    preset = presets.from_dict(
        {
            "name": "loopback",
            "data": {
                "source": f"tfds:{NAME}",
                "data_dir": str(data_dir),
                "image_size": [16, 16],
                "batch_size": 12,
                "train_split": "train[:75%]",
                "val_split": "train[75%:]",
                "test_split": "test",
            },
            "model": {"backbone": "tiny_cnn", "weights": "none"},
            "train": {"epochs": 1, "checkpoint_every": 0},
        }
    )
    rc, events = run_in_process(tmp_path / "run", preset)
    assert rc == 0, events[-1]
    progress = [e for e in events if e.type == "progress"]
    assert progress and progress[0].phase == "download"
    first_epoch = next(i for i, e in enumerate(events) if e.type == "epoch_begin")
    assert max(i for i, e in enumerate(events) if e.type == "progress") < first_epoch
    info = json.loads((tmp_path / "run" / "data.json").read_text())
    assert (info["train_examples"], info["val_examples"], info["test_examples"]) == (27, 9, N_TEST)

    offline = presets.from_dict(
        {
            **preset.model_dump(),
            "data": {**preset.data.model_dump(), "data_dir": str(tmp_path / "none"), "download": False},
        }
    )
    rc, events = run_in_process(tmp_path / "run2", offline)
    assert rc == 1 and "(data.download = false)" in events[-1].reason and server.hits == 1


def test_data_fetch_job_and_data_ls(server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tltui.commands.main import main

    data_dir = tmp_path / "tfds"
    assert tfds_fetch.main([NAME, "--data-dir", str(data_dir)]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out.strip().splitlines()[-1]) == {
        "name": NAME,
        "data_dir": str(data_dir),
        "prepared_now": True,
    }
    assert "downloading tfds:" in out.err
    assert main(["data", "ls", "--data-dir", str(data_dir), "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)["datasets"]
    assert (
        entry["name"] == NAME and entry["version"] == "1.0.0" and entry["splits"] == {"train": N_TRAIN, "test": N_TEST}
    )


def test_bad_names_and_a_read_only_data_dir_are_one_line_errors(tmp_path: Path) -> None:
    for name, needle in [(f"{NAME}:9.9.9", "9.9.9"), (f"{NAME}/bogus", "bogus"), ("Not-A-Name", "Not-A-Name")]:
        with pytest.raises(tfds_fetch.FetchError) as err:
            tfds_fetch.ensure_prepared(name, str(tmp_path / "tfds"))
        assert "\n" not in str(err.value) and needle in str(err.value), (name, str(err.value))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        import os

        if os.access(ro, os.W_OK):  # root writes anywhere: nothing to test
            pytest.skip("running as root: a read-only folder is writable")
        with pytest.raises(tfds_fetch.FetchError, match="set data.data_dir to a writable folder"):
            tfds_fetch.ensure_prepared(NAME, str(ro))
    finally:
        ro.chmod(0o700)


def test_a_stop_while_waiting_for_another_preparation_cancels(tmp_path: Path) -> None:
    import fcntl
    import os

    lock = tfds_fetch.lock_path(tmp_path / "tfds", NAME)
    lock.parent.mkdir(parents=True)
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another run is preparing it
    try:
        with pytest.raises(tfds_fetch.Stopped):
            tfds_fetch.ensure_prepared(NAME, str(tmp_path / "tfds"), stop=lambda: True)
    finally:
        os.close(fd)
