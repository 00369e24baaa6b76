"""StyleGAN2 (config F; Karras et al. 2020) in NVIDIA's module layout, so NVIDIA state dicts load key for key.

Generator: a mapping network z -> w (equalized learning rate, `w_avg` tracked during training for truncation) and
a synthesis network of modulated, demodulated convolutions with per-layer noise, a learned constant input and the
skip architecture (each resolution adds its ToRGB output to the upsampled image). It takes W+ latents
`ws` (N, n_latent, w_dim) with n_latent = 2 * log2(resolution) - 2 (NVIDIA's num_ws).
Discriminator: the residual architecture with minibatch standard deviation.
Everything that resamples or activates goes through priors.ops. No optimizer and no logging here.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Iterable, Mapping, Optional, Tuple

import torch
from torch import nn

from priors.ops import bias_act, conv2d_resample, modulated_conv2d, setup_filter, upsample2d
from priors.ops.bias_act import ACTIVATIONS

NOISE_MODES = ("random", "const", "none")
RESAMPLE_FILTER = (1, 3, 3, 1)  # binomial low-pass filter of every up/downsampling (StyleGAN2)
ACTIVATION = "lrelu"
MBSTD_EPS = 1e-8


def normalize_2nd_moment(x: torch.Tensor, dim: int = 1, eps: float = 1e-8) -> torch.Tensor:
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


def _check_resolution(res: int, lowest: int, what: str) -> int:
    if not isinstance(res, int) or res < lowest or res & (res - 1):
        raise ValueError(f"{what}: img_resolution must be a power of two >= {lowest}, got {res!r}")
    return int(math.log2(res))


def channels_at(res: int, channel_base: int, channel_max: int) -> int:
    """Feature maps at a resolution: channel_base / res, at most channel_max."""
    return min(channel_base // res, channel_max)


# ---------------------------------------------------------------------------------------------- shared layers

class FullyConnectedLayer(nn.Module):
    """Linear layer with equalized learning rate: weights stored / lr_multiplier and scaled at run time."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, activation: str = "linear",
                 lr_multiplier: float = 1.0, bias_init: float = 0.0):
        super().__init__()
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype) * self.weight_gain
        b = self.bias
        if b is not None:
            b = b.to(x.dtype) * self.bias_gain if self.bias_gain != 1 else b.to(x.dtype)
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class Conv2dLayer(nn.Module):
    """Convolution with equalized learning rate, optional FIR up/downsampling, bias, activation and clamp."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 activation: str = "linear", up: int = 1, down: int = 1, resample_filter=RESAMPLE_FILTER,
                 conv_clamp: Optional[float] = None):
        super().__init__()
        self.activation, self.up, self.down, self.conv_clamp = activation, up, down, conv_clamp
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = ACTIVATIONS[activation].def_gain
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x: torch.Tensor, gain: float = 1) -> torch.Tensor:
        w = self.weight * self.weight_gain
        b = self.bias.to(x.dtype) if self.bias is not None else None
        x = conv2d_resample(x, w.to(x.dtype), f=self.resample_filter, up=self.up, down=self.down,
                            padding=self.padding, flip_weight=self.up == 1)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, b, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class MappingNetwork(nn.Module):
    """z (and an optional label c) -> w, broadcast to num_ws copies; tracks w_avg for the truncation trick."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_ws: Optional[int], num_layers: int = 8,
                 embed_features: Optional[int] = None, layer_features: Optional[int] = None,
                 activation: str = ACTIVATION, lr_multiplier: float = 0.01, w_avg_beta: Optional[float] = 0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws = z_dim, c_dim, w_dim, num_ws
        self.num_layers, self.w_avg_beta = num_layers, w_avg_beta
        embed_features = (w_dim if embed_features is None else embed_features) if c_dim > 0 else 0
        layer_features = w_dim if layer_features is None else layer_features
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            setattr(self, f"fc{idx}", FullyConnectedLayer(features[idx], features[idx + 1], activation=activation,
                                                          lr_multiplier=lr_multiplier))
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z: Optional[torch.Tensor], c: Optional[torch.Tensor] = None, truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, skip_w_avg_update: bool = False) -> torch.Tensor:
        x = None
        if self.z_dim > 0:
            if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.z_dim:
                raise ValueError(f"mapping: expected z of shape (N, {self.z_dim}), got "
                                 f"{tuple(getattr(z, 'shape', ())) if z is not None else None}")
            x = normalize_2nd_moment(z.to(torch.float32))
        if self.c_dim > 0:
            if not isinstance(c, torch.Tensor) or c.ndim != 2 or c.shape[1] != self.c_dim:
                raise ValueError(f"mapping: expected a label c of shape (N, {self.c_dim}), got "
                                 f"{tuple(getattr(c, 'shape', ())) if c is not None else None}")
            y = normalize_2nd_moment(self.embed(c.to(torch.float32)))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        if self.w_avg_beta is not None and self.training and not skip_w_avg_update:
            self.w_avg.copy_(x.detach().mean(dim=0).lerp(self.w_avg, self.w_avg_beta))
        if self.num_ws is not None:
            x = x.unsqueeze(1).repeat([1, self.num_ws, 1])  # (N, num_ws, w_dim)
        if truncation_psi != 1:
            if self.w_avg_beta is None or self.num_ws is None:
                raise ValueError("mapping: truncation needs a tracked w_avg (w_avg_beta is None here)")
            if truncation_cutoff is None:
                x = self.w_avg.lerp(x, truncation_psi)
            else:  # truncate only the first truncation_cutoff (coarse) layers
                x = torch.cat([self.w_avg.lerp(x[:, :truncation_cutoff], truncation_psi),
                               x[:, truncation_cutoff:]], dim=1)
        return x


