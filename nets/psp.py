"""pSp's translation net: an encoder into W+ (+ the prior's average latent) and a StyleGAN2 decoder.

Plain torch (no training stack), so that the inference API rebuilds it from a bundle. Training: translate/psp.py.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nets.encoders import build_encoder
from priors.stylegan2 import Generator, GeneratorConfig


class PSPNet(nn.Module):
    """encoder + frozen decoder: (N, input_nc, S, S) -> (N, 3, R, R) at the prior's resolution R, or pooled to
    `resize`. State dict `encoder.*`, `decoder.*`, `latent_avg` (n_styles, w_dim).

    restyle_iters > 0: ReStyle (Alaluf et al. 2021): the encoder takes [input, current reconstruction] (input_nc + 3
    channels) and predicts residuals, from the average latent: w_0 = latent_avg, w_{t+1} = w_t + E([x, G(w_t)])."""

    def __init__(self, encoder: nn.Module, decoder: Generator, latent_avg: torch.Tensor,
                 start_from_latent_avg: bool = True, resize: Optional[int] = None, noise_mode: str = "const",
                 restyle_iters: int = 0):
        super().__init__()
        n = decoder.num_ws
        if getattr(encoder, "n_styles", n) != n or getattr(encoder, "w_dim", decoder.w_dim) != decoder.w_dim:
            raise ValueError(f"the encoder predicts {encoder.n_styles} x {encoder.w_dim} codes, the prior takes "
                             f"{n} x {decoder.w_dim}")
        self.encoder, self.decoder = encoder, decoder
        latent_avg = latent_avg.detach().float().reshape(-1, decoder.w_dim)
        if latent_avg.shape[0] not in (1, n):
            raise ValueError(f"latent_avg: expected ({n}, {decoder.w_dim}) or ({decoder.w_dim},), got "
                             f"{tuple(latent_avg.shape)}")
        self.register_buffer("latent_avg", latent_avg.expand(n, -1).clone())
        self.start_from_latent_avg, self.resize, self.noise_mode = start_from_latent_avg, resize, noise_mode
        if restyle_iters < 0:
            raise ValueError(f"restyle_iters: expected >= 0, got {restyle_iters}")
        self.restyle_iters = int(restyle_iters)

    @property
    def n_styles(self) -> int:
        return self.decoder.num_ws

    def _offsets(self, x: torch.Tensor) -> torch.Tensor:
        codes = self.encoder(x)
        if codes.dim() == 2:  # a W encoder: one w for every style vector
            codes = codes.unsqueeze(1).expand(-1, self.n_styles, -1)
        return codes  # (N, n_styles, w_dim)

    def encode(self, x: torch.Tensor, iters: Optional[int] = None) -> torch.Tensor:
        """W+ codes (N, n_styles, w_dim) of an input batch; a ReStyle net runs `iters` (default restyle_iters)
        iterations from the average latent."""
        if self.restyle_iters:
            codes = self.latent_avg.unsqueeze(0).expand(x.shape[0], -1, -1)
            for _ in range(self.restyle_iters if iters is None else iters):
                codes = self.restyle_step(x, codes, self.decode(codes))
            return codes
        codes = self._offsets(x)
        if self.start_from_latent_avg:
            codes = codes + self.latent_avg.unsqueeze(0)
        return codes

    def restyle_step(self, x: torch.Tensor, codes: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        """One ReStyle iteration: codes + E([x, rec]), the reconstruction `rec` resized to the encoder's input."""
        size = tuple(x.shape[-2:])
        if tuple(rec.shape[-2:]) != size:
            rec = (F.adaptive_avg_pool2d(rec, size) if rec.shape[-1] > size[-1]
                   else F.interpolate(rec, size=size, mode="bilinear", align_corners=False))
        return codes + self._offsets(torch.cat([x, rec], dim=1))

    def decode(self, codes: torch.Tensor, noise_mode: Optional[str] = None) -> torch.Tensor:
        img = self.decoder.synthesis(codes, noise_mode=noise_mode or self.noise_mode)
        if self.resize is not None and img.shape[-1] != self.resize:
            img = F.adaptive_avg_pool2d(img, (self.resize, self.resize))
        return img

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))

    def mix(self, codes: torch.Tensor, inject: torch.Tensor, latent_mask: Sequence[int],
            alpha: Optional[float] = None) -> torch.Tensor:
        """pSp's style mixing: the codes at `latent_mask` replaced by (or, with alpha, blended towards) `inject`."""
        bad = [i for i in latent_mask if not 0 <= int(i) < self.n_styles]
        if bad:
            raise ValueError(f"latent_mask: layers {bad} outside 0..{self.n_styles - 1}")
        idx = torch.as_tensor([int(i) for i in latent_mask], dtype=torch.long, device=codes.device)
        out = codes.clone()
        src = inject.expand_as(codes)[:, idx]
        out[:, idx] = src if alpha is None else alpha * src + (1 - alpha) * codes[:, idx]
        return out

    @torch.no_grad()
    def variants(self, x: torch.Tensor, n: int, latent_mask: Sequence[int], alpha: Optional[float] = None,
                 seed: int = 0) -> torch.Tensor:
        """Multi-modal output: (n, N, 3, H, W), variant k mixing the input's codes with the W code of seed + k on
        `latent_mask` (the same random style for every image of the batch)."""
        codes = self.encode(x)
        outs = []
        for k in range(n):
            g = torch.Generator().manual_seed(seed + k)
            z = torch.randn(1, self.decoder.z_dim, generator=g).to(codes.device)
            inject = self.decoder.mapping(z, skip_w_avg_update=True)  # (1, n_styles, w_dim)
            outs.append(self.decode(self.mix(codes, inject, latent_mask, alpha)))
        return torch.stack(outs)

    def spec(self) -> Dict[str, Any]:
        """Plain arguments that rebuild this net (with `build_psp_net`) around weights.safetensors."""
        return {"encoder": self.encoder.spec(), "decoder": self.decoder.config.to_dict(),
                "start_from_latent_avg": self.start_from_latent_avg, "resize": self.resize,
                "restyle_iters": self.restyle_iters}


def build_psp_net(spec: Dict[str, Any]) -> PSPNet:
    """The architecture of `PSPNet.spec()`, randomly initialised (load the weights into it)."""
    encoder = build_encoder(**{k: v for k, v in spec["encoder"].items()})
    decoder = Generator(GeneratorConfig.from_dict(spec["decoder"]))
    n = decoder.num_ws
    return PSPNet(encoder, decoder, torch.zeros(n, decoder.w_dim), spec["start_from_latent_avg"], spec.get("resize"),
                  restyle_iters=int(spec.get("restyle_iters", 0)))
