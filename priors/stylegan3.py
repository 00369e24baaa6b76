"""StyleGAN3 (Alias-Free GAN, configs T and R; Karras et al. 2021) in NVIDIA's module layout, so that NVIDIA state
dicts load key for key.

Generator: the StyleGAN2 mapping network (2 layers by default) z -> w, broadcast to num_ws = num_layers + 2 codes,
and a synthesis network that starts from Fourier features (SynthesisInput: fixed random frequencies, rotated and
translated by an affine map of w[0] and by the user `transform` buffer) followed by num_layers + 1 SynthesisLayers
(modulated convolution, bias, filtered leaky ReLU that upsamples, activates and low-pass filters back down, clamp).
Each layer scales its input by rsqrt(magnitude_ema), the tracked mean square of its input. The last layer is the
ToRGB (1x1, no demodulation, linear); the image is its output times `output_scale`. Sampling rates, cutoffs and
stopbands grow geometrically over the layers; the last `num_critical` layers are critically sampled. Config R uses
1x1 convolutions and radially symmetric down filters. There is no noise input (noise_mode is accepted and ignored).

The filters are buffers: loading reads them from the file. Designing them (a model built from scratch) needs scipy,
imported only then (`Generator(cfg, design_filters=True)`, the default).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from priors.ops import filtered_lrelu
from priors.stylegan2 import FullyConnectedLayer, MappingNetwork
from safeio.errors import LoadError

__all__ = ["GeneratorConfig", "Generator", "SynthesisNetwork", "SynthesisLayer", "SynthesisInput", "MappingNetwork",
           "make_transform", "design_lowpass_filter", "layer_plan"]


# ---------------------------------------------------------------------------------------------------- helpers

def make_transform(translate: Sequence[float] = (0.0, 0.0), angle_deg: float = 0.0,
                   device: Optional[torch.device] = None) -> torch.Tensor:
    """The 3x3 forward transform of NVIDIA's gen_images.py (a rotation by angle_deg, then a translation in units of
    the image side); `SynthesisInput.transform` holds its inverse."""
    a = math.radians(angle_deg)
    c, s = math.cos(a), math.sin(a)
    return torch.tensor([[c, s, float(translate[0])], [-s, c, float(translate[1])], [0.0, 0.0, 1.0]],
                        dtype=torch.float64, device=device)


def input_transform(translate: Sequence[float] = (0.0, 0.0), angle_deg: float = 0.0,
                    device: Optional[torch.device] = None) -> torch.Tensor:
    """What to copy into `G.synthesis.input.transform` to translate / rotate the output (float32, on `device`)."""
    return torch.linalg.inv(make_transform(translate, angle_deg, device)).to(torch.float32)


def design_lowpass_filter(numtaps: int, cutoff: float, width: float, fs: float,
                          radial: bool = False) -> Optional[torch.Tensor]:
    """A Kaiser-windowed low-pass filter (1-D, used separably) or, with radial, a radially symmetric jinc filter
    windowed by the outer product of two Kaiser windows (2-D); None for one tap (the identity). Needs scipy."""
    if numtaps < 1:
        raise ValueError(f"design_lowpass_filter: numtaps must be >= 1, got {numtaps}")
    if numtaps == 1:
        return None
    import scipy.signal
    import scipy.special

    if not radial:
        return torch.as_tensor(scipy.signal.firwin(numtaps=numtaps, cutoff=cutoff, width=width, fs=fs),
                               dtype=torch.float32)
    t = (np.arange(numtaps) - (numtaps - 1) / 2) / fs
    r = np.hypot(*np.meshgrid(t, t))
    jinc = scipy.special.j1(2 * cutoff * (np.pi * r)) / (np.pi * r)
    beta = scipy.signal.kaiser_beta(scipy.signal.kaiser_atten(numtaps, width / (fs / 2)))
    window = np.kaiser(numtaps, beta)
    f = jinc * np.outer(window, window)
    return torch.as_tensor(f / f.sum(), dtype=torch.float32)


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor, demodulate: bool = True,
                     padding: int = 0, input_gain: Optional[torch.Tensor] = None) -> torch.Tensor:
    """StyleGAN3's modulated convolution, one grouped conv for the batch: weight (O, I, k, k) scaled per sample by
    styles (N, I), demodulated to unit norm per output channel, and multiplied by the input gain (per I or scalar)."""
    n, (out_c, in_c, kh, kw) = x.shape[0], weight.shape
    if demodulate:  # pre-normalise (keeps fp16 in range; a uniform scale that demodulation removes again)
        weight = weight * weight.square().mean([1, 2, 3], keepdim=True).rsqrt()
        styles = styles * styles.square().mean().rsqrt()
    w = weight.unsqueeze(0) * styles[:, None, :, None, None]  # (N, O, I, k, k)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt()[:, :, None, None, None]
    if input_gain is not None:
        w = w * input_gain.expand(n, in_c)[:, None, :, None, None]
    y = F.conv2d(x.reshape(1, n * in_c, *x.shape[2:]), w.reshape(n * out_c, in_c, kh, kw).to(x.dtype),
                 padding=padding, groups=n)
    return y.reshape(n, out_c, *y.shape[2:])


# -------------------------------------------------------------------------------------------------- config

NVIDIA_TOP_LEVEL = ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels")
NVIDIA_MAPPING = {"num_layers": "mapping_layers", "lr_multiplier": "mapping_lr_multiplier",
                  "w_avg_beta": "w_avg_beta"}
NVIDIA_PRECISION = ("num_fp16_res",)  # fp16 on CUDA only; our layers run in float32


@dataclass
class GeneratorConfig:
    """StyleGAN3 generator; defaults are NVIDIA's (networks_stylegan3.py) for config T. Config R: conv_kernel 1,
    use_radial_filters True and, as train.py does, channel_base and channel_max doubled."""

    z_dim: int = 512  # input latent z
    c_dim: int = 0  # class label dimension (0 = unconditional)
    w_dim: int = 512  # intermediate latent w
    img_resolution: int = 1024  # output side
    img_channels: int = 3  # output channels
    channel_base: int = 32768  # feature maps of a layer: rint(min(channel_base / 2 / cutoff, channel_max))
    channel_max: int = 512
    mapping_layers: int = 2  # fully connected layers of the mapping network (StyleGAN3 default)
    mapping_lr_multiplier: float = 0.01  # learning-rate multiplier of the mapping network
    w_avg_beta: float = 0.998  # decay of the tracked mean w (truncation trick)
    num_layers: int = 14  # synthesis layers, not counting the ToRGB layer
    num_critical: int = 2  # critically sampled layers at the end
    first_cutoff: float = 2.0  # cutoff frequency of the first layer (f_c,0)
    first_stopband: float = 2 ** 2.1  # minimum stopband of the first layer (f_t,0)
    last_stopband_rel: float = 2 ** 0.3  # minimum stopband of the last layer, relative to its cutoff
    margin_size: int = 10  # extra pixels on each side of the internal feature maps
    output_scale: float = 0.25  # the ToRGB output is multiplied by this
    conv_kernel: int = 3  # convolution kernel (config R: 1)
    filter_size: int = 6  # low-pass filter taps per sampling-rate factor
    lrelu_upsampling: int = 2  # the activation runs at this multiple of the layer's sampling rate
    use_radial_filters: bool = False  # radially symmetric down filters where not critically sampled (config R)
    conv_clamp: Optional[float] = 256  # clamp every layer's output to +-conv_clamp (None: no clamp)
    magnitude_ema_beta: float = 0.999  # decay of each layer's tracked input magnitude

    @classmethod
    def from_nvidia(cls, init_kwargs: Dict[str, Any], source: str = "init_kwargs") -> "GeneratorConfig":
        """From the constructor arguments of NVIDIA's networks_stylegan3.Generator (z_dim, ..., mapping_kwargs,
        **synthesis_kwargs)."""
        kwargs = dict(init_kwargs)
        out: Dict[str, Any] = {k: kwargs.pop(k) for k in NVIDIA_TOP_LEVEL if k in kwargs}
        missing = [k for k in NVIDIA_TOP_LEVEL if k not in out]
        problems = []
        for k, v in dict(kwargs.pop("mapping_kwargs", None) or {}).items():
            if k in NVIDIA_MAPPING:
                out[NVIDIA_MAPPING[k]] = v
            else:
                problems.append(f"mapping_kwargs.{k}={v!r}")
        names = {f.name for f in fields(cls)} - set(NVIDIA_TOP_LEVEL) - set(NVIDIA_MAPPING.values())
        for k, v in kwargs.items():
            if k in names:
                out[k] = v
            elif k not in NVIDIA_PRECISION:
                problems.append(f"{k}={v!r}")
        if missing or problems:
            raise LoadError(f"{source}: not a supported StyleGAN3 generator configuration: "
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
            raise LoadError(f"{source}: unknown StyleGAN3 GeneratorConfig fields {unknown} (known: {sorted(names)})")
        return cls(**d)


def layer_plan(cfg: GeneratorConfig) -> Dict[str, np.ndarray]:
    """Per layer i = 0..num_layers (the input uses entry 0): cutoff f_c, stopband f_t, sampling rate, half width
    of the transition band, feature-map size and channels, as the paper's geometric progression gives them."""
    n, res = cfg.num_layers, cfg.img_resolution
    last_cutoff = res / 2
    last_stopband = last_cutoff * cfg.last_stopband_rel
    exponents = np.minimum(np.arange(n + 1) / (n - cfg.num_critical), 1)
    cutoffs = cfg.first_cutoff * (last_cutoff / cfg.first_cutoff) ** exponents
    stopbands = cfg.first_stopband * (last_stopband / cfg.first_stopband) ** exponents
    rates = np.exp2(np.ceil(np.log2(np.minimum(stopbands * 2, res))))
    half_widths = np.maximum(stopbands, rates / 2) - cutoffs
    sizes = rates + cfg.margin_size * 2
    sizes[-2:] = res
    channels = np.rint(np.minimum((cfg.channel_base / 2) / cutoffs, cfg.channel_max))
    channels[-1] = cfg.img_channels
    return {"cutoffs": cutoffs, "stopbands": stopbands, "sampling_rates": rates, "half_widths": half_widths,
            "sizes": sizes, "channels": channels}


