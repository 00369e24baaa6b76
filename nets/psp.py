"""pSp's translation net: an encoder into W+ (+ the prior's average latent) and a StyleGAN2 decoder.

Plain torch (no training stack), so that the inference API rebuilds it from a bundle. Training: translate/methods/psp.py.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from nets.encoders import build_encoder
from priors import stylegan3
from priors.stylegan2 import Generator, GeneratorConfig
from safeio.errors import ConfigError

LATENT_D_SLOPE = 0.2  # LeakyReLU slope of e4e's latent-code discriminator


class FeatureHead(nn.Module):
    """The encoder's finest pyramid map -> an offset to the prior's features at `res` px: the map resized to `res`
    (area average down, bilinear up), conv3x3 + LeakyReLU(0.2) + conv3x3; the last conv starts at zero."""

    def __init__(self, in_channels: int, out_channels: int, res: int):
        super().__init__()
        self.res = res
        self.body = nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, 1, 1), nn.LeakyReLU(0.2),
                                  nn.Conv2d(in_channels, out_channels, 3, 1, 1))
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, fine: torch.Tensor) -> torch.Tensor:
        if fine.shape[-1] > self.res:
            fine = F.adaptive_avg_pool2d(fine, (self.res, self.res))
        elif fine.shape[-1] < self.res:
            fine = F.interpolate(fine, size=(self.res, self.res), mode="bilinear", align_corners=False)
        return self.body(fine)


class LatentCodesDiscriminator(nn.Module):
    """e4e's discriminator of W codes: (N, w_dim) -> (N, 1) logits; three Linear + LeakyReLU(0.2) layers and a linear
    output (keys mlp.0, .2, .4, .6 as the reference's; PyTorch's default init, no equalized learning rate). It tells
    the encoder's codes from the mapping network's, so that e4e's codes stay in W, where edits work."""

    def __init__(self, w_dim: int = 512, n_layers: int = 4):
        super().__init__()
        layers: list = []
        for _ in range(n_layers - 1):
            layers += [nn.Linear(w_dim, w_dim), nn.LeakyReLU(LATENT_D_SLOPE)]
        self.mlp = nn.Sequential(*layers, nn.Linear(w_dim, 1))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.mlp(w)


