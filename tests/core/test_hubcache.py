"""Hub handles and the workspace cache (no TensorFlow, no network)."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tarfile
import urllib.error
from pathlib import Path

import pytest

from tltui.core import hubcache
from tltui.core.hubcache import HubError

INCEPTION = "https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5"


# --------------------------------------------------------------------------- fake SavedModel archives


def fake_saved_model(folder: Path, marker: str = "v1") -> Path:
    """A folder laid out like a SavedModel (contents are not loaded by these tests)."""
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(b"pb-" + marker.encode())
    (folder / "variables" / "variables.index").write_bytes(b"index")
    (folder / "variables" / "variables.data-00000-of-00001").write_bytes(b"data" * 100)
    return folder


def tarball(src: Path, out: Path, *, wrap: str | None = None) -> Path:
    with tarfile.open(out, "w:gz") as tar:
        for child in sorted(src.iterdir()):
            tar.add(child, arcname=f"{wrap}/{child.name}" if wrap else child.name)
    return out


def no_network(*_args, **_kwargs):
    raise AssertionError("this test must not download")


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("handle", "kind"),
    [
        ("hub:/models/inception", "local"),
        ("/models/inception", "local"),
        ("file:///models/inception", "local"),
        ("file:///models/inception.tar.gz", "tarball"),
        ("/models/inception.tgz", "tarball"),
        ("https://example.org/m/inception.tar.gz", "tarball"),
        ("http://mirror.local/inception.tar", "tarball"),
        (INCEPTION, "tfhub"),
        ("https://www.kaggle.com/models/google/inception-v3/tensorFlow2/feature-vector/2", "kaggle"),
    ],
)
def test_parse_kinds(handle: str, kind: str) -> None:
    assert hubcache.parse(handle).kind == kind


def test_parse_file_url_gives_a_local_path() -> None:
    h = hubcache.parse("hub:file:///models/my%20net")
    assert h.path == Path("/models/my net")
    assert h.label == "hub:file:///models/my%20net"


def test_local_tarball_path_is_downloaded_from_a_file_url(tmp_path: Path) -> None:
    h = hubcache.parse(str(tmp_path / "m.tar.gz"))
    assert h.url == (tmp_path / "m.tar.gz").as_uri()


def test_kaggle_page_becomes_its_archive_url() -> None:
    h = hubcache.parse("https://www.kaggle.com/models/google/inception-v3/tensorFlow2/feature-vector/2")
    assert h.url == "https://www.kaggle.com/api/v1/models/google/inception-v3/tensorFlow2/feature-vector/2/download"
    v = hubcache.parse("https://www.kaggle.com/models/google/inception-v3/tensorFlow2/feature-vector/versions/2")
    assert v.url == h.url


@pytest.mark.parametrize(
    ("handle", "needle"),
    [
        ("hub:", "expected"),
        ("gs://bucket/model.tar.gz", "unsupported URL scheme 'gs'"),
        ("https://www.kaggle.com/models/google/inception-v3", "expected a Kaggle Models URL"),
    ],
)
def test_parse_errors_are_one_line(handle: str, needle: str) -> None:
    with pytest.raises(HubError) as e:
        hubcache.parse(handle)
    assert needle in str(e.value)
    assert "\n" not in str(e.value)


def test_cache_lives_in_the_workspace(ws) -> None:
    assert hubcache.cache_root(ws.root) == ws.root / "cache" / "tfhub"
    run_dir = ws.runs_dir / "r0001"
    assert hubcache.workspace_root_of_run(run_dir) == ws.root.resolve()


# --------------------------------------------------------------------------- downloads


def test_fetch_from_a_file_url_is_atomic_and_then_offline(tmp_path: Path) -> None:
    src = fake_saved_model(tmp_path / "src")
    tgz = tarball(src, tmp_path / "inception.tar.gz")
    cache = tmp_path / "cache"
    handle = hubcache.parse(tgz.as_uri())
    seen: list[tuple[int, int | None]] = []
    folder = hubcache.fetch_archive(handle, cache, progress=lambda done, total: seen.append((done, total)))
    assert folder == hubcache.module_folder(cache, handle)
    # progress as the bytes stream in: increasing, ending at the archive's size (file: URLs give it)
    assert seen and [d for d, _ in seen] == sorted(d for d, _ in seen) and seen[-1][0] == tgz.stat().st_size
    assert seen[-1][1] in (None, tgz.stat().st_size)
    assert (folder / "saved_model.pb").read_bytes() == b"pb-v1"
    assert (folder / "variables" / "variables.index").exists()
    assert hubcache.inspect(folder).state == "ready"
    # only the module, its descriptor: no lock, no temp folder left behind
    assert sorted(p.name for p in cache.iterdir()) == sorted([folder.name, folder.name + ".descriptor.txt"])
    # a second fetch never touches the network (the source may be gone)
    tgz.unlink()
    assert hubcache.fetch_archive(handle, cache, opener=no_network) == folder


def test_an_archive_wrapped_in_one_folder_is_unwrapped(tmp_path: Path) -> None:
    src = fake_saved_model(tmp_path / "src")
    tgz = tarball(src, tmp_path / "m.tgz", wrap="inception_v3")
    folder = hubcache.fetch_archive(hubcache.parse(str(tgz)), tmp_path / "cache")
    assert (folder / "saved_model.pb").exists()


def test_an_archive_without_a_saved_model_is_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "README").write_text("not a model")
    tgz = tarball(tmp_path / "src", tmp_path / "m.tar.gz")
    cache = tmp_path / "cache"
    with pytest.raises(HubError, match="no saved_model.pb"):
        hubcache.fetch_archive(hubcache.parse(str(tgz)), cache)
    assert [p.name for p in cache.iterdir()] == []  # nothing half-made stays


def test_links_and_path_traversal_in_an_archive_are_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"evil"))
    (tmp_path / "evil.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(HubError, match="not a readable"):
        hubcache.fetch_archive(hubcache.parse(str(tmp_path / "evil.tar.gz")), tmp_path / "cache")
    assert not (tmp_path / "evil.txt").exists()

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        link = tarfile.TarInfo("saved_model.pb")
        link.type = tarfile.SYMTYPE
        link.linkname = "/etc/passwd"
        tar.addfile(link)
    (tmp_path / "link.tar.gz").write_bytes(buf.getvalue())
    with pytest.raises(HubError, match="links and devices"):
        hubcache.fetch_archive(hubcache.parse(str(tmp_path / "link.tar.gz")), tmp_path / "cache")


@pytest.mark.parametrize(
    "error",
    [
        urllib.error.URLError(socket.gaierror(-2, "Name or service not known")),
        TimeoutError("timed out"),
        ConnectionRefusedError(111, "Connection refused"),
    ],
)
def test_offline_is_one_line_that_says_how_to_predownload(tmp_path: Path, error: Exception) -> None:
    def opener(url, timeout):
        assert timeout == 5.0
        raise error

    cache = tmp_path / "cache"
    handle = hubcache.parse("https://models.example.org/inception_v3.tar.gz")
    with pytest.raises(HubError) as e:
        hubcache.fetch_archive(handle, cache, timeout=5.0, opener=opener)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("hub:https://models.example.org/inception_v3.tar.gz: cannot download (")
    assert "`tltui hub fetch https://models.example.org/inception_v3.tar.gz`" in msg
    assert str(cache) in msg and hubcache.module_folder(cache, handle).name in msg
    assert 'model.backbone = "hub:/path/to/saved_model"' in msg
    assert list(cache.iterdir()) == []  # lock released, no temp folder


def test_a_download_that_stalls_midway_is_reported_as_offline(tmp_path: Path) -> None:
    src = fake_saved_model(tmp_path / "src")
    blob = tarball(src, tmp_path / "m.tar.gz").read_bytes()

    class Stalling(io.BytesIO):
        def read(self, n: int = -1) -> bytes:
            if self.tell() > len(blob) // 2:
                raise TimeoutError("timed out")
            return super().read(min(n, 64) if n and n > 0 else 64)

    cache = tmp_path / "cache"
    handle = hubcache.parse("https://models.example.org/m.tar.gz")
    with pytest.raises(HubError, match=r"cannot download \(timed out\)"):
        hubcache.fetch_archive(handle, cache, opener=lambda url, timeout: Stalling(blob))
    assert list(cache.iterdir()) == []


# --------------------------------------------------------------------------- broken caches


def test_half_deleted_cache_is_detected_and_refetched(tmp_path: Path) -> None:
    src = fake_saved_model(tmp_path / "src", marker="fresh")
    tgz = tarball(src, tmp_path / "m.tar.gz")
    cache = tmp_path / "cache"
    handle = hubcache.parse(tgz.as_uri())
    folder = hubcache.module_folder(cache, handle)
    # the known TF Hub failure: the folder is there, saved_model.pb is not
    (folder / "variables").mkdir(parents=True)
    (folder / "variables" / "variables.index").write_bytes(b"old")
    status = hubcache.inspect(folder)
    assert status.state == "incomplete" and "saved_model.pb" in status.detail
    assert hubcache.fetch_archive(handle, cache) == folder
    assert (folder / "saved_model.pb").read_bytes() == b"pb-fresh"


def test_an_empty_cache_folder_counts_as_incomplete(tmp_path: Path) -> None:
    (tmp_path / "abc").mkdir()
    assert hubcache.inspect(tmp_path / "abc").state == "incomplete"


def test_a_broken_folder_that_cannot_be_removed_names_the_folder_to_delete(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    handle = hubcache.parse("https://models.example.org/m.tar.gz")
    folder = hubcache.module_folder(cache, handle)
    (folder / "variables").mkdir(parents=True)

    def refuse(path, *a, **k):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(hubcache.shutil, "rmtree", refuse)
    with pytest.raises(HubError) as e:
        hubcache.fetch_archive(handle, cache, opener=no_network)
    msg = str(e.value)
    assert f"delete {folder} and run `tltui hub fetch https://models.example.org/m.tar.gz` again" in msg
    assert "\n" not in msg


def test_stale_lock_of_a_dead_process_is_cleared(tmp_path: Path) -> None:
    src = fake_saved_model(tmp_path / "src")
    tgz = tarball(src, tmp_path / "m.tar.gz")
    cache = tmp_path / "cache"
    handle = hubcache.parse(tgz.as_uri())
    folder = hubcache.module_folder(cache, handle)
    cache.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    hubcache.lock_file(folder).write_text(f"{socket.gethostname()}.{pid}.deadbeef")
    (cache / f"{folder.name}.deadbeef.tmp").mkdir()  # its half-written download
    assert hubcache.inspect(folder).state == "stale_lock"
    assert hubcache.fetch_archive(handle, cache) == folder
    assert not hubcache.lock_file(folder).exists()
    assert not (cache / f"{folder.name}.deadbeef.tmp").exists()


def test_a_live_download_is_not_stolen(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    handle = hubcache.parse("https://models.example.org/m.tar.gz")
    folder = hubcache.module_folder(cache, handle)
    cache.mkdir()
    hubcache.lock_file(folder).write_text(f"{socket.gethostname()}.{os.getpid()}.cafe")
    assert hubcache.inspect(folder).state == "downloading"
    with pytest.raises(HubError, match="another download is in progress"):
        hubcache.fetch_archive(handle, cache, opener=no_network)
    assert hubcache.lock_file(folder).exists()


def test_local_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(HubError, match="no such folder"):
        hubcache.local_saved_model(hubcache.parse(str(tmp_path / "nope")))
    (tmp_path / "file").write_text("x")
    with pytest.raises(HubError, match="is a file"):
        hubcache.local_saved_model(hubcache.parse(str(tmp_path / "file")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(HubError, match="no saved_model.pb"):
        hubcache.local_saved_model(hubcache.parse(str(tmp_path / "empty")))
    good = fake_saved_model(tmp_path / "good")
    assert hubcache.local_saved_model(hubcache.parse(f"hub:{good}")) == good


# --------------------------------------------------------------------------- listing and the CLI


def test_list_cached_reports_handles_and_broken_folders(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    tgz = tarball(fake_saved_model(tmp_path / "src"), tmp_path / "m.tar.gz")
    good = hubcache.fetch_archive(hubcache.parse(tgz.as_uri()), cache)
    broken = hubcache.module_folder(cache, hubcache.parse(INCEPTION))
    (broken / "variables").mkdir(parents=True)
    mods = {m.folder: m for m in hubcache.list_cached(cache)}
    assert mods[good].handle == tgz.as_uri() and mods[good].state == "ready" and mods[good].size_bytes > 400
    assert mods[broken].state == "incomplete" and mods[broken].handle is None


def test_cli_hub_ls(ws, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from tltui.commands.main import main

    assert main(["--workspace", str(ws.root), "hub", "ls"]) == 0
    assert "no hub modules cached" in capsys.readouterr().out
    tgz = tarball(fake_saved_model(tmp_path / "src"), tmp_path / "m.tar.gz")
    folder = hubcache.fetch_archive(hubcache.parse(tgz.as_uri()), hubcache.cache_root(ws.root))
    assert main(["--workspace", str(ws.root), "hub", "ls"]) == 0
    out = capsys.readouterr().out
    assert "ready" in out and tgz.as_uri() in out and str(folder) in out
    assert main(["--workspace", str(ws.root), "hub", "ls", "--json"]) == 0
    import json

    doc = json.loads(capsys.readouterr().out)
    assert doc["modules"][0]["folder"] == str(folder)


def test_cli_hub_fetch_rejects_a_bad_handle_without_starting_a_worker(
    ws, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tltui.commands import hub as hub_cmd
    from tltui.commands.main import main

    monkeypatch.setattr(hub_cmd.subprocess, "run", no_network)
    assert main(["--workspace", str(ws.root), "hub", "fetch", "gs://bucket/m.tar.gz"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: hub:gs://bucket/m.tar.gz: unsupported URL scheme") and "\n" not in err


def test_core_module_does_not_import_tensorflow() -> None:
    code = "import sys, tltui.core.hubcache, tltui.commands.hub; print(any(m.split('.')[0] in ('tensorflow', 'keras') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --------------------------------------------------------------------------- before queueing


def test_preflight_warns_about_downloads_still_to_come(ws, tmp_path: Path) -> None:
    from tltui.core import preflight, presets

    def preset(backbone: str) -> presets.Preset:
        return presets.from_dict(
            {"name": "p", "data": {"source": "tfds:cifar100"}, "model": {"backbone": f"hub:{backbone}"}}
        )

    report = preflight.check(preset(INCEPTION), "p.toml", ws)
    assert report.errors == []
    assert any(
        w.startswith(f"hub:{INCEPTION} is not in the hub cache yet") and f"`tltui hub fetch {INCEPTION}`" in w
        for w in report.warnings
    )

    tgz = tarball(fake_saved_model(tmp_path / "src"), tmp_path / "m.tar.gz")
    hubcache.fetch_archive(hubcache.parse(tgz.as_uri()), hubcache.cache_root(ws.root))
    assert not any("hub" in w for w in preflight.check(preset(tgz.as_uri()), "p.toml", ws).warnings)

    broken = hubcache.module_folder(hubcache.cache_root(ws.root), hubcache.parse(INCEPTION))
    (broken / "variables").mkdir(parents=True)
    assert any("the cached copy is incomplete" in w for w in preflight.check(preset(INCEPTION), "p.toml", ws).warnings)

    (tmp_path / "not_a_model").mkdir()
    errors = preflight.check(preset(str(tmp_path / "not_a_model")), "p.toml", ws).errors
    assert [(e.field, "no saved_model.pb" in e.message) for e in errors] == [("model.backbone", True)]
    errors = preflight.check(preset("gs://bucket/m.tar.gz"), "p.toml", ws).errors
    assert [e.field for e in errors] == ["model.backbone"]


def test_shipped_hub_preset_is_the_notebooks_experiment() -> None:
    from tltui.core import presets

    p = presets.load(Path(__file__).resolve().parents[2] / "tltui" / "presets" / "cifar100-inception-hub.toml")
    assert p.model.backbone == "hub:https://tfhub.dev/google/imagenet/inception_v3/feature_vector/5"
    assert (p.data.source, p.data.image_size, p.model.hub_output_dim, p.freeze.depth) == (
        "tfds:cifar100",
        [299, 299],
        2048,
        "all",
    )
    assert hubcache.parse(p.model.backbone).kind == "tfhub"


def test_a_relative_hub_folder_is_relative_to_the_preset_file(tmp_path: Path) -> None:
    from tltui.core import presets

    (tmp_path / "presets").mkdir()
    f = tmp_path / "presets" / "mine.toml"
    f.write_text('name = "mine"\n[data]\nsource = "tfds:cifar10"\n[model]\nbackbone = "hub:../models/inception"\n')
    handle = hubcache.parse(presets.load(f).model.backbone)
    assert handle.kind == "local" and handle.path == (tmp_path / "models" / "inception").resolve()