# -------------------------------------------------------------------------------------------------- synthesis

class SynthesisLayer(nn.Module):
    """Modulated conv (optionally upsampling x2) + noise + bias + lrelu."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, kernel_size: int = 3,
                 up: int = 1, use_noise: bool = True, activation: str = ACTIVATION,
                 resample_filter=RESAMPLE_FILTER, conv_clamp: Optional[float] = None):
        super().__init__()
        self.resolution, self.up, self.use_noise = resolution, up, use_noise
        self.activation, self.conv_clamp = activation, conv_clamp
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        self.padding = kernel_size // 2
        self.act_gain = ACTIVATIONS[activation].def_gain
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)  # w -> styles, initially 1
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random", fused_modconv: bool = True,
                gain: float = 1) -> torch.Tensor:
        styles = self.affine(w)
        noise = None
        if self.use_noise and noise_mode == "random":
            noise = torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device,
                                dtype=x.dtype) * self.noise_strength
        elif self.use_noise and noise_mode == "const":
            noise = self.noise_const * self.noise_strength
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        if not torch.is_grad_enabled() and not x.is_cuda and self.activation == "lrelu":
            # CPU inference: noise, bias, activation and gain in place on the fresh conv output (the same
            # arithmetic as bias_act's reference path, without a new full-size tensor per step)
            y = modulated_conv2d(x, self.weight, styles, up=self.up, padding=self.padding,
                                 resample_filter=self.resample_filter, flip_weight=self.up == 1,
                                 fused_modconv=fused_modconv)
            if noise is not None:
                y.add_(noise.to(y.dtype))
            y.add_(self.bias.to(y.dtype).reshape(1, -1, 1, 1))
            torch.nn.functional.leaky_relu_(y, ACTIVATIONS["lrelu"].def_alpha).mul_(self.act_gain * gain)
            return y.clamp_(-clamp, clamp) if clamp is not None else y
        x = modulated_conv2d(x, self.weight, styles, noise=noise, up=self.up, padding=self.padding,
                             resample_filter=self.resample_filter, flip_weight=self.up == 1,
                             fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    """Modulated 1x1 conv without demodulation to image channels, + bias."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, kernel_size: int = 1,
                 conv_clamp: Optional[float] = None):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)

    def forward(self, x: torch.Tensor, w: torch.Tensor, fused_modconv: bool = True) -> torch.Tensor:
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, fused_modconv=fused_modconv)
        return bias_act(x, self.bias.to(x.dtype), clamp=self.conv_clamp)