class PSPNet(nn.Module):
    """encoder + frozen decoder: (N, input_nc, S, S) -> (N, 3, R, R) at the prior's resolution R, or pooled to
    `resize`. State dict `encoder.*`, `decoder.*`, `latent_avg` (n_styles, w_dim) (+ `feature_head.*` with
    feature_res).

    restyle_iters > 0: ReStyle (Alaluf et al. 2021): the encoder takes [input, current reconstruction] (input_nc + 3
    channels) and predicts residuals, from the average latent: w_0 = latent_avg, w_{t+1} = w_t + E([x, G(w_t)]).

    feature_res > 0: besides the W+ codes, a head on the encoder's finest pyramid map predicts an offset to the
    prior's features at that resolution (`feature_head.*`), which the frozen layers above it render (the idea of
    feature-space encoders such as Yao et al. 2022's Feature-Style encoder): the input's spatial layout reaches the
    output directly instead of only through 512-number style vectors. The head starts at zero, so an untrained
    offset is plain pSp."""

    def __init__(self, encoder: nn.Module, decoder: Generator, latent_avg: torch.Tensor,
                 start_from_latent_avg: bool = True, resize: Optional[int] = None, noise_mode: str = "const",
                 restyle_iters: int = 0, feature_res: int = 0):
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
        # None: the prior's choice (per-sample weights in eval mode); export sets False, so that the graphs take any
        # batch size (the per-sample convolution has as many groups as images, which ONNX cannot leave open)
        self.fused_modconv: Optional[bool] = None
        if restyle_iters < 0:
            raise ConfigError(f"restyle_iters: expected >= 0, got {restyle_iters}", key="restyle_iters")
        self.restyle_iters = int(restyle_iters)
        self.feature_res = int(feature_res)
        self.feature_head: Optional[FeatureHead] = None
        if self.feature_res:
            if self.restyle_iters:
                raise ConfigError("feature_res: a feature offset and ReStyle's iterations do not combine (set one of "
                                  "feature_res and restyle_iters to 0)", key="feature_res")
            if not hasattr(encoder, "forward_with_fine_map"):
                raise ConfigError(f"feature_res: needs the GradualStyleEncoder (the head reads its pyramid's finest "
                                  f"map), got {type(encoder).__name__}", key="feature_res")
            out_c = decoder.synthesis.feature_shape(self.feature_res)[0]  # an error if no block is at that size
            self.feature_head = FeatureHead(encoder.channels[3], out_c, self.feature_res)

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
        return self._from_latent_avg(self._offsets(x))

    def _from_latent_avg(self, offsets: torch.Tensor) -> torch.Tensor:
        return offsets + self.latent_avg.unsqueeze(0) if self.start_from_latent_avg else offsets

    def encode_full(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """The W+ codes and, with feature_res, the feature offset (N, C, feature_res, feature_res) (else None):
        what `decode` needs to reproduce `forward`."""
        if self.feature_head is None:
            return self.encode(x), None
        offsets, fine = self.encoder.forward_with_fine_map(x)
        return self._from_latent_avg(offsets), self.feature_head(fine)

    def restyle_step(self, x: torch.Tensor, codes: torch.Tensor, rec: torch.Tensor) -> torch.Tensor:
        """One ReStyle iteration: codes + E([x, rec]), the reconstruction `rec` resized to the encoder's input."""
        size = tuple(x.shape[-2:])
        if tuple(rec.shape[-2:]) != size:
            rec = (F.adaptive_avg_pool2d(rec, size) if rec.shape[-1] > size[-1]
                   else F.interpolate(rec, size=size, mode="bilinear", align_corners=False))
        return codes + self._offsets(torch.cat([x, rec], dim=1))

    def decode(self, codes: torch.Tensor, noise_mode: Optional[str] = None,
               feature: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The image of W+ codes (+ a feature offset at feature_res from `encode_full`)."""
        offsets = None if feature is None else {self.feature_res: feature}
        img = self.decoder.synthesis(codes, noise_mode=noise_mode or self.noise_mode, feature_offsets=offsets,
                                     fused_modconv=self.fused_modconv)
        if self.resize is not None and img.shape[-1] != self.resize:
            img = F.adaptive_avg_pool2d(img, (self.resize, self.resize))
        return img

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes, feature = self.encode_full(x)
        return self.decode(codes, feature=feature)

    def mix(self, codes: torch.Tensor, inject: torch.Tensor, latent_mask: Sequence[int],
            alpha: Optional[float] = None) -> torch.Tensor:
        """pSp's style mixing: the codes at `latent_mask` replaced by (or, with alpha, blended towards) `inject`."""
        bad = [i for i in latent_mask if not 0 <= int(i) < self.n_styles]
        if bad:
            raise ConfigError(f"latent_mask: layers {bad} outside 0..{self.n_styles - 1}", key="latent_mask")
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
        codes, feature = self.encode_full(x)
        outs = []
        for k in range(n):
            g = torch.Generator().manual_seed(seed + k)
            z = torch.randn(1, self.decoder.z_dim, generator=g).to(codes.device)
            inject = self.decoder.mapping(z, skip_w_avg_update=True)  # (1, n_styles, w_dim)
            outs.append(self.decode(self.mix(codes, inject, latent_mask, alpha), feature=feature))
        return torch.stack(outs)

    def spec(self) -> Dict[str, Any]:
        """Plain arguments that rebuild this net (with `build_psp_net`) around weights.safetensors."""
        sg3 = {"decoder_architecture": "stylegan3"} if isinstance(self.decoder, stylegan3.Generator) else {}
        return {"encoder": self.encoder.spec(), "decoder": self.decoder.config.to_dict(), **sg3,
                "start_from_latent_avg": self.start_from_latent_avg, "resize": self.resize,
                "restyle_iters": self.restyle_iters, "feature_res": self.feature_res}


def build_psp_net(spec: Dict[str, Any]) -> PSPNet:
    """The architecture of `PSPNet.spec()`, randomly initialised (load the weights into it)."""
    encoder = build_encoder(**{k: v for k, v in spec["encoder"].items()})
    if spec.get("decoder_architecture", "stylegan2") == "stylegan3":  # filters come with the weights
        decoder = stylegan3.Generator(stylegan3.GeneratorConfig.from_dict(spec["decoder"]), design_filters=False)
    else:
        decoder = Generator(GeneratorConfig.from_dict(spec["decoder"]))
    n = decoder.num_ws
    return PSPNet(encoder, decoder, torch.zeros(n, decoder.w_dim), spec["start_from_latent_avg"], spec.get("resize"),
                  restyle_iters=int(spec.get("restyle_iters", 0)), feature_res=int(spec.get("feature_res", 0)))
