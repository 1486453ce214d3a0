"""W, the warping module: a dense-motion hourglass turns two keypoint sets into a 3-D flow, which warps f_s.

Attribute names follow the official checkpoint (``dense_motion_network.hourglass.encoder.down_blocks.0.conv`` ...).
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)

KP_VARIANCE = 0.01


class WarpOutput(NamedTuple):
    out: torch.Tensor  # (B, 256, 64, 64), G's input
    occlusion_map: torch.Tensor  # (B, 1, 64, 64)
    deformation: torch.Tensor  # (B, 16, 64, 64, 3), (x, y, z) sampling coordinates


def coordinate_grid(depth: int, height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """Identity grid (d, h, w, 3) in [-1, 1], last axis (x, y, z), align_corners=True spacing as the official code."""
    x = torch.arange(width, dtype=like.dtype, device=like.device)
    y = torch.arange(height, dtype=like.dtype, device=like.device)
    z = torch.arange(depth, dtype=like.dtype, device=like.device)
    x = 2 * (x / (width - 1)) - 1
    y = 2 * (y / (height - 1)) - 1
    z = 2 * (z / (depth - 1)) - 1
    xx = x.view(1, 1, -1).expand(depth, height, width)
    yy = y.view(1, -1, 1).expand(depth, height, width)
    zz = z.view(-1, 1, 1).expand(depth, height, width)
    return torch.stack([xx, yy, zz], dim=3)


class ConvNormReLU3d(nn.Module):
    """conv3x3x3 -> BatchNorm -> ReLU, with an optional (1, 2, 2) average pool after or nearest upsample before."""

    def __init__(self, in_channels: int, out_channels: int, mode: str = "") -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(out_channels)
        self.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "up":
            x = F.interpolate(x, scale_factor=(1.0, 2.0, 2.0), mode="nearest")
        x = F.relu(self.norm(self.conv(x)))
        if self.mode == "down":
            x = F.avg_pool3d(x, kernel_size=(1, 2, 2))
        return x


class Encoder(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        self.down_blocks = nn.ModuleList(
            ConvNormReLU3d(
                in_features if i == 0 else min(max_features, block_expansion * 2**i),
                min(max_features, block_expansion * 2 ** (i + 1)),
                mode="down",
            )
            for i in range(num_blocks)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = [x]
        for block in self.down_blocks:
            outs.append(block(outs[-1]))
        return outs


class Decoder(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        blocks = []
        for i in reversed(range(num_blocks)):
            cin = (1 if i == num_blocks - 1 else 2) * min(max_features, block_expansion * 2 ** (i + 1))
            blocks.append(ConvNormReLU3d(cin, min(max_features, block_expansion * 2**i), mode="up"))
        self.up_blocks = nn.ModuleList(blocks)
        self.out_filters = block_expansion + in_features
        self.conv = nn.Conv3d(self.out_filters, self.out_filters, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm3d(self.out_filters)

    def forward(self, skips: list[torch.Tensor]) -> torch.Tensor:
        out = skips[-1]
        for i, block in enumerate(self.up_blocks):
            out = torch.cat([block(out), skips[-2 - i]], dim=1)
        return F.relu(self.norm(self.conv(out)))


class Hourglass(nn.Module):
    def __init__(self, block_expansion: int, in_features: int, num_blocks: int, max_features: int) -> None:
        super().__init__()
        self.encoder = Encoder(block_expansion, in_features, num_blocks, max_features)
        self.decoder = Decoder(block_expansion, in_features, num_blocks, max_features)
        self.out_filters = self.decoder.out_filters

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class DenseMotionNetwork(nn.Module):
    """Predicts the deformation (a softmax mix of 22 candidate motions) and the occlusion map."""

    def __init__(
        self,
        block_expansion: int = 32,
        num_blocks: int = 5,
        max_features: int = 1024,
        num_kp: int = 21,
        feature_channel: int = 32,
        reshape_depth: int = 16,
        compress: int = 4,
    ) -> None:
        super().__init__()
        self.num_kp = num_kp
        self.hourglass = Hourglass(block_expansion, (num_kp + 1) * (compress + 1), num_blocks, max_features)
        self.mask = nn.Conv3d(self.hourglass.out_filters, num_kp + 1, kernel_size=7, padding=3)
        self.compress = nn.Conv3d(feature_channel, compress, kernel_size=1)
        self.norm = nn.BatchNorm3d(compress)
        self.occlusion = nn.Conv2d(self.hourglass.out_filters * reshape_depth, 1, kernel_size=7, padding=3)

    def forward(
        self, feature: torch.Tensor, kp_driving: torch.Tensor, kp_source: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, d, h, w = feature.shape
        k = self.num_kp + 1
        feature = F.relu(self.norm(self.compress(feature)))  # (B, 4, d, h, w)
        c = feature.shape[1]

        grid = coordinate_grid(d, h, w, kp_source)  # (d, h, w, 3)
        kd = kp_driving.view(b, self.num_kp, 1, 1, 1, 3)
        ks = kp_source.view(b, self.num_kp, 1, 1, 1, 3)
        # motion k = grid - kp_driving[k] + kp_source[k]; motion 0 is the identity grid
        motions = torch.cat([grid.expand(b, 1, d, h, w, 3), grid - kd + ks], dim=1)  # (B, 22, d, h, w, 3)

        feat_rep = feature.unsqueeze(1).expand(b, k, c, d, h, w).reshape(b * k, c, d, h, w)
        deformed = F.grid_sample(feat_rep, motions.view(b * k, d, h, w, 3), align_corners=False)
        deformed = deformed.view(b, k, c, d, h, w)

        g_driving = torch.exp(-0.5 * ((grid - kd) ** 2).sum(-1) / KP_VARIANCE)
        g_source = torch.exp(-0.5 * ((grid - ks) ** 2).sum(-1) / KP_VARIANCE)
        heat = torch.cat([torch.zeros_like(g_driving[:, :1]), g_driving - g_source], dim=1)  # (B, 22, d, h, w)

        hg_input = torch.cat([heat.unsqueeze(2), deformed], dim=2).view(b, k * (c + 1), d, h, w)
        prediction = self.hourglass(hg_input)  # (B, 142, d, h, w)

        mask = F.softmax(self.mask(prediction), dim=1).unsqueeze(2)  # (B, 22, 1, d, h, w)
        deformation = (motions.permute(0, 1, 5, 2, 3, 4) * mask).sum(dim=1).permute(0, 2, 3, 4, 1)

        occlusion_map = torch.sigmoid(self.occlusion(prediction.reshape(b, -1, h, w)))
        return deformation, occlusion_map


class ConvNormLReLU2d(nn.Module):
    """conv3x3 -> BatchNorm -> LeakyReLU(0.01) (the official SameBlock2d with lrelu)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.norm = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.norm(self.conv(x)), 0.01)