# ---------------------------------------------------------------------------------------------------- layers

class SynthesisInput(nn.Module):
    """Fourier features: sin(2 pi (freqs . xy + phases)) on a size x size grid, the frequencies rotated and the
    phases shifted by w (affine -> rotation, translation) and by the user `transform`; then a channel mixing."""

    def __init__(self, w_dim: int, channels: int, size: int, sampling_rate: float, bandwidth: float):
        super().__init__()
        self.w_dim, self.channels, self.size = w_dim, channels, int(size)
        self.sampling_rate, self.bandwidth = float(sampling_rate), float(bandwidth)
        freqs = torch.randn([channels, 2])  # uniform in a disc of radius bandwidth (radius r: density ~ exp(-r^2))
        radii = freqs.square().sum(dim=1, keepdim=True).sqrt()
        freqs = freqs / (radii * radii.square().exp().pow(0.25)) * bandwidth
        self.weight = nn.Parameter(torch.randn([channels, channels]))
        self.affine = FullyConnectedLayer(w_dim, 4)
        with torch.no_grad():  # starts as the identity: no rotation, no translation
            self.affine.weight.zero_()
            self.affine.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        self.register_buffer("transform", torch.eye(3, 3))
        self.register_buffer("freqs", freqs)
        self.register_buffer("phases", torch.rand([channels]) - 0.5)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        n = w.shape[0]
        t = self.affine(w)  # (N, 4): cos, sin of the rotation, translation x, y
        t = t / t[:, :2].norm(dim=1, keepdim=True)
        rot = torch.eye(3, device=w.device).unsqueeze(0).repeat([n, 1, 1])  # inverse rotation of the image
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = t[:, 0], -t[:, 1], t[:, 1], t[:, 0]
        shift = torch.eye(3, device=w.device).unsqueeze(0).repeat([n, 1, 1])  # inverse translation
        shift[:, 0, 2], shift[:, 1, 2] = -t[:, 2], -t[:, 3]
        transforms = rot @ shift @ self.transform.unsqueeze(0)  # (N, 3, 3)
        freqs, phases = self.freqs.unsqueeze(0), self.phases.unsqueeze(0)
        phases = phases + (freqs @ transforms[:, :2, 2:]).squeeze(2)  # (N, C)
        freqs = freqs @ transforms[:, :2, :2]  # (N, C, 2)
        # a user transform can push frequencies past the band: fade them out before they alias
        amplitudes = (1 - (freqs.norm(dim=2) - self.bandwidth)
                      / (self.sampling_rate / 2 - self.bandwidth)).clamp(0, 1)
        # scaled, not set item by item: a Python number set into a CUDA tensor is a CPU scalar copied over
        theta = torch.eye(2, 3, device=w.device) * (0.5 * self.size / self.sampling_rate)
        grid = F.affine_grid(theta.unsqueeze(0), [1, 1, self.size, self.size], align_corners=False)  # (1, H, W, 2)
        x = (grid.unsqueeze(3) @ freqs.permute(0, 2, 1).unsqueeze(1).unsqueeze(2)).squeeze(3)  # (N, H, W, C)
        x = torch.sin((x + phases.unsqueeze(1).unsqueeze(2)) * (np.pi * 2))
        x = x * amplitudes.unsqueeze(1).unsqueeze(2)
        x = x @ (self.weight / np.sqrt(self.channels)).t()
        return x.permute(0, 3, 1, 2)  # (N, C, H, W)


