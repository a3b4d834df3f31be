"""Phased runs (``[[phases]]``) with the real worker: what plain Keras gives for the same two
fits, and kill -9 at a phase boundary and inside phase 2, resumed, equal to the uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.worker.test_train_e2e import model_weights, run_in_process
from tltui.core import presets, protocol, run_summary, runstate
from tltui.core.workspace import RunPaths

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("train_e2e")]


def two_phase(source: str, **overrides: object) -> presets.Preset:
    raw = {
        "name": "tiny-phases",
        "data": {"source": source, "image_size": [16, 16], "batch_size": 8, "validation_fraction": 0.25},
        "model": {"backbone": "tiny_cnn", "weights": "none"},
        "freeze": {"depth": "all"},
        "train": {"epochs": 2, "checkpoint_every": 0, "learning_rate": 0.01},
        "phases": [
            {"name": "head", "train": {"epochs": 2}},
            {
                "name": "fine-tune",
                "freeze": {"depth": 0},
                "train": {"epochs": 3, "learning_rate": 0.002, "lr_schedule": "cosine", "optimizer": "sgd"},
            },
        ],
    }
    return presets.from_dict(raw, overrides=overrides)


def test_two_phases_are_two_keras_fits_with_a_recompile_between(tmp_path: Path, shapes: Path, restore_signals) -> None:
    """Phase 1 trains the head on a frozen backbone (Adam 1e-2), phase 2 unfreezes it and trains with a
    new SGD optimizer and its own cosine schedule: the numbers are those of plain Keras doing exactly that."""
    import keras
    import numpy as np

    from tltui.worker import data
    from tltui.worker.compile import compile_model
    from tltui.worker.model import build_classifier

    # model.keras then holds the last epoch, what plain Keras's model holds after the second fit
    preset = two_phase(
        f"folder:{shapes}", **{"data.augment": False, "data.shuffle_buffer": 0, "train.restore_best": False}
    )
    rc, events = run_in_process(tmp_path / "run", preset)
    assert rc == 0, events[-1]
    phases = [e for e in events if e.type == "train_phase"]
    assert [(p.index, p.count, p.start_epoch, p.epochs, p.total_epochs) for p in phases] == [
        (1, 2, 0, 2, 5),
        (2, 2, 2, 3, 5),
    ]
    assert phases[0].trainable_params < phases[1].trainable_params
    # phase 1 qualifies for the feature cache (frozen backbone, BatchNorm in inference mode, no
    # augmentation) and is served by it; phase 2 trains the whole model
    assert [e.feature_cache for e in events if e.type == "model"] == [True, False]
    ends = [e for e in events if e.type == "epoch_end"]
    assert [e.epoch for e in ends] == [1, 2, 3, 4, 5]
    state = runstate.load(RunPaths(tmp_path / "run").events)
    assert [h["phase"] for h in state.history_list()] == [1, 1, 2, 2, 2]
    assert state.phase_text() == "phase 2/2 fine-tune" and state.phase_starts() == [(2, 3, "fine-tune")]
    # phase 2's schedule is its own: cosine over its 3 epochs x 3 steps, from its own rate
    schedule = keras.optimizers.schedules.CosineDecay(0.002, decay_steps=3 * 3)
    assert [e.lr for e in ends[2:]] == pytest.approx([float(schedule(e * 3 - 1)) for e in (1, 2, 3)])
    saved = keras.saving.load_model(RunPaths(tmp_path / "run").model)
    assert int(saved.optimizer.iterations.numpy()) == 3 * 3  # phase 2's optimizer, new at the boundary

    keras.utils.set_random_seed(preset.train.seed)
    ds = data.load(preset)
    x, y = np.asarray(ds.train.images, dtype="float32"), ds.train.labels
    xv, yv = np.asarray(ds.val.images, dtype="float32"), ds.val.labels
    plain, backbone = build_classifier(preset, 3)
    history: dict[str, list[float]] = {}
    p1, p2 = preset.phase_presets()
    for p, first, last, trainable in ((p1, 0, 2, False), (p2, 2, 5, True)):
        for layer in backbone.layers:  # BatchNorm frozen in both phases (inference mode)
            layer.trainable = trainable and not isinstance(layer, keras.layers.BatchNormalization)
        compile_model(plain, p, 3, 3, lambda *a: None)
        h = plain.fit(
            x, y, batch_size=8, initial_epoch=first, epochs=last, shuffle=False, validation_data=(xv, yv), verbose=0
        ).history
        for k, v in h.items():
            history.setdefault(k, []).extend(v)
    for key in ("loss", "acc", "val_loss", "val_acc"):
        np.testing.assert_allclose([e.metrics[key] for e in ends], history[key], rtol=1e-5, err_msg=key)
    for a, b in zip(saved.weights, plain.weights, strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)
    fmap = json.loads(RunPaths(tmp_path / "run").freeze_map.read_text())  # the map of the phase training last
    assert (fmap["depth"], fmap["phase"]) == (0, {"index": 2, "count": 2, "name": "fine-tune"})
    # the movement record counts from phase 2's start: the backbone trained, BatchNorm did not move
    assert (events[-1].model_epoch, events[-1].model_rule) == (5, "last")
    moved = json.loads(RunPaths(tmp_path / "run").moved.read_text())
    assert (
        moved["phase"] == 2 and moved["since"].startswith("the start of phase 2/2 fine-tune") and moved["errors"] == []
    )
    by_name = {r["name"]: r for r in moved["layers"]}
    assert all(r["moved"] > 0 for r in moved["layers"] if r["trainable"])
    assert all(r["moved"] == 0 and not r["bn_drift"] for r in moved["layers"] if not r["trainable"])
    assert any(not r["trainable"] for r in by_name.values())  # the BatchNorm layers, frozen in phase 2
    # phase 1 keeps its own map and record; its backbone ran from cached features, measured at the phase's end
    paths = RunPaths(tmp_path / "run")
    assert json.loads(paths.moved_of(2).read_text()) == moved
    first_map = json.loads(paths.freeze_map_of(1).read_text())
    assert (first_map["depth"], first_map["phase"]["index"], first_map["feature_cache"]) == ("all", 1, True)
    first = json.loads(paths.moved_of(1).read_text())
    assert (first["phase"], first["feature_cache"], first["measured"], first["epoch"]) == (1, True, "all", 2)
    rows = {r["name"]: r for r in first["layers"]}
    assert rows["block1_conv"]["moved"] == 0.0 and rows["block2_bn"]["bn_drift"] == 0.0  # measured, not assumed
    assert rows["logits"]["moved"] > 0 and first["errors"] == []


def test_failed_at_the_boundary_and_inside_phase_2_resumes_exactly(
    tmp_path: Path, shapes: Path, restore_signals
) -> None:
    """A run dies in phase 2's first epoch (its backup is phase 1's end, after early stopping restored
    its best epoch), is resumed, dies again in its third epoch (a backup inside phase 2, with phase 2's
    optimizer) and is resumed again: history, kept epoch, model.keras and the movement record equal
    the uninterrupted run's. (In process, a failure for a kill: kill -9 itself is the single-phase
    test's, test_train_e2e; what matters here is which state a resume restores at each point.)"""
    import numpy as np

    from tltui.worker import train

    preset = two_phase(
        f"folder:{shapes}",
        **{
            "phases.1.train.early_stopping_patience": 1,
            "phases.1.train.epochs": 3,
            "model.dropout": 0.5,
            "phases.1.train.learning_rate": 1e-6,
        },  # val_acc cannot move: phase 1 stops after epoch 2
    )
    rc, _ = run_in_process(tmp_path / "plain", preset)
    assert rc == 0
    a = runstate.load(RunPaths(tmp_path / "plain").events)
    assert [(h["epoch"], h["phase"]) for h in a.history_list()] == [(1, 1), (2, 1), (3, 2), (4, 2), (5, 2)]
    assert [(p.index, p.start_epoch, p.total_epochs) for p in a.phases.values()] == [(1, 0, 6), (2, 2, 5)]

    run = tmp_path / "killed"
    paths = RunPaths(run)
    run.mkdir()
    (run / "preset.toml").write_text(presets.dumps(preset))
    for fault, resumed_after in (("oom@epoch3,batch2", 2), ("oom@epoch5,batch2", 4)):
        (run / "fault.json").write_text(json.dumps({"fault": fault}))
        assert train.main([str(run)] + (["--resume"] if resumed_after > 2 else [])) == 1
        meta = json.loads((paths.backup / "training_metadata.json").read_text())
        at_boundary = resumed_after == 2  # phase 1 (index 0) complete, else inside phase 2 (index 1)
        assert (meta["epoch"], meta["phase"], bool(meta.get("phase_complete"))) == (
            resumed_after,
            0 if at_boundary else 1,
            at_boundary,
        )
    (run / "fault.json").unlink()
    assert train.main([str(run), "--resume"]) == 0

    b = runstate.load(paths.events)
    # the summary the workers kept across both failures and resumes reads as the whole log does
    assert run_summary.state_to_doc(b) == run_summary.state_to_doc(runstate.fold(paths.events))
    starts = [e for e in protocol.read_events(paths.events) if e.type == "started"]
    assert [s.initial_epoch for s in starts] == [0, 2, 4]

    def metrics(state: runstate.RunState) -> list[dict]:
        return [{k: v for k, v in h.items() if k not in ("t", "epoch_seconds")} for h in state.history_list()]

    assert metrics(b) == metrics(a)
    assert a.finished.model_epoch == b.finished.model_epoch == a.best()["epoch"]  # the kept epoch survives resumes
    assert "phase 1/2 head stopped early after epoch 2" in a.finished.reason
    assert b.finished.reason == a.finished.reason  # the backups (boundary and inside phase 2) keep the note
    for x, y in zip(model_weights(RunPaths(tmp_path / "plain").model), model_weights(paths.model), strict=True):
        np.testing.assert_array_equal(x, y)
    moved = [json.loads(RunPaths(r).moved.read_text()) for r in (tmp_path / "plain", run)]
    assert moved[0] == moved[1] and moved[0]["phase"] == 2
