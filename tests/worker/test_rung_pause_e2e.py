"""The real worker in a budgeted sweep: a run paused at its rungs and promoted by resume ends with the
history and ``model.keras`` of the same run trained without a pause; every run's TensorBoard folder holds
its HParams summary and final metrics, read back with TensorBoard's own reader."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.worker.test_train_e2e import model_weights, tiny_preset
from tltui.core import asha, presets, protocol, runstate
from tltui.worker import hparams

pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("train_e2e")]


def test_hparams_of_a_preset_are_flat_typed_and_a_phase_sets_its_own() -> None:
    p = tiny_preset("tfds:mnist", **{"freeze.depth": 1})
    hp = hparams.hparams_of(p)
    assert hp["train.learning_rate"] == 0.01 and hp["data.image_size"] == "16x16" and hp["freeze.depth"] == "1"
    assert "name" not in hp and "model.alpha" not in hp  # unset values are left out
    raw = presets.loads(presets.dumps(p) + '[[phases]]\nname = "a"\n[[phases]]\ntrain.epochs = 3\n', "p.toml")
    assert hparams.hparams_of(raw)["phases.2.train.epochs"] == 3


def _train(run_dir: Path, resume: bool = False) -> protocol.Finished:
    from tltui.worker import train

    train.main([str(run_dir), *(["--resume"] if resume else [])])
    fin = runstate.load(run_dir / "events.jsonl").finished
    assert fin is not None
    return fin


def _hparams_and_final(log_dir: Path) -> tuple[dict, dict[str, tuple[int, float]]]:
    from tensorboard.backend.event_processing import event_accumulator
    from tensorboard.plugins.hparams import metadata
    from tensorboard.util import tensor_util

    acc = event_accumulator.EventAccumulator(str(log_dir), size_guidance={event_accumulator.TENSORS: 0})
    acc.Reload()
    content = acc.PluginTagToContent(metadata.PLUGIN_NAME)[metadata.SESSION_START_INFO_TAG]
    info = metadata.parse_session_start_info_plugin_data(content)
    hp = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in info.hparams.items()}
    final = {
        tag.removeprefix("final/"): (ev.step, float(tensor_util.make_ndarray(ev.tensor_proto)))
        for tag in acc.Tags()["tensors"]
        if tag.startswith("final/")
        for ev in acc.Tensors(tag)[-1:]
    }
    return hp, final


def test_a_run_promoted_past_its_rungs_equals_the_uninterrupted_run(
    tmp_path: Path, shapes: Path, restore_signals
) -> None:
    import numpy as np

    overrides = {"train.epochs": 3, "model.dropout": 0.5}
    plain = tiny_preset(f"folder:{shapes}", **overrides)
    budget = {"min_epochs": 1, "eta": 3}
    swept = presets.from_dict({**plain.to_toml_dict(), "sweep": {"budget": budget}})
    (budgeted,) = presets.expand(swept)
    assert asha.rungs_of(budgeted.preset) == [1]
    a, b = tmp_path / "a", tmp_path / "b"
    for d, p in ((a, plain), (b, budgeted.preset)):
        d.mkdir()
        (d / "preset.toml").write_text(presets.dumps(p))

    assert _train(a).status == "completed"
    fin = _train(b)
    assert (fin.status, fin.reason, fin.epochs_done) == ("paused", "paused at rung 1 (epoch 1)", 1)
    asha.write_passed(b, 1)  # what the runner does when it promotes the run
    fin = _train(b, resume=True)
    assert fin.status == "completed" and fin.epochs_done == 3

    sa, sb = runstate.load(a / "events.jsonl"), runstate.load(b / "events.jsonl")

    def metrics(state: runstate.RunState) -> list[dict]:
        return [{k: v for k, v in h.items() if k not in ("t", "epoch_seconds")} for h in state.history_list()]

    assert metrics(sb) == metrics(sa) and len(metrics(sa)) == 3  # float for float
    assert (sa.finished.model_epoch, sa.finished.model_rule) == (sb.finished.model_epoch, sb.finished.model_rule)
    for x, y in zip(model_weights(a / "model.keras"), model_weights(b / "model.keras"), strict=True):
        np.testing.assert_array_equal(x, y)

    hp, final = _hparams_and_final(a / "tensorboard")
    assert (
        hp["train.learning_rate"] == pytest.approx(0.01)
        and hp["train.epochs"] == 3
        and hp["model.backbone"] == "tiny_cnn"
    )
    kept = sa.finished.model_epoch
    assert final["val_acc"] == (kept, pytest.approx(sa.history[kept]["val_acc"]))
    assert final["loss"] == (kept, pytest.approx(sa.history[kept]["loss"]))
