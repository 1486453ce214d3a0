"""G, the SPADE generator: decodes W's warped feature (B, 256, 64, 64) into the (B, 3, 512, 512) image.

The residual blocks' convs were trained with classic spectral norm. The checkpoint stores ``weight_orig``,
``weight_u`` and ``weight_v`` (no ``weight``); in eval mode the effective weight is ``weight_orig / (u . W v)``.
We compute it once after loading (:meth:`SpectralConv2d.refresh`) instead of on every call.
"""

from __future__ import annotations

import logging

import torch
from torch import nn
from torch.nn import functional as F

logger = logging.getLogger(__name__)

SPADE_HIDDEN = 128
LRELU_SLOPE = 0.2


class SpectralConv2d(nn.Module):
    """A Conv2d whose weight is ``weight_orig / sigma``, sigma from the stored power-iteration vectors."""

    weight_u: torch.Tensor
    weight_v: torch.Tensor
    weight: torch.Tensor

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True) -> None:
        super().__init__()
        self.padding = kernel_size // 2
        self.weight_orig = nn.Parameter(torch.empty(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.register_buffer("weight_u", torch.empty(out_channels))
        self.register_buffer("weight_v", torch.empty(in_channels * kernel_size * kernel_size))
        # derived, not stored: recomputed by refresh() after every load
        self.register_buffer("weight", torch.empty_like(self.weight_orig), persistent=False)

    @torch.no_grad()
    def refresh(self) -> None:
        """Eval-mode spectral norm: sigma = u . (W_mat v), with u, v exactly as stored (no power iteration)."""
        w_mat = self.weight_orig.reshape(self.weight_orig.shape[0], -1)
        sigma = torch.dot(self.weight_u, torch.mv(w_mat, self.weight_v))
        self.weight = self.weight_orig / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight, self.bias, padding=self.padding)


class SPADE(nn.Module):
    """InstanceNorm(x) * (1 + gamma(seg)) + beta(seg), seg resized to x by nearest."""

    def __init__(self, norm_channels: int, label_channels: int) -> None:
        super().__init__()
        self.mlp_shared = nn.Sequential(nn.Conv2d(label_channels, SPADE_HIDDEN, kernel_size=3, padding=1), nn.ReLU())
        self.mlp_gamma = nn.Conv2d(SPADE_HIDDEN, norm_channels, kernel_size=3, padding=1)
        self.mlp_beta = nn.Conv2d(SPADE_HIDDEN, norm_channels, kernel_size=3, padding=1)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        normalized = F.instance_norm(x, eps=1e-5)
        actv = self.mlp_shared(seg)
        return normalized * (1 + self.mlp_gamma(actv)) + self.mlp_beta(actv)


class SPADEResBlock(nn.Module):
    """x_s + conv1(lrelu(SPADE1(conv0(lrelu(SPADE0(x)))))), with a learned 1x1 shortcut when channels change."""

    def __init__(self, fin: int, fout: int, label_channels: int) -> None:
        super().__init__()
        fmiddle = min(fin, fout)
        self.learned_shortcut = fin != fout
        self.conv_0 = SpectralConv2d(fin, fmiddle, 3)
        self.conv_1 = SpectralConv2d(fmiddle, fout, 3)
        self.norm_0 = SPADE(fin, label_channels)
        self.norm_1 = SPADE(fmiddle, label_channels)
        if self.learned_shortcut:
            self.conv_s = SpectralConv2d(fin, fout, 1, bias=False)
            self.norm_s = SPADE(fin, label_channels)

    def forward(self, x: torch.Tensor, seg: torch.Tensor) -> torch.Tensor:
        x_s = self.conv_s(self.norm_s(x, seg)) if self.learned_shortcut else x
        dx = self.conv_0(F.leaky_relu(self.norm_0(x, seg), LRELU_SLOPE))
        dx = self.conv_1(F.leaky_relu(self.norm_1(dx, seg), LRELU_SLOPE))
        return x_s + dx


class SPADEGenerator(nn.Module):
    """(B, 256, 64, 64) -> (B, 3, 512, 512) in [0, 1]."""

    def __init__(self, label_channels: int = 256, out_channels: int = 64, num_middle: int = 6) -> None:
        super().__init__()
        hidden = 2 * label_channels
        self.fc = nn.Conv2d(label_channels, hidden, kernel_size=3, padding=1)
        for i in range(num_middle):
            self.add_module(f"G_middle_{i}", SPADEResBlock(hidden, hidden, label_channels))
        self.num_middle = num_middle
        self.up_0 = SPADEResBlock(hidden, label_channels, label_channels)
        self.up_1 = SPADEResBlock(label_channels, out_channels, label_channels)
        self.conv_img = nn.Sequential(nn.Conv2d(out_channels, 3 * 4, kernel_size=3, padding=1), nn.PixelShuffle(2))

    def refresh(self) -> None:
        """Recompute the spectral-normalised weights; call after loading a state dict or moving devices."""
        for module in self.modules():
            if isinstance(module, SpectralConv2d):
                module.refresh()

    def forward(self, feature: torch.Tensor) -> torch.Tensor:
        seg = feature
        x = self.fc(feature)
        for i in range(self.num_middle):
            x = getattr(self, f"G_middle_{i}")(x, seg)
        # nearest x2 of seg equals the SPADE's own resize to x's size; do it once per scale
        seg_128 = F.interpolate(seg, scale_factor=2.0, mode="nearest")
        x = self.up_0(F.interpolate(x, scale_factor=2.0, mode="nearest"), seg_128)
        seg_256 = F.interpolate(seg_128, scale_factor=2.0, mode="nearest")
        x = self.up_1(F.interpolate(x, scale_factor=2.0, mode="nearest"), seg_256)
        x = self.conv_img(F.leaky_relu(x, LRELU_SLOPE))
        return torch.sigmoid(x)
