"""Spatial building blocks of SimVP: ConvSC blocks, the frame encoder and decoder, DropPath.

The encoder and decoder work on single frames: the caller folds time into the batch,
``(B, T, C, H, W) -> (B*T, C, H, W)``.
"""

from __future__ import annotations

import torch
from torch import nn


def downsampling_pattern(num_blocks: int) -> list[bool]:
    """Which of `num_blocks` encoder blocks use stride 2: [False, True, False, True, ...]."""
    return [i % 2 == 1 for i in range(num_blocks)]


def spatial_reduction(num_blocks: int) -> int:
    """Factor by which an encoder of `num_blocks` ConvSC blocks shrinks height and width."""
    return 2 ** sum(downsampling_pattern(num_blocks))


class ConvSC(nn.Module):
    """Conv2d -> GroupNorm(2) -> SiLU, optionally stride-2 (down) or conv + PixelShuffle(2) (up)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        downsample: bool = False,
        upsample: bool = False,
    ):
        super().__init__()
        if downsample and upsample:
            raise ValueError("ConvSC cannot both downsample and upsample")
        stride = 2 if downsample else 1
        padding = (kernel_size - stride + 1) // 2
        if upsample:
            self.conv = nn.Sequential(
                nn.Conv2d(in_channels, out_channels * 4, kernel_size, padding=padding),
                nn.PixelShuffle(2),
            )
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.norm = nn.GroupNorm(2, out_channels)
        self.act = nn.SiLU()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class FrameEncoder(nn.Module):
    """`num_blocks` ConvSC blocks; returns the latent and the first block's output (the skip)."""

    def __init__(self, in_channels: int, hidden: int, num_blocks: int, kernel_size: int = 3):
        super().__init__()
        pattern = downsampling_pattern(num_blocks)
        self.blocks = nn.ModuleList(
            ConvSC(in_channels if i == 0 else hidden, hidden, kernel_size, downsample=down)
            for i, down in enumerate(pattern)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skip = self.blocks[0](x)
        latent = skip
        for block in self.blocks[1:]:
            latent = block(latent)
        return latent, skip


class FrameDecoder(nn.Module):
    """Mirror of FrameEncoder; the skip is added to the input of the last block, then a 1x1 readout."""

    def __init__(self, hidden: int, out_channels: int, num_blocks: int, kernel_size: int = 3):
        super().__init__()
        pattern = list(reversed(downsampling_pattern(num_blocks)))
        self.blocks = nn.ModuleList(
            ConvSC(hidden, hidden, kernel_size, upsample=up) for up in pattern
        )
        self.readout = nn.Conv2d(hidden, out_channels, 1)

    def forward(self, latent: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        for block in self.blocks[:-1]:
            latent = block(latent)
        return self.readout(self.blocks[-1](latent + skip))


class DropPath(nn.Module):
    """Stochastic depth: drop the whole residual branch per sample with probability `p`."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"