class SynthesisLayer(nn.Module):
    """Modulated conv (full padding) -> bias, upsample, leaky ReLU, clamp, downsample (filtered_lrelu). The ToRGB
    layer (is_torgb) is a 1x1 conv without demodulation, linear, with identity filters."""

    def __init__(self, w_dim: int, is_torgb: bool, is_critically_sampled: bool, in_channels: int,
                 out_channels: int, in_size: int, out_size: int, in_sampling_rate: int, out_sampling_rate: int,
                 in_cutoff: float, out_cutoff: float, in_half_width: float, out_half_width: float,
                 conv_kernel: int = 3, filter_size: int = 6, lrelu_upsampling: int = 2,
                 use_radial_filters: bool = False, conv_clamp: Optional[float] = 256,
                 magnitude_ema_beta: float = 0.999, design_filters: bool = True):
        super().__init__()
        self.w_dim, self.is_torgb, self.is_critically_sampled = w_dim, is_torgb, is_critically_sampled
        self.in_channels, self.out_channels = in_channels, out_channels
        self.in_size, self.out_size = int(in_size), int(out_size)
        self.in_sampling_rate, self.out_sampling_rate = in_sampling_rate, out_sampling_rate
        self.tmp_sampling_rate = max(in_sampling_rate, out_sampling_rate) * (1 if is_torgb else lrelu_upsampling)
        self.in_cutoff, self.out_cutoff = in_cutoff, out_cutoff
        self.in_half_width, self.out_half_width = in_half_width, out_half_width
        conv_kernel = 1 if is_torgb else conv_kernel
        self.conv_kernel, self.conv_clamp, self.magnitude_ema_beta = conv_kernel, conv_clamp, magnitude_ema_beta
        self.gain = 1.0 if is_torgb else math.sqrt(2)
        self.slope = 1.0 if is_torgb else 0.2

        self.affine = FullyConnectedLayer(w_dim, in_channels)
        with torch.no_grad():
            self.affine.bias.fill_(1.0)  # styles start at 1
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, conv_kernel, conv_kernel]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.register_buffer("magnitude_ema", torch.ones([]))

        self.up_factor = int(round(self.tmp_sampling_rate / in_sampling_rate))
        self.down_factor = int(round(self.tmp_sampling_rate / out_sampling_rate))
        if in_sampling_rate * self.up_factor != self.tmp_sampling_rate:
            raise ValueError(f"SynthesisLayer: sampling rate {in_sampling_rate} does not divide "
                             f"{self.tmp_sampling_rate}")
        self.up_taps = filter_size * self.up_factor if self.up_factor > 1 and not is_torgb else 1
        self.down_taps = filter_size * self.down_factor if self.down_factor > 1 and not is_torgb else 1
        self.down_radial = use_radial_filters and not is_critically_sampled
        up = (self.up_taps, in_cutoff, in_half_width * 2, self.tmp_sampling_rate, False)
        down = (self.down_taps, out_cutoff, out_half_width * 2, self.tmp_sampling_rate, self.down_radial)
        self.register_buffer("up_filter", self._filter(*up, design_filters))
        self.register_buffer("down_filter", self._filter(*down, design_filters))

        # padding: the full conv grows the input by k - 1; both filters shrink the upsampled map; the rest is split
        # so that the sample positions stay centred (the paper's symmetric interpretation, appendix C.3)
        pad_total = (self.out_size - 1) * self.down_factor + 1
        pad_total -= (self.in_size + conv_kernel - 1) * self.up_factor
        pad_total += self.up_taps + self.down_taps - 2
        pad_lo = (pad_total + self.up_factor) // 2
        pad_hi = pad_total - pad_lo
        self.padding = [pad_lo, pad_hi, pad_lo, pad_hi]

    @staticmethod
    def _filter(numtaps: int, cutoff: float, width: float, fs: float, radial: bool,
                design: bool) -> Optional[torch.Tensor]:
        if numtaps == 1:
            return None
        if design:
            return design_lowpass_filter(numtaps, cutoff, width, fs, radial)
        return torch.zeros([numtaps, numtaps] if radial else [numtaps])  # set by load_state_dict

    def forward(self, x: torch.Tensor, w: torch.Tensor, update_emas: bool = False) -> torch.Tensor:
        if update_emas:
            with torch.no_grad():
                current = x.detach().to(torch.float32).square().mean()
                self.magnitude_ema.copy_(current.lerp(self.magnitude_ema, self.magnitude_ema_beta))
        input_gain = self.magnitude_ema.rsqrt()
        styles = self.affine(w)
        if self.is_torgb:
            styles = styles * (1 / math.sqrt(self.in_channels * self.conv_kernel ** 2))
        x = modulated_conv2d(x, self.weight, styles, demodulate=not self.is_torgb, padding=self.conv_kernel - 1,
                             input_gain=input_gain)
        return filtered_lrelu(x, self.up_filter, self.down_filter, self.bias.to(x.dtype), up=self.up_factor,
                              down=self.down_factor, padding=self.padding, gain=self.gain, slope=self.slope,
                              clamp=self.conv_clamp)


