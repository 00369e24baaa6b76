"""pSp encoders (Richardson et al. 2021) and the ArcFace network of its identity loss, on IR / IR-SE backbones.

Module and parameter names follow the pSp reference (eladrich/pixel2style2pixel), so that published checkpoints
(`encoder.*` of a pSp model, `model_ir_se50.pth`) load key for key:
- an IR backbone: `input_layer` (conv3x3 - BatchNorm - PReLU) and `body`, four stages of IR units (the first unit of a
  stage halves the resolution); an IR-SE unit is BN - conv3x3 - PReLU - conv3x3(stride) - BN - squeeze-excitation,
  added to a shortcut (a strided identity when the width stays, conv1x1(stride) - BN when it changes);
- `GradualStyleEncoder`: a feature pyramid on the outputs of the last three stages (16, 32 and 64 px for a 256-px
  input), merged top-down by upsample-and-add with 1x1 lateral convolutions; one map2style head per style vector
  (stride-2 convolutions with LeakyReLU 0.01 down to 1x1, then an equalized linear layer): styles 0-2 from the
  coarsest map, 3-6 from the middle one, 7 and up from the finest;
- `Encoder4Editing` (e4e, Tov et al. 2021): the same modules as `GradualStyleEncoder` (a published e4e checkpoint has
  pSp's keys), but one w0 from the coarsest map repeated for every style vector, plus per-layer deltas, of which only
  the first `progressive_stage` are added (progressive training);
- `BackboneEncoderUsingLastLayerIntoW` / `...IntoWPlus`: one head on the last stage, to a single w or to all of W+;
- `ArcFace`: the reference's `Backbone(112, 50, 'ir_se')` face-recognition network (l2-normalised 512-d embedding).
Widths are configurable (`channels`, `w_dim`) so that tests run tiny networks; the defaults are the paper's.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Type

import torch
import torch.nn.functional as F
from torch import nn

from safeio import ConfigError, LoadError, SAFE_TORCH_LOAD_GLOBALS, strict_load, torch_load_failure
from priors.stylegan2 import FullyConnectedLayer

# units per stage of the IR backbones (ResNet-50/100/152-style depths of InsightFace)
IR_UNITS: Dict[int, Tuple[int, int, int, int]] = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}
IR_MODES = ("ir", "ir_se")  # plain IR units, or IR units with squeeze-excitation
PAPER_CHANNELS = (64, 128, 256, 512)  # width of each stage (the input layer has the first stage's width)
SE_REDUCTION = 16  # squeeze-excitation bottleneck: channels // 16
MAP2STYLE_SLOPE = 0.01  # LeakyReLU slope in the map2style heads (torch's default, as in the reference)
COARSE_END, MIDDLE_END = 3, 7  # styles [0, 3) from the coarsest map, [3, 7) from the middle one, [7, n) from the finest
BACKBONE_STRIDE = 16  # the four stages each halve the resolution
WPLUS_POOL = 7  # the W+ head pools the last stage to 7x7 (the reference's output_layer_2)
ARCFACE_INPUT = 112  # ArcFace input side (aligned face crop)
ARCFACE_EMBEDDING = 512
ARCFACE_DROP_RATIO = 0.6  # dropout before the embedding layer (pSp's IDLoss builds it so; inactive in eval)


def n_styles_for(output_size: int) -> int:
    """Style vectors of a StyleGAN2 generator at `output_size` px (2 * log2(size) - 2; 18 at 1024)."""
    if not isinstance(output_size, int) or output_size < 4 or output_size & (output_size - 1):
        raise ValueError(f"output_size must be a power of two >= 4, got {output_size!r}")
    return 2 * int(math.log2(output_size)) - 2


def _check_backbone_args(num_layers: int, mode: str, channels: Sequence[int], input_nc: int) -> Tuple[int, ...]:
    if num_layers not in IR_UNITS:
        raise ConfigError(f"num_layers: expected one of {sorted(IR_UNITS)}, got {num_layers!r}", key="num_layers")
    if mode not in IR_MODES:
        raise ConfigError(f"mode: expected one of {IR_MODES}, got {mode!r}", key="mode")
    channels = tuple(int(c) for c in channels)
    if len(channels) != 4 or min(channels) < 1:
        raise ConfigError(f"channels: expected 4 positive stage widths, got {channels}", key="channels")
    if not isinstance(input_nc, int) or input_nc < 1:
        raise ValueError(f"input_nc: expected a positive number of input channels, got {input_nc!r}")
    return channels


# ------------------------------------------------------------------------------------------------ IR units

class SEModule(nn.Module):
    """Squeeze-excitation: channel weights from global average pooling through a 1x1-conv bottleneck."""

    def __init__(self, channels: int, reduction: int = SE_REDUCTION):
        super().__init__()
        hidden = max(1, channels // reduction)  # at least one channel for tiny test widths
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))


class BottleneckIR(nn.Module):
    """IR unit (improved residual, InsightFace): BN - conv3x3 - PReLU - conv3x3(stride) - BN [- SE], plus shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, se: bool = True):
        super().__init__()
        if in_channels == out_channels:
            self.shortcut_layer = nn.MaxPool2d(1, stride)  # strided identity
        else:
            self.shortcut_layer = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                                nn.BatchNorm2d(out_channels))
        layers = [nn.BatchNorm2d(in_channels),
                  nn.Conv2d(in_channels, out_channels, 3, 1, 1, bias=False),
                  nn.PReLU(out_channels),
                  nn.Conv2d(out_channels, out_channels, 3, stride, 1, bias=False),
                  nn.BatchNorm2d(out_channels)]
        if se:
            layers.append(SEModule(out_channels))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


