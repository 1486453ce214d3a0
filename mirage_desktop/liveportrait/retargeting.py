"""The three small MLPs of ``stitching_retargeting_module.pth``: stitching, lip and eye retargeting.

Each is a Linear-ReLU stack stored as ``mlp.0``, ``mlp.2``, ... (ReLUs at the odd indices, none after the last layer).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence

import torch
from torch import nn

logger = logging.getLogger(__name__)

STITCHING_SIZES = (126, 128, 128, 64, 65)
LIP_SIZES = (65, 128, 128, 64, 63)
EYE_SIZES = (66, 256, 256, 128, 128, 64, 63)


class RetargetingMLP(nn.Module):
    """Linear-ReLU stack with the given layer sizes (input first, output last)."""

    def __init__(self, sizes: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(itertools.pairwise(sizes)):
            if i:
                layers.append(nn.ReLU())
            layers.append(nn.Linear(cin, cout))
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


def stitching_mlp() -> RetargetingMLP:
    """[flatten(x_s), flatten(x_d)] (B, 126) -> delta (B, 65): 63 keypoint offsets then a shared (tx, ty)."""
    return RetargetingMLP(STITCHING_SIZES)


def lip_mlp() -> RetargetingMLP:
    """[flatten(kp), lip ratios (2)] (B, 65) -> keypoint delta (B, 63)."""
    return RetargetingMLP(LIP_SIZES)


def eye_mlp() -> RetargetingMLP:
    """[flatten(kp), eye ratios (3)] (B, 66) -> keypoint delta (B, 63)."""
    return RetargetingMLP(EYE_SIZES)
