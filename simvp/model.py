"""The SimVP model: frame encoder -> translator -> frame decoder.

``(B, T, C, H, W) -> (B, T_out, C, H, W)``. Frames are folded into the batch for the encoder and
decoder; the translator sees time stacked into channels, ``(B, T*hid_S, H', W')``.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .modules import FrameDecoder, FrameEncoder, spatial_reduction
from .translators import TRANSLATORS


class SimVP(nn.Module):
    """SimVP with a selectable translator (``"gsta"``, ``"incepu"``, ``"tau"``).

    Args mirror OpenSTL's ``SimVP_Model``:
        in_shape: ``(T, C, H, W)`` of the input. H and W only document the training grid: any grid
            works, it is padded to a multiple of the downsampling factor inside and cropped back.
        hid_S, N_S: width and number of ConvSC blocks of the frame encoder/decoder.
        hid_T, N_T: width and depth of the translator.
        translator: a key of `TRANSLATORS`.
        out_frames: frames predicted per call (default T). When it differs from T, learned 1x1
            convolutions map the stacked latent and the skip from T to `out_frames` frames.
        mlp_ratio, drop, drop_path: MetaBlock settings (gsta, tau); unused by incepu.
        spatio_kernel_enc, spatio_kernel_dec: kernel size of the encoder/decoder convolutions.
        residual: add an observed frame to every output frame, so the network predicts changes
            (not in the released SimVP; off by default; helps on short records, see the catalog).
        residual_lag: which frame `residual` adds: None for the last input frame (persistence), or
            a lag L for the frame L steps before each target, e.g. 24 for the same hour one day
            earlier in hourly data. Needs ``out_frames <= L <= T`` so that it is always an input.

    `model.config` is the plain dict of these arguments: ``SimVP(**model.config)`` rebuilds it.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        hid_S: int = 16,
        hid_T: int = 256,
        N_S: int = 4,
        N_T: int = 4,
        translator: str = "gsta",
        out_frames: int | None = None,
        mlp_ratio: float = 8.0,
        drop: float = 0.0,
        drop_path: float = 0.0,
        spatio_kernel_enc: int = 3,
        spatio_kernel_dec: int = 3,
        residual: bool = False,
        residual_lag: int | None = None,
    ):
        super().__init__()
        frames, channels, height, width = (int(v) for v in in_shape)
        translator = translator.lower()
        if translator not in TRANSLATORS:
            raise ValueError(f"unknown translator {translator!r}; expected one of {sorted(TRANSLATORS)}")
        out_frames = frames if out_frames is None else int(out_frames)
        if residual_lag is not None:
            residual_lag = int(residual_lag)
            if not residual:
                raise ValueError("residual_lag is set but residual is off: set residual=True to use it")
            if not out_frames <= residual_lag <= frames:
                raise ValueError(
                    f"residual_lag {residual_lag} must lie between the output frames ({out_frames}) and "
                    f"the input frames ({frames}) so that the lagged frame is always an input"
                )
        self._config: dict[str, Any] = dict(
            in_shape=[frames, channels, height, width], hid_S=hid_S, hid_T=hid_T, N_S=N_S,
            N_T=N_T, translator=translator, out_frames=out_frames, mlp_ratio=mlp_ratio,
            drop=drop, drop_path=drop_path, spatio_kernel_enc=spatio_kernel_enc,
            spatio_kernel_dec=spatio_kernel_dec, residual=residual, residual_lag=residual_lag,
        )
        self.residual = residual
        # input frame index added to each output frame: the last one, or the one `residual_lag` before it
        if residual_lag is None:
            anchor = torch.full((out_frames,), frames - 1)
        else:
            anchor = torch.arange(frames - residual_lag, frames - residual_lag + out_frames)
        self.register_buffer("residual_anchor", anchor, persistent=False)
        self.in_frames, self.out_frames, self.channels = frames, out_frames, channels
        self.reduction = spatial_reduction(N_S)

        self.encoder = FrameEncoder(channels, hid_S, N_S, spatio_kernel_enc)
        self.translator = TRANSLATORS[translator](
            frames * hid_S, hid_T, N_T, mlp_ratio=mlp_ratio, drop=drop, drop_path=drop_path
        )
        self.decoder = FrameDecoder(hid_S, channels, N_S, spatio_kernel_dec)
        if residual:  # start from the anchor forecast: an untrained model predicts no change
            nn.init.zeros_(self.decoder.readout.weight)
            nn.init.zeros_(self.decoder.readout.bias)
        if out_frames != frames:
            self.latent_projection = nn.Conv2d(frames * hid_S, out_frames * hid_S, 1)
            self.skip_projection = nn.Conv2d(frames * hid_S, out_frames * hid_S, 1)
        else:
            self.latent_projection = nn.Identity()
            self.skip_projection = nn.Identity()

    @property
    def config(self) -> dict[str, Any]:
        """Constructor arguments as plain data (a fresh copy)."""
        return {k: list(v) if isinstance(v, list) else v for k, v in self._config.items()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, channels, height, width = x.shape
        if (frames, channels) != (self.in_frames, self.channels):
            raise ValueError(
                f"expected input (B, {self.in_frames}, {self.channels}, H, W), got {tuple(x.shape)}"
            )
        anchor = x[:, self.residual_anchor] if self.residual else None
        x = self._pad(x.reshape(batch * frames, channels, height, width))

        latent, skip = self.encoder(x)
        _, hidden, h, w = latent.shape
        latent = self.translator(latent.reshape(batch, frames * hidden, h, w))
        latent = self.latent_projection(latent).reshape(batch * self.out_frames, hidden, h, w)
        skip_h, skip_w = skip.shape[-2:]
        skip = self.skip_projection(skip.reshape(batch, frames * hidden, skip_h, skip_w))
        skip = skip.reshape(batch * self.out_frames, hidden, skip_h, skip_w)

        y = self.decoder(latent, skip)[..., :height, :width]
        y = y.reshape(batch, self.out_frames, channels, height, width)
        if self.residual:  # predict the change from an observed frame
            y = y + anchor
        return y

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Replicate-pad bottom/right so that H and W divide by the downsampling factor."""
        pad_h = -x.shape[-2] % self.reduction
        pad_w = -x.shape[-1] % self.reduction
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        return x

    def rollout(self, x: torch.Tensor, steps: int) -> torch.Tensor:
        """Predict `steps` frames by feeding the model its own outputs (the last T frames seen).

        With ``out_frames == T`` this is the released autoregressive scheme (e.g. KTH 10 -> 20/40).
        """
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        context, predictions, produced = x, [], 0
        while produced < steps:
            y = self(context[:, -self.in_frames:])
            predictions.append(y)
            produced += y.shape[1]
            context = torch.cat([context[:, -self.in_frames:], y], dim=1)
        return torch.cat(predictions, dim=1)[:, :steps]
