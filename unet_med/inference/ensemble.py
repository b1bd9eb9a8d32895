"""Fold ensembles: k networks averaged in probability space inside one sliding-window pass.

:class:`FoldEnsemble` is a network: given a window it runs each member and returns the mean of their softmax, so a
sliding-window inferer (:class:`~unet_med.inference.inferer.ScanInferer`) visits the scan once and blends
probabilities, rather than running k passes and averaging k full-size score maps. Its output is probabilities
(``returns_probabilities``), which mirroring TTA and the label step take into account.

A bundle that ships an ensemble of ``k`` members (task field ``inference.ensemble``) holds ``models/model.pt``
(member 0, the model every single-model tool uses: export, verify, federated learning) and
``models/model_fold1.pt`` .. ``models/model_fold{k-1}.pt`` beside it (:func:`member_files`).

Example::

    net = load_ensemble(UNet(3, 1, 3, features=[16, 32, 64, 128]), "bundle/models/model.pt", members=5)
    probs = net(torch.zeros(1, 1, 48, 48, 32))  # (1, 3, 48, 48, 32), sums to 1 over the classes
    net2d = FoldEnsemble([UNet(2, 1, 2), UNet(2, 1, 2)])  # 2D: (N, C, H, W) in, mean softmax out
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from unet_med.engines.checkpoint import load_network

__all__ = ["FoldEnsemble", "load_ensemble", "member_files", "member_name"]


def member_name(index: int) -> str:
    """The file of ensemble member ``index`` in ``models/``: ``model.pt`` for 0, else ``model_fold{index}.pt``."""
    if index < 0:
        raise ValueError(f"member index must be >= 0, got {index}")
    return "model.pt" if index == 0 else f"model_fold{index}.pt"


def member_files(model_file: str | os.PathLike, members: int) -> list[Path]:
    """``model_file`` and the other members' files beside it (see :func:`member_name`)."""
    if members < 1:
        raise ValueError(f"an ensemble needs at least 1 member, got {members}")
    first = Path(model_file)
    return [first] + [first.parent / member_name(i) for i in range(1, members)]


class FoldEnsemble(torch.nn.Module):
    """The mean softmax of several networks with the same input and output: ``(N, C_in, *spatial)`` in,
    ``(N, C, *spatial)`` float32 probabilities out.

    Args:
        networks: the members (each maps its input to logits of the same classes).

    Raises:
        ValueError: no member.
    """

    #: The output is probabilities, not logits (read by :class:`~unet_med.inference.tta.MirrorTTA` and inference).
    returns_probabilities = True

    def __init__(self, networks: Sequence[torch.nn.Module]) -> None:
        super().__init__()
        if not networks:
            raise ValueError("an ensemble needs at least one network")
        self.networks = torch.nn.ModuleList(networks)
        out_channels = getattr(networks[0], "out_channels", None)
        if out_channels is not None:
            self.out_channels = int(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        total: torch.Tensor | None = None
        for network in self.networks:
            probs = torch.softmax(network(x).float(), dim=1)
            total = probs if total is None else total.add_(probs)
        if total is None:  # unreachable: the constructor requires a member
            raise RuntimeError("no member")
        return total.div_(len(self.networks))


def load_ensemble(
    network: torch.nn.Module,
    model_file: str | os.PathLike | Sequence[str | os.PathLike | bytes],
    members: int = 1,
    device: str | torch.device = "cpu",
) -> torch.nn.Module:
    """``network`` with the weights of ``model_file`` (``members == 1``: logits out, as a single model), or a
    :class:`FoldEnsemble` of ``members`` copies of it loaded from :func:`member_files` (probabilities out).

    For bundle configs: ``"network": "$unet_med.inference.load_ensemble(@network_def, @model_file, @ensemble,
    @device)"``.

    Args:
        network: the member architecture (copied for each member).
        model_file: member 0's weights file, or every member's weights (paths or checked bytes) in order.
        members: number of members.
        device: where the networks are placed.

    Raises:
        FileNotFoundError: a member's file is missing.
        ValueError: weights that do not fit the network, or a list whose length is not ``members``.
    """
    if isinstance(model_file, (str, os.PathLike)):
        sources: list[str | os.PathLike | bytes] = list(member_files(model_file, members))
    else:
        sources = list(model_file)
        if len(sources) != members:
            raise ValueError(f"{len(sources)} weight files for an ensemble of {members}")
    if members == 1:
        return load_network(network, sources[0], device)
    nets = [load_network(copy.deepcopy(network), source, device) for source in sources]
    return FoldEnsemble(nets).to(device).eval()
