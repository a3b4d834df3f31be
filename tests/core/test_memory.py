"""The in-memory budget: a share of the memory available, the cgroup's limit when it is tighter."""

from __future__ import annotations

from pathlib import Path

import pytest

from tltui.core import memory
from tltui.core.workspace import Workspace


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_budget_is_its_fraction_of_the_available_memory_and_says_which_way_it_went() -> None:
    b = memory.Budget(0.1, 8_000_000_000)
    assert b.bytes == 800_000_000 and b.fits(800_000_000) and not b.fits(800_000_001)
    assert b.why(500_000_000) == (
        "0.50 GB of images kept in memory (within 0.1 of the 8.0 GB available, [cache] in_memory_fraction)"
    )
    assert "read memory-mapped from the decoded cache (more than 0.1 of the 8.0 GB" in b.why(2_000_000_000)
    assert not memory.Budget(0.0, 8_000_000_000).fits(1)


def test_cgroup_v2_room_is_the_tightest_limit_up_the_tree_without_reclaimable_page_cache(tmp_path: Path) -> None:
    root = write(
        tmp_path / "cg",
        {
            "cgroup.controllers": "cpu memory",
            "memory.max": "max",
            "job/memory.max": "4000",  # the job: 4000 - (3000 - 1000 inactive file pages) = 2000 left
            "job/memory.current": "3000",
            "job/memory.stat": "anon 2000\ninactive_file 1000\n",
            "job/step/memory.max": "max",
            "job/step/memory.current": "2500",
        },
    )
    proc = write(tmp_path, {"cgroup": "0::/job/step\n"}) / "cgroup"
    assert memory.cgroup_room(root, proc) == 2000
    (root / "job/step/memory.max").write_text("2600")  # the step's own limit is tighter: 100 left
    assert memory.cgroup_room(root, proc) == 100


def test_cgroup_v1_room_and_no_limit(tmp_path: Path) -> None:
    root = write(
        tmp_path / "cg",
        {
            "memory/slurm/memory.limit_in_bytes": "10000",
            "memory/slurm/memory.usage_in_bytes": "7000",
            "memory/slurm/memory.stat": "cache 500\ntotal_inactive_file 500\n",
            "memory/memory.limit_in_bytes": str(2**63 - 4096),  # the root: unlimited
        },
    )
    proc = write(tmp_path, {"cgroup": "4:memory:/slurm\n1:cpu:/slurm\n0::/\n"}) / "cgroup"
    assert memory.cgroup_room(root, proc) == 3500
    (tmp_path / "cgroup").write_text("4:memory:/\n")
    assert memory.cgroup_room(root, proc) is None
    assert memory.cgroup_room(root, tmp_path / "missing") is None


def test_available_memory_is_the_smaller_of_the_os_and_the_cgroup(tmp_path: Path, monkeypatch) -> None:
    psutil = pytest.importorskip("psutil")
    free = psutil.virtual_memory().available
    root = write(tmp_path / "cg", {"memory/job/memory.limit_in_bytes": "1000", "memory/job/memory.usage_in_bytes": "0"})
    proc = write(tmp_path, {"cgroup": "4:memory:/job\n"}) / "cgroup"
    assert memory.available_bytes(root, proc) == 1000
    assert memory.available_bytes(tmp_path / "none", tmp_path / "none") >= free // 2  # no cgroup: the OS's


def test_a_runs_budget_reads_its_workspaces_fraction(ws: Workspace, monkeypatch) -> None:
    monkeypatch.setattr(memory, "available_bytes", lambda: 10_000)
    run = ws.root / "runs" / "r0001"
    run.mkdir(parents=True)
    assert memory.budget_for(run) == memory.Budget(0.1, 10_000)  # the default
    ws.settings_file.write_text("[cache]\nin_memory_fraction = 0.5\n")
    assert memory.budget_for(run).bytes == 5000
    assert memory.budget_for(ws.root / "elsewhere").fraction == 0.1  # not a workspace's run
