"""The precision, XLA and multi-GPU rules (tltui.core.accel) on faked device descriptions, the preset's
"auto" defaults, `check` refusing what `train.gpus > 1` cannot run, and how a run records and shows
what it computed with (old event files included)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tltui.commands.runs import compute_text
from tltui.core import accel, preflight, presets, protocol, runstate

A100 = {"compute_capability": (8, 0), "device_name": "NVIDIA A100-SXM4-80GB"}
H100 = {"compute_capability": (9, 0), "device_name": "NVIDIA H100 80GB HBM3"}
V100 = {"compute_capability": (7, 0), "device_name": "Tesla V100-SXM2-16GB"}
T4 = {"compute_capability": (7, 5), "device_name": "Tesla T4"}
P100 = {"compute_capability": (6, 0), "device_name": "Tesla P100-PCIE-16GB"}


def gpus(*details: dict) -> list[accel.Gpu]:
    return [accel.gpu_from_details(d) for d in details]


@pytest.mark.parametrize(
    ("devices", "policy"),
    [
        ([], "float32"),
        ([A100], "mixed_bfloat16"),
        ([H100, A100], "mixed_bfloat16"),
        ([T4], "mixed_float16"),
        ([V100], "mixed_float16"),
        ([A100, V100], "mixed_float16"),  # the weakest GPU decides: the replicas run one program
        ([P100], "float32"),
        ([{"device_name": "mystery"}], "float32"),  # no compute capability reported
        ([{}], "float32"),
    ],
)
def test_auto_precision_follows_the_gpus_tensor_cores(devices: list[dict], policy: str) -> None:
    d = accel.choose_precision("auto", gpus(*devices))
    assert d.value == policy
    assert d.why.startswith("auto: ")


def test_auto_precision_says_which_gpu_decided() -> None:
    assert accel.choose_precision("auto", gpus(A100)).why == (
        "auto: NVIDIA A100-SXM4-80GB (compute capability 8.0) has bfloat16 tensor cores"
    )
    assert "Tesla V100-SXM2-16GB (compute capability 7.0)" in accel.choose_precision("auto", gpus(A100, V100)).why
    assert accel.choose_precision("auto", []).why == "auto: no GPU (mixed precision is slower on a CPU)"


@pytest.mark.parametrize(
    ("setting", "policy"),
    [
        (False, "float32"),
        (True, "mixed_float16"),
        ("mixed_bfloat16", "mixed_bfloat16"),
        ("mixed_float16", "mixed_float16"),
    ],
)
def test_an_explicit_precision_is_kept_on_any_device(setting: bool | str, policy: str) -> None:
    for devices in ([], gpus(A100), gpus(P100)):
        assert accel.choose_precision(setting, devices).value == policy


def test_device_details_as_tensorflow_gives_them() -> None:
    assert accel.gpu_from_details(A100) == accel.Gpu("NVIDIA A100-SXM4-80GB", (8, 0))
    assert accel.gpu_from_details({"compute_capability": [7, 5]}, "GPU:1") == accel.Gpu("GPU:1", (7, 5))
    assert accel.gpu_from_details({"compute_capability": "8.0"}).compute_capability is None


def test_xla_auto_is_keras_rule_with_its_reason() -> None:
    assert accel.explain_jit("auto", gpus=1, replicas=1, resolved=True) == accel.Decision(
        True, 'auto: one GPU (Keras\'s jit_compile = "auto")'
    )
    assert accel.explain_jit("auto", gpus=0, replicas=1, resolved=False).why.startswith("auto: no GPU")
    assert accel.explain_jit("auto", gpus=4, replicas=4, resolved=False).why.startswith("auto: 4 replicas")
    assert "does not support XLA" in accel.explain_jit("auto", gpus=1, replicas=1, resolved=False).why
    assert accel.explain_jit(False, gpus=1, replicas=1, resolved=False).value is False
    assert "does not support XLA" in accel.explain_jit(True, gpus=1, replicas=1, resolved=False).why


def test_presets_default_to_auto_and_accept_it() -> None:
    p = presets.loads(presets_text(""))
    assert (p.train.mixed_precision, p.train.jit_compile) == ("auto", "auto")
    p = presets.loads(presets_text("mixed_precision = false\njit_compile = true\n"))
    assert (p.train.mixed_precision, p.train.jit_compile) == (False, True)
    with pytest.raises(presets.PresetError, match="train.jit_compile"):
        presets.loads(presets_text('jit_compile = "sometimes"\n'))


def presets_text(train: str) -> str:
    return (
        'name = "p"\n[data]\nsource = "tfds:cifar10"\nimage_size = [32, 32]\nbatch_size = 8\n'
        f'[model]\nbackbone = "resnet50"\nweights = "none"\n[train]\nepochs = 1\n{train}'
    )


def test_shipped_presets_still_validate() -> None:
    for path in sorted(presets.shipped_presets_dir().glob("*.toml")):
        presets.load(path)


@pytest.mark.parametrize(
    ("batch", "gpus", "jit", "field", "message"),
    [
        (35, 2, "auto", "data.batch_size", "35 does not split evenly over train.gpus = 2"),
        (32, 3, "auto", "data.batch_size", "use 30 or 33"),
        (32, 2, True, "train.jit_compile", "true cannot run on train.gpus = 2"),
    ],
)
def test_check_refuses_what_several_gpus_cannot_run(
    batch: int, gpus: int, jit: object, field: str, message: str
) -> None:
    p = presets.loads(presets_text(f"gpus = {gpus}\njit_compile = {json.dumps(jit)}\n").replace("= 8", f"= {batch}"))
    issues = preflight.replica_errors(p, "p.toml")
    assert len(issues) == 1 and issues[0].field == field and message in issues[0].message
    assert str(issues[0]).startswith(f"p.toml: {field}: ")


def test_check_lets_even_batches_and_one_gpu_through() -> None:
    assert preflight.replica_errors(presets.loads(presets_text("gpus = 2\n")), "p") == []
    for train in ("gpus = 1\njit_compile = true\n", ""):  # one device: any batch, XLA if asked
        assert preflight.replica_errors(presets.loads(presets_text(train).replace("= 8", "= 35")), "p") == []


@pytest.mark.parametrize(
    ("n", "batch", "replicas", "pad"), [(9, 8, 2, 1), (21, 8, 2, 1), (16, 8, 2, 0), (10, 8, 4, 2), (5, 8, 1, 0)]
)
def test_evaluation_padding(n: int, batch: int, replicas: int, pad: int) -> None:
    assert accel.eval_padding(n, batch, replicas) == pad


def test_a_run_records_its_precision_and_xla_and_old_runs_read_as_before(tmp_path: Path) -> None:
    old = tmp_path / "old.jsonl"
    old.write_text(
        '{"type":"started","t":1,"pid":1,"devices":["CPU"],"epochs":2}\n'
        '{"type":"model","t":2,"total_params":10,"trainable_params":10}\n'
    )
    assert runstate.load(old).compute() is None and runstate.load(old).compute_short() is None
    new = tmp_path / "new.jsonl"
    new.write_text(
        protocol.encode(
            protocol.Started(
                t=1, precision="mixed_bfloat16", precision_why=accel.choose_precision("auto", gpus(A100)).why
            )
        )
        + protocol.encode(protocol.ModelInfo(t=2, jit_compile=False, jit_why="auto: 2 replicas (Keras turns XLA off)"))
    )
    c = runstate.load(new).compute()
    assert runstate.load(new).compute_short() == "mixed_bfloat16, XLA off"  # the run screen's header
    assert c is not None
    assert compute_text(c) == (
        "mixed_bfloat16 (auto: NVIDIA A100-SXM4-80GB (compute capability 8.0) has bfloat16 tensor cores), "
        "XLA off (auto: 2 replicas (Keras turns XLA off))"
    )
