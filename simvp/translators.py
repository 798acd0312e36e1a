"""SimVP translators: the temporal modules between encoder and decoder.

Every translator maps ``(B, T*hid_S, H', W') -> (B, T*hid_S, H', W')`` and is built as
``cls(channels, hidden, depth, mlp_ratio=..., drop=..., drop_path=...)``; see `TRANSLATORS`.

- ``incepu``: Inception-UNet of SimVP (CVPR 2022).
- ``gsta``: gated spatiotemporal attention of SimVP v2 (the journal version).
- ``tau``: temporal attention unit (TAU, CVPR 2023), with `differential_divergence_loss`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import TRANSLATOR_NAMES
from .modules import DropPath

# --------------------------------------------------------------------------------------------
# IncepU (SimVP v1)
# --------------------------------------------------------------------------------------------


class GroupConvNormAct(nn.Module):
    """Grouped conv -> GroupNorm(groups) -> LeakyReLU(0.2). One branch of an Inception block."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, groups: int):
        super().__init__()
        if in_channels % groups != 0:  # as released: fall back to a dense conv
            groups = 1
        self.conv = nn.Conv2d(
            in_channels, out_channels, kernel_size, padding=kernel_size // 2, groups=groups
        )
        self.norm = nn.GroupNorm(groups, out_channels)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


