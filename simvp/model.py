"""The SimVP model: frame encoder -> translator -> frame decoder.

``(B, T, C, H, W) -> (B, T_out, C, H, W)``. Frames are folded into the batch for the encoder and
decoder; the translator sees time stacked into channels, ``(B, T*hid_S, H', W')``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .config import SimVPConfig
from .modules import FrameDecoder, FrameEncoder, spatial_reduction
from .translators import TRANSLATORS


def _frames_to_channels(x: torch.Tensor, batch: int, channels_last: bool) -> torch.Tensor:
    """(B*T, C, H, W) -> (B, T*C, H, W) for the translator, in one copy that keeps the memory format."""
    bt, c, h, w = x.shape
    frames = bt // batch
    if not channels_last:
        return x.reshape(batch, frames * c, h, w)
    out = torch.empty((batch, frames * c, h, w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    # channels_last memory is (B, H, W, T*C); x's is (B*T, H, W, C)
    out.permute(0, 2, 3, 1).view(batch, h, w, frames, c).copy_(x.view(batch, frames, c, h, w).permute(0, 3, 4, 1, 2))
    return out


def _channels_to_frames(x: torch.Tensor, frames: int, channels_last: bool) -> torch.Tensor:
    """(B, T*C, H, W) -> (B*T, C, H, W), the inverse of `_frames_to_channels`."""
    b, tc, h, w = x.shape
    c = tc // frames
    if not channels_last:
        return x.reshape(b * frames, c, h, w)
    out = torch.empty((b * frames, c, h, w), dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
    out.view(b, frames, c, h, w).permute(0, 3, 4, 1, 2).copy_(x.permute(0, 2, 3, 1).view(b, h, w, frames, c))
    return out


class SimVP(nn.Module):
    """SimVP with a selectable translator (``"gsta"``, ``"incepu"``, ``"tau"``).

    ``SimVP(SimVPConfig(in_shape=(12, 1, 32, 64), hid_S=32))`` or, the same,
    ``SimVP(in_shape=(12, 1, 32, 64), hid_S=32)``; keyword fields given with a config replace its
    values. `model.config` is the `SimVPConfig`.
    """

    def __init__(self, config: SimVPConfig | None = None, **fields: Any):
        super().__init__()
        if config is None:
            config = SimVPConfig(**fields)
        elif not isinstance(config, SimVPConfig):
            raise TypeError(f"SimVP takes a SimVPConfig or keyword fields, got {type(config).__name__}")
        elif fields:
            config = dataclasses.replace(config, **fields)
        self.config = config
        frames, channels, _, _ = config.in_shape
        out_frames = config.out_frames or frames
        self.in_frames, self.out_frames, self.channels = frames, out_frames, channels
        self.residual = config.residual
        self.reduction = spatial_reduction(config.N_S)
        # input frame index added to each output frame: the last one, or the same phase of the last `lag` frames
        lag = config.residual_lag
        anchor = (torch.full((out_frames,), frames - 1) if lag is None
                  else frames - lag + torch.arange(out_frames) % lag)
        self.register_buffer("residual_anchor", anchor, persistent=False)
        self.trend_weight = nn.Parameter(torch.zeros(out_frames)) if config.anchor_trend else None

        hid_S = config.hid_S
        self.encoder = FrameEncoder(channels, hid_S, config.N_S, config.spatio_kernel_enc)
        self.translator = TRANSLATORS[config.translator](
            frames * hid_S, config.hid_T, config.N_T, mlp_ratio=config.mlp_ratio, drop=config.drop,
            drop_path=config.drop_path,
        )
        self.decoder = FrameDecoder(hid_S, channels, config.N_S, config.spatio_kernel_dec)
        if config.residual:  # start from the anchor forecast: an untrained model predicts no change
            nn.init.zeros_(self.decoder.readout.weight)
            nn.init.zeros_(self.decoder.readout.bias)
        if out_frames != frames:
            self.latent_projection = nn.Conv2d(frames * hid_S, out_frames * hid_S, 1)
            self.skip_projection = nn.Conv2d(frames * hid_S, out_frames * hid_S, 1)
        else:
            self.latent_projection = nn.Identity()
            self.skip_projection = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, channels, height, width = x.shape
        if (frames, channels) != (self.in_frames, self.channels):
            raise ValueError(
                f"expected input (B, {self.in_frames}, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        anchor = x[:, self.residual_anchor] if self.residual else None
        if self.trend_weight is not None:
            change = x[:, -1] - x[:, -1 - self.config.residual_lag]
            anchor = anchor + self.trend_weight[None, :, None, None, None] * change[:, None]
        x = self._pad(x.reshape(batch * frames, channels, height, width))
        channels_last = self.encoder_weight_is_channels_last()
        if channels_last:  # the model was moved to channels_last: give it its inputs that way too
            x = x.contiguous(memory_format=torch.channels_last)

        latent, skip = self.encoder(x)
        latent = self.translator(_frames_to_channels(latent, batch, channels_last))
        latent = _channels_to_frames(self.latent_projection(latent), self.out_frames, channels_last)
        skip = self.skip_projection(_frames_to_channels(skip, batch, channels_last))
        skip = _channels_to_frames(skip, self.out_frames, channels_last)

        y = self.decoder(latent, skip)[..., :height, :width]
        y = y.reshape(batch, self.out_frames, channels, height, width)
        if self.residual:  # predict the change from an observed frame
            y = y + anchor
        return y

    def encoder_weight_is_channels_last(self) -> bool:
        """Whether the model was moved to channels_last (judged on a weight whose layout is unambiguous)."""
        for weight in self.encoder.parameters():
            if weight.dim() == 4 and weight.shape[1] > 1 and weight.shape[2] * weight.shape[3] > 1:
                return weight.is_contiguous(memory_format=torch.channels_last) and not weight.is_contiguous()
        return False

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Replicate-pad bottom/right so that H and W divide by the downsampling factor."""
        pad_h = -x.shape[-2] % self.reduction
        pad_w = -x.shape[-1] % self.reduction
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return x

    def rollout(self, x: torch.Tensor, steps: int,
                features: Callable[[int, int], torch.Tensor] | None = None) -> torch.Tensor:
        """Predict `steps` frames by feeding the model its own outputs (the last T frames seen).

        With ``out_frames == T`` this is the released autoregressive scheme.
        Gradients flow unless the caller wraps the call in ``torch.no_grad()``.

        `features`: when the last F of the model's C channels are known inputs (time features),
        ``features(k0, k1) -> (B, k1 - k0, F, H, W)`` gives their true values at lead steps
        k0..k1-1; they replace the predicted ones before feeding back, and only the C - F data
        channels are returned. Without it all C channels are returned.
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        context, out, produced, n_data = x, [], 0, self.channels
        while produced < steps:
            y = self(context[:, -self.in_frames:]).to(x.dtype)
            k = y.shape[1]
            if features is not None:
                known = features(produced, produced + k).to(y.dtype)
                n_data = self.channels - known.shape[2]
                if known.shape[:2] != y.shape[:2] or not 0 < n_data < self.channels:
                    raise ValueError(f"features({produced}, {produced + k}) gave {tuple(known.shape)}; expected "
                                     f"(B, {k}, F, H, W) with 0 < F < {self.channels} channels")
                y = torch.cat([y[:, :, :n_data], known], dim=2)
            out.append(y[:, :, :n_data])
            context = torch.cat([context[:, -self.in_frames:], y], dim=1)
            produced += k
        return torch.cat(out, dim=1)[:, :steps]


def training_memory(config: SimVPConfig, batch_size: int) -> tuple[int, int]:
    """(parameters, bytes) that training this model with batches of `batch_size` needs, estimated without
    allocating anything: the model is built and run once on torch's meta device. The bytes count four fp32
    copies of the weights (weights, gradients, Adam's two moments) and every module's output of a forward pass
    (what autograd keeps for the backward pass)."""
    outputs = []

    def count(module, inputs, output):
        if torch.is_tensor(output):
            outputs.append(output.numel() * 4)

    with torch.device("meta"):
        try:
            model = SimVP(config)
        except RuntimeError as e:  # a weight of more elements than a tensor can index: beyond any machine
            if "overflow" not in str(e):
                raise
            return 2**63 - 1, 2**63 - 1
        hooks = [m.register_forward_hook(count) for m in model.modules() if not list(m.children())]
        try:
            model(torch.empty(batch_size, *config.in_shape))
        finally:
            for h in hooks:
                h.remove()
    params = sum(p.numel() for p in model.parameters())
    return params, 16 * params + sum(outputs)