class SynthesisBlock(nn.Module):
    """One resolution: the constant input (4x4) or an upsampling conv0, then conv1, then ToRGB added to the
    upsampled image of the previous block (skip architecture)."""

    def __init__(self, in_channels: int, out_channels: int, w_dim: int, resolution: int, img_channels: int,
                 is_last: bool, resample_filter=RESAMPLE_FILTER, conv_clamp: Optional[float] = None,
                 **layer_kwargs):
        super().__init__()
        self.in_channels, self.resolution, self.is_last = in_channels, resolution, is_last
        self.num_conv = self.num_torgb = 0
        self.register_buffer("resample_filter", setup_filter(list(resample_filter)))
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(in_channels, out_channels, w_dim, resolution, up=2,
                                        resample_filter=resample_filter, conv_clamp=conv_clamp, **layer_kwargs)
            self.num_conv += 1
        self.conv1 = SynthesisLayer(out_channels, out_channels, w_dim, resolution, conv_clamp=conv_clamp,
                                    **layer_kwargs)
        self.num_conv += 1
        self.torgb = ToRGBLayer(out_channels, img_channels, w_dim, conv_clamp=conv_clamp)
        self.num_torgb += 1

    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                noise_mode: str = "random", fused_modconv: Optional[bool] = None,
                x_offset: Optional[torch.Tensor] = None):
        """x_offset: added to the block's features before its ToRGB (and so also before the next block)."""
        w_iter = iter(ws.unbind(dim=1))
        if fused_modconv is None:  # per-sample weights at inference; scaled activations train faster
            fused_modconv = not self.training
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        x = self.conv1(x, next(w_iter), noise_mode=noise_mode, fused_modconv=fused_modconv)
        if x_offset is not None:
            x = x + x_offset.to(x.dtype)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        y = self.torgb(x, next(w_iter), fused_modconv=fused_modconv).to(torch.float32)
        return x, (img + y if img is not None else y)


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> image (N, img_channels, img_resolution, img_resolution), roughly in [-1, 1]."""

    def __init__(self, w_dim: int, img_resolution: int, img_channels: int, channel_base: int = 32768,
                 channel_max: int = 512, **block_kwargs):
        super().__init__()
        log2 = _check_resolution(img_resolution, 4, "SynthesisNetwork")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        self.num_ws = 0
        for res in self.block_resolutions:
            in_c = channels_at(res // 2, channel_base, channel_max) if res > 4 else 0
            block = SynthesisBlock(in_c, channels_at(res, channel_base, channel_max), w_dim, res, img_channels,
                                   is_last=res == img_resolution, **block_kwargs)
            self.num_ws += block.num_conv + (block.num_torgb if res == img_resolution else 0)
            setattr(self, f"b{res}", block)

    def feature_shape(self, res: int) -> Tuple[int, int, int]:
        """(channels, res, res) of the features block `res` outputs (what `feature_offsets[res]` must match)."""
        if res not in self.block_resolutions:
            raise ValueError(f"synthesis: no block at {res} px (blocks: {self.block_resolutions})")
        block = getattr(self, f"b{res}")
        return (block.conv1.weight.shape[0], res, res)

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", fused_modconv: Optional[bool] = None,
                feature_offsets: Optional[Mapping[int, torch.Tensor]] = None) -> torch.Tensor:
        """feature_offsets: {resolution: (N, C, res, res)} added to that block's output features (a feature-space
        encoder's spatial detail on top of the W+ codes); None = plain synthesis."""
        if not isinstance(ws, torch.Tensor) or ws.ndim != 3 or tuple(ws.shape[1:]) != (self.num_ws, self.w_dim):
            raise ValueError(f"synthesis: expected ws of shape (N, {self.num_ws}, {self.w_dim}), got "
                             f"{tuple(getattr(ws, 'shape', ()))}")
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"synthesis: noise_mode must be one of {list(NOISE_MODES)}, got {noise_mode!r}")
        ws = ws.to(torch.float32)
        offsets = dict(feature_offsets or {})
        for res, off in offsets.items():
            want = (ws.shape[0], *self.feature_shape(res))
            if not isinstance(off, torch.Tensor) or tuple(off.shape) != want:
                raise ValueError(f"synthesis: feature offset at {res} px: expected {want}, got "
                                 f"{tuple(getattr(off, 'shape', ()))}")
        x = img = None
        w_idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)  # a ToRGB shares the next conv's w
            w_idx += block.num_conv
            x, img = block(x, img, block_ws, noise_mode=noise_mode, fused_modconv=fused_modconv,
                           x_offset=offsets.get(res))
        return img


# -------------------------------------------------------------------------------------------------- generator

