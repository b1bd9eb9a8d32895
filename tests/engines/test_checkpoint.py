"""Weights-only loading and the atomic, resumable checkpoint handlers."""

from __future__ import annotations

import logging
import pickle

import pytest
import torch
from ignite.engine import Engine, Events
from monai.handlers import StatsHandler

from unet_med.engines import (
    CheckpointMismatchError,
    CheckpointMissingError,
    FinalModelSaver,
    ResumableCheckpoint,
    halve_weights,
    load_network,
    load_state_dict,
)
from unet_med.networks import UNet


def test_pickle_payload_is_refused_and_nothing_runs(tmp_path):
    canary = tmp_path / "canary"
    path = tmp_path / "evil.pt"

    class Payload:
        def __reduce__(self):
            return (open, (str(canary), "w"))

    with open(path, "wb") as f:
        pickle.dump({"model": Payload()}, f)
    with pytest.raises(ValueError, match="not a weights-only checkpoint"):
        load_state_dict(path)
    assert not canary.exists()


def test_truncated_and_missing_files(tmp_path):
    net = UNet(3, 1, 2, features=(4, 8))
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"model\.pt"):
        load_state_dict(path)
    with pytest.raises(FileNotFoundError, match=r"absent\.pt"):
        load_state_dict(tmp_path / "absent.pt")


def test_load_network_accepts_state_dict_or_checkpoint_and_rejects_mismatch(tmp_path):
    net = UNet(3, 1, 2, features=(4, 8))
    torch.save(net.state_dict(), tmp_path / "a.pt")
    torch.save({"model": net.state_dict(), "epoch": torch.tensor(3)}, tmp_path / "b.pt")
    for name in ("a.pt", "b.pt"):
        loaded = load_network(UNet(3, 1, 2, features=(4, 8)), tmp_path / name)
        assert not loaded.training
        torch.testing.assert_close(loaded.head.weight, net.head.weight)
    with pytest.raises(ValueError, match="do not fit"):
        load_network(UNet(3, 1, 3, features=(4, 8)), tmp_path / "a.pt")


def test_halve_weights_halves_the_file_and_loads_into_float32(tmp_path):
    torch.manual_seed(0)
    net = UNet(2, 1, 2, features=(16, 32, 64))
    full = tmp_path / "model.pt"
    torch.save(net.state_dict(), full)
    half = halve_weights(full, tmp_path / "half.pt")
    assert half.stat().st_size < 0.6 * full.stat().st_size
    assert all(v.dtype == torch.float16 for v in load_state_dict(half).values() if v.is_floating_point())
    loaded = load_network(UNet(2, 1, 2, features=(16, 32, 64)), half, "cpu")
    assert next(loaded.parameters()).dtype == torch.float32
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net.eval()(x), atol=2e-2, rtol=2e-2)
    torch.save({"w": torch.tensor([1e6])}, tmp_path / "big.pt")
    with pytest.raises(ValueError, match="float16 range"):
        halve_weights(tmp_path / "big.pt")


def _engines(tmp_path, interrupt_at=None, in_validation=False, **checkpoint):
    """A toy trainer (3 iterations an epoch) that validates each epoch, with MONAI's StatsHandler on both engines
    as in the bundles; a KeyboardInterrupt is raised in epoch ``interrupt_at`` (in training or in validation)."""
    net = torch.nn.Linear(2, 2)

    def step(engine, _):
        if engine.state.epoch == interrupt_at and not in_validation:
            raise KeyboardInterrupt
        return 0.0

    def evaluate(engine, _):
        if trainer.state.epoch == interrupt_at and in_validation:
            raise KeyboardInterrupt

    trainer, evaluator = Engine(step), Engine(evaluate)
    evaluator.state.best_metric, evaluator.state.best_metric_epoch = -1.0, -1
    StatsHandler(iteration_log=False).attach(evaluator)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: evaluator.run([0]))
    handler = ResumableCheckpoint(tmp_path, {"model": net}, evaluator=evaluator, **checkpoint)
    handler.attach(trainer)
    StatsHandler(iteration_log=False).attach(trainer)
    return trainer, evaluator, net


@pytest.mark.parametrize("in_validation", [False, True])
def test_ctrl_c_is_one_line_saying_after_which_epoch_to_resume(tmp_path, caplog, in_validation):
    trainer, _, _ = _engines(tmp_path, interrupt_at=3, in_validation=in_validation)
    with caplog.at_level(logging.INFO), pytest.raises(KeyboardInterrupt) as err:
        trainer.run([0, 1, 2], max_epochs=5)
    assert str(err.value).startswith(f"stopped after epoch 2 ({tmp_path / 'last.pt'}); resume with: ")
    assert str(err.value).endswith("--resume true")
    assert not [r for r in caplog.records if r.exc_info or "exception" in r.getMessage().lower()], caplog.text


def test_resume_refuses_a_checkpoint_of_other_data(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("a", "b", "c"):
        (data / f"{name}.nii.gz").write_bytes(name.encode() * 10)
    first = {"training": [{"image": str(data / "a.nii.gz")}], "validation": [{"image": str(data / "b.nii.gz")}]}
    other = {**first, "training": [{"image": str(data / "c.nii.gz")}, {"image": str(data / "a.nii.gz")}]}
    trainer, _, _ = _engines(tmp_path, datalist=first, task={"modality": "mri"})
    trainer.run([0, 1, 2], max_epochs=1)
    assert load_state_dict(tmp_path / "last.pt")["trained_on"]["training_cases"] == 1
    _engines(tmp_path, resume=True, datalist=first, task={"modality": "mri"})  # the same data: fine
    with pytest.raises(CheckpointMismatchError, match="other data"):
        _engines(tmp_path, resume=True, datalist=other, task={"modality": "mri"})
    with pytest.raises(CheckpointMismatchError, match="another task"):
        _engines(tmp_path, resume=True, datalist=first, task={"modality": "ct"})
    with pytest.raises(CheckpointMissingError, match="nothing to resume"):
        _engines(tmp_path / "elsewhere", resume=True, datalist=first)


@pytest.mark.parametrize("validated", [False, True])
def test_final_weights_are_saved_only_when_no_validation_chose_a_model(tmp_path, validated):
    net = torch.nn.Linear(2, 2)
    evaluator = Engine(lambda e, b: None)
    evaluator.state.best_metric_epoch = 1 if validated else -1
    trainer = Engine(lambda e, b: None)
    FinalModelSaver(tmp_path, net, evaluator=evaluator).attach(trainer)
    trainer.run([0], max_epochs=2)
    assert (tmp_path / "model.pt").is_file() != validated
    if not validated:
        torch.testing.assert_close(load_state_dict(tmp_path / "model.pt")["weight"], net.weight.detach())