def ir_input_layer(input_nc: int, width: int) -> nn.Sequential:
    """conv3x3 (no bias) - BatchNorm - PReLU at full resolution."""
    return nn.Sequential(nn.Conv2d(input_nc, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.PReLU(width))


def ir_body(num_layers: int, mode: str, channels: Sequence[int]) -> Tuple[nn.Sequential, List[int]]:
    """The four stages as one flat Sequential (the reference's `body` indices) and the index of each stage's last
    unit. Each stage starts with a stride-2 unit that changes the width from the previous stage's."""
    units: List[nn.Module] = []
    stage_ends: List[int] = []
    in_ch = channels[0]
    for n_units, out_ch in zip(IR_UNITS[num_layers], channels):
        for i in range(n_units):
            units.append(BottleneckIR(in_ch if i == 0 else out_ch, out_ch, 2 if i == 0 else 1, se=mode == "ir_se"))
        stage_ends.append(len(units) - 1)
        in_ch = out_ch
    return nn.Sequential(*units), stage_ends


class IRBackboneNet(nn.Module):
    """Base of every net here: `input_layer` + `body`, and the input check that names expected and actual shape."""

    def __init__(self, num_layers: int, mode: str, channels: Sequence[int], input_nc: int, input_size: int):
        super().__init__()
        channels = _check_backbone_args(num_layers, mode, channels, input_nc)
        if not isinstance(input_size, int) or input_size < BACKBONE_STRIDE or input_size % BACKBONE_STRIDE:
            raise ConfigError(f"input_size: expected a multiple of {BACKBONE_STRIDE} (the backbone's stride), "
                              f"got {input_size!r}", key="input_size")
        self.num_layers, self.mode, self.channels = num_layers, mode, channels
        self.input_nc, self.input_size = input_nc, input_size
        self.input_layer = ir_input_layer(input_nc, channels[0])
        self.body, self.stage_ends = ir_body(num_layers, mode, channels)

    def check_input(self, x: torch.Tensor) -> None:
        expected = (self.input_nc, self.input_size, self.input_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"{type(self).__name__}: expected an image batch (N, {', '.join(map(str, expected))}), "
                             f"got {tuple(x.shape)}")

    def backbone_spec(self) -> Dict[str, Any]:
        return {"num_layers": self.num_layers, "mode": self.mode, "channels": list(self.channels),
                "input_nc": self.input_nc, "input_size": self.input_size}

    def _n_styles_spec(self) -> Dict[str, Any]:
        """n_styles in the spec only where it is not the StyleGAN2 count of output_size (a StyleGAN3 decoder)."""
        default = getattr(self, "output_size", None)
        try:
            same = n_styles_for(default) == self.n_styles
        except ValueError:
            same = False
        return {} if same else {"n_styles": self.n_styles}


# ------------------------------------------------------------------------------------------------ pSp encoders

class MapToStyle(nn.Module):
    """map2style: stride-2 conv3x3 + LeakyReLU(0.01) until 1x1, then an equalized linear layer -> one w."""

    def __init__(self, in_channels: int, w_dim: int, spatial: int):
        super().__init__()
        n_convs = int(math.log2(spatial))  # spatial >= 2, a power of two (checked by the encoder)
        layers: List[nn.Module] = []
        for i in range(n_convs):
            layers += [nn.Conv2d(in_channels if i == 0 else w_dim, w_dim, 3, 2, 1), nn.LeakyReLU(MAP2STYLE_SLOPE)]
        self.convs = nn.Sequential(*layers)
        self.linear = FullyConnectedLayer(w_dim, w_dim)  # = the reference's EqualLinear(lr_mul=1)
        self.w_dim = w_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)  # (N, w_dim, 1, 1)
        return self.linear(x.flatten(1))