# How NVIDIA's Generator(..., mapping_kwargs, synthesis_kwargs) maps onto GeneratorConfig, per group:
# the arguments taken over (NVIDIA name -> our field), those supported at one value only (name -> that value), and
# those that only choose the numeric precision, which these modules ignore (they run in float32)
NVIDIA_KWARGS = {
    "mapping_kwargs": {
        "fields": {"num_layers": "mapping_layers", "lr_multiplier": "mapping_lr_multiplier",
                   "w_avg_beta": "w_avg_beta"},
        "fixed": {"activation": ACTIVATION, "embed_features": None, "layer_features": None},
        "precision": (),
    },
    "synthesis_kwargs": {
        "fields": {"channel_base": "channel_base", "channel_max": "channel_max", "conv_clamp": "conv_clamp"},
        "fixed": {"architecture": "skip", "activation": ACTIVATION, "resample_filter": list(RESAMPLE_FILTER),
                  "use_noise": True, "kernel_size": 3},
        "precision": ("num_fp16_res", "fp16_channels_last", "channels_last"),
    },
}
NVIDIA_TOP_LEVEL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")


@dataclass
class GeneratorConfig:
    """StyleGAN2 generator; defaults are config F (Karras et al. 2020) as in NVIDIA's stylegan2-ada-pytorch."""

    z_dim: int = 512  # input latent z
    c_dim: int = 0  # class label dimension (0 = unconditional)
    w_dim: int = 512  # intermediate latent w
    img_resolution: int = 1024  # output side, a power of two
    img_channels: int = 3  # output channels
    channel_base: int = 32768  # feature maps at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    mapping_layers: int = 8  # fully connected layers of the mapping network
    mapping_lr_multiplier: float = 0.01  # learning-rate multiplier of the mapping network
    w_avg_beta: Optional[float] = 0.995  # decay of the tracked mean w (truncation trick); None = not tracked
    conv_clamp: Optional[float] = None  # clamp conv outputs to +-conv_clamp (NVIDIA's ADA configs: 256)

    @classmethod
    def from_nvidia(cls, init_kwargs: Dict[str, Any], source: str = "init_kwargs") -> "GeneratorConfig":
        """From the constructor arguments of NVIDIA's Generator (z_dim, ..., mapping_kwargs, synthesis_kwargs)."""
        kwargs = dict(init_kwargs)
        out: Dict[str, Any] = {k: kwargs.pop(k) for k in NVIDIA_TOP_LEVEL if k in kwargs}
        missing = [k for k in NVIDIA_TOP_LEVEL if k not in out]
        groups = {group: dict(kwargs.pop(group, None) or {}) for group in NVIDIA_KWARGS}
        problems = [f"{k} (top level)" for k in kwargs]
        for group, given in groups.items():
            spec = NVIDIA_KWARGS[group]
            for k, v in given.items():
                if k in spec["fields"]:
                    out[spec["fields"][k]] = v
                elif k not in spec["precision"] and not (k in spec["fixed"] and _same(v, spec["fixed"][k])):
                    problems.append(f"{group}.{k}={v!r}")
        if missing or problems:
            raise ValueError(f"{source}: not a supported StyleGAN2 generator configuration: "
                             + "; ".join(([f"missing {', '.join(missing)}"] if missing else [])
                                         + ([f"unsupported {', '.join(problems)}"] if problems else [])))
        return cls(**out)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Dict[str, Any], source: str = "config") -> "GeneratorConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"{source}: unknown GeneratorConfig fields {unknown} (known: {sorted(names)})")
        return cls(**d)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(float(x) == float(y) for x, y in zip(a, b))
    return a == b


