"""M, the motion extractor: a ConvNeXt-V2 tiny backbone with seven linear heads (keypoints, pose bins, t, exp, scale).

Keys live under ``detector.`` exactly as in the official checkpoint.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)

DEPTHS = (3, 3, 9, 3)
DIMS = (96, 192, 384, 768)
LN_EPS = 1e-6
GRN_EPS = 1e-6
NUM_BINS = 66


class RawMotion(NamedTuple):
    """The heads' raw outputs for a batch: pose-bin logits (B, 66), t (B, 3), exp (B, 63), scale (B, 1), kp (B, 63)."""

    pitch: torch.Tensor
    yaw: torch.Tensor
    roll: torch.Tensor
    t: torch.Tensor
    exp: torch.Tensor
    scale: torch.Tensor
    kp: torch.Tensor


class ChannelsFirstLayerNorm(nn.Module):
    """LayerNorm over the channel axis of an NCHW tensor, written out (biased variance) as ConvNeXt does."""

    def __init__(self, channels: int, eps: float = LN_EPS) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(1, keepdim=True)
        var = (x - mean).pow(2).mean(1, keepdim=True)
        x = (x - mean) / torch.sqrt(var + self.eps)
        return self.weight[:, None, None] * x + self.bias[:, None, None]


class GRN(nn.Module):
    """Global response normalisation on an NHWC tensor (ConvNeXt-V2)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, channels))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = torch.norm(x, p=2, dim=(1, 2), keepdim=True)
        n = g / (g.mean(dim=-1, keepdim=True) + GRN_EPS)
        return self.gamma * (x * n) + self.beta + x


class ConvNeXtBlock(nn.Module):
    """x + pw2(GRN(GELU(pw1(LN(dwconv7x7(x)))))), the pointwise part in NHWC."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=LN_EPS)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.grn = GRN(4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.grn(F.gelu(self.pwconv1(self.norm(y)))))
        return x + y.permute(0, 3, 1, 2)


class ConvNeXtV2Detector(nn.Module):
    """The backbone and heads; the official checkpoint stores them under ``detector.``."""

    def __init__(self, num_kp: int = 21, in_chans: int = 3) -> None:
        super().__init__()
        self.downsample_layers = nn.ModuleList(
            [nn.Sequential(nn.Conv2d(in_chans, DIMS[0], kernel_size=4, stride=4), ChannelsFirstLayerNorm(DIMS[0]))]
        )
        for i in range(3):
            self.downsample_layers.append(
                nn.Sequential(ChannelsFirstLayerNorm(DIMS[i]), nn.Conv2d(DIMS[i], DIMS[i + 1], kernel_size=2, stride=2))
            )
        self.stages = nn.ModuleList(nn.Sequential(*(ConvNeXtBlock(d) for _ in range(n))) for d, n in zip(DIMS, DEPTHS))
        self.norm = nn.LayerNorm(DIMS[-1], eps=LN_EPS)
        dim = DIMS[-1]
        self.fc_kp = nn.Linear(dim, 3 * num_kp)
        self.fc_scale = nn.Linear(dim, 1)
        self.fc_pitch = nn.Linear(dim, NUM_BINS)
        self.fc_yaw = nn.Linear(dim, NUM_BINS)
        self.fc_roll = nn.Linear(dim, NUM_BINS)
        self.fc_t = nn.Linear(dim, 3)
        self.fc_exp = nn.Linear(dim, 3 * num_kp)

    def forward(self, x: torch.Tensor) -> RawMotion:
        for down, stage in zip(self.downsample_layers, self.stages):
            x = stage(down(x))
        feat = self.norm(x.mean((-2, -1)))
        return RawMotion(
            pitch=self.fc_pitch(feat),
            yaw=self.fc_yaw(feat),
            roll=self.fc_roll(feat),
            t=self.fc_t(feat),
            exp=self.fc_exp(feat),
            scale=self.fc_scale(feat),
            kp=self.fc_kp(feat),
        )


class MotionExtractor(nn.Module):
    """(B, 3, 256, 256) RGB in [0, 1] -> :class:`RawMotion`."""

    def __init__(self, num_kp: int = 21) -> None:
        super().__init__()
        self.detector = ConvNeXtV2Detector(num_kp=num_kp)

    def forward(self, image: torch.Tensor) -> RawMotion:
        return self.detector(image)