class SynthesisNetwork(nn.Module):
    """ws (N, num_ws, w_dim) -> image: input <- ws[:, 0], layer L{i}_{size}_{channels} <- ws[:, i + 1]."""

    def __init__(self, cfg: GeneratorConfig, design_filters: bool = True):
        super().__init__()
        self.w_dim, self.img_resolution, self.img_channels = cfg.w_dim, cfg.img_resolution, cfg.img_channels
        self.num_layers, self.num_critical, self.output_scale = cfg.num_layers, cfg.num_critical, cfg.output_scale
        self.num_ws = cfg.num_layers + 2
        if cfg.num_layers <= cfg.num_critical:
            raise ValueError(f"StyleGAN3: num_layers ({cfg.num_layers}) must exceed num_critical "
                             f"({cfg.num_critical})")
        plan = layer_plan(cfg)
        cut, rate, hw, size, ch = (plan[k] for k in ("cutoffs", "sampling_rates", "half_widths", "sizes",
                                                     "channels"))
        self.input = SynthesisInput(cfg.w_dim, int(ch[0]), int(size[0]), rate[0], cut[0])
        self.layer_names: List[str] = []
        for idx in range(cfg.num_layers + 1):
            prev = max(idx - 1, 0)
            layer = SynthesisLayer(
                cfg.w_dim, is_torgb=idx == cfg.num_layers,
                is_critically_sampled=idx >= cfg.num_layers - cfg.num_critical, in_channels=int(ch[prev]),
                out_channels=int(ch[idx]), in_size=int(size[prev]), out_size=int(size[idx]),
                in_sampling_rate=int(rate[prev]), out_sampling_rate=int(rate[idx]), in_cutoff=cut[prev],
                out_cutoff=cut[idx], in_half_width=hw[prev], out_half_width=hw[idx], conv_kernel=cfg.conv_kernel,
                filter_size=cfg.filter_size, lrelu_upsampling=cfg.lrelu_upsampling,
                use_radial_filters=cfg.use_radial_filters, conv_clamp=cfg.conv_clamp,
                magnitude_ema_beta=cfg.magnitude_ema_beta, design_filters=design_filters)
            name = f"L{idx}_{layer.out_size}_{layer.out_channels}"
            setattr(self, name, layer)
            self.layer_names.append(name)

    def forward(self, ws: torch.Tensor, noise_mode: str = "const", fused_modconv: Optional[bool] = None,
                update_emas: Optional[bool] = None, feature_offsets: Optional[Dict[int, Any]] = None) -> torch.Tensor:
        """noise_mode and fused_modconv are StyleGAN2 arguments accepted for a common interface (StyleGAN3 has no
        noise). update_emas (None: in training mode) updates each layer's magnitude_ema from this batch."""
        if feature_offsets:
            raise ValueError("feature offsets (pSp's feature_res) need a StyleGAN2 prior; StyleGAN3 has no "
                             "resolution blocks")
        if not isinstance(ws, torch.Tensor) or ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"synthesis: expected ws of shape (N, {self.num_ws}, {self.w_dim}), got "
                             f"{tuple(getattr(ws, 'shape', ()))}")
        update = self.training if update_emas is None else update_emas
        ws = ws.to(torch.float32).unbind(dim=1)
        x = self.input(ws[0])
        for name, w in zip(self.layer_names, ws[1:]):
            x = getattr(self, name)(x, w, update_emas=update)
        if self.output_scale != 1:
            x = x * self.output_scale
        return x.to(torch.float32)