def _n_styles(output_size: int, n_styles: Optional[int]) -> int:
    """The style vectors to predict: a StyleGAN2 prior's 2 * log2(output_size) - 2, or `n_styles` when the decoder
    says otherwise (StyleGAN3: num_layers + 2 at any size)."""
    if n_styles is None:
        return n_styles_for(output_size)
    if not isinstance(n_styles, int) or n_styles < 1:
        raise ValueError(f"n_styles: expected a positive int, got {n_styles!r}")
    return n_styles


class GradualStyleEncoder(IRBackboneNet):
    """pSp's encoder: image (N, input_nc, input_size, input_size) -> W+ offsets (N, n_styles, w_dim)."""

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", input_nc: int = 3, output_size: int = 1024,
                 input_size: int = 256, channels: Sequence[int] = PAPER_CHANNELS, w_dim: int = 512,
                 n_styles: Optional[int] = None):
        if not isinstance(input_size, int) or input_size < 2 * BACKBONE_STRIDE or input_size & (input_size - 1):
            raise ConfigError(f"input_size: expected a power of two >= {2 * BACKBONE_STRIDE} (the map2style heads "
                              f"halve the coarsest map down to 1x1), got {input_size!r}", key="input_size")
        super().__init__(num_layers, mode, channels, input_nc, input_size)
        self.output_size, self.w_dim = output_size, w_dim
        self.n_styles = _n_styles(output_size, n_styles)
        self.taps = tuple(self.stage_ends[1:])  # after stages 2, 3, 4: 64, 32, 16 px at 256 (50 layers: 6, 20, 23)
        top = self.channels[3]
        coarse_px = input_size // BACKBONE_STRIDE
        self.styles = nn.ModuleList(
            MapToStyle(top, w_dim, coarse_px if i < COARSE_END else 2 * coarse_px if i < MIDDLE_END else 4 * coarse_px)
            for i in range(self.n_styles))
        self.latlayer1 = nn.Conv2d(self.channels[2], top, 1)  # stage 3 (middle) -> the pyramid's width
        self.latlayer2 = nn.Conv2d(self.channels[1], top, 1)  # stage 2 (fine)

    @staticmethod
    def upsample_add(top: torch.Tensor, lateral: torch.Tensor) -> torch.Tensor:
        return F.interpolate(top, size=lateral.shape[-2:], mode="bilinear", align_corners=True) + lateral

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_with_fine_map(x)[0]

    def forward_with_fine_map(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The W+ offsets (N, n_styles, w_dim) and the pyramid's finest map (N, channels[3], input_size / 4, same),
        which a feature-space head (nets.psp.PSPNet's feature_res) reads."""
        maps = self.pyramid(x)
        return torch.stack([head(maps[i]) for i, head in enumerate(self.styles)], dim=1), maps[-1]

    def pyramid(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The map each style head reads, per style vector: the coarsest backbone output for styles [0, 3), the
        middle pyramid level for [3, 7), the finest for the rest (the last entry)."""
        self.check_input(x)
        x = self.input_layer(x)
        feats = []
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i in self.taps:
                feats.append(x)
        fine, middle, coarse = feats  # 64, 32, 16 px at a 256-px input
        p2 = self.upsample_add(coarse, self.latlayer1(middle))
        p1 = self.upsample_add(p2, self.latlayer2(fine))
        return [coarse if i < COARSE_END else p2 if i < MIDDLE_END else p1 for i in range(self.n_styles)]

    def spec(self) -> Dict[str, Any]:
        return {"name": "GradualStyleEncoder", **self.backbone_spec(), "output_size": self.output_size,
                "w_dim": self.w_dim, **self._n_styles_spec()}


class Encoder4Editing(GradualStyleEncoder):
    """e4e's encoder: w0 = styles[0](coarsest map), repeated for all n_styles rows, and row i (1 <= i <= the
    progressive stage) gets + styles[i](its pyramid map). Codes near one w stay where the generator is editable.

    `progressive_stage` (a plain attribute, never saved: a loaded encoder adds every delta) is the number of deltas
    in use: 0 trains w0 alone, n_styles - 1 (or more: the reference's Inference stage is 18) uses them all."""

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", input_nc: int = 3, output_size: int = 1024,
                 input_size: int = 256, channels: Sequence[int] = PAPER_CHANNELS, w_dim: int = 512):
        super().__init__(num_layers, mode, input_nc, output_size, input_size, channels, w_dim)
        self.progressive_stage = self.n_styles - 1

    def forward_with_fine_map(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        maps = self.pyramid(x)
        w0 = self.styles[0](maps[0])
        rows = [w0] + [w0 + self.styles[i](maps[i]) if i <= self.progressive_stage else w0
                       for i in range(1, self.n_styles)]
        return torch.stack(rows, dim=1), maps[-1]  # (N, n_styles, w_dim)

    def spec(self) -> Dict[str, Any]:
        return {**super().spec(), "name": "Encoder4Editing"}


class BackboneEncoderUsingLastLayerIntoW(IRBackboneNet):
    """pSp's W encoder: global average of the last stage -> one w (N, w_dim), used for every style vector."""

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", input_nc: int = 3, output_size: int = 1024,
                 input_size: int = 256, channels: Sequence[int] = PAPER_CHANNELS, w_dim: int = 512,
                 n_styles: Optional[int] = None):
        super().__init__(num_layers, mode, channels, input_nc, input_size)
        self.output_size, self.w_dim = output_size, w_dim
        self.n_styles = _n_styles(output_size, n_styles)
        self.output_pool = nn.AdaptiveAvgPool2d(1)
        self.linear = FullyConnectedLayer(self.channels[3], w_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.output_pool(self.body(self.input_layer(x)))
        return self.linear(x.flatten(1))  # (N, w_dim)

    def spec(self) -> Dict[str, Any]:
        return {"name": "BackboneEncoderUsingLastLayerIntoW", **self.backbone_spec(), "output_size": self.output_size,
                "w_dim": self.w_dim, **self._n_styles_spec()}


class BackboneEncoderUsingLastLayerIntoWPlus(IRBackboneNet):
    """pSp's single-head W+ encoder: BN, 7x7 pooling and a linear layer on the last stage, then an equalized linear
    layer to all style vectors (N, n_styles, w_dim)."""

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", input_nc: int = 3, output_size: int = 1024,
                 input_size: int = 256, channels: Sequence[int] = PAPER_CHANNELS, w_dim: int = 512,
                 n_styles: Optional[int] = None):
        super().__init__(num_layers, mode, channels, input_nc, input_size)
        self.output_size, self.w_dim = output_size, w_dim
        self.n_styles = _n_styles(output_size, n_styles)
        top = self.channels[3]
        self.output_layer_2 = nn.Sequential(nn.BatchNorm2d(top), nn.AdaptiveAvgPool2d(WPLUS_POOL), nn.Flatten(),
                                            nn.Linear(top * WPLUS_POOL**2, w_dim))
        self.linear = FullyConnectedLayer(w_dim, w_dim * self.n_styles)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.linear(self.output_layer_2(self.body(self.input_layer(x))))
        return x.view(x.shape[0], self.n_styles, self.w_dim)  # (N, n_styles, w_dim)

    def spec(self) -> Dict[str, Any]:
        return {"name": "BackboneEncoderUsingLastLayerIntoWPlus", **self.backbone_spec(),
                "output_size": self.output_size, "w_dim": self.w_dim, **self._n_styles_spec()}


# pSp's `encoder_type` names -> class; each takes (num_layers, mode, input_nc, output_size, input_size, channels,
# w_dim) and has spec() -> the arguments of build_encoder that rebuild it
ENCODERS: Dict[str, Type[IRBackboneNet]] = {
    "GradualStyleEncoder": GradualStyleEncoder,
    "BackboneEncoderUsingLastLayerIntoW": BackboneEncoderUsingLastLayerIntoW,
    "BackboneEncoderUsingLastLayerIntoWPlus": BackboneEncoderUsingLastLayerIntoWPlus,
    "Encoder4Editing": Encoder4Editing,
}


def build_encoder(name: str, **kwargs: Any) -> IRBackboneNet:
    """The encoder `name` (a key of ENCODERS) with the given constructor arguments."""
    if name not in ENCODERS:
        raise ConfigError(f"encoder_type: expected one of {sorted(ENCODERS)}, got {name!r}", key="encoder_type")
    return ENCODERS[name](**kwargs)


def _body_spec(sd: Mapping[str, torch.Tensor], source: str) -> Dict[str, Any]:
    """num_layers, mode, channels and input_nc of an IR backbone state dict (keys input_layer.*, body.*)."""
    if "input_layer.0.weight" not in sd:
        raise LoadError(f"{source}: not an IR backbone (no input_layer.0.weight; "
                        f"first keys: {', '.join(list(sd)[:5])})")
    n_units = len({k.split(".")[1] for k in sd if k.startswith("body.")})
    by_count = {sum(u): n for n, u in IR_UNITS.items()}
    if n_units not in by_count:
        raise LoadError(f"{source}: {n_units} IR units in body.*, expected {sorted(by_count)} (IR-{sorted(IR_UNITS)})")
    num_layers = by_count[n_units]
    firsts = [sum(IR_UNITS[num_layers][:s]) for s in range(4)]
    channels = [int(sd[f"body.{i}.res_layer.1.weight"].shape[0]) for i in firsts]
    mode = "ir_se" if "body.0.res_layer.5.fc1.weight" in sd else "ir"
    return {"num_layers": num_layers, "mode": mode, "channels": channels,
            "input_nc": int(sd["input_layer.0.weight"].shape[1])}


def encoder_spec_from_state_dict(sd: Mapping[str, torch.Tensor], source: str = "state dict",
                                 input_size: int = 256) -> Dict[str, Any]:
    """build_encoder arguments (incl. "name") read off an encoder state dict (a pSp checkpoint's encoder.*).
    The GradualStyleEncoder's heads fix its input size; the single-head encoders take `input_size`."""
    spec = _body_spec(sd, source)
    if "styles.0.linear.weight" in sd:
        n_styles = len({k.split(".")[1] for k in sd if k.startswith("styles.")})
        w_dim = int(sd["styles.0.linear.weight"].shape[0])
        n_convs = len([k for k in sd if k.startswith("styles.0.convs.") and k.endswith(".weight")])
        spec.update(name="GradualStyleEncoder", w_dim=w_dim, input_size=BACKBONE_STRIDE * 2**n_convs)
    elif "output_layer_2.3.weight" in sd:
        w_dim = int(sd["output_layer_2.3.weight"].shape[0])
        n_styles = int(sd["linear.weight"].shape[0]) // w_dim
        spec.update(name="BackboneEncoderUsingLastLayerIntoWPlus", w_dim=w_dim, input_size=input_size)
    elif "linear.weight" in sd:
        w_dim = int(sd["linear.weight"].shape[0])
        n_styles = None
        spec.update(name="BackboneEncoderUsingLastLayerIntoW", w_dim=w_dim, input_size=input_size)
    else:
        raise LoadError(f"{source}: an IR backbone without a known pSp encoder head (styles.*, output_layer_2.*, "
                        "linear.*)")
    if n_styles is not None:
        if n_styles < 2 or n_styles % 2:
            raise LoadError(f"{source}: {n_styles} style vectors is not 2 * log2(size) - 2 of any output size")
        spec["output_size"] = 2 ** (n_styles // 2 + 1)
    return spec


def load_backbone_weights(encoder: IRBackboneNet, arcface_sd: Mapping[str, torch.Tensor], source: str) -> List[str]:
    """pSp's initialisation: the encoder's input_layer and body from an ArcFace IR-SE50 state dict. The input layer is
    kept random when the channel counts differ (label maps, sketches). Returns the keys copied; every body key must
    be there with its shape."""
    own = encoder.state_dict()
    wanted = [k for k in own if k.startswith("body.") or k.startswith("input_layer.")]
    if tuple(arcface_sd.get("input_layer.0.weight", torch.empty(0)).shape) != tuple(own["input_layer.0.weight"].shape):
        wanted = [k for k in wanted if not k.startswith("input_layer.")]
    missing = [k for k in wanted if k not in arcface_sd]
    shapes = [f"{k}: expected {tuple(own[k].shape)}, got {tuple(arcface_sd[k].shape)}"
              for k in wanted if k in arcface_sd and tuple(arcface_sd[k].shape) != tuple(own[k].shape)]
    if missing or shapes:
        parts = [f"{what} ({len(v)}): {', '.join(v[:8])}" for what, v in (("missing", missing),
                                                                        ("shape mismatch", shapes)) if v]
        raise LoadError(f"{source} does not fit the encoder's backbone: " + "; ".join(parts))
    encoder.load_state_dict({k: arcface_sd[k] for k in wanted}, strict=False)
    return wanted


# ------------------------------------------------------------------------------------------------ ArcFace

class ArcFace(IRBackboneNet):
    """The face-recognition network of pSp's identity loss (InsightFace IR-SE50 as in TreB1eN's port): an aligned
    face (N, 3, 112, 112) in [-1, 1] -> l2-normalised embedding (N, 512). Loads `model_ir_se50.pth` as is."""

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", input_size: int = ARCFACE_INPUT,
                 drop_ratio: float = ARCFACE_DROP_RATIO, affine: bool = True,
                 channels: Sequence[int] = PAPER_CHANNELS, embedding_dim: int = ARCFACE_EMBEDDING):
        super().__init__(num_layers, mode, channels, 3, input_size)
        side = input_size // BACKBONE_STRIDE  # 7 at 112 px
        top = self.channels[3]
        self.output_layer = nn.Sequential(nn.BatchNorm2d(top), nn.Dropout(drop_ratio), nn.Flatten(),
                                          nn.Linear(top * side * side, embedding_dim),
                                          nn.BatchNorm1d(embedding_dim, affine=affine))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        x = self.output_layer(self.body(self.input_layer(x)))
        return F.normalize(x, dim=1)


def load_arcface(path: Optional[str | Path], config_key: str = "model.id_weights") -> ArcFace:
    """ArcFace IR-SE50 from the published `model_ir_se50.pth` (a plain state dict), strictly, with weights_only=True.
    Returned frozen and in eval mode. A missing file is an error naming `config_key`."""
    if path is None or str(path) == "":
        raise FileNotFoundError(f"{config_key} is not set: the identity loss needs the ArcFace IR-SE50 weights "
                                "(model_ir_se50.pth of pSp); set it or give the identity loss weight 0")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{config_key}: ArcFace weights not found: {path} (expected pSp's model_ir_se50.pth)")
    try:
        with torch.serialization.safe_globals(SAFE_TORCH_LOAD_GLOBALS):  # a pSp checkpoint's Namespace opts
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any failure to read is reported with the file and the key
        raise LoadError(f"{config_key}: cannot read {path} with torch.load(weights_only=True): "
                        f"{torch_load_failure(e)}") from e
    if isinstance(sd, Mapping) and "state_dict" in sd:
        sd = sd["state_dict"]
    if isinstance(sd, Mapping) and any(str(k).startswith("encoder.") for k in sd):
        raise LoadError(f"{config_key}: {path} is a pSp checkpoint; the identity loss needs the ArcFace IR-SE50 "
                        "weights (pSp's model_ir_se50.pth)")
    if not isinstance(sd, Mapping):
        raise LoadError(f"{config_key}: {path} holds a {type(sd).__name__}, expected a state dict")
    net = strict_load(ArcFace(**face_net_spec(sd, f"{config_key} ({path})")), sd, f"{config_key} ({path})")
    return net.eval().requires_grad_(False)


def face_net_spec(sd: Mapping[str, torch.Tensor], source: str) -> Dict[str, Any]:
    """ArcFace arguments read off a 112-px face-recognition state dict in TreB1eN's layout: IR-SE50 with an affine
    embedding norm (`model_ir_se50.pth`), or e.g. the CurricularFace IR-101 backbone (plain IR units, no affine),
    the network of pSp's identity-similarity metric."""
    spec = _body_spec(sd, source)
    embed = sd.get("output_layer.3.weight")
    if embed is None or embed.ndim != 2:
        raise LoadError(f"{source}: an IR backbone without a face-recognition embedding layer "
                        "(output_layer.3.weight); expected model_ir_se50.pth or a CurricularFace backbone")
    if spec.pop("input_nc") != 3:
        raise LoadError(f"{source}: a face-recognition network takes RGB; this one takes "
                        f"{int(sd['input_layer.0.weight'].shape[1])} channels")
    side2, rest = divmod(int(embed.shape[1]), spec["channels"][3])
    side = math.isqrt(side2)
    if rest or side * side != side2 or side * BACKBONE_STRIDE != ARCFACE_INPUT:
        raise LoadError(f"{source}: the embedding layer takes {int(embed.shape[1])} features; a {ARCFACE_INPUT}-px "
                        f"network has {spec['channels'][3]} x {ARCFACE_INPUT // BACKBONE_STRIDE}^2")
    return {**spec, "affine": "output_layer.4.weight" in sd, "embedding_dim": int(embed.shape[0])}


__all__ = ["ENCODERS", "build_encoder", "encoder_spec_from_state_dict", "load_backbone_weights", "n_styles_for",
           "GradualStyleEncoder", "BackboneEncoderUsingLastLayerIntoW", "BackboneEncoderUsingLastLayerIntoWPlus",
           "ArcFace", "load_arcface", "face_net_spec", "BottleneckIR", "SEModule", "MapToStyle", "IRBackboneNet",
           "IR_UNITS", "PAPER_CHANNELS"]
