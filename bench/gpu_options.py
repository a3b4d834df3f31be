"""Target 6: GPU-side options, checked for correctness on this CPU (and their CPU step time).

Each option trains the worker's own model (``build_classifier`` + freeze + ``compile_model``
after ``set_precision``, exactly as the worker does) for 2 epochs on random data whose
last batch is partial, in a fresh process (the precision policy is process-global):

- ``train.mixed_precision = "mixed_float16"`` and ``"mixed_bfloat16"``: compute in 16 bit,
  variables and the softmax in float32 (the output layer is ``dtype="float32"``);
- ``train.jit_compile = true`` (XLA);
- ``TF_GPU_ALLOCATOR=cuda_malloc_async`` in the environment (the supervisor passes the
  environment to the worker; on a CPU it must simply not break anything);
- ``drop_remainder``: with XLA a partial last batch is a second shape (one more compile);
  batching with ``drop_remainder=True`` keeps a single static shape.

Pass: every loss finite, the model's output float32 and summing to 1. The step time
against float32 without XLA is printed for information (on a CPU, 16-bit compute is
emulated and slower; the gains are on GPUs with tensor cores).

``python -m bench.gpu_options [--tiny]``
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import PYTHON, REPO, Figure, Result, emit, median, preset_file, run_env, tiny_flag

OPTIONS: dict[str, dict[str, Any]] = {
    "float32": {},
    "mixed_float16": {"sets": ['train.mixed_precision="mixed_float16"']},
    "mixed_bfloat16": {"sets": ['train.mixed_precision="mixed_bfloat16"']},
    "jit_compile": {"sets": ["train.jit_compile=true"]},
    "jit_compile+drop_remainder": {"sets": ["train.jit_compile=true"], "drop_remainder": True},
    "cuda_malloc_async": {"env": {"TF_GPU_ALLOCATOR": "cuda_malloc_async"}},
}

#: The tiny (smoke) mode checks only these: each option is a fresh TensorFlow process.
TINY_OPTIONS = ["float32", "mixed_float16"]


def one(option: str, tiny: bool) -> dict[str, Any]:
    """Runs in a child process: train 2 epochs with ``option``; report what a check needs."""
    import numpy as np
    import tensorflow as tf

    from tltui.core import presets
    from tltui.worker import model as model_mod
    from tltui.worker.compile import compile_model
    from tltui.worker.devices import set_precision
    from tltui.worker.freeze import apply_freeze

    spec_opt = OPTIONS[option]
    sets = list(spec_opt.get("sets", []))
    if tiny:
        sets += ['model.backbone="tiny_cnn"', "data.image_size=[32, 32]"]
    import tempfile

    preset = presets.load(preset_file(tiny, Path(tempfile.mkdtemp(prefix="tltui-bench-gpu-"))), presets.parse_set(sets))
    set_precision(preset)
    classes, n, bs = 6, 72, 32  # 72 = 2 full batches + a partial one of 8
    model, backbone = model_mod.build_classifier(preset, classes)
    spec = model_mod.backbone_spec(preset)
    apply_freeze(model, backbone, spec.family, preset.freeze.depth, preset.freeze.batchnorm)
    compile_model(model, preset, classes, None, lambda *a: None)
    h, w = preset.data.image_size
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, size=(n, h, w, 3)).astype("float32")
    y = rng.integers(0, classes, size=(n,)).astype("int32")
    ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(bs, drop_remainder=bool(spec_opt.get("drop_remainder")))
    losses: list[float] = []

    class Losses(__import__("keras").callbacks.Callback):
        def on_train_batch_end(self, batch: int, logs: Any = None) -> None:
            losses.append(float((logs or {}).get("loss", float("nan"))))

    model.fit(ds, epochs=1, verbose=0, callbacks=[Losses()])  # tracing / compiling
    times = []
    for _ in range(2 if tiny else 3):
        t0 = time.perf_counter()
        model.fit(ds, epochs=1, verbose=0, callbacks=[Losses()])
        times.append((time.perf_counter() - t0) / (n // bs + (0 if spec_opt.get("drop_remainder") else 1)))
    out = model(x[:4], training=False)
    probs = np.asarray(out)
    return {
        "option": option,
        "policy": __import__("keras").mixed_precision.global_policy().name,
        "losses_finite": bool(losses) and all(np.isfinite(losses)),
        "n_losses": len(losses),
        "output_dtype": str(getattr(out.dtype, "name", out.dtype)),
        "sums_to_one": bool(np.allclose(probs.sum(axis=-1), 1.0, atol=1e-3)),
        "step_seconds": median(times),
    }


def check(option: str, tiny: bool, tmp_env: dict[str, str]) -> dict[str, Any]:
    env = dict(tmp_env, **OPTIONS[option].get("env", {}))
    if tiny:
        env["TLTUI_TEST_BACKBONES"] = "1"
    cmd = [PYTHON, "-m", "bench.gpu_options", "--one", option] + (["--tiny"] if tiny else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=REPO)
    if proc.returncode != 0:
        return {"option": option, "error": (proc.stderr.strip().splitlines() or ["?"])[-1][:300]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run(tiny: bool = False) -> list[Result | Figure]:
    import tempfile

    out: list[Result | Figure] = []
    with tempfile.TemporaryDirectory(prefix="tltui-bench-gpu-") as d:
        env = run_env(Path(d) / "home")
        chosen = TINY_OPTIONS if tiny else list(OPTIONS)
        results = {opt: check(opt, tiny, env) for opt in chosen}
    base = results["float32"]
    for opt, r in results.items():
        if "error" in r:
            out.append(Figure("gpu_options", f"{opt}: FAILED to train: {r['error']}", float("nan"), "", None))
            continue
        ok = r["losses_finite"] and r["output_dtype"] == "float32" and r["sums_to_one"]
        what = (
            f"{opt}: {'trains correctly' if ok else 'INCORRECT'} (policy {r['policy']}, {r['n_losses']} finite "
            f"losses: {r['losses_finite']}, softmax {r['output_dtype']}, sums to 1: {r['sums_to_one']}); "
            "CPU step time"
        )
        if opt == "float32" or "error" in base:
            out.append(Figure("gpu_options", what, r["step_seconds"], "s", None))
        else:
            out.append(
                Result(
                    "gpu_options",
                    what,
                    opt,
                    r["step_seconds"],
                    "float32",
                    base["step_seconds"],
                    "s",
                    "info",
                    note="informational on CPU",
                )
            )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(argv or [])
    if "--one" in argv:
        option = argv[argv.index("--one") + 1]
        print(json.dumps(one(option, tiny_flag(argv))))
        return 0
    emit(run(tiny_flag(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