class Generator(nn.Module):
    """z -> mapping -> ws (N, n_latent, w_dim) -> synthesis -> image (N, img_channels, res, res) in ~[-1, 1]."""

    def __init__(self, cfg: Optional[GeneratorConfig] = None):
        super().__init__()
        cfg = GeneratorConfig() if cfg is None else cfg
        if not isinstance(cfg, GeneratorConfig):
            raise TypeError(f"Generator: expected a GeneratorConfig, got {type(cfg).__name__}")
        self.config = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = SynthesisNetwork(cfg.w_dim, cfg.img_resolution, cfg.img_channels,
                                          channel_base=cfg.channel_base, channel_max=cfg.channel_max,
                                          conv_clamp=cfg.conv_clamp)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg.z_dim, cfg.c_dim, cfg.w_dim, self.num_ws, num_layers=cfg.mapping_layers,
                                      lr_multiplier=cfg.mapping_lr_multiplier, w_avg_beta=cfg.w_avg_beta)

    @property
    def n_latent(self) -> int:
        """Number of style vectors in W+ (2 * log2(resolution) - 2)."""
        return self.num_ws

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, noise_mode: str = "random",
                fused_modconv: Optional[bool] = None) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws, noise_mode=noise_mode, fused_modconv=fused_modconv)

    @staticmethod
    def mix_styles(ws_a: torch.Tensor, ws_b: torch.Tensor, layers: Iterable[int]) -> torch.Tensor:
        """Style mixing: ws_a with the style vectors at `layers` taken from ws_b (both (N, n_latent, w_dim))."""
        idx = torch.as_tensor(list(layers), dtype=torch.long, device=ws_a.device)
        mixed = ws_a.clone()
        mixed[:, idx] = ws_b[:, idx].to(ws_a.dtype)
        return mixed

    def mixing_regularization(self, ws: torch.Tensor, c: Optional[torch.Tensor] = None, prob: float = 0.9,
                              generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Training-time style mixing (StyleGAN): with probability `prob`, the style vectors from a random cutoff
        on come from another random z (one cutoff per batch, as NVIDIA's loss draws it)."""
        if prob <= 0:
            return ws
        cutoff = int(torch.randint(1, self.num_ws, (), generator=generator))
        if float(torch.rand((), generator=generator)) >= prob:
            return ws
        z_device = generator.device if generator is not None else ws.device  # drawn where the generator lives
        z2 = torch.randn(ws.shape[0], self.z_dim, generator=generator, device=z_device).to(ws.device)
        ws2 = self.mapping(z2, c, skip_w_avg_update=True)
        return torch.cat([ws[:, :cutoff], ws2[:, cutoff:].to(ws.dtype)], dim=1)


# ---------------------------------------------------------------------------------------------- discriminator

@dataclass
class DiscriminatorConfig:
    """StyleGAN2 residual discriminator; defaults as NVIDIA's stylegan2-ada-pytorch (config F)."""

    c_dim: int = 0  # class label dimension (0 = unconditional; else projection on a mapped label)
    img_resolution: int = 1024  # input side, a power of two >= 8
    img_channels: int = 3
    channel_base: int = 32768  # feature maps at resolution r: min(channel_base // r, channel_max)
    channel_max: int = 512
    mbstd_group_size: Optional[int] = 4  # minibatch standard deviation over groups of this size (None = batch)
    mbstd_num_channels: int = 1  # feature channels it appends (0 = no minibatch stddev layer)
    conv_clamp: Optional[float] = None  # clamp conv outputs to +-conv_clamp
    cmap_dim: Optional[int] = None  # mapped label dimension (None = channels at 4x4)


class DiscriminatorBlock(nn.Module):
    """One resolution of the residual discriminator: (fromrgb), conv0, downsampling conv1, + 1x1 skip, / sqrt(2)."""

    def __init__(self, in_channels: int, tmp_channels: int, out_channels: int, resolution: int, img_channels: int,
                 activation: str = ACTIVATION, resample_filter=RESAMPLE_FILTER, conv_clamp: Optional[float] = None):
        super().__init__()
        self.in_channels, self.resolution, self.img_channels = in_channels, resolution, img_channels
        if in_channels == 0:
            self.fromrgb = Conv2dLayer(img_channels, tmp_channels, kernel_size=1, activation=activation,
                                       conv_clamp=conv_clamp)
        self.conv0 = Conv2dLayer(tmp_channels, tmp_channels, kernel_size=3, activation=activation,
                                 conv_clamp=conv_clamp)
        self.conv1 = Conv2dLayer(tmp_channels, out_channels, kernel_size=3, activation=activation, down=2,
                                 resample_filter=resample_filter, conv_clamp=conv_clamp)
        self.skip = Conv2dLayer(tmp_channels, out_channels, kernel_size=1, bias=False, down=2,
                                resample_filter=resample_filter)

    def forward(self, x: Optional[torch.Tensor], img: torch.Tensor) -> torch.Tensor:
        if self.in_channels == 0:
            x = self.fromrgb(img.to(torch.float32))
        y = self.skip(x, gain=math.sqrt(0.5))
        x = self.conv0(x)
        x = self.conv1(x, gain=math.sqrt(0.5))
        return y + x


class MinibatchStdLayer(nn.Module):
    """Appends the standard deviation of the features over groups of samples (Karras et al. 2018)."""

    def __init__(self, group_size: Optional[int], num_channels: int = 1):
        super().__init__()
        self.group_size, self.num_channels = group_size, num_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        g = min(self.group_size, n) if self.group_size is not None else n
        f = self.num_channels
        if n % g or c % f:
            raise ValueError(f"minibatch stddev: the batch ({n}) must be divisible by the group size ({g}) and the "
                             f"channels ({c}) by num_channels ({f})")
        y = x.reshape(g, -1, f, c // f, h, w)  # (G, n, F, c, H, W): the batch in groups of G
        y = (y - y.mean(dim=0)).square().mean(dim=0)  # variance over each group
        y = (y + MBSTD_EPS).sqrt().mean(dim=[2, 3, 4])  # (n, F): stddev averaged over channels and pixels
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)  # (N, F, H, W)
        return torch.cat([x, y], dim=1)


class DiscriminatorEpilogue(nn.Module):
    """4x4: minibatch stddev, conv, fully connected, output (projected on the mapped label when conditional)."""

    def __init__(self, in_channels: int, cmap_dim: int, resolution: int, img_channels: int,
                 mbstd_group_size: Optional[int] = 4, mbstd_num_channels: int = 1, activation: str = ACTIVATION,
                 conv_clamp: Optional[float] = None):
        super().__init__()
        self.in_channels, self.cmap_dim, self.resolution = in_channels, cmap_dim, resolution
        self.mbstd = MinibatchStdLayer(mbstd_group_size, mbstd_num_channels) if mbstd_num_channels > 0 else None
        self.conv = Conv2dLayer(in_channels + mbstd_num_channels, in_channels, kernel_size=3, activation=activation,
                                conv_clamp=conv_clamp)
        self.fc = FullyConnectedLayer(in_channels * resolution**2, in_channels, activation=activation)
        self.out = FullyConnectedLayer(in_channels, 1 if cmap_dim == 0 else cmap_dim)

    def forward(self, x: torch.Tensor, cmap: Optional[torch.Tensor] = None) -> torch.Tensor:
        x = x.to(torch.float32)
        if self.mbstd is not None:
            x = self.mbstd(x)
        x = self.conv(x)
        x = self.out(self.fc(x.flatten(1)))
        if self.cmap_dim > 0:
            x = (x * cmap).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x


class Discriminator(nn.Module):
    """img (N, img_channels, res, res) (and a label c when conditional) -> logits (N, 1)."""

    def __init__(self, cfg: Optional[DiscriminatorConfig] = None):
        super().__init__()
        cfg = DiscriminatorConfig() if cfg is None else cfg
        if not isinstance(cfg, DiscriminatorConfig):
            raise TypeError(f"Discriminator: expected a DiscriminatorConfig, got {type(cfg).__name__}")
        self.config = cfg
        self.c_dim, self.img_resolution, self.img_channels = cfg.c_dim, cfg.img_resolution, cfg.img_channels
        log2 = _check_resolution(cfg.img_resolution, 8, "Discriminator")
        self.block_resolutions = [2**i for i in range(log2, 2, -1)]
        ch = {res: channels_at(res, cfg.channel_base, cfg.channel_max) for res in self.block_resolutions + [4]}
        cmap_dim = 0 if cfg.c_dim == 0 else (ch[4] if cfg.cmap_dim is None else cfg.cmap_dim)
        for res in self.block_resolutions:
            in_c = ch[res] if res < cfg.img_resolution else 0
            setattr(self, f"b{res}", DiscriminatorBlock(in_c, ch[res], ch[res // 2], res, cfg.img_channels,
                                                        conv_clamp=cfg.conv_clamp))
        if cfg.c_dim > 0:
            self.mapping = MappingNetwork(0, cfg.c_dim, cmap_dim, num_ws=None, w_avg_beta=None)
        self.b4 = DiscriminatorEpilogue(ch[4], cmap_dim, 4, cfg.img_channels, cfg.mbstd_group_size,
                                        cfg.mbstd_num_channels, conv_clamp=cfg.conv_clamp)

    def forward(self, img: torch.Tensor, c: Optional[torch.Tensor] = None) -> torch.Tensor:
        expected: Tuple[int, ...] = (self.img_channels, self.img_resolution, self.img_resolution)
        if not isinstance(img, torch.Tensor) or img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(f"discriminator: expected images of shape (N, {', '.join(map(str, expected))}), got "
                             f"{tuple(getattr(img, 'shape', ()))}")
        x = None
        for res in self.block_resolutions:
            x = getattr(self, f"b{res}")(x, img)
        cmap = self.mapping(None, c) if self.c_dim > 0 else None
        return self.b4(x, cmap)