class Generator(nn.Module):
    """z -> mapping -> ws (N, num_ws, w_dim) -> synthesis -> image (N, img_channels, res, res) in ~[-1, 1]."""

    architecture = "stylegan3"

    def __init__(self, cfg: Optional[GeneratorConfig] = None, design_filters: bool = True):
        super().__init__()
        cfg = GeneratorConfig() if cfg is None else cfg
        if not isinstance(cfg, GeneratorConfig):
            raise TypeError(f"stylegan3.Generator: expected a stylegan3.GeneratorConfig, got {type(cfg).__name__}")
        self.config = cfg
        self.z_dim, self.c_dim, self.w_dim = cfg.z_dim, cfg.c_dim, cfg.w_dim
        self.img_resolution, self.img_channels = cfg.img_resolution, cfg.img_channels
        self.synthesis = SynthesisNetwork(cfg, design_filters=design_filters)
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(cfg.z_dim, cfg.c_dim, cfg.w_dim, self.num_ws, num_layers=cfg.mapping_layers,
                                      lr_multiplier=cfg.mapping_lr_multiplier, w_avg_beta=cfg.w_avg_beta)

    @property
    def n_latent(self) -> int:
        """Number of style vectors in W+ (num_layers + 2)."""
        return self.num_ws

    def forward(self, z: torch.Tensor, c: Optional[torch.Tensor] = None, truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, noise_mode: str = "const",
                fused_modconv: Optional[bool] = None) -> torch.Tensor:
        ws = self.mapping(z, c, truncation_psi=truncation_psi, truncation_cutoff=truncation_cutoff)
        return self.synthesis(ws)

    def set_transform(self, translate: Sequence[float] = (0.0, 0.0), angle_deg: float = 0.0) -> None:
        """Replace the input transform, as NVIDIA's gen_images.py does for --translate / --rotate."""
        with torch.no_grad():
            buffer = self.synthesis.input.transform
            buffer.copy_(input_transform(translate, angle_deg, buffer.device))  # made where it goes

    @staticmethod
    def mix_styles(ws_a: torch.Tensor, ws_b: torch.Tensor, layers: Iterable[int]) -> torch.Tensor:
        """Style mixing: ws_a with the style vectors at `layers` taken from ws_b (both (N, num_ws, w_dim))."""
        idx = torch.as_tensor(list(layers), dtype=torch.long, device=ws_a.device)
        mixed = ws_a.clone()
        mixed[:, idx] = ws_b[:, idx].to(ws_a.dtype)
        return mixed

    def mixing_regularization(self, ws: torch.Tensor, c: Optional[torch.Tensor] = None, prob: float = 0.0,
                              generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Training-time style mixing, as for StyleGAN2 (NVIDIA's StyleGAN3 configs train without it: prob 0)."""
        if prob <= 0:
            return ws
        cutoff = int(torch.randint(1, self.num_ws, (), generator=generator))
        if float(torch.rand((), generator=generator)) >= prob:
            return ws
        z2 = torch.randn(ws.shape[0], self.z_dim, generator=generator).to(ws.device)
        ws2 = self.mapping(z2, c, skip_w_avg_update=True)
        return torch.cat([ws[:, :cutoff], ws2[:, cutoff:].to(ws.dtype)], dim=1)

