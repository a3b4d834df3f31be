"""`tltui doctor`'s findings (tltui.core.doctor.diagnose) on faked machines: one line per problem,
with what to do; notes for what the box gives."""

from __future__ import annotations

from tltui.core import accel, doctor
from tltui.core.gpus import GpuInfo

GIB = 1024**3


def nvml(*names: str, used: int = 0) -> list[GpuInfo]:
    return [GpuInfo(i, n, f"GPU-{i}", 80 * GIB, used, 0) for i, n in enumerate(names)]


def tf_facts(*gpus: tuple[str, tuple[int, int] | None], cuda: bool = True) -> doctor.TfFacts:
    return doctor.TfFacts(
        ok=True,
        version="2.21.0",
        cuda_build=cuda,
        cuda_version="12.5.1" if cuda else "",
        cudnn_version="9" if cuda else "",
        gpus=[accel.Gpu(n, cc) for n, cc in gpus],
    )


def facts(tf: doctor.TfFacts | None, gpus: list[GpuInfo], cpus: int = 64, free: int = 500 * GIB, **kw) -> doctor.Facts:
    disks = [doctor.Disk("workspace", "/ws", free, 1000 * GIB)]
    return doctor.Facts(tf=tf, nvml=gpus, driver="550.54.15" if gpus else None, cpus=cpus, disks=disks, **kw)


def problems(f: doctor.Facts) -> list[str]:
    return [x.text for x in doctor.diagnose(f) if x.problem]


def notes(f: doctor.Facts) -> list[str]:
    return [x.text for x in doctor.diagnose(f) if not x.problem]


def test_a_well_fed_gpu_box_has_no_problems_and_says_what_runs_get() -> None:
    f = facts(tf_facts(("NVIDIA A100-SXM4-80GB", (8, 0)), ("NVIDIA A100-SXM4-80GB", (8, 0))), nvml("A100", "A100"))
    assert problems(f) == []
    text = "\n".join(notes(f))
    assert "TensorFlow 2.21.0 (CUDA 12.5.1, cuDNN 9) sees 2 GPU(s); NVML: 2, driver 550.54.15" in text
    assert "GPU:0 NVIDIA A100-SXM4-80GB, compute capability 8.0: mixed precision auto = mixed_bfloat16" in text
    assert "train.gpus = 2: MirroredStrategy, XLA off" in text
    assert "CPU: 64 core(s) for 2 GPU(s), 32.0 per GPU" in text


def test_a_cpu_only_tensorflow_on_a_gpu_box_says_how_to_install() -> None:
    (line,) = problems(facts(tf_facts(cuda=False), nvml("Tesla T4")))
    assert line.startswith("NVML sees 1 GPU(s) but TensorFlow none: TensorFlow is a CPU-only build")
    assert "pip install 'tltui[gpu]'" in line


def test_a_cuda_build_that_cannot_load_names_the_versions_and_the_driver() -> None:
    (line,) = problems(facts(tf_facts(), nvml("Tesla T4")))
    assert "CUDA 12.5.1 / cuDNN 9 do not load with driver 550.54.15: update the driver" in line


def test_hidden_gpus_name_cuda_visible_devices() -> None:
    (line,) = problems(facts(tf_facts(), nvml("Tesla T4"), cuda_visible_devices="-1"))
    assert "CUDA_VISIBLE_DEVICES='-1' hides them" in line


def test_an_old_gpu_and_few_cores_are_problems_with_what_to_do() -> None:
    f = facts(tf_facts(("Tesla P100-PCIE-16GB", (6, 0))), nvml("Tesla P100-PCIE-16GB"), cpus=4)
    lines = problems(f)
    assert any("no tensor cores (compute capability 6.0 < 7.0): runs train in float32" in x for x in lines)
    assert not [x for x in lines if x.startswith("folder at 224")]  # 4 cores feed one GPU
    assert "mixed precision auto = float32" in "\n".join(notes(f))
    eight = [("NVIDIA A100-SXM4-80GB", (8, 0))] * 8
    lines = problems(facts(tf_facts(*eight), nvml(*[n for n, _ in eight]), cpus=1))
    (feed,) = [x for x in lines if x.startswith("folder at 224")]
    assert "0.1 cores per GPU feed ~1,738 img/s (13,900 img per CPU-second)" in feed
    assert "give each GPU 1 core(s)" in feed


def test_busy_gpu_memory_and_a_full_disk_are_problems() -> None:
    f = facts(tf_facts(("Tesla T4", (7, 5))), nvml("Tesla T4", used=60 * GIB), free=1 * GIB)
    lines = problems(f)
    assert any(x.startswith("GPU 0: 60.0 GiB of 80.0 GiB already in use") for x in lines)
    assert any(x.startswith("workspace /ws: 1.0 GiB free of 1000.0 GiB") for x in lines)


def test_no_gpu_and_tensorflow_that_does_not_load() -> None:
    f = facts(doctor.TfFacts(ok=False, error="ImportError: libcudart.so.12"), [], cpus=2)
    (line,) = problems(f)
    assert line.startswith("TensorFlow does not load in the worker: ImportError: libcudart.so.12")
    assert "no GPU: runs train on the CPU" in "\n".join(notes(f))


def test_this_box_without_a_gpu_has_no_problems() -> None:
    f = facts(doctor.TfFacts.from_json({"ok": True, "version": "2.21.0", "cuda_build": False, "gpus": []}), [], cpus=2)
    assert problems(f) == []
    assert doctor.to_json(f, doctor.diagnose(f))["tensorflow"]["gpus"] == []


def test_the_worker_answer_parses_into_gpus() -> None:
    tf = doctor.TfFacts.from_json(
        {"ok": True, "gpus": [{"device_name": "NVIDIA H100", "compute_capability": [9, 0]}, {"device_name": "x"}]}
    )
    assert tf.gpus == [accel.Gpu("NVIDIA H100", (9, 0)), accel.Gpu("x", None)]
    out = doctor.to_json(facts(tf, nvml("H100", "x")), [])
    assert out["tensorflow"]["gpus"][0] == {
        "name": "NVIDIA H100",
        "compute_capability": "9.0",
        "mixed_precision_auto": "mixed_bfloat16",
    }
