"""Training-time rebalancing in the loss. Each loss takes (logits [N, C], targets [N]) -> scalar.

    ce                plain cross-entropy
    class-balanced    cross-entropy weighted by the inverse effective number of samples,
                      (1 - beta) / (1 - beta^n_c), weights summing to C (Cui et al., CVPR 2019)
    focal             -(1 - p_t)^gamma log p_t (Lin et al., ICCV 2017)
    logit-adjust      cross-entropy on logits + tau * log(prior) (Menon et al., ICLR 2021)
    balanced-softmax  cross-entropy on logits + log(n_c) (Ren et al., NeurIPS 2020)

The adjustments apply in training only: predictions use the plain logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from defectsynth.errors import DefectsynthError


def _counts(class_counts: list[int]) -> torch.Tensor:
    # A class absent from the training set would give an infinite weight or log(0); count it once.
    return torch.tensor(class_counts, dtype=torch.float32).clamp(min=1)


class WeightedCrossEntropy(nn.Module):
    """Mean over the batch of w[y] * CE: each example's loss scaled by its class weight."""

    def __init__(self, weights: torch.Tensor):
        super().__init__()
        self.register_buffer("weights", weights)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return (self.weights[targets] * F.cross_entropy(logits, targets, reduction="none")).mean()


class FocalLoss(nn.Module):
    def __init__(self, gamma: float = 2.0):
        super().__init__()
        self.gamma = gamma

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_pt = F.log_softmax(logits, dim=1).gather(1, targets[:, None])[:, 0]
        return (-(1 - log_pt.exp()) ** self.gamma * log_pt).mean()


class OffsetCrossEntropy(nn.Module):
    """Cross-entropy on logits + a fixed per-class offset (logit adjustment, balanced softmax)."""

    def __init__(self, offset: torch.Tensor):
        super().__init__()
        self.register_buffer("offset", offset)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits + self.offset.to(logits.dtype), targets)


def class_balanced_weights(class_counts: list[int], beta: float = 0.999) -> torch.Tensor:
    n = _counts(class_counts).double()
    weights = (1 - beta) / (1 - beta ** n)
    return (weights * len(n) / weights.sum()).float()


def make_loss(name: str, class_counts: list[int], **kw) -> nn.Module:
    if name == "ce":
        return nn.CrossEntropyLoss()
    if name == "class-balanced":
        return WeightedCrossEntropy(class_balanced_weights(class_counts, kw.get("beta", 0.999)))
    if name == "focal":
        return FocalLoss(kw.get("gamma", 2.0))
    if name == "logit-adjust":
        counts = _counts(class_counts)
        return OffsetCrossEntropy(kw.get("tau", 1.0) * torch.log(counts / counts.sum()))
    if name == "balanced-softmax":
        return OffsetCrossEntropy(torch.log(_counts(class_counts)))
    raise DefectsynthError(f"--loss {name!r} is unknown; use one of: ce, class-balanced, focal, logit-adjust, "
                           "balanced-softmax")