class WarpingModule(nn.Module):
    """(f_s, kp_source, kp_driving) -> :class:`WarpOutput`."""

    def __init__(
        self,
        num_kp: int = 21,
        block_expansion: int = 64,
        max_features: int = 512,
        num_down_blocks: int = 2,
        reshape_channel: int = 32,
        dense_block_expansion: int = 32,
        dense_max_features: int = 1024,
        dense_num_blocks: int = 5,
        reshape_depth: int = 16,
        compress: int = 4,
    ) -> None:
        super().__init__()
        self.dense_motion_network = DenseMotionNetwork(
            block_expansion=dense_block_expansion,
            num_blocks=dense_num_blocks,
            max_features=dense_max_features,
            num_kp=num_kp,
            feature_channel=reshape_channel,
            reshape_depth=reshape_depth,
            compress=compress,
        )
        out_channels = block_expansion * 2**num_down_blocks
        self.third = ConvNormLReLU2d(max_features, out_channels)
        self.fourth = nn.Conv2d(out_channels, out_channels, kernel_size=1)

    def forward(self, feature_3d: torch.Tensor, kp_source: torch.Tensor, kp_driving: torch.Tensor) -> WarpOutput:
        deformation, occlusion_map = self.dense_motion_network(feature_3d, kp_driving, kp_source)
        warped = F.grid_sample(feature_3d, deformation, align_corners=False)
        b, c, d, h, w = warped.shape
        out = self.fourth(self.third(warped.view(b, c * d, h, w)))
        return WarpOutput(out=out * occlusion_map, occlusion_map=occlusion_map, deformation=deformation)