class InceptionBlock(nn.Module):
    """1x1 bottleneck, then the sum of grouped conv branches with kernels 3, 5, 7, 11."""

    def __init__(
        self,
        in_channels: int,
        bottleneck: int,
        out_channels: int,
        kernels: tuple[int, ...] = (3, 5, 7, 11),
        groups: int = 8,
    ):
        super().__init__()
        self.bottleneck = nn.Conv2d(in_channels, bottleneck, 1)
        self.branches = nn.ModuleList(
            GroupConvNormAct(bottleneck, out_channels, k, groups) for k in kernels
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bottleneck(x)
        y = self.branches[0](x)
        for branch in self.branches[1:]:
            y = y + branch(x)
        return y


class IncepU(nn.Module):
    """`depth` encoder and `depth` decoder Inception blocks with concatenation skips (UNet)."""

    def __init__(
        self,
        channels: int,
        hidden: int,
        depth: int,
        *,
        kernels: tuple[int, ...] = (3, 5, 7, 11),
        groups: int = 8,
        **_unused,  # mlp_ratio, drop, drop_path: not part of this translator
    ):
        super().__init__()
        if depth < 2:
            raise ValueError(f"IncepU needs depth >= 2, got {depth}")
        mid = hidden // 2

        def block(c_in: int, c_out: int) -> InceptionBlock:
            return InceptionBlock(c_in, mid, c_out, kernels, groups)

        self.down = nn.ModuleList(
            [block(channels, hidden)] + [block(hidden, hidden) for _ in range(depth - 1)]
        )
        self.up = nn.ModuleList(
            [block(hidden, hidden)]
            + [block(2 * hidden, hidden) for _ in range(depth - 2)]
            + [block(2 * hidden, channels)]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        skips.pop()  # the deepest output feeds the decoder directly
        x = self.up[0](x)
        for block in self.up[1:]:
            x = block(torch.cat([x, skips.pop()], dim=1))
        return x


# --------------------------------------------------------------------------------------------
# gSTA and TAU (MetaFormer-style blocks)
# --------------------------------------------------------------------------------------------


def large_kernel_sizes(kernel_size: int = 21, dilation: int = 3) -> tuple[int, int]:
    """Decompose a large kernel into (depthwise kernel, dilated depthwise kernel): 21 -> (5, 7)."""
    local = 2 * dilation - 1
    dilated = kernel_size // dilation + ((kernel_size // dilation) % 2 - 1)
    return local, dilated


class LargeKernelConv(nn.Sequential):
    """Depthwise k x k conv, then depthwise dilated conv: a large receptive field, cheaply."""

    def __init__(self, dim: int, kernel_size: int = 21, dilation: int = 3):
        local, dilated = large_kernel_sizes(kernel_size, dilation)
        super().__init__(
            nn.Conv2d(dim, dim, local, padding=local // 2, groups=dim),
            nn.Conv2d(
                dim, dim, dilated, padding=dilation * (dilated - 1) // 2, groups=dim,
                dilation=dilation,
            ),
        )


class GatedSpatialAttention(nn.Module):
    """gSTA gate: large-kernel conv -> 1x1 to 2*dim -> sigmoid(g) * f."""

    def __init__(self, dim: int, kernel_size: int = 21):
        super().__init__()
        self.spatial = LargeKernelConv(dim, kernel_size)
        self.to_value_and_gate = nn.Conv2d(dim, 2 * dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.to_value_and_gate(self.spatial(x)).chunk(2, dim=1)
        return torch.sigmoid(gate) * value


class TemporalAttentionGate(nn.Module):
    """TAU gate: (large-kernel conv -> 1x1) * squeeze-excitation(x) * x.

    The squeeze-excitation width is ``dim // max(dim // reduction, 4)``, as in the released code.
    """

    def __init__(self, dim: int, kernel_size: int = 21, reduction: int = 16):
        super().__init__()
        self.spatial = LargeKernelConv(dim, kernel_size)
        self.proj = nn.Conv2d(dim, dim, 1)
        squeezed = dim // max(dim // reduction, 4)
        self.excite = nn.Sequential(
            nn.Linear(dim, squeezed, bias=False),
            nn.ReLU(),
            nn.Linear(squeezed, dim, bias=False),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        statical = self.proj(self.spatial(x))
        dynamical = self.excite(x.mean(dim=(2, 3)))[:, :, None, None]
        return dynamical * statical * x


class AttentionBranch(nn.Module):
    """1x1 conv -> GELU -> gate -> 1x1 conv, plus the branch input (the attention shortcut)."""

    def __init__(self, dim: int, gate: nn.Module):
        super().__init__()
        self.proj_in = nn.Conv2d(dim, dim, 1)
        self.act = nn.GELU()
        self.gate = gate
        self.proj_out = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.proj_out(self.gate(self.act(self.proj_in(x))))


class ConvMlp(nn.Module):
    """1x1 conv (expand) -> depthwise 3x3 -> GELU -> 1x1 conv (project), with dropout."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0):
        super().__init__()
        self.expand = nn.Conv2d(dim, hidden, 1)
        self.depthwise = nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden)
        self.act = nn.GELU()
        self.project = nn.Conv2d(hidden, dim, 1)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.depthwise(self.expand(x))))
        return self.drop(self.project(x))


class MetaBlock(nn.Module):
    """Pre-norm (BatchNorm) residual block: x + s1*attn(bn(x)), then x + s2*mlp(bn(x))."""

    def __init__(
        self,
        dim: int,
        gate: nn.Module,
        mlp_ratio: float = 8.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        layer_scale_init: float = 1e-2,
        he_init_attention: bool = True,
    ):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = AttentionBranch(dim, gate)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), drop)
        self.scale1 = nn.Parameter(torch.full((dim, 1, 1), layer_scale_init))
        self.scale2 = nn.Parameter(torch.full((dim, 1, 1), layer_scale_init))
        self.drop_path = DropPath(drop_path)
        # He init on fan-out, as released. The released TAU block swaps in its attention after
        # this init, so there the attention keeps PyTorch's default init.
        for part in (self.attn, self.mlp) if he_init_attention else (self.mlp,):
            for m in part.modules():
                if isinstance(m, nn.Conv2d):
                    fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
                    nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.scale1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.scale2 * self.mlp(self.norm2(x)))


class ResizingBlock(nn.Module):
    """A MetaBlock at `in_dim`, followed by a 1x1 conv to `out_dim` when they differ."""

    def __init__(self, in_dim: int, out_dim: int, make_gate, **block_kwargs):
        super().__init__()
        self.block = MetaBlock(in_dim, make_gate(in_dim), **block_kwargs)
        self.resize = nn.Conv2d(in_dim, out_dim, 1) if in_dim != out_dim else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.resize(self.block(x))


def drop_path_schedule(drop_path: float, depth: int) -> list[float]:
    """Per-block stochastic depth rates, as in the released SimVP v2 / TAU code.

    The rates run linearly from 0.01 to `drop_path` over blocks 0..depth-2, and the last block uses
    `drop_path`. Note the released quirk: with ``drop_path=0`` the first blocks still get small
    positive rates (0.01 falling to 0). Kept so that training matches the published setup.
    """
    start = 1e-2
    step = (drop_path - start) / (depth - 1)
    return [start + i * step for i in range(depth - 1)] + [drop_path]


class MetaTranslator(nn.Module):
    """`depth` MetaBlocks: first at `channels` then 1x1 to `hidden`, middle at `hidden`, last at
    `hidden` then 1x1 back to `channels`."""

    gate_class: type[nn.Module]
    he_init_attention: bool = True

    def __init__(
        self,
        channels: int,
        hidden: int,
        depth: int,
        *,
        mlp_ratio: float = 8.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        kernel_size: int = 21,
    ):
        super().__init__()
        if depth < 2:
            raise ValueError(f"{type(self).__name__} needs depth >= 2, got {depth}")
        dims = [channels] + [hidden] * (depth - 1) + [channels]
        rates = drop_path_schedule(drop_path, depth)

        def make_gate(dim: int) -> nn.Module:
            return self.gate_class(dim, kernel_size)

        self.blocks = nn.Sequential(
            *(
                ResizingBlock(
                    dims[i], dims[i + 1], make_gate,
                    mlp_ratio=mlp_ratio, drop=drop, drop_path=rates[i],
                    he_init_attention=self.he_init_attention,
                )
                for i in range(depth)
            )
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


class GSTA(MetaTranslator):
    """Gated spatiotemporal attention translator (SimVP v2)."""

    gate_class = GatedSpatialAttention


class TAU(MetaTranslator):
    """Temporal attention unit translator (TAU). Train with `differential_divergence_loss`."""

    gate_class = TemporalAttentionGate
    he_init_attention = False


def differential_divergence_loss(
    pred: torch.Tensor, target: torch.Tensor, tau: float = 0.1, eps: float = 1e-12
) -> torch.Tensor:
    """TAU's differential divergence regularization: KL between softmax(frame differences / tau)
    of prediction and target, averaged over elements. Inputs are ``(B, T, ...)``; zero if T <= 2.

    The TAU paper trains with ``mse + alpha * differential_divergence_loss`` (alpha = 0.1).
    """
    batch, frames = pred.shape[:2]
    if frames <= 2:
        return pred.new_zeros(())
    pred_gap = (pred[:, 1:] - pred[:, :-1]).reshape(batch, frames - 1, -1)
    target_gap = (target[:, 1:] - target[:, :-1]).reshape(batch, frames - 1, -1)
    p = F.softmax(pred_gap / tau, dim=-1)
    q = F.softmax(target_gap / tau, dim=-1)
    return (p * torch.log(p / (q + eps) + eps)).mean()


TRANSLATORS: dict[str, type[nn.Module]] = {
    "incepu": IncepU,
    "gsta": GSTA,
    "tau": TAU,
}
if set(TRANSLATORS) != set(TRANSLATOR_NAMES):
    raise ImportError(f"simvp.config.TRANSLATOR_NAMES {TRANSLATOR_NAMES} do not match TRANSLATORS {sorted(TRANSLATORS)}")
