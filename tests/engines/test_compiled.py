"""A short training run with MONAI's SupervisedTrainer still learns in each layout the template's defaults pick."""

from __future__ import annotations

import time

import pytest
import torch
from monai.engines import SupervisedTrainer
from monai.inferers import SimpleInferer
from monai.losses import DeepSupervisionLoss, DiceCELoss
from monai.metrics import DiceMetric
from monai.networks import one_hot

from unet_med.engines import CompiledInferer
from unet_med.inference import AutocastInferer
from unet_med.networks import UNet

torch.set_num_threads(2)


def _data(n: int = 8, size: int = 16) -> list[dict[str, torch.Tensor]]:
    """Noisy cubes of random position: the label is the cube, the image the cube plus noise."""
    g = torch.Generator().manual_seed(0)
    items = []
    for _ in range(n):
        label = torch.zeros(1, size, size, size)
        a, b, c = (int(v) for v in torch.randint(2, size - 8, (3,), generator=g))
        label[:, a : a + 6, b : b + 6, c : c + 6] = 1
        image = label + 0.3 * torch.randn(label.shape, generator=g)
        items.append({"image": image, "label": label})
    return items


@pytest.mark.parametrize(
    ("compile_", "channels_last", "bf16", "deep_supervision"),
    [(True, True, True, False), (False, False, False, False), (True, True, True, True)],
    ids=[
        "compiled-channels_last-bf16 (task defaults, amp)",
        "eager-fp32 (reference bundle)",
        "compiled-channels_last-bf16-deep_supervision",
    ],
)
def test_short_run_learns(compile_, channels_last, bf16, deep_supervision):
    torch.manual_seed(0)
    data = _data()
    net = UNet(3, 1, 2, features=(8, 16, 32), norm=["instance", {"affine": True}], deep_supervision=deep_supervision)
    loss = DiceCELoss(to_onehot_y=True, softmax=True)
    loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True, drop_last=True)
    # aot_eager traces the step as Inductor would (the norms take their compiled form) without generating code,
    # which takes minutes on 2 shared cores; benchmarks/bench_training.py runs the Inductor path
    step = CompiledInferer(SimpleInferer(), compile_, channels_last=channels_last, backend="aot_eager")
    inferer = AutocastInferer(step, bf16)
    losses: list[float] = []
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=15,
        train_data_loader=loader,
        network=net,
        optimizer=torch.optim.AdamW(net.parameters(), lr=1e-2),
        loss_function=DeepSupervisionLoss(loss) if deep_supervision else loss,
        inferer=inferer,
    )
    if deep_supervision:  # each case's output: full- and half-size logits, both floats after autocast
        outputs = []
        trainer.add_event_handler("ITERATION_COMPLETED", lambda e: outputs.append(e.state.output[0]["pred"]))
    trainer.add_event_handler("ITERATION_COMPLETED", lambda e: losses.append(float(e.state.output[0]["loss"])))
    start = time.perf_counter()
    trainer.run()
    assert time.perf_counter() - start < 60
    assert sum(losses[-4:]) < 0.5 * sum(losses[:4])
    if deep_supervision:
        assert [tuple(p.shape) for p in outputs[-1]] == [(2, 16, 16, 16), (2, 8, 8, 8)]
        assert all(p.dtype == torch.float32 for p in outputs[-1])
    if channels_last:
        assert net.encoder[0][0].conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    net.eval()
    batch = torch.stack([d["image"] for d in data])
    labels = torch.stack([d["label"] for d in data])
    with torch.no_grad():
        pred = net(batch).argmax(1, keepdim=True)
    dice = DiceMetric(include_background=False)(one_hot(pred, 2), one_hot(labels, 2)).mean().item()
    assert dice > 0.5


def test_inputs_become_plain_channels_last_tensors_and_the_network_is_compiled_once():
    from monai.data import MetaTensor

    seen = []
    net = UNet(2, 1, 2, features=(4, 8))
    inner = lambda x, model: seen.append((type(x), x.is_contiguous(memory_format=torch.channels_last), model))  # noqa: E731
    inferer = CompiledInferer(inner, enabled=True, channels_last=True)
    inferer(MetaTensor(torch.rand(2, 1, 8, 8)), net)
    inferer(MetaTensor(torch.rand(2, 1, 8, 8)), net)
    assert seen[0][:2] == (torch.Tensor, True)
    assert seen[0][2] is seen[1][2] and seen[0][2] is not net  # the same compiled wrapper, built once
    assert net.head.weight.is_contiguous(memory_format=torch.channels_last)


def test_without_a_cpp_compiler_training_runs_eagerly(monkeypatch, caplog):
    """Inductor on a CPU needs a C++ compiler, which many hospital workstations lack: the step then runs eagerly."""
    import unet_med.engines.compiled as compiled

    monkeypatch.setattr(compiled.shutil, "which", lambda name: None)
    assert not compiled.can_compile(torch.device("cpu"))
    assert compiled.can_compile(torch.device("cpu"), backend="aot_eager")
    seen = []
    net = UNet(2, 1, 2, features=(4, 8))
    inferer = CompiledInferer(lambda x, model: seen.append(model), enabled=True, channels_last=True)
    with caplog.at_level("WARNING"):
        inferer(torch.rand(2, 1, 8, 8), net)
    assert seen[0] is net and "no C++ compiler" in caplog.text
